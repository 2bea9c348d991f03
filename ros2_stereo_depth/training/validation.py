"""Held-out frames of a recording, scored without labels while training runs.

Self-supervised training on real data (a bag, a folder of pairs) keeps some pairs out of training:
every `holdout_every`-th pair (indices k-1, 2k-1, ...: a one-pair set keeps its pair) and the last
`holdout_last` pairs. They are scored with the label-free report (evaluation/label_free.py:
photometric error over visible pixels, left-right consistency) at step 0, every `validate_every`
steps and at the end; each score is one log line, TensorBoard scalars `label_free/*` and a row of
RUN/validation.json. With nothing held out (test-time adaptation on the pairs themselves) the
training pairs are scored instead, and the JSON says so.

Which weights a run keeps (`keep_weights="best"`, the default): of the scores taken in this process, the
one with the lowest photometric error among those whose disparity spread is at least COLLAPSE_FRACTION of
step 0's. A run that diverges (the error rises) or collapses towards one disparity everywhere (the error
can fall while the depth range vanishes: measured on weak texture with camera noise) then ends with the
weights it had before, step 0's included, and says so. It guards against the failures the label-free
scores can see; it cannot tell a depth that got slightly worse from one that got better.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..evaluation.label_free import label_free_report
from ..inference.base import StereoResult, infer_at_image_size
from ..model import StereoNet
from ..normalisation import normalise
from ..pair import StereoPair

VALIDATION_FILE = "validation.json"
# A score whose disparity spread fell below this share of step 0's is a collapse, never kept. Measured:
# collapsed runs kept 3-6 % of their spread; runs that improved the depth kept 52-98 %.
COLLAPSE_FRACTION = 0.25


def keeps_depth_range(row: dict[str, float], reference: dict[str, float]) -> bool:
    """Not a collapse: `row`'s disparity spread is at least COLLAPSE_FRACTION of `reference`'s (label-free
    scores of the same pairs, the reference from the weights training started with)."""
    return row["disparity_spread_px"] >= COLLAPSE_FRACTION * reference.get("disparity_spread_px", 0.0)


def split_holdout(count: int, holdout_every: int, holdout_last: int) -> tuple[list[int], list[int]]:
    """(training indices, held-out indices) of `count` pairs."""
    held = {i for i in range(count) if holdout_every and i % holdout_every == holdout_every - 1}
    held |= set(range(max(0, count - holdout_last), count))
    if len(held) == count:
        raise ValueError(f"all {count} pairs would be held out (holdout_every {holdout_every}, "
                         f"holdout_last {holdout_last}); nothing is left to train on")
    return [i for i in range(count) if i not in held], sorted(held)


class NetBackend:
    """The network being trained as an inference backend (base.StereoBackend), at the size of the frames
    rounded down to the network's multiple, so that held-out frames go through the node's resize policy."""

    name = "torch"

    def __init__(self, net: StereoNet, device: torch.device, image_height: int, image_width: int) -> None:
        m = net.config.size_multiple
        self.net, self.device = net, str(device)
        self.height, self.width = max(m, image_height // m * m), max(m, image_width // m * m)
        self.max_disparity = net.config.max_disparity
        net.config.check_size(self.height, self.width)

    @torch.no_grad()
    def infer(self, left_rgb: np.ndarray, right_rgb: np.ndarray) -> StereoResult:
        to = torch.device(self.device)
        out = self.net(torch.from_numpy(normalise(left_rgb)).to(to), torch.from_numpy(normalise(right_rgb)).to(to))
        return StereoResult(out["disparity"][0, 0].float().cpu().numpy(), out["confidence"][0, 0].float().cpu().numpy())


def score(net: StereoNet, pairs: list[StereoPair], device: torch.device) -> dict[str, float]:
    """The label-free report of `net` (eval mode for the call, then back to its mode) on `pairs`."""
    was_training = net.training
    net.eval()
    try:
        h, w = pairs[0].left.shape[:2]
        backend = NetBackend(net, device, h, w)
        report = label_free_report(lambda l, r: infer_at_image_size(backend, l, r).disparity_px, pairs)
    finally:
        net.train(was_training)
    return asdict(report)


class HeldOutValidation:
    """Scores the held-out pairs and records the scores (log line, TensorBoard, RUN/validation.json)."""

    def __init__(self, pairs: list[StereoPair], held_out: bool, every: int, out_dir: Path, writer: Any,
                 resume: bool = False) -> None:
        self.pairs, self.every, self.writer, self.held_out = pairs, every, writer, held_out
        self.path = out_dir / VALIDATION_FILE
        # A resumed run appends to its scores; a new run in the same folder starts its own (reading an
        # earlier run's rows skipped every step they had scored and compared with their step 0).
        previous = json.loads(self.path.read_text()) if resume and self.path.is_file() else {}
        self.rows: list[dict[str, float]] = previous.get("scores", [])
        # (score, weights) of the best eligible score taken in this process (a resumed run cannot go
        # back to weights from before the resume)
        self.best: tuple[dict[str, float], dict[str, torch.Tensor]] | None = None
        self.what = ("held-out pairs (not trained on)" if held_out
                     else "the training pairs themselves (nothing held out: test-time adaptation)")

    def due(self, step: int, final: bool = False) -> bool:
        """Step 0, every `every` steps and the final step, each once (also across a resume)."""
        if any(row["step"] == step for row in self.rows):
            return False
        return final or step == 0 or bool(self.every and step % self.every == 0)

    def __call__(self, net: StereoNet, device: torch.device, step: int) -> dict[str, float]:
        row = {"step": step, **score(net, self.pairs, device)}
        self.rows.append(row)
        first = self.rows[0]
        if self.eligible(row) and (self.best is None or row["photometric"] < self.best[0]["photometric"]):
            self.best = (row, {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()})
        change = 100.0 * (row["photometric"] / first["photometric"] - 1.0) if first["photometric"] else 0.0
        print(f"step {step}: label-free on {row['pairs']} {'held-out' if self.held_out else 'training'} "
              f"pairs: photometric {row['photometric']:.4f} ({change:+.1f} % since step {first['step']}), "
              f"LR consistency {row['lr_consistency_px']:.3f} px, visible {100 * row['visible_fraction']:.1f} %, "
              f"disparity spread {row['disparity_spread_px']:.1f} px", flush=True)
        if self.writer is not None:
            for key in ("photometric", "lr_consistency_px", "visible_fraction", "disparity_spread_px"):
                self.writer.add_scalar(f"label_free/{key}", row[key], step)
        self.write()
        return row

    def eligible(self, row: dict[str, float]) -> bool:
        """Not a collapse against step 0's score."""
        return keeps_depth_range(row, self.rows[0])

    def keep_best(self, net: StereoNet) -> int | None:
        """Load the best eligible weights into `net` when they are not the last scored ones; returns their
        step then (recorded in the JSON as kept_step), None when the last weights stand."""
        if self.best is None or self.best[0] is self.rows[-1]:
            return None
        row, state = self.best
        net.load_state_dict(state)
        self.write(kept_step=row["step"])
        return int(row["step"])

    def write(self, **extra: Any) -> None:
        self.path.write_text(json.dumps({"evaluated_on": self.what, "pairs": len(self.pairs), **extra,
                                         "scores": self.rows}, indent=2) + "\n")

