"""Census block matching around a prior disparity (level 1 and 2 of the local matching,
inference/local_matching.py): each pixel re-matched within +-radius of the prior.

- cost: Hamming distance of census codes (robust to gain and exposure differences between the views),
  summed over a WINDOW_PX square that follows the prior (each window pixel is matched at its own
  candidate, so slanted surfaces stay matchable), plus STEP_PENALTY per px away from the prior so that a
  flat cost (no texture) keeps the network's value;
- the minimum, refined to sub-pixel by a parabola through its neighbours, replaces the prior only where it
  lies strictly inside the search window (a minimum at the window's edge says the answer is outside it)
  and is a good match (MAX_MATCH_COST: on a noisy camera every candidate is poor, and the prior stays).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import cv2
import numpy as np

from .matching_kernels import match_rows

CENSUS_RADIUS = 3
# A 7x7 census sampled on a checkerboard: 24 bits (one uint32), as accurate on Aloe as all 48 (22.3 vs
# 22.2 % bad-2 at half size) at half the memory traffic.
CENSUS_OFFSETS = tuple((dy, dx) for dy in range(-CENSUS_RADIUS, CENSUS_RADIUS + 1)
                       for dx in range(-CENSUS_RADIUS, CENSUS_RADIUS + 1) if (dy, dx) != (0, 0) and (dy + dx) % 2 == 0)
WINDOW_PX = 9  # side of the cost window (7: 0.6 pp worse on Aloe, 13: no better and slower)
STEP_PENALTY = 0.25  # mean Hamming bits per px of departure from the network's disparity (0: 1.4 pp worse)
# A match is trusted only where at most this share of the census bits differ over the window. Noise makes
# every candidate costly, and there the network knows better: without this gate the matching made the
# noisy held-out-domain recording (README "Fine-tuning") worse, bad-2 6.3 -> 27.7 % for `fast`; with it
# 6.3 -> 6.5 %, while Aloe keeps most of its gain (0.30 would keep more of it, but costs the noisy
# recording 1.8 pp).
MAX_MATCH_COST = 0.25
MAX_RADIUS_PX = 32
# Edge seeds (refine_band): local max / min of the prior over this window (px at the matched size), and
# the margin (mean bits per window pixel) by which a seed's match must beat the first one. Aloe, fast:
# 25.7 -> 22.3 % bad-2 at full size, 20.8 -> 17.8 % at half; the noisy recording unchanged.
SEED_WINDOW_PX = 31
SEED_MARGIN = 1.0
# Horizontal bands matched in parallel threads (NumPy and OpenCV release the GIL): 1.5-1.7x faster on 2
# cores, bit-identical, because each band carries rows of context: census and window, plus the seed
# window with edge seeds (band_halo_rows).
BANDS = min(4, os.cpu_count() or 1)  # threads by default
# Bands at least this tall. 16 threads on a 16-core machine (an H100 host) used to cut 480 rows into 15
# bands of 32 rows, each with up to 44 rows of context: `fast`'s matching at 640x480 took 274 ms and at
# 1280x720 298 ms, against 113 and 141 ms with the default 4 bands; with bands of at least 96 rows, 110 and
# 144 ms (more threads do not help further: context, OpenCV's own threads and SGBM set the pace).
MIN_BAND_ROWS = 96
MAX_BAND_PIXELS = 320_000  # larger images take more bands than threads: memory stays bounded
_pools: dict[int, ThreadPoolExecutor] = {}  # by thread count, created on first use


def census_transform(gray: np.ndarray) -> np.ndarray:
    """(H,W) uint8 -> (H,W) uint32 census codes: bit j set when neighbour CENSUS_OFFSETS[j] is darker than
    the centre (reflected border)."""
    h, w = gray.shape
    r = CENSUS_RADIUS
    padded = cv2.copyMakeBorder(gray, r, r, r, r, cv2.BORDER_REFLECT)
    planes = [np.zeros((h, w), np.uint8) for _ in range(4)]  # one byte plane per 8 bits (cv2 ops: fast)
    for j, (dy, dx) in enumerate(CENSUS_OFFSETS):
        darker = cv2.compare(padded[r + dy:r + dy + h, r + dx:r + dx + w], gray, cv2.CMP_LT)  # 255 / 0
        cv2.bitwise_or(planes[j // 8], cv2.bitwise_and(darker, 1 << (j % 8)), dst=planes[j // 8])
    return np.ascontiguousarray(np.dstack(planes)).view(np.uint32)[..., 0]


class Refined(NamedTuple):
    disparity_px: np.ndarray  # (H,W) float32
    matched: np.ndarray  # (H,W) bool: a match replaced the prior there


def refine_disparity(left_rgb: np.ndarray, right_rgb: np.ndarray, disparity_px: np.ndarray,
                     radius_px: int, edge_seeds: bool = False, threads: int = 0) -> Refined:
    """The network's disparity (H,W, px of these images) re-matched within +-radius_px (see
    `refine_band`), in `threads` (0: BANDS) horizontal bands in parallel."""
    prior = np.asarray(disparity_px, np.float32)
    h, w = prior.shape
    if left_rgb.shape[:2] != (h, w) or right_rgb.shape[:2] != (h, w):
        raise ValueError(f"local matching: images {left_rgb.shape[1]}x{left_rgb.shape[0]} and "
                         f"{right_rgb.shape[1]}x{right_rgb.shape[0]} must match the disparity's {w}x{h}")
    workers = threads or BANDS
    halo = band_halo_rows(edge_seeds)
    bands = band_count(h, w, workers)
    if radius_px == 0 or bands == 1:
        return refine_band(left_rgb, right_rgb, prior, radius_px, edge_seeds)
    cuts = [round(i * h / bands) for i in range(bands + 1)]

    def band(i: int) -> Refined:
        top, bottom = max(0, cuts[i] - halo), min(h, cuts[i + 1] + halo)
        out = refine_band(left_rgb[top:bottom], right_rgb[top:bottom], prior[top:bottom], radius_px, edge_seeds)
        return Refined(*(a[cuts[i] - top:cuts[i + 1] - top] for a in out))

    parts = list(thread_pool(workers).map(band, range(bands)))
    return Refined(np.vstack([p.disparity_px for p in parts]), np.vstack([p.matched for p in parts]))


def thread_pool(workers: int) -> ThreadPoolExecutor:
    """The local matching's pool of `workers` threads (one per count, created on first use; the edge
    stage, edge_sides.py, shares it)."""
    if workers not in _pools:
        _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="local_matching")
    return _pools[workers]


def band_halo_rows(edge_seeds: bool) -> int:
    """Rows of context a band needs on each side for its own rows to match exactly as in the whole image."""
    return CENSUS_RADIUS + WINDOW_PX // 2 + (SEED_WINDOW_PX // 2 if edge_seeds else 0)


def band_count(height: int, width: int, workers: int) -> int:
    """Bands for `workers` threads: more for large images (MAX_BAND_PIXELS), fewer when they would be
    under MIN_BAND_ROWS tall."""
    return max(1, min(max(workers, -(-height * width // MAX_BAND_PIXELS)), height // MIN_BAND_ROWS))


def refine_band(left_rgb: np.ndarray, right_rgb: np.ndarray, prior: np.ndarray, radius_px: int,
                edge_seeds: bool) -> Refined:
    """The network's disparity (H,W, px of these images) re-matched within +-radius_px.
    With edge_seeds, also within +-radius_px // 2 of the prior's local maximum and minimum over
    SEED_WINDOW_PX (the nearest foreground and background: the network blurs a depth edge, so near one the
    answer is often one side's disparity, further from the prior than the radius); a seed's match replaces
    the first one where it costs SEED_MARGIN bits per pixel less."""
    if radius_px == 0:
        return Refined(prior, np.zeros(prior.shape, bool))
    codes = census_codes(left_rgb, right_rgb)
    disparity, cost = match_around(codes, prior, radius_px)
    if edge_seeds and radius_px >= 2:
        kernel = np.ones((SEED_WINDOW_PX, SEED_WINDOW_PX), np.uint8)
        for seed in (cv2.dilate(prior, kernel), cv2.erode(prior, kernel)):
            seed_disparity, seed_cost = match_around(codes, seed, radius_px // 2)
            better = seed_cost + np.float32(SEED_MARGIN * WINDOW_PX ** 2) < cost
            disparity = np.where(better, seed_disparity, disparity)
            cost = np.where(better, seed_cost, cost)
    return Refined(disparity, np.isfinite(cost))


def window_cost_at(left_rgb: np.ndarray, right_rgb: np.ndarray, disparity_px: np.ndarray) -> np.ndarray:
    """The share of census bits that differ over the WINDOW_PX window when each pixel is matched at its
    rounded disparity (NaN: 0), (H,W) float32 in [0, 1]; matches left of the right image use its first column."""
    left_codes = census_transform(cv2.cvtColor(left_rgb, cv2.COLOR_RGB2GRAY))
    right_codes = census_transform(cv2.cvtColor(right_rgb, cv2.COLOR_RGB2GRAY))
    w = disparity_px.shape[1]
    match_x = np.clip(np.arange(w)[None, :] - np.rint(np.nan_to_num(disparity_px, nan=0.0)).astype(np.int32), 0, w - 1)
    bits = np.bitwise_count(left_codes ^ np.take_along_axis(right_codes, match_x, 1)).astype(np.float32)
    return cv2.boxFilter(bits, -1, (WINDOW_PX, WINDOW_PX), normalize=True, borderType=cv2.BORDER_REFLECT) / len(CENSUS_OFFSETS)


def census_codes(left_rgb: np.ndarray, right_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The images' census codes as `match_around` takes them: the left one's (H,W), and the right one's
    flattened and padded on both sides with its first and last code (`right_codes_padding`)."""
    left_codes = census_transform(cv2.cvtColor(left_rgb, cv2.COLOR_RGB2GRAY))
    right_codes = census_transform(cv2.cvtColor(right_rgb, cv2.COLOR_RGB2GRAY)).ravel()
    padding = right_codes_padding(left_rgb.shape[1])
    return left_codes, np.concatenate([np.full(padding, right_codes[0], np.uint32), right_codes,
                                       np.full(padding, right_codes[-1], np.uint32)])


def right_codes_padding(width: int) -> int:
    """Codes padded on each side of the right image's: every match `match_around` reads lies within 2
    widths + the radius of its own pixel, so no index needs clipping in the compiled loop."""
    return 2 * width + MAX_RADIUS_PX + 1


def match_around(codes: tuple[np.ndarray, np.ndarray], prior: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Census codes (`census_codes`) and a prior -> (disparity, cost): the match within
    +-radius of the prior and its window sum of differing bits, or (prior, inf) where the prior stays:
    the best match is not strictly inside the window, a neighbouring candidate cannot be judged because
    its matches leave the right image (the left border band: the answer may be there), the cost is flat
    around the minimum (no texture), or even the best match is poor (MAX_MATCH_COST: noise).
    The loop over candidates is compiled (matching_kernels.c)."""
    left_codes, right_codes = codes
    h, w = prior.shape
    prior = np.ascontiguousarray(prior, np.float32)
    centre = np.rint(np.nan_to_num(prior, nan=0.0))
    x_minus_centre = np.arange(w, dtype=np.float32)[None, :] - centre
    # A candidate offset cannot be judged where a pixel of its window would be matched left of the right
    # image: offset > min over the window of (x - centre), an erosion.
    window_room = cv2.erode(x_minus_centre, np.ones((WINDOW_PX, WINDOW_PX), np.uint8), borderType=cv2.BORDER_REPLICATE)
    # Index of each pixel's match at offset 0 in the padded right codes. Not kept inside its row: a match
    # left of the image reads the row above, but its candidate is unmatchable (window_room) for every
    # window it enters; one right of it (a negative disparity, near the right border) reads the row
    # below, and a negative answer is refused.
    match_index = (np.clip(x_minus_centre, -2 * w, 2 * w).astype(np.int32)
                   + (np.arange(h, dtype=np.int32) * w + right_codes_padding(w))[:, None])
    # Only the columns left of this can have unmatchable candidates (window_room < radius).
    unmatchable_columns = int(np.flatnonzero((window_room < radius).any(axis=0)).max(initial=-1)) + 1
    return match_rows(left_codes, right_codes, match_index, window_room, unmatchable_columns, prior, centre,
                      radius, WINDOW_PX // 2, round(STEP_PENALTY * WINDOW_PX ** 2),
                      MAX_MATCH_COST * len(CENSUS_OFFSETS) * WINDOW_PX ** 2)
