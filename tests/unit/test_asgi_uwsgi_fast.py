"""The lean uwsgi path of the ASGI worker, over real socketpairs and a real event loop.

A request that is whole when read is served on the bare socket (writes buffered and drained
like a transport's, a reset reaching the application as ``http.disconnect``); anything else is
handed over, with the bytes already read, to :class:`UwsgiProtocol`, which then serves it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from monoceros.asgi.acceptor import Acceptor
from monoceros.asgi.context import REQUEST_TASK_NAME
from monoceros.asgi.scope import UwsgiScopeBuilder
from monoceros.asgi.uwsgi_fast import WRITE_HIGH, FastConnection, UwsgiFastPath
from monoceros.asgi.uwsgi_protocol import UwsgiProtocol
from monoceros.protocols.proxy_protocol import ProxyHeaderReader

from unit_support import make_ctx

MiB = 1024 * 1024
HELLO = b"Hello, World!"


def packet(env: dict[str, str], body: bytes = b"", modifier1: int = 0) -> bytes:
    block = b"".join(
        len(k).to_bytes(2, "little")
        + k.encode("latin-1")
        + len(v).to_bytes(2, "little")
        + v.encode("latin-1")
        for k, v in env.items()
    )
    return bytes((modifier1,)) + len(block).to_bytes(2, "little") + b"\x00" + block + body


def env(path: str = "/", method: str = "GET", **extra: str) -> dict[str, str]:
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.0.0.1",
        "REMOTE_PORT": "4242",
        **extra,
    }


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": HELLO})


class Harness:
    """A context, a fast path on it, and a record of what it handed over and closed."""

    def __init__(
        self,
        app: Any,
        loop: asyncio.AbstractEventLoop,
        tmp_path: Path,
        *,
        tcp: bool = False,
        allowed: list[str] | None = None,
        proxy: str | None = None,
    ) -> None:
        self.ctx = make_ctx(app, loop, tmp_path, allowed)
        self.ctx.state = {"db": "ready"}
        self.closed = 0
        # an acceptor that is not accepting asks the worker (here: counts) at every close
        self.ctx.acceptor = Acceptor(loop, [], {}, 1000, self.ctx.log, lambda *_: False)
        self.ctx.on_room = self._closed
        self.handed: list[tuple[socket.socket, bytes]] = []
        self.peers: list[Any] = []
        self.to_proxy_protocol: list[tuple[socket.socket, bytes]] = []
        self.fast = UwsgiFastPath(
            self.ctx,
            UwsgiScopeBuilder("/run/app.sock"),
            self._hand_over,
            tcp=tcp,
            proxy=None if proxy is None else ProxyHeaderReader(proxy, {"127.0.0.1"}),
            proxy_hand_over=lambda sock, data: self.to_proxy_protocol.append((sock, data)),
        )

    def _closed(self) -> None:
        self.closed += 1

    def _hand_over(self, sock: socket.socket, data: bytes, peer: Any) -> None:
        self.handed.append((sock, data))
        self.peers.append(peer)


async def read_all(sock: socket.socket, delay: float = 0.0) -> bytes:
    """Read ``sock`` to EOF through the loop (``delay`` between reads: a slow front end)."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    chunks = []
    for _ in range(100_000):
        data = await loop.sock_recv(sock, 65536)
        if not data:
            break
        chunks.append(data)
        if delay:
            await asyncio.sleep(delay)
    return b"".join(chunks)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_a_whole_request_is_served_on_the_bare_socket(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope)
        seen.append(await receive())
        await hello(scope, receive, send)

    async def main() -> tuple[bytes, Harness]:
        h = Harness(app, asyncio.get_running_loop(), tmp_path)
        server, client = socket.socketpair()
        client.sendall(packet(env("/x", QUERY_STRING="a=1")))
        h.fast.serve(server, "")
        assert h.ctx.nr == 1
        if sys.version_info >= (3, 12):  # run eagerly: answered and closed within serve()
            assert h.closed == 1 and not h.ctx.connections
        else:
            assert h.ctx.busy == 1 and h.closed == 0
        raw = await read_all(client)
        client.close()
        return raw, h

    raw, h = run(main())
    assert raw == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n\r\n" + HELLO
    )
    assert not h.handed and h.closed == 1 and not h.ctx.connections
    scope, message = seen
    assert scope["path"] == "/x" and scope["query_string"] == b"a=1"
    assert scope["client"] == ("10.0.0.1", 4242) and scope["state"] == {"db": "ready"}
    assert message == {"type": "http.request", "body": b"", "more_body": False}


def test_the_task_of_a_request_comes_from_the_applications_task_factory(tmp_path: Path) -> None:
    """A task factory set on the loop (by the application, e.g. in its lifespan) makes the task
    of every request, on every Python (3.12's eager start included); without one, the task is
    an asyncio.Task that the application finds as its current task."""
    made: list[str] = []
    current: list[object] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        current.append(asyncio.current_task())
        await hello(scope, receive, send)

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        h = Harness(app, loop, tmp_path)
        for with_factory in (False, True):
            loop.set_task_factory(factory if with_factory else None)
            server, client = socket.socketpair()
            client.sendall(packet(env("/x")))
            h.fast.serve(server, "")
            assert (await read_all(client)).endswith(HELLO)
            client.close()
        loop.set_task_factory(None)

    run(main())
    assert made == ["run_request"]
    assert len(current) == 2 and all(isinstance(task, asyncio.Task) for task in current)
    assert [task.get_name() for task in current] == [REQUEST_TASK_NAME] * 2  # type: ignore[attr-defined]


def test_a_body_in_the_packet_is_received_whole(tmp_path: Path) -> None:
    payload = os.urandom(4096)

    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        out = b"%d %d %s" % (
            message["more_body"],
            len(message["body"]),
            hashlib.sha256(message["body"]).hexdigest().encode(),
        )
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": out})

    async def main() -> tuple[bytes, Harness]:
        h = Harness(echo, asyncio.get_running_loop(), tmp_path)
        server, client = socket.socketpair()
        client.sendall(packet(env("/echo", "POST", CONTENT_LENGTH="4096"), payload))
        h.fast.serve(server, "")
        raw = await read_all(client)
        client.close()
        return raw, h

    raw, h = run(main())
    assert raw.endswith(b"0 4096 " + hashlib.sha256(payload).hexdigest().encode())
    assert not h.handed and h.closed == 1


@pytest.mark.parametrize(
    "sent,why",
    [
        (b"", "nothing readable yet"),
        (packet(env())[:9], "a partial packet"),
        (packet(env("/up", "POST", CONTENT_LENGTH="10"), b"12345"), "half the body"),
        (packet(env("/up", "POST", HTTP_TRANSFER_ENCODING="chunked"), b"5\r\nhello"), "chunked"),
        (b"\x64\x00\x00\x00", "a ping"),
        (b"GET / HTTP/1.1\r\n\r\n", "a malformed packet"),
        (packet(env(HTTP_UPGRADE="websocket", HTTP_CONNECTION="Upgrade")), "a WebSocket upgrade"),
    ],
)
def test_what_is_not_whole_and_plain_is_handed_over_with_its_bytes(
    sent: bytes, why: str, tmp_path: Path
) -> None:
    async def main() -> Harness:
        h = Harness(hello, asyncio.get_running_loop(), tmp_path)
        server, client = socket.socketpair()
        if sent:
            client.sendall(sent)
        h.fast.serve(server, "")
        await asyncio.sleep(0.01)
        assert len(h.handed) == 1, why
        sock, data = h.handed[0]
        assert sock is server and data == sent and sock.fileno() >= 0
        server.close()
        client.close()
        return h

    h = run(main())
    assert h.ctx.nr == 0 and not h.ctx.connections and h.closed == 0


def test_a_peer_outside_the_allow_list_is_handed_over_unread(tmp_path: Path) -> None:
    async def main() -> Harness:
        h = Harness(hello, asyncio.get_running_loop(), tmp_path, tcp=True, allowed=["127.0.0.1"])
        server, client = socket.socketpair()
        client.sendall(packet(env()))
        h.fast.serve(server, ("10.1.2.3", 5555))
        quiet, other = socket.socketpair()
        h.fast.serve(quiet, ("127.0.0.1", 5555))  # allowed, but nothing sent yet
        assert [data for _, data in h.handed] == [b"", b""]
        assert server.recv(4096) == packet(env())  # still there for the protocol
        for sock in (server, client, quiet, other):
            sock.close()
        return h

    run(main())


def test_a_health_check_that_connects_and_closes_is_closed_quietly(tmp_path: Path) -> None:
    async def main() -> Harness:
        h = Harness(hello, asyncio.get_running_loop(), tmp_path)
        server, client = socket.socketpair()
        client.close()
        h.fast.serve(server, "")
        assert server.fileno() == -1
        return h

    h = run(main())
    assert h.closed == 1 and not h.handed and h.ctx.nr == 0


def stream_to_a_slow_front_end(
    tmp_path: Path, pieces: list[bytes], last: bytes, sndbuf: int, delay: float
) -> tuple[bytes, list[int], Harness]:
    """Serve an application that streams ``pieces`` then ``last`` over a socket with a send
    buffer of ``sndbuf`` to a reader that waits ``delay`` between reads: the bytes read, the
    connection's unsent bytes after each piece, and the harness."""
    unsent: list[int] = []

    async def stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for piece in pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            unsent.append(next(iter(h.ctx.connections)).unsent)
        await send({"type": "http.response.body", "body": last})

    async def main() -> bytes:
        server, client = socket.socketpair()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        client.sendall(packet(env("/stream")))
        h.fast.serve(server, "")
        raw = await read_all(client, delay=delay)
        client.close()
        return raw

    loop = asyncio.new_event_loop()
    h = Harness(stream, loop, tmp_path)
    try:
        raw = loop.run_until_complete(asyncio.wait_for(main(), 60))
    finally:
        loop.close()
    return raw, unsent, h


def test_a_big_response_to_a_slow_front_end_is_buffered_boundedly(tmp_path: Path) -> None:
    block = os.urandom(65536)
    raw, peak, h = stream_to_a_slow_front_end(tmp_path, [block] * 128, b"", 65536, 0.0005)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-length" not in head.lower() and body == block * 128  # close-delimited
    assert max(peak) <= WRITE_HIGH + len(block), "the whole response was buffered"
    assert max(peak) > 0, "the socket never filled: the drain path was not exercised"
    assert h.closed == 1 and not h.ctx.connections


def test_pieces_of_every_size_queued_behind_a_full_socket_arrive_in_order(
    tmp_path: Path,
) -> None:
    """Large pieces wait by reference, small ones gathered into one buffer, sent several at a
    time: the front end gets every byte once, in order, and the queue stays bounded."""
    rng = random.Random(7)
    sizes = [rng.choice([1, 7, 100, 4095, 4096, 9000, 65536, 200_000]) for _ in range(300)]
    pieces = [os.urandom(n) for n in sizes]
    raw, peak, h = stream_to_a_slow_front_end(tmp_path, pieces, b"end", 16384, 0.0002)
    assert raw.partition(b"\r\n\r\n")[2] == b"".join(pieces) + b"end"
    assert max(peak) <= WRITE_HIGH + max(sizes), "the whole response was queued"
    assert sum(1 for n in peak if n) > 50, "the socket rarely filled: the queue was not exercised"
    assert h.closed == 1 and not h.ctx.connections


def test_an_empty_write_behind_queued_bytes_leaves_the_close_to_happen(tmp_path: Path) -> None:
    data = os.urandom(1 << 20)

    async def main() -> bytes:
        h = Harness(hello, asyncio.get_running_loop(), tmp_path)
        server, client = socket.socketpair()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        conn = FastConnection(h.ctx, server, "")
        conn.write(data)
        assert conn.unsent, "the socket took the whole megabyte: nothing was queued"
        conn.write(b"")
        conn.close()
        raw = await asyncio.wait_for(read_all(client), 10)
        client.close()
        assert conn.closed and server.fileno() == -1
        return raw

    assert run(main()) == data


def test_a_reset_reaches_an_app_waiting_for_the_disconnect(tmp_path: Path) -> None:
    got: list[str] = []

    async def waiter(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()  # the (empty) body
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        got.append((await receive())["type"])

    async def main() -> Harness:
        h = Harness(waiter, asyncio.get_running_loop(), tmp_path)
        server, client = socket.socketpair()
        client.sendall(packet(env("/wait")))
        h.fast.serve(server, "")
        for _ in range(200):
            if h.ctx.connections and next(iter(h.ctx.connections))._watching:
                break
            await asyncio.sleep(0.005)
        client.close()  # with our bytes unread: the server side sees a reset
        for _ in range(200):
            if got:
                break
            await asyncio.sleep(0.005)
        return h

    h = run(main())
    assert got == ["http.disconnect"] and h.closed == 1 and not h.ctx.connections


def test_abort_during_graceful_stop_ends_the_request(tmp_path: Path) -> None:
    got: list[str] = []

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        got.append((await receive())["type"])

    async def main() -> Harness:
        h = Harness(slow, asyncio.get_running_loop(), tmp_path)
        server, client = socket.socketpair()
        client.sendall(packet(env("/slow")))
        h.fast.serve(server, "")
        await asyncio.sleep(0.02)
        conn = next(iter(h.ctx.connections))
        assert isinstance(conn, FastConnection) and conn.busy
        conn.shutdown()  # a request in flight is not cut by the graceful stop's first step
        assert not conn.closed
        conn.abort()
        await asyncio.sleep(0.01)
        assert client.recv(10) == b""
        client.close()
        return h

    h = run(main())
    assert got == ["http.disconnect"] and h.closed == 1


def test_the_protocol_takes_over_with_the_bytes_already_read(tmp_path: Path) -> None:
    payload = os.urandom(300_000)

    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        h = hashlib.sha256()
        more = True
        while more:
            message = await receive()
            h.update(message["body"])
            more = message["more_body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": h.hexdigest().encode()})

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        harness = Harness(echo, loop, tmp_path)
        server, client = socket.socketpair()
        whole = packet(env("/up", "POST", CONTENT_LENGTH=str(len(payload))), payload)
        client.sendall(whole[:1000])
        harness.fast.serve(server, "")
        ((sock, data),) = harness.handed
        assert data == whole[:1000]
        builder = UwsgiScopeBuilder("")
        await loop.connect_accepted_socket(lambda: UwsgiProtocol(harness.ctx, builder, data), sock)
        client.setblocking(False)
        await loop.sock_sendall(client, whole[1000:])
        return await read_all(client)

    raw = run(main())
    assert raw.endswith(hashlib.sha256(payload).hexdigest().encode())


@pytest.mark.parametrize("path", ["bare socket", "protocol"])
def test_an_eof_after_the_request_reaches_an_app_waiting_for_the_disconnect(
    path: str, tmp_path: Path
) -> None:
    """Front ends never half-close: EOF after a whole request is the client gone, on both paths,
    and the application's answer after it is dropped without an error."""
    got: list[str] = []
    body = b"b" * 1000

    async def main() -> Harness:
        loop = asyncio.get_running_loop()
        waiting, done = asyncio.Event(), asyncio.Event()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            got.append((await receive())["body"].decode())
            waiting.set()
            got.append((await receive())["type"])
            await hello(scope, receive, send)  # too late: ignored, nothing logged
            done.set()

        h = Harness(app, loop, tmp_path)
        server, client = socket.socketpair()
        client.sendall(packet(env("/wait", "POST", CONTENT_LENGTH=str(len(body))), body))
        if path == "protocol":
            await loop.connect_accepted_socket(
                lambda: UwsgiProtocol(h.ctx, UwsgiScopeBuilder(""), b""), server
            )
        else:
            h.fast.serve(server, "")
        await asyncio.wait_for(waiting.wait(), 10)
        client.close()  # nothing unread on either side: a plain EOF
        await asyncio.wait_for(done.wait(), 5)
        for _ in range(500):  # the transport's connection_lost comes a loop turn later
            if not h.ctx.connections:
                break
            await asyncio.sleep(0.01)
        return h

    h = run(main())
    assert got == [body.decode(), "http.disconnect"]
    assert h.closed == 1 and not h.ctx.connections
    assert "[ERROR]" not in (tmp_path / "error.log").read_text()


# --- a PROXY header before the packet (proxy_protocol on) -----------------------------------

HEADER = b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 9000\r\n"


def test_a_proxy_header_and_a_whole_request_are_served_from_one_read(tmp_path: Path) -> None:
    async def main() -> tuple[bytes, Harness]:
        h = Harness(hello, asyncio.get_running_loop(), tmp_path, proxy="v1", allowed=["*"])
        server, client = socket.socketpair()
        client.sendall(HEADER + packet(env()))
        h.fast.serve_proxied(server, ("127.0.0.1", 1234))
        answer = await read_all(client)
        client.close()
        return answer, h

    answer, h = run(main())
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(HELLO)
    assert not h.handed and not h.to_proxy_protocol and h.closed == 1


@pytest.mark.parametrize(
    ("sent", "peer", "where", "data"),
    [
        (HEADER, ("127.0.0.1", 1), "uwsgi", b""),  # the header alone: the packet will follow
        (HEADER + b"\x00\x10", ("127.0.0.1", 1), "uwsgi", b"\x00\x10"),
        (HEADER[:20], ("127.0.0.1", 1), "proxy", HEADER[:20]),  # the header's own protocol waits
        (b"GET / HTTP/1.0\r\n\r\n", ("127.0.0.1", 1), "proxy", b"GET / HTTP/1.0\r\n\r\n"),
        (HEADER + packet(env()), ("10.9.9.9", 1), "proxy", HEADER + packet(env())),  # not allowed
        (b"", ("127.0.0.1", 1), "proxy", b""),  # nothing readable yet
    ],
)
def test_what_the_proxied_fast_path_hands_over(
    sent: bytes, peer: Any, where: str, data: bytes, tmp_path: Path
) -> None:
    async def main() -> Harness:
        h = Harness(hello, asyncio.get_running_loop(), tmp_path, proxy="v1")
        server, client = socket.socketpair()
        if sent:
            client.sendall(sent)
        h.fast.serve_proxied(server, peer)
        handed = h.handed if where == "uwsgi" else h.to_proxy_protocol
        assert [(sock, got) for sock, got in handed] == [(server, data)], (
            h.handed,
            h.to_proxy_protocol,
        )
        if where == "uwsgi":
            assert h.peers == [("192.0.2.7", 40000)]  # the client the header named
        server.close()
        client.close()
        return h

    h = run(main())
    assert h.ctx.nr == 0 and h.closed == 0


def test_a_proxied_client_outside_uwsgi_allow_ips_goes_to_the_protocol_to_be_refused(
    tmp_path: Path,
) -> None:
    async def main() -> Harness:
        h = Harness(
            hello, asyncio.get_running_loop(), tmp_path, proxy="auto", allowed=["127.0.0.1"]
        )
        server, client = socket.socketpair()
        client.sendall(HEADER + packet(env()))
        h.fast.serve_proxied(server, ("127.0.0.1", 1))
        assert [data for _, data in h.handed] == [packet(env())]
        assert h.peers == [("192.0.2.7", 40000)]
        server.close()
        client.close()
        return h

    run(main())
