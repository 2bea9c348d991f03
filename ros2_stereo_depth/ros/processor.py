"""What the node does with one synchronised set, without rclpy (as stereo_image_proc's processor):
check and decode the inputs, run the network at the camera resolution, build the output messages.

Conventions (as stereo_image_proc): f = P_right[0], t = -P_right[3]/P_right[0] (baseline, metres); the
published disparity is d = x_left - x_right + (cx_right - cx_left), so z = f*t/d; invalid pixels hold
min_disparity - 1; the header (stamp and frame_id) of every output is the left image's.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np
from std_msgs.msg import Header

from ..fileio import colourise_disparity
from ..geometry import CalibrationError, StereoCamera
from ..image_encoding import ImageError, image_to_rgb
from ..inference.base import StereoBackend, infer_at_image_size, valid_disparity
from ..inference.local_matching import LocalMatching
from .conversions import array_to_image, build_disparity_image, build_point_cloud, empty_image, valid_window

# The network regresses a continuous (soft-argmin) disparity; 1/16 px is the nominal sub-pixel step
# reported in DisparityImage.delta_d, the same value stereo_image_proc's block matchers report.
DELTA_D = 1.0 / 16.0
OUTPUTS = ("disparity", "points2", "depth", "confidence", "disparity/image_color")


class InputError(ValueError):
    """A set the node cannot use; `topic` is the offending topic, `kind` keys the throttle and counters."""

    def __init__(self, topic: str, kind: str, problem: str) -> None:
        super().__init__(f"{topic}: {problem}")
        self.topic, self.kind = topic, kind


@dataclass
class StereoSet:
    header: Header  # the left image's
    left_rgb: np.ndarray  # (H,W,3) uint8 at the camera resolution
    right_rgb: np.ndarray
    camera: StereoCamera  # at the camera resolution
    f_px: float  # right P[0]
    complete_s: float = 0.0  # time.monotonic() when the set was complete
    colour_rgb: np.ndarray | None = None  # from left/image_rect_color, for the cloud


@dataclass(frozen=True)
class OutputSettings:
    min_disparity: float = 0.0
    min_confidence: float = 0.0
    use_color: bool = True
    avoid_point_cloud_padding: bool = False
    matching: LocalMatching = LocalMatching()  # frozen: a shared default is safe


def check_inputs(msgs: Sequence[Any], topics: Sequence[str]) -> tuple[StereoSet, list[tuple[str, str, str]]]:
    """Validate a synchronised (left image, right image, left info, right info) set.
    Returns the set and warnings (topic, kind, text) for problems that do not stop processing;
    raises InputError for those that do."""
    left_img, right_img, left_info, right_info = msgs
    rgb = []
    for topic, img in zip(topics[:2], (left_img, right_img)):
        try:
            rgb.append(image_to_rgb(img))
        except ImageError as error:
            raise InputError(topic, error.kind, str(error)) from None
    (lh, lw), (rh, rw) = rgb[0].shape[:2], rgb[1].shape[:2]
    if (lh, lw) != (rh, rw):
        raise InputError(topics[1], "size", f"image is {rw}x{rh} but {topics[0]} is {lw}x{lh}; "
                                            "left and right must have the same size")
    for topic, info in ((topics[2], left_info), (topics[3], right_info)):
        if (int(info.height), int(info.width)) != (lh, lw):
            raise InputError(topic, "info_size", f"camera_info is {info.width}x{info.height} but the image is "
                                                 f"{lw}x{lh}; they must describe the same resolution")
    try:
        camera = StereoCamera.from_projection(left_info.p, right_info.p, lw, lh)
    except CalibrationError as error:
        raise InputError(topics[2] if error.side == "left" else topics[3], error.kind, str(error)) from None
    warnings = []
    for img_topic, img, info_topic, info in ((topics[0], left_img, topics[2], left_info),
                                             (topics[1], right_img, topics[3], right_info)):
        if not img.header.frame_id:
            warnings.append((img_topic, "empty_frame_id", "empty header.frame_id; outputs will have no frame"))
        elif info.header.frame_id != img.header.frame_id:
            warnings.append((info_topic, "frame_id_mismatch", f"frame_id {info.header.frame_id!r} differs from "
                             f"{img_topic}'s {img.header.frame_id!r}"))
    return StereoSet(left_img.header, rgb[0], rgb[1], camera, float(right_info.p[0])), warnings


class StereoProcessor:
    """The backend plus everything after it; `process` builds only the outputs asked for."""

    def __init__(self, backend: StereoBackend, network_max_disparity: int) -> None:
        self.backend = backend
        self.network_max_disparity = network_max_disparity
        self.timings_s: dict[str, float] = {}  # of the last set, per stage (for diagnostics and bench)

    def disparity(self, stereo: StereoSet, settings: OutputSettings) -> tuple[np.ndarray, np.ndarray, float]:
        """Disparity at the camera resolution (network, then local matching) in DisparityImage convention
        (invalid = min_disparity - 1), the network's confidence (0..1) at the same size, and the seconds
        the local matching took."""
        result = infer_at_image_size(self.backend, stereo.left_rgb, stereo.right_rgb, settings.matching)
        disparity = result.disparity_px.astype(np.float32, copy=False)
        if stereo.camera.delta_cx_px:  # x_left - x_right corrected for the principal points
            disparity = disparity + np.float32(stereo.camera.delta_cx_px)
        valid = valid_disparity(disparity, result.confidence, settings.min_disparity, settings.min_confidence)
        disparity[~valid] = np.float32(settings.min_disparity - 1.0)
        return disparity, result.confidence, result.matching_s

    def process(self, stereo: StereoSet, settings: OutputSettings, wanted: set[str]) -> dict[str, Any]:
        """Output messages by topic name, for the names in `wanted` (subset of OUTPUTS)."""
        start = time.perf_counter()
        disparity, confidence, matching_s = self.disparity(stereo, settings)
        inferred = time.perf_counter()
        camera, header, out = stereo.camera, stereo.header, {}
        scale = camera.width / self.backend.width
        valid = disparity > settings.min_disparity
        if "disparity" in wanted:
            out["disparity"] = build_disparity_image(disparity, header, stereo.f_px, camera.baseline_m,
                                                     settings.min_disparity, self.network_max_disparity * scale,
                                                     DELTA_D * scale, valid_window(valid))
        if "confidence" in wanted:
            out["confidence"], view = empty_image(*disparity.shape, "32FC1", header)
            np.clip(confidence, 0.0, 1.0, out=view)
        if "disparity/image_color" in wanted:
            colour = colourise_disparity(np.where(valid, disparity, 0.0), self.network_max_disparity * scale)
            out["disparity/image_color"] = array_to_image(cv2.cvtColor(colour, cv2.COLOR_RGB2BGR), "bgr8", header)
        if "depth" in wanted or "points2" in wanted:
            # The disparity already includes the principal-point correction: project with delta_cx 0.
            flat = dataclasses.replace(camera, delta_cx_px=0.0)
            depth_m = None
            if "depth" in wanted:
                out["depth"], depth_m = empty_image(*disparity.shape, "32FC1", header)
                flat.depth_from_disparity(disparity, settings.min_disparity, out=depth_m)
            if "points2" in wanted:
                rgb = None
                if settings.use_color:
                    rgb = stereo.colour_rgb if stereo.colour_rgb is not None else stereo.left_rgb
                out["points2"] = build_point_cloud(flat, disparity, settings.min_disparity, rgb, header,
                                                   settings.avoid_point_cloud_padding, depth_m)
        # "inference": the whole disparity (network, matching, resizes); "matching": its matching part.
        self.timings_s = {"inference": inferred - start, "matching": matching_s,
                          "messages": time.perf_counter() - inferred}
        return out
