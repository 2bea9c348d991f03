"""Approximate-time synchronisation of N topics (stereo_image_proc's `approximate_sync`), without
message_filters.

Each topic keeps its newest `queue_size` messages in stamp order. While every topic has one, the set
is formed around the newest of the oldest messages (the pivot): each topic advances to its message
nearest the pivot, and the set is emitted when its stamps span at most `tolerance_s`; otherwise the
oldest message is given up (counted in `dropped`) and the search goes on. tolerance_s = 0 means no
bound (stereo_image_proc's default: message_filters' ApproximateTime without a maximum interval).
Same interface as ExactTimeSync.
"""
from __future__ import annotations

import bisect
import threading
from typing import Any, Callable, Sequence

from .sync import stamp_key


class ApproximateTimeSync:
    def __init__(self, topics: Sequence[str], queue_size: int, callback: Callable[[list[Any]], None],
                 tolerance_s: float = 0.0) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, not {queue_size}")
        self.topics = list(topics)
        self.queue_size = queue_size
        self.callback = callback
        self.tolerance_ns = int(round(tolerance_s * 1e9)) if tolerance_s > 0 else None
        self.queues: list[list[tuple[int, Any]]] = [[] for _ in self.topics]  # (stamp ns, msg), stamp order
        self.dropped = 0  # messages given up without a partner
        self.received = [0] * len(self.topics)
        self.lock = threading.Lock()

    def add(self, index: int, msg: Any) -> None:
        sets = []
        with self.lock:
            self.received[index] += 1
            queue = self.queues[index]
            bisect.insort(queue, (stamp_key(msg), msg), key=lambda item: item[0])
            if len(queue) > self.queue_size:
                del queue[0]
                self.dropped += 1
            while all(self.queues):
                pivot = max(q[0][0] for q in self.queues)
                for q in self.queues:  # later messages nearer the pivot replace earlier ones
                    while len(q) > 1 and abs(q[1][0] - pivot) <= abs(q[0][0] - pivot):
                        del q[0]
                        self.dropped += 1
                stamps = [q[0][0] for q in self.queues]
                if self.tolerance_ns is not None and max(stamps) - min(stamps) > self.tolerance_ns:
                    oldest = min(range(len(stamps)), key=stamps.__getitem__)
                    del self.queues[oldest][0]
                    self.dropped += 1
                    continue
                sets.append([q.pop(0)[1] for q in self.queues])
        for complete in sets:
            self.callback(complete)  # outside the lock: the callback may be slow
