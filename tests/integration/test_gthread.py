"""The gthread worker through the real command: keep-alive, pipelining, threads, limits, signals."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from conftest import (
    Server,
    listen_queue,
    slow_target,
    sockets_of,
    term_with_queued,
    wait_for,
    wait_started,
)
from uwsgi_support import body_of, exchange, good_env, packet, status_of

GTHREAD = ["-k", "gthread", "--threads", "4"]


def in_background(fn: Callable[[], object]) -> None:
    """Run ``fn`` in a daemon thread; its failure (a request cut by a stop) is expected."""

    def run() -> None:
        try:
            fn()
        except OSError:
            pass

    threading.Thread(target=run, daemon=True).start()


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes (bounded by ``timeout``)."""
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes ``sock`` (EOF or reset) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_keep_alive_reuses_one_connection(server: Callable[..., Server]) -> None:
    srv = server([*GTHREAD, "--workers", "1"])
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request("GET", "/env")
        first = conn.getresponse()
        env = json.loads(first.read())
        sock = conn.sock
        assert first.getheader("Connection") == "keep-alive"
        conn.request("POST", "/echo", body=b"x" * 100_000)
        second = conn.getresponse()
        assert json.loads(second.read())["len"] == 100_000
        assert conn.sock is sock  # the same TCP connection carried both
    finally:
        conn.close()
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_pipelined_requests_answered_in_order(server: Callable[..., Server]) -> None:
    srv = server([*GTHREAD, "--workers", "1"])
    raw = (
        b"GET /version HTTP/1.1\r\nHost: t\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /stream?mib=1 HTTP/1.1\r\nHost: t\r\n\r\n"
        b"GET /pid HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    with srv.connect() as s:
        s.sendall(raw)
        data = read_until_closed(s)
    assert data.count(b"HTTP/1.1 200 OK\r\n") == 4
    _, rest = data.split(b"\r\n\r\n", 1)
    assert rest.startswith(b"v1HTTP/1.1 200 OK")
    assert b'"len": 5' in rest
    assert b"Transfer-Encoding: chunked" in rest  # the stream has no Content-Length
    assert rest.rstrip().endswith(str(srv.workers()[0]).encode())
    assert rest.count(b"Connection: close") == 1


def test_streamed_body_is_chunked_for_http11_and_closes_for_http10(
    server: Callable[..., Server],
) -> None:
    srv = server([*GTHREAD, "--workers", "1"])
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request("GET", "/stream?mib=2")
        resp = conn.getresponse()
        assert resp.getheader("Transfer-Encoding") == "chunked"
        assert len(resp.read()) == 2 << 20
        conn.request("GET", "/pid")  # the connection is still usable after the last chunk
        assert conn.getresponse().read().isdigit()
    finally:
        conn.close()
    with srv.connect() as s:
        s.sendall(b"GET /stream?mib=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        data = read_until_closed(s)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Connection: close" in head and b"chunked" not in head
    assert len(body) == 1 << 20


def test_http10_keep_alive_when_asked_and_framed(server: Callable[..., Server]) -> None:
    srv = server([*GTHREAD, "--workers", "1"])
    with srv.connect() as s:
        s.sendall(b"GET /version HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        s.settimeout(10)
        data = b""
        while not data.endswith(b"\r\n\r\nv1"):  # the first answer, whole: not pipelined
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
        s.sendall(b"GET /version HTTP/1.0\r\n\r\n")
        data += read_until_closed(s)
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert data.count(b"Connection: keep-alive") == 1 and data.count(b"Connection: close") == 1


def test_threads_serve_concurrently(server: Callable[..., Server], workdir: Path) -> None:
    """Four requests are in the application at once: each holds until all four are in."""
    srv = server([*GTHREAD, "--workers", "1"], env={"HOLD_DIR": str(workdir)})
    results: list[object] = []
    names = [f"c{i}" for i in range(4)]

    def hold(name: str) -> None:
        results.append(srv.request(f"/hold?name={name}", timeout=40)[0])

    threads = [threading.Thread(target=hold, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    in_app = lambda: all((workdir / f"{n}.pid").exists() for n in names)  # noqa: E731
    assert wait_for(in_app, 15), srv.log()  # none can return before the four are in
    for n in names:
        (workdir / f"{n}.go").write_text("now")
    for t in threads:
        t.join(15)
    assert results == [200] * 4


def test_idle_keep_alive_connection_closed_after_keepalive(server: Callable[..., Server]) -> None:
    srv = server([*GTHREAD, "--workers", "1", "--keep-alive", "1"])
    with srv.connect() as s:
        s.sendall(b"GET /version HTTP/1.1\r\nHost: t\r\n\r\n")
        s.settimeout(5)
        assert s.recv(65536).startswith(b"HTTP/1.1 200 OK")
        t0 = time.monotonic()
        assert closed_within(s, 5)
        assert 0.7 < time.monotonic() - t0 < 3


def test_slow_head_dropped_after_header_timeout(server: Callable[..., Server]) -> None:
    srv = server([*GTHREAD, "--workers", "1", "--header-timeout", "1", "--keep-alive", "30"])
    with srv.connect() as s:
        s.sendall(b"GET /version HTTP/1.1\r\nHo")
        t0 = time.monotonic()
        assert closed_within(s, 5)
        assert 0.7 < time.monotonic() - t0 < 3
    assert srv.get_ok("/version") == b"v1"


def test_worker_connections_cap_stops_accepting(server: Callable[..., Server]) -> None:
    srv = server([*GTHREAD, "--workers", "1", "--worker-connections", "1", "--keep-alive", "30"])
    holder = srv.connect()  # accepted once wait_ready's own connection is counted out
    holder.sendall(b"GET /version HTTP/1.1\r\nHost: t\r\n\r\n")
    assert holder.recv(65536).startswith(b"HTTP/1.1 200 OK")  # now idle, kept alive
    waiting = srv.connect()
    waiting.sendall(b"GET /version HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert wait_for(lambda: listen_queue(srv.port) == 1, 10)  # left in the listen queue
    waiting.settimeout(1.0)  # and still there a second later: an idle period on purpose
    try:
        early = waiting.recv(65536)
    except TimeoutError:
        early = b""
    assert early == b""  # not accepted while the one allowed connection is open
    holder.close()
    rest = read_until_closed(waiting, 10)
    waiting.close()
    assert status_of(rest) == 200 and body_of(rest) == b"v1"


def test_term_lets_requests_in_flight_finish(server: Callable[..., Server]) -> None:
    srv = server([*GTHREAD, "--workers", "1", "--graceful-timeout", "10"])
    results: list[object] = []
    targets = [slow_target(srv, 1.5) for _ in range(2)]

    def slow(target: str) -> None:
        try:
            results.append(srv.request(target, timeout=10))
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=slow, args=(target,)) for target, _ in targets]
    for t in threads:
        t.start()
    for _, mark in targets:
        wait_started(mark)
    srv.signal(signal.SIGTERM)
    for t in threads:
        t.join(10)
    assert [r[0] for r in results] == [200, 200], results  # type: ignore[index]
    assert all(r[1]["connection"] == "close" for r in results)  # type: ignore[index]
    assert srv.wait_exit(10) == 0


def test_hung_request_reported_with_its_request_line(server: Callable[..., Server]) -> None:
    """gunicorn's semantics: one hung thread does not stop the worker; the request is logged
    once at WARNING (the stack is tested in test_stuck_stacks.py)."""
    srv = server([*GTHREAD, "--workers", "1", "--timeout", "1", "--graceful-timeout", "1"])
    victim = srv.wait_workers(1)[0]
    target, mark = slow_target(srv, 60)
    in_background(lambda: srv.request(target, timeout=60))
    wait_started(mark)
    line = f"the worker goes on serving: GET {target} HTTP/1.1 from 127.0.0.1\n"
    assert wait_for(lambda: line in srv.log(), 15), srv.log()
    assert srv.get_ok("/pid") == str(victim).encode()  # the other threads keep serving
    log = srv.log()
    assert f"[{victim}] [WARNING] Worker (pid:{victim}): request in flight for " in log, log
    assert "WORKER TIMEOUT" not in log and srv.workers() == [victim], log


def test_busy_worker_is_not_aborted(server: Callable[..., Server]) -> None:
    srv = server([*GTHREAD, "--workers", "1", "--timeout", "1"])
    victim = srv.wait_workers(1)[0]
    # a 1.5 s upload that keeps moving, and short requests: no timeout
    with srv.connect() as s:
        s.sendall(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\nConnection: close\r\n\r\n"
        )
        for _ in range(5):
            time.sleep(0.3)  # the client trickles: the scenario
            s.sendall(b"x" * 10)
        data = read_until_closed(s, 5)
    assert b'"len": 50' in data
    time.sleep(0.6)  # an idle period on purpose: room for a late verdict on the upload
    log = srv.log()
    assert srv.workers() == [victim] and "WORKER TIMEOUT" not in log, log
    assert "the worker goes on serving" not in log, log  # a request that moves is not stuck


def test_max_requests_recycles_the_worker(server: Callable[..., Server]) -> None:
    srv = server([*GTHREAD, "--workers", "1", "--max-requests", "4"])
    first = srv.get_ok("/pid")
    assert wait_for(lambda: srv.get_ok("/pid") != first, 10)
    assert "Autorestarting worker after current request." in srv.log()


def test_max_requests_counts_kept_alive_requests(server: Callable[..., Server]) -> None:
    srv = server([*GTHREAD, "--workers", "1", "--max-requests", "3"])
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    pids = set()
    try:
        for _ in range(2):
            conn.request("GET", "/pid")
            resp = conn.getresponse()
            pids.add(resp.read())
        assert resp.getheader("Connection") == "close"  # the last one before the restart
    finally:
        conn.close()
    assert wait_for(lambda: srv.get_ok("/pid") not in pids, 10)


def _uwsgi_server(
    server: Callable[..., Server], args: list[str], source: str | None = None
) -> Server:
    srv = server([*GTHREAD, "--protocol", "uwsgi", *args], wait=False)
    addr = ("127.0.0.1", srv.port)

    def up() -> bool:
        return status_of(exchange(addr, packet(good_env()), source=source, timeout=2)) == 200

    assert wait_for(up, 20), srv.log()
    return srv


def test_uwsgi_one_request_per_connection_and_silent(server: Callable[..., Server]) -> None:
    srv = _uwsgi_server(server, ["--workers", "1", "--log-level", "debug"])
    addr = ("127.0.0.1", srv.port)
    raw = exchange(addr, packet(good_env("/echo", b"abc", "POST"), b"abc"))
    assert status_of(raw) == 200 and b'"len": 3' in body_of(raw)
    head = raw.partition(b"\r\n\r\n")[0]
    assert b"Connection" not in head and b"Date" not in head  # the front end owns those
    # a pipelined second packet is not served: one request per connection, as the sync worker
    raw = exchange(addr, packet(good_env("/version")) + packet(good_env("/pid")))
    assert raw.count(b"HTTP/1.1 200") == 1 and body_of(raw) == b"v1"
    # a front end that connects and closes, or closes right after its request: nothing logged
    socket.create_connection(addr, timeout=5).close()
    target, mark = slow_target(srv, 0.2)
    with socket.create_connection(addr, timeout=5) as s:
        s.sendall(packet(good_env(target)))
    wait_started(mark)
    time.sleep(0.6)  # the reply meets a closed connection: an idle period for an error to show
    log = srv.log()
    assert "Traceback" not in log and "[ERROR]" not in log, log


def test_uwsgi_allow_list_and_malformed_packet(server: Callable[..., Server]) -> None:
    srv = _uwsgi_server(
        server, ["--workers", "1", "--uwsgi-allow-from", "127.0.0.2"], source="127.0.0.2"
    )
    addr = ("127.0.0.1", srv.port)
    assert status_of(exchange(addr, packet(good_env()), source="127.0.0.1")) == 403
    assert status_of(exchange(addr, packet(good_env()), source="127.0.0.2")) == 200
    assert status_of(exchange(addr, b"\x07\x04\x00\x00abcd", source="127.0.0.2")) == 501
    assert status_of(exchange(addr, b"\x00\x04\x00\x00abcd", source="127.0.0.2")) == 400
    assert "Forbidden uWSGI request from 127.0.0.1" in srv.log()
    assert "Invalid uWSGI header" in srv.log()


def test_uwsgi_requests_run_in_parallel(server: Callable[..., Server]) -> None:
    srv = _uwsgi_server(server, ["--workers", "1"])
    addr = ("127.0.0.1", srv.port)
    out: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: out.append(exchange(addr, packet(good_env("/slow?s=1")))))
        for _ in range(4)
    ]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert [body_of(r) for r in out] == [b"slept"] * 4
    assert time.monotonic() - t0 < 2.5


def test_uwsgi_packets_whole_late_or_in_pieces_over_a_unix_socket(
    server: Callable[..., Server], workdir: Path
) -> None:
    """The thread that accepts a connection whose packet is there serves it at once; one whose
    packet is still on its way (nothing at the accept, then two pieces) is read as it comes.
    A burst of connections queued together is taken in accept runs; a ping is answered, a
    connect-and-close is silent. (Over a UNIX socket: on TCP, deferred accept holds a
    connection in the kernel until its first bytes.)"""
    path = str(workdir / "gthread.sock")
    srv = server(
        [*GTHREAD, "--protocol", "uwsgi", "--workers", "1", "--log-level", "debug"],
        wait=False,
        bind=f"unix:{path}",
    )
    assert wait_for(lambda: status_of(exchange(path, packet(good_env()), timeout=2)) == 200, 20)
    worker = srv.wait_workers(1)[0]
    whole = packet(good_env("/echo", b"abc", "POST"), b"abc")
    before = sockets_of(worker)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as late:
        late.settimeout(10)
        late.connect(path)
        assert wait_for(lambda: sockets_of(worker) == before + 1, 10)  # accepted, nothing sent
        late.sendall(whole[:9])  # into the vars block
        time.sleep(0.1)  # the worker reads the first piece alone
        late.sendall(whole[9:])
        raw = read_until_closed(late)
    assert status_of(raw) == 200 and b'"len": 3' in body_of(raw), raw
    assert exchange(path, b"\x64\x00\x00\x00") == b"\x64\x00\x00\x01"
    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect(path)  # closed at once (GC)
    out: list[bytes] = []
    clients = [
        threading.Thread(target=lambda: out.append(exchange(path, whole))) for _ in range(40)
    ]
    for client in clients:
        client.start()
    for client in clients:
        client.join(20)
    assert len(out) == 40 and all(status_of(r) == 200 and b'"len": 3' in r for r in out)
    assert wait_for(lambda: sockets_of(worker) == before, 10)  # every connection closed
    log = srv.log()
    assert "Traceback" not in log and "[WARNING]" not in log and "[ERROR]" not in log, log


def test_term_serves_the_connections_already_queued(server: Callable[..., Server]) -> None:
    """At the worker_connections cap new connections wait in the listen queue; a graceful stop
    takes them and serves them instead of resetting them."""
    srv = server(
        [
            "-k",
            "gthread",
            "--threads",
            "1",
            "--worker-connections",
            "1",
            "--workers",
            "1",
            "--graceful-timeout",
            "10",
        ]
    )
    results = term_with_queued(
        srv,
        lambda target: srv.request(target, timeout=15)[0],
        lambda: srv.request("/echo", "POST", b"y" * 1000, timeout=15)[0],
    )
    assert results == [200] * 5, results
    assert srv.wait_exit(15) == 0
