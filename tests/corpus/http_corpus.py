"""The HTTP request corpus: ``http/NAME.http`` holds raw request bytes as they cross the wire,
``http/NAME.expect`` what must come of them. Read by ``tests/unit/test_http_corpus.py`` (the
sans-IO parser) and ``tests/integration/test_http_corpus_served.py`` (a real listener of every worker
kind). On ``sys.path`` through ``pythonpath`` in pyproject.toml.

The ``.expect`` format, one ``key: value`` per line, ``#`` starts a comment line:

``error: STATUS``
    the request must be refused with this status (and the connection closed).
``request: METHOD TARGET HTTP/VERSION``
    a request the parser must produce; pipelined requests give one line each, in order. The
    ``header:`` and ``body:`` lines after it belong to it.
``header: NAME: VALUE``
    one field, in order, name as sent; VALUE may use ``\\t``, ``\\xNN`` and ``\\\\`` escapes.
``body: b'...'``
    the request's body, de-chunked (a Python bytes literal); no line means an empty body.
``path:``, ``query:``, ``authority:``
    what :func:`monoceros.protocols.http.split_target` must make of the first request's target.
``status: N``
    the status every request's response must have on a real listener (default 200).
``xfail: REASON``, ``xfail-listener: REASON``
    today's behaviour is wrong (RFC 9112/9110): the parser test (``xfail``) or the listener test
    (``xfail-listener``) is a strict xfail, so it fails the day the bug is fixed and the line
    is due for removal.
"""

from __future__ import annotations

import ast
import codecs
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent / "http"


@dataclass
class ExpectedRequest:
    """One request the parser must produce."""

    method: str
    target: bytes
    version: str
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""


@dataclass
class Case:
    """One ``NAME.http`` with its ``NAME.expect``."""

    name: str
    raw: bytes
    error: int | None = None
    requests: list[ExpectedRequest] = field(default_factory=list)
    target_parts: dict[str, bytes] = field(default_factory=dict)
    status: int = 200
    xfail: str | None = None
    xfail_listener: str | None = None


def _unescape(text: str) -> bytes:
    return codecs.escape_decode(text.encode("latin-1"))[0]  # type: ignore[attr-defined,no-any-return]


def parse_expect(name: str, raw: bytes, text: str) -> Case:
    """A :class:`Case` from the text of an ``.expect`` file; ValueError on a bad line."""
    case = Case(name, raw)
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        key, sep, value = line.partition(": ")
        if not sep:
            key, value = line.rstrip(":"), ""
        if key == "error":
            case.error = int(value)
        elif key == "request":
            method, target, version = value.split(" ")
            if not version.startswith("HTTP/"):
                raise ValueError(f"{name}.expect line {n}: version must be HTTP/x.y")
            case.requests.append(ExpectedRequest(method, target.encode("latin-1"), version[5:]))
        elif key == "header":
            hname, _, hvalue = value.partition(": ")
            case.requests[-1].headers.append((hname.encode("latin-1"), _unescape(hvalue)))
        elif key == "body":
            case.requests[-1].body = ast.literal_eval(value)
        elif key in ("path", "query", "authority"):
            case.target_parts[key] = value.encode("latin-1")
        elif key == "status":
            case.status = int(value)
        elif key == "xfail":
            case.xfail = value
        elif key == "xfail-listener":
            case.xfail_listener = value
        else:
            raise ValueError(f"{name}.expect line {n}: unknown key {key!r}")
    if (case.error is None) == (not case.requests):
        raise ValueError(f"{name}.expect: give either 'error:' or 'request:' lines")
    return case


def load_cases() -> list[Case]:
    """Every case of the corpus, sorted by name."""
    cases = []
    for path in sorted(HERE.glob("*.http")):
        expect = path.with_suffix(".expect")
        cases.append(parse_expect(path.stem, path.read_bytes(), expect.read_text()))
    return cases
