"""One proxy-header policy for every worker kind, on a real HTTP listener (issue 13): header
names with ``_``, contradictory ``secure_scheme_headers``, and a request body that breaks its
chunked framing, with the log line each leaves.

The tests connect from 127.0.0.1, a trusted peer by default (``forwarded_allow_ips``); the
``untrusted`` servers trust another address only. One server of each kind per module.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import APPS, Server, read_response, wait_for

KINDS = {
    "sync": ["app:app", "--worker-class", "sync"],
    "gthread": ["app:app", "--worker-class", "gthread", "--threads", "4"],
    "asgi": ["asgi_app:app", "--worker-class", "asgi"],
}
#: what the application sees of the request's headers, Django's way (``request.META``)
ENV_PATH = {"sync": "/env", "gthread": "/env", "asgi": "/scope"}


def _start(kind: str, tmp: str, *extra: str) -> Server:
    return Server([*KINDS[kind], "--chdir", str(APPS), "--workers", "1", *extra], Path(tmp))


@pytest.fixture(scope="module", params=list(KINDS))
def servers(request: pytest.FixtureRequest) -> Iterator[tuple[str, Server, Server]]:
    """(kind, a server that trusts the tests' peer, one that does not)."""
    kind = request.param
    with tempfile.TemporaryDirectory(prefix="monoceros-fwd-") as tmp:
        trusted = _start(kind, tmp)
        try:
            untrusted = _start(kind, tmp, "--forwarded-allow-ips", "10.9.9.9")
            try:
                yield kind, trusted, untrusted
            finally:
                untrusted.kill()
        finally:
            trusted.kill()


def meta(kind: str, srv: Server, raw_headers: list[tuple[str, str]]) -> dict[str, str]:
    """The ``HTTP_*`` keys the application sees for a request with these header lines, and
    ``scheme``: the environ's keys (WSGI), or the scope's headers as Django's ASGI handler
    turns them into ``META`` keys (``-`` to ``_``, repeated ones joined)."""
    raw = f"GET {ENV_PATH[kind]} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
    raw += "".join(f"{name}: {value}\r\n" for name, value in raw_headers) + "\r\n"
    with srv.connect() as s:
        s.sendall(raw.encode("latin-1"))
        status, _, body = read_response(s)
    assert status == 200, body
    data = json.loads(body)
    if kind != "asgi":
        seen = {k: v for k, v in data.items() if k.startswith("HTTP_")}
        seen["scheme"] = data["wsgi.url_scheme"]
        return seen
    seen = {}
    for name, value in data["headers"]:
        key = "HTTP_" + name.upper().replace("-", "_")
        seen[key] = seen[key] + "," + value if key in seen else value
    seen["scheme"] = data["scheme"]
    return seen


def raw_request(srv: Server, raw: bytes) -> tuple[int, bytes]:
    """Send ``raw`` on a new connection: the response's status and body."""
    with srv.connect() as s:
        s.sendall(raw)
        status, _, body = read_response(s)
    return status, body


def new_log(srv: Server, seen: int, line: str) -> str:
    """The server's log after offset ``seen``, once it holds ``line``."""
    assert wait_for(lambda: line in srv.log()[seen:], 10), srv.log()[seen:]
    return srv.log()[seen:]


# --------------------------------------------------------------------- header names with "_"


def test_a_header_name_with_underscore_never_reaches_the_app(
    servers: tuple[str, Server, Server],
) -> None:
    kind, trusted, untrusted = servers
    headers = [("X_Forwarded_For", "6.6.6.6"), ("X-Forwarded-For", "1.1.1.1")]
    for srv in (trusted, untrusted):
        seen = meta(kind, srv, headers)
        assert seen["HTTP_X_FORWARDED_FOR"] == "1.1.1.1", seen


def test_forwarder_headers_only_from_a_trusted_proxy(servers: tuple[str, Server, Server]) -> None:
    """``forwarder_headers`` (default SCRIPT_NAME,PATH_INFO) sent by a trusted proxy reach the
    application; from anyone else they are dropped like any name with ``_``."""
    kind, trusted, untrusted = servers
    headers = [("PATH_INFO", "/z"), ("Remote_User", "ann")]
    seen = meta(kind, trusted, headers)
    assert seen.get("HTTP_PATH_INFO") == "/z" and "HTTP_REMOTE_USER" not in seen, seen
    seen = meta(kind, untrusted, headers)
    assert "HTTP_PATH_INFO" not in seen and "HTTP_REMOTE_USER" not in seen, seen


# --------------------------------------------------------------- contradictory scheme headers


def test_contradictory_scheme_headers_are_refused_from_a_trusted_proxy(
    servers: tuple[str, Server, Server],
) -> None:
    """gunicorn answers 400 "Contradictory scheme headers"; every worker does, with one line."""
    kind, trusted, untrusted = servers
    raw = (
        b"GET / HTTP/1.1\r\nHost: test\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Ssl: off\r\n\r\n"
    )
    seen = len(trusted.log())
    status, body = raw_request(trusted, raw)
    assert status == 400 and b"Contradictory scheme headers" in body
    line = (
        "[INFO] Invalid HTTP request from 127.0.0.1: Contradictory scheme headers: "
        "X-FORWARDED-PROTO says https, X-FORWARDED-SSL says http"
    )
    log = new_log(trusted, seen, line)
    assert log.count("Invalid HTTP request") == 1 and "Traceback" not in log, log
    # from a client that is not trusted the headers mean nothing: served, scheme http
    assert raw_request(untrusted, raw)[0] == 200
    seen_meta = meta(kind, untrusted, [("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "off")])
    assert seen_meta["scheme"] == "http"


def test_agreeing_scheme_headers_say_https(servers: tuple[str, Server, Server]) -> None:
    kind, trusted, _ = servers
    headers = [("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "on")]
    assert meta(kind, trusted, headers)["scheme"] == "https"


# ------------------------------------------------------------------ a bad chunked request body


BAD_CHUNK = (
    b"POST %s HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
)


def test_a_bad_chunk_size_is_one_log_line_on_every_worker(
    servers: tuple[str, Server, Server],
) -> None:
    """An application reading the body: 400, and the same single INFO line on every worker."""
    _, trusted, _ = servers
    seen = len(trusted.log())
    status, body = raw_request(trusted, BAD_CHUNK % b"/echo")
    assert (status, body) == (400, b"Bad Request\nInvalid character in chunk size\n")
    line = "[INFO] Invalid request body from 127.0.0.1 for /echo: Invalid character in chunk size"
    log = new_log(trusted, seen, line)
    assert log.count("Invalid request body") == 1, log
    assert "[ERROR]" not in log and "Traceback" not in log, log


def test_asgi_app_answering_after_a_bad_chunk_is_not_an_app_error(
    servers: tuple[str, Server, Server],
) -> None:
    """The asgi worker sees the bad chunk before the application answers: 400 from the server,
    the application's own response is dropped, no "http.response.start sent twice" ERROR.
    The WSGI workers read the body only when the app does: this app answers first (200), and
    the bad chunk, met while the rest of the body is read away, still gets its log line."""
    kind, trusted, _ = servers
    seen = len(trusted.log())
    path = ENV_PATH[kind].encode()  # these paths answer without reading the body
    status, _ = raw_request(trusted, BAD_CHUNK % path)
    assert status == (400 if kind == "asgi" else 200)
    line = (
        f"[INFO] Invalid request body from 127.0.0.1 for {path.decode()}: "
        "Invalid character in chunk size"
    )
    log = new_log(trusted, seen, line)
    assert log.count("Invalid request body") == 1, log
    assert "[ERROR]" not in log and "Traceback" not in log, log
