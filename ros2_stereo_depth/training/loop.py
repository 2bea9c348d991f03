"""The training loop: stages, one or several processes, mixed precision on CUDA, checkpoints, resume.

Resume (`resume=True`) restores weights, AdamW moments, the AMP scaler and the global step from
RUN/checkpoint.safetensors; samples, crops and the learning rate are functions of the step
(training/datasets.py, training/lr_schedule.py), so a resumed run continues exactly where it stopped,
also in the middle of a stage. Ctrl-C (SIGINT) or SIGTERM: the step in progress finishes, a checkpoint
is written and one line tells how to resume.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import get_config
from ..evaluation.metrics import disparity_metrics, pool_metrics
from ..model import StereoNet
from ..artifacts.weights import load_model, save_weights
from .checkpoint import load_checkpoint, save_checkpoint
from .datasets import holds_out, open_real_items, step_loader
from .distributed import Process, StopRequest, barrier, end_process, start_process, wrap
from .losses import self_supervised_loss, supervised_loss
from .lr_schedule import learning_rate
from .proxy_labels import proxy_batch
from .settings import TrainSettings, stage_bounds
from .validation import HeldOutValidation, split_holdout

CHECKPOINT = "checkpoint.safetensors"


@dataclass
class TrainResult:
    weights: Path
    step: int  # global step reached
    interrupted: bool  # stopped by a signal or stop_at before the planned end
    losses: list[float] = field(default_factory=list)  # this process, this run, one per step
    learning_rates: list[float] = field(default_factory=list)  # the same steps
    validation: list[dict[str, float]] = field(default_factory=list)  # label-free scores, RUN/validation.json


def train(stages: list[TrainSettings], out_dir: Path, resume: bool = False, command: str = "",
          stop_at: int | None = None) -> TrainResult:
    """Run the stages (one per TrainSettings) into out_dir. stop_at: stop with a checkpoint at this global
    step although the plan (learning rate) goes on: a time slice of a longer run."""
    if len({s.config for s in stages}) != 1:
        raise ValueError("all stages must train the same config")
    process = start_process()
    try:
        return _train(stages, out_dir, resume, command, stop_at, process)
    finally:
        end_process(process)


def _initial_net(settings: TrainSettings) -> StereoNet:
    config = get_config(settings.config).with_overrides(max_disparity=settings.max_disparity)
    if settings.init_weights:
        return load_model(settings.config, settings.init_weights, settings.max_disparity).net
    with torch.random.fork_rng(devices=[]):  # seeded here, without touching the caller's RNG
        torch.manual_seed(settings.seed)
        return StereoNet(config)


def _net_for_stage(net: StereoNet, optimizer: torch.optim.Optimizer, settings: TrainSettings,
                   device: torch.device) -> tuple[StereoNet, torch.optim.Optimizer]:
    """Another search range changes only the cost volume's size: same weights, same optimizer state."""
    config = net.config.with_overrides(max_disparity=settings.max_disparity)
    config.check_size(settings.crop_height, settings.crop_width)
    if config == net.config:
        return net, optimizer
    staged = StereoNet(config).to(device)
    staged.load_state_dict(net.state_dict())
    state = optimizer.state_dict()
    optimizer = torch.optim.AdamW(staged.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    optimizer.load_state_dict(state)  # by parameter index: the same parameters in the same order
    return staged.train(), optimizer


def _train(stages: list[TrainSettings], out_dir: Path, resume: bool, command: str, stop_at: int | None,
           process: Process) -> TrainResult:
    first = stages[0]
    if first.threads:
        torch.set_num_threads(first.threads)
    bounds = stage_bounds(stages)
    total = bounds[-1][1]
    device = process.device
    net = _initial_net(first).to(device).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=first.lr, weight_decay=first.weight_decay)
    use_amp = device.type == "cuda"
    if use_amp:
        torch.backends.cudnn.benchmark = True  # fixed crop sizes per stage: pick the fastest kernels once
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / CHECKPOINT
    step = 0
    if resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"{ckpt_path}: nothing to resume from")
        meta = load_checkpoint(ckpt_path, net, optimizer)
        step = int(meta["step"])
        if meta.get("scaler"):
            scaler.load_state_dict(meta["scaler"])
        if process.main:
            print(f"resumed from {ckpt_path} at step {step} of {total}")
    writer = None
    if process.main:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out_dir / "tensorboard"))
        (out_dir / "settings.json").write_text(json.dumps({"stages": [asdict(s) for s in stages]}, indent=2) + "\n")
    validation = _validation(stages[-1], out_dir, writer, resume) if process.main else None

    def validate(final: bool = False) -> None:
        if validation is not None and validation.due(step, final):
            validation(net, next(net.parameters()).device, step)  # the final weights are on the CPU

    def checkpoint(stage_index: int) -> None:
        if process.main:
            save_checkpoint(ckpt_path, net, optimizer, step, {
                "stage": stage_index, "scaler": scaler.state_dict() if use_amp else None,
                "stages": [asdict(s) for s in stages]})

    from tqdm import tqdm
    progress = tqdm(total=total, initial=step, disable=not process.main, desc="train", unit="step",
                    file=sys.stdout, mininterval=5.0)
    started = time.time()
    losses: list[float] = []
    learning_rates: list[float] = []
    stage_index = 0
    stopped = False
    validate()
    with StopRequest() as stop:
        for stage_index, (settings, (start, end)) in enumerate(zip(stages, bounds)):
            until = end if stop_at is None else min(end, stop_at)
            if step >= until:
                continue
            net, optimizer = _net_for_stage(net, optimizer, settings, device)
            model = wrap(net, process)
            for batch in step_loader(settings, stage_index, step, until, process.rank, process.world):
                lr = learning_rate(step, start, end, settings.lr, settings.final_lr_factor, settings.warmup_steps)
                for group in optimizer.param_groups:
                    group["lr"], group["weight_decay"] = lr, settings.weight_decay
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                    outputs = model(batch["left"], batch["right"])
                    loss = _loss(settings, model, batch, outputs)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                scaler.step(optimizer)
                scaler.update()
                step += 1
                losses.append(float(loss.detach()))
                learning_rates.append(lr)
                progress.update(1)
                if writer is not None:
                    _log(writer, settings, step, lr, losses, batch, outputs, progress)
                if step % settings.checkpoint_every == 0:
                    checkpoint(stage_index)
                if step < total:  # the last step's score comes after the loop, on the final weights
                    validate()
                if stop.agreed(process):
                    stopped = True
                    break
            if stopped or step < end:
                break
    progress.close()
    checkpoint(stage_index)
    barrier(process)
    seconds = time.time() - started
    final = out_dir / f"{first.config}.safetensors"
    interrupted = step < total
    if process.main:
        hardware = (torch.cuda.get_device_name(device) if device.type == "cuda"
                    else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads")
        info = {"command": command, "stages": [asdict(s) for s in stages], "steps": step, "planned_steps": total,
                "world_size": process.world, "hardware": hardware, "train_seconds_this_run": round(seconds, 1),
                "torch": torch.__version__}
        if any(s.data == "synthetic" and s.textures == "photos" for s in stages):
            from ..data.textures import texture_record
            info["texture_files"] = texture_record()
        save_weights(net.cpu().eval(), final, info)
        validate(final=True)  # after the weights are safe: scoring many held-out pairs can take a while
        kept = validation.keep_best(net) if validation is not None and stages[-1].keep_weights == "best" else None
        if kept is not None:
            save_weights(net.eval(), final, {**info, "kept_step": kept})
            scored = "held-out" if validation is not None and validation.held_out else "training (nothing held out)"
            print(f"kept the weights of step {kept}: the {scored} pairs scored best there (lowest photometric "
                  f"error without a collapse of the disparity spread); --keep-weights last keeps step {step}'s")
        writer.close()  # type: ignore[union-attr]
        if interrupted:
            again = command if "--resume" in command.split() else f"{command} --resume"
            print(f"stopped at step {step} of {total}, checkpoint {ckpt_path}; resume with: {again}")
        else:
            print(f"wrote {final} after {step} steps ({seconds / 60:.1f} min this run)")
    return TrainResult(final, step, interrupted, losses, learning_rates, validation.rows if validation else [])


def _validation(settings: TrainSettings, out_dir: Path, writer, resume: bool) -> HeldOutValidation | None:  # noqa: ANN001 (SummaryWriter)
    """Label-free validation on the last stage's held-out pairs; None for synthetic or supervised data."""
    if not holds_out(settings):
        return None
    items = open_real_items(settings)
    training, held = split_holdout(len(items), settings.holdout_every, settings.holdout_last)  # type: ignore[arg-type]
    pairs = [items[i] for i in (held or training)]
    return HeldOutValidation(pairs, bool(held), settings.validate_every, out_dir, writer, resume)


def _loss(settings: TrainSettings, model: torch.nn.Module, batch: dict[str, torch.Tensor],
          outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    if settings.mode == "supervised":
        if "disparity" not in batch:
            raise ValueError("supervised training needs ground-truth disparity; use --mode self-supervised")
        return supervised_loss({k: v.float() for k, v in outputs.items()}, batch["disparity"], batch["valid"])
    loss = self_supervised_loss(model, batch["left"], batch["right"], outputs, settings.photometric_scales)
    if settings.proxy_weight > 0:
        proxy_disparity, kept = proxy_batch(batch["left"], batch["right"], settings.max_disparity)
        loss = loss + settings.proxy_weight * supervised_loss({k: v.float() for k, v in outputs.items()},
                                                              proxy_disparity, kept)
    return loss


def _log(writer, settings: TrainSettings, step: int, lr: float, losses: list[float],  # noqa: ANN001 (SummaryWriter)
         batch: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor], progress) -> None:  # noqa: ANN001 (tqdm)
    if step % settings.log_every == 0:
        loss = float(np.mean(losses[-settings.log_every:]))
        writer.add_scalar("loss/train", loss, step)
        writer.add_scalar("lr", lr, step)
        if "disparity" in batch:
            prediction = outputs["disparity"].detach().float().cpu().numpy()[:, 0]
            gt, valid = batch["disparity"].cpu().numpy()[:, 0], batch["valid"].cpu().numpy()[:, 0]
            per_item = [disparity_metrics(p, g, v) for p, g, v in zip(prediction, gt, valid) if v.any()]
            if per_item:
                pooled = pool_metrics(per_item)
                for key in ("epe", "bad2", "edge_epe"):
                    writer.add_scalar(f"{key}/train", pooled[key], step)
        progress.set_postfix(loss=f"{loss:.3f}")
    if step % settings.image_every == 0:
        scale = 1.0 / settings.max_disparity
        writer.add_images("disparity/pred", (outputs["disparity"][:2].detach().float() * scale).clamp(0, 1), step)
        if "disparity" in batch:
            writer.add_images("disparity/gt", (batch["disparity"][:2] * scale).clamp(0, 1), step)
