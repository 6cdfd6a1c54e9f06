"""permessage-deflate (RFC 7692): the offer answered, messages compressed and inflated, and the
frame parser's RSV1 rules, byte by byte and with hypothesis."""

from __future__ import annotations

import os
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monoceros.protocols.permessage_deflate import (
    DeflateError,
    DeflateParams,
    Deflater,
    Inflater,
    negotiate,
    parse_extensions,
)
from monoceros.protocols.websocket import (
    OP_BINARY,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    FrameParser,
    WebSocketError,
    encode_frame,
)

KEY = b"\x37\xfa\x21\x3d"


def client(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    return encode_frame(opcode, payload, fin, mask=KEY, rsv1=rsv1)


def messages(parser: FrameParser) -> list[tuple[int, bytes, str | None]]:
    """The parsed messages as (opcode, data, text): Message's equality leaves text out."""
    out = []
    while (m := parser.next_message()) is not None:
        out.append((m.opcode, m.data, m.text))
    return out


def compressing_parser(max_size: int = 1 << 20, params: DeflateParams | None = None) -> FrameParser:
    parser = FrameParser(max_size)
    parser.inflater = Inflater(params or DeflateParams())
    return parser


# ----------------------------------------------------------------------------- negotiation


def answer(*values: str) -> str | None:
    params = negotiate(v.encode() for v in values)
    return None if params is None else params.response().decode()


def test_the_plain_offer_of_browsers_and_websockets_is_accepted() -> None:
    assert answer("permessage-deflate; client_max_window_bits") == "permessage-deflate"
    assert answer("permessage-deflate") == "permessage-deflate"
    assert answer("PerMessage-Deflate") == "permessage-deflate"  # tokens are case-insensitive


def test_every_parameter_is_honoured_and_echoed() -> None:
    assert answer(
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=10; client_max_window_bits=12"
    ) == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=10; client_max_window_bits=12"
    )
    assert answer('permessage-deflate; server_max_window_bits="9"') == (
        "permessage-deflate; server_max_window_bits=9"
    )


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; unknown",  # a parameter not defined for an offer
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",  # twice
        "permessage-deflate; server_no_context_takeover=1",  # takes no value
        "permessage-deflate; client_no_context_takeover=x",
        "permessage-deflate; server_max_window_bits",  # needs a value
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=010",  # leading zero
        "permessage-deflate; server_max_window_bits=8",  # zlib cannot compress with 256 bytes
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=abc",
    ],
)
def test_offers_that_cannot_be_honoured_are_declined(offer: str) -> None:
    assert answer(offer) is None


def test_the_first_acceptable_offer_wins_and_others_are_skipped() -> None:
    assert answer(
        "x-webkit-deflate-frame",
        "permessage-deflate; server_max_window_bits=8, permessage-deflate; "
        "server_no_context_takeover, permessage-deflate",
    ) == ("permessage-deflate; server_no_context_takeover")
    assert answer("x-webkit-deflate-frame, foo; bar=1") is None


def test_malformed_headers_negotiate_nothing() -> None:
    assert answer("permessage-deflate; =1") is None
    assert answer('permessage-deflate; a="unterminated') is None
    assert answer("per message-deflate") is None


def test_parse_extensions_grammar() -> None:
    assert parse_extensions([b'a; b=1; c="d", ,e', b"f"]) == [
        ("a", [("b", "1"), ("c", "d")]),
        ("e", []),
        ("f", []),
    ]


# ----------------------------------------------------------------------------- compression


def test_a_compressed_message_is_the_rfc_example() -> None:
    # RFC 7692 7.2.3.1: "Hello" compressed is f2 48 cd c9 c9 07 00
    deflater = Deflater(DeflateParams())
    assert deflater.compress(b"Hello") == bytes.fromhex("f248cdc9c90700")
    # with context takeover the second "Hello" refers back to the first (7.2.3.2)
    assert deflater.compress(b"Hello") == bytes.fromhex("f200110000")
    parser = compressing_parser()
    parser.receive_data(client(OP_TEXT, bytes.fromhex("f248cdc9c90700"), rsv1=True))
    parser.receive_data(client(OP_TEXT, bytes.fromhex("f200110000"), rsv1=True))
    assert messages(parser) == [(OP_TEXT, b"Hello", "Hello")] * 2


def test_rfc_example_of_a_message_fragmented_after_compression() -> None:
    # RFC 7692 7.2.3.3: "Hello" compressed, sent in two frames, RSV1 on the first only
    parser = compressing_parser()
    parser.receive_data(client(OP_TEXT, bytes.fromhex("f248cd"), fin=False, rsv1=True))
    parser.receive_data(client(OP_CONT, bytes.fromhex("c9c90700")))
    assert messages(parser) == [(OP_TEXT, b"Hello", "Hello")]


def test_without_server_context_takeover_each_message_stands_alone() -> None:
    deflater = Deflater(DeflateParams(server_no_context_takeover=True))
    first, second = deflater.compress(b"Hello" * 20), deflater.compress(b"Hello" * 20)
    for payload in (first, second):  # each inflates with a fresh decompressor
        assert zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff") == b"Hello" * 20


def test_a_small_window_is_used_when_the_client_asks() -> None:
    data = os.urandom(600) * 4  # repeats 600 bytes back: out of a 512-byte window's reach
    small = Deflater(DeflateParams(server_max_window_bits=9)).compress(data)
    assert zlib.decompressobj(-9).decompress(small + b"\x00\x00\xff\xff") == data
    assert len(Deflater(DeflateParams()).compress(data)) < len(small) / 2


def test_an_empty_message_compresses_and_inflates() -> None:
    payload = Deflater(DeflateParams()).compress(b"")
    parser = compressing_parser()
    parser.receive_data(client(OP_BINARY, payload, rsv1=True))
    parser.receive_data(client(OP_BINARY, b"\x00", rsv1=True))  # the RFC's one-byte form
    parser.receive_data(client(OP_BINARY, b"", rsv1=True))
    assert messages(parser) == [(OP_BINARY, b"", None)] * 3


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(max_size=3000) | st.text(max_size=500).map(str.encode), max_size=5),
    st.booleans(),
    st.booleans(),
    st.integers(9, 15),
)
def test_round_trips_of_message_sequences(
    datas: list[bytes], server_reset: bool, client_reset: bool, bits: int
) -> None:
    # the client's side, compressed as a client configured so would (its own window, reset)
    params = DeflateParams(server_reset, client_reset, bits)
    as_client = Deflater(DeflateParams(server_no_context_takeover=client_reset))
    parser = compressing_parser(params=params)
    for data in datas:
        parser.receive_data(client(OP_BINARY, as_client.compress(data), rsv1=True))
    assert [data for _, data, _ in messages(parser)] == datas
    # the server's side, inflated as the client does (with its window, reset if agreed)
    deflater = Deflater(params)
    inflate = zlib.decompressobj(-bits)
    for data in datas:
        if server_reset:
            inflate = zlib.decompressobj(-bits)
        assert inflate.decompress(deflater.compress(data) + b"\x00\x00\xff\xff") == data


@settings(max_examples=40, deadline=None)
@given(st.text(min_size=1, max_size=400), st.data())
def test_every_split_point_of_a_compressed_text_message(text: str, data: st.DataObject) -> None:
    """The compressed payload cut into two frames at each point, fed byte by byte."""
    payload = Deflater(DeflateParams()).compress(text.encode())
    cut = data.draw(st.integers(0, len(payload)))
    wire = client(OP_TEXT, payload[:cut], fin=False, rsv1=True) + client(OP_CONT, payload[cut:])
    parser = compressing_parser()
    for i in range(len(wire)):
        parser.receive_data(wire[i : i + 1])
    assert messages(parser) == [(OP_TEXT, text.encode(), text)]


def test_all_split_points_of_one_message() -> None:
    text = "grüße, " * 40
    payload = Deflater(DeflateParams()).compress(text.encode())
    for cut in range(len(payload) + 1):
        parser = compressing_parser()
        parser.receive_data(
            client(OP_TEXT, payload[:cut], fin=False, rsv1=True)
            + client(OP_PING, b"between")
            + client(OP_CONT, payload[cut:])
        )
        assert messages(parser) == [
            (OP_PING, b"between", None),
            (OP_TEXT, text.encode(), text),
        ]


# ----------------------------------------------------------------------------- limits and errors


def test_a_zip_bomb_stops_at_the_limit() -> None:
    bomb = Deflater(DeflateParams()).compress(b"\x00" * (8 << 20))
    assert len(bomb) < 10_000
    parser = compressing_parser(max_size=1 << 20)
    with pytest.raises(WebSocketError) as info:
        parser.receive_data(client(OP_BINARY, bomb, rsv1=True))
    assert info.value.code == 1009
    assert "once inflated" in info.value.reason


def test_the_limit_counts_inflated_bytes_over_fragments() -> None:
    payload = Deflater(DeflateParams()).compress(b"a" * 1000)
    parser = compressing_parser(max_size=999)
    with pytest.raises(WebSocketError) as info:
        parser.receive_data(client(OP_BINARY, payload[:3], fin=False, rsv1=True))
        parser.receive_data(client(OP_CONT, payload[3:]))
    assert info.value.code == 1009
    exact = compressing_parser(max_size=1000)
    exact.receive_data(client(OP_BINARY, payload, rsv1=True))
    assert messages(exact) == [(OP_BINARY, b"a" * 1000, None)]


def test_inflater_room_is_never_unlimited() -> None:
    inflater = Inflater(DeflateParams())
    payload = Deflater(DeflateParams()).compress(b"b" * 100)
    with pytest.raises(DeflateError):
        inflater.feed(payload, True, 99)
    assert Inflater(DeflateParams()).feed(payload, True, 100) == b"b" * 100


def test_data_that_does_not_inflate_is_1007() -> None:
    parser = compressing_parser()
    with pytest.raises(WebSocketError) as info:
        parser.receive_data(client(OP_BINARY, b"\xff\xff\xff\xff", rsv1=True))
    assert info.value.code == 1007


@pytest.mark.parametrize(
    "wire, reason",
    [
        (client(OP_PING, b"", rsv1=True), "RSV1 set on a control frame"),
        (
            client(OP_TEXT, b"", fin=False, rsv1=True) + client(OP_CONT, b"", rsv1=True),
            "RSV1 set on a continuation frame",
        ),
        (bytes([0xA1, 0x80]) + KEY, "RSV2 or RSV3"),
        (bytes([0x91, 0x80]) + KEY, "RSV2 or RSV3"),
    ],
)
def test_rsv_rules_with_the_extension(wire: bytes, reason: str) -> None:
    parser = compressing_parser()
    with pytest.raises(WebSocketError) as info:
        parser.receive_data(wire)
    assert info.value.code == 1002 and reason in info.value.reason


def test_rsv1_without_the_extension_is_a_protocol_error() -> None:
    parser = FrameParser()
    with pytest.raises(WebSocketError) as info:
        parser.receive_data(client(OP_TEXT, b"x", rsv1=True))
    assert info.value.code == 1002


def test_uncompressed_messages_still_pass_with_the_extension() -> None:
    parser = compressing_parser()
    parser.receive_data(client(OP_TEXT, b"plain") + client(OP_BINARY, b"\x00raw"))
    assert messages(parser) == [(OP_TEXT, b"plain", "plain"), (OP_BINARY, b"\x00raw", None)]


def test_invalid_utf8_inside_a_compressed_message_is_1007() -> None:
    payload = Deflater(DeflateParams()).compress(b"ok \xff bad")
    parser = compressing_parser()
    with pytest.raises(WebSocketError) as info:
        parser.receive_data(client(OP_TEXT, payload, rsv1=True))
    assert info.value.code == 1007
