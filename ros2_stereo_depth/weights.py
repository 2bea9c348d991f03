"""Network weights: safetensors tensors plus a JSON sidecar with the config. Never pickle.

Shipped weights live in the package (`ros2_stereo_depth/weights/<config>.safetensors`), trained by
`stereo-depth train` on our synthetic data; the sidecar records how.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .config import ModelConfig, get_config
from .model import StereoNet

SHIPPED_DIR = Path(__file__).resolve().parent / "weights"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(weights_path: str | Path) -> Path:
    return Path(weights_path).with_suffix(".json")


def shipped_weights(config_name: str) -> Path | None:
    path = SHIPPED_DIR / f"{config_name}.safetensors"
    return path if path.is_file() else None


def save_weights(net: StereoNet, path: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Write `path` (.safetensors) and its `.json` sidecar (config + free-form training info)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(tensors, str(path), metadata={"config": net.config.name})
    meta = {"config": net.config.to_dict(), "info": info or {}}
    sidecar_path(path).write_text(json.dumps(meta, indent=2) + "\n")
    return path


@dataclass
class LoadedModel:
    net: StereoNet
    config: ModelConfig
    weights_path: Path | None  # None: random initialisation
    weights_sha256: str | None

    @property
    def trained(self) -> bool:
        return self.weights_path is not None


def load_model(config_name: str | None = None, weights: str | Path | None = None,
               max_disparity: int | None = None, use_shipped: bool = True) -> LoadedModel:
    """Build the network. `weights` given: its sidecar's config (the name must agree if both are
    given). Else the shipped weights for `config_name` if any, else random initialisation."""
    if weights is None and use_shipped and config_name is not None:
        weights = shipped_weights(config_name)
    if weights is None:
        if config_name is None:
            raise ValueError("give a config name or a weights file")
        config = get_config(config_name).with_overrides(max_disparity=max_disparity)
        net = StereoNet(config).eval()
        return LoadedModel(net, config, None, None)
    path = Path(weights)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: weights must be a .safetensors file (pickled checkpoints are refused)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    meta_path = sidecar_path(path)
    if meta_path.is_file():
        config = ModelConfig.from_dict(json.loads(meta_path.read_text())["config"])
    else:
        config = get_config(config_name or "fast")
    if config_name is not None and config.name != config_name:
        raise ValueError(f"{path}: weights are for config {config.name!r}, not {config_name!r}")
    # max_disparity changes only the size of the cost volume, not the weights.
    config = config.with_overrides(max_disparity=max_disparity)
    net = StereoNet(config)
    state = load_file(str(path))
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit config {config.name!r} "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    net.eval()
    return LoadedModel(net, config, path, sha256_file(path))


def describe(model: LoadedModel) -> str:
    if model.weights_path is None:
        return (f"config {model.config.name!r} with RANDOM weights: no trained weights found, "
                "disparity will be meaningless")
    return f"config {model.config.name!r}, weights {model.weights_path} (sha256 {model.weights_sha256[:12]})"


def count_parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
