"""A uwsgi client that leaves reaches the ASGI application as ``http.disconnect``.

Front ends never half-close a uwsgi connection: EOF (or a reset) after the request is the client
going away. These tests run ``monoceros -k asgi --protocol uwsgi`` behind a real nginx
``uwsgi_pass`` and with raw packets, on TCP and UNIX listeners, on both the bare-socket path (a
request whole at accept) and the transport path (a body bigger than one read).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import Nginx, Server, wait_for
from uwsgi_support import exchange, good_env, nginx_uwsgi_params, packet, status_of

APP = "asgi_app:app"
#: seconds within which the application must hear of the disconnect (it is well under one;
#: the margin is for a loaded machine; the old code never told it)
PROMPT = 3.0

UWSGI_LOCATION = """
location / {{
    include {params};
    uwsgi_pass backend;
}}"""


def read_events(path: Path) -> str:
    """What the test application recorded so far."""
    return path.read_text() if path.exists() else ""


def recorded(events: Path, line: str, timeout: float) -> bool:
    """Wait until the test application recorded ``line`` (at most ``timeout`` seconds)."""
    return wait_for(lambda: line in read_events(events), timeout)


def uwsgi_backend(
    server: Callable[..., Server], workdir: Path, transport: str, events: Path
) -> tuple[Server, str | tuple[str, int], str]:
    """An asgi worker on a uwsgi listener: (server, address for raw packets, nginx upstream)."""
    bind = f"unix:{workdir / 'asgi-uwsgi.sock'}" if transport == "unix" else None
    srv = server(
        ["--worker-class", "asgi", "--protocol", "uwsgi", "--workers", "1"],
        app=APP,
        wait=False,
        bind=bind,
        env={"ASGI_EVENTS": str(events)},
    )
    addr: str | tuple[str, int] = srv.unix_path or ("127.0.0.1", srv.port)
    assert wait_for(lambda: status_of(exchange(addr, packet(good_env()), timeout=2)) == 200, 20), (
        srv.log()
    )
    upstream = f"unix:{addr}" if isinstance(addr, str) else f"127.0.0.1:{srv.port}"
    return srv, addr, upstream


def connect(addr: str | tuple[str, int]) -> socket.socket:
    """A client socket to ``addr`` (a UNIX path or a TCP address)."""
    family = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(addr)
    return s


def reset(s: socket.socket) -> None:
    """Close with a reset instead of a FIN (TCP; a UNIX socket just closes)."""
    if s.family == socket.AF_INET:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def read_until(s: socket.socket, marker: bytes, limit: int = 200) -> bytes:
    """Read ``s`` until ``marker`` arrived (at most ``limit`` reads, each bounded by the
    socket's timeout)."""
    data = b""
    for _ in range(limit):
        if marker in data:
            return data
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    raise AssertionError(f"{marker!r} never arrived: {data[:300]!r}")


def clean(log: str) -> bool:
    return "[ERROR]" not in log and "Traceback" not in log and "[CRITICAL]" not in log


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_client_leaving_nginx_reaches_the_waiting_app(
    server: Callable[..., Server], nginx: Callable[..., Nginx], workdir: Path, transport: str
) -> None:
    events = workdir / "events"
    srv, _, upstream = uwsgi_backend(server, workdir, transport, events)
    ngx = nginx(UWSGI_LOCATION.format(params=nginx_uwsgi_params()), upstream)
    # a GET (whole at accept: mostly the bare-socket path) and a POST whose 300000-byte body
    # takes more than one read (always the transport path)
    for tag, body in (("-get", b""), ("-post", b"p" * 300_000)):
        head = f"{'POST' if body else 'GET'} /disconnect?tag={tag} HTTP/1.1\r\nHost: t\r\n"
        with socket.create_connection(("127.0.0.1", ngx.port), timeout=10) as s:
            s.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            assert recorded(events, f"http-waiting{tag} {len(body)}", 10), srv.log()
        assert recorded(events, f"http-disconnect{tag} ", PROMPT), (
            tag,
            read_events(events),
            srv.log(),
        )
        assert recorded(events, f"http-answered{tag} ", PROMPT), tag
    # a server-sent event stream: the client reads the first event and leaves
    with socket.create_connection(("127.0.0.1", ngx.port), timeout=10) as s:
        s.sendall(b"GET /sse?every=60 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert b"200 OK" in read_until(s, b"data: 0\n\n")
    assert recorded(events, "sse-stopped", PROMPT), (read_events(events), srv.log())
    for _ in range(5):  # the worker goes on serving
        assert ngx.request("/pid")[0] == 200
    assert clean(srv.log()), srv.log()
    assert "[error]" not in ngx.error_log(), ngx.error_log()


#: (tag, body bytes, bytes of it sent, how the client leaves); 1000 bytes arrive whole at accept
#: (the bare-socket path on TCP), 300000 take more than one read (the transport path), a body
#: cut short leaves while the request is still arriving
CASES: list[tuple[str, int, int, Callable[[socket.socket], Any]]] = [
    ("-small", 1000, 1000, socket.socket.close),
    ("-large", 300_000, 300_000, socket.socket.close),
    ("-small-reset", 1000, 1000, reset),
    ("-large-reset", 300_000, 300_000, reset),
    ("-cut", 300_000, 1000, socket.socket.close),
]


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_uwsgi_client_leaving_after_a_body_reaches_the_app(
    server: Callable[..., Server], workdir: Path, transport: str
) -> None:
    events = workdir / "events"
    srv, addr, _ = uwsgi_backend(server, workdir, transport, events)
    for tag, size, sent, leave in CASES:
        env = good_env(f"/disconnect?tag={tag}", b"x" * size, "POST")
        s = connect(addr)
        s.sendall(packet(env, b"x" * sent))
        if sent == size:  # the app read the whole body and waits
            assert recorded(events, f"http-waiting{tag} {size}", 10), (tag, srv.log())
        leave(s)
        assert recorded(events, f"http-disconnect{tag} ", PROMPT), (
            tag,
            read_events(events),
            srv.log(),
        )
        assert recorded(events, f"http-answered{tag} ", PROMPT), tag
    assert status_of(exchange(addr, packet(good_env()))) == 200
    assert clean(srv.log()), srv.log()
