"""Self-supervised fine-tuning on recordings: held-out split, label-free validation while training, SGBM
proxy labels that pass a left-right check, and the `train --data BAG --mode self-supervised` flags."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ros2_stereo_depth.artifacts.weights import shipped_weights
from ros2_stereo_depth.cli import main
from ros2_stereo_depth.config import get_config
from ros2_stereo_depth.data.bags import StereoBag
from ros2_stereo_depth.data.bag_writer import stereo_messages, write_bag
from ros2_stereo_depth.data.heldout_bag import HeldOutDomain, heldout_frames, read_heldout_ground_truth, write_heldout_bag
from ros2_stereo_depth.evaluation.pairs import evaluation_pairs
from ros2_stereo_depth.data.synthetic import Photometric
from ros2_stereo_depth.inference.sgbm import sgbm_disparity
from ros2_stereo_depth.inference.base import resize_to_input
from ros2_stereo_depth.training.datasets import open_dataset, open_real_items
from ros2_stereo_depth.training.loop import train
from ros2_stereo_depth.training.losses import self_supervised_terms
from ros2_stereo_depth.training.proxy_labels import lr_checked_sgbm, lr_consistent, proxy_batch
from ros2_stereo_depth.training.settings import TrainSettings
from ros2_stereo_depth.artifacts.weights import load_model
from ros2_stereo_depth.model import StereoNet
from ros2_stereo_depth.training import validation
from ros2_stereo_depth.training.validation import VALIDATION_FILE, HeldOutValidation, split_holdout
from ros2_stereo_depth.data.batches import collate
from ros2_stereo_depth.pair import StereoPair

# A small held-out-domain camera (<= 16 px) with little sensor noise, so that 40 steps from a random
# initialisation show a clear drop (with 4-6 % noise the photometric floor is high).
QUIET = Photometric(gain_range=(1.0, 1.0), bias_range=(0.0, 0.0), gamma_range=(1.0, 1.0), colour_jitter=0.0,
                    noise_std_range=(0.0, 0.005), blur_prob=0.0, vertical_jitter_px=0.0)
SMALL = HeldOutDomain(height=64, width=96, fx_px=80.0, baseline_m=0.06, min_depth_m=0.3, photometric=QUIET)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_split_holdout_every_kth_and_last() -> None:
    assert split_holdout(10, 4, 0) == ([0, 1, 2, 4, 5, 6, 8, 9], [3, 7])
    assert split_holdout(10, 0, 3) == ([0, 1, 2, 3, 4, 5, 6], [7, 8, 9])
    assert split_holdout(10, 5, 2) == ([0, 1, 2, 3, 5, 6, 7], [4, 8, 9])
    assert split_holdout(1, 10, 0) == ([0], [])  # one pair (test-time adaptation): nothing held out
    with pytest.raises(ValueError, match="nothing is left to train on"):
        split_holdout(3, 1, 0)


def _two_plane_pair(h: int = 96, w: int = 160, background_px: int = 8, foreground_px: int = 20,
                    box: tuple[int, int, int, int] = (30, 70, 60, 110)) -> dict[str, np.ndarray]:
    """An exact pair, independent of the scene generator: a random-dot background at background_px and a
    rectangle (rows y0:y1, left-image columns x0:x1) at foreground_px in front of it. Returns the images,
    both views' integer disparities and the left pixels occluded in the right view."""
    import cv2
    rng = np.random.default_rng(0)
    pad = 32  # texture columns left of the image, for x - d < 0
    back, front = (cv2.GaussianBlur(rng.integers(0, 256, (h, w + pad, 3), dtype=np.uint8), (3, 3), 0) for _ in range(2))
    y0, y1, x0, x1 = box
    ys, xs = np.mgrid[0:h, 0:w]
    in_front = (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)
    left_d = np.where(in_front, foreground_px, background_px)
    in_front_right = (ys >= y0) & (ys < y1) & (xs >= x0 - foreground_px) & (xs < x1 - foreground_px)
    right_d = np.where(in_front_right, foreground_px, background_px)
    left = np.where(in_front[..., None], front[ys, xs - foreground_px + pad], back[ys, xs - background_px + pad])
    right = np.where(in_front_right[..., None], front[ys, xs + pad], back[ys, xs + pad])
    landed = xs - left_d
    occluded = ~in_front & (landed >= 0) & in_front_right[ys, np.clip(landed, 0, w - 1)]
    return {"left": left.astype(np.uint8), "right": right.astype(np.uint8), "left_d": left_d.astype(np.float32),
            "right_d": right_d.astype(np.float32), "occluded": occluded, "inside": landed >= 0}


def test_lr_check_keeps_exactly_the_visible_pixels_of_an_exact_pair_and_drops_wrong_ones() -> None:
    s = _two_plane_pair()
    everywhere = np.ones(s["left_d"].shape, bool)
    kept = lr_consistent(s["left_d"], everywhere, s["right_d"], everywhere)
    assert s["occluded"].sum() == 40 * 12  # the background strip the rectangle hides: 20 - 8 px wide
    np.testing.assert_array_equal(kept, s["inside"] & ~s["occluded"])
    wrong = s["left_d"].copy()
    wrong[5:20, 40:80] += 3.0
    assert not lr_consistent(wrong, everywhere, s["right_d"], everywhere)[5:20, 40:80].any()
    gaps = everywhere.copy()
    gaps[:, 80:] = False  # no right-view disparity there: nothing that lands there is kept
    landed = np.arange(160)[None, :] - s["left_d"].astype(int)
    assert not lr_consistent(s["left_d"], everywhere, s["right_d"], gaps)[landed >= 80].any()


def test_proxy_labels_are_sgbm_pixels_that_pass_the_lr_check() -> None:
    s = _two_plane_pair()
    disparity, kept = lr_checked_sgbm(s["left"], s["right"], 32)
    raw, predicted = sgbm_disparity(s["left"], s["right"], 32)
    assert kept.sum() > 0.5 * kept.size
    assert not (kept & ~predicted).any() and (disparity[~kept] == 0).all()
    np.testing.assert_array_equal(disparity[kept], raw[kept])
    # Every kept pixel passes the check, recomputed here from the right view's SGBM on the mirrored pair.
    mirrored, mirrored_ok = sgbm_disparity(s["right"][:, ::-1].copy(), s["left"][:, ::-1].copy(), 32)
    right, right_ok = mirrored[:, ::-1], mirrored_ok[:, ::-1]
    ys, xs = np.nonzero(kept)
    landed = xs - np.rint(disparity[ys, xs]).astype(int)
    assert (landed >= 0).all() and right_ok[ys, landed].all()
    assert np.abs(disparity[ys, xs] - right[ys, landed]).max() <= 1.0
    error = np.abs(raw - s["left_d"])
    assert float((error[kept] > 1).mean()) < 0.01  # what is kept is right
    assert float(s["occluded"][kept].mean()) < 0.05  # and the occluded strip is (almost all) gone
    # The batch form (normalised tensors) finds the same labels.
    batch = collate([StereoPair(s["left"], s["right"], None, None)], 32)
    batch_disparity, batch_kept = proxy_batch(batch["left"], batch["right"], 32)
    assert batch_disparity.shape == (1, 1, 96, 160)
    np.testing.assert_array_equal(batch_kept[0, 0].numpy(), kept)


def test_self_supervised_steps_on_a_bag_lower_the_photometric_error(tmp_path: Path) -> None:
    bag, _ = write_heldout_bag(tmp_path, frames=6, domain=SMALL)
    settings = TrainSettings(config="tiny", data=str(bag), mode="self-supervised", steps=40, batch_size=2,
                             crop_height=64, crop_width=96, max_disparity=32, lr=3e-3, warmup_steps=0, workers=0,
                             holdout_every=0, holdout_last=2, validate_every=20, log_every=10, checkpoint_every=1000,
                             seed=1)
    result = train([settings], tmp_path / "run")
    assert len(result.losses) == 40
    # Measured: 0.32 -> 0.17 (and 0.42 -> 0.35 with the photo scenes of the newer scene generator).
    assert np.mean(result.losses[-5:]) < 0.9 * np.mean(result.losses[:5])
    report = json.loads((tmp_path / "run" / VALIDATION_FILE).read_text())
    assert report["pairs"] == 2 and "held-out" in report["evaluated_on"]
    assert [row["step"] for row in report["scores"]] == [0, 20, 40]
    first, last = report["scores"][0], report["scores"][-1]
    assert last["photometric"] < 0.9 * first["photometric"]  # frames 4-5, never trained on; measured -44 % / -18 %
    assert 0.0 < last["visible_fraction"] <= 1.0 and last["lr_consistency_px"] >= 0.0
    assert result.validation == report["scores"]


def test_a_new_run_in_a_used_folder_scores_afresh_and_a_resumed_one_appends(tmp_path: Path) -> None:
    """A run into the folder of an earlier one starts its own validation.json: it once read the earlier
    run's rows, skipped every step they had scored (a 1000-step rerun scored nothing and kept no best) and
    compared with their step 0. A resumed run (--resume) appends to its own."""
    bag, _ = write_heldout_bag(tmp_path, frames=4, domain=SMALL)
    base = TrainSettings(config="tiny", data=str(bag), mode="self-supervised", steps=2, batch_size=1, crop_height=64,
                         crop_width=96, max_disparity=32, lr=1e-3, warmup_steps=0, workers=0, holdout_every=0,
                         holdout_last=1, validate_every=1, checkpoint_every=1000, init_weights=str(shipped_weights("tiny")))
    run = tmp_path / "run"
    train([base.replace(lr=5.0)], run)  # the earlier run wrecks the network: its scores at steps 1-2 are bad
    earlier = {row["step"]: row for row in json.loads((run / VALIDATION_FILE).read_text())["scores"]}
    assert sorted(earlier) == [0, 1, 2]
    result = train([base.replace(validate_every=2)], run)
    rows = json.loads((run / VALIDATION_FILE).read_text())["scores"]
    assert [row["step"] for row in rows] == [0, 2] and result.validation == rows
    assert rows[0]["photometric"] == pytest.approx(earlier[0]["photometric"], rel=1e-5)  # the same starting weights
    assert rows[1]["photometric"] != earlier[2]["photometric"]  # step 2 scored again, on this run's weights
    # stop at step 1, then resume: one list of scores, each step once
    stopped = tmp_path / "stopped"
    train([base], stopped, stop_at=1)
    assert [row["step"] for row in json.loads((stopped / VALIDATION_FILE).read_text())["scores"]] == [0, 1]
    train([base], stopped, resume=True)
    assert [row["step"] for row in json.loads((stopped / VALIDATION_FILE).read_text())["scores"]] == [0, 1, 2]


def test_validation_keeps_the_best_weights_that_did_not_collapse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scripted scores: step 20 has the lowest photometric error but its disparity spread collapsed to a
    tenth of step 0's, so step 40 (the best of the rest) is kept and its weights are loaded back."""
    scripted = {0: (0.30, 10.0), 20: (0.20, 1.0), 40: (0.25, 8.0), 60: (0.28, 9.0)}
    monkeypatch.setattr(validation, "score", lambda net, pairs, device: {
        "pairs": 1, "photometric": scripted[int(net.marker)][0], "lr_consistency_px": 0.5,
        "visible_fraction": 0.9, "disparity_spread_px": scripted[int(net.marker)][1]})
    net = StereoNet(get_config("tiny"))
    net.register_buffer("marker", torch.zeros(()))  # which step's weights the net holds
    held = HeldOutValidation([StereoPair(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8), None, None)],
                             True, 20, tmp_path, None)
    for step in scripted:
        net.marker.fill_(step)
        held(net, torch.device("cpu"), step)
    assert [held.eligible(row) for row in held.rows] == [True, False, True, True]
    assert held.keep_best(net) == 40 and float(net.marker) == 40.0
    assert json.loads((tmp_path / VALIDATION_FILE).read_text())["kept_step"] == 40
    # When the last score is the best, the last weights stand.
    scripted[80] = (0.1, 9.5)
    net.marker.fill_(80)
    held(net, torch.device("cpu"), 80)
    assert held.keep_best(net) is None and float(net.marker) == 80.0


def test_a_diverging_adaptation_ends_with_its_starting_weights(tmp_path: Path) -> None:
    """lr 5 wrecks the network in a step; the run writes the shipped weights back (keep_weights "best")
    and says which step it kept; keep_weights "last" writes the wrecked ones."""
    bag, _ = write_heldout_bag(tmp_path, frames=4, domain=SMALL)
    base = TrainSettings(config="tiny", data=str(bag), mode="self-supervised", steps=2, batch_size=1, crop_height=64,
                         crop_width=96, max_disparity=32, lr=5.0, warmup_steps=0, workers=0, holdout_every=0,
                         holdout_last=1, validate_every=1, checkpoint_every=1000, init_weights=str(shipped_weights("tiny")))
    shipped = load_model("tiny").net.state_dict()
    for keep in ("best", "last"):
        result = train([base.replace(keep_weights=keep)], tmp_path / keep)
        written = load_model(weights=str(result.weights)).net.state_dict()
        same = all(torch.equal(written[k], shipped[k]) for k in shipped)
        report = json.loads((tmp_path / keep / VALIDATION_FILE).read_text())
        scores = {row["step"]: row for row in report["scores"]}
        assert scores[2]["photometric"] > scores[0]["photometric"] or not np.isfinite(scores[2]["photometric"])
        if keep == "best":
            assert same and report["kept_step"] == 0
            assert json.loads(result.weights.with_suffix(".json").read_text())["info"]["kept_step"] == 0
        else:
            assert not same and "kept_step" not in report


def test_adaptation_sees_frames_at_the_network_input_size_as_the_node_does(tmp_path: Path) -> None:
    """frame_size "network" (default): each recorded pair resized as the node resizes camera images
    (INTER_AREA when shrinking, linear when enlarging) to the config's input, crops at most that large;
    "recorded" keeps the bag's 96x64."""
    bag, _ = write_heldout_bag(tmp_path, frames=3, domain=SMALL)
    base = TrainSettings(config="tiny", data=str(bag), mode="self-supervised", crop_height=512, crop_width=512,
                         holdout_every=0, holdout_last=1)
    tiny = get_config("tiny")
    crops = open_dataset(base, stage=0)
    recorded = list(StereoBag(bag))
    assert len(crops) == 2
    first = crops[0]
    assert first.left.shape == (tiny.height, tiny.width, 3) and first.disparity_px is None
    # a crop as large as the frame is the whole frame: the resized pixels themselves
    expected = [resize_to_input(frame.pair.left, tiny.width, tiny.height) for frame in recorded[:2]]
    assert any(np.array_equal(first.left, e) for e in expected)
    assert not np.array_equal(expected[0], cv2.resize(recorded[0].pair.left, (tiny.width, tiny.height),
                                                      interpolation=cv2.INTER_NEAREST))
    held = open_real_items(base)[2]
    assert held.left.shape == (tiny.height, tiny.width, 3)
    small = base.replace(frame_size="recorded", crop_height=64, crop_width=96)
    assert open_dataset(small, stage=0)[0].left.shape == (64, 96, 3)
    with pytest.raises(ValueError, match="smaller than the crop"):
        open_dataset(small.replace(crop_height=128), stage=0)[0]
    with pytest.raises(ValueError, match="frame_size"):
        TrainSettings(frame_size="camera")


def _two_camera_bag(path: Path, frames: int, right_delay_ns: int) -> Path:
    """Two stereo cameras (/a, /b) whose right images are stamped right_delay_ns after the left ones."""
    messages = []
    for frame in heldout_frames(SMALL, frames):
        for ns in ("/a", "/b"):
            messages += [m for m in stereo_messages(frame.stamp_ns, frame.left, frame.right, None, namespace=ns)
                         if "/left/" in m.topic]
            messages += [m for m in stereo_messages(frame.stamp_ns + right_delay_ns, frame.left, frame.right, None,
                                                    namespace=ns) if "/right/" in m.topic]
    return write_bag(path, sorted(messages, key=lambda m: m.timestamp_ns))


def test_cli_flags_reach_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bag = _two_camera_bag(tmp_path / "bag", frames=5, right_delay_ns=3_000_000)
    common = ["train", "--data", str(bag), "--mode", "self-supervised", "--steps", "2", "--batch-size", "1",
              "--crop-height", "64", "--crop-width", "96", "--max-disparity", "32", "--workers", "0"]
    def refused(extra: list[str], out: str) -> str:
        assert main(common + extra + ["--out", str(tmp_path / out)]) != 0
        return capsys.readouterr().err

    assert "give left_topic and right_topic" in refused(["--weights", "tiny"], "ambiguous")  # two cameras
    topics = ["--left-topic", "/b/left/image_rect", "--right-topic", "/b/right/image_rect"]
    assert "no stereo pairs" in refused(topics + ["--weights", "tiny"], "exact")  # 3 ms apart: exact finds none
    assert "--weights sets --config" in refused(topics + ["--weights", "tiny", "--config", "fast"], "both")
    run = tmp_path / "run"
    assert main(common + topics + ["--weights", "tiny", "--stamp-tolerance", "0.005", "--holdout-every", "0",
                                   "--holdout-last", "2", "--validate-every", "1", "--proxy-weight", "0.5",
                                   "--out", str(run)]) == 0
    stage = json.loads((run / "settings.json").read_text())["stages"][0]
    assert (stage["config"], stage["init_weights"]) == ("tiny", str(shipped_weights("tiny")))
    assert (stage["left_topic"], stage["right_topic"], stage["stamp_tolerance_s"]) == (
        "/b/left/image_rect", "/b/right/image_rect", 0.005)
    assert (stage["holdout_every"], stage["holdout_last"], stage["validate_every"], stage["proxy_weight"]) == (0, 2, 1, 0.5)
    report = json.loads((run / VALIDATION_FILE).read_text())
    assert report["pairs"] == 2 and [row["step"] for row in report["scores"]] == [0, 1, 2]
    assert (run / "tiny.safetensors").is_file()


def test_evaluate_reads_a_heldout_recording_frame_range(tmp_path: Path) -> None:
    write_heldout_bag(tmp_path, frames=4, domain=SMALL)
    truth = read_heldout_ground_truth(tmp_path / "ground_truth.npz")
    pairs = list(evaluation_pairs(str(tmp_path), frames="1:3"))
    assert [name for name, _ in pairs] == ["frame 1", "frame 2"]
    for (_, pair), stamp in zip(pairs, sorted(truth)[1:3]):
        np.testing.assert_array_equal(pair.disparity_px, truth[stamp][0])
        assert pair.valid.all() and pair.left.shape == (64, 96, 3)
    assert len(list(evaluation_pairs(str(tmp_path), frames="3:"))) == 1
    with pytest.raises(ValueError, match="--frames selects"):
        list(evaluation_pairs(str(tmp_path / "bag"), frames="1:3"))


def test_pooled_photometric_scales_see_through_sensor_noise() -> None:
    """With strong independent noise per view, the full-size photometric term barely prefers the true
    disparity; averaged with the 2x and 4x pooled images it does clearly."""
    s = _two_plane_pair(h=128, w=192, box=(40, 90, 70, 130))
    rng = np.random.default_rng(1)

    def to_tensor(image: np.ndarray) -> torch.Tensor:
        noisy = image / 255.0 + rng.normal(0.0, 0.12, image.shape)
        return torch.from_numpy(noisy.clip(0, 1).astype(np.float32)).permute(2, 0, 1)[None]

    left, right = to_tensor(s["left"]), to_tensor(s["right"])
    truth, right_truth = (torch.from_numpy(s[k])[None, None] for k in ("left_d", "right_d"))
    ratios = {}
    for scales in (1, 3):
        at_truth = self_supervised_terms(left, right, truth, right_truth, scales)["photometric"]
        shifted = self_supervised_terms(left, right, truth + 2.0, right_truth, scales)["photometric"]
        ratios[scales] = float(shifted / at_truth)
    assert ratios[3] > 1.1 and ratios[3] > ratios[1] + 0.05, ratios
    with pytest.raises(ValueError, match="photometric_scales"):
        TrainSettings(photometric_scales=0)
