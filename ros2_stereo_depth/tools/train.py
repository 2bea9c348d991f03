"""`stereo-depth train`: supervised or self-supervised training, CPU or CUDA, one or several GPUs.

Several GPUs: `torchrun --nproc_per_node=N -m ros2_stereo_depth train ...` (DistributedDataParallel).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import get_config
from ..data.synthetic import SceneParams, SyntheticStereo
from ..model import StereoNet
from ..pair import StereoPair
from ..training.batches import collate, random_crop
from ..training.checkpoint import load_checkpoint, save_checkpoint
from ..training.losses import supervised_loss
from ..artifacts.weights import load_model, save_weights


@dataclass(frozen=True)
class TrainSettings:
    config: str = "fast"
    data: str = "synthetic"
    data_format: str = "auto"
    mode: str = "supervised"
    steps: int = 1000
    batch_size: int = 4
    crop_height: int = 256
    crop_width: int = 320
    max_disparity: int = 128  # searched during training; weights do not depend on it
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    workers: int = 1
    init_weights: str = ""
    log_every: int = 20
    image_every: int = 500
    checkpoint_every: int = 200


class SyntheticItems(Dataset):
    """SyntheticStereo as StereoPairs; each rank and epoch sees different scenes."""

    def __init__(self, settings: TrainSettings, rank: int) -> None:
        params = SceneParams(settings.crop_height, settings.crop_width,
                             max_disparity_px=float(settings.max_disparity) * 0.95)
        self.source = SyntheticStereo(params, seed=settings.seed * 1000 + rank)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> StereoPair:
        s = self.source[index]
        return StereoPair(s.left, s.right, s.disparity_px, np.ones_like(s.occluded))


class CroppedItems(Dataset):
    """A dataset of real pairs (data/readers.py), randomly cropped to the training size."""

    def __init__(self, items: Dataset, settings: TrainSettings, rank: int) -> None:
        self.items, self.settings, self.rank = items, settings, rank

    def __len__(self) -> int:
        return len(self.items)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> StereoPair:
        # Other crops every epoch, yet reproducible: torch's RNG is seeded per worker and epoch from
        # the loader's seeded generator (in the main process by torch.manual_seed).
        rng = np.random.default_rng([self.settings.seed, self.rank, index, int(torch.randint(0, 2**31 - 1, ()))])
        return random_crop(self.items[index], self.settings.crop_height, self.settings.crop_width, rng)


def open_dataset(settings: TrainSettings, rank: int) -> Dataset:
    if settings.data == "synthetic":
        return SyntheticItems(settings, rank)
    from ..data.readers import open_training_dataset  # noqa: PLC0415 (real formats only when asked)
    return CroppedItems(open_training_dataset(settings.data, settings.data_format, settings.mode), settings, rank)


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return (torch.distributed.get_rank() if world > 1 else 0), world


def train(settings: TrainSettings, out_dir: Path, resume: bool = False, command: str = "") -> Path:
    rank, world = _distributed()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(settings.seed + rank)
    config = get_config(settings.config).with_overrides(max_disparity=settings.max_disparity)
    config.check_size(settings.crop_height, settings.crop_width)
    if settings.init_weights:
        net = load_model(settings.config, settings.init_weights, settings.max_disparity).net
    else:
        net = StereoNet(config)
    net = net.to(device).train()
    model: torch.nn.Module = net
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[local_rank] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.lr, total_steps=settings.steps,
                                                    pct_start=0.05, anneal_strategy="cos", final_div_factor=100)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.safetensors"
    step = 0
    if resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"{ckpt_path}: nothing to resume from")
        step = int(load_checkpoint(ckpt_path, net, optimizer, scheduler)["step"])
        print(f"resumed from {ckpt_path} at step {step}")
    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out_dir / "tensorboard"))
        (out_dir / "settings.json").write_text(json.dumps(asdict(settings), indent=2) + "\n")

    dataset = open_dataset(settings, rank)
    generator = torch.Generator().manual_seed(settings.seed * 7919 + step + rank)
    loader = DataLoader(dataset, batch_size=settings.batch_size, shuffle=True, generator=generator,
                        num_workers=settings.workers, collate_fn=lambda items: collate(items, settings.max_disparity),
                        drop_last=True, persistent_workers=settings.workers > 0)
    from tqdm import tqdm
    progress = tqdm(total=settings.steps, initial=step, disable=rank != 0, desc="train", unit="step",
                    file=sys.stdout, mininterval=5.0)
    started = time.time()
    running = 0.0
    batches = _endless(loader)  # a real dataset runs out after an epoch; synthetic data never does
    while step < settings.steps:
        batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            outputs = model(batch["left"], batch["right"])
            loss = _loss(settings.mode, model, batch, outputs)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        step += 1
        running += float(loss.detach())
        progress.update(1)
        if writer is not None and step % settings.log_every == 0:
            writer.add_scalar("loss/train", running / settings.log_every, step)
            writer.add_scalar("lr", scheduler.get_last_lr()[0], step)
            if "disparity" in batch:
                err = (outputs["disparity"].detach() - batch["disparity"]).abs()[batch["valid"]]
                writer.add_scalar("epe/train", float(err.mean()), step)
                writer.add_scalar("bad2/train", float((err > 2).float().mean()), step)
            progress.set_postfix(loss=f"{running / settings.log_every:.3f}")
            running = 0.0
        if writer is not None and step % settings.image_every == 0:
            scale = 1.0 / settings.max_disparity
            writer.add_images("disparity/pred", (outputs["disparity"][:2].detach().float() * scale).clamp(0, 1), step)
            if "disparity" in batch:
                writer.add_images("disparity/gt", (batch["disparity"][:2] * scale).clamp(0, 1), step)
        if rank == 0 and (step % settings.checkpoint_every == 0 or step == settings.steps):
            save_checkpoint(ckpt_path, net, optimizer, scheduler, step, {"settings": asdict(settings)})
    progress.close()
    seconds = time.time() - started
    final = out_dir / f"{settings.config}.safetensors"
    if rank == 0:
        hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
        save_weights(net.cpu().eval(), final, {
            "command": command, "settings": asdict(settings), "steps": step, "world_size": world,
            "hardware": hardware, "train_seconds_this_run": round(seconds, 1), "torch": torch.__version__,
        })
        writer.close()  # type: ignore[union-attr]
        print(f"wrote {final} after {step} steps ({seconds / 60:.1f} min this run)")
    return final


def _endless(loader: DataLoader) -> Iterator[dict[str, torch.Tensor]]:
    while True:
        yield from loader


def _loss(mode: str, model: torch.nn.Module, batch: dict[str, torch.Tensor],
          outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    if mode == "supervised":
        if "disparity" not in batch:
            raise ValueError("supervised training needs ground-truth disparity; use --mode self-supervised")
        return supervised_loss({k: v.float() for k, v in outputs.items()}, batch["disparity"], batch["valid"])
    from ..training.losses import self_supervised_loss
    return self_supervised_loss(model, batch["left"], batch["right"], outputs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainSettings()
    parser.add_argument("--config", default=d.config, help="network config (tiny, fast, accurate)")
    parser.add_argument("--data", default=d.data, help="'synthetic' or a dataset directory")
    parser.add_argument("--format", dest="data_format", default=d.data_format,
                        help="dataset format for a directory (see data/readers.py); auto-detected by default")
    parser.add_argument("--mode", default=d.mode, choices=["supervised", "self-supervised"])
    parser.add_argument("--steps", type=int, default=d.steps)
    parser.add_argument("--out", required=True, help="run directory (checkpoints, TensorBoard, final weights)")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.safetensors")
    parser.add_argument("--settings", help="YAML file of TrainSettings fields; flags given explicitly win")
    for name in ("batch_size", "crop_height", "crop_width", "max_disparity", "seed", "workers"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--init-weights", default=None, help="start from these safetensors weights (fine-tuning)")


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    values: dict[str, object] = {}
    if args.settings:
        import yaml
        values.update(yaml.safe_load(Path(args.settings).read_text()) or {})
    for field in TrainSettings.__dataclass_fields__:
        value = getattr(args, field, None)
        if value is not None:
            values[field] = value
    return TrainSettings(**values)  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    command = "stereo-depth " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    train(settings, Path(args.out), args.resume, command)
    return 0
