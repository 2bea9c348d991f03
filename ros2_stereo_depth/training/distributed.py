"""One or several processes: under `torchrun` (WORLD_SIZE > 1) DistributedDataParallel over gloo on CPU,
NCCL on GPUs; alone, a plain process. Also the stop request (Ctrl-C / SIGTERM) that all processes agree on."""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from types import FrameType

import torch


@dataclass(frozen=True)
class Process:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_process() -> Process:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if world > 1 and not torch.distributed.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return Process(torch.distributed.get_rank() if world > 1 else 0, world, device)


def end_process(process: Process) -> None:
    if process.world > 1 and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def wrap(net: torch.nn.Module, process: Process) -> torch.nn.Module:
    if process.world == 1:
        return net
    ids = [process.device.index] if process.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)


def barrier(process: Process) -> None:
    if process.world > 1:
        torch.distributed.barrier()


class StopRequest:
    """Set by SIGINT / SIGTERM (torchrun forwards Ctrl-C as SIGTERM); the loop checks it after each step.
    A second signal interrupts at once.
    `agreed` makes every process stop at the same step (one all-reduce of a flag)."""

    def __init__(self) -> None:
        self.requested = False
        self.previous: dict[int, object] = {}

    def __enter__(self) -> "StopRequest":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *_: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # a second Ctrl-C: stop now, without the checkpoint
            raise KeyboardInterrupt
        self.requested = True

    def agreed(self, process: Process) -> bool:
        if process.world == 1:
            return self.requested
        flag = torch.tensor([1.0 if self.requested else 0.0], device=process.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item() > 0)
