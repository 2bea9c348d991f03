"""Files: stereo images, PFM disparity, colour-mapped PNG, PLY point clouds."""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np


def read_rgb(path: str | Path) -> np.ndarray:
    """Image file -> (H,W,3) uint8 RGB (grey images are replicated)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{path}: cannot read image (missing or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_pfm(path: str | Path) -> np.ndarray:
    """PFM -> (H,W) or (H,W,3) float32, top row first (PFM stores bottom row first)."""
    with open(path, "rb") as f:
        header = f.readline().strip()
        if header not in (b"PF", b"Pf"):
            raise ValueError(f"{path}: not a PFM file (header {header!r})")
        dims = f.readline()
        while dims.startswith(b"#"):
            dims = f.readline()
        match = re.match(rb"^\s*(\d+)\s+(\d+)\s*$", dims)
        if not match:
            raise ValueError(f"{path}: malformed PFM size line {dims!r}")
        width, height = int(match.group(1)), int(match.group(2))
        scale = float(f.readline().strip())
        dtype = "<f4" if scale < 0 else ">f4"
        channels = 3 if header == b"PF" else 1
        data = np.frombuffer(f.read(), dtype=dtype)
    if data.size != width * height * channels:
        raise ValueError(f"{path}: PFM holds {data.size} values, expected {width * height * channels}")
    shape = (height, width, 3) if channels == 3 else (height, width)
    return np.flipud(data.reshape(shape)).astype(np.float32)


def write_pfm(path: str | Path, image: np.ndarray) -> None:
    image = np.asarray(image, dtype=np.float32)
    header = b"PF" if image.ndim == 3 else b"Pf"
    with open(path, "wb") as f:
        f.write(header + b"\n%d %d\n-1.0\n" % (image.shape[1], image.shape[0]))
        f.write(np.flipud(image).astype("<f4").tobytes())


def colourise_disparity(disparity_px: np.ndarray, max_disparity_px: float | None = None) -> np.ndarray:
    """(H,W) disparity -> (H,W,3) uint8 RGB, turbo colour map; invalid (NaN/<=0) pixels black."""
    d = np.nan_to_num(np.asarray(disparity_px, np.float32), nan=0.0)
    top = max_disparity_px or max(float(np.percentile(d[d > 0], 99)) if np.any(d > 0) else 1.0, 1e-6)
    scaled = np.clip(d / top * 255.0, 0, 255).astype(np.uint8)
    bgr = cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO)
    bgr[d <= 0] = 0
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_rgb(path: str | Path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: cannot write image")


def write_disparity(path: str | Path, disparity_px: np.ndarray, max_disparity_px: float | None = None) -> None:
    """.pfm and .npy keep float values; .png writes the colour-mapped picture."""
    path = Path(path)
    if path.suffix == ".pfm":
        write_pfm(path, disparity_px)
    elif path.suffix == ".npy":
        np.save(path, np.asarray(disparity_px, np.float32))
    elif path.suffix == ".png":
        write_rgb(path, colourise_disparity(disparity_px, max_disparity_px))
    else:
        raise ValueError(f"{path}: disparity output must be .pfm, .npy or .png")


def write_ply(path: str | Path, points_xyz: np.ndarray, rgb: np.ndarray) -> int:
    """Binary little-endian PLY of the finite points; returns how many were written."""
    xyz = points_xyz.reshape(-1, 3)
    colours = rgb.reshape(-1, 3)
    keep = np.isfinite(xyz).all(axis=1)
    vertex = np.empty(int(keep.sum()), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                              ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    for i, axis in enumerate("xyz"):
        vertex[axis] = xyz[keep, i]
    for i, channel in enumerate(("red", "green", "blue")):
        vertex[channel] = colours[keep, i]
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(vertex)}\n"
              "property float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(vertex.tobytes())
    return len(vertex)
