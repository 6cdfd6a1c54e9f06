"""Flow control of the ASGI connection protocols, over a real socketpair and a real loop.

A slow-reading application must pause the transport (not buffer the whole upload) and must
never be left waiting on a paused reader; a fast-writing application must wait for drains.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from monoceros.addresses import AddressMatcher
from monoceros.asgi.connection import TransportConnection
from monoceros.asgi.context import REQUEST_TASK_NAME, ServerContext
from monoceros.asgi.flow import HIGH_WATER
from monoceros.asgi.http_protocol import HttpProtocol
from monoceros.asgi.scope import HttpScopeBuilder, UwsgiScopeBuilder
from monoceros.asgi.uwsgi_protocol import UwsgiProtocol

from unit_support import make_ctx

MiB = 1024 * 1024
Factory = Callable[[ServerContext], asyncio.Protocol]


async def serve(
    app: Any, factory: Factory, request: bytes, body: bytes, tmp_path: Path, read_delay: float = 0.0
) -> tuple[bytes, list[HttpProtocol | UwsgiProtocol]]:
    """Serve one connection; the client sends ``request`` + ``body`` and reads to EOF."""
    loop = asyncio.get_running_loop()
    server_sock, client_sock = socket.socketpair()
    ctx = make_ctx(app, loop, tmp_path)
    protos: list[Any] = []

    def build() -> asyncio.Protocol:
        proto = factory(ctx)
        protos.append(proto)
        return proto

    await loop.connect_accepted_socket(build, server_sock)
    reader, writer = await asyncio.open_connection(sock=client_sock)

    async def upload() -> None:
        writer.write(request)
        view = memoryview(body)
        for i in range(0, len(body), 65536):
            writer.write(view[i : i + 65536])
            await writer.drain()

    up = asyncio.create_task(upload())
    chunks = []
    while data := await reader.read(65536):
        chunks.append(data)
        if read_delay:
            await asyncio.sleep(read_delay)
    await up
    writer.close()
    return b"".join(chunks), protos


def slow_echo(seen: list[bool], protos: list[Any]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        task = asyncio.current_task()  # the request's own task, named (else: a 500)
        assert task is not None and task.get_name() == REQUEST_TASK_NAME
        h = hashlib.sha256()
        n = 0
        while True:
            message = await receive()
            await asyncio.sleep(0.002)  # behind the client: the buffer fills meanwhile
            seen.append(protos[0].read_paused)
            h.update(message["body"])
            n += len(message["body"])
            if not message["more_body"]:
                break
        out = f"{n} {h.hexdigest()}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": out})

    return app


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.mark.parametrize("kind", ["http", "uwsgi"])
def test_16mib_upload_to_a_slow_reader_pauses_and_never_stalls(kind: str, tmp_path: Path) -> None:
    payload = os.urandom(16 * MiB)
    seen: list[bool] = []
    protos: list[Any] = []
    app = slow_echo(seen, protos)
    if kind == "http":
        head = (
            b"POST /up HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(payload)
        )

        def factory(ctx: ServerContext) -> asyncio.Protocol:
            proto = HttpProtocol(ctx, HttpScopeBuilder("", AddressMatcher([]), {}))
            protos.append(proto)
            return proto
    else:
        env = {"REQUEST_METHOD": "POST", "PATH_INFO": "/up", "CONTENT_LENGTH": str(len(payload))}
        block = b"".join(
            len(k).to_bytes(2, "little") + k.encode() + len(v).to_bytes(2, "little") + v.encode()
            for k, v in env.items()
        )
        head = b"\x00" + len(block).to_bytes(2, "little") + b"\x00" + block

        def factory(ctx: ServerContext) -> asyncio.Protocol:
            proto = UwsgiProtocol(ctx, UwsgiScopeBuilder(""))
            protos.append(proto)
            return proto

    raw, _ = run(serve(app, factory, head, payload, tmp_path))
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert raw.endswith(f"{len(payload)} {hashlib.sha256(payload).hexdigest()}".encode())
    assert any(seen), "reading never paused: the whole upload was buffered"
    assert not protos[0].read_paused or protos[0].closed


def test_fast_writer_waits_for_drain(tmp_path: Path) -> None:
    block = os.urandom(65536)
    protos: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(256):
            await send({"type": "http.response.body", "body": block, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    drained: list[bool] = []

    class Watched(asyncio.Protocol):
        """The connection's protocol seen from the transport (a compiled class is not
        subclassed): every callback passed on, the pauses counted."""

        def __init__(self, inner: HttpProtocol) -> None:
            self.inner = inner

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.inner.connection_made(transport)

        def data_received(self, data: bytes) -> None:
            self.inner.data_received(data)

        def eof_received(self) -> bool | None:
            return self.inner.eof_received()

        def connection_lost(self, exc: Exception | None) -> None:
            self.inner.connection_lost(exc)

        def pause_writing(self) -> None:
            drained.append(True)
            self.inner.pause_writing()

        def resume_writing(self) -> None:
            self.inner.resume_writing()

    def factory(ctx: ServerContext) -> asyncio.Protocol:
        proto = HttpProtocol(ctx, HttpScopeBuilder("", AddressMatcher([]), {}))
        protos.append(proto)
        return Watched(proto)

    raw, _ = run(serve(app, factory, b"GET / HTTP/1.0\r\n\r\n", b"", tmp_path, read_delay=0.001))
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"connection: close" in head  # HTTP/1.0 without a length: close-delimited
    assert body == block * 256
    # the transport's buffer never held the whole response: send() waited for drains
    assert protos[0].write_paused is False
    assert drained, "the transport never asked the writer to wait"


def test_flow_control_thresholds_on_a_real_transport(tmp_path: Path) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()

        ctx = make_ctx(None, loop, tmp_path)
        transport, flow = await loop.connect_accepted_socket(
            lambda: HttpProtocol(ctx, HttpScopeBuilder("", AddressMatcher([]), {})), a
        )
        assert isinstance(flow, TransportConnection)  # what it shares with the uwsgi protocol
        flow.buffered(HIGH_WATER + 1)
        assert flow.read_paused and not transport.is_reading()
        flow.buffered(HIGH_WATER)  # between the marks: stays paused
        assert flow.read_paused
        flow.buffered(0)
        assert not flow.read_paused and transport.is_reading()
        flow.closed = True  # what connection_lost does to the flow
        flow.resume_writing()
        flow.pause_reading()  # a closed connection is never paused again
        assert not flow.read_paused
        await flow.drain()  # returns at once on a closed connection
        transport.close()
        b.close()

    run(scenario())
