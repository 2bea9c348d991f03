"""Local matching around the network's disparity: the resolution a shrunken network input loses.

The network sees the camera images shrunk to its input size (640x480 for `fast`) and regresses a smooth
disparity that is often a few px off at that size, times the shrink factor at the camera's. This stage
keeps the network's answer as a prior and re-matches around it, in two levels (inference/base.py
`infer_at_image_size` runs them):

- level 1 (`at_first_level`), on the images at the network input's width and their own aspect ratio
  (`first_level_size`; at their own size when they are not much wider): census block matching within
  +-radius_px of the prior and of its local maximum and minimum (census_matching.py), with OpenCV SGBM's
  matches fused in (sgbm_fusion.py);
- when the camera is larger (`at_camera`): the result brought to its size, edge-aware
  (disparity_resize.py `upsample_to_camera`), and census matching within +-camera_radius_px there;
- last, at the camera's size (`at_edges`): each pixel beside a depth edge takes the side whose
  colour-weighted match is better (edge_sides.py), undoing the fattening that windows leave.

The network gives the global answer (textureless regions, occlusions, the search range); matching gives
the precision. Aloe, `fast` through the node path: bad-2 44.0 -> 21.4 % (census matching) -> 10.2 %
(with SGBM) -> 9.6 % (the edge sides) at full size (README "Accuracy"). The constants of the four modules
were chosen on Aloe, the held-out-domain recording and the demo scene, which are also what we evaluate
on: treat those figures as tuned, not blind.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .census_matching import MAX_RADIUS_PX, refine_disparity
from .disparity_resize import resize_disparity, upsample_to_camera
from .edge_sides import snap_to_edge_sides
from .matching_kernels import library
from .sgbm_fusion import fuse_sgbm, sgbm_matches

__all__ = ["MAX_MATCH_WIDTH_PX", "MAX_RADIUS_PX", "NO_MATCHING", "LocalMatching"]

# Level 1 matches at the network input's width (disparity is horizontal: its precision is in columns) and
# the images' aspect ratio, or at the images' own size when they are at most this much wider; never on the
# network input's aspect ratio, which squashes an image of another shape (Aloe 1282x1110 -> 640x480 loses 13 %
# more of its rows than of its columns). Aloe, fast: at half size (641x555) bad-2 9.5 -> 8.5 % with no second
# level; at full size (matched at 640x554) 12.2 -> 11.8 %; tiny 21.1 -> 20.2 % (256x222); the held-out
# recording (320x240, matched there rather than upscaled to 640x480) 6.5 -> 6.35 % in a third of the time;
# tiny's demo frame (320x240 for a 256x192 input) 21.1 -> 14.8 %.
MATCH_WIDTH_SLACK = 1.25
# With `width_px` 0, level 1 is also at least a 2.5th of the images' width: upsampling it further to the
# camera loses what matching found. Aloe at full size (1282 px wide), the CPU preset (`tiny`'s 256 px input,
# SGBM fusion only): bad-2 26.8 % at 256 px, 16.6 % at 384, 14.4 % at 512 (this rule), 12.7 % at 640, for
# 108, 128, 164 and ~330 ms on 2 cores. It changes nothing for cameras up to 2.5x the network's width
# (`fast` up to 1600 px, `tiny` up to 640 px).
MAX_LEVEL_UPSAMPLING = 2.5
MAX_MATCH_WIDTH_PX = 4096
_sgbm_thread = ThreadPoolExecutor(1, thread_name_prefix="local_matching_sgbm")


@dataclass(frozen=True)
class LocalMatching:
    """Search radii (px) around the network's disparity; 0 turns a level off; whether SGBM's trusted
    matches are fused at level 1 (`fuse_sgbm`); level 1's width; and whether the pixels beside depth edges
    choose their side last (`at_edges`). The node's parameters match_radius_px, match_camera_radius_px,
    match_sgbm, match_width_px and match_edges; their defaults are these."""
    radius_px: int = 16  # level 1, at `first_level_size`
    camera_radius_px: int = 4  # level 2, at the camera resolution, when level 1 was not
    threads: int = 0  # bands matched in parallel; 0: BANDS (the node passes its `threads` parameter)
    sgbm: bool = True
    # Level 1's width, px; 0: the network input's, or a MAX_LEVEL_UPSAMPLING-th of the images' if wider. Level 1
    # sets the precision: `tiny` (256x192 input) on Aloe at full size scores 18.3 % bad-2 matched at 256 px wide
    # (64 ms of level-1 time on 2 cores), 12.0 % at 480 (150 ms), 11.4 % at 512 (what 0 gives there), 10.9 %
    # at 640 (270 ms; fast at 640: 10.2 %). (Times before the compiled census loop, which halves them.)
    width_px: int = 0
    # The edge sides (edge_sides.py), at the camera's size. Aloe, fast: bad-2 10.15 -> 9.57 % at full size,
    # 7.58 -> 7.10 % at half, depth-edge EPE 16.4 -> 14.3 px; about 20 ms at 640x480 and 90 ms at
    # 1282x1110 on 2 cores (the CPU preset turns it off: its time is SGBM's).
    edges: bool = True

    def __post_init__(self) -> None:
        for name in ("radius_px", "camera_radius_px"):
            value = getattr(self, name)
            if not 0 <= value <= MAX_RADIUS_PX:
                raise ValueError(f"local matching {name} must be in [0, {MAX_RADIUS_PX}], not {value}")
        if self.threads < 0:
            raise ValueError(f"local matching threads must be >= 0, not {self.threads}")
        if not 0 <= self.width_px <= MAX_MATCH_WIDTH_PX:
            raise ValueError(f"local matching width_px must be in [0, {MAX_MATCH_WIDTH_PX}], not {self.width_px}")

    @property
    def enabled(self) -> bool:
        """Anything re-matched at all (False: the network alone)."""
        return bool(self.radius_px or self.camera_radius_px or self.sgbm or self.edges)

    @property
    def compiled(self) -> bool:
        """Whether these settings run the compiled loops (census matching, edge sides: matching_kernels.py)."""
        return bool(self.radius_px or self.camera_radius_px or self.edges)

    def load_compiled(self) -> None:
        """Load the compiled loops (matching_kernels.py) now when these settings use them: a package built
        without them stops at start-up with one clear error instead of failing every frame."""
        if self.compiled:
            library()

    def first_level_size(self, image_wh: tuple[int, int], network_wh: tuple[int, int]) -> tuple[int, int]:
        """(width, height) at which level 1 matches images of image_wh for a network input of network_wh:
        `width_px` (0: the network input's width, or a MAX_LEVEL_UPSAMPLING-th of the images' if that is
        wider) and the images' aspect ratio, or the images' own size when they are at most
        MATCH_WIDTH_SLACK times as wide. The network input itself when level 1 is off (the network's
        answer is then resized once)."""
        w, h = image_wh
        level_w = self.width_px or max(network_wh[0], int(w / MAX_LEVEL_UPSAMPLING))
        if self.radius_px == 0 and not self.sgbm:  # nothing matched at level 1
            return network_wh
        if w <= MATCH_WIDTH_SLACK * level_w:
            return image_wh
        return level_w, max(1, round(h * level_w / w))

    def at_first_level(self, left_rgb: np.ndarray, right_rgb: np.ndarray, disparity_px: np.ndarray) -> np.ndarray:
        """Level 1 (images at `first_level_size`): census matching with edge seeds, then SGBM's trusted
        matches fused."""
        # SGBM and the census matching are independent until they are fused: SGBM runs in its own thread
        # meanwhile (OpenCV releases the GIL), which fills the cores that the bands leave idle.
        pending = _sgbm_thread.submit(sgbm_matches, left_rgb, right_rgb, disparity_px) if self.sgbm else None
        refined = refine_disparity(left_rgb, right_rgb, disparity_px, self.radius_px, edge_seeds=True, threads=self.threads)
        return refined.disparity_px if pending is None else fuse_sgbm(refined, pending.result())

    def at_camera(self, left_rgb: np.ndarray, right_rgb: np.ndarray, level_left_rgb: np.ndarray,
                  level_disparity_px: np.ndarray) -> np.ndarray:
        """Level 2: on the camera images, around the level-1 result (`level_disparity_px`, computed on
        `level_left_rgb`) brought to their size by `upsample_to_camera` (bilinear when nothing is matched:
        the network alone)."""
        height, width = left_rgb.shape[:2]
        if not self.enabled:
            return resize_disparity(level_disparity_px, width, height)
        disparity_px = upsample_to_camera(level_disparity_px, level_left_rgb, left_rgb)
        return refine_disparity(left_rgb, right_rgb, disparity_px, self.camera_radius_px, threads=self.threads).disparity_px

    def at_edges(self, left_rgb: np.ndarray, right_rgb: np.ndarray, disparity_px: np.ndarray) -> np.ndarray:
        """Last, at the camera's size: the pixels beside depth edges on the side that matches them better
        (edge_sides.py), when `edges` is on."""
        if not self.edges:
            return disparity_px
        return snap_to_edge_sides(disparity_px, left_rgb, right_rgb, self.threads)


NO_MATCHING = LocalMatching(0, 0, sgbm=False, edges=False)
