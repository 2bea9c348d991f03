"""Dataset readers on small fixtures written in each dataset's real layout and encoding."""
import cv2
import numpy as np
import pytest

from ros2_stereo_depth.data.readers import detect_format, open_eval_dataset, open_training_dataset, read_ground_truth
from ros2_stereo_depth.fileio import write_pfm

H, W = 6, 8


@pytest.fixture
def pair_images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8), rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


@pytest.fixture
def disparity():
    return (np.arange(H * W, dtype=np.float32).reshape(H, W) * 0.25 + 1.0)  # exact in /256 and in PFM


def write_rgb(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_grey(path, values):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), values)


def pfm(path, values):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_pfm(path, values)


def check(items, pair_images, disparity, valid):
    assert len(items) == 1
    _, item = items[0]
    assert np.array_equal(item.left, pair_images[0]) and np.array_equal(item.right, pair_images[1])
    assert item.disparity_px.dtype == np.float32 and item.valid.dtype == bool
    assert np.array_equal(item.valid, valid)
    np.testing.assert_allclose(item.disparity_px[valid], disparity[valid], atol=1e-6)


@pytest.mark.parametrize("fmt,left,right,disp", [("kitti2015", "image_2", "image_3", "disp_occ_0"),
                                                   ("kitti2012", "colored_0", "colored_1", "disp_occ")])
def test_kitti_16bit_png_over_256(tmp_path, pair_images, disparity, fmt, left, right, disp):
    root = tmp_path / "training"
    write_rgb(root / left / "000000_10.png", pair_images[0])
    write_rgb(root / right / "000000_10.png", pair_images[1])
    write_rgb(root / left / "000000_11.png", pair_images[0])  # the second frame has no ground truth
    write_rgb(root / right / "000000_11.png", pair_images[1])
    raw = np.rint(disparity * 256).astype(np.uint16)
    raw[1, 2] = 0  # invalid
    write_grey(root / disp / "000000_10.png", raw)
    assert cv2.imread(str(root / disp / "000000_10.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert detect_format(tmp_path) == fmt
    valid = raw > 0
    check(list(open_eval_dataset(tmp_path, "auto")), pair_images, disparity, valid)
    check(list(open_eval_dataset(root, fmt)), pair_images, disparity, valid)  # training/ itself


def test_middlebury2014_pfm_inf_invalid(tmp_path, pair_images, disparity):
    scene = tmp_path / "Adirondack-perfect"
    write_rgb(scene / "im0.png", pair_images[0])
    write_rgb(scene / "im1.png", pair_images[1])
    gt = disparity.copy()
    gt[0, :3] = np.inf
    pfm(scene / "disp0.pfm", gt)
    (scene / "calib.txt").write_text("cam0=[1 0 4; 0 1 3; 0 0 1]\ncam1=[1 0 4; 0 1 3; 0 0 1]\nndisp=16\n")
    assert detect_format(tmp_path) == "middlebury2014"
    items = list(open_eval_dataset(tmp_path))
    assert items[0][0] == "Adirondack-perfect"
    check(items, pair_images, disparity, np.isfinite(gt))
    assert np.all(np.isfinite(items[0][1].disparity_px))  # invalid pixels hold 0, not inf


def test_eth3d_pfm_and_non_occluded_mask(tmp_path, pair_images, disparity):
    scene = tmp_path / "delivery_area_1l"
    write_rgb(scene / "im0.png", pair_images[0])
    write_rgb(scene / "im1.png", pair_images[1])
    gt = disparity.copy()
    gt[5, 7] = np.inf
    pfm(scene / "disp0GT.pfm", gt)
    mask = np.full((H, W), 255, np.uint8)
    mask[2, :4] = 128  # occluded: ground truth exists but the benchmark does not score it
    write_grey(scene / "mask0nocc.png", mask)
    assert detect_format(tmp_path) == "eth3d"
    check(list(open_eval_dataset(tmp_path)), pair_images, disparity, np.isfinite(gt) & (mask == 255))


@pytest.mark.parametrize("gt_scale,expected_divisor", [(2.0, 2.0), (None, 3.0)])
def test_middlebury2006_8bit_png_scale(tmp_path, pair_images, gt_scale, expected_divisor):
    scene = tmp_path / "Aloe"
    write_rgb(scene / "view1.png", pair_images[0])
    write_rgb(scene / "view5.png", pair_images[1])
    raw = np.arange(H * W, dtype=np.uint8).reshape(H, W) * 3
    write_grey(scene / "disp1.png", raw)  # raw[0, 0] == 0: invalid
    assert detect_format(tmp_path) == "middlebury2006"
    # gt_scale None guesses from the width: an 8-px image can only be a third-size one.
    check(list(open_eval_dataset(tmp_path, "middlebury2006", gt_scale)), pair_images,
          raw.astype(np.float32) / expected_divisor, raw > 0)


def test_sceneflow_layout(tmp_path, pair_images, disparity):
    rel = "TRAIN/A/0000"
    for view, image in zip(("left", "right"), pair_images):
        write_rgb(tmp_path / "frames_cleanpass" / rel / view / "0006.png", image)
    pfm(tmp_path / "disparity" / rel / "left" / "0006.pfm", disparity)
    pfm(tmp_path / "disparity" / rel / "right" / "0006.pfm", disparity + 1)  # must not be used
    assert detect_format(tmp_path) == "sceneflow"
    items = list(open_eval_dataset(tmp_path))
    assert items[0][0] == "TRAIN/A/0000/0006"
    check(items, pair_images, disparity, np.ones((H, W), bool))


def test_plain_folder_is_self_supervised_only(tmp_path, pair_images):
    for view, image in zip(("left", "right"), pair_images):
        write_rgb(tmp_path / view / "a.png", image)
    write_rgb(tmp_path / "left" / "unpaired.png", pair_images[0])
    assert detect_format(tmp_path) == "folder"
    dataset = open_training_dataset(tmp_path, "auto", "self-supervised")
    assert len(dataset) == 1
    item = dataset[0]
    assert np.array_equal(item.left, pair_images[0]) and item.disparity_px is None and item.valid is None
    with pytest.raises(ValueError, match="self-supervised"):
        open_training_dataset(tmp_path, "folder", "supervised")


def test_training_dataset_skips_ground_truth_when_self_supervised(tmp_path, pair_images, disparity):
    scene = tmp_path / "s"
    write_rgb(scene / "im0.png", pair_images[0])
    write_rgb(scene / "im1.png", pair_images[1])
    pfm(scene / "disp0.pfm", disparity)
    assert open_training_dataset(tmp_path, "auto", "self-supervised")[0].disparity_px is None
    item = open_training_dataset(tmp_path, "auto", "supervised")[0]
    np.testing.assert_allclose(item.disparity_px, disparity)


def test_unknown_layout_and_format(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(ValueError, match="unrecognised"):
        detect_format(tmp_path)
    with pytest.raises(ValueError, match="unknown dataset format"):
        list(open_eval_dataset(tmp_path, "nope"))


def test_aloe_ground_truth_is_in_full_size_pixels():
    path = "/usr/share/doc/opencv-doc/examples/data/aloeGT.png"
    try:
        disparity, valid = read_ground_truth(path)
    except FileNotFoundError:
        pytest.skip("opencv-doc (Aloe) not installed; `make test` installs it")
    assert disparity.shape == (1110, 1282)
    assert 0.9 < valid.mean() < 1.0 and 150 < disparity.max() < 256


def test_colour_ground_truth_is_refused_but_grey_in_three_channels_is_read(tmp_path, pair_images):
    colour = tmp_path / "colour.png"
    write_grey(colour, pair_images[0])  # three different channels
    with pytest.raises(ValueError, match=f"{colour}: a colour image, not a disparity map"):
        read_ground_truth(colour)
    grey3 = tmp_path / "grey3.png"
    values = np.arange(H * W, dtype=np.uint8).reshape(H, W)
    write_grey(grey3, np.dstack([values] * 3))
    disparity, valid = read_ground_truth(grey3, 2.0)
    np.testing.assert_array_equal(disparity, values / 2.0)
    assert not valid[0, 0] and valid.sum() == H * W - 1
    pfm(tmp_path / "rgb.pfm", np.ones((H, W, 3), np.float32))
    with pytest.raises(ValueError, match="3-channel PFM"):
        read_ground_truth(tmp_path / "rgb.pfm")


def test_ground_truth_of_another_size_names_the_pair(tmp_path, pair_images, disparity):
    scene = tmp_path / "s"
    write_rgb(scene / "im0.png", pair_images[0])
    write_rgb(scene / "im1.png", pair_images[1])
    pfm(scene / "disp0.pfm", disparity[:, :-1])
    with pytest.raises(ValueError, match=f"s: ground truth is {W - 1}x{H} but the images are {W}x{H}"):
        list(open_eval_dataset(tmp_path, "middlebury2014"))
