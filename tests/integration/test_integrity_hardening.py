"""Issue 18's integrity items served for real by every worker kind: what a response head may
carry, where the mount point ends, the Server header, and log lines a request cannot forge."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import pytest

from conftest import Server

KINDS = {
    "sync": ["--worker-class", "sync"],
    "gthread": ["--worker-class", "gthread", "--threads", "2"],
    "asgi": ["--worker-class", "asgi"],
}


def start(server: Callable[..., Server], kind: str, *args: str, **kw: object) -> Server:
    app = "hardening_app:asgi" if kind == "asgi" else "hardening_app:wsgi"
    return server([*KINDS[kind], *args], app=app, **kw)


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


@pytest.mark.parametrize("kind", list(KINDS))
def test_server_header_names_monoceros_without_its_version(
    server: Callable[..., Server], kind: str
) -> None:
    srv = start(server, kind)
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


@pytest.mark.parametrize("kind", list(KINDS))
def test_script_name_header_mount_ends_at_a_slash(server: Callable[..., Server], kind: str) -> None:
    """A trusted proxy's (loopback is trusted by default) SCRIPT_NAME header: ``/application``
    is outside ``/app`` for WSGI's PATH_INFO and for ASGI's path/root_path alike."""
    srv = start(server, kind)
    raw = b"GET /application HTTP/1.1\r\nHost: t\r\nSCRIPT_NAME: /app\r\nConnection: close\r\n\r\n"
    seen = body_json(exchange(srv, raw))
    if kind == "asgi":
        assert (seen["root_path"], seen["path"]) == ("/app", "/app/application")
    else:
        assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("/app", "/application")
