"""Inference-only copies of a trained network, for the backends that run it in PyTorch or export it.

* `fold_batchnorm`: each batch norm folded into the convolution before it. In eval mode a batch norm is
  a per-channel scale and shift, so it can live in the convolution's weights and bias: one kernel
  instead of two per layer. On a GPU, where this network's time is a few hundred small kernels rather
  than arithmetic, that matters; ONNX Runtime and TensorRT fold these themselves.
* `half_precision_net` (a copy) / `half_stages` (in place, on an inference copy): the fp16 split of the
  fp16 ONNX graph and of the torch backend on CUDA. The feature CNN, cost volume and 3D aggregation run
  in fp16; softmax/soft-argmin (regression.py casts to float) and the 2D refinement stay fp32, because
  fp16 has a 1/16 px step above 64 px and a softmax over D/4 bins loses the sub-pixel part. Explicit
  casts at the stage boundaries, rather than autocast's cast before every layer.
* `channels_last_net`: every convolution in the channels-last layout, its weights and its input. cuDNN's
  fast convolution kernels are NHWC; given NCHW tensors it transposes in and out of each convolution
  (106 of the 275 GPU operations of a `fast` 640x480 frame on an H100, 0.32 ms).

None of these copies can be trained (no batch norms left; half weights): adaptation keeps the original.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, TypeVar

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .stereo_net import StereoNet

_CONVS = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORMS = (nn.BatchNorm2d, nn.BatchNorm3d)
Net = TypeVar("Net", bound=nn.Module)


def fold_batchnorm(net: Net) -> Net:
    """An eval-mode copy of `net` in which every (convolution, batch norm) pair that follows each other in
    an nn.Sequential is one convolution with a bias; `net` itself is left untouched."""
    folded = copy.deepcopy(net).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, norm = module._modules[first], module._modules[second]
            if isinstance(conv, _CONVS) and isinstance(norm, _NORMS):
                transpose = isinstance(conv, (nn.ConvTranspose2d, nn.ConvTranspose3d))
                module._modules[first] = fuse_conv_bn_eval(conv, norm, transpose=transpose)
                module._modules[second] = nn.Identity()
    return folded


def count_batchnorms(net: nn.Module) -> int:
    return sum(isinstance(m, _NORMS) for m in net.modules())


# Stages of StereoNet that run in fp16 in the fp16 copy (attribute names on StereoNet).
HALF_STAGES = ("features", "cost_volume", "aggregation")


class _HalfStage(torch.nn.Module):
    """Runs a stage in fp16: casts its tensor inputs to half (the Casts TensorRT sees)."""

    def __init__(self, stage: torch.nn.Module) -> None:
        super().__init__()
        self.stage = stage.half()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.stage(*(x.half() for x in inputs))  # type: ignore[no-any-return]


def half_precision_net(net: StereoNet) -> StereoNet:
    """A copy of `net` whose HALF_STAGES run in fp16; regression and refinement stay fp32; `net` itself is
    left untouched."""
    return half_stages(copy.deepcopy(net))


def half_stages(net: StereoNet) -> StereoNet:
    """`net` itself (an inference copy, e.g. `fold_batchnorm`'s), in eval mode with its HALF_STAGES in fp16.
    StereoNet.forward is reused unchanged: it calls the stages by attribute."""
    net.eval()
    for name in HALF_STAGES:
        setattr(net, name, _HalfStage(getattr(net, name)))
    return net


def _layout(tensor: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if tensor.dim() == 4 else torch.channels_last_3d


def _input_in_layout(layout: torch.memory_format) -> Callable[[nn.Module, tuple[Any, ...]], tuple[Any, ...]]:
    def convert(_module: nn.Module, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
        # A no-op for an input already channels-last: the convolution before it left it so.
        return (inputs[0].contiguous(memory_format=layout), *inputs[1:])
    return convert


def channels_last_net(net: Net) -> Net:
    """`net` itself (an inference copy), its convolutions' weights and inputs made channels-last (NHWC,
    NDHWC). A forward pre-hook per convolution rather than a conversion at the stage boundaries: some 3D
    operations hand back NCDHW tensors, and under a CUDA graph the hooks cost nothing."""
    for module in net.modules():
        if isinstance(module, _CONVS):
            layout = _layout(module.weight)
            module.weight.data = module.weight.data.contiguous(memory_format=layout)
            module.register_forward_pre_hook(_input_in_layout(layout))
    return net
