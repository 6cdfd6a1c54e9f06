"""The shared-memory heartbeat: written by a forked child, read by the parent, no file at all."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from monoceros.heartbeat import Heartbeat


def test_child_beats_are_seen_by_the_parent() -> None:
    hb = Heartbeat()
    start = hb.last_beat()
    assert not hb.is_booted()
    time.sleep(0.02)  # the clock moves on: the child's beat is later than ``start``
    pid = os.fork()
    if pid == 0:  # the worker side
        try:
            hb.booted()
            time.sleep(0.02)
            hb.beat()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert hb.is_booted()
    assert hb.last_beat() > start + 0.03
    assert hb.last_beat() <= time.monotonic()
    hb.close()


def test_heartbeat_opens_no_file() -> None:
    before = set(os.listdir("/proc/self/fd"))
    hb = Heartbeat()
    hb.beat()
    after = set(os.listdir("/proc/self/fd"))
    hb.close()
    assert after == before  # an anonymous mapping: no descriptor, nothing on disk to utime


def _hammer(hb: Heartbeat, seconds: float, read: Callable[[], float]) -> tuple[int, int]:
    """A forked writer beats as fast as it can while this process reads; (bad reads, reads).

    A read is bad when it lies before the last beat the master saw before the writer started
    (a cleared or half-written slot reads as 0.0 or as a mix of old and new bytes) or after the
    clock at the moment it was read (garbage from a torn store).
    """
    hb.booted()
    floor = hb.last_beat()
    pid = os.fork()
    if pid == 0:  # the worker: beat until the time is up
        try:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                for _ in range(1000):
                    hb.beat()
        finally:
            os._exit(0)
    bad = reads = 0
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for _ in range(1000):
                value = read()
                if not floor <= value <= time.monotonic():
                    bad += 1
            reads += 1000
    finally:
        os.waitpid(pid, 0)
    return bad, reads


def test_the_master_never_reads_a_torn_or_cleared_beat() -> None:
    # struct.pack_into memsets its target first: with it, about 1 read in 3,000 saw < floor.
    hb = Heartbeat()
    bad, reads = _hammer(hb, 1.0, hb.last_beat)
    hb.close()
    assert reads > 100_000
    assert bad == 0, f"{bad} bad reads of {reads}"


def test_a_beat_is_one_store_a_plain_load_never_sees_half_of() -> None:
    # Without the master's confirming reads: the worker's store alone must never be torn.
    hb = Heartbeat()
    raw = memoryview(hb._map).cast("d")  # the slot as another process's plain load sees it
    bad, reads = _hammer(hb, 1.0, lambda: float(raw[0]))
    raw.release()
    hb.close()
    assert reads > 100_000
    assert bad == 0, f"{bad} bad reads of {reads}"


def test_a_beat_read_by_the_master_never_goes_backwards() -> None:
    hb = Heartbeat()
    hb.beat()
    seen = hb.last_beat()
    raw = memoryview(hb._map).cast("d")
    raw[0] = 0.0  # what a cleared slot looked like
    assert hb.last_beat() == seen
    raw.release()
    hb.close()


def test_listeners_kept_is_seen_by_the_child_and_survives_beats() -> None:
    hb = Heartbeat()
    assert not hb.listeners_kept()
    pid = os.fork()
    if pid == 0:  # the worker side: boots, waits for the master's word, beats on
        code = 1
        try:
            hb.booted()
            deadline = time.monotonic() + 10
            while not hb.listeners_kept() and time.monotonic() < deadline:
                time.sleep(0.005)
            hb.beat()
            code = 0 if hb.listeners_kept() else 1
        finally:
            os._exit(code)
    hb.keep_listeners()  # the master side, before its TERM
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert hb.listeners_kept() and hb.is_booted()
    hb.close()
