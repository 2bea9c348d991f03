"""`stereo-depth evaluate` on real data: the Middlebury Aloe pair (Debian's opencv-doc, evaluation only)."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ros2_stereo_depth.cli import main
from ros2_stereo_depth.evaluation.metrics import disparity_metrics
from ros2_stereo_depth.evaluation.pairs import rescale_pair, single_pair
from ros2_stereo_depth.inference.base import infer_at_image_size
from ros2_stereo_depth.inference.local_matching import NO_MATCHING, LocalMatching
from ros2_stereo_depth.inference.select import BackendRequest, create_backend
from ros2_stereo_depth.artifacts.weights import shipped_weights

ALOE = Path("/usr/share/doc/opencv-doc/examples/data")
LEFT, RIGHT, GT = (str(ALOE / n) for n in ("aloeL.jpg", "aloeR.jpg", "aloeGT.png"))
PAIR = ["--left", LEFT, "--right", RIGHT, "--gt", GT]

pytestmark = [pytest.mark.export,  # the network runs through ONNX Runtime on a fresh export
              pytest.mark.skipif(not (ALOE / "aloeGT.png").is_file(),
                                 reason="opencv-doc (Middlebury Aloe) not installed; `make test` installs it")]


def evaluate(capsys, *args):
    assert main(["evaluate", "--threads", "1", *args]) == 0
    return capsys.readouterr().out


def evaluate_json(capsys, *args):
    return json.loads(evaluate(capsys, *args, "--json"))


def failure(capsys, *args):
    assert main(["evaluate", "--threads", "1", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def check_ranges(m):
    assert 0.0 < m["density"] <= 100.0 and m["seconds"] > 0.0
    assert 100.0 >= m["bad1"] >= m["bad2"] >= m["bad3"] >= m["d1"] >= 0.0
    assert m["epe"] >= m["epe_predicted"] >= 0.0 or m["density"] == 100.0
    assert 0.0 <= m["edge_bad2"] <= 100.0 and m["edge_pixels"] > 0


def test_node_path_is_what_the_node_computes(capsys):
    """Default: the node's input size, resize policy and local matching; the numbers equal those of
    create_backend + infer_at_image_size with the node's default matching run here directly; SGBM at the
    network's search range in image px. --match-radius 0 --match-camera-radius 0 --no-match-sgbm
    --no-match-edges: the network alone."""
    report = evaluate_json(capsys, "--config", "tiny", *PAIR, "--scale", "0.25", "--sgbm", "given")
    p = report["protocol"]
    assert p["path"] == "node" and p["resolution"] == ["320x278"] and p["network_input"] == ["256x192"]
    assert (p["match_radius_px"], p["match_camera_radius_px"], p["match_sgbm"], p["match_edges"]) == (
        LocalMatching().radius_px, LocalMatching().camera_radius_px, True, True)
    assert p["search_range_px"] == [pytest.approx(64 * 320 / 256, abs=0.01)]  # tiny: 64 px at 256 wide
    assert report["backend"] == "onnxruntime on cpu" and "sgbm_tuned" not in report
    assert report["sgbm"]["num_disparities"] == [80] and report["sgbm"]["block_size"] == 5
    check_ranges(report["model"])
    check_ranges(report["sgbm"])
    assert report["model"]["density"] == 100.0

    _, item = single_pair(LEFT, RIGHT, GT)
    item = rescale_pair(item, 0.25)
    backend = create_backend(BackendRequest(backend="onnxruntime", config="tiny", threads=1)).backend
    alone = evaluate_json(capsys, "--config", "tiny", *PAIR, "--scale", "0.25", "--sgbm", "none",
                          "--match-radius", "0", "--match-camera-radius", "0", "--no-match-sgbm", "--no-match-edges")
    for matching, model in ((LocalMatching(), report["model"]), (NO_MATCHING, alone["model"])):
        disparity = infer_at_image_size(backend, item.left, item.right, matching).disparity_px
        direct = disparity_metrics(disparity, item.disparity_px, item.valid, disparity > 0)
        for key in ("epe", "bad2", "d1", "edge_bad2", "edge_epe"):
            assert model[key] == pytest.approx(direct[key], rel=1e-6), key
    assert alone["model"]["bad2"] > report["model"]["bad2"] + 5  # the matching's gain at this size


def test_native_path_pads_to_the_size_multiple(capsys):
    report = evaluate_json(capsys, "--config", "tiny", *PAIR, "--scale", "0.125", "--native", "--sgbm", "none",
                           "--backend", "torch")
    p = report["protocol"]
    assert p["path"] == "native" and p["resolution"] == ["160x139"] and p["network_input"] == ["160x144"]
    assert p["search_range_px"] == [64.0] and report["backend"] == "torch on cpu"
    assert "sgbm" not in report and "ratio_to_tuned_sgbm" not in report
    check_ranges(report["model"])


def test_native_search_range_is_checked_against_the_image_width(capsys):
    """288 px exceeds tiny's default input width (256) but not this padded image's (320): allowed."""
    report = evaluate_json(capsys, "--config", "tiny", *PAIR, "--scale", "0.25", "--native", "--sgbm", "none",
                           "--backend", "torch", "--max-disparity", "288")
    p = report["protocol"]
    assert p["network_input"] == ["320x288"] and p["search_range_px"] == [288.0]
    check_ranges(report["model"])
    err = failure(capsys, "--config", "tiny", *PAIR, "--scale", "0.25", "--native", "--sgbm", "none",
                  "--backend", "torch", "--max-disparity", "336")
    assert "max_disparity 336 exceeds the input width 320" in err


def test_unpredicted_pixels_count_as_errors(capsys):
    # Confidence is at most 1: nothing is predicted, so every valid pixel is bad and the dense EPE is
    # the mean ground truth at the evaluated size (160x139: nearest-neighbour, values x 160/1282).
    m = evaluate_json(capsys, "--config", "tiny", *PAIR, "--scale", "0.125", "--min-confidence", "1.01",
                      "--sgbm", "none")["model"]
    assert m["density"] == 0.0 and m["bad1"] == m["bad3"] == m["d1"] == m["edge_bad2"] == 100.0
    gt = cv2.resize(cv2.imread(GT, cv2.IMREAD_GRAYSCALE), (160, 139), interpolation=cv2.INTER_NEAREST)
    assert m["epe_predicted"] is None
    assert m["epe"] == pytest.approx(gt[gt > 0].astype(np.float64).mean() * 160 / 1282, rel=1e-6)


def test_dataset_layout_agrees_with_single_pair_and_tuned_sgbm_wins(tmp_path, capsys):
    scene = tmp_path / "Aloe"  # Middlebury 2006 layout, full size (GT scale 1 guessed from the width)
    scene.mkdir()
    for name, target in (("view1.jpg", "aloeL.jpg"), ("view5.jpg", "aloeR.jpg"), ("disp1.png", "aloeGT.png")):
        (scene / name).symlink_to(ALOE / target)
    single = evaluate_json(capsys, "--config", "tiny", *PAIR, "--scale", "0.125")
    dataset = evaluate_json(capsys, "--config", "tiny", "--dataset", str(tmp_path), "--scale", "0.125")
    for method in ("model", "sgbm", "sgbm_tuned", "sgbm_tuned_filled"):
        for key in ("epe", "bad2", "d1", "density", "edge_epe"):
            assert dataset[method][key] == pytest.approx(single[method][key]), (method, key)
    tuned, given = single["sgbm_tuned"], single["sgbm"]
    # Aloe's largest disparity at 1/8 size is 26.2 px: 16 and 32 (1.5 x 26.2 = 39) x 3 block sizes. At 160 px
    # wide the 32 blind left columns cost more than the far disparities 16 misses: 16 wins. The given range is
    # tiny's 64 px at 256 wide = 40 px at 160 wide, rounded up to 48.
    assert tuned["candidates"] == 6 and tuned["num_disparities"] == 16 and given["num_disparities"] == [48]
    assert tuned["bad2"] <= given["bad2"] and tuned["search_seconds"] > 0.0
    assert single["ratio_to_tuned_sgbm"]["bad2"] == pytest.approx(single["model"]["bad2"] / tuned["bad2"])
    filled = single["sgbm_tuned_filled"]
    assert filled["density"] == 100.0 and filled["bad2"] < tuned["bad2"]
    assert single["ratio_to_tuned_sgbm_filled"]["bad2"] == pytest.approx(single["model"]["bad2"] / filled["bad2"])
    table = evaluate(capsys, "--config", "tiny", *PAIR, "--scale", "0.125")
    assert "scale 0.125 (160x139), node path" in table and "sgbm_tuned_filled" in table and "edge bad-2 (%)" in table


def test_picture_shows_sgbm_with_and_without_its_holes(tmp_path, capsys):
    from ros2_stereo_depth.evaluation.protocol import PICTURE_WIDTH_PX

    out = tmp_path / "aloe.png"
    evaluate(capsys, "--config", "tiny", *PAIR, "--scale", "0.125", "--picture", str(out))
    image = cv2.imread(str(out))
    assert image is not None and image.shape[1] == PICTURE_WIDTH_PX
    tile = PICTURE_WIDTH_PX // 5  # left | ours | SGBM tuned | SGBM tuned, filled | ground truth
    body = image[40:image.shape[0] - 60]  # below the titles, above the colour bar

    def black(i):
        return float((body[:, i * tile + 2:(i + 1) * tile - 2].max(axis=2) < 10).mean())

    assert black(1) < 0.01  # ours: dense
    assert black(2) > 0.05 and black(3) < black(2) / 3  # SGBM's holes, filled


def test_ground_truth_of_another_size_is_an_error(tmp_path, capsys):
    small = tmp_path / "small_gt.png"
    cv2.imwrite(str(small), cv2.resize(cv2.imread(GT, cv2.IMREAD_GRAYSCALE), (641, 555), interpolation=cv2.INTER_NEAREST))
    err = failure(capsys, "--config", "tiny", "--left", LEFT, "--right", RIGHT, "--gt", str(small), "--sgbm", "none")
    assert str(small) in err and "641x555" in err and "1282x1110" in err


def test_colour_ground_truth_is_an_error(capsys):
    err = failure(capsys, "--config", "tiny", "--left", LEFT, "--right", RIGHT, "--gt", LEFT, "--sgbm", "none")
    assert LEFT in err and "colour image" in err


def test_search_range_the_network_cannot_use_is_an_error(capsys):
    err = failure(capsys, "--config", "tiny", *PAIR, "--max-disparity", "40", "--sgbm", "none")
    assert "max_disparity 40" in err and "multiple of 16" in err


# The shipped weights through the node's default path (ONNX Runtime, CPU; the network, then the local
# matching with the node's default radii), measured on Aloe with `evaluate` (the README Accuracy table needs
# these), and the network alone (match radii 0), so that a network regression cannot hide behind the
# matching and the SGBM fusion. Guards: a regression of more than GUARD_PP points of bad-2 (or GUARD_EDGE_EPE px of edge EPE)
# fails. Targets (issue 9): bad-2 <= 0.7x tuned SGBM and edge EPE below tuned SGBM's, at full and half size.
# (config, scale): (bad-2 %, edge EPE px) measured
MEASURED = {("fast", 1.0): (9.57, 14.30), ("fast", 0.5): (7.10, 6.76),
            ("tiny", 1.0): (10.60, 14.84), ("tiny", 0.5): (11.21, 8.13)}
NETWORK_ALONE = {("fast", 1.0): (44.01, 21.54), ("fast", 0.5): (31.91, 11.17),
                 ("tiny", 1.0): (70.16, 23.08), ("tiny", 0.5): (47.59, 11.95)}
# The CPU preset (config/stereo_depth_cpu.yaml: tiny, SGBM fusion at level 1 only, no census search): under
# 0.7x tuned SGBM at both sizes; at full size level 1 is 512 px wide (local_matching.py MAX_LEVEL_UPSAMPLING;
# 26.8 % when it was the network's 256 px).
PRESET_MEASURED = {1.0: (14.38, 16.90), 0.5: (16.19, 9.95)}
# The same with match_width_px 640, for megapixel cameras: at full size under the filled SGBM.
PRESET_640_MEASURED = {1.0: (12.65, 16.91), 0.5: (9.92, 8.42)}
PRESET = Path(__file__).resolve().parents[1] / "config" / "stereo_depth_cpu.yaml"
TUNED_SGBM_BAD2 = {1.0: 24.02, 0.5: 23.96}  # numDisparities 144 / 80, block 3
TUNED_SGBM_FILLED_BAD2 = {1.0: 13.38, 0.5: 9.75}  # holes filled from the background: numDisparities 160 / 80, block 3
GUARD_PP, GUARD_EDGE_EPE = 1.0, 0.5
TARGET_BAD2_RATIO = 0.7


@pytest.fixture(scope="module", params=[1.0, 0.5], ids=["full", "half"])
def shipped(request):
    from ros2_stereo_depth.evaluation.network import NetworkSettings
    from ros2_stereo_depth.inference.local_matching import NO_MATCHING
    from ros2_stereo_depth.inference.select import BackendRequest
    from ros2_stereo_depth.evaluation.pairs import evaluation_pairs
    from ros2_stereo_depth.evaluation.protocol import EvaluationSettings
    from ros2_stereo_depth.evaluation.protocol import evaluate as run_protocol

    scale = request.param
    if shipped_weights("fast") is None or shipped_weights("tiny") is None:
        pytest.skip("shipped weights missing")
    reports = {}
    for config, sgbm in (("fast", "tuned"), ("tiny", "none")):  # tuned SGBM does not depend on the network
        for key, network in ((config, NetworkSettings(BackendRequest(config=config, threads=2))),
                             (f"{config} alone", NetworkSettings(BackendRequest(config=config, threads=2),
                                                                 matching=NO_MATCHING))):
            settings = EvaluationSettings(network, scale=scale, sgbm=sgbm if key == config else "none")
            reports[key] = run_protocol(evaluation_pairs(None, left=LEFT, right=RIGHT, gt=GT), settings)
    from ros2_stereo_depth.ros.node import output_settings, parameter_values
    params = parameter_values(str(PRESET))
    network = NetworkSettings(BackendRequest(config=params["config"], threads=2), matching=output_settings(params).matching)
    reports["cpu preset"] = run_protocol(evaluation_pairs(None, left=LEFT, right=RIGHT, gt=GT),
                                         EvaluationSettings(network, scale=scale, sgbm="none"))
    network = NetworkSettings(BackendRequest(config=params["config"], threads=2),
                              matching=output_settings({**params, "match_width_px": 640}).matching)
    reports["cpu preset 640"] = run_protocol(evaluation_pairs(None, left=LEFT, right=RIGHT, gt=GT),
                                             EvaluationSettings(network, scale=scale, sgbm="none"))
    return scale, reports


@pytest.mark.parametrize("config", ["fast", "tiny"])
def test_shipped_weights_do_not_regress(shipped, config):
    scale, reports = shipped
    for key, measured in ((config, MEASURED), (f"{config} alone", NETWORK_ALONE)):
        model = reports[key]["model"]
        assert reports[key]["protocol"]["path"] == "node" and reports[key]["weights"].startswith(f"config '{config}'")
        bad2, edge_epe = measured[(config, scale)]
        assert model["bad2"] <= bad2 + GUARD_PP, (key, model)
        assert model["edge_epe"] <= edge_epe + GUARD_EDGE_EPE, (key, model)
    assert reports[f"{config} alone"]["protocol"]["match_radius_px"] == 0
    assert reports[config]["protocol"]["match_radius_px"] > 0
    assert reports["fast"]["sgbm_tuned"]["bad2"] == pytest.approx(TUNED_SGBM_BAD2[scale], abs=0.1)
    assert reports["fast"]["sgbm_tuned_filled"]["bad2"] == pytest.approx(TUNED_SGBM_FILLED_BAD2[scale], abs=0.3)


def test_cpu_preset_does_not_regress_and_beats_tuned_sgbm(shipped):
    """config/stereo_depth_cpu.yaml as the node would run it (the file read as --params-file sets it):
    16.2 % at half size, 0.68x tuned SGBM's 24.0 %; 14.4 % at full size, 0.60x (README)."""
    scale, reports = shipped
    protocol, model = reports["cpu preset"]["protocol"], reports["cpu preset"]["model"]
    assert protocol["match_radius_px"] == 0 and reports["cpu preset"]["weights"].startswith("config 'tiny'")
    bad2, edge_epe = PRESET_MEASURED[scale]
    assert model["bad2"] <= bad2 + GUARD_PP and model["edge_epe"] <= edge_epe + GUARD_EDGE_EPE, model
    # Below the network alone by far: the SGBM fusion, not the network, carries the preset.
    assert model["bad2"] < 0.5 * reports["tiny alone"]["model"]["bad2"]
    assert model["bad2"] <= TARGET_BAD2_RATIO * TUNED_SGBM_BAD2[scale]
    # match_width_px 640 for a megapixel image: 12.65 % at full size, under the filled SGBM's 13.38 %.
    wide = reports["cpu preset 640"]["model"]
    bad2, edge_epe = PRESET_640_MEASURED[scale]
    assert wide["bad2"] <= bad2 + GUARD_PP and wide["edge_epe"] <= edge_epe + GUARD_EDGE_EPE, wide
    if scale == 1.0:
        assert wide["bad2"] < TUNED_SGBM_FILLED_BAD2[scale]


def test_fast_edge_epe_beats_tuned_sgbm(shipped):
    """Issue 9 target met: the network's disparity is dense, SGBM's holes cost it most at depth edges."""
    _, reports = shipped
    assert reports["fast"]["model"]["edge_epe"] < reports["fast"]["sgbm_tuned"]["edge_epe"]


def test_fast_bad2_beats_tuned_sgbm(shipped):
    """Issue 9 target met (the local matching with the SGBM fusion and the edge sides): fast 9.6 % against
    tuned SGBM's 24.0 % at full size (0.40x), 7.1 % against 24.0 % at half size (0.30x); target 0.7x."""
    _, reports = shipped
    assert reports["fast"]["ratio_to_tuned_sgbm"]["bad2"] <= TARGET_BAD2_RATIO


def test_fast_bad2_beats_tuned_sgbm_with_holes_filled(shipped):
    """The stronger classical baseline on a dense metric (inference/sgbm.py fill_holes): 13.4 % at full
    size (fast 9.6 %, 0.72x), 9.75 % at half size (fast 7.1 %, 0.73x)."""
    _, reports = shipped
    assert reports["fast"]["ratio_to_tuned_sgbm_filled"]["bad2"] < 1.0


def test_fast_edge_epe_beats_tuned_sgbm_with_holes_filled(shipped):
    """Reached with the edge sides (inference/edge_sides.py): 14.3 against 14.9 px at full size (16.4
    before them), 6.76 against 8.07 px at half size (8.08 before)."""
    _, reports = shipped
    ours, filled = reports["fast"]["model"]["edge_epe"], reports["fast"]["sgbm_tuned_filled"]["edge_epe"]
    assert ours < filled, (ours, filled)
