"""What a training run does: its settings and its schedule of stages (YAML).

A run is a list of stages; each stage is a full `TrainSettings` (its own steps, crop, search range,
learning rate, data). Without a schedule file the run is one stage: the settings themselves.

Schedule file (`--schedule stages.yaml`); every key but `stages` is a default for all stages, and any
TrainSettings field may be set per stage (`crop: [H, W]` is short for crop_height / crop_width):

    lr: 1.0e-3
    stages:
      - {steps: 2000, crop: [192, 256], max_disparity: 64}
      - {steps: 1500, crop: [256, 384], max_disparity: 128, lr: 5.0e-4, data: /data/sceneflow}
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.readers import MODES


TEXTURES = ("photos", "none")
FRAME_SIZES = ("network", "recorded")
KEEP_WEIGHTS = ("best", "last")


@dataclass(frozen=True)
class TrainSettings:
    config: str = "fast"
    data: str = "synthetic"  # 'synthetic' or a dataset directory (data/readers.py)
    textures: str = "photos"  # synthetic data: 'photos' (data/textures.py TEXTURE_SOURCES) or 'none' (procedural)
    far_scene_prob: float = 0.0  # synthetic data: share of distant scenes (data/synthetic.py SceneParams)
    data_format: str = "auto"
    mode: str = "supervised"
    steps: int = 1000  # of this stage
    batch_size: int = 4  # per process
    crop_height: int = 256
    crop_width: int = 320
    max_disparity: int = 128  # searched during training; weights do not depend on it
    lr: float = 1e-3  # peak; cosine decay to lr * final_lr_factor at the stage's last step
    final_lr_factor: float = 0.01
    warmup_steps: int = 50  # linear warmup at the start of each stage (at most a tenth of it)
    weight_decay: float = 1e-4
    seed: int = 0  # model initialisation and every sample and crop (no global RNG is used)
    threads: int = 0  # torch CPU threads per process (0: leave torch's setting)
    workers: int = 1  # DataLoader worker processes
    init_weights: str = ""
    # ROS 2 bags (data/bags.py): topics when the bag holds more than one stereo pair; stamp tolerance.
    left_topic: str = ""
    right_topic: str = ""
    stamp_tolerance_s: float = 0.0
    # Real data, self-supervised: pairs held out of training and scored label-free (training/validation.py)
    # every `validate_every` steps. Every holdout_every-th pair (0: none) and the last holdout_last pairs.
    holdout_every: int = 10
    holdout_last: int = 0
    validate_every: int = 100
    # Confidence-guided adaptation: weight of the smooth-L1 loss towards SGBM disparities that pass a
    # left-right check (training/proxy_labels.py); 0 turns it off.
    proxy_weight: float = 0.0
    # Self-supervised photometric term over this many scales (1: full size only; 3: also images pooled
    # by 2 and 4, which averages sensor noise away: training/losses.py).
    photometric_scales: int = 1
    # Real data, self-supervised: "network" resizes every pair to the config's network input, as the node
    # resizes camera images before inference, so that adaptation sees the pixels inference sees (crops are
    # then at most that size); "recorded" keeps the recorded size.
    frame_size: str = "network"
    # Real data, self-supervised: "best" ends the run with the held-out scores' best weights that did not
    # collapse (training/validation.py), the starting ones included; "last": the last step's weights.
    keep_weights: str = "best"
    log_every: int = 20
    image_every: int = 500
    checkpoint_every: int = 200

    def __post_init__(self) -> None:
        if self.textures not in TEXTURES:
            raise ValueError(f"unknown textures {self.textures!r}; choose one of {TEXTURES}")
        if self.frame_size not in FRAME_SIZES:
            raise ValueError(f"unknown frame_size {self.frame_size!r}; choose one of {FRAME_SIZES}")
        if self.keep_weights not in KEEP_WEIGHTS:
            raise ValueError(f"unknown keep_weights {self.keep_weights!r}; choose one of {KEEP_WEIGHTS}")
        if self.mode not in MODES:
            raise ValueError(f"unknown training mode {self.mode!r}; choose one of {MODES}")
        if self.steps <= 0 or self.batch_size <= 0:
            raise ValueError("steps and batch_size must be positive")
        if min(self.holdout_every, self.holdout_last, self.validate_every) < 0 or self.proxy_weight < 0:
            raise ValueError("holdout_every, holdout_last, validate_every and proxy_weight must be >= 0")
        if self.photometric_scales < 1:
            raise ValueError("photometric_scales must be >= 1")
        if not 0.0 <= self.far_scene_prob <= 1.0:
            raise ValueError("far_scene_prob must be in [0, 1]")

    def replace(self, **changes: Any) -> "TrainSettings":
        return dataclasses.replace(self, **changes)


FIELDS = frozenset(f.name for f in dataclasses.fields(TrainSettings))


def settings_from_mapping(values: dict[str, Any], base: TrainSettings | None = None, where: str = "") -> TrainSettings:
    """TrainSettings fields from a mapping (YAML); `crop: [H, W]` allowed; unknown keys are an error."""
    values = dict(values)
    if "crop" in values:
        crop = values.pop("crop")
        if not (isinstance(crop, (list, tuple)) and len(crop) == 2):
            raise ValueError(f"{where}crop must be [height, width], not {crop!r}")
        values["crop_height"], values["crop_width"] = int(crop[0]), int(crop[1])
    unknown = set(values) - FIELDS
    if unknown:
        raise ValueError(f"{where}unknown training settings {sorted(unknown)}; known: {sorted(FIELDS)}")
    return (base or TrainSettings()).replace(**values)


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml
    values = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of settings")
    return values


def load_schedule(path: str | Path, base: TrainSettings) -> list[TrainSettings]:
    """The stages of a schedule file, each on top of `base` and the file's own defaults."""
    values = load_yaml(path)
    stages = values.pop("stages", None)
    if not isinstance(stages, list) or not stages:
        raise ValueError(f"{path}: needs a non-empty list `stages`")
    defaults = settings_from_mapping(values, base, f"{path}: ")
    return [settings_from_mapping(stage or {}, defaults, f"{path}: stage {i}: ") for i, stage in enumerate(stages)]


def stage_bounds(stages: list[TrainSettings]) -> list[tuple[int, int]]:
    """[start, end) global steps of each stage."""
    bounds, start = [], 0
    for stage in stages:
        bounds.append((start, start + stage.steps))
        start += stage.steps
    return bounds


def start_weights(weights: str) -> dict[str, str]:
    """`--weights`: a shipped config name (tiny, fast, ...) or a .safetensors file -> the `config` and
    `init_weights` fields that start a fine-tuning run from them."""
    from ..artifacts.weights import load_model, shipped_weights  # noqa: PLC0415 (torch only when asked)
    shipped = None if weights.endswith(".safetensors") else shipped_weights(weights)
    if shipped is not None:
        return {"config": weights, "init_weights": str(shipped)}
    if not weights.endswith(".safetensors"):
        raise ValueError(f"--weights {weights!r}: neither shipped weights (ros2_stereo_depth/weights/) "
                         "nor a .safetensors file")
    return {"config": load_model(weights=weights).config.name, "init_weights": weights}
