"""The shared-memory heartbeat: written by a forked child, read by the parent, no file at all."""

from __future__ import annotations

import os
import time

from monoceros.heartbeat import Heartbeat


def test_child_beats_are_seen_by_the_parent() -> None:
    hb = Heartbeat()
    start = hb.last_beat()
    assert not hb.is_booted()
    time.sleep(0.02)
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
