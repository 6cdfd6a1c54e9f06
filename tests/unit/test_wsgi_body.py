"""wsgi.input over a pull function: read(n), readline, iteration, drain."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monoceros.wsgi.body import EMPTY_INPUT, ClientDisconnected, Input


def puller(pieces: list[bytes]) -> Callable[[], bytes]:
    it = iter([p for p in pieces if p])  # b"" means the end, so the source never yields it
    return lambda: next(it, b"")


def test_read_all_and_sizes() -> None:
    assert Input(puller([b"ab", b"cd", b"e"])).read() == b"abcde"
    inp = Input(puller([b"abc", b"defg"]))
    assert inp.read(2) == b"ab"
    assert inp.read(0) == b""
    assert inp.read(4) == b"cdef"  # as much as asked, across pieces (as a file reads)
    assert inp.read(5) == b"g"  # fewer only at the end of the body
    assert inp.read(5) == b""
    assert inp.exhausted


def test_a_piece_that_answers_a_read_whole_is_not_copied() -> None:
    # an echo reading 64 KiB at a time over 64 KiB recvs: no join, no slice per read
    first, second = b"a" * 65536, b"b" * 65536
    inp = Input(puller([first, second]))
    assert inp.read(65536) is first
    assert inp.read(65536) is second
    inp = Input(puller([first, second]))
    assert inp.read(100) == b"a" * 100
    assert inp.read(65436) == b"a" * 65436  # the rest of the first piece, then the second
    assert inp.read(65536) is second


def test_read_of_the_content_length_returns_the_whole_body_in_one_call() -> None:
    """Frameworks read CONTENT_LENGTH bytes with one call (Django's request.body does): the
    body must come whole however many pieces it arrives in, and nothing beyond it is pulled."""
    pieces = [bytes([i]) * 65536 for i in range(16)]
    pulled: list[int] = []
    source = iter(pieces)

    def pull() -> bytes:
        pulled.append(1)
        return next(source, b"")

    inp = Input(pull)
    assert inp.read(16 * 65536) == b"".join(pieces)
    assert len(pulled) == 16  # not one more pull than the body needed


@given(
    st.lists(st.binary(min_size=1, max_size=40), max_size=8),
    st.lists(st.integers(min_value=-1, max_value=60), min_size=1, max_size=12),
)
def test_reads_of_any_sizes_are_the_body_in_order(pieces: list[bytes], sizes: list[int]) -> None:
    body = b"".join(pieces)
    inp = Input(puller(pieces))
    got = b""
    for size in sizes:
        part = inp.read(size)
        expected = body[len(got) :] if size < 0 else body[len(got) : len(got) + size]
        assert part == expected
        got += part


def test_readline_across_pieces_and_limit() -> None:
    inp = Input(puller([b"ab", b"c\nde", b"f\n", b"tail"]))
    assert inp.readline() == b"abc\n"
    assert inp.readline(2) == b"de"
    assert inp.readline() == b"f\n"
    assert inp.readline() == b"tail"
    assert inp.readline() == b""


def test_iteration_and_readlines() -> None:
    assert list(Input(puller([b"a\nb", b"\nc"]))) == [b"a\n", b"b\n", b"c"]
    assert Input(puller([b"a\nb\n", b"c\n"])).readlines(3) == [b"a\n", b"b\n"]  # as io does


def test_drain_respects_limit() -> None:
    assert Input(puller([b"x" * 10] * 3)).drain(100)
    assert not Input(puller([b"x" * 10] * 30)).drain(100)


def test_disconnect_propagates() -> None:
    def broken() -> bytes:
        raise ClientDisconnected("gone")

    with pytest.raises(ClientDisconnected):
        Input(broken).read(10)


def test_a_body_given_whole_never_pulls() -> None:
    inp = Input.whole(b"ab\ncd")
    assert not inp.exhausted and not inp.awaiting_continue
    assert inp.readline() == b"ab\n" and inp.read(1) == b"c" and inp.read() == b"d"
    assert inp.read() == b"" and inp.exhausted
    assert Input.whole(b"xyz").drain(2) is False and Input.whole(b"xy").drain(2) is True


def test_empty_input() -> None:
    assert EMPTY_INPUT.read() == b"" and EMPTY_INPUT.readline() == b""
    assert list(EMPTY_INPUT) == [] and EMPTY_INPUT.exhausted


@given(st.lists(st.binary(max_size=50), max_size=20), st.integers(min_value=1, max_value=64))
def test_any_split_any_read_size_gives_the_body(pieces: list[bytes], size: int) -> None:
    inp = Input(puller(list(pieces)))
    out = []
    for _ in range(10_000):
        chunk = inp.read(size)
        if not chunk:
            break
        assert len(chunk) <= size
        out.append(chunk)
    assert b"".join(out) == b"".join(pieces)


@given(st.lists(st.binary(max_size=30), max_size=20))
def test_readline_reassembles_the_body(pieces: list[bytes]) -> None:
    inp = Input(puller(list(pieces)))
    lines = list(inp)
    assert b"".join(lines) == b"".join(pieces)
    assert all(line.endswith(b"\n") for line in lines[:-1])


class _CountedPull:
    """A pull function over fixed pieces that knows when it has nothing left."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = list(pieces)
        self.calls = 0

    @property
    def finished(self) -> bool:
        return not self.pieces

    def __call__(self) -> bytes:
        self.calls += 1
        return self.pieces.pop(0) if self.pieces else b""


def test_body_read_to_its_length_is_exhausted_without_another_pull() -> None:
    pull = _CountedPull([b"abc", b"de"])
    body = Input(pull)
    assert not body.exhausted
    assert body.read(3) == b"abc"
    assert not body.exhausted  # one piece is still to come
    assert body.read(2) == b"de"
    assert body.exhausted and pull.calls == 2
    assert body.read(1) == b"" and pull.calls == 2


def test_unread_buffered_bytes_are_not_exhausted() -> None:
    pull = _CountedPull([b"abcdef"])
    body = Input(pull)
    assert body.read(2) == b"ab"
    assert pull.finished and not body.exhausted
    assert body.read() == b"cdef" and body.exhausted
