"""OpenCV SGBM fused into level 1 of the local matching (inference/local_matching.py): its trusted
matches, its plausible ones where nothing else answered, and the background in the holes beside depth edges."""
from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from .census_matching import MAX_MATCH_COST, Refined, window_cost_at
from .sgbm import fill_holes, sgbm_disparity, sgbm_num_disparities

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
