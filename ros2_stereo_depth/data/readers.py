"""Readers for public stereo datasets in their real on-disk layouts, as `StereoPair`s.

Formats (`data_format`; 'auto' detects by layout):
  sceneflow       frames_cleanpass|frames_finalpass/<...>/left|right/*.png, disparity/<...>/left/*.pfm
  kitti2015       [training/]image_2, image_3, disp_occ_0 (<id>_10.png; 16-bit PNG / 256, 0 = invalid)
  kitti2012       [training/]colored_0, colored_1, disp_occ (same encoding)
  middlebury2014  <scene>/im0.png, im1.png, disp0.pfm (inf = invalid), calib.txt
  middlebury2006  <scene>/view1.png, view5.png, disp1.png (8-bit, 0 = invalid, value / gt_scale px;
                  2005 and 2006 share it; gt_scale is 1 full, 2 half, 3 third size, default from width)
  eth3d           <scene>/im0.png, im1.png, disp0GT.pfm (inf = invalid), mask0nocc.png (255 = non-occluded;
                  the official metric, so only those pixels are valid). MiddEval3 uses the same layout.
  folder          left/*.png + right/*.png with matching names, no ground truth (self-supervised)
  (auto only)     a ROS 2 bag: .mcap / .db3 file or rosbag2 directory (data/bags.py; self-supervised only)
A directory that is itself one scene (Middlebury / ETH3D) is accepted as a one-scene dataset.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import Dataset

from ..fileio import read_pfm, read_rgb
from ..pair import StereoPair

FORMATS = ("sceneflow", "kitti2015", "kitti2012", "middlebury2014", "middlebury2006", "eth3d", "folder")
MODES = ("supervised", "self-supervised")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".webp")

GroundTruth = Callable[[], tuple[np.ndarray, np.ndarray]]  # -> (disparity px, valid)


@dataclass(frozen=True)
class PairFiles:
    name: str
    left: Path
    right: Path
    ground_truth: GroundTruth | None  # reads (disparity, valid) when called; None: no ground truth

    def load(self, with_gt: bool = True) -> StereoPair:
        left, right = read_rgb(self.left), read_rgb(self.right)
        if left.shape != right.shape:
            raise ValueError(f"{self.name}: left {left.shape} and right {right.shape} images differ in size")
        if not with_gt or self.ground_truth is None:
            return StereoPair(left, right, None, None)
        disparity, valid = self.ground_truth()
        if disparity.shape != left.shape[:2]:
            raise ValueError(f"{self.name}: ground truth is {disparity.shape[1]}x{disparity.shape[0]} but the images "
                             f"are {left.shape[1]}x{left.shape[0]}")
        return StereoPair(left, right, disparity.astype(np.float32), valid)


# Ground-truth decoders, one per encoding; partials of module functions so that DataLoader workers
# can pickle them under any start method.
def _read_pfm_gt(path: Path, mask: Path | None) -> tuple[np.ndarray, np.ndarray]:
    disparity = read_pfm(path)
    if disparity.ndim != 2:
        raise ValueError(f"{path}: a 3-channel PFM, not a disparity map (one channel expected)")
    valid = np.isfinite(disparity) & (disparity >= 0)
    if mask is not None and mask.is_file():
        valid &= _read_grey(mask) == 255
    return np.where(valid, disparity, 0.0).astype(np.float32), valid


def _read_png_gt(path: Path, divisor: float | None) -> tuple[np.ndarray, np.ndarray]:
    """KITTI: uint16 / 256. Middlebury 2005/06: uint8 / gt_scale (None: guess the scale from the width)."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise FileNotFoundError(f"{path}: cannot read")
    if raw.ndim == 3:
        # A grey map saved with three equal channels is fine; a colour image is not a disparity map
        # (e.g. a left image or a colour-mapped visualisation given by mistake).
        if not all(np.array_equal(raw[..., 0], raw[..., c]) for c in range(1, raw.shape[2])):
            raise ValueError(f"{path}: a colour image, not a disparity map (one channel expected)")
        raw = raw[..., 0]
    d = divisor if divisor is not None else _middlebury2006_scale(raw.shape[1])
    valid = raw > 0
    return np.where(valid, raw.astype(np.float32) / np.float32(d), 0.0).astype(np.float32), valid


def ground_truth_reader(path: Path, gt_scale: float = 1.0) -> GroundTruth:
    """One ground-truth file by its extension: PFM (inf = invalid) or PNG (value / gt_scale, 0 = invalid;
    KITTI's 16-bit PNGs need gt_scale 256); reads (disparity px, valid) when called."""
    return _pfm_inf_invalid(path) if path.suffix.lower() == ".pfm" else _png_zero_invalid(path, gt_scale)


def read_ground_truth(path: str | Path, gt_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """`ground_truth_reader(path, gt_scale)()`: (disparity px, valid) now."""
    return ground_truth_reader(Path(path), gt_scale)()


def _pfm_inf_invalid(path: Path, mask: Path | None = None) -> GroundTruth:
    return partial(_read_pfm_gt, path, mask)


def _png_zero_invalid(path: Path, divisor: float | None) -> GroundTruth:
    return partial(_read_png_gt, path, divisor)


def _read_grey(path: Path) -> np.ndarray:
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise FileNotFoundError(f"{path}: cannot read")
    return np.asarray(raw[..., 0] if raw.ndim == 3 else raw)


def _middlebury2006_scale(width: int) -> float:
    # Full-size images are 1240-1396 px wide, half-size 620-698, third-size 413-465.
    return 1.0 if width > 1000 else 2.0 if width > 550 else 3.0


# Layouts.
def _images(directory: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(directory.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES} if directory.is_dir() else {}


def _kitti_root(directory: Path, left_dir: str) -> Path | None:
    for root in (directory, directory / "training"):
        if (root / left_dir).is_dir():
            return root
    return None


def _kitti(directory: Path, left_dir: str, right_dir: str, disp_dir: str) -> list[PairFiles]:
    root = _kitti_root(directory, left_dir)
    if root is None:
        raise FileNotFoundError(f"{directory}: no {left_dir}/ (or training/{left_dir}/)")
    pairs = []
    for stem, left in _images(root / left_dir).items():
        gt = root / disp_dir / f"{stem}.png"
        right = root / right_dir / left.name
        if gt.is_file() and right.is_file():  # only the _10 frames have ground truth
            pairs.append(PairFiles(stem, left, right, _png_zero_invalid(gt, 256.0)))
    return pairs


def _sceneflow(directory: Path) -> list[PairFiles]:
    frames = next((directory / d for d in ("frames_cleanpass", "frames_finalpass") if (directory / d).is_dir()), None)
    if frames is None:
        raise FileNotFoundError(f"{directory}: no frames_cleanpass/ or frames_finalpass/")
    pairs = []
    for left_dir in sorted(p for p in frames.rglob("left") if p.is_dir()):
        rel = left_dir.parent.relative_to(frames)
        for stem, left in _images(left_dir).items():
            right = left_dir.parent / "right" / left.name
            gt = directory / "disparity" / rel / "left" / f"{stem}.pfm"
            if right.is_file() and gt.is_file():
                pairs.append(PairFiles(f"{rel}/{stem}", left, right, _pfm_inf_invalid(gt)))
    return pairs


def _scenes(directory: Path, marker: str) -> list[Path]:
    if (directory / marker).is_file():
        return [directory]
    return [p for p in sorted(directory.iterdir()) if p.is_dir() and (p / marker).is_file()]


def _find(scene: Path, stem: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        if (scene / f"{stem}{suffix}").is_file():
            return scene / f"{stem}{suffix}"
    raise FileNotFoundError(f"{scene}: no {stem}.png")


def _middlebury2014(directory: Path) -> list[PairFiles]:
    return [PairFiles(s.name, _find(s, "im0"), _find(s, "im1"), _pfm_inf_invalid(s / "disp0.pfm"))
            for s in _scenes(directory, "disp0.pfm")]


def _eth3d(directory: Path) -> list[PairFiles]:
    return [PairFiles(s.name, _find(s, "im0"), _find(s, "im1"), _pfm_inf_invalid(s / "disp0GT.pfm", s / "mask0nocc.png"))
            for s in _scenes(directory, "disp0GT.pfm")]


def _middlebury2006(directory: Path, gt_scale: float | None) -> list[PairFiles]:
    return [PairFiles(s.name, _find(s, "view1"), _find(s, "view5"), _png_zero_invalid(_find(s, "disp1"), gt_scale))
            for s in _scenes(directory, "disp1.png")]


def _folder(directory: Path) -> list[PairFiles]:
    rights = _images(directory / "right")
    return [PairFiles(stem, left, rights[stem], None) for stem, left in _images(directory / "left").items() if stem in rights]


def detect_format(directory: str | Path) -> str:
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: dataset directory not found")
    if (d / "frames_cleanpass").is_dir() or (d / "frames_finalpass").is_dir():
        return "sceneflow"
    if _kitti_root(d, "image_2") is not None:
        return "kitti2015"
    if _kitti_root(d, "colored_0") is not None:
        return "kitti2012"
    if (d / "left").is_dir() and (d / "right").is_dir():
        return "folder"
    for marker, name in (("disp0.pfm", "middlebury2014"), ("disp0GT.pfm", "eth3d"), ("disp1.png", "middlebury2006")):
        if _scenes(d, marker):
            return name
    raise ValueError(f"{d}: unrecognised dataset layout; give --format, one of {FORMATS}")


def list_pairs(directory: str | Path, data_format: str = "auto", gt_scale: float | None = None) -> list[PairFiles]:
    d = Path(directory)
    fmt = detect_format(d) if data_format == "auto" else data_format
    readers: dict[str, Callable[[], list[PairFiles]]] = {
        "sceneflow": lambda: _sceneflow(d),
        "kitti2015": lambda: _kitti(d, "image_2", "image_3", "disp_occ_0"),
        "kitti2012": lambda: _kitti(d, "colored_0", "colored_1", "disp_occ"),
        "middlebury2014": lambda: _middlebury2014(d),
        "middlebury2006": lambda: _middlebury2006(d, gt_scale),
        "eth3d": lambda: _eth3d(d),
        "folder": lambda: _folder(d),
    }
    if fmt not in readers:
        raise ValueError(f"unknown dataset format {fmt!r}; choose 'auto' or one of {FORMATS}")
    pairs = readers[fmt]()
    if not pairs:
        raise ValueError(f"{d}: no stereo pairs found in the {fmt} layout")
    return pairs


class StereoDataset(Dataset):
    """Random access to the pairs of a dataset; ground truth is not read when it is not used."""

    def __init__(self, pairs: list[PairFiles], with_gt: bool) -> None:
        self.pairs, self.with_gt = pairs, with_gt

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> StereoPair:
        return self.pairs[index].load(self.with_gt)


def open_training_dataset(directory: str | Path, data_format: str = "auto", mode: str = "supervised",
                          gt_scale: float | None = None, left_topic: str | None = None,
                          right_topic: str | None = None, tolerance_s: float = 0.0) -> Dataset:
    """Full-size StereoPairs (the training loop crops). Self-supervised: images only.
    A ROS 2 bag (data/bags.py) is read as its stereo pairs, paired within tolerance_s; the topics are
    needed only when ambiguous."""
    if mode not in MODES:
        raise ValueError(f"unknown training mode {mode!r}; choose one of {MODES}")
    from .bags import is_bag, open_bag_dataset  # noqa: PLC0415 (rosbags only when a bag is given)
    if data_format == "auto" and is_bag(directory):
        if mode == "supervised":
            raise ValueError(f"{directory}: a bag has no ground-truth disparity; use --mode self-supervised")
        return open_bag_dataset(directory, left_topic, right_topic, tolerance_s)
    pairs = list_pairs(directory, data_format, gt_scale)
    if mode == "supervised" and any(p.ground_truth is None for p in pairs):
        raise ValueError(f"{directory}: no ground-truth disparity for supervised training; use --mode self-supervised")
    return StereoDataset(pairs, with_gt=mode == "supervised")


def open_eval_dataset(directory: str | Path, data_format: str = "auto",
                      gt_scale: float | None = None) -> Iterator[tuple[str, StereoPair]]:
    """(name, StereoPair) for every pair, full resolution, with ground truth where the format has it."""
    for pair in list_pairs(directory, data_format, gt_scale):
        yield pair.name, pair.load()
