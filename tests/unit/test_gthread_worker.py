"""The gthread worker's per-connection step, driven over a socket pair (no process, no pool)."""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monoceros.config import Config
from monoceros.heartbeat import Heartbeat
from monoceros.listeners import BindSpec, Listener
from monoceros.logs import Logger
from monoceros.protocols.http import HttpParser, HttpRequest
from monoceros.workers.gthread import HAND_OVER, ThreadWorker, _Conn
from monoceros.workers.request_path import RequestPath, ThreadProgress

from unit_support import encode, socket_pair

pair = pytest.fixture(name="pair")(socket_pair)

SEEN: list[dict[str, Any]] = []


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    SEEN.append(environ)
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["PATH_INFO"].encode() + b":" + body]


@pytest.fixture
def worker() -> Iterator[ThreadWorker]:
    cfg = Config()
    a, b = socket.socketpair()
    listener = Listener(a, BindSpec("unix", path="test"), "http")
    w = ThreadWorker(1, 0, [listener], cfg, Logger(cfg), Heartbeat(), app)
    w.setup_serving(True)
    w.keepalive = 2.0
    SEEN.clear()
    yield w
    a.close()
    b.close()


def conn_of(worker: ThreadWorker, sock: socket.socket) -> _Conn:
    return _Conn(
        sock, worker.listeners[0], "", float("inf"), HttpParser(worker.limits), worker._step_http
    )


def read_available(sock: socket.socket) -> bytes:
    sock.settimeout(0.5)
    chunks = []
    try:
        while data := sock.recv(65536):
            chunks.append(data)
    except TimeoutError:
        pass
    return b"".join(chunks)


def test_pipelined_requests_served_then_parked(
    worker: ThreadWorker, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    b.sendall(
        b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n"
        b"POST /two HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /thr"
    )
    conn = conn_of(worker, a)
    assert worker._step_http(conn, ThreadProgress()) is True  # the third head is incomplete: park
    out = read_available(b)
    assert out.count(b"HTTP/1.1 200 OK") == 2 and out.count(b"Connection: keep-alive") == 2
    assert b"\r\n\r\n/one:" in out and out.endswith(b"\r\n\r\n/two:abc")
    assert conn.served == 2 and conn.parser is not None and conn.parser.in_message
    assert [e["wsgi.multithread"] for e in SEEN] == [True, True]
    b.sendall(b"ee HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert worker._step_http(conn, ThreadProgress()) is False  # the client asked to close
    last = read_available(b)
    assert b"Connection: close" in last and last.endswith(b"/three:")


def test_nothing_sent_yet_parks_and_eof_closes_quietly(
    worker: ThreadWorker, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    conn = conn_of(worker, a)
    assert worker._step_http(conn, ThreadProgress()) is True
    b.shutdown(socket.SHUT_WR)
    assert worker._step_http(conn, ThreadProgress()) is False
    assert read_available(b) == b""


def test_head_cut_by_eof_gets_400(
    worker: ThreadWorker, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    b.sendall(b"GET / HTTP/1.1\r\nHo")
    b.shutdown(socket.SHUT_WR)
    assert worker._step_http(conn_of(worker, a), ThreadProgress()) is False
    assert read_available(b).startswith(b"HTTP/1.1 400 Bad Request")


def test_stopping_worker_answers_with_close(
    worker: ThreadWorker, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    worker.alive = False
    b.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
    assert worker._step_http(conn_of(worker, a), ThreadProgress()) is False
    assert b"Connection: close" in read_available(b)


def test_last_request_before_max_requests_closes(
    worker: ThreadWorker, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    worker.max_requests = 2
    b.sendall(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n")
    assert worker._step_http(conn_of(worker, a), ThreadProgress()) is False
    out = read_available(b)
    assert out.count(b"HTTP/1.1 200") == 2
    assert out.index(b"keep-alive") < out.index(b"Connection: close")


def test_unread_body_is_drained_before_the_next_request(
    worker: ThreadWorker, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair

    def lazy(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [environ["PATH_INFO"].encode()]

    worker.app = lazy
    worker.request_path = RequestPath(worker, worker.nr)  # serving starts again with this app
    b.sendall(
        b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbodyGET /g HTTP/1.1\r\n"
        b"Host: t\r\n\r\n"
    )
    assert worker._step_http(conn_of(worker, a), ThreadProgress()) is True
    out = read_available(b)
    assert out.count(b"HTTP/1.1 200") == 2 and out.endswith(b"/g")


def test_progress_names_the_request_in_flight() -> None:
    progress = ThreadProgress()
    assert progress.since == 0.0
    req = HttpRequest("GET", b"/slow?s=1", "1.1", [], True, False, 0, False, False)
    progress.begin(req, ("10.0.0.1", 5555))
    assert progress.since > 0
    assert progress.describe() == "GET /slow?s=1 HTTP/1.1 from 10.0.0.1"
    progress.end()
    assert progress.since == 0.0 and progress.request is None


def test_a_stalled_request_is_reported_once_with_its_stack(
    worker: ThreadWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[str] = []
    monkeypatch.setattr(worker.log, "warning", lambda msg, *args: lines.append(msg % args))
    stalled, moving = ThreadProgress(), ThreadProgress()
    worker._progress = [stalled, moving]
    req = HttpRequest("GET", b"/slow?s=1", "1.1", [], True, False, 0, False, False)
    stalled.begin(req, ("10.0.0.1", 5555))
    moving.begin(req, ("10.0.0.2", 5555))
    worker._report_stuck(stalled.since + 1, 30)
    assert lines == []
    stalled.started, stalled.since, moving.since = 40.0, 50.0, 99.0
    worker._report_stuck(100.0, 30)
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        "Worker (pid:[booting]): request in flight for 60.0s (50.0s without progress, timeout "
        "30s); the worker goes on serving: GET /slow?s=1 HTTP/1.1 from 10.0.0.1\n"
        "Stack of the thread serving it (most recent call last):\n"
    )
    assert "in test_a_stalled_request_is_reported_once_with_its_stack\n" in lines[0]
    worker._report_stuck(200.0, 30)  # still stuck, later: not again; the other one is new
    assert len(lines) == 2 and "from 10.0.0.2\n" in lines[1], lines
    stalled.begin(req, ("10.0.0.1", 5555))  # its next request is reported on its own
    stalled.since = 50.0
    worker._report_stuck(200.0, 30)
    assert len(lines) == 3, lines


def test_connections_awaiting_their_first_request_count_towards_max_requests(
    worker: ThreadWorker, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    worker.max_requests = 2
    worker.nr = 1
    assert worker._admits()
    conn = worker._new_conn(worker.listeners[0], a, "", worker._step_http)
    assert not worker._admits()  # one served, one on its way: the limit is reached
    b.sendall(b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert worker._step_http(conn, ThreadProgress()) is False
    worker._close(conn)
    assert worker.nr == 2 and worker._count.fresh == 0 and not worker._admits()


def test_a_connection_closed_without_a_request_frees_its_place(
    worker: ThreadWorker, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    worker.max_requests = 1
    conn = worker._new_conn(worker.listeners[0], a, "", worker._step_http)
    assert not worker._admits()
    b.close()  # a health check: connected, closed, no request
    assert worker._step_http(conn, ThreadProgress()) is False
    worker._close(conn)
    assert worker.nr == 0 and worker._admits()


def test_the_lead_is_handed_over_only_after_the_leader_was_held_up(worker: ThreadWorker) -> None:
    """The main thread gives the lead to the next thread when the leader has served what it
    took for HAND_OVER seconds; the old leader learns it when it is done (``deposed``)."""
    worker._lead = threading.Lock()
    worker._turns = threading.Lock()
    leader = ThreadProgress()
    worker._lead.acquire()  # the leader's turn
    leader.leading_since = 100.0
    worker._serving = leader
    worker._hand_over(100.0 + HAND_OVER / 2, HAND_OVER)  # a quick request: it keeps the lead
    assert not leader.deposed and worker._serving is leader
    assert not worker._lead.acquire(blocking=False)
    worker._hand_over(100.0 + 2 * HAND_OVER, HAND_OVER)  # held up: the next thread may lead
    assert leader.deposed and worker._serving is None
    assert worker._lead.acquire(blocking=False)  # the next thread's turn
    worker._hand_over(200.0, HAND_OVER)  # nobody serving as the leader: nothing to hand over
    assert not worker._lead.acquire(blocking=False)


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes."""
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def uwsgi_worker(tmp_path: Path, max_requests: int = 0) -> tuple[ThreadWorker, socket.socket]:
    """A gthread worker on a plain uwsgi UNIX listener, set up to serve (no pool started), and
    the path of that listener."""
    cfg = Config()
    if max_requests:
        cfg.set("max_requests", str(max_requests))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(tmp_path / "s"))
    sock.listen(16)
    listener = Listener(sock, BindSpec("unix", path=str(tmp_path / "s")), "uwsgi")
    w = ThreadWorker(1, 0, [listener], cfg, Logger(cfg), Heartbeat(), app)
    w.setup_serving(True)
    w._poller = select.epoll()  # what run() sets up, without the pool
    w._parked = {}
    w.keepalive = 2.0
    w._listen(True)
    return w, sock


def uwsgi_client(tmp_path: Path, path: bytes, *, whole: bool = True) -> socket.socket:
    """A connection that sends a GET packet for ``path`` (all of it, or its first 10 bytes)."""
    packet = encode([(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", path), (b"SERVER_PORT", b"0")])
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(5)
    client.connect(str(tmp_path / "s"))
    client.sendall(packet if whole else packet[:10])
    return client


def test_an_accept_run_serves_each_uwsgi_connection_from_the_accept(tmp_path: Path) -> None:
    """The leader's run on a plain uwsgi listener: every queued connection served by the thread
    that accepted it and closed, counted open and fresh until then, the run ending at the
    empty queue."""
    worker, sock = uwsgi_worker(tmp_path)
    clients = [uwsgi_client(tmp_path, f"/{i}".encode()) for i in range(3)]
    listening = worker._listening[sock.fileno()]
    worker.request_path.uwsgi_accept_run(listening, ThreadProgress(), worker._count, 16)
    for i, client in enumerate(clients):
        out = read_all(client)
        assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(f"/{i}:".encode())
    assert [env["PATH_INFO"] for env in SEEN] == ["/0", "/1", "/2"]
    assert worker.nr == 3 and (worker._count.open, worker._count.fresh) == (0, 0)


def test_an_accept_run_stops_at_max_requests_and_parks_a_packet_on_its_way(
    tmp_path: Path,
) -> None:
    """A packet that is not whole at the accept is parked for the rest (a connection record
    in the poller, counted open and fresh); at max_requests the run takes no more
    connections and the listeners leave the poller."""
    worker, sock = uwsgi_worker(tmp_path, max_requests=2)
    first = uwsgi_client(tmp_path, b"/whole")
    slow = uwsgi_client(tmp_path, b"/slow", whole=False)
    late = uwsgi_client(tmp_path, b"/late")
    listening = worker._listening[sock.fileno()]
    worker.request_path.uwsgi_accept_run(listening, ThreadProgress(), worker._count, 16)
    assert read_all(first).endswith(b"/whole:")
    assert worker.nr == 1 and (worker._count.open, worker._count.fresh) == (1, 1)
    parked = next(iter(worker._parked.values()))
    assert parked.buf and parked.fresh and not worker._accepting
    late.settimeout(0.2)
    with pytest.raises(TimeoutError):
        late.recv(1)  # still in the listen queue: not accepted
    for client in (first, slow, late):
        client.close()
    worker._poller.close()
