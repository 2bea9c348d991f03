"""The learning rate: a pure function of the step and the stage plan, so a resumed run needs no state.

Within a stage [start, end): linear warmup over min(warmup_steps, steps // 10) steps, then a cosine from
`lr` down to `lr * final_lr_factor` at the stage's last step.

Extending a run: resume with more steps (`--steps`, or a longer stage in the schedule file) and the cosine
is stretched over the new length, i.e. the remaining steps follow exactly the schedule of a run planned
with that length from the start. Resuming at step k of a stage now planned for S steps continues at
lr(k; S): e.g. a finished 1000-step run extended to 2000 steps continues at about half the peak lr (the middle of
the stretched cosine) and decays to the final lr at step 2000. Resuming with the same plan is exact.
"""
from __future__ import annotations

import math


def learning_rate(step: int, start: int, end: int, lr: float, final_lr_factor: float, warmup_steps: int) -> float:
    """lr for global `step` in the stage [start, end)."""
    steps = end - start
    local = min(max(step - start, 0), steps - 1)
    warmup = min(warmup_steps, steps // 10)
    final = lr * final_lr_factor
    progress = local / max(steps - 1, 1)
    value = final + (lr - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if local < warmup:
        value *= (local + 1) / (warmup + 1)
    return value
