"""The synthetic stereo generator: exact, deterministic ground truth; photo textures from packages only,
never from a stereo benchmark."""
import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from ros2_stereo_depth.data.camera import Photometric
from ros2_stereo_depth.data import procedural, synthetic
from ros2_stereo_depth.data.procedural import HELDOUT_FAMILIES, thin_structure_mask
from ros2_stereo_depth.data.render import Rendered, add_specular, render_layers
from ros2_stereo_depth.data.synthetic import (Layer, SceneParams, SyntheticSequence, SyntheticStereo, random_scene,
                                              render)
from ros2_stereo_depth.data.textures import (EXCLUDED_SHA256, TEXTURE_SOURCES, TextureBank, TextureSource, is_excluded,
                                             source_files, texture_record)

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
SKIMAGE = next(s for s in TEXTURE_SOURCES if s.package == "pypi:scikit-image")


@pytest.fixture(scope="module")
def bank():
    """A few scikit-image photos (always installed with the package's requirements)."""
    return TextureBank.load([SKIMAGE], max_side_px=512, max_images=4)


def warp_error(sample):
    """Mean |right(x - d) - left(x)| in [0,1] over visible pixels, and the same with d + 2."""
    h, w = sample.disparity_px.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    visible = ~sample.occluded
    errors = []
    for offset in (0.0, 2.0):
        warped = cv2.remap(sample.right.astype(np.float32), xs - sample.disparity_px - offset, ys, cv2.INTER_LINEAR)
        errors.append(float(np.abs(warped - sample.left).mean(axis=2)[visible].mean()) / 255.0)
    return errors


def test_same_seed_same_sample_other_seed_other_sample(bank):
    params = SceneParams(64, 96, 24.0)
    for textures in (None, bank):
        a, b = SyntheticStereo(params, seed=3, textures=textures)[5], SyntheticStereo(params, seed=3, textures=textures)[5]
        c = SyntheticStereo(params, seed=4, textures=textures)[5]
        assert np.array_equal(a.left, b.left) and np.array_equal(a.right, b.right)
        assert np.array_equal(a.disparity_px, b.disparity_px)
        assert not np.array_equal(a.left, c.left)


def test_disparity_range_and_dtypes():
    params = SceneParams(64, 96, 24.0)
    for i in range(5):
        s = SyntheticStereo(params, seed=1)[i]
        assert s.left.dtype == np.uint8 and s.left.shape == (64, 96, 3)
        assert s.disparity_px.dtype == np.float32
        assert 0.0 <= s.disparity_px.min() and s.disparity_px.max() <= 24.0


def test_distant_scenes_keep_every_disparity_small():
    """far_scene_prob: distant scenes (small disparities everywhere) that the default never draws; thin
    structures may still pass close to the camera, so they are off here."""
    dmax = 120.0
    distant = SyntheticStereo(SceneParams(96, 192, dmax, thin_structure_prob=0.0, far_scene_prob=1.0), seed=5)
    assert all(float(distant[i].disparity_px.max()) <= 0.25 * dmax + 1e-3 for i in range(6))
    mixed = SyntheticStereo(SceneParams(96, 192, dmax, thin_structure_prob=0.0, far_scene_prob=0.5), seed=5)
    maxima = [float(mixed[i].disparity_px.max()) for i in range(12)]
    assert min(maxima) <= 0.25 * dmax < max(maxima), maxima


def test_large_disparities_at_640_width_stay_in_range(bank):
    """Up to 256 px at 640 px width: never above the limit, and the range is really used."""
    data = SyntheticStereo(SceneParams(192, 640, 256.0), seed=2, textures=bank)
    maxima = [float(data[i].disparity_px.max()) for i in range(6)]
    assert max(maxima) <= 256.0 and min(float(data[i].disparity_px.min()) for i in range(3)) >= 0.0
    assert max(maxima) > 150.0, maxima


@pytest.mark.parametrize("photo_scene_prob", [0.0, 1.0])
def test_right_view_warped_by_ground_truth_reproduces_left(bank, photo_scene_prob):
    """The exact-consistency property, augmentations off: photo scenes ("stereo from single images")
    and procedural ones, with thin structures and curved surfaces. Only resampling remains, and one
    wrong disparity (+2 px) is several times worse."""
    params = SceneParams(96, 160, 40.0, photo_scene_prob=photo_scene_prob, thin_structure_prob=1.0, curved_prob=0.5)
    data = SyntheticStereo(params, seed=11, photometric=None, textures=bank)
    for i in range(4):
        sample = data[i]
        exact, wrong = warp_error(sample)
        assert exact < 0.03 and wrong > 2.0 * exact, (i, exact, wrong)
        assert 0.0 < sample.occluded.mean() < 0.6


def test_photo_scene_left_view_is_the_photo_itself(bank):
    """Stereo from a single image: the photo's regions tile the left view, so (without thin
    structures, objects in front or a flat-painted region) the left image is exactly the photo crop, and every left
    pixel's disparity comes from the region under it, none from the background photo behind."""
    params = SceneParams(80, 120, 30.0, photo_scene_prob=1.0, thin_structure_prob=0.0, textureless_prob=0.0,
                         max_photo_objects=0)
    for seed in range(3):
        layers = random_scene(np.random.default_rng(seed), params, bank)
        photo = layers[1].texture
        assert photo.dtype == np.uint8 and all(layer.texture is photo for layer in layers[1:])
        rendered = render_layers(layers, params.height, params.width)
        np.testing.assert_array_equal(np.rint(rendered.left * 255).astype(np.uint8), photo[:, :params.width])
        assert (rendered.layer_left >= 1).all() and (rendered.layer_right >= 0).all()
        assert (rendered.layer_right == 0).any()  # disocclusions show the photo behind


def test_curved_surface_right_view_sees_the_point_whose_disparity_maps_there():
    """A curved layer whose texture encodes its own left x: the right pixel xr must show the point
    x with x - d(x) = xr, to a small fraction of a pixel; the left disparity is exact."""
    h, w, canvas = 24, 64, 100
    xs = np.arange(canvas, dtype=np.float32)
    texture = np.repeat(np.repeat((xs / canvas)[None, :, None], h, 0), 3, 2)
    surface = (4.0 * np.sin(xs / 9.0))[None, :].repeat(h, 0).astype(np.float32)  # |du/dx| <= 0.44
    layer = Layer(texture, np.ones((h, canvas), np.uint8), (12.0, 0.05, 0.0), surface)
    rendered = render_layers([layer], h, w)
    np.testing.assert_allclose(rendered.disparity_left, 12.0 + 0.05 * xs[:w] + surface[:, :w], atol=1e-4)
    x_seen = rendered.right[..., 0] * canvas
    d_seen = 12.0 + 0.05 * x_seen + 4.0 * np.sin(x_seen / 9.0)
    np.testing.assert_allclose(x_seen - d_seen, np.arange(w)[None, :].repeat(h, 0), atol=0.02)
    np.testing.assert_allclose(rendered.disparity_right, d_seen, atol=0.02)


def test_fronto_parallel_square_has_exact_disparity_and_occlusion():
    """Background at 2 px, a square at 10 px: the right view shows the square 10 px to the left, so
    the left view's background strip x in [32, 40), which lands at x - 2 under it, is occluded."""
    h, w = 40, 80
    canvas = w + 30
    rng = np.random.default_rng(0)
    background = Layer(rng.random((h, canvas, 3), dtype=np.float32), np.ones((h, canvas), np.float32), (2.0, 0.0, 0.0))
    mask = np.zeros((h, canvas), np.float32)
    mask[10:30, 40:60] = 1
    square = Layer(np.ones((h, canvas, 3), np.float32), mask, (10.0, 0.0, 0.0))
    s = render([background, square], h, w)
    assert np.all(s.disparity_px[10:30, 40:60] == 10.0)
    assert np.all(s.disparity_px[:10] == 2.0)
    assert np.all(s.right[10:30, 30:50] == 255) and np.all(s.left[10:30, 40:60] == 255)
    # background pixels just right of the square's left edge in the right view: hidden there
    assert s.occluded[15, 32:40].all()
    assert not s.occluded[15, 20:32].any() and not s.occluded[15, 60:78].any()
    assert s.occluded[:, :2].all()  # they leave the right image
    assert not s.occluded[10:30, 40:60].any()


def test_slanted_plane_disparity_is_affine():
    h, w = 32, 64
    plane = Layer(np.full((h, w + 40, 3), 0.5, np.float32), np.ones((h, w + 40), np.float32), (5.0, 0.1, 0.2))
    s = render([plane], h, w)
    ys, xs = np.mgrid[0:h, 0:w]
    np.testing.assert_allclose(s.disparity_px, 5.0 + 0.1 * xs + 0.2 * ys, atol=1e-4)


def test_specular_highlight_sits_on_other_surface_points_in_each_view():
    """On a plane at 10 px, a highlight shifted 6 px along the surface: its right-view peak is at
    cx - 10 + 6, not at cx - 10 where the surface point under the left peak is."""
    h, w = 40, 100
    layer_map = np.zeros((h, w), np.int16)
    rendered = Rendered(np.zeros((h, w, 3), np.float32), np.zeros((h, w, 3), np.float32),
                        np.full((h, w), 10.0, np.float32), np.full((h, w), 10.0, np.float32), layer_map, layer_map.copy())
    add_specular(np.random.default_rng(1), rendered, 0, 1.0, 4.0, 6.0)
    cy, cx = np.unravel_index(np.argmax(rendered.left[..., 0]), (h, w))
    ry, rx = np.unravel_index(np.argmax(rendered.right[..., 0]), (h, w))
    assert ry == cy and rx == cx - 10 + 6
    assert rendered.left[cy, cx, 0] > 0.99


def test_vertical_misrectification_is_bounded_and_vertical_only():
    camera = Photometric(gain_range=(1, 1), bias_range=(0, 0), gamma_range=(1, 1), colour_jitter=0.0,
                         noise_std_range=(0, 0), shot_noise_range=(0, 0), blur_prob=0.0,
                         vignetting_range=(0, 0), jpeg_prob=0.0, vertical_jitter_px=0.5)
    h, w = 60, 80
    rows = np.repeat(np.repeat((np.arange(h, dtype=np.float32) * 4)[:, None, None], w, 1), 3, 2).astype(np.uint8)
    cols = np.repeat(np.repeat((np.arange(w, dtype=np.float32) * 3)[None, :, None], h, 0), 3, 2).astype(np.uint8)
    shifts = []
    for seed in range(6):
        moved = camera.apply(np.random.default_rng(seed), rows, right=True).astype(np.float32)
        dy = (moved[5:-5, :, 0] - rows[5:-5, :, 0]) / 4.0
        assert np.abs(dy).max() <= 0.5 + 0.13  # uint8 rounding: 0.5 grey level = 0.125 px
        shifts.append(float(np.abs(dy).max()))
        assert np.array_equal(camera.apply(np.random.default_rng(seed), cols, right=True), cols)
        assert np.array_equal(camera.apply(np.random.default_rng(seed), rows, right=False), rows)
    assert max(shifts) > 0.2


def test_thin_structures_are_thin():
    rng = np.random.default_rng(0)
    for _ in range(12):
        mask = thin_structure_mask(rng, 120, 200)
        assert mask.sum() > 50
        core = cv2.erode(mask, np.ones((13, 13), np.uint8))
        assert core.sum() < 0.1 * mask.sum()


def test_photo_regions_follow_image_edges(bank):
    """Region borders of a photo crop lie on strong image gradients, far more than random pixels."""
    rng = np.random.default_rng(5)
    ratios = []
    for _ in range(4):
        _, crop = bank.crop(rng, 160, 240, 12)
        assert 2 <= crop.count <= 12 and crop.regions.shape == (160, 240)
        grey = cv2.cvtColor(crop.image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        gradient = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
        border = np.zeros(crop.regions.shape, bool)
        border[:, 1:] |= crop.regions[:, 1:] != crop.regions[:, :-1]
        border[1:, :] |= crop.regions[1:, :] != crop.regions[:-1, :]
        ratios.append(gradient[border].mean() / gradient.mean())
    assert np.mean(ratios) > 1.5, ratios


def test_no_texture_bank_hides_in_the_generator_modules():
    """Photos reach a generator only through the caller's TextureBank (issue 8: no module-level cache
    that makes samples depend on what is installed)."""
    from ros2_stereo_depth.data import camera, procedural, render as render_module, segmentation, synthetic, textures
    for module in (camera, procedural, render_module, segmentation, synthetic, textures):
        for name, value in vars(module).items():
            assert not isinstance(value, (TextureBank, np.ndarray)), f"{module.__name__}.{name}"
    assert SyntheticStereo().textures is None and SyntheticSequence(SceneParams(32, 48, 8.0)).layers


def test_sequence_moves_between_frames():
    seq = SyntheticSequence(SceneParams(48, 64, 16.0), seed=2)
    f0, f1 = seq.frame(0), seq.frame(5)
    assert not np.array_equal(f0.disparity_px, f1.disparity_px)
    assert np.array_equal(seq.frame(5).left, f1.left)


@pytest.mark.parametrize("family", HELDOUT_FAMILIES, ids=lambda f: f.__name__)
def test_heldout_texture_families_are_textured_and_deterministic(family):
    """Each held-out family: float32 in [0, 1], the same for a seed, and texture above 2 % (9x9 standard
    deviation) on at least 40 % of the pixels over 8 seeds; training's flat family has none, so a
    textureless family would fail (it would test nothing that self-supervision can learn)."""
    a, b = family(np.random.default_rng(4), 120, 160), family(np.random.default_rng(4), 120, 160)
    c = family(np.random.default_rng(5), 120, 160)
    assert a.dtype == np.float32 and a.shape == (120, 160, 3) and 0.0 <= a.min() and a.max() <= 1.0
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    textured = []
    for seed in range(8):
        grey = cv2.cvtColor(family(np.random.default_rng(seed), 120, 160), cv2.COLOR_RGB2GRAY)
        mean = cv2.blur(grey, (9, 9))
        textured.append(float((np.sqrt(np.maximum(cv2.blur(grey * grey, (9, 9)) - mean * mean, 0.0)) > 0.02).mean()))
    assert np.mean(textured) > 0.4, textured


def test_training_never_draws_a_heldout_family_and_the_heldout_scenes_draw_only_those(monkeypatch, bank):
    """The held-out recording's surfaces are new to the shipped weights only if training never draws
    them; and a held-out scene draws nothing else (every texture comes from heldout_texture)."""
    calls = []
    real = procedural.heldout_texture

    def counted(rng, height, width):
        calls.append((height, width))
        return real(rng, height, width)

    monkeypatch.setattr(synthetic, "heldout_texture", counted)
    for textures in (None, bank):
        data = SyntheticStereo(SceneParams(64, 96, 24.0, thin_structure_prob=1.0), seed=8, textures=textures)
        for i in range(12):
            data[i]
    assert not calls
    for name in ("flat_texture", "noise_texture", "repetitive_texture"):
        monkeypatch.setattr(synthetic, name, lambda *args: pytest.fail(f"a held-out scene drew {name}"))
    params = SceneParams(64, 96, 24.0, thin_structure_prob=1.0, texture_families="heldout")
    SyntheticSequence(params, seed=3).frame(0)
    for i in range(4):
        SyntheticStereo(params, seed=8)[i]
    assert len(calls) >= 8
    with pytest.raises(ValueError, match="texture_families"):
        SceneParams(texture_families="photos")


# --- texture sources: what is used, and what never may be ---------------------------------------

def test_every_listed_texture_is_installed_and_loads():
    """`make textures` (Debian) and requirements.txt (scikit-image) install every catalogued file."""
    for source in TEXTURE_SOURCES:
        files = source_files(source)
        explicit = [p for p in source.patterns if "*" not in p]
        assert files, f"{source.name}: nothing installed under {source.directory} (run `make textures`)"
        assert len(files) >= len(explicit), (source.name, sorted(set(explicit) - {f.name for f in files}))
    for source in TEXTURE_SOURCES:
        one = TextureBank.load([source], max_side_px=256, max_images=1)
        assert one.names == [f"{source.package}/{source_files(source)[0].name}"]
        photo = one.photos[0]
        assert photo.image.dtype == np.uint8 and max(photo.image.shape[:2]) == 256
        assert photo.segments.labels.shape == photo.image.shape[:2] and photo.segments.labels.max() > 50


def test_stereo_benchmark_images_are_never_picked(tmp_path):
    """opencv-doc ships the Middlebury Aloe pair, chessboard stereo pairs and Middlebury flow pairs,
    scikit-image the Middlebury Motorcycle pair: none may become a texture, by name or by content."""
    assert (OPENCV_DATA / "aloeL.jpg").is_file(), "opencv-doc missing: run `make aloe`"
    everything = TextureSource("all of opencv-doc", "debian:opencv-doc", OPENCV_DATA, ("*",), "mixed")
    allowed = {p.name for p in source_files(everything)}
    for name in ("aloeL.jpg", "aloeR.jpg", "aloeGT.png", "left01.jpg", "right01.jpg", "left.jpg", "right.jpg",
                 "basketball1.png", "rubberwhale1.png", "graf1.png", "leuvenA.jpg"):
        assert (OPENCV_DATA / name).is_file() and name not in allowed, name
    assert "baboon.jpg" in allowed and "fruits.jpg" in allowed  # the filter is not simply "reject all"
    skimage_all = replace(SKIMAGE, patterns=("*",))
    skimage_allowed = {p.name for p in source_files(skimage_all)}
    assert "motorcycle_left.png" not in skimage_allowed and "motorcycle_right.png" not in skimage_allowed
    assert "coffee.png" in skimage_allowed
    # a renamed copy is caught by its content; an innocent file in the same folder is not
    shutil.copy(OPENCV_DATA / "aloeL.jpg", tmp_path / "plant.jpg")
    shutil.copy(SKIMAGE.directory / "motorcycle_right.png", tmp_path / "bike.png")
    shutil.copy(SKIMAGE.directory / "brick.png", tmp_path / "wall.png")
    assert is_excluded(tmp_path / "plant.jpg") and is_excluded(tmp_path / "bike.png")
    renamed = TextureBank.load([TextureSource("copies", "test", tmp_path, ("*",), "test")], max_side_px=128)
    assert renamed.names == ["test/wall.png"]


def test_texture_record_names_every_readable_file_with_its_hash(tmp_path):
    """What a training run writes into its weights sidecar (`texture_files`): each file the bank may read,
    with the SHA-256 of its bytes; never an excluded one."""
    record = texture_record()
    assert len(record) == sum(len(source_files(s)) for s in TEXTURE_SOURCES) >= 20
    name, digest = next(iter(record.items()))
    package, file_name = name.split("/", 1)
    source = next(s for s in TEXTURE_SOURCES if s.package == package)
    assert digest == hashlib.sha256((source.directory / file_name).read_bytes()).hexdigest()
    assert not set(record.values()) & EXCLUDED_SHA256
    # a copy of a benchmark image in a source folder is not recorded (nor read)
    shutil.copy(OPENCV_DATA / "aloeR.jpg", tmp_path / "leaf.jpg")
    shutil.copy(SKIMAGE.directory / "brick.png", tmp_path / "wall.png")
    assert texture_record([TextureSource("copies", "test", tmp_path, ("*",), "test")]) == {
        "test/wall.png": hashlib.sha256((tmp_path / "wall.png").read_bytes()).hexdigest()}
