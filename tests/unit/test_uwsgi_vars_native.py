"""The C twins in monoceros/protocols/_uwsgi_vars.c against the Python functions they stand in for.

``parse_vars`` stands in for :func:`monoceros.protocols.uwsgi._vars_fast` where it is built: the
same contract (the dict of a well-formed block, None for anything unusual), so every case here
is run through both and must give the same result; ``header_fields`` likewise for
:func:`monoceros.protocols.uwsgi._header_fields` (None: a dict it leaves to the Python one). The rest of the suite drives it through
``parse_head`` (and its pure pass, with ``MONOCEROS_PURE=1``, drives the Python one).
"""

from __future__ import annotations

import os
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monoceros.protocols import uwsgi
from monoceros.protocols.errors import ProtocolError

from unit_support import encode, protocols_source

try:
    from monoceros.protocols._uwsgi_vars import header_fields, parse_vars, port_number
except ImportError:  # not built (no C compiler), or MONOCEROS_PURE: nothing to pin
    if os.environ.get("MONOCEROS_EXPECT_COMPILED") == "1" and not os.environ.get("MONOCEROS_PURE"):
        raise
    pytestmark = pytest.mark.skip(reason="the C extension is not loaded")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "uwsgi-packets"
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

LATIN1 = st.characters(min_codepoint=0, max_codepoint=255)
#: mostly names front ends send (cache hits, repeats), sometimes anything
KEYS = st.one_of(
    st.sampled_from(
        ["REQUEST_METHOD", "PATH_INFO", "HTTP_HOST", "HTTP_COOKIE", "QUERY_STRING", "A", ""]
    ),
    st.text(LATIN1, max_size=80),
)
VALUES = st.one_of(
    st.sampled_from(["", "GET", "HTTP/1.1", "localhost", "a\r\nb", "x\x00"]),
    st.text(LATIN1, max_size=90),
)


def block(pairs: list[tuple[str, str]]) -> bytes:
    """The vars block of ``pairs`` (the packet without its 4-byte header)."""
    return encode([(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs])[4:]


def both(blk: bytes) -> dict[str, str] | None:
    """Parse ``blk`` with the C and the Python function; they must agree."""
    native = parse_vars(blk)
    python = uwsgi._vars_fast(blk)
    assert native == python, (blk, native, python)
    if native is not None:
        assert list(native) == list(python or {}), "the same keys in the same order"
    return native


@SETTINGS
@given(st.lists(st.tuples(KEYS, VALUES), max_size=24))
def test_generated_blocks_parse_alike(pairs: list[tuple[str, str]]) -> None:
    both(block(pairs))
    both(block(pairs))  # again: now from the caches


@SETTINGS
@given(st.binary(max_size=300))
def test_garbage_parses_alike(blk: bytes) -> None:
    both(blk)


@SETTINGS
@given(st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=12), st.data())
def test_blocks_cut_or_grown_parse_alike(pairs: list[tuple[str, str]], data: st.DataObject) -> None:
    blk = block(pairs)
    cut = data.draw(st.integers(0, len(blk)))
    both(blk[:cut])
    both(blk + data.draw(st.binary(min_size=1, max_size=5)))


def capture_blocks() -> list[tuple[str, bytes]]:
    """The vars block of every shared capture (see tests/fixtures/uwsgi-packets)."""
    found = []
    for path in sorted(FIXTURES.glob("*.bin")):
        data = path.read_bytes()
        size = data[1] | data[2] << 8
        found.append((path.name, data[4 : 4 + size]))
    assert found, f"no uwsgi captures in {FIXTURES}"
    return found


@pytest.mark.parametrize(("name", "blk"), capture_blocks())
def test_captures_cut_at_every_byte_parse_alike(name: str, blk: bytes) -> None:
    both(blk)  # a dict, or None for repeated vars and the malformed captures
    for cut in range(len(blk)):
        both(blk[:cut])


def test_keys_are_interned_and_values_shared() -> None:
    """A key seen before is the interned str (the app's literals find it by identity)."""
    first = parse_vars(block([("REQUEST_METHOD", "GET"), ("SERVER_PROTOCOL", "HTTP/1.1")]))
    second = parse_vars(block([("REQUEST_METHOD", "GET"), ("SERVER_PROTOCOL", "HTTP/1.1")]))
    assert first is not None and second is not None
    for a, b in zip(first.items(), second.items(), strict=True):
        assert a[0] is b[0] is sys.intern(a[0])
        assert a[1] is b[1]


def test_names_alike_at_both_ends_are_told_apart() -> None:
    """Two keys of one length with the same first and last 8 bytes share a cache slot: the
    cached one must not be returned for the other (and two such values likewise)."""
    one = "HTTP_X_A" + "1111" + "_TRAILER"
    two = "HTTP_X_A" + "2222" + "_TRAILER"
    for _ in range(3):
        assert both(block([(one, "v" * 20 + "1" + "w" * 8)])) == {one: "v" * 20 + "1" + "w" * 8}
        assert both(block([(two, "v" * 20 + "2" + "w" * 8)])) == {two: "v" * 20 + "2" + "w" * 8}


def test_many_names_and_long_ones() -> None:
    """More names than cache slots, and keys and values longer than what is cached."""
    pairs = [(f"HTTP_X_{i}", f"value-{i}") for i in range(1000)]
    for start in range(0, 1000, 50):
        assert both(block(pairs[start : start + 50])) == dict(pairs[start : start + 50])
    long_key, long_value = "K" * 300, "v" * 5000
    assert both(block([(long_key, long_value), ("A", "")])) == {long_key: long_value, "A": ""}


def test_a_repeated_key_or_a_bad_byte_is_left_to_the_slow_parser() -> None:
    assert both(block([("HTTP_A", "1"), ("HTTP_A", "2")])) is None
    assert both(block([("", "x")])) is None
    for bad in ("\r", "\n", "\x00"):
        assert both(block([("A", f"12345678901{bad}")])) is None
        assert both(block([(f"HTTP_{bad}X", "1")])) is None
    # cached clean, then the same length with a bad byte: the cache must not vouch for it
    assert both(block([("HOST", "example.org")])) == {"HOST": "example.org"}
    assert both(block([("HOST", "example\r\norg")])) is None


def test_only_bytes_are_taken() -> None:
    with pytest.raises(TypeError, match="bytes"):
        parse_vars(bytearray(b"\x01\x00A\x00\x00"))  # type: ignore[arg-type]


def test_no_memory_kept_per_request() -> None:
    """Values that change on every request (ports, URIs) are not kept: memory stays flat."""

    def request(i: int) -> bytes:
        return block([("REMOTE_PORT", str(i)), ("REQUEST_URI", f"/item/{i}?q={'x' * 40}")])

    for i in range(2000):  # fill the caches first
        parse_vars(request(i))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(2000, 22000):
            parse_vars(request(i))
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"{grown} bytes kept after 20,000 blocks"


def fields_alike(environ: dict[str, str]) -> list[tuple[bytes, bytes]] | None:
    """The header fields of ``environ`` from C and from Python; they must agree where C answers."""
    native = header_fields(environ)
    if native is not None:
        assert native == uwsgi._header_fields(environ), (environ, native)
    return native


ASCII_KEYS = st.one_of(
    st.sampled_from(
        ["HTTP_HOST", "HTTP_X_A_B", "HTTP_", "HTTP_lower_Case", "CONTENT_TYPE", "CONTENT_LENGTH"]
    ),
    st.sampled_from(["REQUEST_METHOD", "PATH_INFO", "HTTPS", "HTTP", "CONTENT_TYPEX", ""]),
    st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=30).map(
        lambda s: "HTTP_" + s
    ),
)


@SETTINGS
@given(st.dictionaries(ASCII_KEYS, st.text(LATIN1, max_size=40), max_size=20))
def test_header_fields_alike(environ: dict[str, str]) -> None:
    assert fields_alike(environ) is not None  # ASCII names, latin-1 values: C answers
    assert fields_alike(environ) is not None  # again: from the name cache


@SETTINGS
@given(st.dictionaries(st.text(LATIN1, max_size=12), st.text(LATIN1, max_size=12), max_size=8))
def test_header_fields_of_any_latin1_dict_alike(environ: dict[str, str]) -> None:
    fields_alike(environ)  # a name that is not ASCII: None, the Python twin decides


@pytest.mark.parametrize(("name", "blk"), capture_blocks())
def test_header_fields_of_every_capture_alike(name: str, blk: bytes) -> None:
    data = (FIXTURES / name).read_bytes()
    try:
        parsed = uwsgi.parse_head(data)
    except ProtocolError:
        return  # the malformed captures
    assert parsed is not None
    head = parsed[0]
    if isinstance(head, uwsgi.UwsgiRequest):
        assert fields_alike(head.environ) is not None


def test_header_fields_left_to_python() -> None:
    assert header_fields({"HTTP_X_\xe9": "v"}) is None  # a name that is not ASCII
    assert header_fields({"HTTP_X": "\u20ac"}) is None  # a value that is not latin-1
    assert header_fields({"HTTP_X": 1}) is None  # type: ignore[dict-item]
    assert header_fields([("HTTP_X", "v")]) is None  # type: ignore[arg-type]
    assert uwsgi.header_fields({"HTTP_X_\xc9": "v"}) == [(b"x-\xe9", b"v")]
    with pytest.raises(UnicodeEncodeError):
        uwsgi.header_fields({"HTTP_X": "\u20ac"})


def test_header_fields_names_sharing_a_slot() -> None:
    """Many names through the 256-slot name cache: each maps to its own field name."""
    environ = {f"HTTP_X_NAME_{i}": str(i) for i in range(1000)}
    expected = [(f"x-name-{i}".encode(), str(i).encode()) for i in range(1000)]
    for _ in range(2):
        assert fields_alike(environ) == expected


PORT_TWINS = pytest.mark.parametrize(
    "twin", [uwsgi._port_number, protocols_source("uwsgi")._port_number], ids=["imported", "source"]
)
#: port vars: digit runs (short, 18-19 digits around the C sum's limit, long), anything else
PORT_VALUES = st.one_of(
    st.none(),
    st.text(st.sampled_from("0123456789"), max_size=40),
    st.text(st.sampled_from("0123456789"), min_size=17, max_size=20),
    st.text(max_size=24),
    st.text(st.sampled_from("0123456789 +-_\u0663\uff10\xb2\x00"), max_size=8),
)


@PORT_TWINS
@SETTINGS
@given(PORT_VALUES)
def test_port_numbers_alike(twin: Any, value: str | None) -> None:
    native = port_number(value)
    assert native == twin(value), value
    assert type(native) is type(twin(value))  # an int (not a bool), or None


@PORT_TWINS
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("8080", 8080),
        ("0", 0),
        ("00443", 443),
        ("9" * 18, int("9" * 18)),  # the most the C sum takes itself
        ("9" * 19, int("9" * 19)),  # past it: int()'s parser, of ASCII digits only
        ("1" + "0" * 40, 10**40),
        ("", None),
        (None, None),
        ("80a", None),
        ("a80", None),
        ("+80", None),
        ("-1", None),
        (" 80", None),
        ("80 ", None),
        ("8_0", None),
        ("\u0663", None),  # a digit, not an ASCII one (int() takes it)
        ("\uff18\uff10", None),
        ("\xb2", None),  # superscript two: latin-1, a digit to str.isdigit()
        ("1" * 19 + "x", None),  # a long run with a bad last char
        ("/", None),  # the chars either side of "0".."9"
        (":", None),
    ],
)
def test_port_number_cases(twin: Any, value: str | None, expected: int | None) -> None:
    assert port_number(value) == twin(value) == expected


def test_port_number_refuses_what_is_not_text() -> None:
    with pytest.raises(TypeError, match="str or None expected; got bytes"):
        port_number(b"80")  # type: ignore[arg-type]
