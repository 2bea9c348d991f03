"""Named network configurations, their run-time defaults, precision names and tensor names.

A config has two kinds of fields:
* architecture fields define the weights: a weights sidecar records them and loading checks them
  against this registry (a mismatch is an error naming both files);
* run-time settings (RUNTIME_FIELDS: search range and input size) change only the size of the cost
  volume and of the static graph, not the weights. Their defaults are the registry entries below and
  nowhere else; the node, the tools, export and engine names all take them from here.

New architecture fields go at the end with a default: the value weights saved before the field
existed were trained with (an old sidecar without the field is read with that default).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# Run-time settings: not part of the weights.
RUNTIME_FIELDS = ("max_disparity", "height", "width")

# Precision names, one home: a TensorRT engine; an exported ONNX graph; the torch backend on CUDA.
ENGINE_PRECISIONS = ("fp32", "fp16", "int8")
EXPORT_PRECISIONS = ("fp32", "fp16")
TORCH_PRECISIONS = ("fp32", "fp16")

# Tensor names of the exported graph and of every engine built from it.
INPUT_NAMES = ("left", "right")
OUTPUT_NAMES = ("disparity", "confidence")
# ONNX opset of every export (part of the ONNX cache key).
ONNX_OPSET = 17


@dataclass(frozen=True)
class ModelConfig:
    name: str
    # --- architecture (defines the weights) ---
    feature_channels: int  # channels of the shared 2D features at the cost-volume resolution
    groups: int  # group-wise correlation groups (cost volume channels)
    downsample: int  # cost-volume resolution is 1/downsample of the input (4 or 8)
    aggregation_channels: int  # base channels of the 3D encoder-decoder
    refine: bool  # full-resolution 2D refinement of the upsampled disparity
    # --- run-time settings (RUNTIME_FIELDS; defaults: the registry entry) ---
    max_disparity: int  # D at input resolution: disparities 0..D-1 are searched
    height: int  # network input size
    width: int
    upsample: str = "bilinear"  # coarse disparity to refinement/full resolution: bilinear | convex (learned)

    def __post_init__(self) -> None:
        if self.downsample not in (4, 8):
            raise ValueError(f"downsample must be 4 or 8, not {self.downsample}")
        if self.upsample not in ("bilinear", "convex"):
            raise ValueError(f"upsample must be bilinear or convex, not {self.upsample!r}")
        if self.feature_channels % self.groups:
            raise ValueError("feature_channels must be a multiple of groups")
        self.check_size(self.height, self.width, self.max_disparity)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (two 3D stride-2 stages below 1/downsample)."""
        return self.downsample * 4

    def check_size(self, height: int, width: int, max_disparity: int | None = None) -> None:
        m = self.size_multiple
        if height % m or width % m or height <= 0 or width <= 0:
            raise ValueError(f"config {self.name}: input {width}x{height} must be positive multiples of {m}")
        d = self.max_disparity if max_disparity is None else max_disparity
        if d % m or d <= 0:
            raise ValueError(f"config {self.name}: max_disparity {d} must be a positive multiple of {m}")
        if d > width:
            raise ValueError(f"config {self.name}: max_disparity {d} exceeds the input width {width}")

    def with_overrides(self, **changes: object) -> "ModelConfig":
        """Run-time settings changed (None: keep); architecture changes are refused."""
        changes = {k: v for k, v in changes.items() if v is not None}
        architecture = set(changes) - set(RUNTIME_FIELDS)
        if architecture:
            raise ValueError(f"{sorted(architecture)} define the weights: choose another config, not an override")
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def architecture(self) -> dict[str, object]:
        """The fields that define the weights (what a weights sidecar records), name included."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in RUNTIME_FIELDS}

    def runtime(self) -> dict[str, int]:
        return {k: int(getattr(self, k)) for k in RUNTIME_FIELDS}

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(values: dict[str, object]) -> "ModelConfig":
        fields = {f.name for f in dataclasses.fields(ModelConfig)}
        unknown = set(values) - fields
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return ModelConfig(**values)  # type: ignore[arg-type]


def architecture_defaults() -> dict[str, object]:
    """Architecture fields that have a default (added after weights were first shipped)."""
    return {f.name: f.default for f in dataclasses.fields(ModelConfig)
            if f.name not in RUNTIME_FIELDS and f.default is not dataclasses.MISSING}


CONFIGS: dict[str, ModelConfig] = {
    # Unit tests and the CPU demo on 2 cores.
    "tiny": ModelConfig("tiny", feature_channels=16, groups=4, downsample=4, aggregation_channels=8, refine=False,
                        max_disparity=64, height=192, width=256),
    # The real-time model: 640x480 on a Jetson Orin with TensorRT. A 1/8 cost volume keeps the 3D
    # convolutions cheap; the half-resolution refinement restores the detail. Search range 128 px: what
    # the shipped weights were trained with (weights/fast.json, info.settings.max_disparity).
    "fast": ModelConfig("fast", feature_channels=48, groups=8, downsample=8, aggregation_channels=16, refine=True,
                        max_disparity=128, height=480, width=640),
    # More channels, a 1/4 volume and learned (convex) upsampling; for desktop GPUs (no shipped weights yet).
    "accurate": ModelConfig("accurate", feature_channels=64, groups=16, downsample=4, aggregation_channels=32,
                            refine=True, max_disparity=192, height=480, width=640, upsample="convex"),
}


def get_config(name: str) -> ModelConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown config {name!r}; choose one of {sorted(CONFIGS)}") from None
