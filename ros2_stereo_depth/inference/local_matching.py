"""Local matching around the network's disparity: the resolution a shrunken network input loses.

The network sees the camera images shrunk to its input size (640x480 for `fast`) and regresses a smooth
disparity that is often a few px off at that size, times the shrink factor at the camera's. This stage
keeps the network's answer as a prior and re-matches every pixel within +-radius of it:

- cost: Hamming distance of census codes (robust to gain and exposure differences between the views),
  summed over a WINDOW_PX square that follows the prior (each window pixel is matched at its own
  candidate, so slanted surfaces stay matchable), plus STEP_PENALTY per px away from the prior so that a
  flat cost (no texture) keeps the network's value;
- the minimum, refined to sub-pixel by a parabola through its neighbours, replaces the prior only where it
  lies strictly inside the search window (a minimum at the window's edge says the answer is outside it)
  and is a good match (MAX_MATCH_COST: on a noisy camera every candidate is poor, and the prior stays).

Two levels (inference/base.py infer_at_image_size). Level 1 (radius_px, with edge seeds: see
`refine_band`) works at the network input's width and the images' aspect ratio (`first_level_size`;
at the images' own size when they are not much wider), on the network's disparity
resized there; `fuse_sgbm` then adds OpenCV SGBM's trusted matches and fills occlusions from the
background. When the images are larger still, the result is brought to their size (bilinear, but each
pixel beside a depth edge takes the side its colour matches: `upsample_to_camera`) and level 2
(camera_radius_px) re-matches there around it. The network gives the global answer (textureless regions, occlusions, the
search range); matching gives the precision. Aloe, `fast` through the node path: bad-2 44.0 -> 21.4 %
(census matching) -> 10.2 % (with SGBM, level 1 at the image's aspect ratio) at full size (README
"Accuracy"). The constants below were chosen on Aloe, the held-out-domain recording and the demo scene,
which are also what we evaluate on: treat those figures as tuned, not blind.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from .sgbm import fill_holes, sgbm_disparity, sgbm_num_disparities

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
UNMATCHABLE = np.iinfo(np.uint16).max  # the cost of a candidate whose window reaches outside the right image
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
MIN_BAND_ROWS = 32
MAX_BAND_PIXELS = 320_000  # larger images take more bands than threads: memory stays bounded
# SGBM fused at level 1 (`fuse_sgbm`): block size 3 (Aloe: 16.2 % vs 16.6 % with 5, 17.2 % with 7,
# before the fill) and a search range of 1.25x the network's largest disparity + 8 px.
SGBM_BLOCK_SIZE = 3
SGBM_RANGE_FACTOR = 1.25
SGBM_RANGE_MARGIN_PX = 8.0
# A trusted SGBM match needs this share of trusted ones in the window around it: `tiny` on the noisy held-out
# recording 12.0 -> 10.9 % bad-2 (10.6 % without SGBM), Aloe unchanged.
SGBM_DENSITY_WINDOW_PX = 31
SGBM_MIN_DENSITY = 0.3
# Where nothing else answered (no trusted SGBM match, no census match), an SGBM match up to this census cost
# (1.5x the gate) in a supported neighbourhood beats the background fill and the network: mostly beside
# depth edges. Aloe, fast: bad-2 11.8 -> 11.4 % full, 8.5 -> 8.0 % half, edge EPE 17.4 -> 16.8 / 8.7 -> 8.2 px;
# tiny 20.2 -> 20.0 / 14.9 -> 14.8 %; the held-out recording and the demo frame unchanged (0.30 and 0.45 do
# less on Aloe).
SGBM_PLAUSIBLE_COST = 1.5 * MAX_MATCH_COST
# Level 1 matches at the network input's width (disparity is horizontal: its precision is in columns) and
# the images' aspect ratio, or at the images' own size when they are at most this much wider; never on the
# network input's aspect ratio, which squashes an image of another shape (Aloe 1282x1110 -> 640x480 loses 13 %
# more of its rows than of its columns). Aloe, fast: at half size (641x555) bad-2 9.5 -> 8.5 % with no second
# level; at full size (matched at 640x554) 12.2 -> 11.8 %; tiny 21.1 -> 20.2 % (256x222); the held-out
# recording (320x240, matched there rather than upscaled to 640x480) 6.5 -> 6.35 % in a third of the time;
# tiny's demo frame (320x240 for a 256x192 input) 21.1 -> 14.8 %.
MATCH_WIDTH_SLACK = 1.25
# Level 1 -> camera resolution: where the four level-1 pixels around a camera pixel disagree by more than
# this (px at level 1: a depth edge), the camera pixel takes the value of the one whose colour is nearest
# its own, not their bilinear mix, which belongs to neither side (`upsample_to_camera`). Aloe full size,
# fast: bad-2 11.4 -> 10.7 %, depth-edge bad-2 60 -> 53 %; tiny 20.0 -> 18.9 % (4 px: the same).
EDGE_SPREAD_PX = 2.0
_pools: dict[int, ThreadPoolExecutor] = {}  # by thread count, created on first use
_sgbm_thread = ThreadPoolExecutor(1, thread_name_prefix="local_matching_sgbm")


@dataclass(frozen=True)
class LocalMatching:
    """Search radii (px) around the network's disparity; 0 turns a level off; and whether SGBM's trusted
    matches are fused at level 1 (`fuse_sgbm`). The node's parameters match_radius_px,
    match_camera_radius_px and match_sgbm; their defaults are these."""
    radius_px: int = 16  # level 1, at `first_level_size`
    camera_radius_px: int = 4  # level 2, at the camera resolution, when level 1 was not
    threads: int = 0  # bands matched in parallel; 0: BANDS (the node passes its `threads` parameter)
    sgbm: bool = True

    def __post_init__(self) -> None:
        for name in ("radius_px", "camera_radius_px"):
            value = getattr(self, name)
            if not 0 <= value <= MAX_RADIUS_PX:
                raise ValueError(f"local matching {name} must be in [0, {MAX_RADIUS_PX}], not {value}")
        if self.threads < 0:
            raise ValueError(f"local matching threads must be >= 0, not {self.threads}")

    def first_level_size(self, image_wh: tuple[int, int], network_wh: tuple[int, int]) -> tuple[int, int]:
        """(width, height) at which level 1 matches images of image_wh for a network input of network_wh:
        the network input's width and the images' aspect ratio, or the images' own size when they are at
        most MATCH_WIDTH_SLACK times as wide. The network input itself when level 1 is off (the network's
        answer is then resized once)."""
        (w, h), network_w = image_wh, network_wh[0]
        if self.radius_px == 0 and not self.sgbm:
            return network_wh
        if w <= MATCH_WIDTH_SLACK * network_w:
            return image_wh
        return network_w, max(1, round(h * network_w / w))

    def at_first_level(self, left_rgb: np.ndarray, right_rgb: np.ndarray, disparity_px: np.ndarray) -> np.ndarray:
        """Level 1 (images at `first_level_size`): census matching with edge seeds, then SGBM's trusted
        matches fused."""
        if not self.sgbm:
            return refine_disparity(left_rgb, right_rgb, disparity_px, self.radius_px, edge_seeds=True,
                                    threads=self.threads).disparity_px
        # SGBM and the census matching are independent until they are fused: SGBM runs in its own thread
        # meanwhile (OpenCV releases the GIL), which fills the cores that the bands leave idle.
        pending = _sgbm_thread.submit(sgbm_matches, left_rgb, right_rgb, disparity_px)
        refined = refine_disparity(left_rgb, right_rgb, disparity_px, self.radius_px, edge_seeds=True, threads=self.threads)
        return fuse_sgbm(refined, pending.result())

    def at_camera(self, left_rgb: np.ndarray, right_rgb: np.ndarray, level_left_rgb: np.ndarray,
                  level_disparity_px: np.ndarray) -> np.ndarray:
        """Level 2: on the camera images, around the level-1 result (`level_disparity_px`, computed on
        `level_left_rgb`) brought to their size by `upsample_to_camera` (bilinear when nothing is matched:
        the network alone)."""
        height, width = left_rgb.shape[:2]
        if self.radius_px == 0 and self.camera_radius_px == 0 and not self.sgbm:
            return resize_disparity(level_disparity_px, width, height)
        disparity_px = upsample_to_camera(level_disparity_px, level_left_rgb, left_rgb)
        return refine_disparity(left_rgb, right_rgb, disparity_px, self.camera_radius_px, threads=self.threads).disparity_px


NO_MATCHING = LocalMatching(0, 0, sgbm=False)


def resize_disparity(disparity_px: np.ndarray, width: int, height: int) -> np.ndarray:
    """A disparity map at another size (bilinear), its values scaled by the width ratio (px of that size)."""
    if disparity_px.shape == (height, width):
        return disparity_px
    scale = np.float32(width / disparity_px.shape[1])
    return cv2.resize(disparity_px, (width, height), interpolation=cv2.INTER_LINEAR) * scale


def upsample_to_camera(disparity_px: np.ndarray, small_left_rgb: np.ndarray, left_rgb: np.ndarray) -> np.ndarray:
    """A level-1 disparity (px of `small_left_rgb`'s size) at the camera's size (px of `left_rgb`'s):
    bilinear, but where the four level-1 pixels around a camera pixel differ by more than EDGE_SPREAD_PX, the
    value of the one whose colour (CIELAB, sum of absolute differences) is nearest the camera pixel's.
    (H,W) float32."""
    h, w = disparity_px.shape
    height, width = left_rgb.shape[:2]
    upsampled = resize_disparity(disparity_px, width, height)
    # Each camera pixel's bilinear cell: level-1 rows top..top+1 and columns left..left+1 (centres aligned,
    # as cv2.resize does); its spread is max - min over the cell, the 2x2 dilation minus erosion there.
    corners = [_cell_corner(n, size) for n, size in ((h, height), (w, width))]
    cell = np.ones((2, 2), np.uint8)
    spread = (cv2.dilate(disparity_px, cell, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
              - cv2.erode(disparity_px, cell, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE))
    rows, columns = np.nonzero(spread[np.ix_(corners[0][0], corners[1][0])] > EDGE_SPREAD_PX)
    if rows.size == 0:
        return upsampled
    small_lab = cv2.cvtColor(small_left_rgb, cv2.COLOR_RGB2LAB).astype(np.int16)
    lab = cv2.cvtColor(left_rgb, cv2.COLOR_RGB2LAB)[rows, columns].astype(np.int16)
    candidates = [(top[rows], left[columns]) for top in corners[0] for left in corners[1]]
    distance = np.stack([np.abs(small_lab[at] - lab).sum(axis=1) for at in candidates])
    values = np.stack([disparity_px[at] for at in candidates])
    upsampled[rows, columns] = np.take_along_axis(values, distance.argmin(axis=0)[None], 0)[0] * np.float32(width / w)
    return upsampled


def _cell_corner(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """For each of `size` pixels along an axis resampled from `n`: the two level-1 indices around it."""
    at = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    low = np.floor(at).astype(np.intp)
    return low, np.minimum(low + 1, n - 1)


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
    bands = max(1, min(max(workers, -(-h * w // MAX_BAND_PIXELS)), h // MIN_BAND_ROWS))
    if radius_px == 0 or bands == 1:
        return refine_band(left_rgb, right_rgb, prior, radius_px, edge_seeds)
    cuts = [round(i * h / bands) for i in range(bands + 1)]
    halo = CENSUS_RADIUS + WINDOW_PX // 2 + (SEED_WINDOW_PX // 2 if edge_seeds else 0)

    def band(i: int) -> Refined:
        top, bottom = max(0, cuts[i] - halo), min(h, cuts[i + 1] + halo)
        out = refine_band(left_rgb[top:bottom], right_rgb[top:bottom], prior[top:bottom], radius_px, edge_seeds)
        return Refined(*(a[cuts[i] - top:cuts[i + 1] - top] for a in out))

    if workers not in _pools:
        _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="local_matching")
    parts = list(_pools[workers].map(band, range(bands)))
    return Refined(np.vstack([p.disparity_px for p in parts]), np.vstack([p.matched for p in parts]))


def refine_band(left_rgb: np.ndarray, right_rgb: np.ndarray, prior: np.ndarray, radius_px: int,
                edge_seeds: bool) -> Refined:
    """The network's disparity (H,W, px of these images) re-matched within +-radius_px.
    With edge_seeds, also within +-radius_px // 2 of the prior's local maximum and minimum over
    SEED_WINDOW_PX (the nearest foreground and background: the network blurs a depth edge, so near one the
    answer is often one side's disparity, further from the prior than the radius); a seed's match replaces
    the first one where it costs SEED_MARGIN bits per pixel less."""
    if radius_px == 0:
        return Refined(prior, np.zeros(prior.shape, bool))
    codes = (census_transform(cv2.cvtColor(left_rgb, cv2.COLOR_RGB2GRAY)),
             census_transform(cv2.cvtColor(right_rgb, cv2.COLOR_RGB2GRAY)).ravel())
    disparity, cost = match_around(codes, prior, radius_px)
    if edge_seeds and radius_px >= 2:
        kernel = np.ones((SEED_WINDOW_PX, SEED_WINDOW_PX), np.uint8)
        for seed in (cv2.dilate(prior, kernel), cv2.erode(prior, kernel)):
            seed_disparity, seed_cost = match_around(codes, seed, radius_px // 2)
            better = seed_cost + np.float32(SEED_MARGIN * WINDOW_PX ** 2) < cost
            disparity = np.where(better, seed_disparity, disparity)
            cost = np.where(better, seed_cost, cost)
    return Refined(disparity, np.isfinite(cost))


class SgbmMatches(NamedTuple):
    """OpenCV SGBM's answer at level 1 and the census cost of each of its matches (`sgbm_matches`)."""
    disparity_px: np.ndarray  # (H,W) float32, NaN where SGBM gave none
    answered: np.ndarray  # (H,W) bool: SGBM gave a disparity > 0
    cost: np.ndarray  # (H,W) float32 `window_cost_at` its disparity
    num_disparities: int
    blind_columns: int  # SGBM answers nothing left of this column


def sgbm_matches(left_rgb: np.ndarray, right_rgb: np.ndarray, prior: np.ndarray) -> SgbmMatches | None:
    """SGBM over the range the network's disparity (`prior`) needs, with the census cost of its matches;
    None when that range is as wide as the image (nothing would be left to match)."""
    num_disparities = sgbm_num_disparities(SGBM_RANGE_FACTOR * float(np.nanmax(prior, initial=0.0)) + SGBM_RANGE_MARGIN_PX)
    if num_disparities >= prior.shape[1]:
        return None
    sgbm_px, predicted = sgbm_disparity(left_rgb, right_rgb, num_disparities, SGBM_BLOCK_SIZE)
    # SGBM leaves its first numDisparities columns blank (a match there could leave the right image). A second
    # pass over the left part of the pair with half the range answers the right half of that band for the
    # disparities below half the range; the census gate rejects its answers where the truth is larger.
    # Aloe, fast: bad-2 10.7 -> 10.2 % full, 8.0 -> 7.6 % half; tiny 18.9 -> 18.3 / 13.6 -> 13.0 %; the
    # held-out recording and the demo frame unchanged.
    blind_columns = sgbm_num_disparities(num_disparities / 2)
    if blind_columns < num_disparities:
        crop = (slice(None), slice(0, min(prior.shape[1], 2 * num_disparities)))
        band_px, band_predicted = sgbm_disparity(np.ascontiguousarray(left_rgb[crop]), np.ascontiguousarray(right_rgb[crop]),
                                                 blind_columns, SGBM_BLOCK_SIZE)
        take = band_predicted & ~predicted[crop] & (np.arange(band_px.shape[1]) < num_disparities)[None, :]
        np.copyto(sgbm_px[crop], band_px, where=take)
        predicted[crop] |= take
    else:
        blind_columns = num_disparities
    # 0 px is the edge of SGBM's range (the answer may lie beyond it) and no valid disparity for the node.
    return SgbmMatches(sgbm_px, predicted & (sgbm_px > 0), window_cost_at(left_rgb, right_rgb, sgbm_px),
                       num_disparities, blind_columns)


def fuse_sgbm(refined: Refined, sgbm: SgbmMatches | None) -> np.ndarray:
    """Semi-global matches where they are trusted, the background where nothing matched; (H,W) float32.

    OpenCV's SGBM (`sgbm_matches`, over the range the network's disparity needs): its paths carry
    the smoothness a window match lacks, and where it answers and the census match at its disparity is
    good (MAX_MATCH_COST, the gate of `match_around`) among enough such matches around it (SGBM_MIN_DENSITY:
    isolated ones on a noisy camera are chance) its value is taken. Where neither it nor the census
    matching (`refined`) answered, SGBM's value is still taken when its cost passes a looser gate
    (SGBM_PLAUSIBLE_COST) in such a neighbourhood; otherwise, mostly beside depth edges, where the
    background is occluded in the right view, the pixel takes the farther of SGBM's nearest trusted values
    left and right on its row (`fill_holes`).
    Only holes at most the search range wide (an occlusion is as wide as its disparity step) with trusted
    values on both sides: on a noisy camera the few matches that pass the gate would otherwise spread over
    whole rows (the held-out recording: bad-2 6.5 -> 27 %). Not in SGBM's blind left band either
    (`blind_columns`), where only the network answers."""
    if sgbm is None:
        return refined.disparity_px
    w = refined.disparity_px.shape[1]
    trusted = sgbm.answered & (sgbm.cost <= MAX_MATCH_COST)
    supported = cv2.boxFilter(trusted.astype(np.float32), -1, (SGBM_DENSITY_WINDOW_PX, SGBM_DENSITY_WINDOW_PX),
                              borderType=cv2.BORDER_REFLECT) >= SGBM_MIN_DENSITY
    trusted &= supported
    unanswered = ~trusted & ~refined.matched
    plausible = unanswered & sgbm.answered & supported & (sgbm.cost <= SGBM_PLAUSIBLE_COST)
    background = fill_holes(sgbm.disparity_px, trusted, max_gap_px=sgbm.num_disparities)
    fill = unanswered & ~plausible & np.isfinite(background) & (np.arange(w) >= sgbm.blind_columns)[None, :]
    return np.where(trusted | plausible, sgbm.disparity_px, np.where(fill, background, refined.disparity_px))  # all float32


def window_cost_at(left_rgb: np.ndarray, right_rgb: np.ndarray, disparity_px: np.ndarray) -> np.ndarray:
    """The share of census bits that differ over the WINDOW_PX window when each pixel is matched at its
    rounded disparity (NaN: 0), (H,W) float32 in [0, 1]; matches left of the right image use its first column."""
    left_codes = census_transform(cv2.cvtColor(left_rgb, cv2.COLOR_RGB2GRAY))
    right_codes = census_transform(cv2.cvtColor(right_rgb, cv2.COLOR_RGB2GRAY))
    w = disparity_px.shape[1]
    match_x = np.clip(np.arange(w)[None, :] - np.rint(np.nan_to_num(disparity_px, nan=0.0)).astype(np.int32), 0, w - 1)
    bits = np.bitwise_count(left_codes ^ np.take_along_axis(right_codes, match_x, 1)).astype(np.float32)
    return cv2.boxFilter(bits, -1, (WINDOW_PX, WINDOW_PX), normalize=True, borderType=cv2.BORDER_REFLECT) / len(CENSUS_OFFSETS)


def match_around(codes: tuple[np.ndarray, np.ndarray], prior: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Census codes (left (H,W), right flattened) and a prior -> (disparity, cost): the match within
    +-radius of the prior and its window sum of differing bits, or (prior, inf) where the prior stays:
    the best match is not strictly inside the window, a neighbouring candidate cannot be judged because
    its matches leave the right image (the left border band: the answer may be there), the cost is flat
    around the minimum (no texture), or even the best match is poor (MAX_MATCH_COST: noise)."""
    left_codes, right_codes = codes
    h, w = prior.shape
    centre = np.rint(np.nan_to_num(prior, nan=0.0))
    x_minus_centre = np.arange(w, dtype=np.float32)[None, :] - centre
    window = (WINDOW_PX, WINDOW_PX)
    # A candidate offset cannot be judged where a pixel of its window would be matched left of the right
    # image: offset > min over the window of (x - centre), an erosion.
    window_room = cv2.erode(x_minus_centre, np.ones(window, np.uint8), borderType=cv2.BORDER_REPLICATE)
    # Flat index of each pixel's match at offset 0 (np.take: faster than cv2.remap). Not clipped into its
    # row: a match left of the image reads the row above, but its candidate is unmatchable (window_room)
    # for every window it enters; one right of it (a negative disparity, near the right border) reads
    # the row below, and a negative answer is refused.
    match_at_zero = (np.clip(x_minus_centre, -2 * w, 2 * w).astype(np.int32)
                     + (np.arange(h, dtype=np.int32) * w)[:, None])
    index = np.empty((h, w), np.int32)
    # Only the columns left of this can have unmatchable candidates (window_room < radius).
    unmatchable_columns = int(np.flatnonzero((window_room < radius).any(axis=0)).max(initial=-1)) + 1
    left_columns = (slice(None), slice(0, unmatchable_columns))
    step_penalty = round(STEP_PENALTY * WINDOW_PX ** 2)  # in window sums of bits
    index_bits = 128  # > 2 * MAX_RADIUS_PX + 1: the candidate's index rides in the low bits of its key

    # Window sums of every candidate (uint16: 24 bits x 81 fits), kept for the sub-pixel parabola, and the
    # running minimum of key = penalised cost x 128 + candidate index (exact in float32).
    costs = np.empty((2 * radius + 1, h, w), np.uint16)
    best_key = np.full((h, w), np.inf, np.float32)
    key = np.empty((h, w), np.float32)
    for candidate, offset in enumerate(range(-radius, radius + 1)):
        np.subtract(match_at_zero, offset, out=index)
        bits = np.bitwise_count(np.bitwise_xor(left_codes, np.take(right_codes, index, mode="clip")))
        cv2.boxFilter(bits, cv2.CV_16U, window, dst=costs[candidate], normalize=False, borderType=cv2.BORDER_REFLECT)
        if unmatchable_columns:
            np.copyto(costs[candidate][left_columns], UNMATCHABLE, where=window_room[left_columns] < offset)
        cv2.addWeighted(costs[candidate], float(index_bits), costs[candidate], 0.0,
                        float((step_penalty * abs(offset)) * index_bits + candidate), dst=key, dtype=cv2.CV_32F)
        np.minimum(best_key, key, out=best_key)

    # (H,W) int32 / float32 from here on: (3,H,W) int64 temporaries cost 100+ MiB at 1280x720.
    best_index = best_key.astype(np.int32) & np.int32(index_bits - 1)
    neighbour = np.clip(best_index, 1, 2 * radius - 1)
    raw = [np.take_along_axis(costs, (neighbour + k)[None], 0)[0] for k in (-1, 0, 1)]
    # No texture: the window sums do not change around the minimum, the data say nothing and the
    # network's (sub-pixel, smooth) value stays, rather than its rounding.
    inside = (raw[0] != raw[1]) | (raw[2] != raw[1])
    for r in raw:  # matchable: no candidate next to the minimum reaches outside the right image
        inside &= r < UNMATCHABLE
    inside &= raw[1] <= MAX_MATCH_COST * len(CENSUS_OFFSETS) * WINDOW_PX ** 2  # trusted
    inside &= (best_index > 0) & (best_index < 2 * radius)
    below, at, above = (r.astype(np.float32) + np.float32(step_penalty) * np.abs(neighbour + k - radius).astype(np.float32)
                        for r, k in zip(raw, (-1, 0, 1)))
    curvature = below - np.float32(2.0) * at + above
    sub_px = np.where(curvature > 0, np.float32(0.5) * (below - above) / np.maximum(curvature, np.float32(1e-6)),
                      np.float32(0.0))
    matched_px = centre + (best_index - radius).astype(np.float32) + np.clip(sub_px, np.float32(-0.5), np.float32(0.5))
    inside &= matched_px >= 0  # a negative disparity is no answer
    return (np.where(inside, matched_px, prior).astype(np.float32, copy=False),
            np.where(inside, raw[1].astype(np.float32), np.float32(np.inf)))
