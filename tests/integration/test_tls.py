"""TLS and mutual TLS through the real thing (issue 15): certificates made with ``openssl`` at
test time, Python's ``ssl`` client, curl, and a real nginx in front (``proxy_pass https://``
and ``uwsgi_pass suwsgi://`` with client certificates), for every worker kind.

Each kind's module-scoped server has a TLS listener (a bind without scheme, certfile set) and a
plain one side by side; the failures (plain HTTP on the TLS port, a silent client, a client
without a certificate) are each one log line, and the worker goes on serving.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import APPS, Nginx, Server, free_port, run_cli, wait_for
from tls_certs import Certs, make_certs
from uwsgi_support import (
    APP_OF,
    WORKER_KINDS,
    body_of,
    exchange,
    good_env,
    nginx_uwsgi_params,
    packet,
    request_facts,
    status_of,
)

KIND_ARGS = {
    "sync": ["-k", "sync"],
    "gthread": ["-k", "gthread", "--threads", "1"],  # a silent client must not take the thread
    "asgi": ["-k", "asgi"],
}
PLAIN_LINE = "TLS handshake failed from 127.0.0.1: plain HTTP sent to a TLS port"


@pytest.fixture(scope="module")
def certs() -> Iterator[Certs]:
    with tempfile.TemporaryDirectory(prefix="monoceros-tls-certs-") as tmp:
        yield make_certs(Path(tmp))


def tls_args(certs: Certs, *extra: str) -> list[str]:
    return ["--certfile", certs.path("server.pem"), "--keyfile", certs.path("server.key"), *extra]


def kind_args(kind: str, certs: Certs, *extra: str) -> list[str]:
    """One worker of ``kind`` serving the test app, with TLS for binds without a scheme."""
    return [
        *KIND_ARGS[kind],
        "--workers",
        "1",
        "--defer-accept",
        "0",  # a silent client reaches the worker at once
        *tls_args(certs, *extra),
    ]


def start(
    server: Callable[..., Server],
    kind: str,
    certs: Certs,
    *extra: str,
    client: ssl.SSLContext | None = None,
    **kw: object,
) -> Server:
    """``server`` (the fixture) with TLS on its scheme-less bind; tests connect with ``client``
    (default: trusting the CA, no client certificate)."""
    return server(
        kind_args(kind, certs, *extra),
        app=APP_OF[kind],
        client_tls=client or certs.client_context(None),
        **kw,
    )


def scheme_of(kind: str, body: bytes) -> str:
    data = json.loads(body)
    return str(data["wsgi.url_scheme"] if kind != "asgi" else data["scheme"])


def count(srv: Server, text: str) -> int:
    return srv.log().count(text)


def wait_line(srv: Server, text: str, n: int = 1, timeout: float = 15.0) -> None:
    assert wait_for(lambda: count(srv, text) >= n, timeout), (text, srv.log())


def raw_connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def no_answer(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` without writing anything (a close with our bytes
    unread is a reset)."""
    sock.settimeout(10)
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True


def refused(port: int, client: ssl.SSLContext, data: bytes) -> bool:
    """Whether a TLS client with ``client`` that sends ``data`` is refused: a TLS error, or
    the connection closed without an answer (with TLS 1.3 the client learns of a refused
    certificate only after its own Finished, when it reads)."""
    try:
        with raw_connect(port) as raw, client.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(data)
            return s.recv(4096) == b""
    except (ssl.SSLError, ConnectionError):
        return True


# ----------------------------------------------------------------------------- every kind


@pytest.fixture(scope="module", params=WORKER_KINDS)
def tls_server(request: pytest.FixtureRequest, certs: Certs) -> Iterator[tuple[str, Server, int]]:
    """(kind, a server with a TLS listener, the port of its plain listener beside it)."""
    kind = request.param
    plain, tls = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="monoceros-tls-") as tmp:
        args = kind_args(
            kind,
            certs,
            "--bind",
            f"127.0.0.1:{tls}",
            "--bind",
            f"http://127.0.0.1:{plain}",
            "--header-timeout",
            "1",  # a silent client's test waits it out
            "--worker-connections",
            "3",
        )
        srv = Server(
            [APP_OF[kind], "--chdir", str(APPS), *args],
            Path(tmp),
            bind=f"127.0.0.1:{tls}",
            client_tls=certs.client_context(None),
        )
        try:
            yield kind, srv, plain
        finally:
            srv.kill()


def https(srv: Server, path: str, **kw: object) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPSConnection("localhost", srv.port, context=srv.client_tls, timeout=15)
    try:
        conn.request("GET", path, **kw)  # type: ignore[arg-type]
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def test_https_beside_http_and_the_scheme_the_app_sees(
    tls_server: tuple[str, Server, int],
) -> None:
    kind, srv, plain = tls_server
    st, _, body = https(srv, "/env/x")
    assert st == 200 and scheme_of(kind, body) == "https", body
    conn = http.client.HTTPConnection("127.0.0.1", plain, timeout=10)
    conn.request("GET", "/env/y")
    r = conn.getresponse()
    assert r.status == 200 and scheme_of(kind, r.read()) == "http"
    assert f"Listening at: https://127.0.0.1:{srv.port}" in srv.log()
    assert f"Listening at: http://127.0.0.1:{plain}" in srv.log()


def test_bodies_files_and_streams_over_tls(tls_server: tuple[str, Server, int]) -> None:
    kind, srv, _ = tls_server
    body = os.urandom(3 * 1024 * 1024 + 7)
    conn = http.client.HTTPSConnection("localhost", srv.port, context=srv.client_tls, timeout=30)
    try:
        conn.request("POST", "/echo", body=body)
        r = conn.getresponse()
        got = json.loads(r.read())
        assert got["len"] == len(body), got
        if kind != "sync":  # keep-alive: the next requests on the same TLS connection
            for path in ("/file?mib=2", "/stream?mib=2"):
                conn.request("GET", path)
                r = conn.getresponse()
                assert r.status == 200 and r.read() == bytes(range(256)) * 256 * 32, path
    finally:
        conn.close()
    for path in ("/file?mib=3", "/stream?mib=1"):  # wsgi.file_wrapper: no sendfile over TLS
        st, _, data = https(srv, path)
        size = 3 if path.startswith("/file") else 1
        assert st == 200 and data == bytes(range(256)) * 256 * 16 * size, path


def test_curl_over_tls(tls_server: tuple[str, Server, int], certs: Certs) -> None:
    """Another client's TLS stack: curl (OpenSSL), HTTP/1.1 keep-alive, then a POST."""
    _, srv, _ = tls_server
    curl = shutil.which("curl")
    if curl is None:
        if os.environ.get("CI"):
            pytest.fail("curl is required under CI")
        pytest.skip("curl is not installed")
    url = f"https://localhost:{srv.port}"
    done = subprocess.run(
        [curl, "-sS", "--cacert", certs.path("ca.pem"), f"{url}/pid", f"{url}/pid",
         "--data-binary", "x" * 100_000, f"{url}/echo"],
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    pid = srv.get_ok("/pid").decode()
    assert out.startswith(pid + pid) and '"len": 100000' in out, out


def test_plain_http_and_garbage_on_the_tls_port_are_one_line_each(
    tls_server: tuple[str, Server, int],
) -> None:
    """Also more failed handshakes than worker_connections: none stays counted open."""
    _, srv, _ = tls_server
    pid = srv.get_ok("/pid")
    before = count(srv, PLAIN_LINE)
    for _ in range(4):
        with raw_connect(srv.port) as s:
            s.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
            assert no_answer(s)
    wait_line(srv, PLAIN_LINE, before + 4)
    garbage = "TLS handshake failed from 127.0.0.1: not a TLS handshake (wrong version number)"
    before_garbage = count(srv, garbage)
    with raw_connect(srv.port) as s:
        s.sendall(b"\x00\x01\x02 this is no TLS at all \r\n" * 8)
        assert no_answer(s)
    wait_line(srv, garbage, before_garbage + 1)
    assert srv.get_ok("/pid") == pid  # the same worker goes on
    assert "Traceback" not in srv.log()
    assert count(srv, PLAIN_LINE) == before + 4


def test_a_silent_client_gets_one_line_after_header_timeout(
    tls_server: tuple[str, Server, int],
) -> None:
    kind, srv, _ = tls_server
    line = "TLS handshake failed from 127.0.0.1: no TLS handshake within header_timeout (1s)"
    before = count(srv, line)
    with raw_connect(srv.port) as silent:
        started = time.monotonic()
        srv.get_ok("/pid")  # served meanwhile, by the one worker (sync: once the silent one is out)
        if kind != "sync":  # the poller or the loop holds the silent one, not the worker
            assert count(srv, line) == before
        wait_line(srv, line, before + 1)
        assert time.monotonic() - started < 10
        assert no_answer(silent)  # and it was closed
    assert count(srv, line) == before + 1


def test_a_client_that_leaves_mid_handshake_is_not_worth_a_line(
    tls_server: tuple[str, Server, int],
) -> None:
    _, srv, _ = tls_server
    before = srv.log().count("TLS handshake failed")
    for data in (b"", b"\x16\x03\x01\x00\xff\x01"):  # nothing; half a ClientHello
        with raw_connect(srv.port) as s:
            s.sendall(data)
    srv.get_ok("/pid")
    assert srv.log().count("TLS handshake failed") == before


# ----------------------------------------------------------------------------- mutual TLS


@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_mutual_tls_refuses_clients_without_a_trusted_certificate(
    kind: str, server: Callable[..., Server], certs: Certs
) -> None:
    srv = start(
        server,
        kind,
        certs,
        "--cert-reqs",
        "2",
        "--ca-certs",
        certs.path("ca.pem"),
        client=certs.client_context("client"),
    )
    st, _, body = srv.request("/env")
    assert st == 200 and scheme_of(kind, body) == "https"
    for cert, line in (
        (None, "no client certificate (cert_reqs)"),
        ("rogue", "client certificate refused: self-signed certificate"),
    ):
        assert refused(
            srv.port, certs.client_context(cert), b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        wait_line(srv, f"[WARNING] TLS handshake failed from 127.0.0.1: {line}")
    assert srv.request("/pid")[0] == 200


# ----------------------------------------------------------------------------- nginx in front


@pytest.mark.nginx
@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_nginx_proxy_pass_https(
    kind: str, server: Callable[..., Server], certs: Certs, nginx: Callable[..., Nginx]
) -> None:
    srv = start(server, kind, certs)
    ngx = nginx(
        f"""
        location / {{
            proxy_pass https://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_trusted_certificate {certs.path("ca.pem")};
            proxy_ssl_verify on;
            proxy_ssl_name localhost;
            proxy_ssl_session_reuse on;
        }}""",
        srv.bind,
    )
    for _ in range(3):  # nginx reuses its TLS connections (keepalive 8) where the kind allows
        st, _, body = ngx.request("/env/through")
        assert st == 200 and scheme_of(kind, body) == "https", (body, ngx.error_log())
    data = os.urandom(1024 * 1024)
    st, _, body = ngx.request("/echo", method="POST", body=data)
    assert st == 200 and json.loads(body)["len"] == len(data)
    assert "TLS handshake failed" not in srv.log(), srv.log()


@pytest.mark.nginx
@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_nginx_uwsgi_pass_suwsgi_with_mutual_tls(
    kind: str, server: Callable[..., Server], certs: Certs, nginx: Callable[..., Nginx]
) -> None:
    """nginx presents its client certificate over uwsgi; a client without one is refused."""
    port = free_port()
    srv = server(
        [
            *KIND_ARGS[kind],
            "--bind",
            f"suwsgi://127.0.0.1:{port}",
            *tls_args(certs, "--cert-reqs", "2", "--ca-certs", certs.path("ca.pem")),
        ],
        app=APP_OF[kind],
        bind=f"127.0.0.1:{port}",
        wait=False,
    )
    ngx = nginx(
        f"""
        location / {{
            include {nginx_uwsgi_params()};
            uwsgi_pass suwsgi://backend;
            uwsgi_ssl_certificate {certs.path("client.pem")};
            uwsgi_ssl_certificate_key {certs.path("client.key")};
            uwsgi_ssl_trusted_certificate {certs.path("ca.pem")};
            uwsgi_ssl_verify on;
            uwsgi_ssl_name localhost;
        }}""",
        f"127.0.0.1:{port}",
    )
    assert wait_for(lambda: _status(ngx, "/pid") == 200, 20), (srv.log(), ngx.error_log())
    assert f"Listening at: suwsgi://127.0.0.1:{port}" in srv.log()
    st, _, body = ngx.request("/env/mtls?q=1")
    assert st == 200, (body, ngx.error_log())
    data = os.urandom(2 * 1024 * 1024)
    st, _, body = ngx.request("/echo", method="POST", body=data)
    assert st == 200 and json.loads(body)["len"] == len(data), body
    # anyone else, even with the server's CA: no certificate, no uwsgi
    assert refused(port, certs.client_context(None), b"\x00" * 4)
    wait_line(srv, "TLS handshake failed from 127.0.0.1: no client certificate (cert_reqs)")
    assert _status(ngx, "/pid") == 200
    assert "Traceback" not in srv.log()


def _status(ngx: Nginx, path: str) -> int:
    try:
        return ngx.request(path, timeout=5)[0]
    except OSError:
        return 0


# ----------------------------------------------------------------------------- uwsgi over TLS


def suwsgi_exchange(port: int, client: ssl.SSLContext, payload: bytes) -> bytes:
    """A uwsgi request over TLS, as nginx's ``uwsgi_pass suwsgi://`` sends it; read to the end."""
    with raw_connect(port) as raw, client.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(payload)
        out = b""
        while data := s.recv(65536):
            out += data
    return out


@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_suwsgi_listener_beside_a_plain_one_and_its_allow_list(
    kind: str, server: Callable[..., Server], certs: Certs
) -> None:
    """A suwsgi:// listener next to a plain uwsgi:// one without certfile's scheme-less rule
    (every bind has its scheme); the uwsgi allow-list applies once the handshake is done."""
    tls, plain, http_port = free_port(), free_port(), free_port()
    srv = server(
        [
            *KIND_ARGS[kind],
            "--bind",
            f"http://127.0.0.1:{http_port}",
            "--bind",
            f"suwsgi://127.0.0.1:{tls}",
            "--bind",
            f"uwsgi://127.0.0.1:{plain}",
            *tls_args(certs),
        ],
        app=APP_OF[kind],
        bind=f"127.0.0.1:{http_port}",
    )
    client = certs.client_context(None)
    answer = suwsgi_exchange(tls, client, packet(good_env("/env/u")))
    assert status_of(answer) == 200, answer
    facts = request_facts(body_of(answer))
    assert facts["path"] == "/env/u"
    assert status_of(exchange(("127.0.0.1", plain), packet(good_env("/pid")))) == 200
    assert "Listening at: suwsgi://" in srv.log() and "Listening at: uwsgi://" in srv.log()
    closed = server(
        [
            *KIND_ARGS[kind],
            "--bind",
            f"suwsgi://127.0.0.1:{(port := free_port())}",
            "--bind",
            f"http://127.0.0.1:{(http2 := free_port())}",
            "--uwsgi-allow-from",
            "10.9.9.9",
            *tls_args(certs),
        ],
        app=APP_OF[kind],
        bind=f"127.0.0.1:{http2}",
    )
    answer = suwsgi_exchange(port, client, packet(good_env("/pid")))
    assert status_of(answer) == 403, answer
    wait_line(closed, "Forbidden uWSGI request from 127.0.0.1")


# ----------------------------------------------------------------------------- WebSockets


def test_websocket_over_tls_is_wss(server: Callable[..., Server], certs: Certs) -> None:
    srv = start(server, "asgi", certs)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    with srv.connect() as s:
        s.sendall(
            b"GET /ws/scope HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
        head, _, frame = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        while len(frame) < 4 or len(frame) < 4 + int.from_bytes(frame[2:4], "big"):
            frame += s.recv(65536)
    assert frame[0] & 0x0F == 1 and frame[1] == 126  # a text frame with a 16-bit length
    scope = json.loads(frame[4 : 4 + int.from_bytes(frame[2:4], "big")])
    assert scope["type"] == "websocket" and scope["scheme"] == "wss"


# ----------------------------------------------------------------------------- the settings


@pytest.mark.parametrize("kind", ["sync", "asgi"])
def test_ssl_context_hook_from_a_config_file(
    kind: str, server: Callable[..., Server], workdir: Path, certs: Certs
) -> None:
    """The hook gets the config and the factory of monoceros's own context, and its answer
    is what the listeners serve: here TLS 1.3 only, so a TLS 1.2 client is refused."""
    conf = workdir / "tls.conf.py"
    conf.write_text(
        "import ssl\n"
        f"certfile = {certs.path('server.pem')!r}\n"
        f"keyfile = {certs.path('server.key')!r}\n"
        "def ssl_context(conf, default_ssl_context_factory):\n"
        "    context = default_ssl_context_factory()\n"
        "    assert context.verify_mode == ssl.CERT_NONE and conf.certfile\n"
        "    context.minimum_version = ssl.TLSVersion.TLSv1_3\n"
        "    return context\n"
    )
    srv = server(
        ["-c", str(conf), *KIND_ARGS[kind], "--defer-accept", "0"],
        app=APP_OF[kind],
        client_tls=certs.client_context(None),
    )
    assert srv.request("/pid")[0] == 200
    with raw_connect(srv.port) as raw:
        old = certs.client_context(None, maximum=ssl.TLSVersion.TLSv1_2)
        with pytest.raises(ssl.SSLError):
            old.wrap_socket(raw, server_hostname="localhost")
    wait_line(srv, "TLS handshake failed from 127.0.0.1:")
    assert srv.request("/pid")[0] == 200


def refusal(args: list[str], workdir: Path) -> str:
    """The one stderr line of a start that is refused (exit status 2)."""
    done = run_cli([*args, "--chdir", str(APPS), "--bind", f"127.0.0.1:{free_port()}"], workdir)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, (args, done.stderr)
    assert lines[0].startswith("monoceros: error: "), lines
    return lines[0][len("monoceros: error: ") :]


def test_start_up_refusals_are_one_line(workdir: Path, certs: Certs) -> None:
    pem, key = certs.path("server.pem"), certs.path("server.key")
    hook = workdir / "hook.conf.py"
    hook.write_text("def ssl_context(conf, factory):\n    raise RuntimeError('no HSM here')\n")
    broken = workdir / "not-a-cert.pem"
    broken.write_text("hello\n")
    cases: list[tuple[list[str], str]] = [
        (["--bind", "https://127.0.0.1:1"], "a TLS listener needs certfile"),
        (["--bind", "suwsgi://127.0.0.1:1"], "a TLS listener needs certfile"),
        (["--keyfile", key], "keyfile is set but certfile is not"),
        (["--cert-reqs", "2"], "cert_reqs is set but certfile is not"),
        (["--certfile", str(workdir / "nope.pem")], "No such file or directory"),
        (["--certfile", str(workdir)], "Is a directory"),
        (["--certfile", str(broken)], "no PEM certificate in it"),
        (["--certfile", pem], "no PEM private key in it"),
        (["--certfile", pem, "--keyfile", certs.path("other.key")], "does not match certfile"),
        (["--certfile", pem, "--keyfile", certs.path("encrypted.key")], "asks for no passphrase"),
        (["--certfile", pem, "--keyfile", key, "--cert-reqs", "2"], "without ca_certs"),
        (["--certfile", pem, "--keyfile", key, "--ca-certs", key], "ca_certs"),
        (["--certfile", pem, "--keyfile", key, "--ciphers", "NOPE"], "no cipher can be selected"),
        (["-c", str(hook), "--certfile", pem, "--keyfile", key], "RuntimeError: no HSM here"),
    ]
    for args, expected in cases:
        line = refusal([*args, "app:app"], workdir)
        assert expected in line, (args, line)
    line = refusal(["--keyfile", key, "--check-config", "app:app"], workdir)
    assert "certfile" in line
    # the stats listener serves plain HTTP only: an https:// address is refused, not served plain
    args = ["--stats-bind", f"https://127.0.0.1:{free_port()}", "--certfile", pem]
    done = run_cli([*args, "--keyfile", key, "--chdir", str(APPS), "app:app"], workdir)
    assert done.returncode == 1 and "stats_bind: 'https://" in done.stderr, done.stderr


def test_hup_reads_the_certificate_again(
    server: Callable[..., Server], workdir: Path, certs: Certs
) -> None:
    """A renewed certificate is served after HUP; one that cannot be read keeps the old."""
    live = make_certs(workdir / "live")
    srv = server(
        [
            *KIND_ARGS["sync"],
            "--certfile",
            live.path("server.pem"),
            "--keyfile",
            live.path("server.key"),
        ],
        client_tls=certs.client_context(None),  # trusts the other CA: not live's
        wait=False,
    )
    assert wait_for(lambda: "Booting worker" in srv.log(), 20), srv.log()
    with raw_connect(srv.port) as raw, pytest.raises(ssl.SSLCertVerificationError):
        certs.client_context(None).wrap_socket(raw, server_hostname="localhost")
    for name in ("server.pem", "server.key"):  # the renewal: now signed by the tests' CA
        shutil.copy(certs.path(name), live.path(name))
    old = srv.workers()
    srv.signal(signal.SIGHUP)
    assert wait_for(lambda: srv.workers() and not set(old) & set(srv.workers()), 20)
    srv.wait_ready()
    Path(live.path("server.key")).write_text("gone\n")
    srv.signal(signal.SIGHUP)
    wait_line(srv, "Reload failed, keeping the current configuration: keyfile")
    assert srv.request("/pid")[0] == 200


@pytest.mark.parametrize("kind", ["sync", "gthread"])
@pytest.mark.parametrize("suppress", [True, False])
def test_suppress_ragged_eofs(
    kind: str, suppress: bool, server: Callable[..., Server], workdir: Path, certs: Certs
) -> None:
    """A client that closes TCP without TLS's close_notify: the end of the stream (True, the
    default), or one line (False). The asgi worker's TLS transport has no such switch."""
    conf = workdir / "ragged.conf.py"
    conf.write_text(f"suppress_ragged_eofs = {suppress}\n")
    srv = start(server, kind, certs, "-c", str(conf))
    for data in (b"", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nshort"):
        with raw_connect(srv.port) as raw:
            tls = certs.client_context(None).wrap_socket(raw, server_hostname="localhost")
            tls.sendall(data)
            tls.close()  # Python's SSLSocket.close() sends no close_notify: a ragged EOF
    srv.get_ok("/pid")
    reason = "closed without TLS close_notify (suppress_ragged_eofs is off)"
    between = f"TLS error on the connection from 127.0.0.1: {reason}"
    in_body = f"TLS error on the connection from 127.0.0.1 during /echo: {reason}"
    if suppress:
        assert "TLS error" not in srv.log()
    else:
        wait_line(srv, between)
        wait_line(srv, in_body)  # the app was reading the body: not the app's error
    assert "Traceback" not in srv.log()


@pytest.mark.parametrize("kind", WORKER_KINDS)
@pytest.mark.parametrize("on_connect", [False, True])
def test_do_handshake_on_connect_decides_what_header_timeout_bounds(
    kind: str, on_connect: bool, server: Callable[..., Server], certs: Certs
) -> None:
    """header_timeout 1.5 s; a client that takes 1 s to start its handshake and 1 s more to
    send its request: within the limit for each step (True), not for both together (False).
    The asgi worker's sweep acts up to half a second late: 2 s and 1.5 s steps there."""
    limit, step = (2.0, 1.5) if kind == "asgi" else (1.5, 1.0)
    extra = ["--header-timeout", str(limit)]
    extra += ["--do-handshake-on-connect"] if on_connect else []
    srv = start(server, kind, certs, *extra)
    with raw_connect(srv.port) as raw:
        time.sleep(step)  # a slow client, on purpose
        s = certs.client_context(None).wrap_socket(raw, server_hostname="localhost")
        time.sleep(step)
        try:
            s.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = s.recv(4096)
        except (ssl.SSLError, ConnectionError):
            answer = b""
    assert answer.startswith(b"HTTP/1.1 200") if on_connect else answer == b"", answer


def test_usr2_upgrade_keeps_each_listener_tls_or_plain(
    server: Callable[..., Server], workdir: Path, certs: Certs
) -> None:
    """The new master adopts the sockets and serves each one as its bind says, TLS or plain."""
    tls, plain = free_port(), free_port()
    conf = workdir / "up.conf.py"
    conf.write_text(
        f"bind = ['https://127.0.0.1:{tls}', 'http://127.0.0.1:{plain}']\n"
        f"certfile = {certs.path('server.pem')!r}\nkeyfile = {certs.path('server.key')!r}\n"
    )
    srv = server(
        ["-c", str(conf)],
        bind=f"127.0.0.1:{tls}",
        bind_arg=False,
        client_tls=certs.client_context(None),
    )
    old_workers = set(srv.wait_workers(1))
    srv.signal(signal.SIGUSR2)
    assert wait_for(lambda: len(set(srv.workers()) - old_workers) == 1, 20), srv.log()
    srv.signal(signal.SIGWINCH)  # the old master's workers go: the new master's serve
    assert wait_for(lambda: not old_workers & set(srv.workers()), 20), srv.log()
    new_master = next(iter(set(srv.workers()) - old_workers))
    st, _, body = srv.request("/pid")
    assert st == 200 and int(body) != 0 and int(body) not in old_workers
    conn = http.client.HTTPConnection("127.0.0.1", plain, timeout=10)
    conn.request("GET", "/pid")
    assert conn.getresponse().status == 200
    assert srv.log().count(f"Listening at: https://127.0.0.1:{tls}") == 2  # both masters
    assert new_master != srv.pid
