"""Synthetic rectified stereo scenes with exact disparity: "stereo from single images" and procedural layers.

Two kinds of scene, both stacks of layers rendered by data/render.py (exact occlusion, exact disparity):
- photo scenes: a real photo from the caller's `TextureBank` is cut into regions that follow its own
  edges (data/segmentation.py); each region becomes a plane or a curved surface at its own depth, in
  front of a second photo (what disocclusions show). The left view is the photo itself.
- procedural scenes: blobs with noise, flat (textureless), repetitive or photo textures on planes.
Both add thin structures (branches, wires, fences, railings) in front, and sometimes glossy highlights
that differ between views. Per-view camera effects come from data/camera.py.

Used by the demo's stereo source (`SyntheticSequence`) and by training (`SyntheticStereo`). Everything
a sample depends on is passed in: params, seed, and the texture bank (None: procedural textures only).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from .camera import Photometric
from .procedural import (blob_mask, flat_texture, heldout_texture, noise_texture, repetitive_texture,
                         smooth_surface, thin_structure_mask)
from .render import Layer, StereoSample, add_specular, finish, mask_bbox, render, render_layers
from .textures import TextureBank

__all__ = ["Layer", "Photometric", "SceneParams", "StereoSample", "SyntheticSequence", "SyntheticStereo",
           "random_scene", "render", "render_scaled"]


TEXTURE_FAMILIES = ("training", "heldout")


@dataclass(frozen=True)
class SceneParams:
    height: int = 240
    width: int = 320
    max_disparity_px: float = 64.0  # largest disparity any layer reaches
    min_layers: int = 3  # procedural scenes: layers including the background
    max_layers: int = 9
    textureless_prob: float = 0.08  # share of procedural layers with (almost) no texture
    image_texture_prob: float = 0.4  # share of procedural layers textured with a photo (with a bank)
    photo_scene_prob: float = 0.7  # share of scenes cut from a segmented photo (with a bank)
    min_regions: int = 4  # photo scenes: regions the photo is cut into
    max_regions: int = 24
    max_photo_objects: int = 2  # photo scenes: 0..this many blobs (other textures) in front of the photo
    repetitive_prob: float = 0.1  # share of procedural layers with stripes, checks or bricks
    curved_prob: float = 0.3  # share of layers on a curved surface instead of a plane
    max_thin_structures: int = 3  # 0..this many thin layers (branches, wires, fences, railings) per scene
    thin_structure_prob: float = 0.5  # chance a scene has any
    specular_prob: float = 0.3  # chance of a glossy highlight that differs between views, per scene
    # Share of distant scenes: every layer but thin structures within 3-25 % of the range (far walls,
    # streets, sky lines: small disparities everywhere). 0 draws exactly the scenes of earlier versions.
    far_scene_prob: float = 0.0
    # "training": the families above; "heldout": only procedural.HELDOUT_FAMILIES, which training never
    # draws (the held-out-domain recording, data/heldout_bag.py).
    texture_families: str = "training"

    def __post_init__(self) -> None:
        if self.texture_families not in TEXTURE_FAMILIES:
            raise ValueError(f"texture_families must be one of {TEXTURE_FAMILIES}, not {self.texture_families!r}")


def _fit_plane(rng: np.random.Generator, box: tuple[int, int, int, int], lo: float, hi: float,
               slant: float, follow: tuple[float, float, float] | None = None) -> tuple[float, float, float]:
    """A plane whose disparity over `box` (y0, y1, x0, x1) stays inside [lo, hi]. Random depth and
    slopes (up to `slant` px per px), or those of `follow` (a, b, c: a scene-wide plane the region
    lies on, so neighbours meet without a depth jump); slopes shrink until the span fits the range."""
    y0, y1, x0, x1 = box
    if follow is not None:
        a, b, c = follow
    else:
        b = rng.uniform(-slant, slant) if rng.random() < 0.7 else 0.0
        c = rng.uniform(-slant, slant) if rng.random() < 0.7 else 0.0
    span = abs(b) * (x1 - 1 - x0) + abs(c) * (y1 - 1 - y0)
    if span > hi - lo:
        shrink = (hi - lo) / span
        b, c, span = b * shrink, c * shrink, hi - lo
    corner_min = b * (x0 if b >= 0 else x1 - 1) + c * (y0 if c >= 0 else y1 - 1)
    if follow is not None:  # keep the scene plane's value at the box centre, moved into range
        centre = a + b * (x0 + x1 - 1) / 2 + c * (y0 + y1 - 1) / 2
        low = float(np.clip(centre - span / 2, lo, max(lo, hi - span)))
    else:
        low = rng.uniform(lo, max(lo, hi - span))
    return (low - corner_min, b, c)


def _fit_surface(rng: np.random.Generator, layer: Layer, box: tuple[int, int, int, int], lo: float, hi: float) -> None:
    """Bend `layer` (already fitted into [lo, hi] over `box`) into a curved surface that still fits."""
    y0, y1, x0, x1 = box
    a, b, c = layer.plane
    height, width = layer.mask.shape
    plane = a + b * np.array([x0, x1 - 1])[:, None] + c * np.array([y0, y1 - 1])[None, :]
    room = min(float(plane.min()) - lo, hi - float(plane.max()))
    if room < 1.0:
        return
    # |du/dx| / (1 - b) <= 0.5 keeps render's fixed-point iteration contracting
    surface = smooth_surface(rng, height, width, rng.uniform(0.3, 1.0) * 2 * room, 0.5 * (1.0 - b))
    u = surface[y0:y1, x0:x1]
    shift = -float(u.mean())
    excess = max(float(u.max()) + shift - room, -(float(u.min()) + shift) - room, 0.0)
    if excess > 0:
        surface *= np.float32(room / (room + excess))
    layer.surface = (surface + np.float32(-float(surface[y0:y1, x0:x1].mean()))).astype(np.float32)


def _add_layer(rng: np.random.Generator, layers: list[Layer], texture: np.ndarray, mask: np.ndarray,
               lo: float, hi: float, slant: float, curved_prob: float,
               follow: tuple[float, float, float] | None = None, sliding: bool = False) -> None:
    # a sliding layer (sequences) can be anywhere on its canvas: fit its depth over all of it
    box = (0, mask.shape[0], 0, mask.shape[1]) if sliding else mask_bbox(mask)
    if box is None:
        return
    layer = Layer(texture, mask, _fit_plane(rng, box, lo, hi, slant, follow))
    if rng.random() < curved_prob:
        _fit_surface(rng, layer, box, lo, hi)
    layers.append(layer)


def _texture(rng: np.random.Generator, params: SceneParams, textures: TextureBank | None, height: int,
             width: int) -> np.ndarray:
    """A procedural layer's texture: flat, a photo crop, repetitive or value noise (or a held-out family)."""
    if params.texture_families == "heldout":
        return heldout_texture(rng, height, width)
    photos = textures is not None and len(textures) > 0
    kind = rng.random()
    if kind < params.textureless_prob:
        return flat_texture(rng, height, width)
    if kind < params.textureless_prob + params.repetitive_prob:
        return repetitive_texture(rng, height, width)
    if photos and kind < params.textureless_prob + params.repetitive_prob + params.image_texture_prob:
        assert textures is not None
        return textures.crop(rng, height, width, 1)[1].image
    return noise_texture(rng, height, width)


def _thin_texture(rng: np.random.Generator, params: SceneParams, textures: TextureBank | None, height: int,
                  width: int) -> np.ndarray:
    if params.texture_families == "heldout":
        return heldout_texture(rng, height, width)
    if textures is not None and len(textures) and rng.random() < 0.5:
        return textures.crop(rng, height, width, 1)[1].image
    return flat_texture(rng, height, width) if rng.random() < 0.5 else noise_texture(rng, height, width)


def _depth_range(rng: np.random.Generator, dmax: float, far_scene_prob: float = 0.0) -> tuple[float, float]:
    """The scene's far and near disparity: the near end is often large (dmax * sqrt(u)), and at the
    limit in about one scene in five, so the top of the range is trained too; never below 22 % of the
    range, except in the distant scenes drawn with far_scene_prob (near end at 3-25 % of the range)."""
    if far_scene_prob > 0 and rng.random() < far_scene_prob:
        near = dmax * float(rng.uniform(0.03, 0.25))
        return near * rng.uniform(0.0, 0.6), near
    near = dmax * min(1.0, float(np.sqrt(rng.uniform(0.05, 1.25))))
    far = near * rng.uniform(0.0, 0.6)
    return far, near


def random_scene(rng: np.random.Generator, params: SceneParams, textures: TextureBank | None = None,
                 sliding: bool = False) -> list[Layer]:
    """The layers of one scene (background first), every disparity within [0, max_disparity_px];
    with `sliding`, wherever a layer moves on its canvas."""
    h, w, dmax = params.height, params.width, params.max_disparity_px
    canvas_w = w + int(np.ceil(dmax)) + 2
    far, near = _depth_range(rng, dmax, params.far_scene_prob)
    layers: list[Layer] = []
    full = np.ones((h, canvas_w), np.uint8)
    gap = min(0.5, 0.1 * (near - far))  # background strictly behind the rest, so it never wins a tie
    photo_scene = textures is not None and len(textures) > 0 and rng.random() < params.photo_scene_prob
    if photo_scene:
        assert textures is not None
        background_index, background = textures.crop(rng, h, canvas_w, 1)
        _add_layer(rng, layers, background.image, full, 0.0, max(0.0, far - gap), 0.3 * dmax / w, 0.0)
        regions = int(rng.integers(params.min_regions, params.max_regions + 1))
        _, photo = textures.crop(rng, h, canvas_w, regions, avoid=background_index)
        # Most regions lie on one scene-wide plane (a ground, a wall) with small depth steps, the
        # rest float at their own depth: real photos are mostly continuous surfaces.
        scene = _fit_plane(rng, (0, h, 0, canvas_w), far, near, 1.5 * (near - far) / w)
        attached = rng.uniform(0.6, 1.0)
        # Sometimes the largest region is painted one colour: a large textureless wall or sky.
        flat_region = -1
        if rng.random() < 2 * params.textureless_prob:
            flat_region = int(np.argmax(np.bincount(photo.regions.ravel(), minlength=photo.count)))
        for k in range(photo.count):
            mask = (photo.regions == k).astype(np.uint8)
            follow = None
            if rng.random() < attached:
                step = rng.normal(0.0, 0.05) * (near - far)
                follow = (scene[0] + step, scene[1], scene[2])
            texture = photo.image
            if k == flat_region:
                colour = photo.image[mask > 0].mean(axis=0) / 255.0 if mask.any() else rng.random(3)
                texture = np.empty((h, canvas_w, 3), np.float32)
                texture[:] = np.clip(colour + rng.normal(0, 0.05, 3), 0, 1).astype(np.float32)
            _add_layer(rng, layers, texture, mask, far, near, 0.4 * (near - far) / w + 0.1, params.curved_prob,
                       follow)
        for _ in range(int(rng.integers(0, params.max_photo_objects + 1))):  # objects in front of the photo
            lo = far + (near - far) * rng.uniform(0.3, 1.0)
            _add_layer(rng, layers, _texture(rng, params, textures, h, canvas_w), blob_mask(rng, h, canvas_w),
                       lo, near, 0.2 * dmax / w, params.curved_prob)
    else:
        _add_layer(rng, layers, _texture(rng, params, textures, h, canvas_w), full, 0.0, max(0.0, far - gap),
                   0.3 * dmax / w, 0.0)
        for _ in range(int(rng.integers(params.min_layers, params.max_layers + 1)) - 1):
            _add_layer(rng, layers, _texture(rng, params, textures, h, canvas_w), blob_mask(rng, h, canvas_w),
                       far, near, 0.2 * dmax / w, params.curved_prob, sliding=sliding)
    if rng.random() < params.thin_structure_prob:
        for _ in range(int(rng.integers(1, params.max_thin_structures + 1))):
            lo = far + (near - far) * rng.uniform(0.3, 1.0)
            _add_layer(rng, layers, _thin_texture(rng, params, textures, h, canvas_w),
                       thin_structure_mask(rng, h, canvas_w), lo, max(lo, dmax * rng.uniform(0.5, 1.0)),
                       0.3 * dmax / w, 0.0, sliding=sliding)
    return layers


def render_scene(rng: np.random.Generator, params: SceneParams, textures: TextureBank | None = None,
                 gloss: bool = True) -> StereoSample:
    """A random scene rendered; with `gloss`, sometimes a highlight that differs between the views."""
    layers = random_scene(rng, params, textures)
    rendered = render_layers(layers, params.height, params.width)
    if gloss and rng.random() < params.specular_prob and len(layers) > 1:
        layer = int(rng.integers(1, len(layers)))
        sigma = rng.uniform(3.0, 0.08 * params.width)
        add_specular(rng, rendered, layer, rng.uniform(0.4, 1.0), sigma, rng.choice([-1, 1]) * rng.uniform(0.3, 1.5) * sigma)
    sample = finish(rendered)
    if sample.disparity_px.max(initial=0.0) > params.max_disparity_px + 1e-3:
        raise AssertionError(f"scene disparity {sample.disparity_px.max():.2f} > {params.max_disparity_px}")
    limit = np.float32(params.max_disparity_px)  # scenes are built within range: this only removes rounding
    np.minimum(sample.disparity_px, limit, out=sample.disparity_px)
    np.minimum(sample.disparity_right_px, limit, out=sample.disparity_right_px)
    return sample


def render_scaled(rng: np.random.Generator, params: SceneParams, scale: float,
                  textures: TextureBank | None = None, gloss: bool = True) -> StereoSample:
    """Scale-change augmentation: a scene rendered at 1/scale of the size (and disparity range),
    resized by ~scale and cropped to the requested size, so scale > 1 zooms in (larger, blurrier
    texture) and < 1 zooms out. Disparity is multiplied by the actual resize ratio; ground truth
    and occlusion are resampled nearest-neighbour (no blending across depth edges)."""
    h, w = params.height, params.width
    small = replace(params, height=int(np.ceil(h / scale)) + 1, width=int(np.ceil(w / scale)) + 1,
                    max_disparity_px=params.max_disparity_px / scale)
    rendered = render_scene(rng, small, textures, gloss)
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
    """Deterministic random-access training set: sample i is the same for a given seed and bank.
    photometric=None turns off every appearance effect (camera differences and view-dependent
    gloss): right(x - d) then reproduces left(x) wherever not occluded, up to resampling."""
    params: SceneParams = field(default_factory=SceneParams)
    seed: int = 0
    length: int = 1_000_000
    photometric: Photometric | None = field(default_factory=Photometric.realistic)
    # Scale-change augmentation (render_scaled), factor drawn uniformly from this range; None (the
    # default) leaves the samples exactly as without it.
    scale_range: tuple[float, float] | None = None
    # Natural photos (TextureBank.load()); None: procedural textures only.
    textures: TextureBank | None = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> StereoSample:
        rng = np.random.default_rng([self.seed, index])
        gloss = self.photometric is not None  # without appearance effects the pair is exactly consistent
        if self.scale_range is None:
            sample = render_scene(rng, self.params, self.textures, gloss)
        else:
            sample = render_scaled(rng, self.params, float(rng.uniform(*self.scale_range)), self.textures, gloss)
        if self.photometric is not None:
            sample.left = self.photometric.apply(rng, sample.left)
            sample.right = self.photometric.apply(rng, sample.right, right=True)
        return sample


class SyntheticSequence:
    """A moving scene for the demo's stereo source: layers slide sideways at their own speeds."""

    def __init__(self, params: SceneParams, seed: int = 7, textures: TextureBank | None = None) -> None:
        self.params = params
        rng = np.random.default_rng(seed)
        # Blobs on planes only: photo regions, thin structures and curves would wrap around
        # the canvas as they slide, and the demo's scene should stay easy to read.
        simple = replace(params, photo_scene_prob=0.0, thin_structure_prob=0.0, curved_prob=0.0)
        self.layers = random_scene(rng, simple, textures, sliding=True)
        self.speeds_px = [0.0] + [float(rng.uniform(-3.0, 3.0)) for _ in self.layers[1:]]

    def frame(self, index: int) -> StereoSample:
        p = self.params
        return render(self.layers, p.height, p.width, [s * index for s in self.speeds_px], p.max_disparity_px)
