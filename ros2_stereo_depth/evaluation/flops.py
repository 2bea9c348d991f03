"""The network's arithmetic per config and input size, and the Jetson Orin time it implies (an ESTIMATE).

FLOPs come from torch.utils.flop_counter on the real forward pass (convolutions, transposed
convolutions and matrix products; element-wise ops, softmax and the cost-volume correlation's
multiply-adds expressed as element-wise products are not counted, so this is a lower bound on work).
The estimate divides the FLOPs by a published peak times an assumed utilisation range; it is not a
measurement and says so wherever it is printed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Device:
    name: str
    fp16_dense_tflops: float  # tensor cores, dense (half the "sparse" figure NVIDIA headlines)
    source: str


# NVIDIA Jetson AGX Orin Series Technical Brief v1.2: GPU 170 sparse INT8 TOPS -> 85 dense INT8,
# FP16 on Ampere tensor cores at half the INT8 rate -> 42.5 dense FP16 TFLOPS. Orin Nano Super
# (JetPack 6.1 clocks): 67 sparse INT8 TOPS, all on the GPU (no DLA) -> 16.75 dense FP16 TFLOPS.
ORIN = (
    Device("Jetson AGX Orin 64GB (MAXN)", 42.5, "170 sparse INT8 TOPS (technical brief) / 2 (dense) / 2 (FP16)"),
    Device("Jetson Orin Nano 8GB Super", 16.75, "67 sparse INT8 TOPS (datasheet) / 2 (dense) / 2 (FP16)"),
)
# ASSUMED, not measured: small-channel 3D convolutions (8..64 channels) keep tensor cores far from
# peak. Replace with the utilisation of the first Jetson run (measured ms x peak / FLOPs).
UTILISATION = (0.10, 0.30)


def count_flops(config: str, size: tuple[int, int], max_disparity: int) -> dict[str, Any]:
    """FLOPs (2 per multiply-add) of one forward pass at `size` (width, height), total and per op."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..artifacts.weights import load_model

    net = load_model(config, None, max_disparity, height=size[1], width=size[0]).net.eval()
    x = torch.zeros(1, 3, size[1], size[0])
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x, x)
    total = counter.get_total_flops()
    by_op = {str(op).split(".", 1)[-1]: n
             for op, n in counter.get_flop_counts().get("Global", {}).items()}
    modules = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()
               if name.count(".") == 2}  # e.g. StereoNet.aggregation.hourglass: one level below the net
    return {"config": config, "size": f"{size[0]}x{size[1]}", "max_disparity": max_disparity,
            "gflops": total / 1e9, "by_op_gflops": {k: v / 1e9 for k, v in by_op.items()},
            "by_module_gflops": {k: v / 1e9 for k, v in sorted(modules.items(), key=lambda kv: -kv[1])}}


def orin_estimate_ms(gflops: float) -> list[dict[str, Any]]:
    """ESTIMATE: time = FLOPs / (dense FP16 peak x utilisation), for the utilisation range above."""
    out = []
    for device in ORIN:
        fast, slow = (gflops / (device.fp16_dense_tflops * 1e3 * u) * 1e3 for u in UTILISATION[::-1])
        out.append({"device": device.name, "estimate_ms_range": (fast, slow), "peak_source": device.source})
    return out
