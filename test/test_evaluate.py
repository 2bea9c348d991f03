"""`stereo-depth evaluate` on real data: the Middlebury Aloe pair (Debian's opencv-doc)."""
import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ros2_stereo_depth.cli import main
from ros2_stereo_depth.artifacts.weights import shipped_weights

ALOE = Path("/usr/share/doc/opencv-doc/examples/data")
PAIR = ["--left", str(ALOE / "aloeL.jpg"), "--right", str(ALOE / "aloeR.jpg"), "--gt", str(ALOE / "aloeGT.png")]
# The shipped fast weights against SGBM in the same run, at this scale. Measured (README, Accuracy):
# bad-2 28.1 % vs 32.0 % (0.88x), bad-3 21.8 % vs 31.8 % (0.69x), dense EPE 3.68 vs 9.76 px (0.38x).
# The target, bad-2 at 0.7x SGBM, is not reached yet; these bounds guard what we have.
FAST_SCALE = 0.5
FAST_VS_SGBM = {"bad2": 0.9, "bad3": 0.75, "epe": 0.45}
# Aloe's largest disparity at half size is 105.5 px: 128 is the smallest multiple of the fast config's
# 32 that covers it (and the training default). The config's 192 would also cost SGBM 64 more
# unanswerable left-border columns (bad-2 41 % instead of 32 %), an easier bar than intended.
FAST_MAX_DISPARITY = 128

pytestmark = pytest.mark.skipif(not (ALOE / "aloeGT.png").is_file(),
                                reason="opencv-doc (Middlebury Aloe) not installed; `make test` installs it")


def evaluate(capsys, *args):
    assert main(["evaluate", "--threads", "1", *args]) == 0
    return capsys.readouterr().out


def evaluate_json(capsys, *args):
    return json.loads(evaluate(capsys, *args, "--json"))


@pytest.fixture(scope="module")
def tiny_quarter():
    """One run shared by the checks below: random tiny network, quarter size (320x278)."""
    out = io.StringIO()  # module-scoped fixtures cannot use capsys
    with contextlib.redirect_stdout(out):
        assert main(["evaluate", "--threads", "1", "--config", "tiny", *PAIR, "--scale", "0.25", "--json"]) == 0
    return json.loads(out.getvalue())


def check_ranges(m):
    assert set(m) == {"epe", "epe_predicted", "bad1", "bad2", "bad3", "d1", "density", "seconds"}
    assert 0.0 < m["density"] <= 100.0 and m["seconds"] > 0.0
    assert 100.0 >= m["bad1"] >= m["bad2"] >= m["bad3"] >= m["d1"] >= 0.0
    assert m["epe"] >= m["epe_predicted"] >= 0.0 or m["density"] == 100.0


def test_sgbm_on_aloe_is_sane(tiny_quarter):
    sgbm = tiny_quarter["sgbm"]
    check_ranges(sgbm)
    assert 50.0 < sgbm["density"] < 95.0
    assert 10.0 < sgbm["bad2"] < 60.0
    assert sgbm["epe_predicted"] < 3.0 < sgbm["epe"]  # good where it answers; the holes cost


def test_model_numbers_present_and_dense(tiny_quarter):
    model = tiny_quarter["model"]
    check_ranges(model)
    assert model["density"] == 100.0 and model["epe"] == pytest.approx(model["epe_predicted"])
    assert tiny_quarter["resolution"] == ["320x278"] and tiny_quarter["scale"] == 0.25
    assert tiny_quarter["max_disparity"] == [64] and tiny_quarter["pairs"] == 1


def test_unpredicted_pixels_count_as_errors(capsys):
    # Confidence is at most 1: nothing is predicted, so every valid pixel is bad and the dense EPE is
    # the mean ground truth at the evaluated size (160x139: nearest-neighbour, values x 160/1282).
    m = evaluate_json(capsys, "--config", "tiny", *PAIR, "--scale", "0.125", "--min-confidence", "1.01")["model"]
    assert m["density"] == 0.0 and m["bad1"] == m["bad3"] == m["d1"] == 100.0
    gt = cv2.resize(cv2.imread(str(ALOE / "aloeGT.png"), cv2.IMREAD_GRAYSCALE), (160, 139), interpolation=cv2.INTER_NEAREST)
    assert m["epe_predicted"] is None
    assert m["epe"] == pytest.approx(gt[gt > 0].astype(np.float64).mean() * 160 / 1282, rel=1e-6)


def test_table_and_dataset_layout_agree_with_single_pair(tmp_path, capsys):
    scene = tmp_path / "Aloe"  # Middlebury 2006 layout, full size (GT scale 1 guessed from the width)
    scene.mkdir()
    for name, target in (("view1.jpg", "aloeL.jpg"), ("view5.jpg", "aloeR.jpg"), ("disp1.png", "aloeGT.png")):
        (scene / name).symlink_to(ALOE / target)
    single = evaluate_json(capsys, "--config", "tiny", *PAIR, "--scale", "0.125")
    dataset = evaluate_json(capsys, "--config", "tiny", "--dataset", str(tmp_path), "--scale", "0.125")
    for method in ("model", "sgbm"):
        for key in ("epe", "bad2", "d1", "density"):
            assert dataset[method][key] == pytest.approx(single[method][key]), (method, key)
    table = evaluate(capsys, "--config", "tiny", *PAIR, "--scale", "0.125")
    assert "scale 0.125 (160x139)" in table and "sgbm" in table and "bad-2 (%)" in table


def test_shipped_fast_weights_beat_sgbm_on_aloe(capsys):
    if shipped_weights("fast") is None:
        pytest.skip("ros2_stereo_depth/weights/fast.safetensors not shipped yet (trained by `stereo-depth train`)")
    report = evaluate_json(capsys, "--config", "fast", *PAIR, "--scale", str(FAST_SCALE),
                           "--max-disparity", str(FAST_MAX_DISPARITY))
    assert report["weights"].startswith("config 'fast', weights")
    for metric, ratio in FAST_VS_SGBM.items():
        assert report["model"][metric] < ratio * report["sgbm"][metric], (metric, report)
