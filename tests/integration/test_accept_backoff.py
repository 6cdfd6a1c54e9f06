"""Out of descriptors (EMFILE), through the real command with a low RLIMIT_NOFILE set in the
server's own process: every worker kind backs off instead of spinning on accept(), logs the
condition once per interval with a count instead of once per failure, and serves again once
descriptors are free."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import APPS, MONOCEROS, Server, free_port, wait_for

#: runs ``monoceros ARGS`` with RLIMIT_NOFILE lowered to $NOFILE (soft and hard)
LIMITED = [
    sys.executable,
    "-c",
    "import os, resource, sys; n = int(os.environ['NOFILE']); "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)); os.execv(sys.argv[1], sys.argv[1:])",
    MONOCEROS,
]
NOFILE = 64
#: seconds the worker's CPU and log lines are measured over; a worker spinning on accept()
#: would spend most of it on the CPU and log thousands of lines
WINDOW = 1.5
#: the CPU seconds a worker that backs off stays under in WINDOW (a sixth of it)
CPU_MOST = 0.25
FAILED = "accept() failed on"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def limited(server: Callable[..., Server], workdir: Path, args: list[str], app: str) -> Server:
    return server(
        ["--chdir", str(APPS), *args, "--workers", "1", app],
        app="",
        program=LIMITED,
        env={"NOFILE": str(NOFILE)},
    )


def measure(srv: Server, pid: int) -> tuple[float, int]:
    """Once the worker failed to accept: its CPU seconds and error lines over WINDOW seconds."""
    assert wait_for(lambda: FAILED in srv.log(), 15), srv.log()
    cpu, lines = cpu_seconds(pid), srv.log().count(FAILED)
    time.sleep(WINDOW)  # what is measured is what the worker does in this time
    return cpu_seconds(pid) - cpu, srv.log().count(FAILED) - lines


@pytest.mark.parametrize(("kind", "app"), [("gthread", "app:app"), ("asgi", "asgi_app:app")])
def test_idle_connections_beyond_the_descriptor_limit(
    server: Callable[..., Server], workdir: Path, kind: str, app: str
) -> None:
    """100 idle connections to a worker allowed 64 descriptors: it accepts what it can, then
    waits for a descriptor instead of spinning, with one log line per interval at most."""
    srv = limited(server, workdir, ["-k", kind, "--threads", "2"], app)
    pid = int(srv.get_ok("/pid"))
    clients = []
    try:
        for _ in range(100):
            clients.append(srv.connect())
        cpu, lines = measure(srv, pid)
        assert cpu < CPU_MOST and lines <= 2, (cpu, lines, srv.log()[-3000:])
    finally:
        for client in clients:
            client.close()
    assert srv.get_ok("/pid", timeout=15) == str(pid).encode(), srv.log()[-3000:]


def test_a_sync_worker_out_of_descriptors(server: Callable[..., Server], workdir: Path) -> None:
    """The application takes every descriptor for a while: a connection waits in the listen
    queue meanwhile, the sync worker backs off with one log line per interval at most, then
    serves it. Two listeners, so the worker waits in epoll: a blocking accept() (one listener)
    holds a descriptor number while it waits, so it never meets EMFILE this way."""
    first, second = (f"127.0.0.1:{free_port()}" for _ in range(2))
    binds = ["--bind", first, "--bind", second]
    srv = server(
        ["--chdir", str(APPS), "-k", "sync", "--workers", "1", *binds, "app:app"],
        app="",
        bind=first,
        program=LIMITED,
        env={"NOFILE": str(NOFILE)},
    )
    pid = int(srv.get_ok("/pid"))
    assert srv.get_ok("/hold-fds?s=3") == b"holding"  # longer than the measure takes
    assert wait_for(lambda: len(os.listdir(f"/proc/{pid}/fd")) >= NOFILE, 5), srv.log()
    with srv.connect(timeout=15) as client:
        client.sendall(b"GET /pid HTTP/1.1\r\nHost: test\r\n\r\n")
        cpu, lines = measure(srv, pid)
        assert cpu < CPU_MOST and lines <= 2, (cpu, lines, srv.log()[-3000:])
        client.shutdown(socket.SHUT_WR)
        answer = client.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(str(pid).encode()), answer
