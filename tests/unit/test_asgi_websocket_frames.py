"""The sans-IO WebSocket layer (RFC 6455): handshake key, masking, frames, messages, errors."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monoceros.protocols import websocket
from monoceros.protocols.websocket import (
    MAX_FRAGMENTS,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    PING,
    TIMEOUT,
    FrameParser,
    Keepalive,
    Message,
    WebSocketError,
    accept_key,
    close_payload,
    encode_frame,
    parse_close,
    unmask,
    unmask_in_place,
)

KEY = b"\x37\xfa\x21\x3d"


@pytest.fixture(params=["C", "pure"], autouse=True)
def unmasking(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with websockets' C apply_mask (a test dependency) and without it."""
    if request.param == "pure":
        monkeypatch.setattr(websocket, "_apply_mask", None)
    else:
        assert websocket._apply_mask is not None
    return str(request.param)


def client(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    return encode_frame(opcode, payload, fin, mask=KEY)


def messages(parser: FrameParser) -> list[Message]:
    out = []
    while (m := parser.next_message()) is not None:
        out.append(m)
    return out


def test_accept_key_of_the_rfc_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_rfc_masked_hello_example() -> None:
    # RFC 6455 5.7: a masked text frame "Hello"
    frame = bytes.fromhex("818537fa213d7f9f4d5158")
    assert client(OP_TEXT, b"Hello") == frame
    parser = FrameParser()
    parser.receive_data(frame)
    assert messages(parser) == [Message(OP_TEXT, b"Hello", "Hello")]


@given(st.binary(max_size=2000), st.binary(min_size=4, max_size=4))
def test_unmask_matches_the_per_byte_definition(data: bytes, key: bytes) -> None:
    assert unmask(data, key) == bytes(b ^ key[i % 4] for i, b in enumerate(data))


@given(st.binary(max_size=3000), st.binary(min_size=4, max_size=4), st.integers(0, 7))
def test_unmask_in_place_touches_only_its_range(data: bytes, key: bytes, start: int) -> None:
    buf = bytearray(b"<" * start + data + b">")
    unmask_in_place(buf, start, start + len(data), key)
    assert buf == b"<" * start + unmask(data, key) + b">"


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_server_frame_length_encodings(size: int) -> None:
    frame = encode_frame(OP_BINARY, b"x" * size)
    assert frame[0] == 0x82 and not frame[1] & 0x80
    header = 2 if size < 126 else 4 if size < 65536 else 10
    assert len(frame) == header + size
    parser = FrameParser()
    parser.receive_data(client(OP_BINARY, b"x" * size))
    assert messages(parser) == [Message(OP_BINARY, b"x" * size)]


def test_byte_by_byte_feeding_and_fragments_with_a_control_frame_between() -> None:
    data = (
        client(OP_TEXT, b"caf", fin=False)
        + client(OP_PING, b"p")
        + client(OP_CONT, "\u00e9!".encode())
    )
    parser = FrameParser()
    for i in range(len(data)):
        parser.receive_data(data[i : i + 1])
    assert messages(parser) == [
        Message(OP_PING, b"p"),
        Message(OP_TEXT, "caf\u00e9!".encode(), "caf\u00e9!"),
    ]
    assert parser.buffered == 0


def test_utf8_split_across_fragments_is_fine_but_invalid_text_is_1007() -> None:
    parser = FrameParser()
    raw = "\u00e9".encode()
    parser.receive_data(client(OP_TEXT, raw[:1], fin=False) + client(OP_CONT, raw[1:]))
    assert messages(parser)[0].text == "\u00e9"
    with pytest.raises(WebSocketError) as info:
        FrameParser().receive_data(client(OP_TEXT, b"\xff\xfe"))
    assert info.value.code == 1007


@pytest.mark.parametrize(
    "raw,reason",
    [
        (encode_frame(OP_TEXT, b"x"), "not masked"),
        (bytes([0xC1, 0x80]) + KEY, "reserved bits"),
        (bytes([0x83, 0x80]) + KEY, "reserved opcode"),
        (client(OP_PING, b"p", fin=False), "fragmented control"),
        (client(OP_PING, b"p" * 126), "longer than 125"),
        (client(OP_CONT, b"x"), "continuation frame without"),
        (client(OP_TEXT, b"a", fin=False) + client(OP_TEXT, b"b"), "inside a fragmented"),
    ],
)
def test_protocol_violations_are_1002(raw: bytes, reason: str) -> None:
    with pytest.raises(WebSocketError) as info:
        FrameParser().receive_data(raw)
    assert info.value.code == 1002 and reason in info.value.reason


def test_message_size_limit_is_1009_and_counts_fragments() -> None:
    parser = FrameParser(max_message_size=10)
    parser.receive_data(client(OP_BINARY, b"x" * 10))
    assert len(messages(parser)) == 1
    with pytest.raises(WebSocketError) as info:
        parser.receive_data(client(OP_BINARY, b"x" * 6, fin=False) + client(OP_CONT, b"y" * 5))
    assert info.value.code == 1009
    with pytest.raises(WebSocketError):  # refused from the header, before the payload arrives
        FrameParser(max_message_size=10).receive_data(client(OP_BINARY, b"z" * 100)[:4])


def test_fragment_count_limit_is_1009_and_counts_empty_continuations() -> None:
    """Zero-length continuation frames add nothing to the size: the frame count bounds them."""
    parser = FrameParser(max_fragments=4)
    parser.receive_data(client(OP_TEXT, b"a", fin=False) + client(OP_CONT, b"", fin=False) * 2)
    parser.receive_data(client(OP_CONT, b"b"))  # the 4th frame: allowed
    assert [(m.opcode, m.text) for m in messages(parser)] == [(OP_TEXT, "ab")]
    parser.receive_data(client(OP_BINARY, b"", fin=False) + client(OP_CONT, b"", fin=False) * 3)
    with pytest.raises(WebSocketError) as info:  # a 5th frame
        parser.receive_data(client(OP_CONT, b""))
    assert info.value.code == 1009 and "4 fragments" in info.value.reason
    # 4 MiB in 64-byte fragments is 65,537 frames for Autobahn (9.3.1): an empty one ends it
    assert MAX_FRAGMENTS == 131072


def test_fragments_are_joined_in_one_buffer_as_they_come() -> None:
    """The memory of a fragmented message is its payload: no object per fragment."""
    parser = FrameParser()
    parser.receive_data(client(OP_BINARY, b"x", fin=False))
    parser.receive_data(b"".join(client(OP_CONT, bytes([i % 256]), fin=False) for i in range(999)))
    assert parser.buffered == 1000
    parser.receive_data(client(OP_CONT, b"end"))
    (msg,) = messages(parser)
    assert msg.data == b"x" + bytes(i % 256 for i in range(999)) + b"end"
    assert type(msg.data) is bytes and parser.buffered == 0


def test_close_payloads() -> None:
    assert parse_close(b"") == (1005, "")
    assert parse_close(close_payload(1000, "bye")) == (1000, "bye")
    assert parse_close(close_payload(4001)) == (4001, "")
    for code in (999, 1004, 1005, 1006, 1015, 1016, 2999, 5000):
        with pytest.raises(WebSocketError):
            parse_close(code.to_bytes(2, "big"))
    with pytest.raises(WebSocketError):
        parse_close(b"\x03")
    with pytest.raises(WebSocketError) as info:
        parse_close(b"\x03\xe8\xff")
    assert info.value.code == 1007
    long = close_payload(1000, "\u00e9" * 100)  # cut to 125 bytes on a character boundary
    assert len(long) <= 125 and parse_close(long)[1] == "\u00e9" * 61


def test_pong_and_close_frames_are_handed_out() -> None:
    parser = FrameParser()
    parser.receive_data(client(OP_PONG, b"") + client(OP_CLOSE, close_payload(1001)))
    assert [m.opcode for m in messages(parser)] == [OP_PONG, OP_CLOSE]


def test_masking_large_payload_roundtrip() -> None:
    data = os.urandom(1 << 20)
    assert unmask(unmask(data, KEY), KEY) == data


def test_invalid_utf8_fails_at_the_fragment_that_carries_it() -> None:
    parser = FrameParser()
    parser.receive_data(client(OP_TEXT, b"valid ", fin=False))
    parser.receive_data(client(OP_CONT, "caf\u00e9"[:-1].encode() + b"\xc3", fin=False))
    with pytest.raises(WebSocketError) as info:  # the final fragment has not come yet
        parser.receive_data(client(OP_CONT, b"\xff more", fin=False))
    assert info.value.code == 1007 and "fragment 3" in info.value.reason


def test_a_character_split_over_fragments_is_only_judged_when_complete() -> None:
    parser = FrameParser()
    parser.receive_data(client(OP_TEXT, b"\xe2\x82", fin=False))
    parser.receive_data(client(OP_CONT, b"\xac"))
    assert [m.text for m in messages(parser)] == ["\u20ac"]
    parser.receive_data(client(OP_TEXT, b"\xe2\x82", fin=False))
    with pytest.raises(WebSocketError) as info:  # truncated at the end of the message
        parser.receive_data(client(OP_CONT, b""))
    assert info.value.code == 1007


def test_messages_before_a_bad_frame_stay_available() -> None:
    parser = FrameParser()
    with pytest.raises(WebSocketError):
        parser.receive_data(
            client(OP_TEXT, b"first") + client(OP_PING, b"p") + client(0x5, b"reserved")
        )
    assert messages(parser) == [Message(OP_TEXT, b"first", "first"), Message(OP_PING, b"p")]


def test_keepalive_pings_only_after_the_interval_of_silence() -> None:
    ka = Keepalive(interval=20.0, timeout=5.0)
    assert ka.check(10.0, last_seen=0.0) == (None, 20.0)
    assert ka.check(20.0, last_seen=15.0) == (None, 35.0)  # the peer spoke meanwhile
    assert ka.check(35.0, last_seen=15.0) == (PING, 40.0)
    assert ka.check(38.0, last_seen=15.0) == (None, 40.0)
    assert ka.check(40.0, last_seen=15.0) == (TIMEOUT, 0.0)


def test_keepalive_any_answer_after_the_ping_counts() -> None:
    ka = Keepalive(interval=1.0, timeout=1.0)
    assert ka.check(1.0, last_seen=0.0) == (PING, 2.0)
    assert ka.check(2.0, last_seen=1.5) == (None, 2.5)  # answered at 1.5: idle from there
    assert ka.check(2.5, last_seen=1.5) == (PING, 3.5)
    assert ka.ping_sent == 2.5


def test_keepalive_without_timeout_pings_on_and_never_gives_up() -> None:
    ka = Keepalive(interval=2.0, timeout=0.0)
    assert ka.check(2.0, last_seen=0.0) == (PING, 4.0)
    assert ka.check(4.0, last_seen=0.0) == (PING, 6.0)
    assert ka.check(100.0, last_seen=0.0) == (PING, 102.0)


def test_invalid_utf8_fails_before_its_frame_is_whole() -> None:
    """Autobahn 6.4.3/6.4.4: one frame sent in pieces fails at the piece with the bad byte."""
    payload = "κόσμε".encode() + b"\xed\xa0\x80" + b"edited" * 500
    wire = client(OP_TEXT, payload)
    parser = FrameParser()
    parser.receive_data(wire[:20])  # valid so far
    with pytest.raises(WebSocketError) as info:
        parser.receive_data(wire[20:30])  # the surrogate is here; 3000 bytes still to come
    assert info.value.code == 1007 and "fragment" not in info.value.reason


@given(
    st.text(max_size=3000),
    st.lists(st.integers(1, 4000), max_size=6),
    st.booleans(),
)
def test_text_frames_cut_anywhere_decode_the_same(
    text: str, cuts: list[int], fragmented: bool
) -> None:
    raw = text.encode()
    if fragmented:
        half = len(raw) // 2
        wire = client(OP_TEXT, raw[:half], fin=False) + client(OP_CONT, raw[half:])
    else:
        wire = client(OP_TEXT, raw)
    parser = FrameParser()
    pos = 0
    for cut in sorted(cuts):
        parser.receive_data(wire[pos:cut])
        pos = max(pos, cut)
    parser.receive_data(wire[pos:])
    assert [(m.opcode, m.data, m.text) for m in messages(parser)] == [(OP_TEXT, raw, text)]
    assert messages(parser) == [] and parser.buffered == 0
