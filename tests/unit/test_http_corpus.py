"""The HTTP request corpus (tests/corpus/http/) against the sans-IO parser, whole and byte by
byte; the format of the ``.expect`` files is described in ``tests/corpus/http_corpus.py``."""

from __future__ import annotations

import pytest

from monoceros.protocols.errors import ProtocolError
from monoceros.protocols.http import (
    NEED_DATA,
    Data,
    EndOfMessage,
    HttpParser,
    HttpRequest,
    split_target,
)

from http_corpus import HERE, Case, load_cases, parse_expect

CASES = load_cases()


def _params() -> list[object]:
    return [
        pytest.param(
            case,
            id=case.name,
            marks=[pytest.mark.xfail(reason=case.xfail, strict=True)] if case.xfail else [],
        )
        for case in CASES
    ]


def parse(raw: bytes, step: int) -> tuple[list[tuple[HttpRequest, bytes]], int | None]:
    """Feed ``raw`` ``step`` bytes at a time (0: whole): the complete requests with their bodies,
    and the status of the error that stopped the parser (None if none did)."""
    parser = HttpParser()
    done: list[tuple[HttpRequest, bytes]] = []
    head: HttpRequest | None = None
    body = b""
    pieces = [raw[i : i + step] for i in range(0, len(raw), step)] if step else [raw]
    try:
        for piece in pieces:
            parser.receive_data(piece)
            while (event := parser.next_event()) is not NEED_DATA:
                if isinstance(event, HttpRequest):
                    head, body = event, b""
                elif isinstance(event, Data):
                    body += event.data
                elif isinstance(event, EndOfMessage):
                    assert head is not None
                    done.append((head, body))
                    head = None
    except ProtocolError as exc:
        return done, exc.status
    assert head is None and not parser.in_message, "the corpus holds whole requests only"
    return done, None


@pytest.mark.parametrize("step", [0, 1], ids=["whole", "bytewise"])
@pytest.mark.parametrize("case", _params())
def test_parser(case: Case, step: int) -> None:
    done, error = parse(case.raw, step)
    if case.error is not None:
        assert error == case.error, f"expected error {case.error}, got requests {done}"
        return
    assert error is None, f"refused with {error}"
    got = [(r.method, r.target, r.version, r.headers, body) for r, body in done]
    want = [(r.method, r.target, r.version, r.headers, r.body) for r in case.requests]
    assert got == want
    if case.target_parts:
        path, query, authority = split_target(done[0][0].target)
        parts = {"path": path, "query": query, "authority": authority}
        assert {k: parts[k] for k in case.target_parts} == case.target_parts


def test_the_corpus_is_whole() -> None:
    """Every request file has its expectation and the other way round, valid and invalid cases
    are both there, and what the brief of the corpus names is covered."""
    https = {p.stem for p in HERE.glob("*.http")}
    expects = {p.stem for p in HERE.glob("*.expect")}
    assert https == expects
    assert len(CASES) >= 40
    assert (
        sum(c.error is None for c in CASES) >= 15 and sum(c.error is not None for c in CASES) >= 15
    )
    assert {400, 414, 431} <= {c.error for c in CASES}


@pytest.mark.parametrize(
    "text",
    [
        "request: GET / HTTP/1.1\nerror: 400\n",  # both
        "# nothing\n",  # neither
        "request: GET / 1.1\n",  # not a version
        "error: 400\nstatus: 200\nwhatever: 1\n",  # unknown key
    ],
)
def test_a_bad_expect_file_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_expect("bad", b"", text)


def parse_cut(raw: bytes, cut: int) -> tuple[list[tuple[HttpRequest, bytes]], int | None]:
    """Like :func:`parse`, the bytes fed in two pieces cut at ``cut``."""
    parser = HttpParser()
    done: list[tuple[HttpRequest, bytes]] = []
    body = b""
    try:
        for piece in (raw[:cut], raw[cut:]):
            parser.receive_data(piece)
            while (event := parser.next_event()) is not NEED_DATA:
                if isinstance(event, HttpRequest):
                    head, body = event, b""
                elif isinstance(event, Data):
                    body += event.data
                else:
                    done.append((head, body))
    except ProtocolError as exc:
        return done, exc.status
    return done, None


@pytest.mark.parametrize("case", [c for c in CASES if len(c.raw) < 1024], ids=lambda c: c.name)
def test_every_cut_gives_the_whole_result(case: Case) -> None:
    """Fed in two pieces cut at any byte, a request gives what it gives whole (the extension
    method and Upgrade paths re-read kept bytes: a cut must not change what they see)."""

    def key(
        result: tuple[list[tuple[HttpRequest, bytes]], int | None],
    ) -> tuple[list[tuple[object, ...]], int | None]:
        done, error = result
        return [(r.method, r.target, r.version, r.headers, b) for r, b in done], error

    whole = key(parse(case.raw, 0))
    for cut in range(1, len(case.raw)):
        got = key(parse_cut(case.raw, cut))
        if case.name in CUT_REFUSED and got != whole:
            # the known limit: an extension method in a read that began inside a body is
            # refused (where llhttp's body ended in that read is not known), never misread
            assert got == (whole[0][: CUT_REFUSED[case.name]], 400), cut
            continue
        assert got == whole, cut


#: cases with an extension method behind a body: how many requests come before it
CUT_REFUSED = {"extension_method_pipelined": 2}
