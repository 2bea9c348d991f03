"""The evaluation picture: left | network | tuned SGBM | ground truth, one colour scale for all three."""
from __future__ import annotations

import cv2
import numpy as np

from ..fileio import colourise_disparity

SCALE_BAR_PX = 40  # height of the colour-scale strip under the panels


def comparison_picture(left_rgb: np.ndarray, panels: list[tuple[str, np.ndarray]], max_disparity_px: float,
                       width_px: int = 1600) -> np.ndarray:
    """(H,W,3) left image and (title, disparity px with NaN = none) panels -> one RGB picture, resized to
    `width_px` wide. Black = no prediction / unknown ground truth; the bar maps colour to pixels."""
    tiles = [left_rgb] + [colourise_disparity(d, max_disparity_px) for _, d in panels]
    row = np.concatenate(tiles, axis=1)
    scale = width_px / row.shape[1]
    row = cv2.resize(row, (width_px, max(1, round(row.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    tile_w = width_px // len(tiles)
    for i, title in enumerate(["left"] + [t for t, _ in panels]):
        cv2.putText(row, title, (i * tile_w + 8, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
    ramp = np.tile(np.linspace(0.0, max_disparity_px, width_px, dtype=np.float32), (SCALE_BAR_PX, 1))
    ramp[:, 0] = 1e-3  # keep the first column coloured, not "invalid" black
    bar = colourise_disparity(ramp, max_disparity_px)
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = min(width_px - 60, int(fraction * width_px) + 4)
        cv2.putText(bar, f"{fraction * max_disparity_px:.0f} px", (x, 27), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (255, 255, 255), 2, cv2.LINE_AA)
    return np.concatenate([row, bar], axis=0)
