"""The PROXY protocol in front of TLS, every worker kind: per connection, accept -> the PROXY
header (plain text) -> the TLS handshake -> the protocol. A real HAProxy in TCP mode
(``send-proxy``, ``send-proxy-v2``) in front of an ``https://`` and a ``suwsgi://`` listener
with mutual TLS, and raw bytes: a header followed in the same segment by the ClientHello, a
header in pieces, a malformed header, and handshakes that fail after a header (the log line
names the client the header named)."""

from __future__ import annotations

import json
import socket
import ssl
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from proxy_headers import unread, v1, v2

from conftest import APPS, Server, free_port, wait_for
from tls_certs import Certs, make_certs
from uwsgi_support import APP_OF, body_of, good_env, packet, status_of

KINDS = {
    "sync": ["-k", "sync"],
    "gthread": ["-k", "gthread", "--threads", "1"],  # a silent client must not take the thread
    "asgi": ["-k", "asgi"],
    "asgi-asyncio": ["-k", "asgi", "--asgi-loop", "asyncio"],  # the loop's own TLS transport
}
GET_ENV = b"GET /env HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module")
def certs() -> Iterator[Certs]:
    with tempfile.TemporaryDirectory(prefix="monoceros-proxy-tls-certs-") as tmp:
        yield make_certs(Path(tmp))


class Edge:
    """A one-worker server with ``--proxy-protocol`` and mutual TLS on an ``https://`` and a
    ``suwsgi://`` listener; the front end the PROXY header names must be 127.0.0.2 over uwsgi."""

    def __init__(self, kind: str, certs: Certs, tmp: Path) -> None:
        self.kind = kind
        self.certs = certs
        self.https, self.suwsgi = free_port(), free_port()
        args = [
            *KINDS[kind],
            "--workers", "1",
            "--defer-accept", "0",  # a silent client reaches the worker at once
            "--certfile", certs.path("server.pem"),
            "--keyfile", certs.path("server.key"),
            "--ca-certs", certs.path("ca.pem"),
            "--cert-reqs", "2",
            "--proxy-protocol",  # auto: the readiness probe comes without a header
            "--bind", f"https://127.0.0.1:{self.https}",
            "--bind", f"suwsgi://127.0.0.1:{self.suwsgi}",
            "--uwsgi-allow-from", "127.0.0.2",
            "--header-timeout", "1",  # a silent client's test waits it out
            "--access-logfile", "-",
        ]  # fmt: skip
        self.srv = Server(
            [APP_OF[kind.split("-")[0]], "--chdir", str(APPS), *args],
            tmp,
            bind=f"127.0.0.1:{self.https}",
            client_tls=certs.client_context("client"),
        )

    def log(self) -> str:
        return self.srv.log()

    def mark(self) -> int:
        """Where the log ends now: :meth:`lines` after it (the server serves several tests)."""
        return len(self.log())

    def lines(self, text: str, since: int = 0) -> list[str]:
        return [line for line in self.log()[since:].splitlines() if text in line]


@pytest.fixture(scope="module", params=list(KINDS))
def edge(request: pytest.FixtureRequest, certs: Certs) -> Iterator[Edge]:
    with tempfile.TemporaryDirectory(prefix="monoceros-proxy-tls-") as tmp:
        edge = Edge(request.param, certs, Path(tmp))
        try:
            yield edge
        finally:
            edge.srv.kill()


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_tls(s: ssl.SSLSocket) -> bytes:
    """Read until the server ends the TLS stream."""
    chunks = []
    for _ in range(10_000):
        try:
            data = s.recv(65536)
        except (ssl.SSLEOFError, ConnectionResetError):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def over_tls(s: socket.socket, context: ssl.SSLContext, payload: bytes) -> bytes:
    """Speak TLS on ``s`` (after whatever was sent in plain text), send ``payload``, read all."""
    with context.wrap_socket(s, server_hostname="localhost") as t:
        t.sendall(payload)
        return read_tls(t)


def refused(s: socket.socket, context: ssl.SSLContext, payload: bytes) -> bool:
    """Whether a TLS client is refused: a TLS error, or the connection closed without an
    answer (with TLS 1.3 the client learns of a refused certificate only when it reads)."""
    try:
        return over_tls(s, context, payload) == b""
    except (ssl.SSLError, ConnectionError):
        return True


class MemoryClient:
    """A TLS client over memory BIOs: its bytes are sent by the test, in the segments it picks
    (the ClientHello in the same ``sendall`` as the PROXY header)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")

    def client_hello(self) -> bytes:
        with pytest.raises(ssl.SSLWantReadError):
            self.tls.do_handshake()
        return self.outgoing.read()

    def exchange(self, s: socket.socket, payload: bytes) -> bytes:
        """Finish the handshake over ``s``, send ``payload``, read the answer to the end."""
        for _ in range(100):
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                s.sendall(self.outgoing.read())
                data = s.recv(65536)
                if not data:
                    raise ConnectionError("closed during the handshake") from None
                self.incoming.write(data)
        self.tls.write(payload)
        s.sendall(self.outgoing.read())
        answer = []
        for _ in range(10_000):
            try:
                answer.append(self.tls.read(65536))
                continue
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
            data = s.recv(65536)
            if not data:
                break
            self.incoming.write(data)
        return b"".join(answer)


def client_and_scheme(kind: str, raw: bytes) -> tuple[tuple[str, int], str]:
    """The client the application saw and the scheme, from its /env answer."""
    assert status_of(raw) == 200, raw[:300]
    data = json.loads(body_of(raw))
    if kind.startswith("asgi"):
        return (data["client"][0], data["client"][1]), data["scheme"]
    return (data["REMOTE_ADDR"], int(data["REMOTE_PORT"])), data["wsgi.url_scheme"]


def served_after(edge: Edge) -> None:
    """The worker goes on: a direct TLS client (no header, auto) is served."""
    with connect(edge.https) as s:
        raw = over_tls(s, edge.certs.client_context("client"), GET_ENV)
    assert client_and_scheme(edge.kind, raw)[1] == "https"
    assert "Traceback" not in edge.log() and "[ERROR]" not in edge.log(), edge.log()


# ----------------------------------------------------------------------------- HAProxy


def test_haproxy_send_proxy_in_front_of_https_and_suwsgi_with_mutual_tls(
    edge: Edge, haproxy: Callable[..., Any]
) -> None:
    """HAProxy in TCP mode relays the client's TLS unopened, after a v1 or v2 header: over
    HTTPS the application sees the client (127.0.0.2, its own port) and https; over uwsgi
    the header's client is the front end uwsgi_allow_ips checks (127.0.0.3 is refused, with a
    403 inside TLS); a client without a certificate is refused at the handshake, and the log
    line names it, not HAProxy."""
    since = edge.mark()
    hap = haproxy(
        {
            "https_v1": f"127.0.0.1:{edge.https} send-proxy",
            "https_v2": f"127.0.0.1:{edge.https} send-proxy-v2",
            "suwsgi_v1": f"127.0.0.1:{edge.suwsgi} send-proxy",
            "suwsgi_v2": f"127.0.0.1:{edge.suwsgi} send-proxy-v2",
        }
    )
    mutual = edge.certs.client_context("client")
    for name in ("https_v1", "https_v2"):
        with connect(hap.ports[name], "127.0.0.2") as s:
            mine = s.getsockname()[1]
            raw = over_tls(s, mutual, GET_ENV)
        assert client_and_scheme(edge.kind, raw) == (("127.0.0.2", mine), "https"), name
    for name in ("suwsgi_v1", "suwsgi_v2"):
        with connect(hap.ports[name], "127.0.0.2") as s:
            raw = over_tls(s, mutual, packet(good_env("/env")))
        assert client_and_scheme(edge.kind, raw)[0] == ("10.9.8.7", 4242), name  # nginx's var
        with connect(hap.ports[name], "127.0.0.3") as s:
            assert status_of(over_tls(s, mutual, packet(good_env("/env")))) == 403, name
    forbidden = "Forbidden uWSGI request from 127.0.0.3"
    assert wait_for(lambda: len(edge.lines(forbidden, since)) == 2, 10), edge.log()
    assert wait_for(lambda: len(edge.lines("127.0.0.2 - - [", since)) >= 2, 10)  # %(h)s
    with connect(hap.ports["suwsgi_v2"], "127.0.0.2") as s:
        assert refused(s, edge.certs.client_context(None), packet(good_env("/env")))
    line = "TLS handshake failed from 127.0.0.2: no client certificate (cert_reqs)"
    assert wait_for(lambda: len(edge.lines(line, since)) == 1, 10), edge.log()
    assert not edge.lines("PROXY protocol:", since), edge.log()
    served_after(edge)


# ----------------------------------------------------------------------------- raw bytes


def test_a_v1_header_and_the_client_hello_in_one_segment(edge: Edge) -> None:
    """The worker reads the header and not one byte more: the ClientHello right behind it in
    the same segment is the TLS layer's."""
    since = edge.mark()
    for port, payload in ((edge.https, GET_ENV), (edge.suwsgi, packet(good_env("/env")))):
        client = MemoryClient(edge.certs.client_context("client"))
        with connect(port) as s:
            s.sendall(v1("192.0.2.7", "127.0.0.1", 40000, port) + client.client_hello())
            raw = client.exchange(s, payload)
        if port == edge.https:
            assert client_and_scheme(edge.kind, raw) == (("192.0.2.7", 40000), "https")
        else:
            assert status_of(raw) == 403  # the front end the header names is not allowed
    forbidden = "Forbidden uWSGI request from 192.0.2.7"
    assert wait_for(lambda: len(edge.lines(forbidden, since)) == 1, 10), edge.log()
    assert not edge.lines("PROXY protocol:", since), edge.log()
    assert not edge.lines("TLS handshake failed", since), edge.log()


def test_a_v2_header_in_pieces_then_the_handshake(edge: Edge) -> None:
    """Each piece of the header is read before the next is sent (the connection's receive
    queue empties), then the client's TLS follows."""
    header = v2("2001:db8::7", "2001:db8::1", 50000, 443, tlvs=b"\x04\x00\x02\x00\x00")
    with connect(edge.https) as s:
        mine = s.getsockname()[1]
        for piece in (header[:5], header[5:17], header[17:]):
            s.sendall(piece)
            assert wait_for(lambda: unread(edge.https, mine) == 0, 10), "not read"
        raw = over_tls(s, edge.certs.client_context("client"), GET_ENV)
    assert client_and_scheme(edge.kind, raw) == (("2001:db8::7", 50000), "https")


def test_a_malformed_header_before_tls(edge: Edge) -> None:
    """One log line, the connection closed before any TLS, the worker goes on."""
    since = edge.mark()
    client = MemoryClient(edge.certs.client_context("client"))
    with connect(edge.https) as s:
        s.sendall(b"PROXY TCP4 10.1.2.03 127.0.0.1 1 2\r\n" + client.client_hello())
        try:
            assert s.recv(4096) == b""
        except ConnectionResetError:
            pass  # closed with our ClientHello unread
    text = "PROXY protocol: closing the connection from 127.0.0.1: "
    assert wait_for(lambda: len(edge.lines(text, since)) == 1, 10), edge.log()
    assert "the address '10.1.2.03'" in edge.lines(text, since)[0]
    served_after(edge)
    assert len(edge.lines("PROXY protocol:", since)) == 1, edge.log()
    assert not edge.lines("TLS handshake failed", since), edge.log()


def test_failed_handshakes_after_a_header_name_its_client(edge: Edge) -> None:
    """Plain HTTP after the header, and a client silent after it (header_timeout bounds the
    handshake): each one TLS line, naming the client the header named."""
    since = edge.mark()
    with connect(edge.https) as s:
        s.sendall(v1("192.0.2.8", "127.0.0.1", 1, 2) + GET_ENV)
        try:
            assert s.recv(4096) == b""
        except ConnectionResetError:
            pass
    plain = "TLS handshake failed from 192.0.2.8: plain HTTP sent to a TLS port"
    assert wait_for(lambda: len(edge.lines(plain, since)) == 1, 10), edge.log()
    with connect(edge.https) as s:
        s.sendall(v2("192.0.2.9", "127.0.0.1", 1, 2))
        s.settimeout(15)
        try:
            assert s.recv(4096) == b""  # closed by the server, within header_timeout
        except ConnectionResetError:
            pass
    silent = "TLS handshake failed from 192.0.2.9: no TLS handshake within header_timeout (1s)"
    assert wait_for(lambda: len(edge.lines(silent, since)) == 1, 10), edge.log()
    served_after(edge)
