"""The shared response writer: heads byte for byte, the framing rules, and properties (no
header injection gets through, lengths and chunks frame exactly the body)."""

from __future__ import annotations

import time
from typing import Any

import httptools
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from monoceros.protocols import response as writer
from monoceros.protocols.chunked import ChunkedDecoder
from monoceros.protocols.response import (
    HOP_BY_HOP,
    LAST_CHUNK,
    ResponseError,
    Spelling,
    chunk,
    error_response,
    frame,
    response_head,
    status_line,
    status_line_of,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DATE = "Sun, 06 Nov 1994 08:49:37 GMT"  # RFC 9110's example date, 784111777
TITLE = Spelling("srv/1", title_case=True, announce_keep_alive=True)
LOWER = Spelling("srv/1", title_case=False, announce_keep_alive=False)
TOKEN = st.text("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzXYZ", min_size=1, max_size=20)
VALUE = st.text(
    st.characters(min_codepoint=32, max_codepoint=255, blacklist_characters="\x7f"), max_size=30
)


@pytest.fixture(autouse=True)
def fixed_date(monkeypatch: pytest.MonkeyPatch) -> None:
    # the clock, not http_date: the compiled core calls its own functions directly
    monkeypatch.setattr(time, "time", lambda: 784111777.0)


def head(
    headers: Any, spelling: Spelling = TITLE, status: int = 200, **kw: Any
) -> tuple[bytes, writer.Framing]:
    opts: dict[str, Any] = {
        "text": True,
        "whole_body": 13,
        "head_only": False,
        "keep_alive": False,
        "http11": True,
        "uwsgi": False,
    }
    opts.update(kw)
    return response_head(status_line(status), status, headers, spelling, **opts)


def test_wsgi_heads_byte_for_byte() -> None:
    hs = [("Content-Type", "text/plain"), ("X-A", "1")]
    assert head(hs, uwsgi=True)[0] == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: 1\r\nContent-Length: 13\r\n\r\n"
    )
    assert head(hs)[0] == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: 1\r\nContent-Length: 13\r\n"
        b"Date: " + DATE.encode() + b"\r\nServer: srv/1\r\nConnection: close\r\n\r\n"
    )
    raw, framing = head(hs, whole_body=None, keep_alive=True)
    assert raw.endswith(
        b"X-A: 1\r\nTransfer-Encoding: chunked\r\nDate: "
        + DATE.encode()
        + b"\r\nServer: srv/1\r\nConnection: keep-alive\r\n\r\n"
    )
    assert framing.chunked and framing.keep_alive and framing.length is None


def test_asgi_heads_byte_for_byte() -> None:
    hs = [(b"content-type", b"text/plain"), (b"x-a", b"1")]
    start = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-a: 1\r\ncontent-length: 13\r\n"
    end = b"date: " + DATE.encode() + b"\r\nserver: srv/1\r\n"
    assert head(hs, LOWER, text=False, uwsgi=True)[0] == start + b"\r\n"
    assert head(hs, LOWER, text=False, keep_alive=True)[0] == start + end + b"\r\n"
    assert head(hs, LOWER, text=False, keep_alive=True, http11=False)[0] == (
        start + end + b"connection: keep-alive\r\n\r\n"
    )
    assert head(hs, LOWER, text=False)[0] == start + end + b"connection: close\r\n\r\n"


@pytest.mark.parametrize(
    "status,length,whole,opts,expected",
    [
        # (has_body, length, chunked, keep_alive)
        (200, None, 5, {}, (True, 5, False, True)),
        (200, 7, 5, {}, (True, 7, False, True)),
        (200, None, None, {}, (True, None, True, True)),
        (200, None, None, {"http11": False}, (True, None, False, False)),
        (200, None, None, {"keep_alive": False}, (True, None, False, False)),
        (200, None, None, {"uwsgi": True}, (True, None, False, False)),
        (200, 3, None, {"uwsgi": True}, (True, 3, False, False)),
        (200, None, 5, {"head_only": True}, (False, 5, False, True)),
        (200, None, 0, {"head_only": True}, (False, None, False, True)),
        (200, None, None, {"head_only": True}, (False, None, False, True)),
        (200, 42, None, {"head_only": True}, (False, 42, False, True)),
        (204, 9, 0, {}, (False, None, False, True)),
        (304, None, None, {}, (False, None, False, True)),
        (101, None, None, {}, (False, None, False, True)),
    ],
)
def test_framing_rules(
    status: int,
    length: int | None,
    whole: int | None,
    opts: dict[str, bool],
    expected: tuple[Any, ...],
) -> None:
    kw = {"head_only": False, "keep_alive": True, "http11": True, "uwsgi": False, **opts}
    f = frame(status, length, whole, **kw)
    assert (f.has_body, f.length, f.chunked, f.keep_alive) == expected


def test_app_framing_headers_are_the_servers() -> None:
    raw, framing = head(
        [
            ("Connection", "Close"),
            ("Transfer-Encoding", "chunked"),
            ("Keep-Alive", "5"),
            ("Upgrade", "x"),
            ("Content-Length", "2"),
        ],
        keep_alive=True,
    )
    assert raw.count(b"Connection") == 1 and b"Connection: close" in raw
    assert b"chunked" not in raw and b"Keep-Alive" not in raw and b"Upgrade" not in raw
    assert b"Content-Length: 2\r\n" in raw and framing.length == 2 and not framing.keep_alive


@pytest.mark.parametrize(
    "headers,text,match",
    [
        ([("X", "a\x00b")], True, "control character"),
        ([("X", "a\x1b[31mb")], True, "control character"),
        ([(b"x", b"a\x7fb")], False, "control character"),
        ([("X", "a\x0bb")], True, "control character"),
        ([("Content-Length", "-5")], True, "invalid Content-Length"),
        ([("Bad Name", "v")], True, "invalid response header name"),
        ([("Caf\u00e9\u20ac", "v")], True, "invalid response header name"),
        ([("X", "\u20ac")], True, "not latin-1"),
        ([(b"x", b"v")], True, "must be str"),
        (["xyz"], True, "not a"),
        ([("x", "v")], False, "must be bytes"),
        ([(b"content-length", b"-1")], False, "invalid Content-Length"),
        ([("Content-Length", "five")], True, "invalid Content-Length"),
    ],
)
def test_bad_headers_are_refused(headers: Any, text: bool, match: str) -> None:
    with pytest.raises(ResponseError, match=match):
        head(headers, text=text)


def test_bytes_like_headers_are_taken() -> None:
    raw, _ = head([(bytearray(b"x-a"), memoryview(b"1"))], LOWER, text=False, uwsgi=True)
    assert b"\r\nx-a: 1\r\n" in raw


def test_status_lines() -> None:
    assert status_line(404) == b"HTTP/1.1 404 Not Found\r\n"
    assert status_line_of("299 Fine") == (299, b"HTTP/1.1 299 Fine\r\n")
    # the code alone: the status-line's SP is still written (RFC 9112 4), the reason empty
    assert status_line_of("200") == (200, b"HTTP/1.1 200 \r\n")
    assert status_line_of("200 ") == (200, b"HTTP/1.1 200 \r\n")
    assert status_line_of("200 O\tK caf\xe9") == (200, b"HTTP/1.1 200 O\tK caf\xe9\r\n")
    bad_statuses = ("20 OK", "200OK", "200 OK\r\nX: 1", "200 \x00", "200 \u20ac", "\u066200 OK")
    for bad in (*bad_statuses, "200 O\x1bK", "200 O\x7fK", "200 O\x0bK", "200\t"):
        with pytest.raises(ResponseError):
            status_line_of(bad)


def test_error_response_byte_for_byte() -> None:
    assert error_response(431, "too many") == (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 41\r\n\r\n"
        b"Request Header Fields Too Large\ntoo many\n"
    )


@SETTINGS
@given(
    name=TOKEN,
    before=VALUE,
    bad=st.sampled_from([chr(c) for c in (*range(0x20), 0x7F) if c != 0x09]),
    after=VALUE,
    text=st.booleans(),
    uwsgi=st.booleans(),
)
def test_no_value_with_a_control_character_gets_through(
    name: str, before: str, bad: str, after: str, text: bool, uwsgi: bool
) -> None:
    # the server's own fields are dropped or parsed, never written as given: not this test's
    assume(name.lower() not in {"content-length", *(h.decode() for h in HOP_BY_HOP)})
    value = before + bad + after
    headers: Any = [("X-Ok", "1"), (name, value)]
    if not text:
        headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
    with pytest.raises(ResponseError, match="control character"):
        head(headers, TITLE if text else LOWER, text=text, uwsgi=uwsgi)


def parse(raw: bytes) -> tuple[dict[bytes, bytes], bytes, bool]:
    """Headers, body and completeness of one response, read by llhttp."""

    class Reader:
        headers: dict[bytes, bytes] = {}
        body = b""
        complete = False

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers[name.lower()] = value

        def on_body(self, data: bytes) -> None:
            self.body += data

        def on_message_complete(self) -> None:
            self.complete = True

    reader = Reader()
    reader.headers = {}
    httptools.HttpResponseParser(reader).feed_data(raw)
    return reader.headers, reader.body, reader.complete


@SETTINGS
@given(
    body=st.binary(max_size=300),
    given_length=st.booleans(),
    headers=st.lists(st.tuples(TOKEN, VALUE), max_size=4, unique_by=lambda h: h[0].lower()),
    spelling=st.sampled_from([TITLE, LOWER]),
)
def test_content_length_frames_exactly_the_body(
    body: bytes, given_length: bool, headers: list[tuple[str, str]], spelling: Spelling
) -> None:
    headers = [(f"x-{n}", v.strip(" \t")) for n, v in headers]
    if given_length:
        headers.append(("Content-Length", str(len(body))))
    raw, framing = head(
        headers, spelling, keep_alive=True, whole_body=None if given_length else len(body)
    )
    assert framing.length == len(body) and not framing.chunked and framing.keep_alive
    parsed, got, complete = parse(raw + body)
    assert complete and got == body and parsed[b"content-length"] == b"%d" % len(body)
    for name, value in headers[: -1 if given_length else None]:
        assert parsed[name.lower().encode()] == value.encode("latin-1")


@SETTINGS
@given(
    pieces=st.lists(st.binary(min_size=1, max_size=200), max_size=8),
    cut=st.integers(min_value=1, max_value=50),
)
def test_chunks_round_trip_through_the_decoder(pieces: list[bytes], cut: int) -> None:
    raw, framing = head([], whole_body=None, keep_alive=True)
    assert framing.chunked
    wire = b"".join(chunk(p) for p in pieces) + LAST_CHUNK
    decoder, buf, out = ChunkedDecoder(), bytearray(), []
    for i in range(0, len(wire), cut):  # fed in pieces, as they arrive
        buf += wire[i : i + cut]
        while (data := decoder.read(buf)) is not None:
            out.append(data)
    assert decoder.done and b"".join(out) == b"".join(pieces) and not buf
    assert parse(raw + wire)[1:] == (b"".join(pieces), True)
