"""The ASGI worker (``-k asgi``) run for real: HTTP/1.1 and uWSGI, nginx in front, WebSockets,
lifespan, deadlines, flow control, graceful stop and timeouts."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from monoceros.protocols.websocket import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT
from monoceros.protocols.websocket import encode_frame as _frame

from conftest import (
    APPS,
    Nginx,
    Server,
    free_port,
    listen_queue,
    slow_target,
    sockets_of,
    term_with_queued,
    wait_for,
    wait_started,
)
from uwsgi_support import body_of, exchange, good_env, nginx_uwsgi_params, packet, status_of

MiB = 1024 * 1024
BLOCK = bytes(range(256)) * 256
ASGI = ["--worker-class", "asgi"]
APP = "asgi_app:app"


def start(server: Callable[..., Server], args: list[str] | None = None, **kw: Any) -> Server:
    return server([*ASGI, *(args or [])], app=APP, **kw)


def clean(log: str) -> bool:
    return "[ERROR]" not in log and "Traceback" not in log and "[CRITICAL]" not in log


class _Reader:
    """Lets several http.client responses read one buffered stream (pipelining)."""

    def __init__(self, sock: socket.socket) -> None:
        self.f = sock.makefile("rb")

    def makefile(self, *args: Any, **kw: Any) -> Any:
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)

    def close(self) -> None:
        """A response is done; the stream goes on."""


def read_one(reader: _Reader, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    resp = http.client.HTTPResponse(reader, method=method)  # type: ignore[arg-type]
    resp.begin()
    body = resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


# ----------------------------------------------------------------------------- HTTP/1.1


def test_keepalive_pipelining_chunked_and_no_body_statuses(server: Callable[..., Server]) -> None:
    srv = start(server)
    with srv.connect() as s:
        reader = _Reader(s)
        s.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n" * 3)  # pipelined
        pids = {read_one(reader)[2] for _ in range(3)}
        assert len(pids) == 1
        s.sendall(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        st, _, body = read_one(reader)
        assert (
            st == 200 and json.loads(body)["sha256"] == hashlib.sha256(b"hello world").hexdigest()
        )
        s.sendall(b"GET /stream?mib=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        st, hdrs, body = read_one(reader)
        assert hdrs.get("transfer-encoding") == "chunked" and body == BLOCK * 16
        s.sendall(b"HEAD /pid HTTP/1.1\r\nHost: t\r\n\r\n")
        st, hdrs, body = read_one(reader, "HEAD")
        assert st == 200 and body == b""
        for code in (204, 304):
            s.sendall(f"GET /status?code={code} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            st, hdrs, body = read_one(reader)
            assert st == code and body == b"" and "content-length" not in hdrs
        s.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        st, hdrs, _ = read_one(reader)
        assert hdrs["connection"] == "close" and s.recv(10) == b""
    assert clean(srv.log()), srv.log()


def test_expect_100_continue_is_sent_when_the_app_reads(server: Callable[..., Server]) -> None:
    srv = start(server)
    with srv.connect() as s:
        s.sendall(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
        )
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"abc")
        st, _, body = read_one(_Reader(s))
        assert st == 200 and json.loads(body)["len"] == 3


def test_16mib_upload_slow_reader_and_32mib_download(server: Callable[..., Server]) -> None:
    srv = start(server)
    payload = os.urandom(16 * MiB)
    st, _, body = srv.request("/echo?delay=0.005", "POST", payload, timeout=60)
    assert st == 200 and json.loads(body) == {
        "len": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    conn.request("GET", "/stream?mib=32")
    data = conn.getresponse().read()
    conn.close()
    assert len(data) == 32 * MiB and data == BLOCK * 16 * 32
    assert clean(srv.log()), srv.log()


def test_header_injection_is_refused(server: Callable[..., Server]) -> None:
    srv = start(server)
    st, hdrs, _ = srv.request("/inject")
    assert st == 500 and "set-cookie" not in hdrs
    assert wait_for(lambda: "header injection refused" in srv.log(), 5)
    st, _, _body = srv.request("/raise")
    assert st == 500
    assert wait_for(lambda: "deliberate failure" in srv.log(), 5)


def test_disconnect_reaches_the_app(server: Callable[..., Server], workdir: Path) -> None:
    events = workdir / "events"
    srv = start(server, env={"ASGI_EVENTS": str(events)})
    with srv.connect() as s:
        s.sendall(b"GET /disconnect HTTP/1.1\r\nHost: t\r\n\r\n")
        assert wait_for(lambda: events.exists() and "http-waiting 0" in events.read_text(), 10)
    assert wait_for(lambda: "http-disconnect" in events.read_text(), 5)
    assert wait_for(lambda: "http-answered" in events.read_text(), 5)  # a late send is dropped
    assert srv.request("/pid")[0] == 200
    assert clean(srv.log()), srv.log()


def test_header_deadline_closes_silent_and_slow_clients(server: Callable[..., Server]) -> None:
    srv = start(server, ["--header-timeout", "1"])
    silent, partial = srv.connect(), srv.connect()
    partial.sendall(b"GET /pid HTTP/1.1\r\nHost:")
    t0 = time.monotonic()
    assert silent.recv(10) == b"" and partial.recv(10) == b""
    assert 0.8 < time.monotonic() - t0 < 3.5
    silent.close()
    partial.close()
    assert srv.get_ok("/pid")
    assert clean(srv.log())


def test_keepalive_idle_timeout(server: Callable[..., Server]) -> None:
    srv = start(server, ["--keep-alive", "1"])
    with srv.connect() as s:
        s.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = _Reader(s)
        assert read_one(reader)[0] == 200
        t0 = time.monotonic()
        assert s.recv(10) == b""
        assert 0.8 < time.monotonic() - t0 < 3.5


def test_worker_connections_is_a_cap(server: Callable[..., Server]) -> None:
    srv = start(server, ["--worker-connections", "2", "--workers", "1"])
    busy = [srv.connect(), srv.connect()]
    marks = []
    for s in busy:
        target, mark = slow_target(srv, 1.5)
        marks.append(mark)
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    for mark in marks:
        wait_started(mark)  # both slots are taken
    third: list[bytes] = []
    t = threading.Thread(target=lambda: third.append(srv.get_ok("/pid")), daemon=True)
    t.start()
    assert wait_for(lambda: listen_queue(srv.port) == 1, 10)  # waits in the backlog
    assert third == []  # not answered while both slots are taken
    for s in busy:
        assert status_of(s.recv(4096)) == 200
        s.close()
    t.join(15)  # then a slot frees and it is served
    assert len(third) == 1 and third[0], third


def test_max_requests_restarts_the_worker(server: Callable[..., Server]) -> None:
    srv = start(server, ["--max-requests", "3", "--workers", "1"])
    pids = {srv.get_ok("/pid")}

    def restarted() -> bool:
        pids.add(srv.get_ok("/pid"))
        return len(pids) > 1

    assert wait_for(restarted, 15), srv.log()
    assert "Autorestarting worker after current request." in srv.log()


def test_blocked_loop_gets_the_worker_replaced(server: Callable[..., Server]) -> None:
    srv = start(server, ["--timeout", "1", "--workers", "1"])  # the least: the test waits it out
    before = srv.get_ok("/pid")
    with pytest.raises(OSError):
        srv.request("/block?s=30", timeout=8)
    assert wait_for(lambda: "WORKER TIMEOUT" in srv.log(), 10), srv.log()
    assert wait_for(lambda: "blocked by the handler of GET /block?s=30" in srv.log(), 5), srv.log()
    assert wait_for(lambda: srv.get_ok("/pid") != before, 10)


# ----------------------------------------------------------------------------- lifespan


def test_lifespan_once_per_worker_and_graceful_term(
    server: Callable[..., Server], workdir: Path
) -> None:
    events = workdir / "events"
    srv = start(server, ["--workers", "2"], env={"ASGI_EVENTS": str(events)})
    pids = set(srv.wait_workers(2))
    assert wait_for(lambda: events.exists() and len(events.read_text().splitlines()) == 2, 10)
    state = json.loads(srv.get_ok("/state"))
    assert state["started_by"] in pids
    slow = srv.connect()
    target, mark = slow_target(srv, 1)
    slow.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    wait_started(mark)
    srv.signal(signal.SIGTERM)
    assert status_of(slow.recv(4096)) == 200  # in flight: finished, not cut
    slow.close()
    assert srv.wait_exit(15) == 0
    lines = events.read_text().split("\n")
    for pid in pids:
        assert lines.count(f"startup {pid}") == 1, lines
        assert lines.count(f"shutdown {pid}") == 1, lines
    assert clean(srv.log()), srv.log()


@pytest.mark.parametrize("protocol", ["http", "uwsgi"])
def test_term_serves_the_connections_already_queued(
    server: Callable[..., Server], protocol: str
) -> None:
    """At the worker_connections cap new connections wait in the listen queue; a graceful stop
    takes them in and serves them instead of leaving them to be reset (nginx would answer 502
    and not retry a POST)."""
    srv = start(
        server,
        [
            "--worker-connections",
            "1",
            "--workers",
            "1",
            "--graceful-timeout",
            "10",
            "--protocol",
            protocol,
        ],
        wait=False,
    )
    addr = ("127.0.0.1", srv.port)

    def request(path: str, body: bytes = b"") -> bytes:
        if protocol == "uwsgi":
            payload = packet(good_env(path, body, "POST" if body else "GET"), body)
        else:
            method = "POST" if body else "GET"
            payload = (
                f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body
        return exchange(addr, payload, timeout=15)

    assert wait_for(lambda: status_of(request("/pid")) == 200, 20), srv.log()
    results = term_with_queued(srv, request, lambda: request("/echo", b"q" * 1000))
    assert [status_of(r) if isinstance(r, bytes) else r for r in results] == [200] * 5, results
    assert srv.wait_exit(15) == 0
    assert clean(srv.log()), srv.log()


@pytest.mark.parametrize("protocol", ["http", "uwsgi"])
def test_term_still_serves_a_new_connections_first_request(
    server: Callable[..., Server], workdir: Path, protocol: str
) -> None:
    """A connection accepted just before the stop (its request still on the way, as when
    nginx has just connected) gets its request served; a kept-alive idle one is closed.
    (Over a UNIX socket: on TCP, deferred accept keeps such a connection in the kernel until
    its bytes arrive.)"""
    path = str(workdir / "asgi.sock")
    srv = start(
        server,
        ["--workers", "1", "--graceful-timeout", "10", "--protocol", protocol],
        wait=False,
        bind=f"unix:{path}",
    )
    addr = path
    ready = (
        packet(good_env("/pid"))
        if protocol == "uwsgi"
        else (b"GET /pid HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    )
    assert wait_for(lambda: status_of(exchange(addr, ready, timeout=2)) == 200, 20), srv.log()

    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(addr)
        return sock

    idle = None
    if protocol == "http":
        idle = connect()
        idle.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
        assert status_of(idle.recv(4096)) == 200  # kept alive, now idle
    worker = srv.wait_workers(1)[0]
    before = sockets_of(worker)
    fresh = connect()
    assert wait_for(lambda: sockets_of(worker) == before + 1, 10)  # accepted, nothing sent yet
    srv.signal(signal.SIGTERM)
    if idle is not None:
        assert idle.recv(4096) == b""  # the stop is under way: it closed the idle one
        idle.close()
    else:
        time.sleep(0.3)  # the stop under way (uwsgi has no idle connection to observe it by)
    fresh.sendall(ready)
    chunks = []
    while True:
        data = fresh.recv(65536)
        if not data:
            break
        chunks.append(data)
    fresh.close()
    assert status_of(b"".join(chunks)) == 200, chunks
    assert srv.wait_exit(15) == 0


def test_failed_startup_stops_the_master(server: Callable[..., Server]) -> None:
    srv = start(server, env={"ASGI_FAIL_STARTUP": "no database"}, wait=False)
    assert srv.wait_exit(20) == 3
    log = srv.log()
    assert "Application startup failed: no database" in log
    assert "Worker failed to boot." in log


# ----------------------------------------------------------------------------- WebSockets


def ws_open(sock: socket.socket, path: str = "/ws", extra: str = "") -> bytes:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(1)
        assert data, head
        head += data
    return head


def ws_send(sock: socket.socket, opcode: int, payload: bytes, fin: bool = True) -> None:
    sock.sendall(_frame(opcode, payload, fin, mask=os.urandom(4)))


def _exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        data = sock.recv(n - len(out))
        if not data:
            raise ConnectionError("closed")
        out += data
    return out


def ws_recv(sock: socket.socket) -> tuple[int, bytes]:
    b0, b1 = _exact(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(_exact(sock, 2), "big")
    elif n == 127:
        n = int.from_bytes(_exact(sock, 8), "big")
    assert not b1 & 0x80  # server frames are never masked
    return b0 & 0x0F, _exact(sock, n)


def ws_session(sock: socket.socket, path: str = "/ws") -> None:
    """Echo, fragmentation, ping/pong, binary, a large message, then the server's close."""
    head = ws_open(sock, path)
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    ws_send(sock, OP_TEXT, "héllo".encode())
    assert ws_recv(sock) == (OP_TEXT, "héllo".encode())
    ws_send(sock, OP_TEXT, b"frag", fin=False)
    ws_send(sock, OP_PING, b"p1")  # a control frame between fragments
    ws_send(sock, OP_CONT, b"ment", fin=False)
    ws_send(sock, OP_CONT, b"ed")
    assert ws_recv(sock) == (0xA, b"p1")
    assert ws_recv(sock) == (OP_TEXT, b"fragmented")
    big = os.urandom(300_000)
    ws_send(sock, OP_BINARY, big)
    assert ws_recv(sock) == (OP_BINARY, big)
    ws_send(sock, OP_TEXT, b"close")
    op, payload = ws_recv(sock)
    assert op == OP_CLOSE and payload == (4001).to_bytes(2, "big") + b"asked"
    ws_send(sock, OP_CLOSE, payload[:2])


def test_websocket_echo_direct(server: Callable[..., Server], workdir: Path) -> None:
    events = workdir / "events"
    srv = start(server, ["--ws-max-message-size", "400000"], env={"ASGI_EVENTS": str(events)})
    with srv.connect() as s:
        ws_session(s)
    with srv.connect() as s:  # client-initiated close: echoed with the same code
        ws_open(s)
        ws_send(s, OP_CLOSE, (1000).to_bytes(2, "big"))
        assert ws_recv(s) == (OP_CLOSE, (1000).to_bytes(2, "big"))
    assert wait_for(lambda: "ws-disconnect-1000" in events.read_text(), 5)
    with srv.connect() as s:  # too large: 1009
        ws_open(s)
        ws_send(s, OP_BINARY, b"x" * 400_001)
        assert ws_recv(s) == (OP_CLOSE, (1009).to_bytes(2, "big"))
    with srv.connect() as s:  # unmasked client frame: protocol error 1002
        ws_open(s)
        s.sendall(_frame(OP_TEXT, b"naked"))
        assert ws_recv(s) == (OP_CLOSE, (1002).to_bytes(2, "big"))
    with srv.connect() as s:
        assert ws_open(s, "/ws/deny").startswith(b"HTTP/1.1 403")
    with srv.connect() as s:
        ws_open(s, "/ws/scope", "Sec-WebSocket-Protocol: chat, other\r\n")
        scope = json.loads(ws_recv(s)[1])
        assert scope["type"] == "websocket" and scope["scheme"] == "ws"
        assert scope["subprotocols"] == ["chat", "other"]
    assert clean(srv.log()), srv.log()


def test_websocket_handshakes_are_in_the_access_log(server: Callable[..., Server]) -> None:
    """One access log line per handshake: 101 when accepted, 403 when the app refuses, 400 for
    a bad handshake (the WebSocket's own lifetime is not a request)."""
    srv = start(
        server,
        [
            "--access-logfile",
            "-",
            "--access-logformat",
            'ws %(m)s "%(U)s" %(s)s %({sec-websocket-protocol}o)s',
        ],
    )
    with srv.connect() as s:
        ws_open(s, "/ws/scope", "Sec-WebSocket-Protocol: chat\r\n")
    with srv.connect() as s:
        assert ws_open(s, "/ws/deny").startswith(b"HTTP/1.1 403")
    with srv.connect() as s:
        s.sendall(
            b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert s.recv(4096).startswith(b"HTTP/1.1 400")
    expected = ['ws GET "/ws/scope" 101 chat', 'ws GET "/ws/deny" 403 -', 'ws GET "/ws" 400 -']
    assert wait_for(lambda: all(line in srv.log() for line in expected), 5), srv.log()
    lines = [line for line in srv.log().splitlines() if line.startswith('ws GET "/ws')]
    assert lines == expected, lines


def test_websocket_going_away_on_graceful_stop(server: Callable[..., Server]) -> None:
    srv = start(server)
    with srv.connect() as s:
        ws_open(s)
        ws_send(s, OP_TEXT, b"x")
        assert ws_recv(s) == (OP_TEXT, b"x")
        srv.signal(signal.SIGTERM)
        assert ws_recv(s) == (OP_CLOSE, (1001).to_bytes(2, "big"))
        ws_send(s, OP_CLOSE, (1001).to_bytes(2, "big"))
        assert s.recv(10) == b""
    assert srv.wait_exit(10) == 0
    assert clean(srv.log()), srv.log()


WS_PROXY = """
location / {
    proxy_pass http://backend;
    proxy_http_version 1.1;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection "upgrade";
    proxy_set_header Host $host;
}"""

WS_UWSGI = """
location / {{
    include {params};
    uwsgi_pass backend;
}}"""


def test_websocket_through_nginx_proxy_pass(
    server: Callable[..., Server], nginx: Callable[..., Nginx]
) -> None:
    srv = start(server)
    ngx = nginx(WS_PROXY, f"127.0.0.1:{srv.port}")
    with socket.create_connection(("127.0.0.1", ngx.port), timeout=10) as s:
        ws_session(s)
    assert clean(srv.log()), srv.log()


# ----------------------------------------------------------------------------- uWSGI


def uwsgi_server(
    server: Callable[..., Server], args: list[str] | None = None, **kw: Any
) -> tuple[Server, tuple[str, int]]:
    srv = start(server, ["--protocol", "uwsgi", *(args or [])], wait=False, **kw)
    addr = ("127.0.0.1", srv.port)
    assert wait_for(lambda: status_of(exchange(addr, packet(good_env()), timeout=2)) == 200, 20), (
        srv.log()
    )
    return srv, addr


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_uwsgi_through_nginx(
    server: Callable[..., Server], nginx: Callable[..., Nginx], workdir: Path, transport: str
) -> None:
    if transport == "unix":
        sock = workdir / "asgi-uwsgi.sock"
        srv = start(server, ["--protocol", "uwsgi"], wait=False, bind=f"unix:{sock}")
        assert wait_for(
            lambda: status_of(exchange(str(sock), packet(good_env()), timeout=2)) == 200, 20
        ), srv.log()
        upstream = f"unix:{sock}"
    else:
        srv, _ = uwsgi_server(server)
        upstream = f"127.0.0.1:{srv.port}"
    ngx = nginx(WS_UWSGI.format(params=nginx_uwsgi_params()), upstream)
    st, _, body = ngx.request("/caf%C3%A9/%2561?q=%20", headers={"X-A": "1", "Cookie": "c=1"})
    scope = json.loads(body)
    assert st == 200
    assert scope["path"] == "/café/%61" and scope["raw_path"] == "/caf%C3%A9/%2561"
    assert scope["query_string"] == "q=%20" and scope["root_path"] == ""
    assert scope["client"][0] == "127.0.0.1" and scope["scheme"] == "http"
    headers = dict(scope["headers"])
    assert headers["x-a"] == "1" and headers["cookie"] == "c=1"
    # nginx sends a body's two headers twice (CONTENT_* and HTTP_CONTENT_*): each once here
    st, _, body = ngx.request("/posted", "POST", b"hello", headers={"Content-Type": "text/plain"})
    fields = json.loads(body)["headers"]
    assert st == 200 and [v for n, v in fields if n == "content-length"] == ["5"], fields
    assert [v for n, v in fields if n == "content-type"] == ["text/plain"], fields
    payload = os.urandom(16 * MiB)
    st, _, body = ngx.request("/echo?delay=0.005", "POST", payload, timeout=60)
    assert st == 200 and json.loads(body)["sha256"] == hashlib.sha256(payload).hexdigest()
    st, _, body = ngx.request("/stream?mib=32", timeout=60)
    assert st == 200 and body == BLOCK * 16 * 32
    st, _, body = ngx.request("/pid", "HEAD")
    assert st == 200 and body == b""
    with socket.create_connection(("127.0.0.1", ngx.port), timeout=10) as s:
        ws_session(s)  # a WebSocket through uwsgi_pass: the 101 turns the socket into a tunnel
    for _ in range(50):
        assert ngx.request("/pid")[0] == 200
    assert clean(srv.log()) and "[WARNING]" not in srv.log(), srv.log()
    assert "[error]" not in ngx.error_log(), ngx.error_log()


def test_uwsgi_scope_from_raw_packets(server: Callable[..., Server]) -> None:
    _srv, addr = uwsgi_server(server)
    env = {
        **good_env("/m/x/caf\u00c3\u00a9"),
        "SCRIPT_NAME": "/m",
        "HTTPS": "on",
        "REQUEST_URI": "/m/x/caf%C3%A9?a=1",
        "QUERY_STRING": "a=1",
        "CONTENT_TYPE": "text/plain",
        "HTTP_X_FORWARDED_FOR": "1.2.3.4",
    }
    raw = exchange(addr, packet(env))
    assert b"Transfer-Encoding" not in raw.partition(b"\r\n\r\n")[0]
    scope = json.loads(body_of(raw))
    assert scope["root_path"] == "/m" and scope["path"] == "/m/x/café"
    assert scope["raw_path"] == "/m/x/caf%C3%A9" and scope["scheme"] == "https"
    assert scope["client"] == ["10.9.8.7", 4242] and scope["server"] == ["test", 80]
    assert ["content-type", "text/plain"] in scope["headers"]
    assert ["x-forwarded-for", "1.2.3.4"] in scope["headers"]
    raw = exchange(addr, packet(good_env("/stream?mib=1")))
    assert body_of(raw) == BLOCK * 16  # close-delimited, never chunked
    assert exchange(addr, b"\x64\x00\x00\x00") == b"\x64\x00\x00\x01"


@pytest.mark.parametrize(
    "data,status,reason",
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 501, "looks like HTTP"),
        (b"\x00\x05\x00\x00\xff\xff\xff\xff\xff", 400, "overruns"),
        (packet({"REQUEST_METHOD": "GE T", "PATH_INFO": "/"}), 400, "REQUEST_METHOD"),
    ],
)
def test_uwsgi_malformed_packets_and_allow_list(
    server: Callable[..., Server], data: bytes, status: int, reason: str
) -> None:
    srv, addr = uwsgi_server(server)
    assert status_of(exchange(addr, data)) == status
    assert wait_for(lambda: "[WARNING] Invalid uWSGI header:" in srv.log(), 5)
    line = next(x for x in srv.log().splitlines() if "Invalid uWSGI header" in x)
    assert reason in line and line.endswith("from 127.0.0.1"), line
    raw = exchange(addr, packet(good_env()), source="127.0.0.2")
    assert status_of(raw) == 403 and body_of(raw).startswith(b"Forbidden")
    assert wait_for(lambda: "[WARNING] Forbidden uWSGI request from 127.0.0.2" in srv.log(), 5)
    assert status_of(exchange(addr, packet(good_env()))) == 200
    assert clean(srv.log()), srv.log()


# ----------------------------------------------------------------------------- a real framework


def test_starlette_app(server: Callable[..., Server], nginx: Callable[..., Nginx]) -> None:
    import starlette  # noqa: F401  (a test dependency: missing it must fail, not skip)

    assert (APPS / "starlette_app.py").exists()
    hp, up = free_port(), free_port()
    srv = server(
        [*ASGI, "--bind", f"uwsgi://127.0.0.1:{up}", "--bind", f"http://127.0.0.1:{hp}"],
        app="starlette_app:app",
        bind=f"127.0.0.1:{hp}",
    )
    st, _, body = srv.request("/items/42?q=x")
    assert st == 200 and json.loads(body) == {"item": 42, "q": "x", "started": True}
    st, _, body = srv.request(
        "/echo", "POST", b'{"a": [1, 2]}', headers={"Content-Type": "application/json"}
    )
    assert st == 200 and json.loads(body) == {"got": {"a": [1, 2]}}
    assert srv.request("/missing")[0] == 404
    with srv.connect() as s:
        assert ws_open(s, "/ws").startswith(b"HTTP/1.1 101")
        ws_send(s, OP_TEXT, b"hi")
        assert ws_recv(s) == (OP_TEXT, b"echo: hi")
    ngx = nginx(WS_UWSGI.format(params=nginx_uwsgi_params()), f"127.0.0.1:{up}")
    st, _, body = ngx.request("/items/7")
    assert st == 200 and json.loads(body)["item"] == 7
    assert clean(srv.log()), srv.log()
