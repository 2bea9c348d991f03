"""The node's health: counters, throttled problem reports and the /diagnostics status built from them.

No rclpy here (only message types), so it is tested without a node; the node publishes `status()`.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

if TYPE_CHECKING:
    from ..training.online import AdaptStats


class Throttle:
    """True once per key per `period_s` (rclpy's throttle is per call site, which would let one problem
    hide a different one)."""

    def __init__(self, period_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.period_s, self.clock = period_s, clock
        self.last: dict[tuple[str, str], float] = {}

    def __call__(self, key: tuple[str, str]) -> bool:
        now = self.clock()
        if now - self.last.get(key, -np.inf) >= self.period_s:
            self.last[key] = now
            return True
        return False


class Health:
    """Counters shared by the subscription callbacks and the inference worker (one lock)."""

    def __init__(self, topics: Sequence[str], clock: Callable[[], float] = time.monotonic) -> None:
        self.topics = list(topics)
        self.clock = clock
        self.lock = threading.Lock()
        self.received: Counter[str] = Counter()  # messages per input topic, since start
        self.counts: Counter[str] = Counter()  # sets, processed, dropped_busy, idle, failed, ...
        self.refused: Counter[str] = Counter()  # "topic: problem" -> sets refused for it
        self.warnings: Counter[str] = Counter()  # "topic: problem" -> sets processed despite it
        self.latency_s: deque[float] = deque(maxlen=200)  # header stamp -> outputs published
        self.work_s: deque[float] = deque(maxlen=200)  # set complete -> outputs published
        self._period_start = clock()
        self._period_received: Counter[str] = Counter()

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n

    def message(self, topic: str) -> None:
        with self.lock:
            self.received[topic] += 1
            self._period_received[topic] += 1

    def refuse(self, topic: str, problem: str) -> None:
        with self.lock:
            self.refused[f"{topic}: {problem}"] += 1

    def warn(self, topic: str, problem: str) -> None:
        with self.lock:
            self.warnings[f"{topic}: {problem}"] += 1

    def processed(self, latency_s: float, work_s: float) -> None:
        with self.lock:
            self.counts["processed"] += 1
            self.latency_s.append(latency_s)
            self.work_s.append(work_s)

    def status(self, name: str, hardware_id: str, backend: dict[str, str], sync_dropped: int,
               active: bool = True) -> DiagnosticStatus:
        """One status over the period since the previous call: input rates, counters since start,
        latency percentiles; WARN when one side (or nothing) arrived in the period."""
        with self.lock:
            now = self.clock()
            period = max(now - self._period_start, 1e-6)
            rates = {t: self._period_received[t] / period for t in self.topics}
            self._period_start, self._period_received = now, Counter()
            counts, refused, warnings = Counter(self.counts), Counter(self.refused), Counter(self.warnings)
            latency, work = list(self.latency_s), list(self.work_s)
        values = [KeyValue(key=f"rate {t} (Hz)", value=f"{rates[t]:.2f}") for t in self.topics]
        values += [KeyValue(key=f"messages {t}", value=str(self.received[t])) for t in self.topics]
        for key in ("sets", "processed", "dropped_busy", "idle", "failed"):
            values.append(KeyValue(key=key, value=str(counts[key])))
        values.append(KeyValue(key="dropped_unpaired", value=str(sync_dropped)))
        values.append(KeyValue(key="refused", value=str(sum(refused.values()))))
        values += [KeyValue(key=f"refused {why}", value=str(n)) for why, n in sorted(refused.items())]
        values += [KeyValue(key=f"warning {why}", value=str(n)) for why, n in sorted(warnings.items())]
        for label, series in (("latency", latency), ("work", work)):
            for q in (50, 95):
                text = f"{np.percentile(series, q) * 1e3:.1f}" if series else "n/a"
                values.append(KeyValue(key=f"{label} p{q} (ms)", value=text))
        values += [KeyValue(key=k, value=v) for k, v in backend.items()]

        level, message = DiagnosticStatus.OK, "ok"
        left = [t for t in self.topics if t.startswith("left/") and rates[t] > 0]
        right = [t for t in self.topics if t.startswith("right/") and rates[t] > 0]
        if not active:
            message = "inactive"
        elif not left and not right:
            level, message = DiagnosticStatus.WARN, "no input arrives"
        elif len(left) + len(right) < len(self.topics):
            silent = [t for t in self.topics if rates[t] == 0]
            level, message = DiagnosticStatus.WARN, f"no messages on {', '.join(silent)}"
        elif refused:
            message = f"ok; {sum(refused.values())} sets refused since start"
        return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id, values=values)


def adaptation_values(stats: "AdaptStats") -> dict[str, str]:
    """Online adaptation (training/online.py) as /diagnostics key-values."""
    def number(value: float | None, scale: float = 1.0, digits: int = 4) -> str:
        return "n/a" if value is None else f"{value * scale:.{digits}f}"

    return {"adaptation state": stats.state, "adaptation steps": str(stats.steps),
            "adaptation swaps": str(stats.swaps), "adaptation loss last": number(stats.last_loss),
            "adaptation loss mean": number(stats.mean_loss), "adaptation step (ms)": number(stats.mean_step_s, 1e3, 0),
            "adaptation saved at step": str(stats.saved_at_step), "adaptation checks": str(stats.checks),
            "adaptation rollbacks": str(stats.rollbacks), "adaptation last check": stats.last_check or "n/a"}
