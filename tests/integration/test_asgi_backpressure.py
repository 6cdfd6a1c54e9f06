"""The asgi worker against clients that send without reading, and other abuse of its memory:
pipelined requests, WebSocket pings and fragments, frames sent with the handshake, a client
resetting mid-upload. Each test runs the real ``monoceros -k asgi`` on loopback and bounds the
worker's resident memory (``VmRSS``) where memory is the point."""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from monoceros.protocols.websocket import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING
from monoceros.protocols.websocket import encode_frame as _frame

from conftest import Server, wait_for

MB = 1024 * 1024
ASGI = ["--worker-class", "asgi", "--workers", "1"]
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
UPGRADE = (
    "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


#: both event loops: their transports pause and resume a protocol's writing each their own way
LOOPS = pytest.mark.parametrize("loop", ["uvloop", "asyncio"])


def start(
    server: Callable[..., Server], app: str = "asgi_app:app", loop: str = "auto", **kw: Any
) -> Server:
    return server([*ASGI, "--asgi-loop", loop], app=app, **kw)


def worker_of(srv: Server) -> int:
    (pid,) = srv.wait_workers(1)
    return pid


def rss(pid: int) -> int:
    """Resident memory of process ``pid`` in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def growth(pid: int, before: int, what: str) -> int:
    """How much the worker's RSS grew since ``before``; printed (``pytest -s``) with ``what``."""
    grown = rss(pid) - before
    print(f"worker RSS {before / MB:.1f} MB, +{grown / MB:.2f} MB after {what}")
    return grown


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def settle(pid: int, timeout: float = 20.0) -> None:
    """Wait until the worker is idle: its CPU time did not move over the last 0.3 s."""
    last = cpu_ticks(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = cpu_ticks(pid)
        if now == last:
            return
        last = now
    raise AssertionError("the worker never went idle")


def small_client(srv: Server) -> socket.socket:
    """A client with small socket buffers, so what it does not read stays in the server."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    s.settimeout(10)
    s.connect(("127.0.0.1", srv.port))
    return s


def send_until_stalled(s: socket.socket, data: bytes, stall: float = 1.0) -> int:
    """Send ``data`` without reading; stop when the server stops reading (``stall`` seconds
    without room to send). Returns the bytes sent."""
    view = memoryview(data)
    sent = 0
    s.setblocking(False)
    try:
        while sent < len(data):
            if not select.select([], [s], [], stall)[1]:
                break
            try:
                sent += s.send(view[sent : sent + 65536])
            except BlockingIOError:
                continue
    finally:
        s.settimeout(10)
    return sent


def exact(s: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        data = s.recv(min(n - len(out), 1 << 20))
        if not data:
            raise ConnectionError(f"closed after {len(out)} of {n} bytes")
        out += data
    return bytes(out)


def read_head(s: socket.socket) -> bytes:
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        data = s.recv(1)
        assert data, head
        head += data
    return head


def ws_send(s: socket.socket, opcode: int, payload: bytes, fin: bool = True) -> None:
    s.sendall(_frame(opcode, payload, fin, mask=os.urandom(4)))


def ws_recv(s: socket.socket) -> tuple[int, bytes]:
    b0, b1 = exact(s, 2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(exact(s, 2), "big")
    elif n == 127:
        n = int.from_bytes(exact(s, 8), "big")
    return b0 & 0x0F, exact(s, n)


def ws_open(s: socket.socket, path: str = "/ws") -> None:
    s.sendall(UPGRADE.format(path=path).encode())
    assert read_head(s).startswith(b"HTTP/1.1 101")


# ----------------------------------------------------------------------------- pipelining


@LOOPS
def test_pipelined_requests_wait_while_the_client_does_not_read(
    server: Callable[..., Server], loop: str
) -> None:
    """1000 pipelined GETs for 100 kB each (45 kB sent) from a client that does not read: the
    next request is not started while the write buffer is full (was +100 MB, linear), and every
    response arrives, in order, once the client reads."""
    srv = start(server, loop=loop)
    pid = worker_of(srv)
    srv.get_ok("/bytes?n=100000")
    before = rss(pid)
    n, size = 1000, 100_000
    req = f"GET /bytes?n={size} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    with small_client(srv) as s:
        assert send_until_stalled(s, req * n) == len(req) * n  # 45 kB: the kernel takes it
        settle(pid)
        grown = growth(pid, before, "1000 pipelined requests unread")
        assert grown < 8 * MB, f"worker RSS grew by {grown / MB:.1f} MB"
        head = b"HTTP/1.1 200 OK\r\n"
        for i in range(n):
            response = read_head(s)
            assert response.startswith(head) and b"content-length: 100000" in response, i
            assert exact(s, size) == b"b" * size
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")  # the connection lives on
        assert read_head(s).startswith(head)
    assert "[ERROR]" not in srv.log(), srv.log()


# ----------------------------------------------------------------------------- WebSockets

FRAGMENT_LIMIT = 131072  # monoceros.protocols.websocket.MAX_FRAGMENTS


@LOOPS
def test_ping_flood_from_a_client_that_does_not_read(
    server: Callable[..., Server], loop: str
) -> None:
    """13 MB of pings, never reading the pongs: while writes are paused only the latest ping
    is answered and reading stops (was +16 MB). Once the client reads, the rest is served:
    pongs in order, the last ping answered, then the echo of a message sent after them."""
    srv = start(server, loop=loop)
    pid = worker_of(srv)
    count = 100_000
    pings = [i.to_bytes(4, "big") + os.urandom(121) for i in range(count)]
    flood = b"".join(_frame(OP_PING, p, mask=os.urandom(4)) for p in pings)  # 13.1 MB
    with small_client(srv) as s:
        ws_open(s)
        before = rss(pid)
        sent = send_until_stalled(s, flood)
        settle(pid)
        grown = growth(pid, before, f"{sent} bytes of pings, pongs unread")
        assert grown < 4 * MB, f"worker RSS grew by {grown / MB:.1f} MB ({sent} bytes sent)"
        assert sent < len(flood)  # the worker stopped reading
        frames: list[tuple[int, bytes]] = []
        reader = threading.Thread(target=read_until_binary, args=(s, frames), daemon=True)
        reader.start()
        s.sendall(flood[sent:] + _frame(OP_BINARY, b"still there", mask=os.urandom(4)))
        reader.join(30)
    assert frames[-1] == (OP_BINARY, b"still there"), frames[-3:]
    pongs = frames[:-1]
    assert all(op == 0xA for op, _ in pongs)
    numbers = [int.from_bytes(p[:4], "big") for _, p in pongs]
    assert numbers == sorted(set(numbers)) and numbers[-1] == count - 1
    assert all(p == pings[n] for n, (_, p) in zip(numbers, pongs, strict=True))
    assert len(pongs) < count  # most were never answered: a later one was
    assert "[ERROR]" not in srv.log(), srv.log()


def read_until_binary(s: socket.socket, frames: list[tuple[int, bytes]]) -> None:
    """Collect frames until a binary one (bounded: 200,000 frames)."""
    for _ in range(200_000):
        frames.append(ws_recv(s))
        if frames[-1][0] == OP_BINARY:
            return


def test_fragments_cost_their_payload_and_their_number_is_bounded(
    server: Callable[..., Server],
) -> None:
    """Eight messages of 65,000 one-byte fragments held open at once cost about their payload
    (was about 55 bytes a fragment: +28 MB here); a message in more than 131,072 frames — here
    zero-length continuations, which add nothing to its size — is closed with 1009 and a log
    line."""
    srv = start(server)
    pid = worker_of(srv)
    n = 65_000
    fragments = b"".join(_frame(OP_CONT, b"y", fin=False, mask=os.urandom(4)) for _ in range(n))
    clients = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(8)]
    try:
        for s in clients:
            ws_open(s)
        before = rss(pid)
        for i, s in enumerate(clients):
            ws_send(s, OP_BINARY, b"x", fin=False)
            s.sendall(fragments)
            ws_send(s, OP_PING, b"%d" % i)  # answered once the fragments before it are parsed
        for i, s in enumerate(clients):
            assert ws_recv(s) == (0xA, b"%d" % i)
        grown = growth(pid, before, "8 messages of 65,000 fragments")
        assert grown < 8 * MB, f"worker RSS grew by {grown / MB:.1f} MB"
        for s in clients:
            ws_send(s, OP_CONT, b"z")
            assert ws_recv(s) == (OP_BINARY, b"x" + b"y" * n + b"z")
    finally:
        for s in clients:
            s.close()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        ws_open(s)
        empty = _frame(OP_CONT, b"", fin=False, mask=os.urandom(4))
        ws_send(s, OP_BINARY, b"x", fin=False)
        s.sendall(empty * (FRAGMENT_LIMIT - 1))  # 131,072 frames: still allowed
        ws_send(s, OP_PING, b"alive")
        assert ws_recv(s) == (0xA, b"alive")
        s.sendall(empty)  # one more
        ws_send(s, OP_PING, b"never answered")
        assert ws_recv(s) == (OP_CLOSE, (1009).to_bytes(2, "big"))
    line = f"closed with 1009: message in more than the limit of {FRAGMENT_LIMIT} fragments"
    assert wait_for(lambda: line in srv.log(), 5), srv.log()
    assert "[ERROR]" not in srv.log(), srv.log()


def test_frames_sent_with_the_handshake_wait_for_the_answer(server: Callable[..., Server]) -> None:
    """A ping in the same write as the upgrade request is answered after the 101, never before
    it; a refused handshake (403) is all that is written."""
    srv = start(server)
    ping = _frame(OP_PING, b"client bytes", mask=os.urandom(4))
    text = _frame(0x1, b"hi", mask=os.urandom(4))
    with srv.connect() as s:
        s.sendall(UPGRADE.format(path="/ws").encode() + ping + text)
        assert read_head(s).startswith(b"HTTP/1.1 101")
        assert ws_recv(s) == (0xA, b"client bytes")
        assert ws_recv(s) == (0x1, b"hi")
    with srv.connect() as s:
        s.sendall(UPGRADE.format(path="/ws/deny").encode() + ping)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while data := s.recv(65536):
            answer += data
        assert answer.startswith(b"HTTP/1.1 403") and b"client bytes" not in answer, answer
        head, _, body = answer.partition(b"\r\n\r\n")
        assert len(body) == int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    assert "[ERROR]" not in srv.log(), srv.log()


# ----------------------------------------------------------------------------- leaving clients


def test_a_client_resetting_mid_upload_is_not_an_application_error(
    server: Callable[..., Server],
) -> None:
    """A POST announcing 1000 bytes, 10 sent, then a reset: Starlette's ``request.json()``
    raises ClientDisconnect on the ``http.disconnect`` it gets. That is the client leaving (one
    INFO line), not an application ERROR with a traceback."""
    srv = start(server, app="starlette_app:app")
    s = srv.connect()
    s.sendall(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n" + b'{"a": 12345'
    )
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    # (the peer is named only when the reset did not beat the accept: getpeername then fails)
    line = " left during POST /echo; the application then stopped with ClientDisconnect"
    assert wait_for(lambda: line in srv.log(), 10), srv.log()
    assert srv.request("/pid")[0] == 200
    log = srv.log()
    assert "[ERROR]" not in log and "Traceback" not in log, log
