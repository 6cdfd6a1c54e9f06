"""The uWSGI protocol behind real front ends (nginx uwsgi_pass, Apache mod_proxy_uwsgi, the uWSGI
router), for every worker kind, over TCP and a UNIX socket, using the configs in examples/."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import APPS, Nginx, Server, free_port, wait_for
from uwsgi_support import (
    APP_OF,
    WORKER_KINDS,
    WSGI_KINDS,
    Apache,
    UwsgiRouter,
    body_of,
    example,
    exchange,
    good_env,
    nginx_uwsgi_params,
    packet,
    request_facts,
    status_of,
)

MiB = 1024 * 1024
BLOCK = bytes(range(256)) * 256


def kind_args(kind: str) -> list[str]:
    return ["--worker-class", kind, "--workers", "2"]


class Stack:
    """monoceros (uwsgi) behind nginx configured from an example file."""

    def __init__(self, srv: Server, ngx: Nginx, kind: str) -> None:
        self.srv = srv
        self.ngx = ngx
        self.kind = kind

    def get(self, path: str, **kw: object) -> tuple[int, dict[str, str], bytes]:
        return self.ngx.request(path, **kw)  # type: ignore[arg-type]

    def env(self, path: str, **kw: object) -> dict[str, str]:
        """The WSGI environ (WSGI kinds) or the ASGI scope (asgi) the app saw, as JSON."""
        st, _, body = self.get(path, **kw)
        assert st == 200, (st, body[:300])
        return json.loads(body)  # type: ignore[no-any-return]

    def facts(self, path: str, **kw: object) -> dict[str, str]:
        """What the app saw, the same keys for every kind (``request_facts``)."""
        st, _, body = self.get(path, **kw)
        assert st == 200, (st, body[:300])
        return request_facts(body)


def start_stack(
    server: Callable[..., Server],
    nginx: Callable[..., Nginx],
    workdir: Path,
    kind: str,
    transport: str,
    example_name: str = "nginx/uwsgi-tcp.conf",
    extra: tuple[str, ...] = (),
) -> Stack:
    if transport == "unix":
        sock = workdir / f"mono-{time.monotonic_ns()}.sock"
        srv = server(
            [*kind_args(kind), "--protocol", "uwsgi", *extra],
            bind=f"unix:{sock}",
            wait=False,
            app=APP_OF[kind],
        )
        upstream = f"unix:{sock}"
    else:
        port = free_port()
        srv = server(
            [*kind_args(kind), "--protocol", "uwsgi", *extra],
            bind=f"127.0.0.1:{port}",
            wait=False,
            app=APP_OF[kind],
        )
        upstream = f"127.0.0.1:{port}"
    addr: str | tuple[str, int] = str(sock) if transport == "unix" else ("127.0.0.1", port)
    assert wait_for(lambda: status_of(exchange(addr, packet(good_env()), timeout=2)) == 200, 20), (
        srv.log()
    )
    listen = free_port()
    replacements = {
        "listen 80;": f"listen 127.0.0.1:{listen};",
        "include /etc/nginx/uwsgi_params;": f"include {nginx_uwsgi_params()};",
        "server 127.0.0.1:8000;": f"server {upstream};",
    }
    if example_name == "nginx/uwsgi-static.conf":
        static = workdir / "static"
        static.mkdir(exist_ok=True)
        (static / "logo.txt").write_text("static file")
        replacements["alias /srv/myapp/static/;"] = f"alias {static}/;"
    text = example(example_name, replacements)
    ngx = nginx("", upstream, http_block=text, port=listen)
    return Stack(srv, ngx, kind)


@pytest.fixture(
    scope="module",
    params=[(k, t) for k in WORKER_KINDS for t in ("tcp", "unix")],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """One stack per worker kind and transport, shared by the tests that take it: they only
    send requests through nginx and read what comes back, none changes the server's state (a
    test of the log reads the log of every request the stack served, all of them clean)."""
    kind, transport = request.param
    started: list[Server | Nginx] = []

    def server(args: list[str], app: str, **kw: object) -> Server:
        started.append(Server([app, "--chdir", str(APPS), *args], workdir, **kw))  # type: ignore[arg-type]
        return started[-1]  # type: ignore[return-value]

    def nginx(locations: str, upstream: str, http_block: str, port: int) -> Nginx:
        started.append(Nginx(locations, workdir, upstream, http_block, port))
        return started[-1]  # type: ignore[return-value]

    with tempfile.TemporaryDirectory(prefix="monoceros-uwsgi-") as tmp:
        workdir = Path(tmp)
        try:
            yield start_stack(server, nginx, workdir, kind, transport)
        finally:
            for proc in reversed(started):
                proc.kill() if isinstance(proc, Server) else proc.stop()


# ----------------------------------------------------------------------------- environ


def test_environ_through_nginx(stack: Stack) -> None:
    target = "/env/caf%C3%A9/%2561dmin?q=caf%C3%A9&x=%20"
    headers = {"X-Custom": "v", "Cookie": "a=1"}
    seen = stack.facts(target, headers=headers)
    # decoded once by nginx, never again: %2561 stays %61
    assert (seen["method"], seen["path"]) == ("GET", "/env/caf\u00c3\u00a9/%61dmin")
    assert (seen["query"], seen["script"]) == ("q=caf%C3%A9&x=%20", "")
    assert seen["x-custom"] == "v" and seen["cookie"] == "a=1"
    env = stack.env(target, headers=headers)
    if stack.kind == "asgi":
        assert env["raw_path"] == "/env/caf%C3%A9/%2561dmin"
        assert env["server"][0] == "example.com" and env["scheme"] == "http"
        assert env["client"][0] == "127.0.0.1" and isinstance(env["client"][1], int)
        names = [name for name, _ in env["headers"]]  # type: ignore[attr-defined]
        assert "content-type" not in names and "content-length" not in names
        return
    assert env["REQUEST_METHOD"] == "GET"
    # decoded once by nginx, never again: %2561 stays %61 (gunicorn turns it into 'a')
    assert env["PATH_INFO"] == "/env/caf\u00c3\u00a9/%61dmin"
    assert env["REQUEST_URI"] == "/env/caf%C3%A9/%2561dmin?q=caf%C3%A9&x=%20"
    assert env["QUERY_STRING"] == "q=caf%C3%A9&x=%20"
    assert env["SCRIPT_NAME"] == ""
    assert env["SERVER_NAME"] == "example.com"
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["REMOTE_PORT"].isdigit()
    assert env["HTTP_X_CUSTOM"] == "v" and env["HTTP_COOKIE"] == "a=1"
    assert env["wsgi.url_scheme"] == "http"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env


def test_post_content_type_and_length(stack: Stack) -> None:
    kw = {
        "method": "POST",
        "body": b"a=1&b=2",
        "headers": {"Content-Type": "application/x-www-form-urlencoded"},
    }
    if stack.kind == "asgi":
        seen = stack.facts("/env", **kw)
        assert seen["content-type"] == "application/x-www-form-urlencoded"
        assert seen["content-length"] == "7"
        return
    env = stack.env("/env", **kw)
    assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert env["CONTENT_LENGTH"] == "7"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env


def test_repeated_headers_are_joined(stack: Stack) -> None:
    conn = socket.create_connection(("127.0.0.1", stack.ngx.port), timeout=10)
    with conn:
        conn.sendall(
            b"GET /env HTTP/1.1\r\nHost: example.com\r\nX-A: one\r\nX-A: two\r\n"
            b"Cookie: c1=1\r\nCookie: c2=2\r\nConnection: close\r\n\r\n"
        )
        raw = b""
        while data := conn.recv(65536):
            raw += data
    seen = request_facts(body_of(raw))  # the app sends a Content-Length: nginx keeps it
    assert seen["x-a"] == "one, two"
    assert seen["cookie"] == "c1=1; c2=2"


def test_script_name_prefix_example(
    server: Callable[..., Server], nginx: Callable[..., Nginx], workdir: Path
) -> None:
    st = start_stack(server, nginx, workdir, "sync", "tcp", "nginx/uwsgi-prefix.conf")
    env = st.env("/app/env/users/1?x=1")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/env/users/1")


def test_modifier1_30_strips_script_name(server: Callable[..., Server]) -> None:
    srv = server(["--protocol", "uwsgi"], wait=False)
    addr = ("127.0.0.1", srv.port)
    assert wait_for(lambda: status_of(exchange(addr, packet(good_env()), timeout=2)) == 200, 20)
    vars_ = {**good_env("/m/env"), "SCRIPT_NAME": "/m"}
    for modifier1 in (30, 0):  # nginx's uwsgi_modifier1 30, and a plain SCRIPT_NAME param
        data = json.loads(body_of(exchange(addr, packet(vars_, modifier1=modifier1))))
        assert (data["SCRIPT_NAME"], data["PATH_INFO"]) == ("/m", "/env")


def test_https_through_nginx_ssl_example(
    server: Callable[..., Server], nginx: Callable[..., Nginx], workdir: Path
) -> None:
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    made = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=example.com",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        capture_output=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    port = free_port()
    srv = server(["--protocol", "uwsgi"], bind=f"127.0.0.1:{port}", wait=False)
    listen = free_port()
    text = example(
        "nginx/uwsgi-ssl.conf",
        {
            "listen 443 ssl;": f"listen 127.0.0.1:{listen} ssl;",
            "/etc/ssl/certs/example.com.pem": str(cert),
            "/etc/ssl/private/example.com.key": str(key),
            "include /etc/nginx/uwsgi_params;": f"include {nginx_uwsgi_params()};",
            "server 127.0.0.1:8000;": f"server 127.0.0.1:{port};",
        },
    )
    nginx("", "", http_block=text, port=listen)
    import http.client
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def fetch() -> bytes:
        conn = http.client.HTTPSConnection("127.0.0.1", listen, context=ctx, timeout=10)
        try:
            conn.request("GET", "/env")
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:  # e.g. nginx's 502 while monoceros is still starting
                raise ValueError(resp.status)
            return body
        finally:
            conn.close()

    assert wait_for(lambda: _ok(fetch), 20), srv.log()
    env = json.loads(fetch())
    assert env["HTTPS"] == "on" and env["wsgi.url_scheme"] == "https"


def _ok(fn: Callable[[], bytes]) -> bool:
    try:
        fn()
        return True
    except (OSError, ValueError):
        return False


def test_static_example_serves_files_and_app(
    server: Callable[..., Server], nginx: Callable[..., Nginx], workdir: Path
) -> None:
    st = start_stack(server, nginx, workdir, "sync", "tcp", "nginx/uwsgi-static.conf")
    assert st.get("/static/logo.txt")[2] == b"static file"
    assert st.get("/")[2] == b"Hello, World!"


def test_load_balancing_example(
    server: Callable[..., Server], nginx: Callable[..., Nginx], workdir: Path
) -> None:
    ports = [free_port(), free_port()]
    srvs = [
        server(["--protocol", "uwsgi", "--workers", "1"], bind=f"127.0.0.1:{p}", wait=False)
        for p in ports
    ]
    for p in ports:
        assert wait_for(
            lambda p=p: status_of(exchange(("127.0.0.1", p), packet(good_env()), timeout=2)) == 200,
            20,
        )
    listen = free_port()
    text = example(
        "nginx/uwsgi-load-balancing.conf",
        {
            "listen 80;": f"listen 127.0.0.1:{listen};",
            "include /etc/nginx/uwsgi_params;": f"include {nginx_uwsgi_params()};",
            "server 127.0.0.1:8000;": f"server 127.0.0.1:{ports[0]};",
            "server 127.0.0.1:8001;": f"server 127.0.0.1:{ports[1]};",
        },
    )
    ngx = nginx("", "", http_block=text, port=listen)
    pids = {ngx.request("/pid")[2] for _ in range(20)}
    assert len(pids) == 2, (pids, [s.log() for s in srvs])


# ----------------------------------------------------------------------------- bodies


def test_16mib_upload_and_32mib_download(stack: Stack) -> None:
    payload = os.urandom(16 * MiB)
    digest = hashlib.sha256(payload).hexdigest()
    st, _, body = stack.get("/echo", method="POST", body=payload, timeout=60)
    assert st == 200 and json.loads(body) == {"len": len(payload), "sha256": digest}
    expected = hashlib.sha256(BLOCK * 16 * 32).hexdigest()
    for path in ("/stream?mib=32", "/file?mib=32"):
        st, _, body = stack.get(path, timeout=60)
        assert st == 200 and len(body) == 32 * MiB, path
        assert hashlib.sha256(body).hexdigest() == expected, path


def test_chunked_client_upload(stack: Stack) -> None:
    parts = [os.urandom(70_000), os.urandom(1), os.urandom(300_000)]
    whole = b"".join(parts)
    st, _, body = stack.get(
        "/echo",
        method="POST",
        body=iter(parts),
        headers={"Transfer-Encoding": "chunked"},
        encode_chunked=True,
    )
    assert st == 200 and json.loads(body)["sha256"] == hashlib.sha256(whole).hexdigest()


def test_response_is_never_chunked(stack: Stack) -> None:
    raw = exchange(
        ("127.0.0.1", stack.ngx.port),
        b"GET /stream?mib=1 HTTP/1.0\r\nHost: example.com\r\n\r\n",
        timeout=20,
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0] and len(body) == MiB


def test_head_has_no_body(stack: Stack) -> None:
    st, hdrs, body = stack.get("/hello", method="HEAD")
    assert st == 200 and body == b"" and hdrs.get("content-length") == "13"


# ----------------------------------------------------------------------------- the allow-list


@pytest.mark.parametrize(
    "allow,allowed",
    [
        (None, False),
        ("127.0.0.2", True),
        ("127.0.0.0/8", True),
        ("*", True),
        ("10.0.0.0/8", False),
    ],
)
def test_allow_list_from_127_0_0_2(
    server: Callable[..., Server], allow: str | None, allowed: bool
) -> None:
    extra = ["--uwsgi-allow-from", allow] if allow else []
    srv = server(["--protocol", "uwsgi", "--workers", "1", *extra], wait=False)
    addr = ("127.0.0.1", srv.port)
    assert wait_for(
        lambda: status_of(exchange(addr, packet(good_env()), timeout=2)) is not None, 20
    ), srv.log()
    raw = exchange(addr, packet(good_env()), source="127.0.0.2")
    if allowed:
        assert status_of(raw) == 200
        assert "from 127.0.0.2" not in srv.log()
    else:
        assert status_of(raw) == 403 and body_of(raw).startswith(b"Forbidden")
        assert wait_for(lambda: "[WARNING] Forbidden uWSGI request from 127.0.0.2" in srv.log(), 5)
        assert srv.log().count("Forbidden uWSGI request from 127.0.0.2") == 1


def test_unix_socket_peers_are_always_allowed(server: Callable[..., Server], workdir: Path) -> None:
    sock = workdir / "u.sock"
    srv = server(
        ["--protocol", "uwsgi", "--uwsgi-allow-from", "10.1.1.1"], bind=f"unix:{sock}", wait=False
    )
    assert wait_for(
        lambda: status_of(exchange(str(sock), packet(good_env()), timeout=2)) == 200, 20
    ), srv.log()


@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_a_unix_client_bound_to_a_named_socket_is_allowed(
    server: Callable[..., Server], workdir: Path, kind: str
) -> None:
    """accept() names such a peer by its path: still a local peer, not an address to check."""
    sock = workdir / "u.sock"
    srv = server(
        ["-k", kind, "--protocol", "uwsgi", "--uwsgi-allow-from", "10.1.1.1"],
        app=APP_OF[kind],
        bind=f"unix:{sock}",
        wait=False,
    )
    assert wait_for(lambda: sock.exists(), 20), srv.log()

    def named_client() -> bytes:
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(workdir / f"client-{os.getpid()}-{time.monotonic_ns()}.sock"))
            s.settimeout(5)
            s.connect(str(sock))
            out = b""
            try:
                s.sendall(packet(good_env()))
                while chunk := s.recv(65536):
                    out += chunk
            except OSError:  # refused before the packet was read: what the 403 looks like here
                pass
            return out

    assert wait_for(lambda: status_of(named_client()) == 200, 20), srv.log()
    assert "Forbidden" not in srv.log()


def test_ipv4_mapped_peer_on_a_dual_stack_bind(server: Callable[..., Server]) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    port = free_port("::")
    srv = server(["--protocol", "uwsgi"], bind=f"[::]:{port}", wait=False)
    addr = ("127.0.0.1", port)
    assert wait_for(lambda: status_of(exchange(addr, packet(good_env()), timeout=2)) == 200, 20), (
        srv.log()
    )  # the peer is ::ffff:127.0.0.1, matching the 127.0.0.1 entry
    assert status_of(exchange(addr, packet(good_env()), source="127.0.0.2")) == 403


# ----------------------------------------------------------------------------- bad input

BAD_PACKETS = {
    "http_request": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 501, "looks like HTTP"),
    "garbage": (b"\x00\x05\x00\x00\xff\xff\xff\xff\xff", 400, "overruns"),
    "zero_length_block": (b"\x00\x00\x00\x00", 400, "zero-length vars block"),
    "bad_modifier": (b"\x11\x04\x00\x00abcd", 501, "modifier1 17"),
    "cr_in_value": (packet({"REQUEST_METHOD": "GET", "PATH_INFO": "/a\r\nb"}), 400, "CR"),
    "bad_method": (packet({"REQUEST_METHOD": "GE T", "PATH_INFO": "/"}), 400, "REQUEST_METHOD"),
}


@pytest.fixture(scope="module")
def one_uwsgi_worker() -> Iterator[Server]:
    """One sync worker on a uwsgi listener, shared by the bad-input tests: each sends its
    packets, then reads the log lines after its own mark."""
    with tempfile.TemporaryDirectory(prefix="monoceros-uwsgi-bad-") as tmp:
        args = ["app:app", "--chdir", str(APPS), "--protocol", "uwsgi", "--workers", "1"]
        srv = Server(args, Path(tmp), wait=False)
        try:
            addr = ("127.0.0.1", srv.port)
            assert wait_for(
                lambda: status_of(exchange(addr, packet(good_env()), timeout=2)) == 200, 20
            ), srv.log()
            yield srv
        finally:
            srv.kill()


@pytest.mark.parametrize("name", sorted(BAD_PACKETS))
def test_malformed_packet_then_a_good_request(one_uwsgi_worker: Server, name: str) -> None:
    srv = one_uwsgi_worker
    addr = ("127.0.0.1", srv.port)
    since = len(srv.log())
    data, status, reason = BAD_PACKETS[name]
    raw = exchange(addr, data)
    assert status_of(raw) == status, raw[:200]
    assert status_of(exchange(addr, packet(good_env()))) == 200
    assert wait_for(lambda: "[WARNING] Invalid uWSGI header:" in srv.log()[since:], 5)
    line = next(x for x in srv.log()[since:].splitlines() if "Invalid uWSGI header" in x)
    assert reason in line and line.endswith("from 127.0.0.1"), line
    assert "Traceback" not in srv.log() and "[ERROR]" not in srv.log()


def test_truncated_packet_is_reported(one_uwsgi_worker: Server) -> None:
    srv = one_uwsgi_worker
    addr = ("127.0.0.1", srv.port)
    since = len(srv.log())
    s = socket.create_connection(addr, timeout=5)
    s.sendall(packet(good_env())[:30])
    s.shutdown(socket.SHUT_WR)
    assert s.recv(100).startswith(b"HTTP/1.1 400")
    s.close()
    assert wait_for(lambda: "truncated" in srv.log()[since:], 5)
    assert status_of(exchange(addr, packet(good_env()))) == 200


def test_ping_gets_pong(server: Callable[..., Server]) -> None:
    srv = server(["--protocol", "uwsgi"], wait=False)
    addr = ("127.0.0.1", srv.port)
    assert wait_for(
        lambda: exchange(addr, b"\x64\x00\x00\x00", timeout=2) == b"\x64\x00\x00\x01", 20
    ), srv.log()


def test_clean_log_after_200_requests_through_nginx(stack: Stack) -> None:
    for _ in range(200):
        assert stack.get("/")[0] == 200
    time.sleep(0.3)  # an idle period on purpose: room for a late error (no event marks none)
    log = stack.srv.log()
    assert "[ERROR]" not in log and "Traceback" not in log and "[WARNING]" not in log, log
    assert "[error]" not in stack.ngx.error_log()


# ----------------------------------------------------------------------------- per-listener protocol


def test_one_instance_serves_uwsgi_and_http(server: Callable[..., Server]) -> None:
    up, hp = free_port(), free_port()
    srv = server(
        ["--bind", f"uwsgi://127.0.0.1:{up}", "--bind", f"http://127.0.0.1:{hp}"],
        bind=f"127.0.0.1:{hp}",
    )
    assert srv.get_ok("/") == b"Hello, World!"  # HTTP on hp
    assert status_of(exchange(("127.0.0.1", up), packet(good_env("/")))) == 200
    log = srv.log()
    assert f"Listening at: uwsgi://127.0.0.1:{up}" in log
    assert f"Listening at: http://127.0.0.1:{hp}" in log


# ----------------------------------------------------------------------------- other front ends


@pytest.fixture(params=WORKER_KINDS)
def apache_stack(
    request: pytest.FixtureRequest, server: Callable[..., Server], workdir: Path
) -> Iterator[tuple[Server, Apache]]:
    port = free_port()
    srv = server(
        [*kind_args(request.param), "--protocol", "uwsgi"],
        bind=f"127.0.0.1:{port}",
        wait=False,
        app=APP_OF[request.param],
    )
    assert wait_for(
        lambda: status_of(exchange(("127.0.0.1", port), packet(good_env()), timeout=2)) == 200, 20
    )
    apache = Apache(workdir, port)
    yield srv, apache
    apache.stop()


def _http(
    port: int, path: str, method: str = "GET", body: bytes | None = None
) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_apache_mod_proxy_uwsgi(apache_stack: tuple[Server, Apache]) -> None:
    srv, apache = apache_stack
    st, body = _http(apache.port, "/env?a=1")
    assert st == 200, (body, apache.error_log())
    seen = request_facts(body)
    assert seen["path"] == "/env" and seen["query"] == "a=1"
    st, body = _http(apache.port, "/myapp/env")
    seen = request_facts(body)
    assert (seen["script"], seen["path"]) == ("/myapp", "/env")
    payload = os.urandom(2 * MiB)
    st, body = _http(apache.port, "/echo", "POST", payload)
    assert json.loads(body)["sha256"] == hashlib.sha256(payload).hexdigest()
    st, body = _http(apache.port, "/stream?mib=4")
    assert st == 200 and len(body) == 4 * MiB
    assert "[ERROR]" not in srv.log()


@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_uwsgi_router(server: Callable[..., Server], workdir: Path, kind: str) -> None:
    port = free_port()
    srv = server(
        # header_timeout ends the wait for the chunked body the default router drops (below)
        [*kind_args(kind), "--protocol", "uwsgi", "--header-timeout", "0.5"],
        bind=f"127.0.0.1:{port}",
        wait=False,
        app=APP_OF[kind],
    )
    assert wait_for(
        lambda: status_of(exchange(("127.0.0.1", port), packet(good_env()), timeout=2)) == 200, 20
    )
    for extra in ((), ("--http-chunked-input",)):
        router = UwsgiRouter(workdir, f"127.0.0.1:{port}", extra)
        try:
            st, body = _http(router.port, "/env?q=1")
            assert st == 200 and request_facts(body)["query"] == "q=1"
            payload = os.urandom(100_000)
            st, body = _http(router.port, "/echo", "POST", payload)
            assert json.loads(body)["sha256"] == hashlib.sha256(payload).hexdigest()
        finally:
            router.stop()
    # the default router drops a chunked body but still says chunked: a clear 400, not a hang
    router = UwsgiRouter(workdir, f"127.0.0.1:{port}")
    try:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=30)
        conn.request(
            "POST",
            "/echo",
            body=iter([b"z" * 100]),
            encode_chunked=True,
            headers={"Transfer-Encoding": "chunked"},
        )
        t0 = time.monotonic()
        assert conn.getresponse().status == 400
        assert time.monotonic() - t0 < 8
        conn.close()
    finally:
        router.stop()
    assert wait_for(lambda: "--http-chunked-input" in srv.log(), 5), srv.log()
    # a chunked upload through --http-chunked-input arrives chunk-framed, and is de-chunked
    router = UwsgiRouter(workdir, f"127.0.0.1:{port}", ("--http-chunked-input",))
    try:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=30)
        parts = [b"x" * 5000, b"y" * 10]
        conn.request(
            "POST",
            "/echo",
            body=iter(parts),
            encode_chunked=True,
            headers={"Transfer-Encoding": "chunked"},
        )
        data = json.loads(conn.getresponse().read())
        conn.close()
        assert data["sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()
    finally:
        router.stop()
    assert "[ERROR]" not in srv.log()


SLOW_HOOK = """
import os
import time

def post_request(worker, req, environ, resp):
    if os.path.exists({slow!r}):  # slow once the server is up: no wait after the first request
        time.sleep(1.0)  # the slow hook is the scenario; the test orders events through the done file
    with open({done!r}, "a") as f:
        f.write("done\\n")
"""


@pytest.mark.parametrize("kind", WSGI_KINDS)  # post_request is a hook of the WSGI workers
@pytest.mark.parametrize("protocol", ["uwsgi", "http"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_response_ends_before_a_slow_post_request_hook(
    server: Callable[..., Server], workdir: Path, kind: str, protocol: str, method: str
) -> None:
    """A response that closes its connection ends (the client sees EOF) as soon as it is sent:
    the close comes before logging and hooks, and over TCP the last bytes leave with the FIN.
    A POST whose body the application read exactly to its Content-Length counts as done."""
    conf = workdir / "slow_hook.py"
    done = workdir / "hooks-done"
    slow = workdir / "hooks-slow"
    conf.write_text(SLOW_HOOK.format(done=str(done), slow=str(slow)))

    def hooks_done() -> int:
        return done.read_text().count("done") if done.exists() else 0

    srv = server(
        [
            "--worker-class",
            kind,
            "--workers",
            "1",
            "--protocol",
            protocol,
            "-c",
            str(conf),
            "--access-logfile",
            "-",
        ],
        wait=False,
    )
    body = os.urandom(4096) if method == "POST" else b""
    path = "/echo-exact" if body else "/pid"
    if protocol == "uwsgi":
        payload = packet(good_env(path, body, method), body)
    else:
        payload = (
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
    addr = ("127.0.0.1", srv.port)
    assert wait_for(lambda: status_of(exchange(addr, payload, timeout=2)) == 200, 20), srv.log()
    assert wait_for(lambda: hooks_done() >= 1, 10), srv.log()  # the worker is free again
    served = hooks_done()
    slow.touch()
    raw = exchange(addr, payload, timeout=10)  # returns at EOF
    # the order of events, not a stopwatch: EOF came while the hook was still sleeping
    assert hooks_done() == served, "the connection closed only after the hook"
    assert status_of(raw) == 200, raw
    assert body_of(raw) == body if body else body_of(raw).isdigit(), raw
    assert wait_for(lambda: hooks_done() == served + 1, 10), srv.log()
