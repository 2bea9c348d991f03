"""Weights sidecars: the architecture is checked against config.py, the tensors against their sha256, and
the shipped sidecars are in the current format with unchanged tensors."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from ros2_stereo_depth import config as config_module
from ros2_stereo_depth.artifacts.sidecar import SIDECAR_VERSION, SidecarError, sha256_file
from ros2_stereo_depth.artifacts.weights import SHIPPED_DIR, load_model, save_weights
from ros2_stereo_depth.config import CONFIGS, RUNTIME_FIELDS, ModelConfig, get_config
from ros2_stereo_depth.model import StereoNet

# sha256 of the shipped tensors: rewriting the sidecars must not touch them.
SHIPPED_SHA256 = {"tiny": "cb65262639eb", "fast": "ebadffe31e63"}


@pytest.fixture
def tiny_weights(tmp_path: Path) -> Path:
    with torch.random.fork_rng():  # seeded initialisation; the global RNG is restored after
        torch.manual_seed(0)
        net = StereoNet(get_config("tiny"))
    return save_weights(net, tmp_path / "w.safetensors", {"steps": 7})


def test_sidecar_records_architecture_not_runtime(tiny_weights: Path) -> None:
    meta = json.loads(tiny_weights.with_suffix(".json").read_text())
    assert meta["kind"] == "weights" and meta["sidecar_version"] == SIDECAR_VERSION
    assert meta["architecture"] == {"name": "tiny", "feature_channels": 16, "groups": 4, "downsample": 4,
                                    "aggregation_channels": 8, "refine": False, "upsample": "bilinear"}
    assert not set(RUNTIME_FIELDS) & set(meta["architecture"])
    assert meta["sha256"] == sha256_file(tiny_weights)
    assert sorted(p.name for p in tiny_weights.parent.iterdir()) == ["w.json", "w.safetensors"]  # no temp file


def test_architecture_mismatch_names_both_files(tiny_weights: Path) -> None:
    sidecar = tiny_weights.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta["architecture"]["groups"] = 8
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(SidecarError) as error:
        load_model(weights=tiny_weights)
    assert str(sidecar) in str(error.value) and "config.py" in str(error.value)
    assert "groups: weights 8, config.py 4" in str(error.value)


def test_modified_tensors_are_refused(tiny_weights: Path) -> None:
    tiny_weights.write_bytes(tiny_weights.read_bytes()[:-1] + b"\1")
    with pytest.raises(SidecarError, match="does not match its sidecar"):
        load_model(weights=tiny_weights)


def test_run_time_settings_come_from_the_registry_or_the_caller(tiny_weights: Path) -> None:
    assert load_model(weights=tiny_weights).config == get_config("tiny")
    assert load_model(weights=tiny_weights, max_disparity=32).config.max_disparity == 32
    with pytest.raises(ValueError, match="define the weights"):
        get_config("tiny").with_overrides(groups=8)


def test_search_range_is_checked_against_the_requested_width(tiny_weights: Path) -> None:
    """A range wider than the config's default width (tiny: 256) is fine for a wider input: `--native`
    evaluation of a large image asks for exactly that. It is still refused beyond the requested width."""
    model = load_model(weights=tiny_weights, max_disparity=320, height=192, width=384)
    assert (model.config.max_disparity, model.config.height, model.config.width) == (320, 192, 384)
    with pytest.raises(ValueError, match="max_disparity 320 exceeds the input width 256"):
        load_model(weights=tiny_weights, max_disparity=320)
    with pytest.raises(ValueError, match="max_disparity 320 exceeds the input width 304"):
        load_model(weights=tiny_weights, max_disparity=320, width=304)


def test_a_new_architecture_field_reads_old_sidecars_with_its_default(monkeypatch, tiny_weights: Path) -> None:
    """The lead adds architecture fields with a default; sidecars written before then still load."""
    Extended = dataclasses.make_dataclass("ModelConfig", [("upsampling", str, dataclasses.field(default="bilinear"))],
                                          bases=(ModelConfig,), frozen=True)
    monkeypatch.setattr(config_module, "ModelConfig", Extended)
    tiny = Extended(**get_config("tiny").to_dict())
    monkeypatch.setitem(CONFIGS, "tiny", tiny)
    monkeypatch.setattr("ros2_stereo_depth.artifacts.weights.architecture_defaults",
                        lambda: {"upsampling": "bilinear"})
    assert load_model(weights=tiny_weights).config.upsampling == "bilinear"  # type: ignore[attr-defined]
    monkeypatch.setitem(CONFIGS, "tiny", dataclasses.replace(tiny, upsampling="nearest"))  # type: ignore[call-arg]
    with pytest.raises(SidecarError, match="upsampling: weights 'bilinear', config.py 'nearest'"):
        load_model(weights=tiny_weights)


@pytest.mark.parametrize("name", sorted(SHIPPED_SHA256))
def test_shipped_sidecars(name: str) -> None:
    path = SHIPPED_DIR / f"{name}.safetensors"
    assert sha256_file(path)[:12] == SHIPPED_SHA256[name]
    model = load_model(name)
    assert model.weights_path == path and model.config == get_config(name)
    # The registry's search range is the one the shipped weights were last trained with.
    info = json.loads(path.with_suffix(".json").read_text())["info"]
    assert info["stages"][-1]["max_disparity"] == get_config(name).max_disparity


# The schedule files shipped beside the weights, run by run (the first run first).
SCHEDULES = {"tiny": ["tiny_schedule.yaml", "tiny_schedule_stage2.yaml", "tiny_schedule_stage3.yaml"],
             "fast": ["fast_schedule.yaml", "fast_schedule_stage2.yaml"]}
RECORDED = ("config", "data", "textures", "mode", "steps", "batch_size", "crop_height", "crop_width", "max_disparity",
            "lr", "final_lr_factor", "warmup_steps", "weight_decay", "seed")


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_shipped_weights_come_from_their_schedules_on_clean_textures(name: str) -> None:
    """Each training run recorded in the sidecar is what the shipped schedule file plans, from scratch for
    the first run; and every texture file recorded is neither a benchmark image nor an excluded name."""
    from ros2_stereo_depth.data.textures import EXCLUDED_SHA256, is_excluded
    from ros2_stereo_depth.training.settings import TrainSettings, load_schedule

    info = json.loads((SHIPPED_DIR / f"{name}.json").read_text())["info"]
    runs = [*info.get("earlier_runs", []), info]
    assert len(runs) == len(SCHEDULES[name])
    for run, schedule in zip(runs, SCHEDULES[name]):
        planned = load_schedule(SHIPPED_DIR / schedule, TrainSettings())
        assert [{k: getattr(s, k) for k in RECORDED} for s in planned] == \
               [{k: s[k] for k in RECORDED} for s in run["stages"]], schedule
        assert run["steps"] == sum(s.steps for s in planned)  # ran to the end
    assert runs[0]["stages"][0]["init_weights"] == ""  # from scratch
    assert all(run["stages"][0]["init_weights"] for run in runs[1:])  # each later run goes on from the one before
    assert all(s["textures"] == "photos" for run in runs for s in run["stages"])
    assert "texture_files" in info
    for files in [run["texture_files"] for run in runs if "texture_files" in run]:  # the first tiny run predates it
        assert len(files) >= 20 and not set(files.values()) & EXCLUDED_SHA256
        assert not [n for n in files if is_excluded(Path(n))]
