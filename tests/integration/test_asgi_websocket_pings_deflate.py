"""WebSocket keepalive pings, permessage-deflate and the Autobahn strictness details of the asgi
worker, run for real: raw-socket clients for the wire, the ``websockets`` library as a real
client with compression, both event loops."""

from __future__ import annotations

import asyncio
import os
import select
import socket
import time
import zlib
from collections.abc import Callable

import pytest
import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from monoceros.protocols.websocket import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    encode_frame,
)

from conftest import Server, wait_for

APP = "asgi_app:app"
LOOPS = pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
#: pings are the sweep's (a timer, the same under either loop): one loop for their variations
ONE_LOOP = pytest.mark.parametrize("loop", ["uvloop"])
TAIL = b"\x00\x00\xff\xff"


def start(server: Callable[..., Server], loop: str, *args: str) -> Server:
    return server(["-k", "asgi", "--asgi-loop", loop, *args], app=APP)


def ws_open(srv: Server, extensions: str = "") -> tuple[socket.socket, bytes]:
    s = srv.connect()
    extra = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else ""
    s.sendall(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        + extra.encode()
        + b"\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        data = s.recv(1)
        assert data, head
        head += data
    assert head.startswith(b"HTTP/1.1 101"), head
    return s, head


def send(
    s: socket.socket, opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False
) -> None:
    s.sendall(encode_frame(opcode, payload, fin, mask=os.urandom(4), rsv1=rsv1))


def exact(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        data = s.recv(n - len(out))
        if not data:
            raise ConnectionError(f"closed after {out!r}")
        out += data
    return out


def recv(s: socket.socket) -> tuple[int, bool, bytes]:
    """One server frame: (opcode, rsv1, payload)."""
    b0, b1 = exact(s, 2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(exact(s, 2), "big")
    elif n == 127:
        n = int.from_bytes(exact(s, 8), "big")
    assert not b1 & 0x80 and not b0 & 0x30
    return b0 & 0x0F, bool(b0 & 0x40), exact(s, n)


def close_code(payload: bytes) -> int:
    return int.from_bytes(payload[:2], "big")


# ----------------------------------------------------------------------------- pings


@LOOPS
def test_a_client_that_never_answers_is_closed_with_1011(
    server: Callable[..., Server], loop: str
) -> None:
    srv = start(server, loop, "--ws-ping-interval", "0.5", "--ws-ping-timeout", "0.5")
    s, _ = ws_open(srv)
    opened = time.monotonic()
    with s:
        op, _, _ = recv(s)
        assert op == OP_PING
        assert time.monotonic() - opened >= 0.45  # not before the interval of silence
        op, _, payload = recv(s)  # never answered: closed
        assert op == OP_CLOSE and close_code(payload) == 1011
        assert payload[2:] == b"keepalive ping timeout"
        assert time.monotonic() - opened >= 0.95  # interval + timeout
        assert s.recv(10) == b""
    assert wait_for(lambda: "closed with 1011: no answer to a ping" in srv.log(), 5)


@ONE_LOOP
def test_a_client_that_answers_stays_open(server: Callable[..., Server], loop: str) -> None:
    srv = start(server, loop, "--ws-ping-interval", "0.3", "--ws-ping-timeout", "0.3")
    s, _ = ws_open(srv)
    with s:
        for _ in range(4):  # four pings, each answered in time
            op, _, payload = recv(s)
            assert op == OP_PING
            send(s, OP_PONG, payload)
        send(s, OP_TEXT, b"alive")
        frames = [recv(s)]
        while frames[-1][0] == OP_PING:  # a ping may cross the message
            send(s, OP_PONG, frames[-1][2])
            frames.append(recv(s))
        assert frames[-1] == (OP_TEXT, False, b"alive")
    assert "1011" not in srv.log()


@ONE_LOOP
def test_a_busy_connection_is_never_pinged(server: Callable[..., Server], loop: str) -> None:
    srv = start(server, loop, "--ws-ping-interval", "0.5", "--ws-ping-timeout", "5")
    s, _ = ws_open(srv)
    with s:
        for i in range(20):  # a message every 0.1 s for 2 s: four intervals
            send(s, OP_TEXT, b"msg %d" % i)
            assert recv(s) == (OP_TEXT, False, b"msg %d" % i)
            assert select.select([s], [], [], 0.1)[0] == []  # and nothing else, no ping
        op, _, _ = recv(s)  # once it goes quiet, the ping comes
        assert op == OP_PING


@ONE_LOOP
def test_interval_0_disables_pings(server: Callable[..., Server], loop: str) -> None:
    srv = start(server, loop, "--ws-ping-interval", "0", "--ws-ping-timeout", "0.2")
    s, _ = ws_open(srv)
    with s:  # the sweep runs every 0.1 s (half the ping timeout): ten sweeps, no ping
        assert select.select([s], [], [], 1.0)[0] == []
        send(s, OP_TEXT, b"x")
        assert recv(s) == (OP_TEXT, False, b"x")


# ----------------------------------------------------------------------------- permessage-deflate


@LOOPS
def test_compressed_bytes_on_the_wire(server: Callable[..., Server], loop: str) -> None:
    srv = start(server, loop)
    s, head = ws_open(srv, "permessage-deflate; client_max_window_bits; server_max_window_bits=10")
    assert b"sec-websocket-extensions: permessage-deflate; server_max_window_bits=10\r\n" in head
    text = ("monoceros says hello; " * 200).encode()
    client = zlib.compressobj(wbits=-15)
    inflate = zlib.decompressobj(-10)  # the window the client asked the server to keep to
    with s:
        for _ in range(2):  # the second message refers back to the first (context takeover)
            compressed = client.compress(text) + client.flush(zlib.Z_SYNC_FLUSH)
            send(s, OP_TEXT, compressed[:-4], rsv1=True)
            op, rsv1, payload = recv(s)
            assert op == OP_TEXT and rsv1
            assert len(payload) < len(text) / 10  # chatty text: a fraction of the bytes
            assert inflate.decompress(payload + TAIL) == text
        send(s, OP_BINARY, b"plain", rsv1=False)  # an uncompressed message is fine too
        op, rsv1, payload = recv(s)
        assert op == OP_BINARY and rsv1 and inflate.decompress(payload + TAIL) == b"plain"


@LOOPS
def test_off_negotiates_nothing_and_rsv1_is_then_1002(
    server: Callable[..., Server], loop: str
) -> None:
    srv = start(server, loop, "--ws-per-message-deflate", "false")
    s, head = ws_open(srv, "permessage-deflate; client_max_window_bits")
    assert b"sec-websocket-extensions" not in head.lower()
    with s:
        send(s, OP_TEXT, b"x")
        assert recv(s) == (OP_TEXT, False, b"x")
        send(s, OP_TEXT, b"\xf2\x48\xcd\xc9\xc9\x07\x00", rsv1=True)
        op, _, payload = recv(s)
        assert op == OP_CLOSE and close_code(payload) == 1002


def test_a_zip_bomb_closes_with_1009_and_one_log_line(server: Callable[..., Server]) -> None:
    srv = start(server, "auto", "--ws-max-message-size", "1048576")
    s, _ = ws_open(srv, "permessage-deflate")
    deflate = zlib.compressobj(wbits=-15)
    bomb = deflate.compress(b"\x00" * (64 << 20)) + deflate.flush(zlib.Z_SYNC_FLUSH)
    with s:
        send(s, OP_BINARY, bomb[:-4], rsv1=True)  # 64 KiB that would inflate to 64 MiB
        op, _, payload = recv(s)
        assert op == OP_CLOSE and close_code(payload) == 1009
    line = "closed with 1009: message larger than the limit of 1048576 bytes once inflated"
    assert wait_for(lambda: line in srv.log(), 5)
    assert srv.log().count("closed with 1009") == 1
    assert srv.get_ok("/pid")  # the worker serves on


@LOOPS
def test_the_websockets_client_with_compression(server: Callable[..., Server], loop: str) -> None:
    srv = start(server, loop)

    async def talk(factory: object) -> tuple[str | None, object]:
        async with websockets.connect(
            f"ws://127.0.0.1:{srv.port}/ws", extensions=[factory], compression=None
        ) as ws:
            for message in ["hello " * 1000, b"\x00\x01" * 5000, "", "é" * 300]:
                await ws.send(message)
                assert await ws.recv() == message
            return ws.response.headers.get("Sec-WebSocket-Extensions"), ws.protocol.extensions

    header, extensions = asyncio.run(talk(ClientPerMessageDeflateFactory()))
    assert header == "permessage-deflate"
    (ext,) = extensions  # type: ignore[misc]
    assert ext.remote_max_window_bits == 15 and not ext.remote_no_context_takeover
    header, extensions = asyncio.run(
        talk(
            ClientPerMessageDeflateFactory(
                server_no_context_takeover=True,
                client_no_context_takeover=True,
                server_max_window_bits=11,
                client_max_window_bits=12,
            )
        )
    )
    assert header == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=11; client_max_window_bits=12"
    )
    (ext,) = extensions  # type: ignore[misc]
    assert ext.remote_no_context_takeover and ext.remote_max_window_bits == 11
    assert ext.local_no_context_takeover and ext.local_max_window_bits == 12


# ----------------------------------------------------------------------------- strictness


@LOOPS
def test_a_message_in_the_same_read_as_a_bad_frame_is_delivered_first(
    server: Callable[..., Server], loop: str
) -> None:
    srv = start(server, loop)
    s, _ = ws_open(srv)
    with s:
        key = os.urandom(4)
        s.sendall(
            encode_frame(OP_TEXT, b"before the bad frame", mask=key)
            + encode_frame(0x5, b"reserved opcode", mask=key)
            + encode_frame(OP_PING, b"after", mask=key)
        )
        assert recv(s) == (OP_TEXT, False, b"before the bad frame")
        op, _, payload = recv(s)
        assert op == OP_CLOSE and close_code(payload) == 1002  # no pong for the later ping


@LOOPS
def test_invalid_utf8_fails_at_its_fragment(server: Callable[..., Server], loop: str) -> None:
    srv = start(server, loop)
    s, _ = ws_open(srv)
    with s:
        send(s, OP_TEXT, b"fine so far", fin=False)
        send(s, OP_CONT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80", fin=False)
        op, _, payload = recv(s)  # before the message's last fragment was sent
        assert op == OP_CLOSE and close_code(payload) == 1007


@LOOPS
def test_large_non_ascii_text_messages_keep_flowing(
    server: Callable[..., Server], loop: str
) -> None:
    """The receive queue counts a text message as it gives it back (in characters): counted in
    bytes on the way in, two-byte characters never balanced and reading stayed paused."""
    srv = start(server, loop)
    s, _ = ws_open(srv)
    text = "é" * 700_000  # 1.4 MB: over the queue's high-water mark
    with s:
        for _ in range(3):
            send(s, OP_TEXT, text.encode())
        for _ in range(3):
            assert recv(s) == (OP_TEXT, False, text.encode())
