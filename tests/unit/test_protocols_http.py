"""The sans-IO HTTP/1.1 parser: requests, bodies, limits, and every framing attack it must refuse."""

from __future__ import annotations

import pytest

from monoceros.protocols.errors import (
    HeadersTooLarge,
    InvalidHTTPRequest,
    ProtocolError,
    RequestLineTooLong,
)
from monoceros.protocols.http import (
    NEED_DATA,
    Data,
    EndOfMessage,
    HttpLimits,
    HttpParser,
    HttpRequest,
)


def events(raw: bytes, limits: HttpLimits | None = None, split: int = 0) -> list[object]:
    parser = HttpParser(limits)
    pieces = [raw[i : i + split] for i in range(0, len(raw), split)] if split else [raw]
    out: list[object] = []
    for piece in pieces:
        parser.receive_data(piece)
        while (ev := parser.next_event()) is not NEED_DATA:
            out.append(ev)
    return out


def body_of(evs: list[object]) -> bytes:
    return b"".join(e.data for e in evs if isinstance(e, Data))


def test_simple_get() -> None:
    evs = events(b"GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n")
    req = evs[0]
    assert isinstance(req, HttpRequest)
    assert (req.method, req.target, req.version) == ("GET", b"/a/b?x=1", "1.1")
    assert req.headers == [(b"Host", b"h"), (b"X-A", b"1")]
    assert req.content_length == 0 and not req.chunked and req.keep_alive
    assert isinstance(evs[1], EndOfMessage) and len(evs) == 2


@pytest.mark.parametrize("split", [1, 2, 7, 64])
def test_byte_by_byte_gives_the_same_events(split: int) -> None:
    raw = b"POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world"
    whole = events(raw)
    pieces = events(raw, split=split)
    assert body_of(pieces) == body_of(whole) == b"hello world"
    assert pieces[0].target == whole[0].target  # type: ignore[attr-defined]
    assert isinstance(pieces[-1], EndOfMessage)


def test_chunked_body_with_extensions_and_trailers() -> None:
    raw = (
        b"POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    evs = events(raw)
    assert evs[0].chunked and evs[0].content_length is None  # type: ignore[attr-defined]
    assert body_of(evs) == b"hello world"


def test_expect_continue_only_on_http11() -> None:
    raw = b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
    assert events(raw)[0].expect_continue  # type: ignore[attr-defined]
    raw10 = b"POST /e HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
    assert not events(raw10)[0].expect_continue  # type: ignore[attr-defined]


def test_pipelined_requests_come_in_order() -> None:
    raw = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
    targets = [e.target for e in events(raw) if isinstance(e, HttpRequest)]
    assert targets == [b"/1", b"/2"]


def test_http10_without_host_is_fine() -> None:
    req = events(b"GET / HTTP/1.0\r\n\r\n")[0]
    assert req.version == "1.0" and not req.keep_alive  # type: ignore[attr-defined]


def test_eof_inside_a_request_is_an_error() -> None:
    parser = HttpParser()
    parser.receive_data(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    assert isinstance(parser.next_event(), HttpRequest)
    assert isinstance(parser.next_event(), Data)
    assert parser.next_event() is NEED_DATA
    parser.receive_data(b"")
    with pytest.raises(InvalidHTTPRequest, match="closed before"):
        parser.next_event()


def test_request_line_limit_is_414() -> None:
    raw = b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    with pytest.raises(RequestLineTooLong) as info:
        events(raw, split=1000)
    assert info.value.status == 414


def test_header_field_size_limit_is_431() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n"
    with pytest.raises(HeadersTooLarge) as info:
        events(raw)
    assert info.value.status == 431


def test_header_count_limit() -> None:
    raw = (
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(5)) + b"\r\n"
    )
    assert events(raw, HttpLimits(fields=6))
    with pytest.raises(HeadersTooLarge, match="limit_request_fields"):
        events(raw, HttpLimits(fields=5))


def test_zero_limits_mean_unlimited() -> None:
    raw = b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert isinstance(events(raw, HttpLimits(0, 0, 0))[0], HttpRequest)


BAD = {
    "no_host_on_11": b"GET / HTTP/1.1\r\n\r\n",
    "cl_and_te": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two_cl": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc",
    "cl_not_number": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3x\r\n\r\nabc",
    "negative_cl": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\nabc",
    "bad_chunk_hex": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "chunk_overflow": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffffff\r\n",
    "unknown_te": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
    "chunked_not_last": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
    "space_before_colon": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabc",
    "obs_fold": b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
    "te_in_http10": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "nul_in_value": b"GET / HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",
    "bad_header_name": b"GET / HTTP/1.1\r\nHost: x\r\nX Bad(): v\r\n\r\n",
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "no_method": b" / HTTP/1.1\r\nHost: x\r\n\r\n",
    "method_with_separator": b"GE;T / HTTP/1.1\r\nHost: x\r\n\r\n",
    "no_method_after_a_request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n / HTTP/1.1\r\nHost: x\r\n\r\n",
    "uwsgi_packet": b"\x00\x10\x00\x00\x0e\x00REQUEST_METHOD\x03\x00GET",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_requests_raise_400(name: str) -> None:
    with pytest.raises(ProtocolError) as info:
        events(BAD[name])
    assert info.value.status == 400 and info.value.reason


def test_error_is_sticky() -> None:
    parser = HttpParser()
    parser.receive_data(BAD["garbage"])
    for _ in range(2):
        with pytest.raises(ProtocolError):
            parser.next_event()


def test_at_message_end_once_the_body_was_taken() -> None:
    parser = HttpParser()
    parser.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    assert not parser.at_message_end
    assert isinstance(parser.next_event(), HttpRequest)
    assert not parser.at_message_end  # the body is still queued
    event = parser.next_event()
    assert isinstance(event, Data) and event.data == b"abc"
    assert parser.at_message_end
    assert isinstance(parser.next_event(), EndOfMessage)
    assert not parser.at_message_end


def test_not_at_message_end_while_the_body_is_incomplete() -> None:
    parser = HttpParser()
    parser.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabc")
    parser.next_event()
    parser.next_event()
    assert not parser.at_message_end
    assert parser.next_event() is NEED_DATA


UPGRADE = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"


def test_an_upgrade_offer_holds_what_follows_for_the_worker_that_takes_it() -> None:
    parser = HttpParser()
    parser.receive_data(UPGRADE + b"\x81\x05hello")
    req = parser.next_event()
    assert isinstance(req, HttpRequest) and req.upgrade
    parser.receive_data(b"\x81\x01!")
    assert parser.upgraded_data == b"\x81\x05hello\x81\x01!"


def test_an_upgrade_offer_not_taken_goes_on_as_http() -> None:
    evs = events(UPGRADE + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    reqs = [e for e in evs if isinstance(e, HttpRequest)]
    assert [r.target for r in reqs] == [b"/ws", b"/next"] and reqs[0].upgrade
    assert sum(isinstance(e, EndOfMessage) for e in evs) == 2


@pytest.mark.parametrize("split", [1, 3, 50])
def test_an_upgrade_offer_with_a_body_is_an_ordinary_request(split: int) -> None:
    raw = (
        b"POST /e HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
        b"Content-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    evs = events(raw, split=split)
    reqs = [e for e in evs if isinstance(e, HttpRequest)]
    assert [r.target for r in reqs] == [b"/e", b"/next"]
    assert not reqs[0].upgrade and reqs[0].content_length == 5
    assert body_of(evs) == b"hello"


@pytest.mark.parametrize("split", [1, 2, 5])
def test_an_extension_method_arriving_in_pieces(split: int) -> None:
    evs = events(b"\r\nLONGMETHOD /x HTTP/1.1\r\nHost: x\r\n\r\n", split=split)
    assert isinstance(evs[0], HttpRequest) and evs[0].method == "LONGMETHOD"


def test_an_extension_method_longer_than_the_request_line_limit_is_414() -> None:
    with pytest.raises(RequestLineTooLong):
        events(b"X" * 200, HttpLimits(line=100))


def test_an_extension_method_right_behind_a_body_split_across_reads_is_refused() -> None:
    """The known limit: where llhttp's body ended in that read is not known."""
    parser = HttpParser()
    parser.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
    parser.receive_data(b"cdFOO / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(InvalidHTTPRequest):
        while parser.next_event() is not NEED_DATA:
            pass
