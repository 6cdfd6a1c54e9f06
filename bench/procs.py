"""Processes the benchmark starts: each in its own process group, waited for, stopped by group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import procstat


class StartError(Exception):
    """A process did not come up (exited, or not listening in time)."""


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(
    argv: Sequence[str], log: Path, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start argv as the leader of a new session and process group; output goes to log."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )


def _killpg(pgid: int, sig: int) -> None:
    """Signal a process group, ignoring one that is already gone."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
    """Stop proc's process group: sig, up to grace seconds, then SIGKILL for whatever is left.

    Descendants that left the group (a daemonizing child) are found by pid and start time from a
    snapshot taken first, so that a reused pid is never signalled.
    """
    table = procstat.read_table()
    members = {pid: table[pid].start_ticks for pid in procstat.tree_pids(proc.pid, table)}
    if proc.poll() is None:
        _killpg(proc.pid, sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    _killpg(proc.pid, signal.SIGKILL)  # stragglers still in the group (no-op when none)
    for pid, started in members.items():
        now = procstat.read_stat(pid)
        if now is not None and now.start_ticks == started and now.pgrp != proc.pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if proc.poll() is None:
        proc.wait(5)


def listening_unix(path: str, proc_net_unix: str) -> bool:
    """Whether /proc/net/unix text shows a listening socket bound to path."""
    for line in proc_net_unix.splitlines()[1:]:
        parts = line.split()
        # Flags 00010000 (__SO_ACCEPTCON) mark a listening socket; the path is the last field
        if len(parts) >= 8 and parts[-1] == path and int(parts[3], 16) & 0x10000:
            return True
    return False


def listening_tcp(port: int, proc_net_tcp: str) -> bool:
    """Whether /proc/net/tcp text shows a socket listening (state 0A) on port."""
    hex_port = f"{port:04X}"
    for line in proc_net_tcp.splitlines()[1:]:
        parts = line.split()
        if len(parts) > 3 and parts[1].rsplit(":", 1)[-1] == hex_port and parts[3] == "0A":
            return True
    return False


def is_listening(path: str = "", port: int = 0) -> bool:
    """Is something listening on the UNIX path or the TCP port? Read from /proc, never connected to:
    an empty probe connection makes some servers log an error."""
    if path:
        return listening_unix(path, Path("/proc/net/unix").read_text())
    return listening_tcp(port, Path("/proc/net/tcp").read_text())


def wait_listening(
    proc: subprocess.Popen[bytes], timeout: float, path: str = "", port: int = 0
) -> None:
    """Wait until proc listens on path or port; StartError if it exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while not is_listening(path, port):
        if proc.poll() is not None:
            raise StartError(f"exited with status {proc.returncode} before listening")
        if time.monotonic() > deadline:
            raise StartError(f"not listening on {path or port} after {timeout:.0f}s")
        time.sleep(0.05)


def settled_rss(root: int, timeout: float = 5.0, interval: float = 0.1) -> int:
    """The worker RSS at rest: wait (bounded) until the largest worker's RSS stops changing."""
    deadline = time.monotonic() + timeout
    last, same = -1, 0
    while time.monotonic() < deadline:
        table = procstat.read_table()
        rss = procstat.max_rss_bytes(procstat.worker_pids(root, table), table)
        same = same + 1 if rss == last and rss > 0 else 0
        if same >= 3:
            break
        last = rss
        time.sleep(interval)
    return last if last > 0 else 0


class RssSampler:
    """Samples the largest worker RSS of a tree in a thread, between start() and stop()."""

    def __init__(self, root: int, interval: float = 0.02) -> None:
        """Sample root's workers every interval seconds once started."""
        self.root = root
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._pids: list[int] = []

    def _run(self) -> None:
        """Sample until stopped; find the workers again when one is gone."""
        while not self._done.is_set():
            stats = {p: s for p in self._pids if (s := procstat.read_stat(p)) is not None}
            if not self._pids or len(stats) < len(self._pids):
                table = procstat.read_table()
                self._pids = procstat.worker_pids(self.root, table)
                stats = dict(table)
            self.peak = max(self.peak, procstat.max_rss_bytes(self._pids, stats))
            self.samples += 1
            self._done.wait(self.interval)

    def start(self) -> RssSampler:
        """Start sampling."""
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop sampling and return the peak RSS in bytes."""
        self._done.set()
        self._thread.join(5)
        return self.peak

    @property
    def pids(self) -> list[int]:
        """The worker pids seen last."""
        return list(self._pids)
