"""Exact-time synchronisation: late arrivals keep stamp order, so eviction drops the oldest stamp."""
from __future__ import annotations

from types import SimpleNamespace

from ros2_stereo_depth.ros.sync import ExactTimeSync


def msg(ns: int) -> SimpleNamespace:
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=0, nanosec=ns)), ns=ns)


def test_late_arrival_is_kept_in_stamp_order() -> None:
    sets: list[list[int]] = []
    sync = ExactTimeSync(["left", "right"], queue_size=2, callback=lambda s: sets.append([m.ns for m in s]))
    sync.add(0, msg(30))
    sync.add(0, msg(10))  # arrives late: older than what is pending
    assert list(sync.pending) == [10, 30]
    sync.add(0, msg(40))  # overflow: the OLDEST stamp goes, not the first to arrive
    assert list(sync.pending) == [30, 40] and sync.dropped == 1
    sync.add(1, msg(30))
    assert sets == [[30, 30]] and list(sync.pending) == [40] and sync.dropped == 1
    sync.add(1, msg(20))  # late again, behind 40
    assert list(sync.pending) == [20, 40]
    sync.add(0, msg(20))  # completing 20 keeps 40: only older sets are dropped
    assert sets[-1] == [20, 20] and list(sync.pending) == [40] and sync.dropped == 1
