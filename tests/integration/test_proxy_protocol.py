"""The PROXY protocol on the real server, every worker kind, with raw bytes on a socket: the
client a v1 or v2 header names reaches the application (and the access log), on HTTP and uwsgi
listeners; a peer not allowed, a malformed header, no header where one is required, a header
cut short or too slow: the connection closes with one log line and the worker goes on."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from proxy_headers import unread, v1, v2

from conftest import Server, free_port, wait_for
from uwsgi_support import APP_OF, WORKER_KINDS, body_of, exchange, good_env, packet, status_of

GET_ENV = b"GET /env HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"


def client_of(raw: bytes) -> tuple[str, int | None]:
    """The client the application saw, from its /env answer (WSGI environ or ASGI scope)."""
    assert status_of(raw) == 200, raw[:300]
    data = json.loads(body_of(raw))
    if "client" in data:
        return data["client"][0], data["client"][1]
    return data["REMOTE_ADDR"], int(data["REMOTE_PORT"])


def start(
    server: Callable[..., Server], kind: str, args: list[str], probe: bytes, addr: Any
) -> Server:
    """A one-worker server of ``kind``; ready once ``probe`` sent to ``addr`` is answered."""
    srv = server(
        ["-k", kind, "--workers", "1", "--access-logfile", "-", *args], app=APP_OF[kind], wait=False
    )
    send = exchange6 if len(addr) == 4 else exchange
    assert wait_for(lambda: status_of(send(addr, probe, timeout=2)) == 200, 20), srv.log()
    return srv


def refusal(srv: Server, reason: str, who: str = "127.0.0.1", since: int = 0) -> str:
    """Wait for the one log line (after ``since`` characters of the log) of a connection closed
    at its PROXY header; return it."""
    text = f"[WARNING] PROXY protocol: closing the connection from {who}: "
    assert wait_for(lambda: text in srv.log()[since:], 10), srv.log()
    lines = [line for line in srv.log()[since:].splitlines() if "PROXY protocol:" in line]
    assert len(lines) == 1 and text in lines[0] and reason in lines[0], lines
    return lines[0]


def served_after(srv: Server, addr: Any, probe: bytes) -> None:
    """The worker goes on: the next connection is served, and nothing was logged as an error."""
    assert status_of(exchange(addr, probe)) == 200
    assert "Traceback" not in srv.log() and "[ERROR]" not in srv.log(), srv.log()


@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_v1_and_v2_headers_name_the_client_on_http(
    server: Callable[..., Server], kind: str
) -> None:
    port = free_port()
    addr = ("127.0.0.1", port)
    header = v1("192.0.2.7", "127.0.0.1", 40000, port)
    srv = start(
        server, kind, ["--proxy-protocol", "--bind", f"127.0.0.1:{port}"], header + GET_ENV, addr
    )
    assert client_of(exchange(addr, header + GET_ENV)) == ("192.0.2.7", 40000)
    tlvs = b"\x01\x00\x02h2" + b"\x04\x00\x03\x00\x00\x00"  # ALPN and NOOP: skipped
    header = v2("2001:db8::7", "2001:db8::1", 50000, 8000, tlvs=tlvs)
    assert client_of(exchange(addr, header + GET_ENV)) == ("2001:db8::7", 50000)
    assert client_of(exchange(addr, GET_ENV))[0] == "127.0.0.1"  # auto: none, the real peer
    local = v2("10.0.0.1", "10.0.0.2", 1, 2, command=0)  # LOCAL: the proxy's own connection
    assert client_of(exchange(addr, local + GET_ENV))[0] == "127.0.0.1"
    assert client_of(exchange(addr, b"PROXY UNKNOWN\r\n" + GET_ENV))[0] == "127.0.0.1"
    log = srv.log()
    assert "192.0.2.7 - - [" in log and "2001:db8::7 - - [" in log, log  # the access log's %(h)s
    assert "PROXY protocol:" not in log and "[ERROR]" not in log, log


@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_a_header_split_across_reads(server: Callable[..., Server], kind: str) -> None:
    """The header in three pieces, each read by the worker before the next is sent (seen in the
    kernel's receive queue of the connection going empty), then the request."""
    port = free_port()
    addr = ("127.0.0.1", port)
    header = v2("198.51.100.9", "127.0.0.1", 61000, port)
    srv = start(
        server,
        kind,
        ["--proxy-protocol", "v2", "--bind", f"127.0.0.1:{port}"],
        header + GET_ENV,
        addr,
    )
    with socket.create_connection(addr, timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        mine = s.getsockname()[1]
        for piece in (header[:5], header[5:14], header[14:]):
            s.sendall(piece)
            assert wait_for(lambda: unread(port, mine) == 0, 10), "the worker did not read it"
        s.sendall(GET_ENV)
        raw = read_all(s)
    assert client_of(raw) == ("198.51.100.9", 61000)
    assert "PROXY protocol:" not in srv.log()


def read_all(s: socket.socket) -> bytes:
    chunks = []
    for _ in range(10_000):
        data = s.recv(65536)
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


#: for each --proxy-protocol mode, what a client sends and the reason its one log line gives
BAD_HEADERS = {
    "v1": [
        (b"PROXY TCP4 192.0.2.7 127.0.0.1 040000 80\r\n" + GET_ENV, "the port '040000'"),
        (v2("192.0.2.7", "127.0.0.1", 1, 2) + GET_ENV, "no PROXY v1 header"),
        (b"PROXY TCP4 192.0.2.7 127.0.0.1 1 2\n" + GET_ENV, "lone CR or LF"),
    ],
    "v2": [(GET_ENV, "no PROXY v2 header: the connection starts with 'GET /env HTTP/1.")],
    "auto": [
        (v2("192.0.2.7", "127.0.0.1", 1, 2)[:12] + b"\x23\x11", "command 3"),
        (b"PROXY TCP4 192.0.2.7 127.0.0.1 1", "closed inside the PROXY header"),
    ],
}


@pytest.mark.parametrize("kind", WORKER_KINDS)
@pytest.mark.parametrize("mode", sorted(BAD_HEADERS))
def test_a_bad_header_closes_the_connection_with_one_line(
    server: Callable[..., Server], kind: str, mode: str
) -> None:
    """Each bad header of the mode in turn, to one server: the connection closed without an
    answer, one log line with the reason, and the next connection served."""
    port = free_port()
    addr = ("127.0.0.1", port)
    good = (v2 if mode == "v2" else v1)("192.0.2.7", "127.0.0.1", 1, port) + GET_ENV
    srv = start(server, kind, ["--proxy-protocol", mode, "--bind", f"127.0.0.1:{port}"], good, addr)
    for sent, reason in BAD_HEADERS[mode]:
        since = len(srv.log())
        if reason == "closed inside the PROXY header":  # the client closes its side after it
            with socket.create_connection(addr, timeout=10) as s:
                s.sendall(sent)
                s.shutdown(socket.SHUT_WR)
                assert s.recv(1024) == b"", reason  # closed without an answer
        else:
            assert exchange(addr, sent) == b"", reason  # closed without an answer
        refusal(srv, reason, since=since)
        served_after(srv, addr, good)


@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_a_peer_outside_proxy_allow_ips(server: Callable[..., Server], kind: str) -> None:
    """127.0.0.2 may not send a header: in v1 mode it is closed before a byte is read; in auto
    mode it is served without one, and its header is refused."""
    port = free_port()
    addr = ("127.0.0.1", port)
    header = v1("192.0.2.7", "127.0.0.1", 40000, port)
    args = ["--bind", f"127.0.0.1:{port}", "--proxy-allow-from", "127.0.0.1"]
    strict = start(server, kind, [*args, "--proxy-protocol", "v1"], header + GET_ENV, addr)
    assert exchange(addr, header + GET_ENV, source="127.0.0.2") == b""
    refusal(strict, "127.0.0.2 is not in proxy_allow_ips (--proxy-protocol v1)", "127.0.0.2")
    served_after(strict, addr, header + GET_ENV)
    strict.stop()

    auto = start(server, kind, [*args, "--proxy-protocol", "auto"], header + GET_ENV, addr)
    assert client_of(exchange(addr, GET_ENV, source="127.0.0.2"))[0] == "127.0.0.2"
    assert exchange(addr, header + GET_ENV, source="127.0.0.2") == b""
    refusal(auto, "a PROXY header from 127.0.0.2, which is not in proxy_allow_ips", "127.0.0.2")
    served_after(auto, addr, header + GET_ENV)


@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_the_wait_for_the_header_is_bounded_by_header_timeout(
    server: Callable[..., Server], kind: str
) -> None:
    port = free_port()
    addr = ("127.0.0.1", port)
    good = v1("192.0.2.7", "127.0.0.1", 1, port) + GET_ENV
    args = ["--proxy-protocol", "v1", "--header-timeout", "0.5", "--bind", f"127.0.0.1:{port}"]
    srv = start(server, kind, args, good, addr)
    started = time.monotonic()
    assert exchange(addr, b"PROXY TCP4 19", timeout=10) == b""  # the server closed it
    assert time.monotonic() - started < 5
    served_after(srv, addr, good)
    assert "PROXY protocol:" not in srv.log()  # a slow client is not worth a warning


@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_ipv6_listener_and_peer(server: Callable[..., Server], kind: str) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    port = free_port("::1")
    addr = ("::1", port, 0, 0)
    header = v1("2001:db8::42", "::1", 443, port)
    args = ["--proxy-protocol", "v1", "--bind", f"[::1]:{port}"]
    srv = start(server, kind, args, header + GET_ENV, addr)
    assert client_of(exchange6(addr, header + GET_ENV)) == ("2001:db8::42", 443)
    header = v1("203.0.113.5", "127.0.0.1", 443, port)  # an IPv4 client through an IPv6 proxy
    assert client_of(exchange6(addr, header + GET_ENV)) == ("203.0.113.5", 443)
    assert "PROXY protocol:" not in srv.log()


def exchange6(addr: Any, payload: bytes, timeout: float = 10) -> bytes:
    """:func:`exchange` over IPv6."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(addr)
            s.sendall(payload)
            return read_all(s)
        except OSError:
            return b""


@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_uwsgi_listener_checks_uwsgi_allow_ips_against_the_proxied_peer(
    server: Callable[..., Server], kind: str
) -> None:
    """On a uwsgi listener the header's source is the front end (nginx behind a TCP balancer):
    uwsgi_allow_ips is checked against it, and REMOTE_ADDR stays the front end's var."""
    port = free_port()
    addr = ("127.0.0.1", port)
    nginx = v2("192.0.2.10", "127.0.0.1", 33000, port)
    args = ["--bind", f"uwsgi://127.0.0.1:{port}", "--proxy-protocol", "v2"]
    srv = start(
        server, kind, [*args, "--uwsgi-allow-from", "192.0.2.10"], nginx + packet(good_env()), addr
    )
    raw = exchange(addr, nginx + packet(good_env("/env")))
    assert client_of(raw) == ("10.9.8.7", 4242)  # the vars' REMOTE_ADDR and REMOTE_PORT
    assert status_of(exchange(addr, packet(good_env()))) is None  # no header: closed
    other = v2("192.0.2.11", "127.0.0.1", 33000, port)
    assert status_of(exchange(addr, other + packet(good_env()))) == 403
    assert wait_for(lambda: "Forbidden uWSGI request from 192.0.2.11" in srv.log(), 10)
    body = b"x" * 100_000  # a body that does not come with the head: the transport path
    raw = exchange(addr, nginx + packet(good_env("/echo", body, "POST"), body))
    assert status_of(raw) == 200, raw[:200]
    served_after(srv, addr, nginx + packet(good_env()))


# --- through a real HAProxy ---------------------------------------------------------------------


def via(port: int, payload: bytes, source: str) -> tuple[bytes, int]:
    """Send ``payload`` to 127.0.0.1:``port`` from ``source``; the answer and our port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(payload)
        return read_all(s), s.getsockname()[1]


@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_haproxy_send_proxy_and_send_proxy_v2(
    server: Callable[..., Server], haproxy: Callable[..., Any], kind: str
) -> None:
    """HAProxy in TCP mode in front of an HTTP and a uwsgi listener, with v1 and v2 headers:
    the client HAProxy relays (127.0.0.2, its own port) is the one the application sees over
    HTTP; over uwsgi it is the peer uwsgi_allow_ips is checked against (127.0.0.3 is not
    allowed, and HAProxy's own 127.0.0.1 is not either)."""
    http, uwsgi = free_port(), free_port()
    srv = start(
        server,
        kind,
        [
            "--proxy-protocol",
            "--bind",
            f"127.0.0.1:{http}",
            "--bind",
            f"uwsgi://127.0.0.1:{uwsgi}",
            "--uwsgi-allow-from",
            "127.0.0.2",
        ],
        GET_ENV,
        ("127.0.0.1", http),
    )
    hap = haproxy(
        {
            "http_v1": f"127.0.0.1:{http} send-proxy",
            "http_v2": f"127.0.0.1:{http} send-proxy-v2",
            "uwsgi_v1": f"127.0.0.1:{uwsgi} send-proxy",
            "uwsgi_v2": f"127.0.0.1:{uwsgi} send-proxy-v2",
        }
    )
    for name in ("http_v1", "http_v2"):
        raw, mine = via(hap.ports[name], GET_ENV, "127.0.0.2")
        assert client_of(raw) == ("127.0.0.2", mine), name
    for name in ("uwsgi_v1", "uwsgi_v2"):
        raw, _ = via(hap.ports[name], packet(good_env("/env")), "127.0.0.2")
        assert client_of(raw) == ("10.9.8.7", 4242), name  # the front end's REMOTE_ADDR var
        raw, _ = via(hap.ports[name], packet(good_env("/env")), "127.0.0.3")
        assert status_of(raw) == 403, name
    assert wait_for(lambda: srv.log().count("Forbidden uWSGI request from 127.0.0.3") == 2, 10)
    assert srv.log().count("127.0.0.2 - - [") >= 2  # the access log's %(h)s
    assert "PROXY protocol:" not in srv.log() and "[ERROR]" not in srv.log(), srv.log()


@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_haproxy_v2_to_a_v1_only_listener_is_refused(
    server: Callable[..., Server], haproxy: Callable[..., Any], kind: str
) -> None:
    port = free_port()
    probe = v1("192.0.2.7", "127.0.0.1", 1, port) + GET_ENV
    args = ["--proxy-protocol", "v1", "--bind", f"127.0.0.1:{port}"]
    srv = start(server, kind, args, probe, ("127.0.0.1", port))
    hap = haproxy({"v2": f"127.0.0.1:{port} send-proxy-v2"})
    raw, _ = via(hap.ports["v2"], GET_ENV, "127.0.0.2")
    assert status_of(raw) is None  # closed: HAProxy passes the close on
    line = refusal(srv, "no PROXY v1 header")
    assert "starts with '\\x0d\\x0a\\x0d\\x0a\\x00\\x0d\\x0aQUIT\\x0a" in line, line
    served_after(srv, ("127.0.0.1", port), probe)


def test_asgi_on_the_asyncio_loop(server: Callable[..., Server]) -> None:
    """The hand-over from the header's protocol to the listener's, on asyncio's own transports
    (the tests above run on uvloop's): HTTP with the header in two reads, uwsgi with a body that
    follows the packet."""
    http, uwsgi = free_port(), free_port()
    header = v2("192.0.2.7", "127.0.0.1", 40000, http)
    args = ["--asgi-loop", "asyncio", "--log-level", "debug", "--proxy-protocol"]
    args += ["--bind", f"127.0.0.1:{http}", "--bind", f"uwsgi://127.0.0.1:{uwsgi}"]
    args += ["--uwsgi-allow-from", "192.0.2.7"]  # the front end the header names
    srv = start(server, "asgi", args, header + GET_ENV, ("127.0.0.1", http))
    assert "ASGI worker using the asyncio event loop" in srv.log()
    with socket.create_connection(("127.0.0.1", http), timeout=10) as s:
        mine = s.getsockname()[1]
        s.sendall(header[:7])
        assert wait_for(lambda: unread(http, mine) == 0, 10), "the worker did not read it"
        s.sendall(header[7:] + GET_ENV)
        assert client_of(read_all(s)) == ("192.0.2.7", 40000)
    body = b"y" * 200_000
    raw = exchange(("127.0.0.1", uwsgi), header + packet(good_env("/echo", body, "POST"), body))
    assert status_of(raw) == 200 and json.loads(body_of(raw))["len"] == len(body)
    assert "PROXY protocol:" not in srv.log() and "[ERROR]" not in srv.log()
