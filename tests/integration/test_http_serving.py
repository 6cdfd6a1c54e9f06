"""The sync worker over real sockets: TCP, UNIX, bodies, files, bad input, slow clients."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import Server, module_server, read_response, slow_target, wait_for, wait_started

BLOCK = bytes(range(256)) * 256


@pytest.fixture(scope="module")
def shared() -> Iterator[Server]:
    """One sync worker (the defaults) shared by the tests that send requests and read the
    answers; a test that reads the log reads the lines after its own mark."""
    with module_server(["app:app"], "monoceros-http-") as srv:
        yield srv


def test_tcp_get_has_date_length_and_closes(shared: Server) -> None:
    srv = shared
    with srv.connect() as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        st, hdrs, body = read_response(s)
        assert s.recv(1) == b""  # the sync worker closes after the response
    assert (st, body) == (200, b"Hello, World!")
    assert hdrs["content-length"] == "13" and hdrs["connection"] == "close" and "date" in hdrs


def test_unix_socket(server: Callable[..., Server], workdir: Path) -> None:
    path = workdir / "s.sock"
    srv = server(bind=f"unix:{path}")
    assert srv.get_ok("/") == b"Hello, World!"
    env = json.loads(srv.get_ok("/env"))
    assert env["REMOTE_ADDR"] == ""


def test_stale_unix_socket_is_replaced(server: Callable[..., Server], workdir: Path) -> None:
    path = workdir / "stale.sock"
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(path))
    leftover.close()  # the file stays, nobody listens: what a crashed server leaves
    srv = server(bind=f"unix:{path}")
    assert srv.get_ok("/") == b"Hello, World!"
    srv.stop()
    assert not path.exists()


def test_environ_over_tcp(shared: Server) -> None:
    srv = shared
    env = json.loads(srv.get_ok("/env?x=1%202"))
    assert env["QUERY_STRING"] == "x=1%202" and env["REQUEST_METHOD"] == "GET"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1" and env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http" and env["SERVER_NAME"] == "test"


def test_wsgiref_validator_accepts_our_environ_and_calls(shared: Server) -> None:
    srv = shared
    since = len(srv.log())
    for raw in (
        b"GET /validate/x?q=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 3\r\n\r\nabc",
        b"GET /validate HTTP/1.0\r\n\r\n",
    ):
        with srv.connect() as s:
            s.sendall(raw)
            st, _, body = read_response(s)
        assert st == 200 and body.startswith(b"validated /validate"), body
    log = srv.log()[since:]
    assert "AssertionError" not in log and "Traceback" not in log


def test_post_bodies_content_length_and_chunked(shared: Server) -> None:
    srv = shared
    payload = BLOCK * 64  # 4 MiB
    st, _, body = srv.request("/echo", "POST", payload, timeout=30)
    assert st == 200 and json.loads(body) == {
        "len": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    with srv.connect() as s:
        s.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        )
        st, _, body = read_response(s)
    assert json.loads(body)["sha256"] == hashlib.sha256(b"hello world").hexdigest()


def test_expect_100_continue_is_sent_when_the_app_reads(shared: Server) -> None:
    srv = shared
    with srv.connect() as s:
        s.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        )
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hello")
        st, _, body = read_response(s)
    assert st == 200 and json.loads(body)["len"] == 5


def test_file_wrapper_and_streaming(shared: Server) -> None:
    srv = shared
    expected = hashlib.sha256(BLOCK * 16 * 8).hexdigest()
    for path in ("/file?mib=8", "/stream?mib=8"):
        st, _, body = srv.request(path, timeout=30)
        assert st == 200 and hashlib.sha256(body).hexdigest() == expected, path


def test_head_has_no_body(shared: Server) -> None:
    srv = shared
    st, hdrs, body = srv.request("/", "HEAD")
    assert st == 200 and body == b"" and hdrs["content-length"] == "13"


def test_bad_requests_get_400_and_the_worker_keeps_serving(shared: Server) -> None:
    srv = shared
    for raw in (
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"\x00\x10\x00\x00binary",
    ):
        with srv.connect() as s:
            s.sendall(raw)
            st, _, body = read_response(s)
        assert st == 400, (raw, body)
    with srv.connect() as s:
        s.sendall(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s)[0] == 414
    assert srv.get_ok("/") == b"Hello, World!"


def test_app_error_is_500_with_traceback_in_log(shared: Server) -> None:
    srv = shared
    since = len(srv.log())
    st, _, _ = srv.request("/raise")
    assert st == 500
    assert srv.get_ok("/") == b"Hello, World!"
    log = srv.log()[since:]
    assert "Error handling request /raise" in log and "deliberate failure" in log


def test_silent_client_does_not_hold_the_worker(server: Callable[..., Server]) -> None:
    """A client that connects and sends nothing is dropped at header_timeout; others get served."""
    srv = server(["--workers", "1", "--header-timeout", "1"])
    idle = srv.connect()
    slow = srv.connect()
    slow.sendall(b"GET / HTTP/1.1\r\n")  # headers that never finish
    try:
        t0 = time.monotonic()
        assert srv.get_ok("/", timeout=10) == b"Hello, World!"
        assert time.monotonic() - t0 < 5
        idle.settimeout(5)
        assert idle.recv(1) == b""  # closed by the deadline, without a response
    finally:
        idle.close()
        slow.close()
    assert "WORKER TIMEOUT" not in srv.log()


def test_ordinary_traffic_logs_no_errors(server: Callable[..., Server]) -> None:
    srv = server(["--workers", "2"])
    for i in range(100):
        assert srv.get_ok("/") == b"Hello, World!"
        if i % 10 == 0:
            s = srv.connect()  # connect and close without a request
            s.close()
            with srv.connect() as s:  # close before reading the response
                s.sendall(b"GET /stream?mib=4 HTTP/1.1\r\nHost: x\r\n\r\n")
                s.recv(10)
    # a sync worker serves one connection at a time: once each of the two has a new request,
    # both are done with the ones cut above, and anything those logged is in the log
    done = [slow_target(srv, 0.1) for _ in range(2)]
    threads = [threading.Thread(target=srv.get_ok, args=(t,), daemon=True) for t, _ in done]
    for t in threads:
        t.start()
    for _, mark in done:
        wait_started(mark)
    for t in threads:
        t.join(10)
    log = srv.log()
    assert "[ERROR]" not in log and "Traceback" not in log, log


def test_access_log_to_stdout(server: Callable[..., Server]) -> None:
    srv = server(["--access-logfile", "-"])
    srv.request("/env?a=b", headers={"User-Agent": "tester/1", "Referer": "http://r/"})
    assert wait_line(srv, '"GET /env?a=b HTTP/1.1" 200')
    line = next(x for x in srv.log().splitlines() if "GET /env?a=b" in x)
    assert line.startswith("127.0.0.1 - - [") and line.endswith('"http://r/" "tester/1"')


def wait_line(srv: Server, text: str, timeout: float = 5.0) -> bool:
    return wait_for(lambda: text in srv.log(), timeout)
