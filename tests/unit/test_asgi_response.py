"""Response heads of the ASGI worker: framing, validation, error responses."""

from __future__ import annotations

from typing import Any

import pytest

from monoceros.asgi.response import build_head
from monoceros.protocols.response import ResponseError, error_response, status_line


def head(
    status: int = 200, headers: list[tuple[bytes, bytes]] | None = None, **kw: Any
) -> tuple[bytes, Any]:
    opts: dict[str, Any] = {
        "first_body": b"hello",
        "head_only": False,
        "keep_alive": True,
        "http11": True,
        "uwsgi": False,
    }
    opts.update(kw)
    return build_head(status, headers or [], **opts)


def lines(raw: bytes) -> list[bytes]:
    assert raw.endswith(b"\r\n\r\n")
    return raw[:-4].split(b"\r\n")


def test_single_body_gets_a_content_length() -> None:
    raw, framing = head(headers=[(b"content-type", b"text/plain")])
    assert lines(raw)[0] == b"HTTP/1.1 200 OK"
    assert b"content-length: 5" in lines(raw) and b"content-type: text/plain" in lines(raw)
    assert framing.length == 5 and not framing.chunked and framing.keep_alive
    assert any(x.startswith(b"date: ") for x in lines(raw))


def test_streamed_body_is_chunked_on_http11_and_close_delimited_elsewhere() -> None:
    raw, framing = head(first_body=None)
    assert b"transfer-encoding: chunked" in lines(raw) and framing.chunked
    raw, framing = head(first_body=None, http11=False)
    assert b"connection: close" in lines(raw) and not framing.keep_alive
    raw, framing = head(first_body=None, uwsgi=True)
    assert b"transfer-encoding: chunked" not in lines(raw) and not framing.chunked
    assert not any(x.startswith((b"date", b"connection")) for x in lines(raw))


def test_app_framing_and_hop_by_hop_headers_are_the_servers() -> None:
    raw, framing = head(
        headers=[
            (b"Transfer-Encoding", b"chunked"),
            (b"Connection", b"close"),
            (b"Content-Length", b"5"),
        ]
    )
    assert b"Transfer-Encoding: chunked" not in raw and b"content-length: 5" in lines(raw)
    assert b"connection: close" in lines(raw) and not framing.keep_alive


@pytest.mark.parametrize("status,kw", [(204, {}), (304, {}), (200, {"head_only": True})])
def test_no_body_responses(status: int, kw: dict[str, Any]) -> None:
    raw, framing = head(status, first_body=b"", **kw)
    assert not framing.has_body
    assert b"content-length" not in raw and b"transfer-encoding" not in raw


def test_head_keeps_the_apps_content_length() -> None:
    raw, _ = head(headers=[(b"content-length", b"42")], head_only=True, first_body=b"")
    assert b"content-length: 42" in lines(raw)


def test_http10_keep_alive_is_announced() -> None:
    raw, _ = head(http11=False)
    assert b"connection: keep-alive" in lines(raw)


@pytest.mark.parametrize(
    "headers,match",
    [
        ([(b"x-a", b"1\r\nSet-Cookie: evil=1")], "header injection"),
        ([(b"x-a", b"1\nx")], "header injection"),
        ([(b"x-a", b"a\x00b")], "header injection"),
        ([(b"bad name", b"v")], "invalid response header name"),
        ([(b"x-a\r\n", b"v")], "invalid response header name"),
        ([("x-a", "str")], "must be bytes"),
        ([(b"content-length", b"abc")], "invalid Content-Length"),
        ([(b"only-one",)], r"not a \(name, value\) pair"),
    ],
)
def test_bad_headers_are_refused(headers: list[tuple[bytes, ...]], match: str) -> None:
    with pytest.raises(ResponseError, match=match):
        head(headers=headers)  # type: ignore[arg-type]


def test_status_lines() -> None:
    assert status_line(404) == b"HTTP/1.1 404 Not Found\r\n"
    assert status_line(599) == b"HTTP/1.1 599 Unknown\r\n"
    for bad in (99, 1000):
        with pytest.raises(ResponseError):
            status_line(bad)


def test_error_response_is_complete_and_closing() -> None:
    raw = error_response(400, "bad chunk")
    head_part, _, body = raw.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 400 Bad Request\r\nConnection: close")
    assert body == b"Bad Request\nbad chunk\n" and f"Content-Length: {len(body)}".encode() in raw
