"""Named network configurations.

A config fixes everything that changes the shape of the graph, so a weights file plus its config
name is enough to rebuild the network, export it and build an engine from it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelConfig:
    name: str
    feature_channels: int  # channels of the shared 2D features at the cost-volume resolution
    groups: int  # group-wise correlation groups (cost volume channels)
    max_disparity: int  # D at input resolution: disparities 0..D-1 are searched
    downsample: int  # cost-volume resolution is 1/downsample of the input (4 or 8)
    aggregation_channels: int  # base channels of the 3D encoder-decoder
    refine: bool  # full-resolution 2D refinement of the upsampled disparity
    height: int  # default (export / node) input size
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
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(values: dict[str, object]) -> "ModelConfig":
        fields = {f.name for f in dataclasses.fields(ModelConfig)}
        unknown = set(values) - fields
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return ModelConfig(**values)  # type: ignore[arg-type]


CONFIGS: dict[str, ModelConfig] = {
    # Unit tests and the CPU demo on 2 cores.
    "tiny": ModelConfig("tiny", feature_channels=16, groups=4, max_disparity=64, downsample=4,
                        aggregation_channels=8, refine=False, height=192, width=256),
    # The real-time model: 640x480 on a Jetson Orin with TensorRT. A 1/8 cost volume keeps the 3D
    # convolutions cheap; the half-resolution refinement restores the detail.
    "fast": ModelConfig("fast", feature_channels=48, groups=8, max_disparity=192, downsample=8,
                        aggregation_channels=16, refine=True, height=480, width=640),
    # More channels; for desktop GPUs.
    "accurate": ModelConfig("accurate", feature_channels=64, groups=16, max_disparity=192, downsample=4,
                            aggregation_channels=32, refine=True, height=480, width=640),
}


def get_config(name: str) -> ModelConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown config {name!r}; choose one of {sorted(CONFIGS)}") from None
