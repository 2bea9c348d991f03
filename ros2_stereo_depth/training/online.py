"""Online self-supervised adaptation: a running network learns from the frames it sees (no labels).

The inference path `offer`s each processed pair (a reference, no copy: nothing mutates decoded frames)
to a small ring buffer and goes on. A background thread, at most `max_steps_per_s` times a second and
only when a new pair has arrived, takes the newest pair plus a random older one, runs one step of the
self-supervised loss of `stereo-depth train --mode self-supervised` (training/losses.py: SSIM + L1
photometric with occlusion masks, left-right consistency, edge-aware smoothness) on a PRIVATE copy of
the network, then hands a fresh eval copy of the improved weights to `publish`. The inference network
object is never modified: the caller swaps its reference (inference/torch_backend.py `replace_net`), so a
forward pass in progress finishes with the weights it started with, and inference never waits for a
training step. BatchNorm stays in eval mode: running statistics from one or two frames would be noise.
On CUDA the steps run on their own stream (the legacy default stream would serialise with inference's),
and the new weights are complete on the device before they are published.

A guard (`check_every` steps, and before every save): the adapted weights and the ones it started from are
scored label-free on the same recent pairs (training/validation.py, as the training run's held-out pairs).
Adapted weights that explain them worse (higher photometric error: divergence) or that lost most of the
starting weights' disparity spread (a collapse towards one depth, which lowers the photometric error on weak
texture and noise) are replaced by the last weights that passed, and those are published again; after
MAX_FAILED_CHECKS failures in a row adaptation stops on them. A step whose loss is not finite (the last update
broke the network) is a failure too. It sees what the label-free scores see: a
depth that got slightly worse without losing its range passes.

Nothing here knows about ROS; the node (ros/node.py) wires parameters, frames and diagnostics to it.
"""
from __future__ import annotations

import contextlib
import copy
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..artifacts.weights import save_weights
from ..inference.base import resize_to_input
from ..model import StereoNet
from ..normalisation import normalise
from .datasets import resized_pair
from .losses import self_supervised_loss
from .settings import TrainSettings
from .validation import keeps_depth_range, score

FRAMES_KEPT = 8  # ring buffer of recent pairs
LOSS_WINDOW = 50  # steps in the reported mean loss
GRAD_CLIP = 1.0  # as the training loop (training/loop.py)
STOP_TIMEOUT_S = 120.0  # a step of `fast` at 640x480 on a slow CPU takes seconds; wait for it, then save
CHECK_PAIRS = 4  # the newest pairs a check scores (two forward passes each, per network scored)
MAX_FAILED_CHECKS = 3  # in a row: then adaptation stops on the last weights that passed


@dataclass(frozen=True)
class AdaptSettings:
    lr: float = 1e-4
    max_steps_per_s: float = 1.0
    frames_per_step: int = 2  # the newest pair plus (n - 1) older ones from the buffer
    save_path: str = ""  # "" : never saved
    save_every: int = 100  # steps; also saved when stopped
    weight_decay: float = TrainSettings.weight_decay
    photometric_scales: int = 1  # training/losses.py; 3 for noisy cameras
    seed: int = 0  # which older pairs join the newest
    check_every: int = 50  # steps between guard checks (also one before each save); 0: never checked

    def __post_init__(self) -> None:
        if not (self.lr > 0 and math.isfinite(self.lr)) or not self.max_steps_per_s > 0:
            raise ValueError("adaptation lr and max_steps_per_s must be positive")
        if self.check_every < 0:
            raise ValueError("check_every must be >= 0 (0: never checked)")
        if self.frames_per_step < 1 or self.save_every < 1 or self.photometric_scales < 1:
            raise ValueError("frames_per_step, save_every and photometric_scales must be >= 1")
        if self.save_path and Path(self.save_path).suffix != ".safetensors":
            raise ValueError(f"{self.save_path}: adapted weights are written as .safetensors")


@dataclass(frozen=True)
class AdaptStats:
    state: str  # waiting for frames | adapting | stopped | failed: <error>
    steps: int
    swaps: int  # networks handed to `publish`: one per step and one per rollback
    last_loss: float | None  # label-free loss of the last step's batch, before its update
    mean_loss: float | None  # over the last LOSS_WINDOW steps
    mean_step_s: float | None  # one step (forward, right-view pass, backward, update, copy)
    saved_at_step: int  # steps when the weights were last saved; 0: not saved yet
    checks: int  # guard checks run
    rollbacks: int  # failed checks and non-finite losses: the last weights that passed were put back
    last_check: str  # the last check's scores (or the non-finite loss), "" before the first


class OnlineAdapter:
    def __init__(self, net: StereoNet, height: int, width: int, settings: AdaptSettings,
                 publish: Callable[[StereoNet], None], report: Callable[[str], None] | None = None,
                 info: dict[str, Any] | None = None) -> None:
        """net: the inference network (copied, never modified here); height, width: its input size, to
        which offered pairs are resized as inference resizes them. publish(net) makes an improved eval copy
        the inference network; report(text) is told of a failure (the thread then stops adapting).
        info: recorded in the saved weights' sidecar (e.g. which weights it started from)."""
        self.settings = settings
        self.height, self.width = height, width
        self.publish, self.report = publish, report
        self.info = dict(info or {})
        self.net = copy.deepcopy(net).eval().requires_grad_(True)  # private; eval: BatchNorm frozen
        self._start_net = copy.deepcopy(net).eval().requires_grad_(False)  # every check's reference
        self._passed = self._start_net.state_dict()  # the weights a failed check goes back to (never modified)
        self.device = next(self.net.parameters()).device
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        if self._stream is not None:
            self._stream.wait_stream(torch.cuda.current_stream(self.device))  # the copy above is on that one
        # The last networks handed out stay referenced here a while: on CUDA, freeing one while a forward
        # pass enqueued on inference's stream still reads it would let the allocator reuse its memory.
        self._published: deque[StereoNet] = deque(maxlen=2)
        self.optimizer = self._optimizer()
        self._rng = np.random.default_rng(settings.seed)
        self._cond = threading.Condition()  # guards the buffer and the counters below
        self._frames: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=FRAMES_KEPT)
        self._fresh = 0  # pairs offered since the last step
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._state = "waiting for frames"
        self._steps = self._saved_at = 0
        self._swaps = 0  # every step publishes its weights, and so does every rollback
        self._checked_at = self._checks = self._rollbacks = self._failed_in_a_row = 0
        self._last_check = ""
        self._losses: deque[float] = deque(maxlen=LOSS_WINDOW)
        self._step_s: deque[float] = deque(maxlen=LOSS_WINDOW)

    # -- inference side: never blocks beyond a deque append ------------------------------------------
    def offer(self, left_rgb: np.ndarray, right_rgb: np.ndarray) -> None:
        """A pair inference has just used, (H,W,3) uint8 RGB at any size (not modified afterwards)."""
        with self._cond:
            self._frames.append((left_rgb, right_rgb))
            self._fresh += 1
            self._cond.notify()

    # -- the adaptation itself -----------------------------------------------------------------------
    def _tensors(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairs -> normalised (N,3,H,W) left and right at the network input size, on the net's device."""
        sides = []
        for side in (0, 1):
            images = [normalise(resize_to_input(pair[side], self.width, self.height)) for pair in pairs]
            sides.append(torch.from_numpy(np.concatenate(images)).to(self.device))
        return sides[0], sides[1]

    def _batch(self) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """The newest pair and up to frames_per_step - 1 random older ones; None when nothing new arrived."""
        with self._cond:
            if not self._fresh:
                return None
            self._fresh = 0
            frames = list(self._frames)
        older = frames[:-1]
        count = min(self.settings.frames_per_step - 1, len(older))
        picked = [older[int(i)] for i in self._rng.choice(len(older), size=count, replace=False)] if count else []
        return [frames[-1], *picked]

    def label_free_loss(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
        """The self-supervised loss of the current adapted weights on `pairs` (no update): what steps lower."""
        left, right = self._tensors(pairs)
        with torch.no_grad():
            return float(self_supervised_loss(self.net, left, right, self.net(left, right),
                                              self.settings.photometric_scales))

    def step(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]] | None = None) -> float | None:
        """One adaptation step on `pairs` (None: from the buffer; returns None when no new pair arrived),
        then publish the improved weights and save them when due. Returns the batch's loss before the update."""
        pairs = self._batch() if pairs is None else pairs
        if not pairs:
            return None
        started = time.perf_counter()
        with self._on_stream():
            left, right = self._tensors(pairs)
            loss = self_supervised_loss(self.net, left, right, self.net(left, right), self.settings.photometric_scales)
            if not torch.isfinite(loss):  # the last step's weights give NaN or inf: inference runs them now
                with self._cond:
                    self._last_check = f"step {self._steps}: adaptation loss {float(loss.detach())}"
                self._roll_back()
                return float(loss.detach())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), GRAD_CLIP)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)  # no gradients in the copy
        self._hand_out()
        with self._cond:
            self._steps += 1
            self._losses.append(float(loss.detach()))
            self._step_s.append(time.perf_counter() - started)
            check_due = self.settings.check_every and self._steps % self.settings.check_every == 0
            save_due = self.settings.save_path and self._steps % self.settings.save_every == 0
        if check_due:
            self.check()
        if save_due:
            self.save()
        return float(loss.detach())

    def check(self) -> bool:
        """The guard: score the adapted and the starting weights on the newest pairs; True when the adapted
        ones pass (they become the weights to go back to), else put back the last that passed, publish them
        and return False. Call from the adaptation thread or after `stop`."""
        with self._cond:
            frames = list(self._frames)[-CHECK_PAIRS:]
            steps = self._steps
        if not frames:
            return True
        pairs = [resized_pair(left, right, self.width, self.height) for left, right in frames]
        with self._on_stream():
            adapted, start = score(self.net, pairs, self.device), score(self._start_net, pairs, self.device)
            passed = (all(map(math.isfinite, adapted.values())) and adapted["photometric"] <= start["photometric"]
                      and keeps_depth_range(adapted, start))
            if passed:
                self._passed = self._snapshot()
        with self._cond:
            self._checks += 1
            self._checked_at = steps
            self._last_check = (f"step {steps}: photometric {adapted['photometric']:.4f} (start "
                                f"{start['photometric']:.4f}), disparity spread {adapted['disparity_spread_px']:.1f} "
                                f"px (start {start['disparity_spread_px']:.1f})")
            if passed:
                self._failed_in_a_row = 0
        if not passed:
            self._roll_back()
        return passed

    def _roll_back(self) -> None:
        """Put back the weights that last passed a check (the starting ones before any did), with a fresh
        optimiser (its moments led away from them), and publish them."""
        with self._on_stream():
            self.net.load_state_dict(self._passed)
            self.optimizer = self._optimizer()
        self._hand_out()
        with self._cond:
            self._rollbacks += 1
            self._failed_in_a_row += 1

    def _on_stream(self) -> contextlib.AbstractContextManager[Any]:
        """Adaptation's own CUDA stream (nothing on a CPU)."""
        return torch.cuda.stream(self._stream) if self._stream is not None else contextlib.nullcontext()

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.net.state_dict().items()}

    def _optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.net.parameters(), lr=self.settings.lr, weight_decay=self.settings.weight_decay)

    def _hand_out(self) -> None:
        """Publish an eval copy of the current weights (after a step or a rollback)."""
        with self._on_stream():
            net = copy.deepcopy(self.net).requires_grad_(False).eval()
        if self._stream is not None:
            self._stream.synchronize()  # inference reads on another stream: the weights must be there first
        self._published.append(net)
        self.publish(net)
        with self._cond:
            self._swaps += 1

    def save(self, path: str | Path | None = None) -> Path | None:
        """Write the adapted weights (safetensors + sidecar, atomically); path None: settings.save_path.
        Call from the adaptation thread or after `stop` (never during a step). With the guard on, the weights
        are checked first unless the last step was: what is saved has passed a check."""
        path = path or self.settings.save_path
        if not path:
            return None
        with self._cond:
            unchecked = self.settings.check_every and self._steps > self._checked_at
        if unchecked:
            self.check()
        with self._cond:
            steps = self._steps
            mean = float(np.mean(self._losses)) if self._losses else None
            guard = {"checks": self._checks, "rollbacks": self._rollbacks, "last_check": self._last_check}
        written = save_weights(self.net, path, {**self.info, "online_adaptation": {
            "steps": steps, "lr": self.settings.lr, "frames_per_step": self.settings.frames_per_step,
            "photometric_scales": self.settings.photometric_scales, "mean_loss_last_steps": mean,
            "check_every": self.settings.check_every, **guard, "torch": torch.__version__}})
        with self._cond:
            self._saved_at = steps
        return written

    # -- the background thread -----------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            self._stopping = False
            self._state = "waiting for frames" if not self._steps else "adapting"
        self._thread = threading.Thread(target=self._run, name="stereo_depth_adaptation", daemon=True)
        self._thread.start()

    def stop(self) -> Path | None:
        """Stop the thread (the step in progress finishes) and save the weights if steps were made since the
        last save. Returns the saved path, if any."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_S)
            if self._thread.is_alive():
                return None  # still inside a step: saving now would race with it
            self._thread = None
        with self._cond:
            unsaved = self._steps > self._saved_at
            if not self._state.startswith(("failed", "stopped")):
                self._state = "stopped"
        return self.save() if unsaved else None

    def _run(self) -> None:
        period_s = 1.0 / self.settings.max_steps_per_s
        next_start = time.monotonic()
        while True:
            with self._cond:
                # Wait for a new pair and for the rate bound, whichever is later; stop wakes it at once.
                while not self._stopping and (not self._fresh or time.monotonic() < next_start):
                    self._cond.wait(timeout=max(next_start - time.monotonic(), 0.0) if self._fresh else None)
                if self._stopping:
                    return
            next_start = time.monotonic() + period_s
            try:
                self.step()
            except Exception as error:  # noqa: BLE001 - adaptation failing must not stop inference
                text = f"online adaptation stopped after {self._steps} steps: {type(error).__name__}: {error}"
                with self._cond:
                    self._state = f"failed: {type(error).__name__}: {error}"
                if self.report is not None:
                    self.report(text)
                return
            with self._cond:
                given_up = self._failed_in_a_row >= MAX_FAILED_CHECKS
                self._state = (f"stopped: {self._failed_in_a_row} failed checks in a row, on the weights that last "
                               f"passed (last check {self._last_check})") if given_up else "adapting"
                text = f"online adaptation {self._state}"
            if given_up:
                if self.report is not None:
                    self.report(text)
                return

    def stats(self) -> AdaptStats:
        with self._cond:
            losses, step_s = list(self._losses), list(self._step_s)
            return AdaptStats(self._state, self._steps, self._swaps, losses[-1] if losses else None,
                              float(np.mean(losses)) if losses else None,
                              float(np.mean(step_s)) if step_s else None, self._saved_at, self._checks,
                              self._rollbacks, self._last_check)
