"""Stereo geometry: disparity <-> depth <-> 3D points in the left optical frame.

Conventions follow stereo_image_proc: x right, y down, z forward; depth_m = f_px * baseline_m / disparity_px;
the baseline comes from the right camera's projection matrix, Tx = P[3] = -f_px * baseline_m.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StereoCamera:
    """Rectified pinhole pair at one image resolution (the left camera's P matrix)."""
    fx_px: float
    fy_px: float
    cx_px: float
    cy_px: float
    baseline_m: float
    width: int
    height: int
    # Principal-point x offset of the right camera (cx_right - cx_left); zero after standard rectification.
    delta_cx_px: float = 0.0

    @staticmethod
    def from_projection(p_left: np.ndarray | list[float], p_right: np.ndarray | list[float],
                        width: int, height: int) -> "StereoCamera":
        """From the two 3x4 rectified projection matrices (CameraInfo.p, row-major)."""
        pl = np.asarray(p_left, dtype=np.float64).reshape(3, 4)
        pr = np.asarray(p_right, dtype=np.float64).reshape(3, 4)
        fx = float(pr[0, 0])
        if not fx > 0.0:
            raise ValueError(f"right projection matrix has focal length P[0]={fx}; need > 0")
        baseline_m = -float(pr[0, 3]) / fx
        if not baseline_m > 0.0:
            raise ValueError(f"right projection matrix gives baseline {baseline_m} m (t = -P[3]/P[0]); need > 0")
        if not pl[0, 0] > 0.0 or not pl[1, 1] > 0.0:
            raise ValueError(f"left projection matrix has focal lengths fx={pl[0, 0]}, fy={pl[1, 1]}; need > 0")
        return StereoCamera(float(pl[0, 0]), float(pl[1, 1]), float(pl[0, 2]), float(pl[1, 2]), baseline_m,
                            width, height, float(pr[0, 2] - pl[0, 2]))

    def scaled(self, width: int, height: int) -> "StereoCamera":
        sx, sy = width / self.width, height / self.height
        return StereoCamera(self.fx_px * sx, self.fy_px * sy, (self.cx_px + 0.5) * sx - 0.5,
                            (self.cy_px + 0.5) * sy - 0.5, self.baseline_m, width, height, self.delta_cx_px * sx)

    def depth_from_disparity(self, disparity_px: np.ndarray, min_disparity_px: float = 0.0) -> np.ndarray:
        """Depth in metres; NaN where the disparity is not above min_disparity_px (or not finite)."""
        # x_l - x_r = f*B/z + cx_l - cx_r, so the principal-point offset cx_r - cx_l is added back.
        d = np.asarray(disparity_px, dtype=np.float32) + np.float32(self.delta_cx_px)
        valid = np.isfinite(d) & (d > max(min_disparity_px, 0.0))
        depth = np.full(d.shape, np.nan, dtype=np.float32)
        depth[valid] = np.float32(self.fx_px * self.baseline_m) / d[valid]
        return depth

    def points_from_disparity(self, disparity_px: np.ndarray, min_disparity_px: float = 0.0) -> np.ndarray:
        """(H,W) disparity -> (H,W,3) float32 x, y, z in metres in the left optical frame; NaN if invalid."""
        h, w = disparity_px.shape
        z = self.depth_from_disparity(disparity_px, min_disparity_px)
        u = np.arange(w, dtype=np.float32)[None, :]
        v = np.arange(h, dtype=np.float32)[:, None]
        x = (u - np.float32(self.cx_px)) * z / np.float32(self.fx_px)
        y = (v - np.float32(self.cy_px)) * z / np.float32(self.fy_px)
        return np.stack([x, y, z], axis=-1)
