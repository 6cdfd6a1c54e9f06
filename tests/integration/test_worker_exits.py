"""Why a worker leaves, and what it does on the way out, through the real command.

A worker that reached ``max_requests`` hands new connections to its replacement; a worker the
master aborts for its timeout says which request it was stuck in and answers it.
"""

from __future__ import annotations

import itertools
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import APPS, Server, read_response, wait_for
from uwsgi_support import body_of, exchange, good_env, packet, status_of

KINDS = {
    "sync": (["-k", "sync"], "app:app", 0),
    # one request of slack: a thread may be serving when another reaches the limit
    "gthread": (["-k", "gthread", "--threads", "4"], "app:app", 1),
    "asgi": (["-k", "asgi"], "asgi_app:app", 0),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_max_requests_recycles_under_sequential_traffic(
    server: Callable[..., Server], kind: str
) -> None:
    """One new connection per request, one after the other: every request is answered, and
    no worker serves more than max_requests (+ the slack) of them."""
    args, app, slack = KINDS[kind]
    srv = server([*args, "--workers", "1", "--max-requests", "5"], app=app)
    pids = []
    for _ in range(14):
        status, _, body = srv.request("/pid", timeout=20)
        assert status == 200, (status, body, srv.log())
        pids.append(body)
    runs = [(pid, len(list(group))) for pid, group in itertools.groupby(pids)]
    assert len(runs) >= 2, (runs, srv.log())
    assert all(n <= 5 + slack for _, n in runs), (runs, srv.log())
    assert len({pid for pid, _ in runs}) == len(runs), runs  # a retired worker never returns
    assert "Autorestarting worker after current request." in srv.log()


# ----------------------------------------------------------------------------- worker timeout

ABORT_HOOK = """
def worker_abort(worker):
    worker.log.info("worker_abort hook ran in %s", worker.pid)
"""


def line_of(text: str, path: Path = APPS / "app.py") -> int:
    """The line number of ``text`` in a test app: where the traceback must point."""
    lines = path.read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def timeout_server(
    server: Callable[..., Server], workdir: Path, args: list[str], wait: bool = True
) -> Server:
    """A sync worker with ``--timeout 1`` (the least: each test waits it out) and a
    worker_abort hook that logs."""
    conf = workdir / "abort.conf.py"
    conf.write_text(ABORT_HOOK)
    return server(["-c", str(conf), "--workers", "1", "--timeout", "1", *args], wait=wait)


def assert_aborted_in(log: str, request: str, where: str) -> None:
    """One ERROR line with the request, a traceback through ``where``, and the hook's line."""
    assert f"[ERROR] Error handling request {request}\nTraceback" in log, log
    assert where in log, log
    assert "WorkerAborted: worker timeout" in log, log
    assert "worker_abort hook ran in" in log, log


def test_sync_timeout_answers_500_and_logs_the_stuck_request(
    server: Callable[..., Server], workdir: Path
) -> None:
    srv = timeout_server(server, workdir, [])
    before = srv.get_ok("/pid")
    status, headers, body = srv.request("/slow?s=30", timeout=20)
    assert (status, body) == (500, b"Internal Server Error\n"), (status, body, srv.log())
    assert headers.get("connection") == "close"
    where = f'app.py", line {line_of("time.sleep(float(_q(environ")}, in app'
    assert_aborted_in(srv.log(), "GET /slow?s=30", where)
    assert srv.get_ok("/pid") != before  # a new worker serves the next request


def test_sync_timeout_with_a_failing_worker_abort_hook(
    server: Callable[..., Server], workdir: Path
) -> None:
    """The hook's exception is logged; the stuck request is still reported and answered."""
    conf = workdir / "abort.conf.py"
    conf.write_text("def worker_abort(worker):\n    raise RuntimeError('hook broke')\n")
    srv = server(["-c", str(conf), "--workers", "1", "--timeout", "1"])
    status, _, body = srv.request("/slow?s=30", timeout=20)
    assert (status, body) == (500, b"Internal Server Error\n"), (status, body, srv.log())
    log = srv.log()
    assert "Exception in the worker_abort hook" in log and "RuntimeError: hook broke" in log, log
    assert "[ERROR] Error handling request GET /slow?s=30\nTraceback" in log, log


def test_sync_timeout_answers_500_over_uwsgi(server: Callable[..., Server], workdir: Path) -> None:
    srv = timeout_server(server, workdir, ["--protocol", "uwsgi"], wait=False)
    addr = ("127.0.0.1", srv.port)

    def pid() -> bytes | None:
        raw = exchange(addr, packet(good_env()), timeout=2)
        return body_of(raw) if status_of(raw) == 200 else None

    assert wait_for(lambda: pid() is not None, 20), srv.log()
    before = pid()
    raw = exchange(addr, packet(good_env("/slow?s=30")), timeout=20)
    assert status_of(raw) == 500 and body_of(raw) == b"Internal Server Error\n", (raw, srv.log())
    where = f'app.py", line {line_of("time.sleep(float(_q(environ")}, in app'
    assert_aborted_in(srv.log(), "GET /slow?s=30", where)
    assert wait_for(lambda: pid() not in (None, before), 20), srv.log()


def test_sync_timeout_after_the_response_started_logs_and_closes(
    server: Callable[..., Server], workdir: Path
) -> None:
    srv = timeout_server(server, workdir, [])
    with srv.connect(timeout=20) as s:
        s.sendall(b"GET /started-then-slow?s=30 HTTP/1.1\r\nHost: t\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    assert status_of(raw) == 200 and b"first piece" in raw, (raw, srv.log())
    assert b"never sent" not in raw and not raw.endswith(b"0\r\n\r\n")  # cut short, not ended
    where = f'app.py", line {line_of("time.sleep(seconds)")}, in _started_then_slow'
    assert_aborted_in(srv.log(), "GET /started-then-slow?s=30", where)


# ----------------------------------------------------------------------------- listen queue

WORKER_HOOK = """
import sys

def post_worker_init(worker):
    sys.modules[worker.cfg.wsgi_app.split(":")[0]].WORKER = worker  # /hold waits on .alive
"""


def hold(srv: Server, name: str, hold_dir: Path) -> tuple[socket.socket, int]:
    """Start ``/hold?name=NAME`` and wait until a worker runs it: (its connection, that pid)."""
    s = srv.connect(timeout=40)
    s.sendall(f"GET /hold?name={name} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    pid_file = hold_dir / f"{name}.pid"
    assert wait_for(pid_file.exists, 20), srv.log()
    return s, int(pid_file.read_text())


def release(hold_dir: Path, name: str, how: str = "now") -> None:
    tmp = hold_dir / f"{name}.go.tmp"
    tmp.write_text(how)
    tmp.rename(hold_dir / f"{name}.go")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_worker_retired_by_ttou_leaves_the_listen_queue_to_the_others(
    server: Callable[..., Server], workdir: Path, kind: str
) -> None:
    """TTOU retires the oldest worker while the master keeps the listeners open: it finishes
    its request and exits without taking the connections queued meanwhile; the worker that
    stays serves them, and none fails."""
    args, app, _ = KINDS[kind]
    args = [*args, "--threads", "1", "--worker-connections", "1"]
    hold_dir = workdir / "hold"
    hold_dir.mkdir()
    conf = workdir / "hook.conf.py"
    conf.write_text(WORKER_HOOK)
    srv = server(
        ["-c", str(conf), "--workers", "1", "--graceful-timeout", "20", *args],
        app=app,
        env={"HOLD_DIR": str(hold_dir)},
    )
    oldest = srv.wait_workers(1)[0]
    srv.signal(signal.SIGTTIN)
    srv.wait_workers(2)
    first, first_pid = hold(srv, "a", hold_dir)  # whichever worker is ready takes it
    second, second_pid = hold(srv, "b", hold_dir)  # the other one: both are busy now
    assert {first_pid, second_pid} == set(srv.workers()), srv.log()
    stays = second_pid if first_pid == oldest else first_pid
    queued = [srv.connect(timeout=40) for _ in range(4)]
    for s in queued:
        # close: with one connection per worker, a kept-alive one would hold it 2 s
        s.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    srv.signal(signal.SIGTTOU)
    release(hold_dir, "a" if first_pid == oldest else "b", "after-stop")  # returns after TERM
    assert wait_for(lambda: oldest not in srv.workers(), 20), srv.log()
    release(hold_dir, "b" if first_pid == oldest else "a")
    answers = [read_response(s) for s in (first, second, *queued)]
    for s in (first, second, *queued):
        s.close()
    assert [status for status, _, _ in answers] == [200] * 6, (answers, srv.log())
    assert [body for _, _, body in answers[2:]] == [str(stays).encode()] * 4, srv.log()
