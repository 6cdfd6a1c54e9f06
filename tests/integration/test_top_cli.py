"""``monoceros-top ADDR`` run as a user would: the real server CLI, then the script from the venv."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from conftest import Server, free_port, slow_target, wait_for, wait_started

TOP = str(Path(sys.executable).parent / "monoceros-top")
#: wide enough for the held request's target (it names a marker file in the work dir)
ENV = dict(os.environ, COLUMNS="400", LINES="50")


def _sigint_as_at_a_terminal() -> None:
    """In the live view's child, before exec: SIGINT back to its default. A test run started as
    a background job of a non-interactive shell has SIGINT ignored, a child inherits that, and
    Python then installs no KeyboardInterrupt handler: Ctrl-C at a terminal is what is tested."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _top(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TOP, *args],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        env=ENV,
    )


def _wait_table(addr: str, srv: Server, n: int) -> tuple[str, list[int]]:
    """The ``--once`` table once it lists the ``n`` workers the master has forked."""
    pids = srv.wait_workers(n)
    out: list[str] = []

    def complete() -> bool:
        done = _top(addr, "--once")
        assert done.returncode == 0, done.stderr
        out[:] = [done.stdout]
        return all(str(pid) in done.stdout for pid in pids)

    assert wait_for(complete, 15, 0.2), (out, pids)
    return out[0], pids


def _row_of(table: str, pid: int) -> str:
    (row,) = [line for line in table.splitlines()[2:] if str(pid) in line.split()[:2]]
    return row


def _check_table_and_held_request(srv: Server, addr: str) -> None:
    table, pids = _wait_table(addr, srv, 2)
    first = table.splitlines()[0]
    assert first.startswith(f"monoceros master {srv.pid}  up ")
    assert "workers 0/2 busy" in first
    assert table.splitlines()[2].split()[:3] == ["ID", "PID", "STATE"]
    for pid in pids:
        assert _row_of(table, pid).split()[2] == "idle"
    assert "\x1b" not in table  # --once: no screen clearing

    target, mark = slow_target(srv, 1.5)  # outlasts one --once run (~0.3 s)
    slow = threading.Thread(target=srv.request, args=(target,), daemon=True)
    slow.start()
    wait_started(mark)
    done = _top(addr, "--once")
    assert done.returncode == 0, done.stderr
    busy = [line for line in done.stdout.splitlines() if "GET /slow" in line]
    assert len(busy) == 1, done.stdout
    assert busy[0].split()[2] == "busy"
    assert f"GET {target}" in busy[0]
    assert int(busy[0].split()[1]) in pids
    assert "workers 1/2 busy" in done.stdout.splitlines()[0]
    slow.join(15)


def test_once_over_tcp_names_each_worker_and_the_request_it_holds(
    server: Callable[..., Server],
) -> None:
    stats_port = free_port()
    srv = server(["-w", "2", "--stats-bind", f"127.0.0.1:{stats_port}"])
    _check_table_and_held_request(srv, f"127.0.0.1:{stats_port}")


def test_once_over_a_unix_socket(server: Callable[..., Server], workdir: Path) -> None:
    path = workdir / "stats.sock"
    srv = server(["-w", "2", "--stats-bind", f"unix:{path}"])
    _check_table_and_held_request(srv, f"unix:{path}")


def test_unreachable_exits_1_with_one_line(workdir: Path) -> None:
    port = free_port()
    done = _top(f"127.0.0.1:{port}", "--once")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(
        f"monoceros-top: cannot reach the stats listener at 127.0.0.1:{port}: "
    )
    done = _top(f"unix:{workdir / 'none.sock'}", "--once")
    assert done.returncode == 1 and done.stderr.count("\n") == 1


def _read_until(proc: subprocess.Popen[bytes], pred: Callable[[bytes], bool]) -> bytes:
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + 15
    while not pred(seen) and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            seen += chunk
    return seen


def test_live_view_refreshes_and_ctrl_c_exits_0(server: Callable[..., Server]) -> None:
    stats_port = free_port()
    addr = f"127.0.0.1:{stats_port}"
    srv = server(["-w", "1", "--stats-bind", addr])
    _, (pid,) = _wait_table(addr, srv, 1)
    proc = subprocess.Popen(
        [TOP, addr, "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=ENV,
        preexec_fn=_sigint_as_at_a_terminal,
    )
    try:
        # two screens, each cleared first; the second has a rate since the first
        seen = _read_until(proc, lambda b: b.count(b"\x1b[H\x1b[2J") >= 2 and b"req/s" in b)
        assert seen.count(b"\x1b[H\x1b[2J") >= 2, seen
        assert str(pid).encode() in seen and b"req/s" in seen
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_live_view_retries_an_unreachable_listener(workdir: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [TOP, f"127.0.0.1:{port}", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=ENV,
        preexec_fn=_sigint_as_at_a_terminal,
    )
    try:
        seen = _read_until(proc, lambda b: b.count(b"cannot reach") >= 2)
        assert seen.count(b"cannot reach") >= 2, seen  # still running, trying again
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
