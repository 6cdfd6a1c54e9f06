"""The C twin in monoceros/protocols/_response_head.c against the Python function it stands in for.

``header_block`` stands in for :func:`monoceros.protocols.response._header_block` where it is
built: it answers for the headers it knows (names the twin has classified before, exact types,
clean values, a plain-digits Content-Length) and returns None for the rest, which the twin then
checks, caches or refuses. So every case here runs through both: where C answers, the twin must
answer the same; where the twin refuses (ResponseError), C must not answer; and for the headers
applications send, C must answer. The twin is pinned as imported (compiled where built) and as
the interpreter runs its source. The rest of the suite drives both through ``response_head``
(its pure pass, with ``MONOCEROS_PURE=1``, the Python one alone).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monoceros.protocols import response
from monoceros.protocols.errors import ResponseError

from unit_support import protocols_source

try:
    from monoceros.protocols._response_head import header_block
except ImportError:  # not built (no C compiler), or MONOCEROS_PURE: nothing to pin
    if os.environ.get("MONOCEROS_EXPECT_COMPILED") == "1" and not os.environ.get("MONOCEROS_PURE"):
        raise
    pytestmark = pytest.mark.skip(reason="the C extension is not loaded")


TWINS = pytest.mark.parametrize(
    "twins", [response, protocols_source("response")], ids=["imported", "source"]
)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: names applications send, the ones the server reads or drops, and any text
NAMES = st.one_of(
    st.sampled_from(
        [
            "Content-Type",
            "content-length",
            "Content-Length",
            "Connection",
            "keep-alive",
            "Transfer-Encoding",
            "Upgrade",
            "X-Request-Id",
            "Set-Cookie",
            "bad name",
            "",
        ]
    ),
    st.text(st.characters(min_codepoint=0, max_codepoint=300), max_size=12),
)
VALUES = st.one_of(
    st.sampled_from(
        ["", "13", "0", "007", "-1", " 12", "1_0", "12" * 10, "close", "Keep-Alive, CLOSE"]
    ),
    st.sampled_from(["text/plain", "a\tb", "a\r\nX: y", "\x00", "\x7f", "\xe9t\xe9", "\u20ac"]),
    st.text(st.characters(min_codepoint=0, max_codepoint=300), max_size=40),
    st.from_regex(r"[0-9]{1,20}", fullmatch=True),
)


def as_bytes(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]] | None:
    """The same headers as bytes (ASGI), or None when one is not latin-1."""
    try:
        return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
    except UnicodeEncodeError:
        return None


def twin_of(twins: Any, headers: Any, kinds: dict[Any, int], text: bool) -> Any:
    """The twin's answer, or ResponseError."""
    try:
        return twins._header_block(headers, kinds, text)
    except ResponseError:
        return ResponseError


def classified(twins: Any, headers: Any, text: bool) -> dict[Any, int]:
    """A kinds table that knows every valid name of ``headers`` (as the twin leaves it)."""
    kinds: dict[Any, int] = {}
    for item in headers:
        try:
            twins._header_block([item], kinds, text)
        except ResponseError:
            pass
    return kinds


def both(twins: Any, headers: Any, kinds: dict[Any, int], text: bool) -> Any:
    """Run ``headers`` through the C and the twin: where C answers, the twin says the same."""
    before = dict(kinds)
    native = header_block(headers, kinds, text)
    assert kinds == before, "C never adds to the table"
    python = twin_of(twins, headers, kinds, text)
    if native is not None:
        assert native == python, (headers, native, python)
        assert type(native[1]) is type(python[1])
    return native, python


@TWINS
@SETTINGS
@given(st.lists(st.tuples(NAMES, VALUES), max_size=12), st.booleans())
def test_generated_headers_agree(twins: Any, headers: list[tuple[str, str]], known: bool) -> None:
    for text, items in ((True, headers), (False, as_bytes(headers))):
        if items is None:
            continue
        kinds = classified(twins, items, text) if known else {}
        both(twins, items, kinds, text)
        both(twins, tuple(items), kinds, text)


@TWINS
@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["Content-Type", "X-Id", "Set-Cookie", "connection", "Upgrade"]),
            st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60).filter(
                lambda v: "\x7f" not in v
            ),
        ),
        max_size=30,
    ),
    st.one_of(st.none(), st.integers(0, 10**18 - 1)),
)
def test_clean_headers_are_answered_in_c(
    twins: Any, headers: list[tuple[str, str]], length: int | None
) -> None:
    """What applications send: C answers, and says what the twin says."""
    if length is not None:
        headers = [*headers, ("Content-Length", str(length))]
    for text, items in ((True, headers), (False, as_bytes(headers))):
        kinds = classified(twins, items, text)
        native, _ = both(twins, items, kinds, text)
        assert native is not None and native[1] == length


@TWINS
@pytest.mark.parametrize(
    ("value", "closes"),
    [
        ("close", True),
        ("Keep-Alive, CLOSE", True),
        ("cLoSe", True),
        ("clos", False),
        ("keep-alive", False),
        ("", False),
        ("\xe9close\xe9", True),
        ("c\xf6se", False),
    ],
)
def test_connection_close_is_heard(twins: Any, value: str, closes: bool) -> None:
    headers = [("Content-Type", "text/plain"), ("Connection", value), ("Content-Length", "5")]
    for text, items in ((True, headers), (False, as_bytes(headers))):
        native, _ = both(twins, items, classified(twins, items, text), text)
        assert native is not None and native[1:] == (5, closes)
        assert native[0] == b"Content-Type: text/plain\r\n"


@TWINS
def test_what_c_leaves_to_the_twin(twins: Any) -> None:
    kinds = classified(twins, [("A", "b"), ("Content-Length", "1"), ("Connection", "x")], True)
    bkinds = classified(twins, [(b"A", b"b")], False)
    left: list[tuple[Any, dict[Any, int], bool]] = [
        ([("B", "new name")], kinds, True),
        (iter([("A", "b")]), kinds, True),  # not a list or tuple
        ([["A", "b"]], kinds, True),  # a pair that is not a tuple
        ([("A", "b", "c")], kinds, True),
        ([("A", "b\r\nX: y")], kinds, True),
        ([("A", "\u20ac")], kinds, True),  # not latin-1
        ([("Content-Length", " 12")], kinds, True),  # int() takes it: the twin decides
        ([("Content-Length", "1" * 19)], kinds, True),
        ([("Content-Length", "-1")], kinds, True),
        ([("Connection", "\u20acclose")], kinds, True),
        ([(b"A", bytearray(b"b"))], bkinds, False),
        ([(b"A", "b")], bkinds, False),
        ([("A", "b")], bkinds, False),
        ([(b"A", b"b")], {b"A": 7}, False),  # a kind the server does not have
        ([(b"A", b"b")], {b"A": True}, False),
        ([(b"A", b"b")], bkinds.copy().items(), False),  # type: ignore[list-item]
    ]
    for headers, table, text in left:
        assert header_block(headers, table, text) is None, headers


@TWINS
def test_long_blocks_leave_the_stack_buffer(twins: Any) -> None:
    headers = [(f"X-{i}", "v" * (i * 7)) for i in range(200)]
    for text, items in ((True, headers), (False, as_bytes(headers))):
        native, _ = both(twins, items, classified(twins, items, text), text)
        assert native is not None and len(native[0]) > 100_000


def test_a_key_that_changes_the_headers_while_c_reads_them() -> None:
    """A table key whose ``__eq__`` runs Python code (a hash collision) can shrink the list
    being read: C holds the pair it reads, reads the size on every turn, and does not crash."""
    headers: list[tuple[bytes, bytes]] = [(b"a", b"1"), (b"bb", b"2"), (b"c", b"3")]
    armed: list[bool] = []

    class Meddler:
        def __hash__(self) -> int:
            return hash(b"bb")

        def __eq__(self, other: object) -> bool:
            if armed:
                del headers[1:]
            return False

    kinds: dict[Any, int] = {b"a": 0, Meddler(): 0, b"bb": 0, b"c": 0}
    armed.append(True)
    assert header_block(headers, kinds, False) == (b"a: 1\r\nbb: 2\r\n", None, False)
    assert headers == [(b"a", b"1")]


def test_bad_arguments() -> None:
    with pytest.raises(TypeError):
        header_block([], {})  # type: ignore[call-arg]
    assert header_block([], {}, False) == (b"", None, False)
    assert header_block([(b"a", b"b")], [], False) is None  # type: ignore[arg-type]
