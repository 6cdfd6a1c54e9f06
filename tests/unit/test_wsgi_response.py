"""Responses on a real socket pair: head, framing, validation, sendfile."""

from __future__ import annotations

import socket
import tempfile

import pytest

from monoceros.protocols.response import http_date
from monoceros.wsgi.response import FileWrapper, Response, ResponseError

from unit_support import received, socket_pair

pair = pytest.fixture(name="pair")(socket_pair)


def test_single_body_gets_length_date_server_and_close(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    resp = Response(a, head_only=False, uwsgi=False)
    resp.start_response("200 OK", [("Content-Type", "text/plain")])
    resp.write_single(b"hello")
    raw = received(a, b)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert b"Content-Length: 5" in lines and b"Connection: close" in lines
    assert any(line.startswith(b"Date: ") for line in lines)
    assert body == b"hello"


def test_uwsgi_head_is_minimal(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    resp = Response(a, head_only=False, uwsgi=True)
    resp.start_response("404 Not Found", [("X-A", "1")])
    resp.write_single(b"no")
    assert received(a, b) == b"HTTP/1.1 404 Not Found\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nno"


def test_head_and_no_body_statuses_send_no_body(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    resp = Response(a, head_only=True, uwsgi=True)
    resp.start_response("200 OK", [("Content-Length", "5")])
    resp.send_iterable([b"hello"])
    assert received(a, b) == b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    for code in ("204 No Content", "304 Not Modified"):
        x, y = socket.socketpair()
        r = Response(x, head_only=False, uwsgi=True)
        r.start_response(code, [])
        r.send_iterable([b"ignored"])
        assert received(x, y) == f"HTTP/1.1 {code}\r\n\r\n".encode()
        y.close()


def test_body_is_truncated_to_content_length(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    resp = Response(a, head_only=False, uwsgi=True)
    resp.start_response("200 OK", [("Content-Length", "4")])
    resp.send_iterable([b"ab", b"cdef", b"gh"])
    assert received(a, b).endswith(b"\r\n\r\nabcd")


def test_hop_by_hop_headers_from_the_app_are_dropped(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    resp = Response(a, head_only=False, uwsgi=True)
    resp.start_response("200 OK", [("Transfer-Encoding", "chunked"), ("Connection", "keep-alive")])
    resp.send_iterable([b"x"])
    assert received(a, b) == b"HTTP/1.1 200 OK\r\n\r\nx"


@pytest.mark.parametrize(
    "status,headers",
    [
        ("abc", []),
        ("20 OK", []),
        ("200OK", []),
        ("200 OK\r\nX: 1", []),
        ("200 OK", [("X-Injected", "a\r\nX-Evil: 1")]),
        ("200 OK", [("X-Lf", "a\nb")]),
        ("200 OK", [("Bad Name", "v")]),
        ("200 OK", [("X-Bytes", b"v")]),
    ],
)
def test_invalid_status_and_headers_are_refused(status: str, headers: list) -> None:  # type: ignore[type-arg]
    a, b = socket.socketpair()
    try:
        resp = Response(a, head_only=False, uwsgi=False)
        with pytest.raises(ResponseError):
            resp.start_response(status, headers)
            resp.write_single(b"x")
        assert not resp.headers_sent
    finally:
        a.close()
        b.close()


def test_start_response_twice_needs_exc_info() -> None:
    a, b = socket.socketpair()
    resp = Response(a, head_only=False, uwsgi=True)
    resp.start_response("200 OK", [])
    with pytest.raises(ResponseError, match="second time"):
        resp.start_response("500 Oops", [])
    try:
        raise ValueError("x")
    except ValueError as exc:
        resp.start_response("503 Busy", [], (ValueError, exc, exc.__traceback__))
    assert resp.status_code == 503
    a.close()
    b.close()


def test_exc_info_after_headers_sent_reraises(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    resp = Response(a, head_only=False, uwsgi=True)
    resp.start_response("200 OK", [])
    resp.write(b"x")
    err = ValueError("late")
    with pytest.raises(ValueError, match="late"):
        resp.start_response("500 X", [], (ValueError, err, None))


def test_file_wrapper_uses_sendfile(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    payload = bytes(range(256)) * 1000
    with tempfile.TemporaryFile() as f:
        f.write(payload)
        f.seek(10)
        resp = Response(a, head_only=False, uwsgi=True)
        resp.start_response("200 OK", [])
        resp.send_file(FileWrapper(f), use_sendfile=True)
        assert resp.sent == len(payload) - 10
    raw = received(a, b)
    assert raw.split(b"\r\n\r\n", 1)[1] == payload[10:]


def test_file_wrapper_iterates_without_sendfile() -> None:
    with tempfile.TemporaryFile() as f:
        f.write(b"abc" * 10)
        f.seek(0)
        assert b"".join(FileWrapper(f, 7)) == b"abc" * 10


def test_http_date_format() -> None:
    assert http_date().endswith(" GMT") and len(http_date()) == 29
