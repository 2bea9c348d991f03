"""Exact-time synchronisation of N topics on header.stamp (message_filters is not available).

A set is complete when every topic has delivered a message with the same stamp. Incomplete sets are
kept in a bounded queue (oldest dropped first); completing a set also drops every older incomplete
set, since an exact-time stream never goes back in time. Drops are counted, never silent.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Sequence


def stamp_key(msg: Any) -> int:
    """header.stamp as integer nanoseconds (exact comparison, no float rounding)."""
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class ExactTimeSync:
    def __init__(self, topics: Sequence[str], queue_size: int,
                 callback: Callable[[list[Any]], None]) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, not {queue_size}")
        self.topics = list(topics)
        self.queue_size = queue_size
        self.callback = callback
        self.pending: OrderedDict[int, list[Any]] = OrderedDict()  # stamp -> one slot per topic
        self.dropped = 0  # incomplete sets given up (stale or queue overflow)
        self.received = [0] * len(self.topics)  # messages per topic
        self.duplicates = 0  # a topic sent the same stamp twice: the later message replaces the earlier
        self.lock = threading.Lock()  # callbacks may come from a multi-threaded executor

    def add(self, index: int, msg: Any) -> None:
        key = stamp_key(msg)
        complete = None
        with self.lock:
            self.received[index] += 1
            slots = self.pending.get(key)
            if slots is None:
                newest = next(reversed(self.pending), None)  # before inserting: else it is `key` itself
                slots = self.pending[key] = [None] * len(self.topics)
                if newest is not None and key < newest:
                    self.pending = OrderedDict(sorted(self.pending.items()))  # late arrival: keep stamp order
            if slots[index] is not None:
                self.duplicates += 1
            slots[index] = msg
            if all(s is not None for s in slots):
                complete = slots
                del self.pending[key]
                for old in [k for k in self.pending if k < key]:
                    del self.pending[old]
                    self.dropped += 1
            while len(self.pending) > self.queue_size:
                self.pending.popitem(last=False)
                self.dropped += 1
        if complete is not None:
            self.callback(complete)  # outside the lock: the callback may be slow
