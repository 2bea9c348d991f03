"""The last stage of the local matching (inference/local_matching.py): beside a depth edge, each pixel
takes the side whose match is better, weighing the pixels around it by their likeness in colour.

Window matching fattens one side of a depth edge into the other: every window that straddles the edge
follows its more textured side. On Aloe the wallpaper behind is busier than the leaves, so the thin leaves
lose their outline to the background, and level 1's coarser grid and the upsampling to the camera add to
it. Here, at the camera resolution, every pixel near a jump of the disparity (its local maximum and
minimum over EDGE_WINDOW_PX differ by more than MIN_STEP_PX) is matched at its own value and at the
farther of those two (the other side of the edge), with adaptive support weights (Yoon & Kweon, "Adaptive
Support-Weight Approach for Correspondence Search", PAMI 2006): a window's pixels count by how close their
colour is to the centre's (CIELAB), so that pixels of the other side, which differ in colour, hardly
count. The other side's value replaces the pixel's where its cost is SIDE_MARGIN times lower; where
neither side matches (an occlusion), the farther side's does.

Aloe, `fast` through the node path: bad-2 10.15 -> 9.57 % at full size, 7.58 -> 7.10 % at half; depth-edge
EPE 16.4 -> 14.3 px (the filled SGBM's 14.9) and 8.08 -> 6.76 px; the noisy held-out recording 6.35 ->
6.39 %. The constants were chosen on Aloe at full size (README "Accuracy": tuned, not blind).
"""
from __future__ import annotations

import cv2
import numpy as np

from .census_matching import BANDS, thread_pool
from .matching_kernels import support_weighted_costs

EDGE_WINDOW_PX = 7  # the two sides: the disparity's local min and max over this square
MIN_STEP_PX = 6.0  # a depth edge: max - min over the window above this (px at the camera resolution)
# The support window: SUPPORT_RADIUS_PX around the pixel, every SUPPORT_STRIDE_PX-th pixel (5x5 samples over
# 13x13 px: as accurate on Aloe as all 121 of an 11x11 window, 14.75 against 14.71 px edge EPE before the
# occlusion rule, at a fifth of the gathers).
SUPPORT_RADIUS_PX = 6
SUPPORT_STRIDE_PX = 3
COLOUR_SIGMA = 10.0  # support weight exp(-CIELAB L1 distance / this)
MAX_COLOUR_ERROR = 40  # a pixel's matching error, the RGB L1 distance, capped here (occlusion, specularities)
SIDE_MARGIN = 1.2  # the other side wins when its cost x this is still below the pixel's own (1.0: bad-2 +0.4 pp)
MIN_CHANGE_PX = 2.0  # and when it differs by more than this (otherwise there is no other side to take)
# Where neither side matches (both costs above this), the left camera alone sees the pixel: an occlusion
# beside the edge, whose surface is the background's, so the pixel takes the farther side, as SGBM's hole
# fill does. Aloe, fast: bad-2 9.70 -> 9.57 % full, depth-edge EPE 14.75 -> 14.3 px; half size 7.25 ->
# 7.10 %; the noisy held-out recording 6.36 -> 6.39 % (0.6 or 0.7 of the cap do less on Aloe).
OCCLUDED_COST = 0.8 * MAX_COLOUR_ERROR

_WEIGHTS = np.exp(-np.arange(3 * 255 + 1, dtype=np.float32) / np.float32(COLOUR_SIGMA))


def snap_to_edge_sides(disparity_px: np.ndarray, left_rgb: np.ndarray, right_rgb: np.ndarray,
                       threads: int = 0) -> np.ndarray:
    """Pixels beside a depth edge moved to the side that matches them better (module docstring); the
    rest unchanged. (H,W) float32 at the images' size; `threads` (0: BANDS) share the pixels."""
    height, width = disparity_px.shape
    if left_rgb.shape[:2] != (height, width) or right_rgb.shape[:2] != (height, width):
        raise ValueError(f"edge sides: images {left_rgb.shape[1]}x{left_rgb.shape[0]} and "
                         f"{right_rgb.shape[1]}x{right_rgb.shape[0]} must match the disparity's {width}x{height}")
    disparity = np.nan_to_num(disparity_px, nan=0.0).astype(np.float32, copy=False)
    window = np.ones((EDGE_WINDOW_PX, EDGE_WINDOW_PX), np.uint8)
    low, high = cv2.erode(disparity, window), cv2.dilate(disparity, window)
    at = np.flatnonzero(high - low > MIN_STEP_PX)
    own = disparity.take(at)
    low, high = low.take(at), high.take(at)
    other = np.where(own - low > high - own, low, high)
    shift = np.maximum(np.rint(np.stack([other, own])), 0).astype(np.int32)
    rows, columns = np.divmod(at, width)
    # Only where both matches keep the whole support window inside the right image, and not where there is
    # no answer to move (NaN, read as 0 for the neighbours' minimum and maximum).
    keep = (columns - shift.max(axis=0) >= SUPPORT_RADIUS_PX) & np.isfinite(disparity_px.reshape(-1).take(at))
    at, own, other, shift, rows, columns = at[keep], own[keep], other[keep], shift[:, keep], rows[keep], columns[keep]
    if at.size == 0:
        return disparity_px

    pad = SUPPORT_RADIUS_PX
    padded_width = width + 2 * pad
    lab = cv2.cvtColor(left_rgb, cv2.COLOR_RGB2LAB)
    left, right, guide = (_packed(image, pad) for image in (left_rgb, right_rgb, lab))
    left_at = ((rows + pad) * padded_width + columns + pad).astype(np.int32)
    right_at = left_at[None, :] - shift

    def costs(part: slice) -> np.ndarray:
        """(2, n) weighted mean errors of the other side's match and the pixel's own, for at[part]."""
        return support_weighted_costs(left_at[part], right_at[:, part], left, right, guide,
                                      _WEIGHTS, pad, SUPPORT_STRIDE_PX, padded_width, MAX_COLOUR_ERROR)

    workers = min(threads or BANDS, at.size)
    cuts = np.linspace(0, at.size, workers + 1).astype(int)
    parts = [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]
    cost = np.concatenate(list(thread_pool(workers).map(costs, parts)), axis=1)
    sides_differ = np.abs(other - own) > MIN_CHANGE_PX
    occluded = sides_differ & (np.minimum(cost[0], cost[1]) > np.float32(OCCLUDED_COST))
    value = np.where(occluded, np.minimum(own, other), other)
    move = sides_differ & ((cost[0] * np.float32(SIDE_MARGIN) < cost[1]) | occluded) & (value != own)
    snapped = np.array(disparity_px, np.float32)
    snapped.reshape(-1)[at[move]] = value[move]
    return snapped


def _packed(rgb: np.ndarray, pad: int) -> np.ndarray:
    """An (H,W,3) uint8 image with `pad` replicated pixels around it, one uint32 per pixel (flattened):
    one load fetches a pixel's three channels (bytes 0-2; byte 3, an alpha of 255, is never read)."""
    padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return cv2.cvtColor(padded, cv2.COLOR_RGB2RGBA).view(np.uint32).reshape(-1)
