"""Stereo geometry: disparity <-> depth <-> 3D points in the left optical frame.

Conventions follow stereo_image_proc: x right, y down, z forward; depth_m = f_px * baseline_m / disparity_px;
the baseline comes from the right camera's projection matrix, Tx = P[3] = -f_px * baseline_m.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class CalibrationError(ValueError):
    """Calibration the geometry cannot use; `side` (left/right) says whose, `kind` names the problem."""

    def __init__(self, side: str, kind: str, problem: str) -> None:
        super().__init__(problem)
        self.side, self.kind = side, kind


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
        """From the two 3x4 rectified projection matrices (CameraInfo.p, row-major). The one place where
        calibration is checked: raises CalibrationError for anything non-finite or non-positive."""
        if not (int(width) > 0 and int(height) > 0):
            raise CalibrationError("left", "size", f"image size {width}x{height}; need > 0")
        pl = np.asarray(p_left, dtype=np.float64).reshape(3, 4)
        pr = np.asarray(p_right, dtype=np.float64).reshape(3, 4)
        for side, p in (("left", pl), ("right", pr)):
            if not np.isfinite(p).all():
                bad = ", ".join(f"P[{i}]={v}" for i, v in enumerate(p.ravel()) if not np.isfinite(v))
                raise CalibrationError(side, "not_finite", f"projection matrix has non-finite values {bad}")
        fx = float(pr[0, 0])
        if not fx > 0.0:
            raise CalibrationError("right", "focal", f"projection matrix P has focal length fx={fx}; need > 0 "
                                   "(is the camera calibrated?)")
        baseline_m = -float(pr[0, 3]) / fx + 0.0  # + 0.0: no '-0' in messages
        if not baseline_m > 0.0:
            raise CalibrationError("right", "baseline", f"baseline -P[3]/P[0] = {baseline_m:g} m; need > 0 (right "
                                   f"camera P[3] must be -fx*baseline, it is {pr[0, 3]:g})")
        if not pl[0, 0] > 0.0 or not pl[1, 1] > 0.0:
            raise CalibrationError("left", "focal", f"projection matrix P has focal lengths fx={pl[0, 0]}, "
                                   f"fy={pl[1, 1]}; need > 0 (is the camera calibrated?)")
        return StereoCamera(float(pl[0, 0]), float(pl[1, 1]), float(pl[0, 2]), float(pl[1, 2]), baseline_m,
                            int(width), int(height), float(pr[0, 2] - pl[0, 2]))

    def scaled(self, width: int, height: int) -> "StereoCamera":
        sx, sy = width / self.width, height / self.height
        return StereoCamera(self.fx_px * sx, self.fy_px * sy, (self.cx_px + 0.5) * sx - 0.5,
                            (self.cy_px + 0.5) * sy - 0.5, self.baseline_m, width, height, self.delta_cx_px * sx)

    def depth_from_disparity(self, disparity_px: np.ndarray, min_disparity_px: float = 0.0,
                             out: np.ndarray | None = None) -> np.ndarray:
        """Depth in metres; NaN where the disparity is not above min_disparity_px (or not finite).
        `out`: a float32 (H,W) array (may be a strided view, e.g. a cloud field) to write into."""
        # x_l - x_r = f*B/z + cx_l - cx_r, so the principal-point offset cx_r - cx_l is added back.
        d = np.asarray(disparity_px, dtype=np.float32)
        if self.delta_cx_px:
            d = d + np.float32(self.delta_cx_px)
        depth = np.empty(d.shape, np.float32) if out is None else out
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(np.float32(self.fx_px * self.baseline_m), d, out=depth)
        depth[~(d > max(min_disparity_px, 0.0))] = np.nan  # also NaN disparities: comparisons are False
        return depth

    def points_from_disparity(self, disparity_px: np.ndarray, min_disparity_px: float = 0.0,
                              out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                              depth_m: np.ndarray | None = None, first_row: int = 0) -> np.ndarray | None:
        """(H,W) disparity -> (H,W,3) float32 x, y, z in metres in the left optical frame; NaN if invalid.
        With `out` (three float32 (H,W) arrays, e.g. the fields of a point cloud buffer) x, y, z are
        written there and nothing is returned; `depth_m`: the depth already computed for this disparity.
        `first_row`: the image row of disparity_px's first row, when it is a band of rows of the image."""
        h, w = disparity_px.shape
        x, y, z = out if out is not None else (np.empty((h, w), np.float32) for _ in range(3))
        if depth_m is None:
            self.depth_from_disparity(disparity_px, min_disparity_px, out=z)
        else:
            z[...] = depth_m
        u = (np.arange(w, dtype=np.float32) - np.float32(self.cx_px)) / np.float32(self.fx_px)
        v = (np.arange(first_row, first_row + h, dtype=np.float32) - np.float32(self.cy_px)) / np.float32(self.fy_px)
        np.multiply(z, u[None, :], out=x)
        np.multiply(z, v[:, None], out=y)
        return None if out is not None else np.stack([x, y, z], axis=-1)
