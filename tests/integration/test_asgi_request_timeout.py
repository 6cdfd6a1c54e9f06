"""``request_timeout`` of the asgi worker, run for real: a hung request is cancelled and answered
``504`` with its traceback in the log while the worker serves everyone else; a started response
is cut short; a WebSocket is exempt; the sync and gthread workers warn at start."""

from __future__ import annotations

import http.client
import os
import select
import socket
import time
from collections.abc import Callable

import pytest

from monoceros.protocols.websocket import OP_TEXT, encode_frame

from conftest import Server, wait_for
from uwsgi_support import body_of, exchange, good_env, packet, status_of

APP = "asgi_deadline_app:app"
LOOPS = pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
#: the deadline is the sweep's (a timer, and asyncio's Task.cancel under either loop: uvloop
#: brings its own transports, not its own tasks): one loop for the tests of its variations
ONE_LOOP = pytest.mark.parametrize("loop", ["uvloop"])


def start(server: Callable[..., Server], loop: str, *args: str, **kw: object) -> Server:
    return server(
        ["-k", "asgi", "--asgi-loop", loop, "--request-timeout", "0.5", *args], app=APP, **kw
    )


def send_get(srv: Server, path: str) -> socket.socket:
    s = srv.connect(timeout=15)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return s


@LOOPS
def test_a_hung_request_gets_504_and_its_traceback_while_others_are_served(
    server: Callable[..., Server], loop: str
) -> None:
    srv = start(server, loop)
    hung = send_get(srv, "/hang?x=1")
    # served during the hang, on other connections
    assert srv.get_ok("/pid").isdigit()
    resp = http.client.HTTPResponse(hung, method="GET")  # type: ignore[arg-type]
    resp.begin()
    assert resp.status == 504
    assert resp.read() == b"Gateway Timeout\n"
    assert resp.getheader("connection") == "close"
    assert hung.recv(10) == b""  # then the connection closes
    hung.close()
    assert srv.get_ok("/pid").isdigit()  # and after
    log = srv.log()
    assert "Request cancelled after request_timeout (0.5s): GET /hang?x=1 from 127.0.0.1" in log
    # the traceback goes down to the line the application was waiting on
    assert "Traceback" in log and "asgi_deadline_app.py" in log and "wait_for_ever" in log
    assert "CancelledError" in log
    assert len(srv.workers()) == 1 and "Booting worker" in log and log.count("Booting worker") == 1


@ONE_LOOP
def test_a_started_response_is_cut_short(server: Callable[..., Server], loop: str) -> None:
    srv = start(server, loop)
    with send_get(srv, "/stream-then-hang") as s:
        data = b""
        while True:  # the server closes the connection: the chunked body never ends
            piece = s.recv(65536)
            if not piece:
                break
            data += piece
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"first part" in data and not data.endswith(b"0\r\n\r\n")
    assert wait_for(lambda: "GET /stream-then-hang from 127.0.0.1" in srv.log(), 5)


@ONE_LOOP
def test_an_application_that_swallows_the_cancellation_still_gets_504(
    server: Callable[..., Server], loop: str
) -> None:
    srv = start(server, loop)
    status, _, _ = srv.request("/swallow", timeout=15)
    assert status == 504
    assert "the application caught the cancellation and returned" in srv.log()


def test_the_uwsgi_lean_path_is_bounded_too(server: Callable[..., Server]) -> None:
    srv = start(server, "auto", "--protocol", "uwsgi", wait=False)
    addr = ("127.0.0.1", srv.port)

    def up() -> bool:
        try:
            return status_of(exchange(addr, packet(good_env("/pid")), timeout=2)) == 200
        except OSError:
            return False

    assert wait_for(up, 20), srv.log()
    raw = exchange(addr, packet(good_env("/hang")), timeout=15)
    assert status_of(raw) == 504 and body_of(raw) == b"Gateway Timeout\n"
    assert "Request cancelled after request_timeout (0.5s): GET /hang" in srv.log()


@ONE_LOOP
def test_a_websocket_outlives_the_deadline(server: Callable[..., Server], loop: str) -> None:
    srv = start(server, loop, "--request-timeout", "0.3")
    with srv.connect() as s:
        s.sendall(
            b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 101")
        # four times the deadline (eight sweeps) with the WebSocket idle: nothing closes it
        assert select.select([s], [], [], 1.2)[0] == []
        s.sendall(encode_frame(OP_TEXT, b"still here", mask=os.urandom(4)))
        assert s.recv(100) == encode_frame(OP_TEXT, b"still here")
    assert "request_timeout" not in srv.log()


@pytest.mark.parametrize("kind", ["sync", "gthread"])
def test_sync_and_gthread_warn_that_timeout_is_their_bound(
    server: Callable[..., Server], kind: str
) -> None:
    srv = server(["-k", kind, "--request-timeout", "5", "--timeout", "30"])
    assert srv.get_ok("/pid")
    log = srv.log()
    assert "[WARNING] request_timeout (5s) applies to the asgi worker only" in log
    assert ("is never cancelled" in log) == (kind == "gthread")
    assert ("is killed and replaced" in log) == (kind == "sync")


def test_off_by_default_a_long_request_is_answered(server: Callable[..., Server]) -> None:
    """Without request_timeout nothing is cancelled: a request waits as long as it takes."""
    srv = server(["-k", "asgi"], app=APP)
    hung = send_get(srv, "/hang")
    started = time.monotonic()
    assert select.select([hung], [], [], 2.0)[0] == []  # nothing comes back
    assert time.monotonic() - started >= 1.9
    hung.close()
    assert "request_timeout" not in srv.log()
