"""Camera realism: each view passes through its own slightly different camera, so the network does
not learn to match exact intensities (real pairs differ in exposure, gain, response, noise, lens
shading, focus and compression), and a residual vertical misrectification of up to half a pixel.

None of this moves content horizontally: the ground-truth disparity stays exact.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .procedural import clip01
from .render import to_uint8


@dataclass(frozen=True)
class Photometric:
    """Per-view camera differences; `apply` draws a fresh camera from `rng` for each call. The
    defaults are the original gain/gamma/noise/blur/shift set; `realistic()` (the training default of
    SyntheticStereo) adds signal-dependent noise, vignetting and JPEG."""
    gain_range: tuple[float, float] = (0.8, 1.2)  # exposure x gain
    bias_range: tuple[float, float] = (-0.08, 0.08)
    gamma_range: tuple[float, float] = (0.8, 1.25)
    colour_jitter: float = 0.05  # per-channel white-balance difference
    noise_std_range: tuple[float, float] = (0.0, 0.03)  # read noise
    shot_noise_range: tuple[float, float] = (0.0, 0.0)  # signal-dependent: std = sqrt(read^2 + shot*x)
    blur_prob: float = 0.3
    vignetting_range: tuple[float, float] = (0.0, 0.0)  # brightness loss in the corners
    jpeg_prob: float = 0.0
    jpeg_quality_range: tuple[int, int] = (40, 95)
    vertical_jitter_px: float = 0.5  # residual rectification error of the right view, max |dy|

    @classmethod
    def realistic(cls) -> "Photometric":
        return cls(shot_noise_range=(0.0, 0.02), vignetting_range=(0.0, 0.35), jpeg_prob=0.3)

    def apply(self, rng: np.random.Generator, image: np.ndarray, right: bool = False) -> np.ndarray:
        x = image.astype(np.float32) * np.float32(1.0 / 255.0)
        height, width = x.shape[:2]
        if right and self.vertical_jitter_px > 0:
            x = self._misrectify(rng, x)
        x = self._vignette(rng, x)
        x = cv2.pow(clip01(x), float(rng.uniform(*self.gamma_range)))
        gain = rng.uniform(*self.gain_range) * (1 + rng.uniform(-self.colour_jitter, self.colour_jitter, 3))
        x = x * gain.astype(np.float32) + np.float32(rng.uniform(*self.bias_range))
        if rng.random() < self.blur_prob:
            x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.3, 1.2))
        read, shot = rng.uniform(*self.noise_std_range), rng.uniform(*self.shot_noise_range)
        if read > 0 or shot > 0:
            std = cv2.sqrt(np.float32(read ** 2) + np.float32(shot) * clip01(x.copy()))
            x += std * rng.standard_normal((height, width, 3), dtype=np.float32)
        out = to_uint8(x)
        if rng.random() < self.jpeg_prob:
            quality = int(rng.integers(self.jpeg_quality_range[0], self.jpeg_quality_range[1] + 1))
            ok, encoded = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok:  # channel order does not matter for a round trip
                out = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
        return out

    def _misrectify(self, rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
        """Vertical offset dy(x) = dy0 + s*x with |dy| <= vertical_jitter_px everywhere: a small
        vertical shift and tilt of the epipolar lines, with no horizontal component (an affine
        warp whose matrix has no x row terms)."""
        width = x.shape[1]
        limit = self.vertical_jitter_px
        at_left, at_right = rng.uniform(-limit, limit, 2)
        slope = (at_right - at_left) / max(width - 1, 1)
        # inverse map: source (x, y) = (x, y + at_left + slope * x) for destination (x, y)
        matrix = np.float32([[1, 0, 0], [slope, 1, at_left]])
        return cv2.warpAffine(x, matrix, (width, x.shape[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REFLECT)

    def _vignette(self, rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
        strength = rng.uniform(*self.vignetting_range)
        if strength <= 0:
            return x
        height, width = x.shape[:2]
        cy, cx = height * rng.uniform(0.4, 0.6), width * rng.uniform(0.4, 0.6)
        yy, xx = np.ogrid[0:height, 0:width]
        r2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / np.float32((width / 2) ** 2 + (height / 2) ** 2)
        return x * (1.0 - strength * r2).astype(np.float32)[..., None]
