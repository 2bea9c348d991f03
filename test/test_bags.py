"""ROS 2 bags as stereo data (data/bags.py), written for real with rosbags in both storages (mcap, sqlite3);
the held-out-domain bag (data/heldout_bag.py); label-free quality (evaluation/label_free.py)."""
from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from ros2_stereo_depth.data.bag_writer import (COMPRESSED_TYPE, IMAGE_TYPE, INFO_TYPE, BagMessage, camera_info_message,
                                               compressed_message, image_message, stereo_messages, write_bag)
from ros2_stereo_depth.data.bags import BagError, StampPairer, StereoBag, is_bag, open_bag_dataset
from ros2_stereo_depth.data.heldout_bag import HeldOutDomain, read_heldout_ground_truth, write_heldout_bag
from ros2_stereo_depth.data.readers import open_training_dataset
from ros2_stereo_depth.data.camera import Photometric
from ros2_stereo_depth.data.synthetic import SceneParams, SyntheticStereo
from ros2_stereo_depth.evaluation.label_free import label_free_report, label_free_terms
from ros2_stereo_depth.geometry import StereoCamera
from ros2_stereo_depth.pair import StereoPair

STORAGES = ("mcap", "sqlite3")
H, W = 24, 32
T0 = 1_700_000_000_000_000_000  # ns
CAMERA = StereoCamera(120.0, 121.0, 15.5, 11.5, 0.075, W, H)


def _random_rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _storage_file(bag: Path) -> Path:
    return next(f for f in bag.iterdir() if f.suffix in (".mcap", ".db3"))


def _info(topic_side: str, camera: StereoCamera, stamp: int, ns: str = "/stereo") -> BagMessage:
    return BagMessage(f"{ns}/{topic_side}/camera_info", INFO_TYPE, stamp,
                      camera_info_message(camera, topic_side == "right", stamp))


@pytest.mark.parametrize("storage", STORAGES)
def test_raw_encodings_with_row_padding_pair_and_decode_exactly(tmp_path: Path, storage: str) -> None:
    """rgb8 / bgr8 / mono8 with padded rows; an unpaired left frame in the middle; camera_info changing
    mid-recording (a new calibration) applies from its stamp on."""
    encodings = [("rgb8", "bgr8"), ("bgr8", "rgb8"), ("mono8", "mono8"), ("rgb8", "rgb8")]
    stamps = [T0 + i * 50_000_000 for i in range(len(encodings))]
    wider = StereoCamera(120.0, 121.0, 15.5, 11.5, 0.2, W, H)
    messages = []
    for i, ((left_enc, right_enc), stamp) in enumerate(zip(encodings, stamps)):
        camera = CAMERA if i < 2 else wider
        messages += [_info("left", camera, stamp), _info("right", camera, stamp)]
        messages.append(BagMessage("/stereo/left/image_rect", IMAGE_TYPE, stamp + 1000,
                                   image_message(_random_rgb(2 * i), left_enc, stamp, row_padding=3 + i)))
        if i != 1:  # frame 1 has no right image: it must be skipped, not paired with a neighbour
            messages.append(BagMessage("/stereo/right/image_rect", IMAGE_TYPE, stamp + 2000,
                                       image_message(_random_rgb(2 * i + 1), right_enc, stamp, row_padding=5)))
    bag_dir = write_bag(tmp_path / "bag", messages, storage)

    bag = StereoBag(bag_dir)
    frames = list(bag)
    assert [f.stamp_ns for f in frames] == [stamps[0], stamps[2], stamps[3]]
    assert bag.unpaired == [1, 0]
    for frame, i in zip(frames, (0, 2, 3)):
        left, right = _random_rgb(2 * i), _random_rgb(2 * i + 1)
        if encodings[i][0] == "mono8":
            left = np.repeat(cv2.cvtColor(left, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
            right = np.repeat(cv2.cvtColor(right, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
        np.testing.assert_array_equal(frame.pair.left, left)
        np.testing.assert_array_equal(frame.pair.right, right)
        assert frame.pair.disparity_px is None and frame.pair.valid is None
    assert frames[0].fx_px == pytest.approx(120.0) and frames[0].baseline_m == pytest.approx(0.075)
    assert frames[1].baseline_m == pytest.approx(0.2) and frames[2].baseline_m == pytest.approx(0.2)
    assert frames[0].camera.cy_px == pytest.approx(11.5) and frames[0].camera.width == W  # type: ignore[union-attr]


def _smooth_rgb(shift: int) -> np.ndarray:
    ys, xs = np.mgrid[0:H, 0:W]
    return np.stack([xs * 7 + shift, ys * 9, np.full_like(xs, 200)], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("storage", STORAGES)
def test_compressed_jpeg_topics_found_and_decoded_in_rgb_order(tmp_path: Path, storage: str) -> None:
    messages = [m for i in range(3) for m in stereo_messages(T0 + i * 10**8, _smooth_rgb(i), _smooth_rgb(i + 20), CAMERA, "jpeg")]
    bag = StereoBag(write_bag(tmp_path / "bag", messages, storage))
    assert (bag.topics.left, bag.topics.right) == ("/stereo/left/image_rect/compressed", "/stereo/right/image_rect/compressed")
    assert bag.topics.left_info == "/stereo/left/camera_info"
    frames = list(bag)
    assert len(frames) == 3
    for i, frame in enumerate(frames):
        assert frame.pair.left.shape == (H, W, 3)
        # JPEG is lossy: close to the source, and blue (the constant 200 channel) is the last channel.
        assert np.abs(frame.pair.left.astype(int) - _smooth_rgb(i)).mean() < 4.0
        assert np.abs(frame.pair.right.astype(int) - _smooth_rgb(i + 20)).mean() < 4.0
        assert abs(float(frame.pair.left[:, :, 2].mean()) - 200.0) < 4.0
        assert frame.baseline_m == pytest.approx(0.075)


def _offset_bag(tmp_path: Path, storage: str, offsets_ms: list[float]) -> Path:
    """Right stamps offset from the left ones by offsets_ms (approximate-time cameras)."""
    messages = []
    for i, offset in enumerate(offsets_ms):
        stamp = T0 + i * 100_000_000
        right_stamp = stamp + int(offset * 1e6)
        messages.append(BagMessage("/cam/left/image_rect_color", IMAGE_TYPE, stamp, image_message(_random_rgb(i), "rgb8", stamp)))
        messages.append(BagMessage("/cam/right/image_rect_color", IMAGE_TYPE, right_stamp,
                                   image_message(_random_rgb(100 + i), "rgb8", right_stamp)))
    return write_bag(tmp_path / f"bag_{storage}", messages, storage)


@pytest.mark.parametrize("storage", STORAGES)
def test_approximate_stamps_pair_inside_tolerance_only(tmp_path: Path, storage: str) -> None:
    bag_dir = _offset_bag(tmp_path, storage, [3.0, -4.0, 9.0, 0.0])
    exact = StereoBag(bag_dir)
    assert [f.stamp_ns for f in exact] == [T0 + 300_000_000]
    assert exact.unpaired == [3, 3]
    loose = StereoBag(bag_dir, tolerance_s=0.005)
    frames = list(loose)
    assert [(f.stamp_ns - T0, f.right_stamp_ns - f.stamp_ns) for f in frames] == [
        (0, 3_000_000), (100_000_000, -4_000_000), (300_000_000, 0)]
    np.testing.assert_array_equal(frames[1].pair.right, _random_rgb(101))
    assert frames[0].camera is None  # no camera_info topics in this bag
    assert list(StereoBag(bag_dir, tolerance_s=0.01))[2].right_stamp_ns == T0 + 200_000_000 + 9_000_000


def test_pairer_prefers_the_nearer_partner() -> None:
    """A message within tolerance of a partner is left unpaired when its own next message is nearer."""
    pairer: StampPairer[str] = StampPairer(tolerance_ns=5)
    pairs = []
    for side, stamp in ((0, 0), (1, 4), (0, 3), (0, 10), (1, 11), (0, 20), (1, 30)):
        pairs += pairer.push(side, stamp, f"{'LR'[side]}{stamp}")
    pairs += pairer.finish()
    assert [(a, b) for _, a, _, b in pairs] == [("L3", "R4"), ("L10", "R11")]
    assert pairer.unpaired == [2, 1]  # L0 (L3 is nearer to R4), L20; R30


@pytest.mark.parametrize("storage", STORAGES)
def test_topics_auto_found_only_when_unambiguous(tmp_path: Path, storage: str) -> None:
    messages = []
    for ns, seed in (("/front", 0), ("/rear", 10)):
        messages += stereo_messages(T0, _random_rgb(seed), _random_rgb(seed + 1), CAMERA, "bgr8", namespace=ns)
    bag_dir = write_bag(tmp_path / "bag", messages, storage)
    with pytest.raises(BagError) as error:
        StereoBag(bag_dir)
    text = str(error.value)
    assert str(bag_dir) in text and "several" in text
    assert "/front/left/image_rect" in text and "/rear/right/image_rect" in text
    bag = StereoBag(bag_dir, left_topic="/rear/left/image_rect", right_topic="/rear/right/image_rect")
    (frame,) = list(bag)
    np.testing.assert_array_equal(frame.pair.left, _random_rgb(10))
    np.testing.assert_array_equal(frame.pair.right, _random_rgb(11))
    assert frame.fx_px == pytest.approx(120.0)
    with pytest.raises(BagError, match="no topic '/rear/left/image_raw'.*image topics"):
        StereoBag(bag_dir, left_topic="/rear/left/image_raw", right_topic="/rear/right/image_rect")
    with pytest.raises(BagError, match="not an Image"):
        StereoBag(bag_dir, left_topic="/rear/left/camera_info", right_topic="/rear/right/image_rect")


def test_camera_info_size_mismatch_is_an_error_naming_the_topic(tmp_path: Path) -> None:
    half = StereoCamera(60.0, 60.0, 7.5, 5.5, 0.075, W // 2, H // 2)
    messages = stereo_messages(T0, _random_rgb(0), _random_rgb(1), half, "rgb8")
    with pytest.raises(BagError, match=r"/stereo/left/camera_info: camera_info is 16x12 but the image is 32x24"):
        list(StereoBag(write_bag(tmp_path / "bag", messages, "mcap")))


@pytest.mark.parametrize("storage", STORAGES)
def test_single_file_and_directory_with_one_file_are_bags(tmp_path: Path, storage: str) -> None:
    messages = [m for i in range(2) for m in stereo_messages(T0 + i, _random_rgb(i), _random_rgb(i + 5), CAMERA)]
    storage_file = _storage_file(write_bag(tmp_path / "bag", messages, storage))
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(storage_file, loose / storage_file.name)
    for path in (storage_file, loose):
        assert is_bag(path)
        frames = list(StereoBag(path))
        assert [f.stamp_ns for f in frames] == [T0, T0 + 1]
        np.testing.assert_array_equal(frames[1].pair.right, _random_rgb(6))


@pytest.mark.parametrize("storage", STORAGES)
def test_training_dataset_reads_pairs_on_demand(tmp_path: Path, storage: str) -> None:
    messages = [m for i in range(4) for m in stereo_messages(T0 + i * 10**8, _random_rgb(i), _random_rgb(i + 50), CAMERA)]
    bag_dir = write_bag(tmp_path / "bag", messages, storage)
    dataset = open_training_dataset(bag_dir, mode="self-supervised")
    assert len(dataset) == 4  # type: ignore[arg-type]
    for index in (3, 0, 2):  # random access, out of order
        item = dataset[index]
        assert isinstance(item, StereoPair) and item.disparity_px is None
        np.testing.assert_array_equal(item.left, _random_rgb(index))
        np.testing.assert_array_equal(item.right, _random_rgb(index + 50))
    # DataLoader workers get a pickled copy, which opens its own reader.
    copy = pickle.loads(pickle.dumps(dataset))
    np.testing.assert_array_equal(copy[1].right, _random_rgb(51))
    with pytest.raises(ValueError, match="no ground-truth disparity"):
        open_training_dataset(bag_dir, mode="supervised")
    with pytest.raises(BagError, match="no stereo pairs"):
        open_bag_dataset(_offset_bag(tmp_path, storage, [3.0, 3.0]))


def _cut(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("damage", ["no messages", "truncated", "garbage", "empty file", "bad metadata"])
def test_broken_bag_is_one_clear_error_naming_the_file(tmp_path: Path, storage: str, damage: str) -> None:
    messages = [m for i in range(3) for m in stereo_messages(T0 + i, _random_rgb(i), _random_rgb(i), CAMERA)]
    bag_dir = write_bag(tmp_path / "bag", [] if damage == "no messages" else messages, storage)
    storage_file = _storage_file(bag_dir)
    if damage == "truncated":
        _cut(storage_file, 0.6)
    elif damage == "garbage":
        storage_file.write_bytes(b"not a bag at all " * 64)
    elif damage == "empty file":
        storage_file.write_bytes(b"")
    elif damage == "bad metadata":
        (bag_dir / "metadata.yaml").write_text("rosbag2_bagfile_information: [1, 2\n")
    for path in (bag_dir, storage_file) if damage != "bad metadata" else (bag_dir,):
        with pytest.raises(BagError) as error:
            list(StereoBag(path))
        text = str(error.value)
        assert text.startswith(f"{path}: ") and "\n" not in text
        assert ("empty bag" if damage in ("no messages",) else "corrupt or truncated") in text or (
            damage == "empty file" and "empty" in text)
        # No rosbags traceback: nothing chained, no frame inside rosbags.
        assert error.value.__cause__ is None and (error.value.__context__ is None or error.value.__suppress_context__)
        assert not [entry for entry in error.traceback if "rosbags" in str(entry.path)]


def test_missing_path_and_non_bag_file(tmp_path: Path) -> None:
    with pytest.raises(BagError, match="no such bag"):
        StereoBag(tmp_path / "nothing.mcap")
    (tmp_path / "notes.txt").write_text("x")
    assert not is_bag(tmp_path / "notes.txt") and not is_bag(tmp_path)
    with pytest.raises(BagError, match="not a ROS 2 bag"):
        StereoBag(tmp_path / "notes.txt")


@pytest.mark.parametrize("storage", STORAGES)
def test_heldout_domain_bag_round_trip(tmp_path: Path, storage: str) -> None:
    # A quiet camera: with the domain's 4-6 % noise and +-20 % gain the photometric check below holds
    # only for some scenes (measured at 48x64: good/bad 0.42 to 0.96 by scene seed); quiet: 0.10 to 0.37.
    quiet = Photometric(gain_range=(1, 1), bias_range=(0, 0), gamma_range=(1, 1), colour_jitter=0.0,
                        noise_std_range=(0.0, 0.01), blur_prob=0.0, vertical_jitter_px=0.0)
    domain = HeldOutDomain(height=48, width=64, fx_px=60.0, baseline_m=0.05, min_depth_m=0.3, photometric=quiet)
    bag_dir, truth_file = write_heldout_bag(tmp_path, frames=3, storage=storage, domain=domain)
    truth = read_heldout_ground_truth(truth_file)
    frames = list(StereoBag(bag_dir))
    assert [f.stamp_ns for f in frames] == sorted(truth) and len(frames) == 3
    assert np.diff(sorted(truth)).tolist() == [100_000_000, 100_000_000]  # 10 Hz
    for frame in frames:
        assert frame.fx_px == pytest.approx(60.0) and frame.baseline_m == pytest.approx(0.05)
        disparity, occluded = truth[frame.stamp_ns]
        assert disparity.shape == (48, 64) and 0.0 < disparity.max() <= 10.0 + 1e-4  # 60 * 0.05 / 0.3
        # The bag's images are the ones the ground truth describes: they agree better with it than shifted.
        right_truth = np.zeros_like(disparity)
        good = label_free_terms(frame.pair.left, frame.pair.right, disparity, right_truth)["photometric"]
        bad = label_free_terms(frame.pair.left, frame.pair.right, disparity + 4.0, right_truth)["photometric"]
        assert good < 0.7 * bad


def _exact_sample() -> object:
    # The checks below need a textured scene with depth variation but little occlusion (the LR term
    # counts occluded pixels), and no repeats or thin structures. Only some scenes qualify (3 of seeds
    # 0-11 with the current generator): seed 1 is the first; seed 3's scene spans too little depth.
    return SyntheticStereo(SceneParams(96, 128, 24.0, repetitive_prob=0.0, thin_structure_prob=0.0), seed=1,
                           photometric=None)[0]


def test_label_free_terms_near_zero_for_true_disparity_and_larger_for_wrong() -> None:
    s = _exact_sample()
    true = label_free_terms(s.left, s.right, s.disparity_px, s.disparity_right_px)  # type: ignore[attr-defined]
    # Not exactly 0: bilinear resampling and SSIM windows across depth edges.
    assert true["photometric"] < 0.02 and true["lr_consistency_px"] < 0.2 and true["visible_fraction"] > 0.6
    low, high = np.percentile(s.disparity_px, [5, 95])  # type: ignore[attr-defined]
    assert true["disparity_spread_px"] == pytest.approx(high - low, rel=1e-4) and high - low > 3.0
    shifted = label_free_terms(s.left, s.right, s.disparity_px + 3.0, s.disparity_right_px + 3.0)  # type: ignore[attr-defined]
    assert shifted["photometric"] > 5 * true["photometric"]
    flat = np.full_like(s.disparity_px, float(s.disparity_px.mean()))  # type: ignore[attr-defined]
    flat_terms = label_free_terms(s.left, s.right, flat, flat)  # type: ignore[attr-defined]
    assert flat_terms["photometric"] > 5 * true["photometric"] and flat_terms["disparity_spread_px"] == 0.0
    inconsistent = label_free_terms(s.left, s.right, s.disparity_px, s.disparity_right_px + 4.0)  # type: ignore[attr-defined]
    assert inconsistent["lr_consistency_px"] > 3 * true["lr_consistency_px"] + 1.0


def test_label_free_report_runs_the_mirrored_pair_for_the_right_view() -> None:
    s = _exact_sample()
    left, right = s.left, s.right  # type: ignore[attr-defined]

    def oracle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        # The true disparity of whichever view it is asked for: left, or the mirrored right.
        if np.array_equal(a, left):
            return s.disparity_px  # type: ignore[attr-defined, no-any-return]
        assert np.array_equal(a, right[:, ::-1]) and np.array_equal(b, left[:, ::-1])
        return np.ascontiguousarray(s.disparity_right_px[:, ::-1])  # type: ignore[attr-defined]

    pairs = [StereoPair(left, right, None, None)] * 2
    report = label_free_report(oracle, pairs)
    direct = label_free_terms(left, right, s.disparity_px, s.disparity_right_px)  # type: ignore[attr-defined]
    assert report.pairs == 2 and report.photometric == pytest.approx(direct["photometric"], rel=1e-5)
    assert report.lr_consistency_px == pytest.approx(direct["lr_consistency_px"], rel=1e-5)
    assert report.disparity_spread_px == pytest.approx(direct["disparity_spread_px"], rel=1e-5)
    constant = label_free_report(lambda a, b: np.full(a.shape[:2], 8.0, np.float32), pairs)
    assert constant.photometric > 5 * report.photometric


def test_dataloader_workers_read_the_bag_themselves(tmp_path: Path) -> None:
    """Each worker process opens its own reader (an sqlite connection must not cross a fork)."""
    import torch
    messages = [m for i in range(4) for m in stereo_messages(T0 + i * 10**8, _random_rgb(i), _random_rgb(i + 50), CAMERA)]
    dataset = open_bag_dataset(write_bag(tmp_path / "bag", messages, "sqlite3"))
    dataset[0]  # the main process has a reader open before the workers start
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2, collate_fn=lambda item: item)
    lefts = [item.left for item in loader]
    for index, left in enumerate(lefts):
        np.testing.assert_array_equal(left, _random_rgb(index))
