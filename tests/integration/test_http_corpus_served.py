"""The HTTP request corpus (tests/corpus/http/) against a real HTTP listener of every worker kind:
each request file is written on a fresh connection and the responses are read back.

A refused request must get its status and a closed connection. A valid one gets the app's
answer for each request it holds: all of them from the keep-alive workers (gthread, asgi), the
first only from the sync worker (one request per connection); an ``/echo`` answer must report
the body the corpus says the request carries. One server per worker kind for the whole module.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from io import BufferedReader

import pytest

from conftest import Server, module_server
from http_corpus import Case, load_cases

KINDS = {
    "sync": ["app:app", "--worker-class", "sync"],
    "gthread": ["app:app", "--worker-class", "gthread", "--threads", "4"],
    "asgi": ["asgi_app:app", "--worker-class", "asgi"],
}
CASES = load_cases()


@pytest.fixture(scope="module", params=list(KINDS))
def listener(request: pytest.FixtureRequest) -> Iterator[tuple[str, Server]]:
    with module_server(KINDS[request.param], "monoceros-corpus-") as srv:
        yield request.param, srv


def _params() -> list[object]:
    return [
        pytest.param(
            case,
            id=case.name,
            marks=[pytest.mark.xfail(reason=case.xfail_listener, strict=True)]
            if case.xfail_listener
            else [],
        )
        for case in CASES
    ]


def read_one(f: BufferedReader, method: str) -> tuple[int, dict[str, str], bytes] | None:
    """One response from ``f`` (interim 1xx ones skipped); None at a clean EOF."""
    while True:
        line = f.readline(65537)
        if not line:
            return None
        status = int(line.split(b" ", 2)[1])
        headers: dict[str, str] = {}
        while (h := f.readline(65537)) not in (b"\r\n", b"\n", b""):
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if status >= 200:
            break
    if method == "HEAD" or status in (204, 304):
        return status, headers, b""
    if "content-length" in headers:
        return status, headers, f.read(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        for _ in range(100_000):
            size = int(f.readline(1024).split(b";")[0], 16)
            body += f.read(size)
            f.readline(1024)
            if not size:
                break
        return status, headers, body
    return status, headers, f.read()  # close-delimited


@pytest.mark.parametrize("case", _params())
def test_listener(listener: tuple[str, Server], case: Case) -> None:
    kind, srv = listener
    seen = len(srv.log())
    with srv.connect(timeout=10) as s:
        s.sendall(case.raw)
        f = s.makefile("rb")
        if case.error is not None:
            first = read_one(f, "GET")
            assert first is not None and first[0] == case.error, (first, srv.log()[seen:])
            assert f.read() == b"", "the connection stays open after a refused request"
            return
        expected = case.requests[:1] if kind == "sync" else case.requests
        for want in expected:
            got = read_one(f, want.method)
            assert got is not None, f"no response to {want.method} {want.target!r}"
            status, _, body = got
            assert status == case.status, (body[:300], srv.log()[seen:])
            if want.target.split(b"?")[0] == b"/echo":
                assert json.loads(body) == {
                    "len": len(want.body),
                    "sha256": hashlib.sha256(want.body).hexdigest(),
                }
        if kind == "sync":
            assert f.read() == b"", "the sync worker answers one request per connection"
        f.close()
    log = srv.log()[seen:]
    assert "Traceback" not in log, log
