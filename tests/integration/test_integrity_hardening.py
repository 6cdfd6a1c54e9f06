"""Issue 18's integrity items served for real by every worker kind: what a response head may
carry, where the mount point ends, the Server header, and log lines a request cannot forge."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator

import pytest

from conftest import Server, module_server

KINDS = {
    "sync": ["--worker-class", "sync"],
    "gthread": ["--worker-class", "gthread", "--threads", "2"],
    "asgi": ["--worker-class", "asgi"],
}


def start(server: Callable[..., Server], kind: str, *args: str, **kw: object) -> Server:
    app = "hardening_app:asgi" if kind == "asgi" else "hardening_app:wsgi"
    return server([*KINDS[kind], *args], app=app, **kw)


@pytest.fixture(scope="module")
def shared(request: pytest.FixtureRequest) -> Iterator[tuple[str, Server]]:
    """(kind, a server of that kind) shared by the tests that only send requests and read the
    answers (and the log lines after their own mark); tests choose kinds with indirect=True."""
    kind = request.param
    app = "hardening_app:asgi" if kind == "asgi" else "hardening_app:wsgi"
    with module_server([app, *KINDS[kind]], "monoceros-integrity-") as srv:
        yield kind, srv


def exchange(srv: Server, raw: bytes, timeout: float = 10.0) -> bytes:
    """Send ``raw`` on a new connection and read until the server closes it (bounded)."""
    with srv.connect(timeout) as s:
        s.sendall(raw)
        s.shutdown(socket.SHUT_WR)
        data = b""
        for _ in range(1000):
            piece = s.recv(65536)
            if not piece:
                break
            data += piece
    return data


def get(srv: Server, target: str, keep_alive: bool = False) -> bytes:
    conn = b"" if keep_alive else b"Connection: close\r\n"
    return exchange(srv, b"GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (target.encode(), conn))


def head_of(response: bytes) -> list[bytes]:
    return response.partition(b"\r\n\r\n")[0].split(b"\r\n")


# ------------------------------------------------------------------ 12a: the Server header


@pytest.mark.parametrize("shared", list(KINDS), indirect=True)
def test_server_header_names_monoceros_without_its_version(shared: tuple[str, Server]) -> None:
    _, srv = shared
    lines = [line.lower() for line in head_of(get(srv, "/head?case=ok"))]
    assert b"server: monoceros" in lines, lines


# ------------------------------------------------------------------ 10: the mount point


def body_json(response: bytes) -> dict[str, str]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), response
    return dict(json.loads(body))


@pytest.mark.parametrize("kind", ["sync", "gthread"])
def test_script_name_from_the_environment_ends_at_a_slash(
    server: Callable[..., Server], kind: str
) -> None:
    srv = start(server, kind, env={"SCRIPT_NAME": "/app"})
    mounted = body_json(get(srv, "/app/x"))
    assert (mounted["SCRIPT_NAME"], mounted["PATH_INFO"]) == ("/app", "/x")
    outside = body_json(get(srv, "/application"))  # was PATH_INFO 'lication'
    assert (outside["SCRIPT_NAME"], outside["PATH_INFO"]) == ("/app", "/application")


@pytest.mark.parametrize("shared", list(KINDS), indirect=True)
def test_script_name_header_mount_ends_at_a_slash(shared: tuple[str, Server]) -> None:
    """A trusted proxy's (loopback is trusted by default) SCRIPT_NAME header: ``/application``
    is outside ``/app`` for WSGI's PATH_INFO and for ASGI's path/root_path alike."""
    kind, srv = shared
    raw = b"GET /application HTTP/1.1\r\nHost: t\r\nSCRIPT_NAME: /app\r\nConnection: close\r\n\r\n"
    seen = body_json(exchange(srv, raw))
    if kind == "asgi":
        assert (seen["root_path"], seen["path"]) == ("/app", "/app/application")
    else:
        assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("/app", "/application")


# ------------------------------------------------------------------ 9: what a head may carry


@pytest.mark.parametrize("shared", list(KINDS), indirect=True)
def test_response_heads_with_control_characters_or_a_negative_length_are_refused(
    shared: tuple[str, Server],
) -> None:
    """RFC 9110 5.5: a field value is VCHAR, obs-text, SP and HTAB; any other control (NUL,
    ESC, DEL, VT) is refused with a 500 and a log line, as a negative Content-Length is (it cut
    the body and kept the connection). One writer, so every worker kind says the same."""
    kind, srv = shared
    since = len(srv.log())
    cases = ["nul-value", "esc-value", "del-value", "vt-value", "negative-length"]
    if kind != "asgi":  # an ASGI status is an int: no reason phrase from the application
        cases.append("ctl-reason")
    for case in cases:
        response = get(srv, f"/head?case={case}", keep_alive=True)
        assert response.startswith(b"HTTP/1.1 500 "), (case, response)
        assert b"\x1b" not in response and b"\x00" not in response and b"\x7f" not in response
        assert b"Connection: close" in response, (case, response)
    log = srv.log()
    assert log[since:].count("Bad response from the") == len(cases), log
    assert "\x1b" not in log and "\x00" not in log and "\x7f" not in log


@pytest.mark.parametrize("shared", list(KINDS), indirect=True)
def test_tab_and_obs_text_values_are_sent(shared: tuple[str, Server]) -> None:
    _, srv = shared
    lines = [line.lower() for line in head_of(get(srv, "/head?case=tab-value"))]
    assert lines[0] == b"http/1.1 200 ok", lines
    assert b"x-tab: a\tb" in lines and b"x-obs: caf\xe9" in lines, lines


@pytest.mark.parametrize("shared", ["sync", "gthread"], indirect=True)
def test_a_bare_status_code_gets_the_space_the_status_line_needs(
    shared: tuple[str, Server],
) -> None:
    """``start_response("200", ...)``: served (gunicorn serves it too) with the status line
    ``HTTP/1.1 200 \\r\\n`` that RFC 9112 4 requires (gunicorn writes ``HTTP/1.1 200\\r\\n``)."""
    _, srv = shared
    response = get(srv, "/head?case=bare-status")
    assert response.startswith(b"HTTP/1.1 200 \r\n"), response
    assert response.endswith(b"\r\n\r\nbare"), response


# ------------------------------------------------------------------ 7: log lines


FORGED = "[2026-01-01 00:00:00 +0000] [1] [CRITICAL] forged"
#: the path (and header values) of the forging request: a newline with a fake error log line,
#: a terminal escape, C1 controls (NEL, CSI), a literal backslash sequence, and an é to keep
EVIL_PATH = "/raise%0a" + FORGED.replace(" ", "%20") + "%1b[31m%C2%85%C2%9b%5Cx0a-caf%C3%A9"
#: followed by a raw backslash sequence (llhttp refuses raw controls and bytes above 0x7f in a
#: target): the WSGI workers' error log shows the target as sent (REQUEST_URI)


@pytest.mark.parametrize("kind", list(KINDS))
def test_request_values_cannot_forge_log_lines(server: Callable[..., Server], kind: str) -> None:
    """Every request-derived value is escaped in the error log and the access log: C0, DEL, C1
    and backslash as ``\\xNN``/``\\\\``; a printable é stays (issue 18, 7)."""
    srv = start(
        server,
        kind,
        "--access-logfile",
        "-",
        "--access-logformat",
        "access %(U)s %(a)s %(f)s",
    )
    raw = (
        b"GET " + EVIL_PATH.encode() + b"\\x0a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        b"User-Agent: ua\xc2\x85\xc2\x9b-\\x0a\r\nReferer: ref\\x0a\r\n\r\n"
    )
    assert exchange(srv, raw).startswith(b"HTTP/1.1 500 ")
    # a bad request line whose reason quotes the target (an error log line without an app)
    exchange(srv, b"GET /a\x1b[31m\\x0a HTTP/1.1\r\nHost: t\r\n\r\n")
    log = srv.log_path.read_bytes().decode("utf-8", "replace")
    lines = log.split("\n")  # only LF ends a line (str.splitlines would split at NEL too)
    assert not [line for line in lines if line.startswith(FORGED[:12])], log
    for raw_char in ("\x1b", "\x85", "\x9b", "\x0b"):
        assert raw_char not in log, (raw_char, log)
    error_lines = [line for line in lines if "forged" in line and not line.startswith("access ")]
    assert len(error_lines) == 1, log
    if kind == "asgi":  # the decoded path
        assert "\\x0a[2026-01-01" in error_lines[0] and "\\x1b[31m" in error_lines[0], log
        assert "\\x85\\x9b\\\\x0a-café\\\\x0a" in error_lines[0], log
    else:  # the target as sent, read as latin-1
        assert "%0a[2026-01-01" in error_lines[0] and "-caf%C3%A9\\\\x0a" in error_lines[0], log
    access = [line for line in lines if line.startswith("access /raise")]
    assert len(access) == 1, log
    assert "\\x0a[2026-01-01" in access[0] and "\\x1b[31m" in access[0], access
    assert "\\\\x0a-caf" in access[0] and " ref\\\\x0a" in access[0], access
    assert "\\x85" in access[0] and "\\x9b" in access[0], access
    if kind == "asgi":  # the scope's path is UTF-8 text: é kept as it is
        assert "-café" in access[0], access
