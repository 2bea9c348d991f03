"""Procedural rectified stereo scenes with exact disparity (no downloads).

A scene is a stack of layers. Each layer is a textured shape lying on a plane whose disparity is
affine in the left image, d(x, y) = a + b*x + c*y. Both views are rendered by inverse mapping
(the right pixel xr sees the layer point with left coordinate x = (xr + a + c*y) / (1 - b)) and
z-buffered per pixel by disparity (nearer = larger disparity wins), so occlusions are exact and the
ground truth is the analytic disparity of the visible layer at each left pixel centre.

Used by the demo's stereo source (`SyntheticSequence`) and by training (`SyntheticStereo`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

# Images that installed packages ship, used as natural textures when present. The Aloe pair is
# excluded: it is our real-data test set.
TEXTURE_DIRS = (Path("/usr/share/doc/opencv-doc/examples/data"),)
EXCLUDED_TEXTURES = ("aloe",)


@dataclass(frozen=True)
class SceneParams:
    height: int = 240
    width: int = 320
    max_disparity_px: float = 64.0  # largest disparity any layer reaches
    min_layers: int = 3
    max_layers: int = 9
    textureless_prob: float = 0.08  # share of layers with (almost) no texture
    image_texture_prob: float = 0.4  # share of textures cut from shipped images, when any exist


@dataclass
class StereoSample:
    left: np.ndarray  # (H,W,3) uint8 RGB
    right: np.ndarray  # (H,W,3) uint8 RGB
    disparity_px: np.ndarray  # (H,W) float32, left view, exact
    disparity_right_px: np.ndarray  # (H,W) float32, right view, exact
    occluded: np.ndarray  # (H,W) bool: left pixel not visible in the right image (or outside it)


@dataclass
class Layer:
    texture: np.ndarray  # (H, Wc, 3) float32 in [0,1], canvas in layer coordinates
    mask: np.ndarray  # (H, Wc) float32 0/1
    plane: tuple[float, float, float]  # a, b, c


def _noise(rng: np.random.Generator, height: int, width: int, channels: int) -> np.ndarray:
    """Multi-octave value noise in [0,1], (H,W,C) float32."""
    out = np.zeros((height, width, channels), np.float32)
    total = 0.0
    base = rng.uniform(2.0, 6.0)
    octaves = rng.integers(2, 6)
    for octave in range(int(octaves)):
        cells = base * (2.0 ** octave)
        gh, gw = max(2, int(height / (height / cells))), max(2, int(cells * width / height))
        grid = rng.random((gh, gw, channels), dtype=np.float32)
        layer = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC).reshape(height, width, channels)
        weight = rng.uniform(0.3, 1.0) ** octave
        out += weight * layer
        total += weight
    out /= total
    lo, hi = np.percentile(out, 1), np.percentile(out, 99)
    return np.clip((out - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


class TextureBank:
    """Natural images from installed packages, loaded once."""

    def __init__(self, dirs: tuple[Path, ...] = TEXTURE_DIRS) -> None:
        self.images: list[np.ndarray] = []
        for directory in dirs:
            if not directory.is_dir():
                continue
            for path in sorted(directory.iterdir()):
                if path.suffix.lower() not in (".jpg", ".jpeg", ".png") or any(x in path.name.lower() for x in EXCLUDED_TEXTURES):
                    continue
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is not None and min(image.shape[:2]) >= 64:
                    self.images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0)

    def sample(self, rng: np.random.Generator, height: int, width: int) -> np.ndarray | None:
        if not self.images:
            return None
        image = self.images[int(rng.integers(len(self.images)))]
        scale = rng.uniform(0.5, 2.0)
        resized = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        reps = (int(np.ceil(height / resized.shape[0])), int(np.ceil(width / resized.shape[1])), 1)
        tiled = np.tile(resized, reps)  # tiling keeps the texture dense for large layers
        y = int(rng.integers(0, tiled.shape[0] - height + 1))
        x = int(rng.integers(0, tiled.shape[1] - width + 1))
        return np.ascontiguousarray(tiled[y:y + height, x:x + width])


_BANK: TextureBank | None = None


def texture_bank() -> TextureBank:
    global _BANK
    if _BANK is None:
        _BANK = TextureBank()
    return _BANK


def _texture(rng: np.random.Generator, params: SceneParams, height: int, width: int) -> np.ndarray:
    kind = rng.random()
    if kind < params.textureless_prob:
        colour = rng.random(3).astype(np.float32)
        return np.clip(colour + 0.02 * _noise(rng, height, width, 1), 0, 1) * np.ones((1, 1, 3), np.float32)
    if kind < params.textureless_prob + params.image_texture_prob:
        image = texture_bank().sample(rng, height, width)
        if image is not None:
            return image
    tex = _noise(rng, height, width, 3)
    if rng.random() < 0.5:  # mostly-grey textures, like many real surfaces
        grey = tex.mean(axis=2, keepdims=True)
        tex = 0.7 * grey + 0.3 * tex
    if rng.random() < 0.2:  # periodic stripes: the classic ambiguity
        period = rng.uniform(6, 40)
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        stripes = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
        tex = 0.5 * tex + 0.5 * stripes[..., None]
    contrast = rng.uniform(0.3, 1.0)
    return np.clip(0.5 + (tex - 0.5) * contrast + rng.uniform(-0.2, 0.2), 0, 1).astype(np.float32)


def _shape_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    size = rng.uniform(0.05, 0.45) * height
    kind = rng.integers(3)
    if kind == 0:
        axes = (int(size), int(size * rng.uniform(0.3, 1.5)))
        cv2.ellipse(mask, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif kind == 1:
        n = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = size * rng.uniform(0.4, 1.2, n)
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1).astype(np.int32)
        cv2.fillPoly(mask, [pts], 1)
    else:
        w, h = size * rng.uniform(0.3, 2.0), size * rng.uniform(0.3, 2.0)
        box = cv2.boxPoints(((cx, cy), (w, h), float(rng.uniform(0, 90)))).astype(np.int32)
        cv2.fillPoly(mask, [box], 1)
    return mask.astype(np.float32)


def random_scene(rng: np.random.Generator, params: SceneParams) -> list[Layer]:
    """Background layer first, then shapes; disparity ranges overlap so order is decided per pixel."""
    h, w, dmax = params.height, params.width, params.max_disparity_px
    canvas_w = w + int(np.ceil(dmax)) + 2
    layers = []
    n = int(rng.integers(params.min_layers, params.max_layers + 1))
    # Background: far, possibly a slanted ground-like plane.
    d0 = rng.uniform(0.0, 0.3) * dmax
    slope_y = rng.uniform(0.0, 0.5) * dmax / h if rng.random() < 0.6 else 0.0
    layers.append(Layer(_texture(rng, params, h, canvas_w), np.ones((h, canvas_w), np.float32),
                        (d0, rng.uniform(-0.05, 0.05) * dmax / w, slope_y)))
    for _ in range(n - 1):
        d = rng.uniform(0.05, 0.95) * dmax
        b = rng.uniform(-0.1, 0.1) * dmax / w if rng.random() < 0.5 else 0.0
        c = rng.uniform(-0.15, 0.15) * dmax / h if rng.random() < 0.5 else 0.0
        a = d - b * w / 2 - c * h / 2
        layers.append(Layer(_texture(rng, params, h, canvas_w), _shape_mask(rng, h, canvas_w), (a, b, c)))
    for layer in layers:
        a, b, c = layer.plane
        lowest = a + min(0.0, b * canvas_w) + min(0.0, c * h)
        if lowest < 0.0:
            layer.plane = (a - lowest, b, c)
    return layers


def render(layers: list[Layer], height: int, width: int, offsets_px: list[float] | None = None,
           max_disparity_px: float | None = None) -> StereoSample:
    """Render both views of `layers`, each layer slid right by its offset (for sequences)."""
    offsets = offsets_px or [0.0] * len(layers)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    views = []
    for view in ("left", "right"):
        best_d = np.full((height, width), -np.inf, np.float32)
        image = np.zeros((height, width, 3), np.float32)
        for layer, offset in zip(layers, offsets):
            a, b, c = layer.plane
            x_left = xs if view == "left" else (xs + a + c * ys) / (1.0 - b)
            d = (a + b * x_left + c * ys).astype(np.float32)
            map_x = (x_left - offset).astype(np.float32)
            covered = cv2.remap(layer.mask, map_x, ys, cv2.INTER_NEAREST, borderMode=cv2.BORDER_WRAP) > 0.5
            front = covered & (d > best_d)
            colour = cv2.remap(layer.texture, map_x, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
            image[front] = colour[front]
            best_d[front] = d[front]
        views.append((image, best_d))
    (left, disp_l), (right, disp_r) = views
    if max_disparity_px is not None:
        disp_l = np.minimum(disp_l, max_disparity_px)
        disp_r = np.minimum(disp_r, max_disparity_px)
    # A left pixel is visible on the right when the right view shows the same surface there.
    xr = np.rint(xs - disp_l).astype(np.int64)
    inside = (xr >= 0) & (xr < width)
    seen = np.full((height, width), -np.inf, np.float32)
    seen[inside] = disp_r[ys.astype(np.int64)[inside], xr[inside]]
    occluded = ~inside | (np.abs(seen - disp_l) > 1.0)
    to_u8 = lambda im: np.clip(im * 255.0 + 0.5, 0, 255).astype(np.uint8)  # noqa: E731
    return StereoSample(to_u8(left), to_u8(right), disp_l.astype(np.float32), disp_r.astype(np.float32), occluded)


@dataclass(frozen=True)
class Photometric:
    """Asymmetric camera differences, so the network does not learn to match exact intensities."""
    gain_range: tuple[float, float] = (0.8, 1.2)
    bias_range: tuple[float, float] = (-0.08, 0.08)
    gamma_range: tuple[float, float] = (0.8, 1.25)
    colour_jitter: float = 0.05
    noise_std_range: tuple[float, float] = (0.0, 0.03)
    blur_prob: float = 0.3
    vertical_jitter_px: float = 0.5  # residual rectification error

    def apply(self, rng: np.random.Generator, image: np.ndarray, right: bool = False) -> np.ndarray:
        x = image.astype(np.float32) / 255.0
        if right and self.vertical_jitter_px > 0:
            shift = np.float32([[1, 0, 0], [0, 1, rng.uniform(-self.vertical_jitter_px, self.vertical_jitter_px)]])
            x = cv2.warpAffine(x, shift, (x.shape[1], x.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        x = np.power(np.clip(x, 0, 1), rng.uniform(*self.gamma_range))
        gain = rng.uniform(*self.gain_range) * (1 + rng.uniform(-self.colour_jitter, self.colour_jitter, 3))
        x = x * gain.astype(np.float32) + rng.uniform(*self.bias_range)
        if rng.random() < self.blur_prob:
            x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.3, 1.2))
        x = x + rng.normal(0, rng.uniform(*self.noise_std_range), x.shape).astype(np.float32)
        return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def render_scaled(rng: np.random.Generator, params: SceneParams, scale: float) -> StereoSample:
    """Scale-change augmentation: a scene rendered at 1/scale of the size (and disparity range),
    resized by ~scale and cropped to the requested size, so scale > 1 zooms in (larger, blurrier
    texture) and < 1 zooms out. Disparity is multiplied by the actual resize ratio; ground truth
    and occlusion are resampled nearest-neighbour (no blending across depth edges)."""
    h, w = params.height, params.width
    small = replace(params, height=int(np.ceil(h / scale)) + 1, width=int(np.ceil(w / scale)) + 1,
                    max_disparity_px=params.max_disparity_px / scale)
    rendered = render(random_scene(rng, small), small.height, small.width, max_disparity_px=small.max_disparity_px)
    size = (max(w, int(round(small.width * scale))), max(h, int(round(small.height * scale))))
    ratio = np.float32(size[0] / small.width)
    y = int(rng.integers(0, size[1] - h + 1))
    x = int(rng.integers(0, size[0] - w + 1))
    crop = (slice(y, y + h), slice(x, x + w))
    image_mode = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR

    def resize(image: np.ndarray, mode: int) -> np.ndarray:
        return np.ascontiguousarray(cv2.resize(image, size, interpolation=mode)[crop])

    def disparity(d: np.ndarray) -> np.ndarray:
        return np.minimum(resize(d, cv2.INTER_NEAREST) * ratio, np.float32(params.max_disparity_px))

    return StereoSample(resize(rendered.left, image_mode), resize(rendered.right, image_mode),
                        disparity(rendered.disparity_px), disparity(rendered.disparity_right_px),
                        resize(rendered.occluded.astype(np.uint8), cv2.INTER_NEAREST) > 0)


@dataclass
class SyntheticStereo:
    """Deterministic random-access training set: sample i is the same for a given seed."""
    params: SceneParams = field(default_factory=SceneParams)
    seed: int = 0
    length: int = 1_000_000
    photometric: Photometric | None = field(default_factory=Photometric)
    # Scale-change augmentation (render_scaled), factor drawn uniformly from this range; None (the
    # default) leaves the samples exactly as without it.
    scale_range: tuple[float, float] | None = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> StereoSample:
        rng = np.random.default_rng([self.seed, index])
        p = self.params
        if self.scale_range is None:
            sample = render(random_scene(rng, p), p.height, p.width, max_disparity_px=p.max_disparity_px)
        else:
            sample = render_scaled(rng, p, float(rng.uniform(*self.scale_range)))
        if self.photometric is not None:
            sample.left = self.photometric.apply(rng, sample.left)
            sample.right = self.photometric.apply(rng, sample.right, right=True)
        return sample


class SyntheticSequence:
    """A moving scene for the demo's stereo source: layers slide sideways at their own speeds."""

    def __init__(self, params: SceneParams, seed: int = 7) -> None:
        self.params = params
        rng = np.random.default_rng(seed)
        self.layers = random_scene(rng, params)
        self.speeds_px = [0.0] + [float(rng.uniform(-3.0, 3.0)) for _ in self.layers[1:]]

    def frame(self, index: int) -> StereoSample:
        p = self.params
        return render(self.layers, p.height, p.width, [s * index for s in self.speeds_px], p.max_disparity_px)
