"""The serving policy every worker kind shares (:mod:`monoceros.workers.base`): accept() errors,
``max_requests``, and the listen queue on a stop; and each kind applying it with its own I/O."""

from __future__ import annotations

import asyncio
import errno
import os
import select
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monoceros.asgi.acceptor import Acceptor
from monoceros.config import Config
from monoceros.heartbeat import Heartbeat
from monoceros.listeners import BARE_SOCKET, BindSpec, Listener
from monoceros.logs import Logger
from monoceros.workers.asgi import AsgiWorker
from monoceros.workers.base import ACCEPT_BACKOFF, ACCEPT_LOG_INTERVAL, ACCEPT_RETRY, Worker
from monoceros.workers.gthread import ThreadWorker
from monoceros.workers.request_path import ThreadProgress
from monoceros.workers.sync import SyncWorker

from unit_support import encode

BACK_OFF = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EBADF)


class Recorder:
    """Stands in for one level method of the logger: keeps the formatted lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, msg: str, *args: object) -> None:
        self.lines.append(msg % args)


class FailingSocket(socket.socket):
    """A listening socket whose first raw accepts fail with the given errnos."""

    failures: list[int]
    found_empty = 0
    """Raw accepts that found the queue empty (BlockingIOError)."""

    def _accept(self) -> Any:
        if self.failures:
            code = self.failures.pop(0)
            raise OSError(code, errno.errorcode[code])
        try:
            return super()._accept()  # type: ignore[misc]
        except BlockingIOError:
            self.found_empty += 1
            raise


def listening(path: Path, failures: tuple[int, ...] = ()) -> Listener:
    plain = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    plain.bind(str(path))
    plain.listen(16)
    sock = FailingSocket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=plain.detach())
    sock.failures = list(failures)
    return Listener(sock, BindSpec("unix", path=str(path)), "http")


def connect(path: Path, payload: bytes = b"") -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(path))
    if payload:
        client.sendall(payload)
    return client


def close_all(
    accepted: list[socket.socket],
    client: socket.socket,
    loop: asyncio.AbstractEventLoop,
    lst: Listener,
) -> None:
    """End an acceptor test: the accepted sockets, the client, the loop, the listener."""
    for conn in accepted:
        conn.close()
    client.close()
    loop.close()
    lst.sock.close()


def collecting_acceptor(
    loop: asyncio.AbstractEventLoop,
    lst: Listener,
    accepted: list[socket.socket],
    policy: Callable[[Listener, OSError], bool] = lambda lst, exc: False,
) -> Acceptor:
    """An asgi acceptor (cap 10) whose listener's connections are appended to ``accepted``."""
    return Acceptor(
        loop,
        [lst],
        {},
        10,
        Logger(Config()),
        policy,
        {lst.sock.fileno(): lambda conn, peer: accepted.append(conn)},
    )


def make_worker(cls: type[Worker], listeners: list[Listener], **settings: Any) -> Any:
    cfg = Config()
    for name, value in settings.items():
        cfg.set(name, value)
    worker = cls(1, 0, listeners, cfg, Logger(cfg), Heartbeat(), hello)
    worker.log.error = Recorder()  # type: ignore[assignment]
    worker.log.info = Recorder()  # type: ignore[method-assign]
    return worker


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, World!"]


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    lst = listening(tmp_path / "s")
    yield lst
    lst.sock.close()


# ---------------------------------------------------------------------- accept() errors


@pytest.mark.parametrize(
    ("code", "retry"),
    [(code, True) for code in sorted(ACCEPT_RETRY)] + [(code, False) for code in BACK_OFF],
)
def test_a_lost_connection_is_retried_at_once_and_anything_else_logged_and_paused(
    listener: Listener, code: int, retry: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = make_worker(Worker, [listener])
    slept: list[float] = []
    monkeypatch.setattr("time.sleep", slept.append)
    assert worker.accept_failed(listener, OSError(code, "lost")) is retry
    if retry:
        assert worker.log.error.lines == [] and slept == []
    else:
        assert worker.log.error.lines == [
            f"accept() failed on {listener.name}: [Errno {code}] lost"
        ]
        assert slept == [ACCEPT_BACKOFF] and ACCEPT_BACKOFF > 0


def test_the_sync_worker_pauses_after_emfile_then_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lst = listening(tmp_path / "s", (errno.ECONNABORTED, errno.EMFILE))
    worker = make_worker(SyncWorker, [lst], max_requests=1)
    worker.setup_serving(False)
    slept: list[float] = []
    monkeypatch.setattr("time.sleep", slept.append)
    client = connect(tmp_path / "s", b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    client.settimeout(5)
    worker._serve_forever()  # stops itself: max_requests=1
    assert slept == [ACCEPT_BACKOFF]
    assert client.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")
    assert worker.log.info.lines == ["Autorestarting worker after current request."]
    client.close()
    lst.sock.close()


def test_the_sync_worker_serves_a_uwsgi_listener_from_accept_to_close_and_beats_each_time(
    tmp_path: Path,
) -> None:
    """A plain uwsgi listener: the compiled loop serves each queued connection from its accept
    to its close, beats the heartbeat after each request (no idle timeout comes between them
    here) and stops the worker at max_requests."""
    lst = listening(tmp_path / "s")
    uwsgi = Listener(lst.sock, lst.spec, "uwsgi")
    worker = make_worker(SyncWorker, [uwsgi], max_requests=3)
    worker.setup_serving(False)
    packet = encode([(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/"), (b"SERVER_PORT", b"0")])
    clients = [connect(tmp_path / "s", packet) for _ in range(3)]
    worker.heartbeat.beat_slot[0] = 0.0
    before = time.monotonic()
    worker._serve_forever()  # stops itself: max_requests=3
    assert worker.heartbeat.last_beat() >= before
    for client in clients:
        client.settimeout(5)
        assert client.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")
        client.close()
    assert worker.nr == 3 and not worker.alive
    assert worker.log.info.lines == ["Autorestarting worker after current request."]
    lst.sock.close()


def test_the_gthread_worker_retries_econnaborted_and_pauses_after_emfile(
    tmp_path: Path,
) -> None:
    """The leader thread accepts one connection per readiness: after ECONNABORTED the listener
    stays in the set (the next poll tries again); after EMFILE it leaves the set for the pause
    (no thread sleeps) and the main thread's loop puts it back; the connection accepted then is
    served by the thread that accepted it."""
    lst = listening(tmp_path / "s", (errno.ECONNABORTED, errno.EMFILE))
    lst.sock.setblocking(False)
    worker = make_worker(ThreadWorker, [lst])
    worker.setup_serving(True)
    worker._poller = select.epoll()
    worker._parked = {}
    worker.keepalive = 2.0
    worker.tls = None
    worker._wakeup_r, worker._wakeup_w = os.pipe()
    fd = lst.sock.fileno()
    worker._listen(True)
    client = connect(tmp_path / "s", b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    client.settimeout(5)
    progress = ThreadProgress()
    try:
        assert worker._poller.poll(1) == [(fd, select.EPOLLIN)]
        worker._accept(worker._listening[fd], progress)  # ECONNABORTED: nothing else
        assert worker._accepting and worker._count.open == 0
        assert worker._poller.poll(1) == [(fd, select.EPOLLIN)]
        before = time.monotonic()
        worker._accept(worker._listening[fd], progress)  # EMFILE: out of the set for a pause
        assert not worker._accepting and worker._count.open == 0
        assert worker._paused_until >= before + ACCEPT_BACKOFF
        assert worker._poller.poll(0.05) == []
        assert os.read(worker._wakeup_r, 16) == b"p"  # the main thread is told
        worker._listen(True)  # what the main thread does once the pause is over
        assert worker._poller.poll(1) == [(fd, select.EPOLLIN)]
        worker._accept(worker._listening[fd], progress)  # accepted and served
        assert client.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")
        assert worker._count.open == 0 and worker.nr == 1
    finally:
        worker._poller.close()
        os.close(worker._wakeup_r)
        os.close(worker._wakeup_w)
        client.close()
        lst.sock.close()


def test_the_asgi_acceptor_stops_accepting_for_the_pause_then_resumes(tmp_path: Path) -> None:
    lst = listening(tmp_path / "s", (errno.EMFILE,))
    lst.sock.setblocking(False)
    decided: list[int | None] = []

    def policy(listener: Listener, exc: OSError) -> bool:
        decided.append(exc.errno)
        acceptor.pause(0.05)
        return False

    loop = asyncio.new_event_loop()
    accepted: list[socket.socket] = []
    acceptor = collecting_acceptor(loop, lst, accepted, policy)
    client = connect(tmp_path / "s")
    try:
        acceptor.start()
        loop.run_until_complete(asyncio.sleep(0.02))
        assert decided == [errno.EMFILE] and not acceptor.accepting and accepted == []
        loop.run_until_complete(asyncio.sleep(0.1))
        assert acceptor.accepting and len(accepted) == 1
        acceptor.stop()
    finally:
        close_all(accepted, client, loop, lst)


@pytest.mark.parametrize("queued", [1, 3])
def test_the_asgi_acceptor_asks_before_an_accept_that_would_find_nothing(
    tmp_path: Path, queued: int
) -> None:
    """One connection queued at a readiness (the usual case but under load): it is accepted and
    a poll, not a second accept(), finds the queue empty (an accept that finds nothing costs
    about 5 µs). Several: all of them at the same readiness, the batch ending as the queue
    empties."""
    lst = listening(tmp_path / "s")
    lst.sock.setblocking(False)
    loop = asyncio.new_event_loop()
    accepted: list[socket.socket] = []
    acceptor = collecting_acceptor(loop, lst, accepted)
    clients = [connect(tmp_path / "s") for _ in range(queued)]
    try:
        acceptor.start()
        loop.run_until_complete(asyncio.sleep(0.05))
        assert len(accepted) == queued == acceptor.open
        assert lst.sock.found_empty == (0 if queued == 1 else 1)  # type: ignore[attr-defined]
        clients.append(connect(tmp_path / "s"))  # a later one: the next readiness
        loop.run_until_complete(asyncio.sleep(0.05))
        assert len(accepted) == queued + 1
        assert lst.sock.found_empty == (0 if queued == 1 else 1)  # type: ignore[attr-defined]
        acceptor.stop()
    finally:
        for client in clients[1:]:
            client.close()
        close_all(accepted, clients[0], loop, lst)


def test_stopping_the_asgi_acceptor_cancels_a_pending_resume(tmp_path: Path) -> None:
    lst = listening(tmp_path / "s")
    lst.sock.setblocking(False)
    loop = asyncio.new_event_loop()
    acceptor = Acceptor(
        loop,
        [lst],
        {},
        10,
        Logger(Config()),
        lambda lst, exc: False,
        {lst.sock.fileno(): lambda conn, peer: conn.close()},
    )
    client = connect(tmp_path / "s")
    try:
        acceptor.start()
        acceptor.pause(0.02)
        assert not acceptor.accepting
        acceptor.stop()  # the worker stops during the pause: accepting must not come back
        loop.run_until_complete(asyncio.sleep(0.05))
        assert not acceptor.accepting
    finally:
        client.close()
        loop.close()
        lst.sock.close()


def test_a_direct_handler_registered_after_the_acceptor_gets_bare_sockets(
    tmp_path: Path,
) -> None:
    # the asgi worker makes its Acceptor first and registers the uwsgi fast path later, once
    # the lifespan started: its connections must still be the bare C socket (no Python layer)
    lst = listening(tmp_path / "s")
    lst.sock.setblocking(False)
    loop = asyncio.new_event_loop()
    direct: dict[int, Any] = {}
    acceptor = Acceptor(loop, [lst], {}, 10, Logger(Config()), lambda lst, exc: False, direct)
    accepted: list[socket.socket] = []
    direct[lst.sock.fileno()] = lambda conn, peer: accepted.append(conn)
    client = connect(tmp_path / "s")
    try:
        assert acceptor.take_queued(4) == 1
        assert [conn.__class__ for conn in accepted] == [BARE_SOCKET]
    finally:
        close_all(accepted, client, loop, lst)


def test_the_asgi_worker_pauses_its_acceptor_unless_stopping(listener: Listener) -> None:
    worker = make_worker(AsgiWorker, [listener])
    paused: list[float] = []
    worker.acceptor = SimpleNamespace(pause=paused.append)
    assert worker.accept_failed(listener, OSError(errno.EMFILE, "full")) is False
    worker.alive = False  # graceful stop taking the listen queue: no resume timer
    assert worker.accept_failed(listener, OSError(errno.EMFILE, "full")) is False
    # the second failure within the log interval is counted, not logged
    assert paused == [ACCEPT_BACKOFF] and len(worker.log.error.lines) == 1


# ---------------------------------------------------------------------- max_requests


def test_max_requests_stops_the_worker_once_with_one_log_line(listener: Listener) -> None:
    worker = make_worker(Worker, [listener], max_requests=3)
    worker.nr = 2
    assert not worker.check_max_requests() and worker.alive
    worker.nr = 3
    assert worker.check_max_requests() and not worker.alive
    worker.nr = 4
    assert not worker.check_max_requests()
    assert worker.log.info.lines == ["Autorestarting worker after current request."]


def test_max_requests_is_not_logged_for_a_worker_already_stopping(listener: Listener) -> None:
    worker = make_worker(Worker, [listener], max_requests=1)
    worker.nr = 1
    worker.alive = False  # TERM came during the request
    assert not worker.check_max_requests()
    assert worker.log.info.lines == []


def test_no_max_requests_never_stops(listener: Listener) -> None:
    worker = make_worker(Worker, [listener])  # max_requests = 0: unlimited
    worker.nr = 10**9
    assert not worker.check_max_requests() and worker.alive


@given(nr=st.integers(0, 50), limit=st.integers(1, 50), alive=st.booleans())
def test_max_requests_decision(nr: int, limit: int, alive: bool) -> None:
    a, b = socket.socketpair()
    with a, b:
        worker = make_worker(Worker, [Listener(a, BindSpec("unix", path="t"), "http")])
    worker.max_requests = limit
    worker.nr = nr
    worker.alive = alive
    stopped = worker.check_max_requests()
    assert stopped == (alive and nr >= limit)
    assert worker.alive == (alive and not stopped)
    assert len(worker.log.info.lines) == int(stopped)


# ---------------------------------------------------------------------- the listen queue


@pytest.mark.parametrize(
    ("graceful", "kept", "serves"),
    [(False, False, False), (True, False, True), (True, True, False), (False, True, False)],
)
def test_only_a_graceful_stop_of_the_server_serves_the_listen_queue(
    listener: Listener, graceful: bool, kept: bool, serves: bool
) -> None:
    worker = make_worker(Worker, [listener])
    worker.graceful_stop = graceful
    if kept:
        worker.heartbeat.keep_listeners()
    assert worker.serves_listen_queue() is serves


def test_take_listen_queue_takes_at_most_backlog_per_listener_in_order(tmp_path: Path) -> None:
    first, second = listening(tmp_path / "a"), listening(tmp_path / "b")
    clients = [connect(tmp_path / "a", bytes([i])) for i in range(3)]
    clients.append(connect(tmp_path / "b", b"b"))
    worker = make_worker(Worker, [first, second], backlog=2)
    taken: list[tuple[str, bytes]] = []

    def take(lst: Listener, conn: socket.socket, peer: Any) -> None:
        conn.settimeout(5)
        taken.append((lst.name, conn.recv(1)))
        conn.close()

    worker.take_listen_queue(take)
    assert taken == [(first.name, b"\x00"), (first.name, b"\x01"), (second.name, b"b")]
    for sock in [*clients, first.sock, second.sock]:
        sock.close()


def test_take_listen_queue_takes_nothing_past_its_deadline(
    listener: Listener, tmp_path: Path
) -> None:
    client = connect(tmp_path / "s")
    worker = make_worker(Worker, [listener])
    taken: list[socket.socket] = []
    worker.take_listen_queue(lambda lst, conn, peer: taken.append(conn), deadline=0.0)
    assert taken == []
    worker.take_listen_queue(lambda lst, conn, peer: taken.append(conn))
    assert len(taken) == 1
    taken[0].close()
    client.close()


@pytest.mark.parametrize(
    ("timeout", "most", "wait"), [(30, 1.0, 1.0), (1, 1.0, 0.5), (0, 0.25, 0.25)]
)
def test_an_idle_worker_waits_half_the_timeout_at_most(
    listener: Listener, timeout: int, most: float, wait: float
) -> None:
    assert make_worker(Worker, [listener], timeout=timeout).idle_wait(most) == wait


def test_a_lasting_accept_error_is_logged_once_per_interval_with_a_count(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten failures a second for 12 s: the first line at once, then one per interval saying
    how many there were; another listener or another error has its own count."""
    worker = make_worker(Worker, [listener])
    clock = [1000.0]
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    monkeypatch.setattr("time.monotonic", lambda: clock[0])
    emfile = OSError(errno.EMFILE, "Too many open files")
    for _ in range(121):
        assert worker.accept_failed(listener, emfile) is False
        clock[0] += 0.1
    worker.accept_failed(listener, OSError(errno.ENOBUFS, "No buffer space"))
    prefix = f"accept() failed on {listener.name}: [Errno {errno.EMFILE}] Too many open files"
    assert worker.log.error.lines == [
        prefix,
        f"{prefix} (50 times in the last 5 s)",
        f"{prefix} (50 times in the last 5 s)",
        f"accept() failed on {listener.name}: [Errno {errno.ENOBUFS}] No buffer space",
    ]
    assert ACCEPT_LOG_INTERVAL == 5.0
