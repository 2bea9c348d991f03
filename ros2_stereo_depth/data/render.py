"""Render a layered scene to a rectified stereo pair with exact disparity and occlusion.

A layer is a textured, masked surface given in left-image coordinates on a canvas wider than the
image (the right camera sees up to max disparity beyond the left image's right border). Its
disparity is a plane d(x, y) = a + b*x + c*y, optionally plus a smooth surface term u(x, y).
Both views are rendered by inverse mapping: the right pixel xr sees the surface point with left
coordinate x where x - d(x, y) = xr, i.e. x = (xr + a + c*y + u(x, y)) / (1 - b) (closed form for
planes, a contracting fixed-point iteration for surfaces, |du/dx| < 1 - b). Views are z-buffered
per pixel by disparity (nearer = larger wins). Because every left pixel and every right pixel shows
the nearest surface point on its ray, and both read the same texture at the same surface point, the
triple (left, right, disparity) is consistent by construction: right(x - d(x)) = left(x) wherever
the left pixel is not occluded. A right pixel that no layer covers stays black, so scenes put a
full-canvas layer behind everything (the content that disocclusions really show).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Fixed-point iterations for curved layers; with |du/dx| / (1 - b) <= 0.5 the error shrinks 2^-12.
_SURFACE_ITERATIONS = 12


@dataclass
class StereoSample:
    left: np.ndarray  # (H,W,3) uint8 RGB
    right: np.ndarray  # (H,W,3) uint8 RGB
    disparity_px: np.ndarray  # (H,W) float32, left view, exact
    disparity_right_px: np.ndarray  # (H,W) float32, right view, exact
    occluded: np.ndarray  # (H,W) bool: left pixel not visible in the right image (or outside it)


@dataclass
class Layer:
    texture: np.ndarray  # (H, Wc, 3) float32 in [0,1] or uint8, canvas in left-image coordinates
    mask: np.ndarray  # (H, Wc) 0/1 (any numeric dtype)
    plane: tuple[float, float, float]  # a, b, c of d = a + b*x + c*y
    surface: np.ndarray | None = None  # (H, Wc) float32 u(x, y) added to the plane, or None


@dataclass
class Rendered:
    """A rendered view pair before conversion to uint8: float images in [0, 1] and, per pixel, the
    index of the visible layer (-1: none) for effects tied to a surface (specular highlights)."""
    left: np.ndarray
    right: np.ndarray
    disparity_left: np.ndarray
    disparity_right: np.ndarray
    layer_left: np.ndarray
    layer_right: np.ndarray


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of the nonzero pixels, None when there are none."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _as_float(colour: np.ndarray) -> np.ndarray:
    return colour.astype(np.float32) * np.float32(1.0 / 255.0) if colour.dtype == np.uint8 else colour


def _layer_disparity_range(layer: Layer, box: tuple[int, int, int, int]) -> tuple[float, float]:
    y0, y1, x0, x1 = box
    a, b, c = layer.plane
    corners = [a + b * x + c * y for x in (x0, x1 - 1) for y in (y0, y1 - 1)]
    lo, hi = min(corners), max(corners)
    if layer.surface is not None:
        u = layer.surface[y0:y1, x0:x1]
        lo, hi = lo + float(u.min()), hi + float(u.max())
    return lo, hi


def _left_coordinate(layer: Layer, xr: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Left-image x of the layer point seen at right-image column xr (rows ys)."""
    a, b, c = layer.plane
    x = (xr + a + c * ys) / (1.0 - b)
    if layer.surface is not None:
        for _ in range(_SURFACE_ITERATIONS):
            u = cv2.remap(layer.surface, x.astype(np.float32), ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            x = (xr + a + c * ys + u) / (1.0 - b)
    return x.astype(np.float32)


def _disparity_at(layer: Layer, x: np.ndarray, ys: np.ndarray, exact_grid: tuple[slice, slice] | None) -> np.ndarray:
    a, b, c = layer.plane
    d = a + b * x + c * ys
    if layer.surface is not None:
        if exact_grid is not None:  # left view: pixel centres, no interpolation
            d = d + layer.surface[exact_grid]
        else:
            d = d + cv2.remap(layer.surface, x, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return d.astype(np.float32)


def render_layers(layers: list[Layer], height: int, width: int, offsets_px: list[float] | None = None) -> Rendered:
    """Both views of `layers`; each layer slid right by its offset (sequences: wraps around its canvas).
    Work is limited to each layer's bounding box (and its image in the right view)."""
    offsets = offsets_px or [0.0] * len(layers)
    canvas_w = max(layer.mask.shape[1] for layer in layers) if layers else width
    grid_y, grid_x = np.mgrid[0:height, 0:max(canvas_w, width)].astype(np.float32)
    out = {}
    for view in ("left", "right"):
        best_d = np.full((height, width), -np.inf, np.float32)
        image = np.zeros((height, width, 3), np.float32)
        index = np.full((height, width), -1, np.int16)
        for k, (layer, offset) in enumerate(zip(layers, offsets)):
            box = (0, height, 0, layer.mask.shape[1]) if offset else mask_bbox(layer.mask[:height])
            if box is None:
                continue
            y0, y1, x0, x1 = box
            if view == "left":
                c0, c1 = (0, width) if offset else (x0, min(x1, width))
            else:
                d_lo, d_hi = _layer_disparity_range(layer, box)
                # the layer's columns in the right view: its box moved left by its disparity range
                c0, c1 = (0, width) if offset else (max(0, int(np.floor(x0 - d_hi)) - 1),
                                                    min(width, int(np.ceil(x1 - d_lo)) + 1))
            if c1 <= c0:
                continue
            target = (slice(y0, y1), slice(c0, c1))
            ys, xs = grid_y[target], grid_x[target]
            if view == "left" and not offset:
                covered = layer.mask[target] > 0
                colour = _as_float(layer.texture[target])
                d = _disparity_at(layer, xs, ys, target)
            else:
                x_left = xs if view == "left" else _left_coordinate(layer, xs, ys)
                d = _disparity_at(layer, x_left, ys, None)
                map_x = (x_left - np.float32(offset)).astype(np.float32)
                border = cv2.BORDER_WRAP if offset else cv2.BORDER_CONSTANT
                mask = layer.mask if layer.mask.dtype in (np.uint8, np.float32) else layer.mask.astype(np.uint8)
                covered = cv2.remap(mask, map_x, ys, cv2.INTER_NEAREST, borderMode=border) > 0
                colour = _as_float(cv2.remap(layer.texture, map_x, ys, cv2.INTER_LINEAR, borderMode=border))
            front = covered & (d > best_d[target])
            np.copyto(image[target], colour, where=front[..., None])
            np.copyto(best_d[target], d, where=front)
            np.copyto(index[target], np.int16(k), where=front)
        out[view] = (image, best_d, index)
    (left, disp_l, idx_l), (right, disp_r, idx_r) = out["left"], out["right"]
    return Rendered(left, right, disp_l, disp_r, idx_l, idx_r)


def occlusion(disparity_left: np.ndarray, disparity_right: np.ndarray, tolerance_px: float = 1.0) -> np.ndarray:
    """A left pixel is visible on the right when the right view shows the same surface there (within
    `tolerance_px` at the nearest right pixel) and its match lies inside the right image."""
    width = disparity_left.shape[1]
    finite = np.isfinite(disparity_left)
    xr_exact = np.where(finite, np.arange(width, dtype=np.float32)[None, :] - disparity_left, -1.0)
    # inside means interpolable: a match in the last half pixel has only one neighbour
    inside = (xr_exact >= 0) & (xr_exact <= width - 1)
    xr = np.clip(np.rint(xr_exact), 0, width - 1).astype(np.int64)
    seen = np.take_along_axis(disparity_right, xr, axis=1)
    return ~inside | ~(np.abs(seen - disparity_left) <= tolerance_px)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8, rounded and saturated (np.clip is slow on large float arrays)."""
    scaled = image * np.float32(255.0) + np.float32(0.5)
    np.maximum(scaled, 0.0, out=scaled)
    return np.minimum(scaled, 255.0, out=scaled).astype(np.uint8)


def finish(rendered: Rendered) -> StereoSample:
    """uint8 views, float32 disparities; pixels no layer covers get disparity 0 (scenes avoid them).
    Disparities are clamped at 0: scenes are built >= 0, float rounding can leave -1e-8."""
    def clean(disparity: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(disparity), np.maximum(disparity, 0.0), 0.0).astype(np.float32)

    disp_l, disp_r = clean(rendered.disparity_left), clean(rendered.disparity_right)
    occluded = occlusion(rendered.disparity_left, rendered.disparity_right)
    return StereoSample(to_uint8(rendered.left), to_uint8(rendered.right), disp_l, disp_r, occluded)


def render(layers: list[Layer], height: int, width: int, offsets_px: list[float] | None = None,
           max_disparity_px: float | None = None) -> StereoSample:
    """Render both views of `layers`. `max_disparity_px` only checks: scenes are built within range,
    since clipping the ground truth would break its consistency with the images."""
    sample = finish(render_layers(layers, height, width, offsets_px))
    if max_disparity_px is not None and sample.disparity_px.max(initial=0.0) > max_disparity_px + 1e-3:
        raise ValueError(f"scene disparity {sample.disparity_px.max():.2f} px exceeds {max_disparity_px:.2f} px")
    return sample


def add_specular(rng: np.random.Generator, rendered: Rendered, layer: int, amplitude: float,
                 sigma_px: float, shift_px: float) -> None:
    """A glossy highlight on one layer that sits on different surface points in the two views (it
    follows the light, not the surface): a Gaussian around left pixel (cx, cy) in the left view and
    around the surface point `shift_px` further right in the right view. In place; brightens toward
    white. Pixels under a highlight break photo-consistency on purpose, like real gloss."""
    on_left = rendered.layer_left == layer
    if not on_left.any():
        return
    ys, xs = np.nonzero(on_left)
    pick = int(rng.integers(len(ys)))
    cx, cy = float(xs[pick]), float(ys[pick])
    height, width = on_left.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    right_surface_x = xx + np.where(np.isfinite(rendered.disparity_right), rendered.disparity_right, 0.0)
    for image, on, surface_x in ((rendered.left, on_left, xx - cx),
                                 (rendered.right, rendered.layer_right == layer, right_surface_x - cx - shift_px)):
        glow = amplitude * np.exp(-(surface_x ** 2 + (yy - cy) ** 2) / np.float32(2 * sigma_px ** 2)) * on
        image += glow[..., None].astype(np.float32) * (1.0 - image)
