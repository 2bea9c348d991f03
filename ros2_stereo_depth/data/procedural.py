"""Procedural textures and masks for scene layers: value noise, stripes and tiles (repetitive),
flat colours (textureless), blob shapes, and thin structures (branches, wires, fences, railings).
Four more texture families (HELDOUT_FAMILIES: stones, grain, gravel, strokes) are never drawn by
training; the held-out-domain recording (data/heldout_bag.py) uses them, so that its surfaces are new
to the shipped weights.

Textures are (H, W, 3) float32 in [0, 1]; masks are (H, W) uint8 0/1. Everything is drawn from the
caller's numpy Generator, so a scene is a pure function of its seed.
"""
from __future__ import annotations

import cv2
import numpy as np


def clip01(x: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] in place (np.clip is several times slower on large float arrays)."""
    np.maximum(x, 0.0, out=x)
    return np.minimum(x, 1.0, out=x)


def value_noise(rng: np.random.Generator, height: int, width: int, channels: int) -> np.ndarray:
    """Multi-octave value noise in [0,1], (H,W,C) float32. Octaves are summed on the finest octave's
    small grid and only the sum is interpolated to full size (one full-size resize, not one per octave)."""
    base = rng.uniform(2.0, 6.0)
    octaves = int(rng.integers(2, 6))
    finest = min(base * 2.0 ** (octaves - 1), height / 3.0)  # finer than ~3 px per cell only aliases
    fine_h, fine_w = max(2, int(finest)), max(2, int(finest * width / height))
    acc = np.zeros((fine_h, fine_w, channels), np.float32)
    total = 0.0
    for octave in range(octaves):
        cells = min(base * (2.0 ** octave), finest)
        gh, gw = max(2, int(cells)), max(2, int(cells * width / height))
        grid = rng.random((gh, gw, channels), dtype=np.float32)
        weight = rng.uniform(0.3, 1.0) ** octave
        acc += weight * cv2.resize(grid, (fine_w, fine_h), interpolation=cv2.INTER_CUBIC).reshape(fine_h, fine_w, channels)
        total += weight
    acc /= total
    lo, hi = (float(v) for v in np.percentile(acc, (1, 99)))
    acc = (acc - np.float32(lo)) * np.float32(1.0 / max(hi - lo, 1e-6))
    out = cv2.resize(acc, (width, height), interpolation=cv2.INTER_CUBIC).reshape(height, width, channels)
    return clip01(out)


def flat_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """An (almost) textureless surface: one colour, a faint shading gradient, 1-2 % noise."""
    colour = rng.random(3).astype(np.float32)
    shade = np.linspace(0.0, rng.uniform(-0.1, 0.1), width, dtype=np.float32)[None, :, None]
    return clip01(colour + shade + 0.02 * (value_noise(rng, height, width, 1) - 0.5))


def repetitive_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Stripes, checkerboards or brick-like tiles: many equally good matches along the epipolar line."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    period = rng.uniform(6, 40)
    kind = rng.integers(3)
    if kind == 0:
        angle = rng.uniform(0, np.pi)
        pattern = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    elif kind == 1:
        pattern = ((np.floor(xx / period) + np.floor(yy / period)) % 2).astype(np.float32)
    else:  # bricks: rows offset by half a brick, dark mortar lines
        row_h = period * rng.uniform(0.4, 0.8)
        row = np.floor(yy / row_h)
        shifted = xx + (row % 2) * period / 2
        mortar = (np.mod(yy, row_h) < 2) | (np.mod(shifted, period) < 2)
        pattern = np.where(mortar, 0.2, 0.8).astype(np.float32)
    colours = rng.random((2, 3)).astype(np.float32)
    pattern = cv2.GaussianBlur(pattern.astype(np.float32), (0, 0), 0.8)  # a lens never shows a perfect step
    tex = colours[0] + (colours[1] - colours[0]) * pattern[..., None]
    return clip01(tex + 0.15 * (value_noise(rng, height, width, 3) - 0.5))


def noise_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    tex = value_noise(rng, height, width, 3)
    if rng.random() < 0.5:  # mostly-grey textures, like many real surfaces
        grey = cv2.cvtColor(tex, cv2.COLOR_RGB2GRAY)[..., None]
        tex = np.float32(0.7) * grey + np.float32(0.3) * tex
    contrast = np.float32(rng.uniform(0.3, 1.0))
    offset = np.float32(0.5 - 0.5 * contrast + rng.uniform(-0.2, 0.2))
    return clip01(tex * contrast + offset)


def _colour(values: np.ndarray) -> tuple[float, float, float]:
    r, g, b = (float(v) for v in np.clip(values, 0.0, 1.0))
    return r, g, b


def stone_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Paving stones or pebbles: cells around random seeds (nearest seed), one tint each, dark joints."""
    count = max(2, int(height * width / rng.uniform(150, 900)))
    seeds = np.ones((height, width), np.uint8)
    seeds[rng.integers(0, height, count), rng.integers(0, width, count)] = 0
    _, cells = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    tints = rng.random(3).astype(np.float32) + rng.normal(0, 0.15, (int(cells.max()) + 1, 3)).astype(np.float32)
    tex = tints[cells]
    joint = np.zeros((height, width), np.uint8)
    joint[:, 1:] |= cells[:, 1:] != cells[:, :-1]
    joint[1:, :] |= cells[1:, :] != cells[:-1, :]
    tex[cv2.dilate(joint, np.ones((2, 2), np.uint8)) > 0] *= np.float32(rng.uniform(0.3, 0.6))
    return clip01(tex + 0.1 * (value_noise(rng, height, width, 1) - 0.5))


def grain_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Wood or marble: bands 4-16 px apart along a random direction, warped by value noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(4, 16)
    warp = value_noise(rng, height, width, 1)[..., 0] * np.float32(rng.uniform(5, 30))
    phase = (xx * np.float32(np.cos(angle)) + yy * np.float32(np.sin(angle)) + warp) * np.float32(2 * np.pi / period)
    bands = (0.5 + 0.5 * np.sin(phase)) ** np.float32(rng.uniform(0.5, 3.0))
    colours = rng.random((2, 3)).astype(np.float32)
    return clip01(colours[0] + (colours[1] - colours[0]) * bands[..., None])


def gravel_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Gravel or speckle: thousands of 1-3 px grains of random greys on a ground colour."""
    tex = np.empty((height, width, 3), np.float32)
    tex[:] = rng.random(3)
    count = int(height * width / rng.uniform(20, 80))
    for x, y, radius, grey, tint in zip(rng.integers(0, width, count), rng.integers(0, height, count),
                                        rng.integers(1, 4, count), rng.random(count), rng.normal(0, 0.08, (count, 3))):
        cv2.circle(tex, (int(x), int(y)), int(radius), _colour(grey + tint), -1)
    return clip01(cv2.GaussianBlur(tex, (0, 0), 0.6))


def stroke_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Posters, labels, graffiti: short dark strokes and arcs on a light ground."""
    tex = np.empty((height, width, 3), np.float32)
    tex[:] = rng.uniform(0.6, 1.0, 3)
    ink = _colour(rng.uniform(0.0, 0.4, 3))
    for _ in range(int(height * width / rng.uniform(100, 400))):
        x, y, length, angle = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(3, 15), rng.uniform(0, np.pi)
        if rng.random() < 0.5:
            end = (int(x + length * np.cos(angle)), int(y + length * np.sin(angle)))
            cv2.line(tex, (int(x), int(y)), end, ink, int(rng.integers(1, 3)))
        else:
            cv2.ellipse(tex, (int(x), int(y)), (int(length / 2), int(length / 3)), float(np.degrees(angle)), 0.0,
                        float(rng.uniform(90, 360)), ink, 1)
    return clip01(cv2.GaussianBlur(tex, (0, 0), 0.5))


HELDOUT_FAMILIES = (stone_texture, grain_texture, gravel_texture, stroke_texture)


def heldout_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A texture from a family training never draws (HELDOUT_FAMILIES), chosen uniformly."""
    return HELDOUT_FAMILIES[int(rng.integers(len(HELDOUT_FAMILIES)))](rng, height, width)


def blob_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """An ellipse, a random polygon or a rotated box somewhere on the canvas."""
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
    return mask


def _branch(mask: np.ndarray, rng: np.random.Generator, x: float, y: float, angle: float, length: float,
            thickness: float, depth: int) -> None:
    """A wiggly limb that forks: thinner and shorter children at each fork."""
    steps = max(2, int(length / 6))
    points = [(x, y)]
    for _ in range(steps):
        angle += rng.normal(0, 0.25)
        x, y = x + np.cos(angle) * length / steps, y + np.sin(angle) * length / steps
        points.append((x, y))
    cv2.polylines(mask, [np.int32(np.round(points))], False, 1, max(1, int(round(thickness))))
    if depth > 0:
        for _ in range(int(rng.integers(1, 4))):
            px, py = points[int(rng.integers(1, len(points)))]
            _branch(mask, rng, px, py, angle + rng.choice([-1, 1]) * rng.uniform(0.3, 1.2),
                    length * rng.uniform(0.4, 0.8), thickness * rng.uniform(0.5, 0.8), depth - 1)


def thin_structure_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Branches, wires, a fence (bars or chain-link) or a railing, 1-8 px wide."""
    mask = np.zeros((height, width), np.uint8)
    kind = rng.integers(4)
    if kind == 0:  # a tree limb entering from an edge
        x = rng.uniform(0, width)
        y = height + 2 if rng.random() < 0.5 else rng.uniform(0, height)
        _branch(mask, rng, x, y, rng.uniform(-np.pi, 0), rng.uniform(0.4, 1.0) * height, rng.uniform(2, 8), 3)
    elif kind == 1:  # sagging wires across the image
        xs = np.arange(-5, width + 5, 4, dtype=np.float32)
        for _ in range(int(rng.integers(1, 5))):
            y0, sag = rng.uniform(0, height), rng.uniform(0, 0.3) * height
            tilt = rng.uniform(-0.2, 0.2)
            ys = y0 + tilt * xs + sag * ((2 * xs / width - 1) ** 2 - 1)
            cv2.polylines(mask, [np.int32(np.stack([xs, ys], 1))], False, 1, int(rng.integers(1, 4)))
    elif kind == 2:  # fence: vertical bars, or two families of diagonals (chain-link)
        spacing, bar = rng.uniform(6, 40), int(rng.integers(1, 8))
        top, bottom = int(rng.uniform(0, 0.5) * height), height
        if rng.random() < 0.5:
            for x in np.arange(rng.uniform(0, spacing), width, spacing):
                cv2.line(mask, (int(x), top), (int(x), bottom), 1, bar)
            for y in rng.uniform(top, bottom, int(rng.integers(0, 3))):
                cv2.line(mask, (0, int(y)), (width, int(y)), 1, bar)
        else:
            for x in np.arange(-height, width + height, spacing):
                cv2.line(mask, (int(x), top), (int(x + bottom - top), bottom), 1, max(1, bar // 2))
                cv2.line(mask, (int(x), bottom), (int(x + bottom - top), top), 1, max(1, bar // 2))
    else:  # railing: balusters under a top rail
        spacing, bar = rng.uniform(10, 50), int(rng.integers(2, 10))
        top = int(rng.uniform(0.1, 0.6) * height)
        bottom = int(min(height, top + rng.uniform(0.2, 0.6) * height))
        cv2.rectangle(mask, (0, top), (width, top + int(rng.integers(3, 12))), 1, -1)
        for x in np.arange(rng.uniform(0, spacing), width, spacing):
            cv2.line(mask, (int(x), top), (int(x), bottom), 1, bar)
    return mask


def smooth_surface(rng: np.random.Generator, height: int, width: int, amplitude_px: float,
                   max_slope: float) -> np.ndarray:
    """A curved surface term u(x, y) in px (bowl, cylinder or rolling noise), |du/dx| <= max_slope."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    kind = rng.integers(3)
    if kind == 0:  # bowl / dome around a random centre
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        u = -((xx - cx) ** 2 + (yy - cy) ** 2)
    elif kind == 1:  # cylinder with a random axis
        angle = rng.uniform(0, np.pi)
        u = -((xx - width / 2) * np.cos(angle) + (yy - height / 2) * np.sin(angle)) ** 2
    else:
        u = value_noise(rng, height, width, 1)[..., 0]
    u = u - u.mean()
    span = float(u.max() - u.min()) or 1.0
    u = u * np.float32(amplitude_px / span)
    slope = float(np.abs(np.diff(u, axis=1)).max(initial=0.0))
    if slope > max_slope:
        u *= np.float32(max_slope / slope)
    return u.astype(np.float32)
