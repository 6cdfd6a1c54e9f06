"""Property tests of the uWSGI parser: generated packets round-trip, in any split and whether
the head was read by the parser or by parse_head (as the sync and gthread workers do), a cut
anywhere is a TruncatedPacket, garbage only raises ProtocolError, overrunning lengths are always
rejected."""

from __future__ import annotations

import itertools
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monoceros.protocols.errors import InvalidUWSGIHeader, ProtocolError, TruncatedPacket
from monoceros.protocols.uwsgi import (
    NEED_DATA,
    Data,
    EndOfMessage,
    Ping,
    UwsgiParser,
    UwsgiRequest,
    parse_head,
    truncated_head,
)

from unit_support import encode

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# latin-1 text without the three forbidden characters
SAFE_CHARS = st.characters(min_codepoint=1, max_codepoint=255, blacklist_characters="\r\n")
TOKEN_CHARS = st.sampled_from(
    "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
KNOWN_KEYS = [
    "PATH_INFO",
    "SCRIPT_NAME",
    "QUERY_STRING",
    "REQUEST_URI",
    "SERVER_NAME",
    "HTTPS",
    "HTTP_HOST",
    "HTTP_X_A",
    "HTTP_COOKIE",
    "HTTP_CONTENT_TYPE",
    "HTTP_CONTENT_LENGTH",
    "CONTENT_TYPE",
    "UWSGI_FILE",
    "REMOTE_ADDR",
]
PATHS = st.sampled_from(["", "/", "/a", "/a/", "/ab", "/a/b", "/a//", "/b/a"])


def expected_environ(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The mapping rules, written out plainly as the reference model."""
    env: dict[str, str] = {}
    for key, value in pairs:
        if key in env and key.startswith("HTTP_"):
            value = env[key] + ("; " if key == "HTTP_COOKIE" else ", ") + value
        env[key] = value
    env.pop("HTTP_CONTENT_LENGTH", None)
    env.pop("HTTP_CONTENT_TYPE", None)
    script_name = env.get("SCRIPT_NAME")
    if script_name:
        script_name = script_name.rstrip("/")
        env["SCRIPT_NAME"] = script_name
        path = env.get("PATH_INFO")
        if (
            script_name
            and path is not None
            and (path == script_name or path.startswith(script_name + "/"))
        ):
            env["PATH_INFO"] = path[len(script_name) :]
    return env


def chunk_encode(body: bytes, sizes: list[int], extensions: bool, trailers: bool) -> bytes:
    """Frame ``body`` as chunks of the given sizes (cycled), optionally with extras."""
    out = []
    pos = 0
    i = 0
    while pos < len(body) and i < 10_000:
        size = max(1, sizes[i % len(sizes)]) if sizes else len(body)
        piece = body[pos : pos + size]
        ext = b";ext=1" if extensions and i % 2 else b""
        out.append(b"%x%s\r\n%s\r\n" % (len(piece), ext, piece))
        pos += len(piece)
        i += 1
    out.append(b"0\r\n")
    if trailers:
        out.append(b"X-Checksum: abc\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """Cut ``data`` at the given offsets (any order, clipped), dropping empty pieces."""
    points = sorted({min(max(c, 0), len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


Outcome = tuple[UwsgiRequest | Ping | None, bytes, bool]


def drive(parser: UwsgiParser, pieces: list[bytes], head: UwsgiRequest | Ping | None) -> Outcome:
    """Pull events after each piece and after EOF; (head, body, ended). ProtocolError escapes."""
    body = bytearray()
    for piece in [*pieces, b""]:
        parser.receive_data(piece)
        for _ in range(100_000):  # each buffered byte gives at most one event
            event = parser.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, Data):
                body += event.data
            elif isinstance(event, (UwsgiRequest, Ping)):
                assert head is None, "a second head"
                head = event
                if isinstance(event, Ping):
                    return head, bytes(body), True
            else:
                assert isinstance(event, EndOfMessage)
                return head, bytes(body), True
        else:
            raise AssertionError("parser did not settle")
    return head, bytes(body), False


def run(pieces: list[bytes]) -> Outcome:
    """Feed the pieces then EOF to a parser from the first byte."""
    return drive(UwsgiParser(), pieces, None)


def run_after_head(pieces: list[bytes]) -> Outcome:
    """The sync and gthread workers' way: parse_head on the bytes so far until the head is in
    (truncated_head at EOF before), then a parser continued after it for the rest."""
    buf = b""
    result = None
    read = 0
    while result is None:
        if read == len(pieces):
            raise truncated_head(buf)
        buf += pieces[read]
        read += 1
        result = parse_head(buf)
    head, used = result
    if isinstance(head, Ping):
        return head, b"", True
    return drive(UwsgiParser.after_head(head, buf[used:]), pieces[read:], head)


Request = tuple[list[tuple[str, str]], bytes, bytes, str, bytes]


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """Generated request: (wire pairs, body, wire bytes after the vars block, framing, the junk
    that ends those wire bytes and belongs to no request)."""
    keys = st.one_of(
        st.sampled_from(KNOWN_KEYS),
        st.text(SAFE_CHARS, min_size=1, max_size=12),
        st.text(SAFE_CHARS, min_size=1, max_size=8).map(lambda s: "HTTP_" + s),
    ).filter(lambda k: k not in ("REQUEST_METHOD", "CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING"))
    pairs: list[tuple[str, str]] = []
    for key in draw(st.lists(keys, max_size=25)):
        if key in ("PATH_INFO", "SCRIPT_NAME"):
            pairs.append((key, draw(PATHS)))
        else:
            pairs.append((key, draw(st.text(SAFE_CHARS, max_size=40))))
    method = draw(st.text(TOKEN_CHARS, min_size=1, max_size=10))
    pairs.insert(draw(st.integers(0, len(pairs))), ("REQUEST_METHOD", method))
    body = draw(st.binary(max_size=400))
    junk = draw(st.binary(max_size=20))  # bytes after the body: never read
    framing = draw(st.sampled_from(["length", "none", "chunked"]))
    where = draw(st.integers(0, len(pairs)))
    if framing == "length":
        value = str(len(body)) if body or draw(st.booleans()) else ""
        pairs.insert(where, ("CONTENT_LENGTH", value))
        wire = body + junk
    elif framing == "chunked":
        pairs.insert(
            where,
            (
                "HTTP_TRANSFER_ENCODING",
                draw(st.sampled_from(["chunked", "gzip, chunked", "Chunked"])),
            ),
        )
        sizes = draw(st.lists(st.integers(1, 64), max_size=5))
        wire = chunk_encode(body, sizes, draw(st.booleans()), draw(st.booleans())) + junk
    else:
        wire = body + junk  # no CONTENT_LENGTH: no body, whatever follows
        body = b""
    return pairs, body, wire, framing, junk


@SETTINGS
@given(requests(), st.data())
def test_round_trip(request: Request, data: st.DataObject) -> None:
    """encode -> parse (any split) gives the environ under the merge rules and the same body."""
    pairs, body, wire, framing, _ = request
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]
    m1 = data.draw(st.sampled_from([0, 30]))
    packet = encode(raw, modifier1=m1, body=wire)
    result = parse_head(packet)
    assert result is not None
    head, used = result
    assert used == len(packet) - len(wire)
    assert isinstance(head, UwsgiRequest)
    assert head.modifier1 == m1
    assert head.environ == expected_environ(pairs)
    assert head.chunked is (framing == "chunked")
    assert head.content_length == (len(body) if framing == "length" else 0)
    cuts = data.draw(st.lists(st.integers(0, len(packet)), max_size=8))
    got_head, got_body, ended = run(split(packet, cuts))
    assert got_head == head
    assert got_body == body
    assert ended


@SETTINGS
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=6))
def test_random_bytes_only_raise_protocol_errors(blob: bytes, cuts: list[int]) -> None:
    """Arbitrary input never raises anything but a ProtocolError subclass."""
    try:
        parse_head(blob)
    except ProtocolError:
        pass
    try:
        run(split(blob, cuts))
    except ProtocolError:
        pass


@SETTINGS
@given(st.binary(min_size=1, max_size=300), st.sampled_from([0, 30]), st.binary(max_size=100))
def test_random_vars_block_only_raises_protocol_errors(block: bytes, m1: int, body: bytes) -> None:
    """A valid header in front of a random vars block: a head or a ProtocolError, nothing else."""
    packet = struct.pack("<BHB", m1, len(block), 0) + block + body
    try:
        result = parse_head(packet)
    except ProtocolError:
        return
    assert result is not None and result[1] == 4 + len(block)


@SETTINGS
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=6))
def test_random_chunked_body_only_raises_protocol_errors(body: bytes, cuts: list[int]) -> None:
    """Random bytes where a chunked body should be: data, waiting or a ProtocolError."""
    packet = encode(
        [(b"REQUEST_METHOD", b"POST"), (b"HTTP_TRANSFER_ENCODING", b"chunked")], body=body
    )
    try:
        run(split(packet, cuts))
    except ProtocolError:
        pass


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.text(SAFE_CHARS, min_size=1, max_size=20).map(lambda s: s.encode("latin-1")),
            st.text(SAFE_CHARS, max_size=40).map(lambda s: s.encode("latin-1")),
        ),
        min_size=1,
        max_size=10,
    ),
    st.data(),
)
def test_overrunning_length_always_rejected(
    pairs: list[tuple[bytes, bytes]], data: st.DataObject
) -> None:
    """Any key or value length that runs past the block is rejected, naming its offset."""
    block = bytearray(encode(pairs)[4:])
    index = data.draw(st.integers(0, len(pairs) - 1))
    field = data.draw(st.sampled_from(["key", "value"]))
    offset = sum(4 + len(k) + len(v) for k, v in pairs[:index])  # the pair's key length field
    if field == "value":
        offset += 2 + len(pairs[index][0])
    start = offset + 2  # where the key or value bytes begin
    length = data.draw(st.integers(len(block) - start + 1, 65535))
    block[offset : offset + 2] = struct.pack("<H", length)
    packet = struct.pack("<BHB", 0, len(block), 0) + bytes(block)
    try:
        parse_head(packet)
    except InvalidUWSGIHeader as exc:
        reason = exc.reason
    else:
        raise AssertionError("overrun accepted")
    if field == "key":
        assert reason.startswith(f"key length {length} overruns the vars block at offset {start} ")
    else:
        assert reason.startswith(f"value length {length} of key ")
        assert f" overruns the vars block at offset {start} " in reason


def framed_packet(request: Request, m1: int) -> tuple[bytes, int]:
    """The wire bytes of a generated request and where its message ends (head plus body)."""
    pairs, body, wire, framing, junk = request
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]
    packet = encode(raw, modifier1=m1, body=wire)
    if framing == "chunked":
        return packet, len(packet) - len(junk)
    return packet, len(packet) - len(wire) + (len(body) if framing == "length" else 0)


@SETTINGS
@given(requests(), st.sampled_from([0, 30]), st.data())
def test_any_split_same_events_both_ways(request: Request, m1: int, data: st.DataObject) -> None:
    """A packet fed in any split gives the same head, body and end as fed whole, whether a
    parser reads it from the first byte or continues after parse_head."""
    packet, _ = framed_packet(request, m1)
    expected = run([packet])
    assert expected[2] and expected[1] == request[1]
    cuts = data.draw(st.lists(st.integers(0, len(packet)), max_size=8))
    assert run(split(packet, cuts)) == expected
    assert run_after_head(split(packet, cuts)) == expected
    assert run_after_head([packet]) == expected


@SETTINGS
@given(requests(), st.sampled_from([0, 30]), st.data())
def test_truncation_anywhere_is_a_truncated_packet(
    request: Request, m1: int, data: st.DataObject
) -> None:
    """A packet cut anywhere before the end of its message, then EOF, is a TruncatedPacket with
    the same reason both ways; from the end of the message on, it is the whole request."""
    packet, complete_at = framed_packet(request, m1)
    cut = data.draw(st.integers(0, len(packet)))
    pieces = split(packet[:cut], data.draw(st.lists(st.integers(0, cut), max_size=4)))
    if cut >= complete_at:
        assert run(pieces) == run_after_head(pieces) == run([packet])
        return
    errors = []
    for way in (run, run_after_head):
        try:
            way(pieces)
        except TruncatedPacket as exc:
            errors.append(exc.reason)
        else:
            raise AssertionError(f"{way.__name__}: a cut at {cut} of {complete_at} accepted")
    assert errors[0] == errors[1] and errors[0].startswith("truncated ")
