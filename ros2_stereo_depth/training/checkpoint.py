"""Resumable checkpoints as safetensors (model + optimizer tensors) plus a `checkpoint` sidecar (step,
optimizer scalars, settings), written and verified by artifacts/sidecar.py like every other artifact.

No learning-rate scheduler state: the rate is a function of the step (training/lr_schedule.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..artifacts.sidecar import publish, staged, verify_sidecar


def save_checkpoint(path: Path, net: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    step: int, extra: dict[str, Any]) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    state = optimizer.state_dict()
    scalars: dict[str, Any] = {}
    for index, param_state in state["state"].items():
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    with staged(path) as tmp:  # never a half-written checkpoint, never one without its sidecar
        save_file(tensors, str(tmp))
        publish(tmp, path, "checkpoint", {"step": step, "param_groups": state["param_groups"],
                                          "optim_scalars": scalars, **extra})


def load_checkpoint(path: Path, net: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    meta = verify_sidecar(path, "checkpoint")  # the sidecar of this very file (sha256)
    tensors = load_file(str(path))
    net.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    param_state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            param_state.setdefault(int(index), {})[key] = value
    for name, value in meta["optim_scalars"].items():
        index, key = name.split(".", 1)
        param_state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": param_state, "param_groups": meta["param_groups"]})
    return meta
