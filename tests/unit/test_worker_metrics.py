"""The shared counting block, the Prometheus/JSON rendering and the stats listener."""

from __future__ import annotations

import json
import socket
import threading
import time

from monoceros.stats_render import (
    ListenerView,
    MasterStats,
    ServerView,
    WorkerView,
    listen_queue,
    prometheus,
    stats_json,
)
from monoceros.stats_server import StatsServer, _Conn
from monoceros.worker_metrics import BUCKETS, MAX_SLOTS, WorkerMetrics


def test_counts_statuses_protocols_and_durations() -> None:
    m = WorkerMetrics(1)
    rec = m.recorders[0]
    for status, uwsgi, ago in ((200, False, 0.0), (200, False, 0.0), (404, True, 0.3)):
        start = time.monotonic() - ago
        rec.begin("GET", "/x", start)
        rec.end(start, status, uwsgi)
    m.answered(400, False)
    m.answered(1234, True)  # out of range: status 0
    s = m.snapshot()
    assert s.counts == {("http", 200): 2, ("http", 400): 1, ("uwsgi", 404): 1, ("uwsgi", 0): 1}
    assert s.requests == 5
    assert sum(s.buckets["http"]) == 3 and s.buckets["http"][0] == 3
    assert s.buckets["uwsgi"][BUCKETS.index(0.5)] == 1  # 0.3 s: the 0.5 bucket
    assert s.sums["uwsgi"] >= 0.3
    assert s.in_flight == 0 and s.current == []
    m.close()


def test_current_request_and_abandon() -> None:
    m = WorkerMetrics(2)
    a, b = m.take(), m.take()
    a.begin("POST", "/upload?x=1", 5.0)
    b.begin("GET", b"/" + b"p" * 500, 4.0)  # cut
    s = m.snapshot()
    assert s.in_flight == 2
    assert [(c.method, c.start) for c in s.current] == [("GET", 4.0), ("POST", 5.0)]
    assert s.current[1].path == "/upload?x=1"
    assert 200 < len(s.current[0].path) < 250
    over = m.take()  # every slot taken: counted, not described
    over.begin("GET", "/o", 6.0)
    assert m.snapshot().in_flight == 3
    over.end(6.0, 200, False)
    m.give(over)
    a.abandon()
    m.give(a)
    s = m.snapshot()
    assert s.in_flight == 1 and s.counts == {("http", 200): 1}
    m.close()


def test_threaded_block_and_exit_reason() -> None:
    m = WorkerMetrics(3, threaded=True)
    assert m.slots == 3
    m.recorders[2].begin("GET", "/", 1.0)
    m.recorders[2].end(time.monotonic(), 503, False)
    m.exiting("max_requests")
    s = m.snapshot()
    assert s.counts == {("http", 503): 1} and s.exit_reason == "max_requests"
    m.close()


def test_threads_count_exactly_without_a_lock() -> None:
    """Each gthread pool thread writes its own counter section: concurrent requests lose no
    count, and answered() (under the lock) adds to its own section."""
    m = WorkerMetrics(4, threaded=True)

    def serve(index: int) -> None:
        rec = m.recorders[index]
        for _ in range(20_000):
            rec.begin("GET", "/", 1.0)
            rec.end(time.monotonic(), 200, index % 2 == 1)
            if index == 0:
                m.answered(400, False)

    threads = [threading.Thread(target=serve, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    s = m.snapshot()
    assert s.counts == {("http", 200): 40_000, ("uwsgi", 200): 40_000, ("http", 400): 20_000}
    assert sum(s.buckets["http"]) == 60_000 and s.in_flight == 0
    m.close()


def test_master_folds_departed_workers() -> None:
    stats = MasterStats()
    for reason in ("crash", None, "reload"):
        m = WorkerMetrics(1)
        m.recorders[0].end(time.monotonic(), 200, False)
        stats.worker_gone(m, reason)
    m = WorkerMetrics(1)
    m.exiting("max_requests")
    stats.worker_gone(m, "crash")  # the worker's word wins
    assert stats.departed.counts == {("http", 200): 3}
    assert stats.restarts == {
        "crash": 1,
        "timeout": 0,
        "max_requests": 1,
        "memory": 0,
        "lifetime": 0,
        "reload": 1,
    }


def _view() -> ServerView:
    m = WorkerMetrics(1)
    m.recorders[0].end(time.monotonic() - 0.02, 200, False)
    m.recorders[0].begin("GET", "/slow", 90.0)
    idle = WorkerMetrics(1)
    stats = MasterStats()
    gone = WorkerMetrics(1)
    gone.recorders[0].end(time.monotonic(), 500, True)
    stats.worker_gone(gone, "crash")
    workers = [
        WorkerView(11, 1, m.snapshot(), 1000, True, 0.1),
        WorkerView(12, 2, idle.snapshot(), None, True, 0.1),
    ]
    return ServerView(
        10, 100.0, 5.0, workers, stats.departed, stats.restarts,
        [ListenerView("127.0.0.1:8000", "http", 3, 2048)],
        ready=True, healthy=True, num_workers=2,
    )  # fmt: skip


def test_prometheus_text() -> None:
    text = prometheus(_view()).decode()
    lines = text.splitlines()
    assert 'monoceros_requests_total{protocol="http",status="200"} 1' in lines
    assert 'monoceros_requests_total{protocol="uwsgi",status="500"} 1' in lines
    assert 'monoceros_request_duration_seconds_bucket{protocol="http",le="0.01"} 0' in lines
    assert 'monoceros_request_duration_seconds_bucket{protocol="http",le="0.025"} 1' in lines
    assert 'monoceros_request_duration_seconds_bucket{protocol="http",le="+Inf"} 1' in lines
    assert 'monoceros_request_duration_seconds_count{protocol="uwsgi"} 1' in lines
    assert 'monoceros_workers{state="busy"} 1' in lines
    assert 'monoceros_workers{state="idle"} 1' in lines
    assert 'monoceros_worker_requests_in_flight{worker="1"} 1' in lines
    assert 'monoceros_worker_restarts_total{reason="crash"} 1' in lines
    assert 'monoceros_worker_restarts_total{reason="memory"} 0' in lines
    assert 'monoceros_worker_rss_bytes{worker="1"} 1000' in lines
    assert 'monoceros_listen_queue{listener="127.0.0.1:8000"} 3' in lines
    for line in lines:  # every sample belongs to a declared family
        if not line.startswith("#"):
            name = line.split("{")[0].split(" ")[0]
            family = name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
            assert f"# TYPE {family} " in text, line


def test_stats_json() -> None:
    doc = json.loads(stats_json(_view()))
    assert doc["pid"] == 10 and doc["requests_total"] == 2
    busy, idle = doc["workers"]
    assert busy["state"] == "busy" and busy["requests"] == 1
    assert busy["current"] == {"method": "GET", "path": "/slow", "age_seconds": 10.0}
    assert idle["state"] == "idle" and idle["current"] is None
    assert doc["listeners"][0]["queue"] == 3


def test_listen_queue_of_a_tcp_listener() -> None:
    lst = socket.create_server(("127.0.0.1", 0), backlog=8)
    clients = [socket.create_connection(lst.getsockname()) for _ in range(3)]
    try:
        assert listen_queue(lst) == (3, 8)
    finally:
        for c in clients:
            c.close()
        lst.close()


# ------------------------------------------------------------------------- the stats listener


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _server(clock: _Clock, **kw: int) -> tuple[StatsServer, socket.socket]:
    lst = socket.create_server(("127.0.0.1", 0))
    routes = {"/metrics": lambda: (200, "text/plain", b"m 1\n")}
    return StatsServer(lst, routes, clock=clock, **kw), lst  # type: ignore[arg-type]


def _ask(srv: StatsServer, raw: bytes) -> bytes:
    c = socket.create_connection(srv.sock.getsockname())
    c.sendall(raw)
    c.setblocking(False)
    got = b""
    for _ in range(100):
        srv.wait([], 0.02)
        try:
            data = c.recv(65536)
        except BlockingIOError:
            continue
        if not data:
            break
        got += data
    c.close()
    return got


def test_stats_server_routes() -> None:
    clock = _Clock()
    srv, _ = _server(clock)
    ok = _ask(srv, b"GET /metrics?x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 ") and ok.endswith(b"\r\n\r\nm 1\n")
    head = _ask(srv, b"HEAD /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
    assert _ask(srv, b"GET /nope HTTP/1.1\r\nHost: a\r\n\r\n").startswith(b"HTTP/1.1 404 ")
    assert _ask(srv, b"POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").startswith(
        b"HTTP/1.1 405 "
    )
    assert _ask(srv, b"BAD\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert srv.open_connections == 0
    srv.close()


def test_stats_server_state_machine_with_socketpairs() -> None:
    """A head in pieces, a slow reader, a silent peer past its deadline, the cap."""
    clock = _Clock()
    srv, _ = _server(clock, max_connections=2)
    a, a_peer = socket.socketpair()
    b, b_peer = socket.socketpair()
    for s in (a, b):
        s.setblocking(False)
    srv._conns[a.fileno()] = _Conn(a, clock() + 2.0)
    srv._conns[b.fileno()] = _Conn(b, clock() + 2.0)
    readable, _, earliest = srv.wants()
    assert srv.sock.fileno() not in readable  # at the cap: the listener waits
    assert earliest == 102.0
    a_peer.sendall(b"GET /met")
    srv.serve_ready([a.fileno()])
    assert a.fileno() in srv._conns
    a_peer.sendall(b"rics HTTP/1.1\r\nHost: a\r\n\r\n")
    srv.serve_ready([a.fileno()])
    assert a.fileno() not in srv._conns  # answered and closed
    assert a_peer.recv(4096).startswith(b"HTTP/1.1 200 ")
    clock.now = 102.5  # b said nothing: closed at its deadline
    srv.expire()
    assert srv.open_connections == 0
    assert b_peer.recv(10) == b""
    for s in (a_peer, b_peer):
        s.close()
    srv.close()


def test_asgi_slot_cap() -> None:
    m = WorkerMetrics(MAX_SLOTS)
    assert m.slots == MAX_SLOTS
    m.close()
