"""The Channel seam: what a request cycle asks of its connection, and who provides it.

Both connections (over an asyncio transport, over a bare uwsgi socket) are Channels; a cycle
driven over a recording Channel shows, byte for byte, which calls a response turns into.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from monoceros.addresses import AddressMatcher
from monoceros.asgi.channel import Channel
from monoceros.asgi.context import ServerContext
from monoceros.asgi.cycle import HttpCycle
from monoceros.asgi.http_protocol import HttpProtocol
from monoceros.asgi.request_task import run_request
from monoceros.asgi.scope import HttpScopeBuilder, UwsgiScopeBuilder
from monoceros.asgi.uwsgi_fast import FastConnection
from monoceros.asgi.uwsgi_protocol import UwsgiProtocol
from monoceros.protocols.errors import InvalidHTTPRequest
from monoceros.protocols.response import error_response

from unit_support import make_ctx

HELLO = b"Hello, World!"
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"x-a", b"b")],
}


class Transport(asyncio.Transport):
    """A transport that keeps what is written."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []
        self.state = "open"

    def write(self, data: Any) -> None:
        self.out.append(bytes(data))

    def is_closing(self) -> bool:
        return self.state != "open"

    def close(self) -> None:
        self.state = "closed"

    def abort(self) -> None:
        self.state = "aborted"

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("10.0.0.1", 4242) if name == "peername" else default


class Recorder:
    """A Channel that records every call a cycle makes."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.deadline = 0.0
        self.read_paused = False
        self.calls: list[tuple[Any, ...]] = []
        self.paused = False
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def write_last(self, data: bytes) -> None:
        self.calls.append(("write_last", data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.calls.append(("close",))

    def abort(self) -> None:
        self.calls.append(("abort",))

    def buffered(self, size: int) -> None:
        self.calls.append(("buffered", size))

    def pause_reading(self) -> None:
        self.calls.append(("pause_reading",))

    def resume_reading(self) -> None:
        self.calls.append(("resume_reading",))

    def watch_peer(self) -> None:
        self.calls.append(("watch_peer",))

    @property
    def write_paused(self) -> bool:
        return self.paused

    async def drain(self) -> None:
        self.calls.append(("drain",))
        self.paused = False

    def response_done(self, cycle: HttpCycle) -> None:
        self.calls.append(("response_done",))

    def peer_label(self) -> str:
        return "10.0.0.1"


def test_both_connections_and_the_recorder_are_channels(tmp_path: Path) -> None:
    async def main() -> None:
        ctx = make_ctx(None, asyncio.get_running_loop(), tmp_path)
        http = HttpProtocol(ctx, HttpScopeBuilder(("127.0.0.1", 8000), AddressMatcher([]), {}))
        uwsgi = UwsgiProtocol(ctx, UwsgiScopeBuilder("/run/app.sock"))
        for proto in (http, uwsgi):
            proto.connection_made(Transport())
        sock, other = socket.socketpair()
        fast = FastConnection(ctx, sock, "")
        channels: list[Channel] = [http, uwsgi, fast, Recorder(ctx)]  # checked by mypy too
        assert all(isinstance(channel, Channel) for channel in channels)
        assert http.peer_label() == uwsgi.peer_label() == "10.0.0.1"
        assert fast.peer_label() == "a local peer"
        fast.abort()
        other.close()

    asyncio.run(main())


def test_what_is_not_a_channel_is_told_apart() -> None:
    class WritesOnly:
        def write(self, data: bytes) -> None:
            pass

    assert not isinstance(WritesOnly(), Channel)


def test_the_transport_connection_passes_calls_to_its_transport(tmp_path: Path) -> None:
    async def main() -> None:
        ctx = make_ctx(None, asyncio.get_running_loop(), tmp_path)
        proto = UwsgiProtocol(ctx, UwsgiScopeBuilder("/run/app.sock"))
        transport = Transport()
        proto.connection_made(transport)
        proto.write(b"a")
        proto.write_last(b"b")
        assert transport.out == [b"a", b"b"] and not proto.is_closing()
        proto.pause_writing()
        assert proto.write_paused
        proto.resume_writing()
        assert not proto.write_paused
        await proto.drain()
        proto.abort()
        assert transport.state == "aborted" and proto.is_closing()

    asyncio.run(main())


def run_cycle(
    app: Any, tmp_path: Path, *, uwsgi: bool, paused: bool = False, body: bytes = b""
) -> list[tuple[Any, ...]]:
    async def main() -> list[tuple[Any, ...]]:
        ctx = make_ctx(app, asyncio.get_running_loop(), tmp_path)
        channel = Recorder(ctx)
        channel.paused = paused
        scope = {"type": "http", "method": "GET", "path": "/", "query_string": b""}
        cycle = HttpCycle(
            channel, scope, keep_alive=not uwsgi, expect_100=False, http11=True, uwsgi=uwsgi
        )
        if body:
            cycle.feed(body)
        cycle.end()
        await asyncio.wait_for(run_request(cycle), 10)
        return channel.calls

    return asyncio.run(main())


@pytest.mark.parametrize("uwsgi", [True, False])
def test_a_whole_response_is_one_last_write(uwsgi: bool, tmp_path: Path) -> None:
    async def hello(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send({"type": "http.response.body", "body": HELLO})

    (kind, data), done = run_cycle(hello, tmp_path, uwsgi=uwsgi)
    assert kind == "write_last" and done == ("response_done",)
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-a: b\r\ncontent-length: 13\r\n"
    if uwsgi:  # the front end adds Date and Server
        assert data == head + b"\r\n" + HELLO
    else:
        assert data.startswith(head) and data.endswith(b"\r\n\r\n" + HELLO)


def test_a_streamed_response_waits_for_the_drain(tmp_path: Path) -> None:
    async def stream(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        await send({"type": "http.response.body", "body": b"world", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-a: b\r\n\r\n"
    assert run_cycle(stream, tmp_path, uwsgi=True, paused=True) == [
        ("write", head + b"hello"),  # no length: the response ends with the connection
        ("drain",),
        ("write", b"world"),
        ("response_done",),
    ]


def test_bytes_like_bodies_are_sent_as_bytes(tmp_path: Path) -> None:
    # ASGI says bytes; a bytearray or memoryview works too, as in uvicorn (and in the compiled
    # cycle as in its Python source: no type check refuses them)
    async def stream(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send({"type": "http.response.body", "body": bytearray(b"hello"), "more_body": True})
        await send({"type": "http.response.body", "body": memoryview(b"world")})

    async def whole(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send({"type": "http.response.body", "body": bytearray(HELLO)})

    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-a: b\r\n"
    assert run_cycle(stream, tmp_path, uwsgi=True) == [
        ("write", head + b"\r\nhello"),
        ("write", b"world"),
        ("response_done",),
    ]
    (kind, data), done = run_cycle(whole, tmp_path, uwsgi=True)
    assert (kind, data) == ("write_last", head + b"content-length: 13\r\n\r\n" + HELLO)
    assert data.__class__ is bytes and done == ("response_done",)


def test_the_body_is_read_through_the_channel(tmp_path: Path) -> None:
    got: list[dict[str, Any]] = []

    async def wait_for_the_end(scope: Any, receive: Any, send: Any) -> None:
        got.append(await receive())
        await send(START)
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        got.append(await receive())  # after the body: waits for the peer to leave

    async def main() -> list[tuple[Any, ...]]:
        ctx = make_ctx(wait_for_the_end, asyncio.get_running_loop(), tmp_path)
        channel = Recorder(ctx)
        scope = {"type": "http", "method": "POST", "path": "/", "query_string": b""}
        cycle = HttpCycle(
            channel, scope, keep_alive=False, expect_100=False, http11=True, uwsgi=True
        )
        cycle.feed(HELLO)
        cycle.end()
        task = asyncio.ensure_future(run_request(cycle))
        for _ in range(100):
            if ("watch_peer",) in channel.calls:
                break
            await asyncio.sleep(0)
        cycle.lost()
        await asyncio.wait_for(task, 10)
        return channel.calls

    calls = asyncio.run(main())
    assert got == [
        {"type": "http.request", "body": HELLO, "more_body": False},
        {"type": "http.disconnect"},
    ]
    assert calls == [
        ("buffered", 13),
        ("resume_reading",),
        ("write", b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-a: b\r\n\r\nx"),
        ("watch_peer",),
        ("close",),  # the response was cut short: closing tells the front end
    ]


def test_an_app_error_before_the_head_is_a_500(tmp_path: Path) -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("boom")

    calls = run_cycle(broken, tmp_path, uwsgi=True)
    assert calls[0][0] == "write" and calls[0][1].startswith(b"HTTP/1.1 500 ")
    assert calls[1:] == [("response_done",)]


@pytest.mark.parametrize("client", [("10.0.0.9", 1), None])
def test_a_bad_body_before_the_response_is_a_400_and_one_log_line(
    client: tuple[str, int] | None, tmp_path: Path
) -> None:
    """The body broke its framing (the protocol calls ``body_error``) before the app answered:
    the server answers 400, the app's ``receive()`` says ``http.disconnect`` and the response
    it sends anyway is dropped, not an "http.response.start sent twice" error."""
    got: list[dict[str, Any]] = []

    async def answers_anyway(scope: Any, receive: Any, send: Any) -> None:
        got.append(await receive())
        await send(START)
        await send({"type": "http.response.body", "body": HELLO})

    async def main() -> list[tuple[Any, ...]]:
        ctx = make_ctx(answers_anyway, asyncio.get_running_loop(), tmp_path)
        channel = Recorder(ctx)
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/up",
            "raw_path": b"/up",
            "query_string": b"a=1",
            "client": client,
        }
        cycle = HttpCycle(
            channel, scope, keep_alive=True, expect_100=False, http11=True, uwsgi=False
        )
        task = asyncio.ensure_future(run_request(cycle))
        cycle.body_error(InvalidHTTPRequest("Invalid character in chunk size"))
        await asyncio.wait_for(task, 10)
        assert not cycle.keep_alive
        return channel.calls

    calls = asyncio.run(main())
    assert got == [{"type": "http.disconnect"}]
    assert calls == [("write", error_response(400, "Invalid character in chunk size"))]
    who = client[0] if client else "a local peer"
    log = (tmp_path / "error.log").read_text()
    assert log.count("\n") == 1 and "[INFO] Invalid request body from " in log
    assert log.endswith(f" {who} for /up?a=1: Invalid character in chunk size\n")
