"""Keep-alive responses on a real socket pair: framing, when a connection stays open, Date."""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from email.utils import parsedate_to_datetime

import pytest

from monoceros.protocols.response import http_date
from monoceros.wsgi.body import Input
from monoceros.wsgi.response import Response

from unit_support import received, socket_pair

pair = pytest.fixture(name="pair")(socket_pair)


def kept(sock: socket.socket, http10: bool = False, head_only: bool = False) -> Response:
    resp = Response(sock, head_only=head_only, uwsgi=False)
    resp.keep_alive = True
    resp.http10 = http10
    return resp


def head_lines(raw: bytes) -> list[bytes]:
    return raw.partition(b"\r\n\r\n")[0].split(b"\r\n")


def test_length_framed_response_keeps_alive(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    resp = kept(a)
    resp.start_response("200 OK", [("Content-Type", "text/plain")])
    resp.write_single(b"hello")
    raw = received(a, b)
    lines = head_lines(raw)
    assert b"Connection: keep-alive" in lines and b"Content-Length: 5" in lines
    assert not any(line.startswith(b"Transfer-Encoding") for line in lines)
    assert raw.endswith(b"\r\n\r\nhello")
    assert resp.keep_alive and resp.complete


def test_http11_body_without_length_is_chunked(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    resp = kept(a)
    resp.start_response("200 OK", [("Content-Type", "text/plain")])
    assert not resp.complete or not resp.headers_sent
    resp.send_iterable(iter([b"abc", b"", bytes(300)]))
    raw = received(a, b)
    assert b"Transfer-Encoding: chunked" in head_lines(raw)
    body = raw.partition(b"\r\n\r\n")[2]
    assert body == b"3\r\nabc\r\n12c\r\n" + bytes(300) + b"\r\n0\r\n\r\n"
    assert resp.keep_alive and resp.complete and resp.sent == 303


def test_chunked_body_is_incomplete_until_its_last_chunk(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, _ = pair
    resp = kept(a)
    resp.start_response("200 OK", [])
    resp.write(b"part")
    assert resp.chunked and not resp.complete  # an app that raised here: the close tells
    resp.finish()
    assert resp.complete


def test_http10_body_without_length_closes(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    resp = kept(a, http10=True)
    resp.start_response("200 OK", [])
    resp.send_iterable([b"one", b"two"])
    raw = received(a, b)
    assert b"Connection: close" in head_lines(raw) and b"chunked" not in raw
    assert raw.endswith(b"\r\n\r\nonetwo")
    assert not resp.keep_alive


def test_head_response_without_length_keeps_alive(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    resp = kept(a, head_only=True)
    resp.start_response("200 OK", [])
    resp.send_iterable([b"ignored"])
    raw = received(a, b)
    assert raw.endswith(b"Connection: keep-alive\r\n\r\n") and b"chunked" not in raw
    assert resp.keep_alive and resp.complete


def test_no_body_statuses_are_not_chunked(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    resp = kept(a)
    resp.start_response("304 Not Modified", [])
    resp.send_iterable([])
    raw = received(a, b)
    assert raw.endswith(b"Connection: keep-alive\r\n\r\n") and b"chunked" not in raw
    assert b"Content-Length" not in raw


def test_application_connection_close_is_heard(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    resp = kept(a)
    resp.start_response("200 OK", [("Connection", "Close"), ("Content-Length", "2")])
    resp.send_iterable([b"ok"])
    raw = received(a, b)
    assert head_lines(raw).count(b"Connection: close") == 1 and b"keep-alive" not in raw
    assert not resp.keep_alive


def test_stopping_worker_turns_keep_alive_into_close(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    resp = kept(a)
    resp.should_close = lambda: True
    resp.start_response("200 OK", [("Content-Length", "2")])
    resp.write(b"ok")
    assert b"Connection: close" in head_lines(received(a, b)) and not resp.keep_alive


def test_client_awaiting_continue_gets_a_closing_response(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair

    class Waiting:
        awaiting_continue = True

        def __call__(self) -> bytes:
            raise AssertionError("the body is never read")

    resp = kept(a)
    resp.body = Input(Waiting())
    resp.start_response("413 Content Too Large", [("Content-Length", "0")])
    resp.finish()
    assert b"Connection: close" in head_lines(received(a, b)) and not resp.keep_alive


def test_file_without_length_is_chunked_not_sendfile(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    from monoceros.wsgi.response import FileWrapper

    a, b = pair
    with tempfile.TemporaryFile() as f:
        f.write(b"x" * 70000)
        f.seek(0)
        resp = kept(a)
        resp.start_response("200 OK", [])
        resp.send_file(FileWrapper(f, 65536), use_sendfile=True)
        raw = received(a, b)
    body = raw.partition(b"\r\n\r\n")[2]
    assert body == b"10000\r\n" + b"x" * 65536 + b"\r\n1170\r\n" + b"x" * 4464 + b"\r\n0\r\n\r\n"
    assert resp.complete


def test_header_injection_still_caught_with_chunked_head(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    from monoceros.wsgi.response import ResponseError

    a, _ = pair
    resp = kept(a)
    resp.start_response("200 OK", [("X-A", "1\r\nSet-Cookie: evil=1")])
    with pytest.raises(ResponseError, match="header injection"):
        resp.write(b"x")


def test_http_date_is_consistent_across_threads() -> None:
    seen: list[str] = []
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(3000):
                seen.append(http_date())
        except BaseException as exc:  # recorded for the assertion
            errors.append(exc)

    t0 = int(time.time())
    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    t1 = int(time.time())
    assert not errors and len(seen) == 8 * 3000
    for text in set(seen):
        stamp = int(parsedate_to_datetime(text).timestamp())
        assert t0 - 1 <= stamp <= t1 and text.endswith(" GMT")
