"""Network weights: safetensors tensors plus a JSON sidecar (artifacts/sidecar.py). Never pickle.

The sidecar records the architecture (config.py: the fields that define the weights), the sha256 of
the tensors and free-form training info. Loading checks the architecture against the config registry:
a mismatch is an error naming the sidecar and config.py. Run-time settings (search range, input size)
are not in the weights: they come from the registry defaults or from the caller.

Shipped weights live in the package (`ros2_stereo_depth/weights/<config>.safetensors`), trained by
`stereo-depth train` on our synthetic data; the sidecar records how.

Which weights and config a request means (`resolve_weights`) needs no torch: the node's ONNX Runtime
path starts from a cached graph without importing torch (about 200 MiB of resident memory).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import config as config_module
from ..config import ModelConfig, architecture_defaults, get_config
from .sidecar import SidecarError, publish, sidecar_path, staged, verify_sidecar

if TYPE_CHECKING:
    import torch

    from ..model import StereoNet

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "weights"
CONFIG_FILE = Path(config_module.__file__).name  # named in mismatch errors


def shipped_weights(config_name: str) -> Path | None:
    path = SHIPPED_DIR / f"{config_name}.safetensors"
    return path if path.is_file() else None


def save_weights(net: StereoNet, path: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Write `path` (.safetensors) and its `.json` sidecar (architecture + free-form training info)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: weights are written as .safetensors")
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with staged(path) as tmp:
        save_file(tensors, str(tmp), metadata={"config": net.config.name})
        publish(tmp, path, "weights", {"config": net.config.name, "architecture": net.config.architecture(),
                                       "info": info or {}})
    return path


@dataclass
class WeightsInfo:
    """Which weights (and the config they are for, with its run-time settings), without the network."""
    config: ModelConfig
    weights_path: Path | None  # None: random initialisation
    weights_sha256: str | None

    @property
    def trained(self) -> bool:
        return self.weights_path is not None


@dataclass
class LoadedModel(WeightsInfo):
    net: StereoNet


def check_architecture(path: Path, meta: dict[str, Any]) -> ModelConfig:
    """The registry config the sidecar names, after checking every architecture field against it."""
    name = str(meta.get("config"))
    try:
        registered = get_config(name)
    except ValueError as error:
        raise SidecarError(f"{sidecar_path(path)}: {error} in {CONFIG_FILE}") from None
    recorded = {**architecture_defaults(), **dict(meta.get("architecture") or {})}
    expected = registered.architecture()
    unknown = sorted(set(recorded) - set(expected))
    differ = [f"{k}: weights {recorded.get(k)!r}, {CONFIG_FILE} {v!r}" for k, v in expected.items()
              if recorded.get(k) != v]
    if unknown or differ:
        raise SidecarError(f"{sidecar_path(path)} does not match config {name!r} in {CONFIG_FILE}: "
                           + "; ".join(differ + [f"unknown field {k}" for k in unknown]))
    return registered


def resolve_weights(config_name: str | None = None, weights: str | Path | None = None,
                    max_disparity: int | None = None, use_shipped: bool = True,
                    height: int | None = None, width: int | None = None) -> WeightsInfo:
    """The weights file and config a request means, checked (sidecar, sha256, architecture, sizes);
    no network is built. Arguments as `load_model`."""
    runtime = {"max_disparity": max_disparity, "height": height, "width": width}
    if weights is None and use_shipped and config_name is not None:
        weights = shipped_weights(config_name)
    if weights is None:
        if config_name is None:
            raise ValueError("give a config name or a weights file")
        return WeightsInfo(get_config(config_name).with_overrides(**runtime), None, None)
    path = Path(weights)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: weights must be a .safetensors file (pickled checkpoints are refused)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    meta = verify_sidecar(path, "weights")
    config = check_architecture(path, meta)
    if config_name is not None and config.name != config_name:
        raise ValueError(f"{path}: weights are for config {config.name!r}, not {config_name!r}")
    return WeightsInfo(config.with_overrides(**runtime), path, str(meta["sha256"]))


def build_model(info: WeightsInfo) -> LoadedModel:
    """The network for resolved weights (random initialisation when there is no file)."""
    from safetensors.torch import load_file

    from ..model import StereoNet

    net = StereoNet(info.config)
    if info.weights_path is not None:
        missing, unexpected = net.load_state_dict(load_file(str(info.weights_path)), strict=False)
        if missing or unexpected:
            raise ValueError(f"{info.weights_path}: weights do not fit config {info.config.name!r} "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return LoadedModel(info.config, info.weights_path, info.weights_sha256, net.eval())


def load_model(config_name: str | None = None, weights: str | Path | None = None,
               max_disparity: int | None = None, use_shipped: bool = True,
               height: int | None = None, width: int | None = None) -> LoadedModel:
    """Build the network. `weights` given: the config its sidecar names (the name must agree if both are
    given). Else the shipped weights for `config_name` if any, else random initialisation.
    max_disparity: the search range (None: the config's default); it changes only the cost volume.
    height, width: the input size it will run at (None: the config's); the search range is checked
    against this width, not the config's default one."""
    return build_model(resolve_weights(config_name, weights, max_disparity, use_shipped, height, width))


def describe(model: WeightsInfo) -> str:
    if model.weights_path is None or model.weights_sha256 is None:
        return (f"config {model.config.name!r} with RANDOM weights: no trained weights found, "
                "disparity will be meaningless")
    return f"config {model.config.name!r}, weights {model.weights_path} (sha256 {model.weights_sha256[:12]})"


def count_parameters(net: "torch.nn.Module") -> int:
    return sum(p.numel() for p in net.parameters())
