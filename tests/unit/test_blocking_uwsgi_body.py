"""The sync and gthread workers' uWSGI body: a parser continued after the head, read from a
socket pair (no process), for both framings, a body cut short and a chunked body that never
comes."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from monoceros.config import Config
from monoceros.heartbeat import Heartbeat
from monoceros.listeners import BindSpec, Listener
from monoceros.logs import Logger
from monoceros.protocols.errors import MissingChunkedBody
from monoceros.workers.blocking import BlockingWorker
from monoceros.workers.gthread import ThreadWorker, _Conn
from monoceros.workers.request_path import RequestPath, ThreadProgress
from monoceros.workers.sync import SyncWorker

from unit_support import encode


def echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


class Recorder:
    """Stands in for the worker's logger: keeps every line as (level, text)."""

    access_enabled = False

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        def log(msg: str, *args: object) -> None:
            self.lines.append((level, msg % args))

        return log


Serve = Callable[[socket.socket], None]


@pytest.fixture(params=["sync", "gthread"])
def worker(request: pytest.FixtureRequest) -> Iterator[tuple[BlockingWorker, Recorder, Serve]]:
    """A worker of each blocking kind, its log, and a function serving one connection."""
    cfg = Config()
    a, b = socket.socketpair()
    listener = Listener(a, BindSpec("unix", path="test"), "uwsgi")
    kind = SyncWorker if request.param == "sync" else ThreadWorker
    w = kind(1, 0, [listener], cfg, Logger(cfg), Heartbeat(), echo)
    log = Recorder()
    w.log = log  # type: ignore[assignment]
    w.setup_serving(request.param == "gthread")

    def serve(conn: socket.socket) -> None:
        if isinstance(w, SyncWorker):
            w._handle(listener, conn, "")
        else:
            assert isinstance(w, ThreadWorker)
            try:  # as the pool thread does
                step = w._step_uwsgi
                step(_Conn(conn, listener, "", float("inf"), None, step), ThreadProgress())
            except Exception as exc:
                w.log_connection_error(exc, "", listener)
            conn.close()

    yield w, log, serve
    a.close()
    b.close()


def exchange(serve: Serve, first: bytes, *later: bytes, close: bool = True) -> bytes:
    """Send ``first`` (the packet is there when serving starts, as the gthread worker expects
    of a readable connection), then in another thread send ``later`` (closing the sending side
    after them if asked) and read the whole response while this one serves the connection."""
    server, client = socket.socketpair()
    client.settimeout(5)
    client.sendall(first)
    chunks: list[bytes] = []

    def front_end() -> None:
        for data in later:
            client.sendall(data)
        if close:
            client.shutdown(socket.SHUT_WR)
        while data := client.recv(65536):
            chunks.append(data)

    thread = threading.Thread(target=front_end)
    thread.start()
    serve(server)
    thread.join()
    client.close()
    return b"".join(chunks)


def post(body: bytes = b"", length: int | None = None, chunked: bool = False) -> bytes:
    pairs = [(b"REQUEST_METHOD", b"POST"), (b"PATH_INFO", b"/")]
    if chunked:
        pairs.append((b"HTTP_TRANSFER_ENCODING", b"chunked"))
    else:
        pairs.append((b"CONTENT_LENGTH", str(len(body) if length is None else length).encode()))
    return encode(pairs, body=body)


def test_body_that_came_with_the_vars_is_served_without_a_read(
    worker: tuple[BlockingWorker, Recorder, Serve],
) -> None:
    """nginx writes a small body with the vars: the app gets it whole, and bytes after it (none
    come from a front end) are not read as body."""
    _, _, serve = worker
    out = exchange(serve, post(b"hello=world") + b"extra")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\nhello=world")


def test_large_body_over_many_reads(worker: tuple[BlockingWorker, Recorder, Serve]) -> None:
    """A body larger than one read arrives whole, byte for byte."""
    _, _, serve = worker
    body = bytes(range(256)) * 1200  # 300 KiB
    head = post(length=len(body))
    out = exchange(serve, head + body[:10], body[10:])
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\n" + body)


def test_chunked_body_is_dechunked(worker: tuple[BlockingWorker, Recorder, Serve]) -> None:
    """The uWSGI router's --http-chunked-input body reaches the application de-chunked."""
    _, _, serve = worker
    out = exchange(serve, post(chunked=True) + b"5\r\nhel", b"lo\r\n3\r\n!!!\r\n0\r\n\r\n")
    assert out.endswith(b"Content-Length: 8\r\n\r\nhello!!!"), out


def test_body_cut_short_is_the_front_end_leaving(
    worker: tuple[BlockingWorker, Recorder, Serve],
) -> None:
    """EOF inside a CONTENT_LENGTH body: no answer, a debug line saying how much arrived."""
    _, log, serve = worker
    assert exchange(serve, post(b"abc", length=10)) == b""
    assert log.lines == [
        ("debug", "Client unix:: front end closed the connection after 3 of 10 body bytes")
    ]


def test_chunked_body_cut_short_is_a_400(worker: tuple[BlockingWorker, Recorder, Serve]) -> None:
    """EOF inside a chunked body: 400 with the parser's TruncatedPacket reason."""
    _, log, serve = worker
    out = exchange(serve, post(chunked=True) + b"5\r\nhel")
    reason = "truncated chunked body after 3 data bytes (inside a chunk, 2 data bytes missing)"
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n") and out.endswith(reason.encode() + b"\n")
    assert log.lines == [("info", f"Invalid request body from a local peer for /: {reason}")]


def test_chunked_body_that_never_comes(worker: tuple[BlockingWorker, Recorder, Serve]) -> None:
    """The vars announce a chunked body and nothing comes within header_timeout: 400."""
    w, log, serve = worker
    w.header_timeout = 0.2
    w.request_path = RequestPath(w, w.nr)  # serving starts again with the new setting
    out = exchange(serve, post(chunked=True), close=False)
    reason = MissingChunkedBody().reason
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n") and out.endswith(reason.encode() + b"\n")
    assert log.lines == [("info", f"Invalid request body from a local peer for /: {reason}")]
