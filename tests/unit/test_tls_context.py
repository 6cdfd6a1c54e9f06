"""TLS pieces on their own: bind schemes, the listeners' TLS, the settings and the context built
from them (certificates made with ``openssl``), the blocking workers' TLS socket and response,
and the words of a failed handshake."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monoceros.arbiter import load_tls
from monoceros.config import Config, ConfigError
from monoceros.listeners import BindError, BindSpec, Listener, bind_all, parse_bind
from monoceros.socket_waits import wait_in_kernel
from monoceros.tls import (
    TlsError,
    TlsSocket,
    handshake_failure,
    log_handshake_failure,
    server_context,
    settings_error,
    wrap,
)
from monoceros.wsgi.response import FileWrapper, TlsResponse

from tls_certs import Certs, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def cfg_of(**values: Any) -> Config:
    cfg = Config({})
    for name, value in values.items():
        cfg.set(name, value)
    return cfg


def tls_cfg(certs: Certs, **values: Any) -> Config:
    return cfg_of(certfile=certs.path("server.pem"), keyfile=certs.path("server.key"), **values)


# ----------------------------------------------------------------------------- bind schemes


@pytest.mark.parametrize(
    ("value", "protocol", "tls"),
    [
        ("127.0.0.1:8000", None, None),
        ("http://127.0.0.1:8000", "http", False),
        ("uwsgi://127.0.0.1:8000", "uwsgi", False),
        ("https://127.0.0.1:8443", "http", True),
        ("suwsgi://[::1]:3031", "uwsgi", True),
        ("suwsgi://unix:/run/app.sock", "uwsgi", True),
        ("https://fd://3", "http", True),
    ],
)
def test_bind_schemes(value: str, protocol: str | None, tls: bool | None) -> None:
    spec = parse_bind(value)
    assert (spec.protocol, spec.tls) == (protocol, tls)
    assert "://" not in str(spec) or str(spec).startswith("fd://")  # the address alone


def test_https_is_not_a_host_name() -> None:
    with pytest.raises(BindError):
        parse_bind("ftps://127.0.0.1:21")


@pytest.fixture
def listener() -> Iterator[Listener]:
    sock = socket.create_server(("127.0.0.1", 0))
    yield Listener(sock, BindSpec("tcp", "127.0.0.1", sock.getsockname()[1]), "http")
    sock.close()


def test_a_listener_without_scheme_follows_certfile(listener: Listener) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    listener.use_tls(context)
    assert listener.tls is context and str(listener).startswith("https://")
    listener.use_tls(None)
    assert listener.tls is None and str(listener).startswith("http://")
    listener.protocol = "uwsgi"
    listener.use_tls(context)
    assert listener.scheme == "suwsgi"


def test_a_listener_scheme_decides(listener: Listener) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    listener.scheme_tls = False  # http://: plain even with certfile
    listener.use_tls(context)
    assert listener.tls is None and listener.scheme == "http"
    listener.scheme_tls = True  # https://
    with pytest.raises(BindError, match="a TLS listener needs certfile"):
        listener.use_tls(None)
    assert listener.scheme == "https"  # what it was asked to be, even before a context


def test_bind_all_gives_the_context_to_tls_listeners() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    binds = ["127.0.0.1:0", "http://127.0.0.1:0", "suwsgi://127.0.0.1:0"]
    listeners = bind_all(binds, "http", tls=context)
    try:
        assert [lst.tls is context for lst in listeners] == [True, False, True]
        assert [lst.scheme for lst in listeners] == ["https", "http", "suwsgi"]
    finally:
        for lst in listeners:
            lst.close()
    with pytest.raises(BindError, match=r"'https://127\.0\.0\.1:0': a TLS listener needs"):
        bind_all(["127.0.0.1:0", "https://127.0.0.1:0"], "http")


# ----------------------------------------------------------------------------- the settings


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, None),
        ({"keyfile": "k.pem"}, "keyfile is set but certfile is not"),
        ({"ca_certs": "ca.pem"}, "ca_certs is set but certfile is not"),
        ({"cert_reqs": 1}, "cert_reqs is set but certfile is not"),
        ({"certfile": "c.pem"}, None),
        ({"certfile": "c.pem", "cert_reqs": 2}, "cert_reqs = 2 asks for client certificates"),
        ({"certfile": "c.pem", "cert_reqs": 1}, "cert_reqs = 1 asks for client certificates"),
        ({"certfile": "c.pem", "cert_reqs": 2, "ca_certs": "ca.pem"}, None),
    ],
)
def test_settings_that_cannot_be_served(values: dict[str, Any], expected: str | None) -> None:
    problem = settings_error(cfg_of(**values))
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(expected), problem


def test_a_hook_without_certfile_is_refused_with_it_ca_certs_may_go() -> None:
    cfg = cfg_of(ssl_context=lambda conf, factory: factory())
    assert (settings_error(cfg) or "").startswith("the ssl_context hook is set but certfile")
    cfg.set("certfile", "c.pem")
    cfg.set("cert_reqs", 2)  # the hook may load the CAs itself
    assert settings_error(cfg) is None


def test_the_default_context_is_gunicorns(certs: Certs) -> None:
    context = server_context(
        tls_cfg(certs, cert_reqs=2, ca_certs=certs.path("ca.pem"), ciphers="ECDHE+AESGCM")
    )
    assert isinstance(context, ssl.SSLContext)
    assert context.protocol == ssl.PROTOCOL_TLS_SERVER
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert [ca["subject"] for ca in context.get_ca_certs()] == [
        ((("commonName", "monoceros test CA"),),)
    ]
    assert context.sslsocket_class is TlsSocket
    assert server_context(cfg_of()) is None


def test_the_hook_gets_the_config_and_the_factory(certs: Certs) -> None:
    seen: list[Any] = []

    def hook(conf: Config, factory: Any) -> ssl.SSLContext:
        context = factory()
        seen.append((conf, context.verify_mode))
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        return context

    cfg = tls_cfg(certs, ssl_context=hook)
    context = server_context(cfg)
    assert context is not None and context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert seen == [(cfg, ssl.CERT_NONE)]


@pytest.mark.parametrize(
    ("hook", "expected"),
    [
        (lambda conf, factory: None, "returned NoneType, not an ssl.SSLContext"),
        (lambda conf, factory: ssl.create_default_context(), "a client-side context"),
        (lambda conf, factory: 1 / 0, "raised ZeroDivisionError: division by zero"),
    ],
)
def test_a_hook_that_returns_no_server_context(certs: Certs, hook: Any, expected: str) -> None:
    with pytest.raises(TlsError, match=expected):
        server_context(tls_cfg(certs, ssl_context=hook))


def test_file_problems_name_the_setting_and_the_file(certs: Certs, tmp_path: Path) -> None:
    pem, key = certs.path("server.pem"), certs.path("server.key")
    junk = tmp_path / "junk.pem"
    junk.write_text("junk\n")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"certfile": str(tmp_path / "no.pem")}, f"certfile {str(tmp_path / 'no.pem')!r}: No such"),
        ({"certfile": str(junk)}, "no PEM certificate in it"),
        ({"certfile": pem, "keyfile": str(junk)}, f"keyfile {str(junk)!r}: no PEM private key"),
        ({"certfile": pem}, "(no keyfile): no PEM private key in it"),
        ({"certfile": pem, "keyfile": certs.path("other.key")}, "does not match certfile"),
        ({"certfile": pem, "keyfile": certs.path("encrypted.key")}, "the private key is encrypted"),
        ({"certfile": pem, "keyfile": key, "ca_certs": str(junk)}, f"ca_certs {str(junk)!r}: "),
        ({"certfile": pem, "keyfile": key, "ciphers": "NOPE"}, "ciphers 'NOPE': no cipher"),
    ]
    for values, expected in cases:
        with pytest.raises(TlsError) as info:
            server_context(cfg_of(**values))
        assert expected in str(info.value) and "\n" not in str(info.value), values


def test_one_file_with_certificate_and_key(certs: Certs, tmp_path: Path) -> None:
    both = tmp_path / "both.pem"
    both.write_bytes(
        Path(certs.path("server.pem")).read_bytes() + Path(certs.path("server.key")).read_bytes()
    )
    assert server_context(cfg_of(certfile=str(both))) is not None


def test_load_tls_refuses_a_tls_bind_without_certfile_and_needs_no_ssl_without_tls() -> None:
    with pytest.raises(ConfigError, match=r"^bind 'https://127.0.0.1:9': a TLS listener needs"):
        load_tls(cfg_of(bind=["127.0.0.1:8", "https://127.0.0.1:9"]))
    code = (
        "import sys; from monoceros.arbiter import load_tls; from monoceros.config import Config;"
        "assert load_tls(Config({})) is None; print('ssl' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


# ----------------------------------------------------------------------------- the TLS socket


@pytest.fixture
def tls_pair(certs: Certs) -> Iterator[tuple[TlsSocket, ssl.SSLSocket]]:
    """A server TlsSocket and a client SSLSocket over a socket pair, handshake done."""
    server_raw, client_raw = socket.socketpair()
    context = server_context(tls_cfg(certs))
    assert context is not None
    server = wrap(context, server_raw, tls_cfg(certs))
    client_ctx = certs.client_context(None)
    client_ctx.check_hostname = False
    out: list[ssl.SSLSocket] = []
    done = threading.Thread(
        target=lambda: out.append(client_ctx.wrap_socket(client_raw, suppress_ragged_eofs=False))
    )
    done.start()
    server.settimeout(10)
    server.do_handshake()
    done.join(10)
    client = out[0]
    client.settimeout(10)
    yield server, client
    server.close()
    client.close()


def test_dontwait_reads_what_is_there_and_would_block_otherwise(
    tls_pair: tuple[TlsSocket, ssl.SSLSocket],
) -> None:
    server, client = tls_pair
    with pytest.raises(BlockingIOError):
        server.recv(1024, socket.MSG_DONTWAIT)
    assert server.gettimeout() == 10  # the socket's own timeout is back
    client.sendall(b"hello")
    assert server.recv(1024, socket.MSG_DONTWAIT) == b"hello"
    server.settimeout(0.0)
    with pytest.raises(BlockingIOError):
        server.recv(1024)  # not SSLWantReadError: what the gthread worker catches
    with pytest.raises(ValueError, match="not supported on a TLS socket"):
        server.recv(10, socket.MSG_PEEK)


def test_close_sends_close_notify(tls_pair: tuple[TlsSocket, ssl.SSLSocket]) -> None:
    server, client = tls_pair
    server.sendall(b"bye")
    server.close()
    assert client.recv(10) == b"bye"
    assert client.recv(10) == b""  # a clean end, even with suppress_ragged_eofs off


def test_waits_on_a_tls_socket_are_python_timeouts(
    tls_pair: tuple[TlsSocket, ssl.SSLSocket],
) -> None:
    server, _ = tls_pair
    wait_in_kernel(server, 2.5)
    assert server.gettimeout() == 2.5
    raw = server.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)
    assert raw == bytes(16)  # no kernel timeout under OpenSSL


def test_tls_response_sends_big_bodies_and_files(
    tls_pair: tuple[TlsSocket, ssl.SSLSocket], tmp_path: Path
) -> None:
    server, client = tls_pair
    beats: list[int] = []
    body = os.urandom(3 * 1024 * 1024 + 5)
    got: list[bytes] = []

    def read() -> None:
        """One response: its head, then Content-Length bytes."""
        data = b""
        while b"\r\n\r\n" not in data:
            data += client.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += client.recv(1 << 20)
        got.append(rest)

    reader = threading.Thread(target=read)
    reader.start()
    resp = TlsResponse(server, False, False, lambda: beats.append(1), 10.0)
    resp.start_response("200 OK", [("Content-Length", str(len(body)))])
    resp.write_single(body, then_close=True)
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(200_000))
    reader.join(20)
    assert got[0] == body
    assert len(beats) == 4  # a beat per 1 MiB slice
    reader = threading.Thread(target=read)
    reader.start()
    resp = TlsResponse(server, False, False, None, 10.0)
    resp.start_response("200 OK", [("Content-Length", "200000")])
    with open(path, "rb") as f:
        resp.send_file(FileWrapper(f), use_sendfile=True)  # read and sent, never sendfile
    reader.join(20)
    assert got[1] == path.read_bytes()


# ----------------------------------------------------------------------------- failures


def _ssl_error(reason: str, cls: type[ssl.SSLError] = ssl.SSLError) -> ssl.SSLError:
    exc = cls(1, f"[SSL: {reason}] {reason.lower()}")
    exc.reason = reason  # type: ignore[misc]
    return exc


@pytest.mark.parametrize(
    ("exc", "level", "reason"),
    [
        (TimeoutError(), logging.INFO, "no TLS handshake within header_timeout (10s)"),
        (_ssl_error("HTTP_REQUEST"), logging.INFO, "plain HTTP sent to a TLS port"),
        (_ssl_error("PEER_DID_NOT_RETURN_A_CERTIFICATE"), logging.WARNING, "no client cert"),
        (_ssl_error("TLSV1_ALERT_UNKNOWN_CA"), logging.INFO, "with the alert 'unknown ca'"),
        (_ssl_error("BAD_RECORD_MAC"), logging.INFO, "bad record mac"),
        (_ssl_error("UNEXPECTED_EOF_WHILE_READING", ssl.SSLEOFError), logging.DEBUG, "closed"),
        (ConnectionResetError(), logging.DEBUG, "closed the connection during"),
    ],
)
def test_handshake_failures_in_a_few_words(exc: BaseException, level: int, reason: str) -> None:
    got_level, got_reason = handshake_failure(exc, 10.0)
    assert got_level == level and reason in got_reason, got_reason


def test_a_refused_client_certificate_says_why() -> None:
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_message = "certificate has expired"  # type: ignore[attr-defined]
    assert handshake_failure(exc, None) == (
        logging.WARNING,
        "client certificate refused: certificate has expired",
    )


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def debug(self, msg: str, *args: object) -> None:
        self.lines.append(("debug", msg % args))

    def info(self, msg: str, *args: object) -> None:
        self.lines.append(("info", msg % args))

    def warning(self, msg: str, *args: object) -> None:
        self.lines.append(("warning", msg % args))


def test_one_line_naming_the_peer() -> None:
    log = _Log()
    log_handshake_failure(log, "10.0.0.7", _ssl_error("HTTP_REQUEST"), 5)
    log_handshake_failure(log, "10.0.0.8", ConnectionResetError(), 5)
    assert log.lines == [
        ("info", "TLS handshake failed from 10.0.0.7: plain HTTP sent to a TLS port"),
        ("debug", "TLS handshake failed from 10.0.0.8: the client closed the connection during "
         "the TLS handshake"),
    ]  # fmt: skip
