"""Listeners the way deployments use them: IPv6, fd://, systemd activation, and nginx proxy_pass."""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import (
    APPS,
    MONOCEROS,
    Nginx,
    Server,
    free_port,
    listen_queue,
    read_response,
    wait_for,
)


def http_get(sock_factory: Callable[[], socket.socket], path: str = "/pid") -> bytes:
    with sock_factory() as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        st, _, body = read_response(s)
    assert st == 200
    return body


def test_ipv6_listener(server: Callable[..., Server]) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    port = free_port("::1")
    srv = server(bind=f"[::1]:{port}", wait=False)

    def conn() -> socket.socket:
        return socket.create_connection(("::1", port), timeout=5)

    assert wait_for(lambda: _try(lambda: http_get(conn)), 15), srv.log()
    assert json.loads(http_get(conn, "/env"))["REMOTE_ADDR"] == "::1"


def _try(fn: Callable[[], object]) -> bool:
    try:
        fn()
        return True
    except OSError:
        return False


def _spawn_with_socket(
    sock: socket.socket, args: list[str], env: dict[str, str], workdir: Path, systemd: bool
) -> subprocess.Popen[bytes]:
    fd = sock.fileno()
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **env)
    log = open(workdir / "server.log", "wb")
    if systemd:
        # systemd passes the sockets from fd 3 and names the pid that may use them
        cmd = ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"', MONOCEROS, *args]
        return subprocess.Popen(
            cmd,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(3,),
            preexec_fn=lambda: os.dup2(fd, 3),
            start_new_session=True,
            cwd=str(workdir),
        )
    return subprocess.Popen(
        [MONOCEROS, *args, "--bind", f"fd://{fd}"],
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        pass_fds=(fd,),
        start_new_session=True,
        cwd=str(workdir),
    )


@pytest.mark.parametrize("systemd", [False, True], ids=["fd", "systemd"])
def test_inherited_socket(workdir: Path, systemd: bool) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    proc = _spawn_with_socket(sock, ["app:app", "--chdir", str(APPS)], {}, workdir, systemd)
    sock.close()
    try:

        def conn() -> socket.socket:
            return socket.create_connection(("127.0.0.1", port), timeout=5)

        assert wait_for(lambda: _try(lambda: http_get(conn)), 15), (
            workdir / "server.log"
        ).read_text()
        assert http_get(conn, "/").startswith(b"Hello")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(15) == 0


def test_behind_nginx_proxy_pass(
    server: Callable[..., Server], nginx: Callable[..., Nginx]
) -> None:
    srv = server(["--workers", "2"])
    ngx = nginx(
        """
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-Proto https;
        }
        location /nobuf/ {
            proxy_pass http://backend/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
            proxy_buffering off;
        }""",
        srv.bind,
    )
    for _ in range(20):
        st, _, body = ngx.request("/")
        assert (st, body) == (200, b"Hello, World!")
    env = json.loads(ngx.request("/env?q=1")[2])
    assert env["wsgi.url_scheme"] == "https"  # nginx on 127.0.0.1 is a trusted proxy
    assert env["QUERY_STRING"] == "q=1" and env["SERVER_NAME"] == "127.0.0.1"  # $host
    payload = os.urandom(3 * 1024 * 1024)
    for path in ("/echo", "/nobuf/echo"):
        st, _, body = ngx.request(path, "POST", payload)
        assert st == 200 and json.loads(body)["sha256"] == hashlib.sha256(payload).hexdigest()
    chunks = [os.urandom(70_000), os.urandom(10)]
    st, _, body = ngx.request(
        "/nobuf/echo",
        "POST",
        iter(chunks),  # type: ignore[arg-type]
        headers={"Transfer-Encoding": "chunked"},
        encode_chunked=True,
    )
    assert st == 200 and json.loads(body)["len"] == 70_010
    st, _, body = ngx.request("/stream?mib=16")
    assert st == 200 and len(body) == 16 * 1024 * 1024
    assert "[ERROR]" not in srv.log()
    assert "[error]" not in ngx.error_log() and "[crit]" not in ngx.error_log()


def test_user_and_group_drop_privileges(server: Callable[..., Server]) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch users")
    group = "nogroup" if _has_group("nogroup") else "nobody"
    # --preload: the interpreter may live where 'nobody' cannot read; import as root first
    srv = server(["--user", "nobody", "--group", group, "--preload"])
    pid = int(srv.get_ok("/pid"))
    with open(f"/proc/{pid}/status") as f:
        uid_line = next(line for line in f if line.startswith("Uid:"))
    import pwd

    assert int(uid_line.split()[1]) == pwd.getpwnam("nobody").pw_uid


def _has_group(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def test_capture_output_sends_print_to_the_error_log(
    server: Callable[..., Server], workdir: Path
) -> None:
    errlog = workdir / "error.log"
    srv = server(["--capture-output", "--error-logfile", str(errlog)])
    srv.get_ok("/print")
    assert wait_for(lambda: "printed by the app" in errlog.read_text(), 5)


@pytest.mark.parametrize("defer", [None, "0"])
def test_defer_accept_keeps_a_silent_client_off_the_worker(
    server: Callable[..., Server], defer: str | None
) -> None:
    """With TCP_DEFER_ACCEPT (the default) a client that connects and says nothing never reaches
    the only sync worker before the next real request; with ``--defer-accept 0`` the worker
    takes it first and the real request waits for its header_timeout."""
    args = ["--workers", "1", "--header-timeout", "1.5"]
    if defer is not None:
        args += ["--defer-accept", defer]
    srv = server(args)
    idle = srv.connect()
    try:
        if defer is not None:  # the worker takes it from the queue, before the real request
            assert wait_for(lambda: listen_queue(srv.port) == 0, 10)
        t0 = time.monotonic()
        assert srv.get_ok("/", timeout=10) == b"Hello, World!"
        took = time.monotonic() - t0
        # the order of events, not a stopwatch: was the silent client already dropped (by the
        # worker's header_timeout) when the real request got its answer?
        dropped = bool(select.select([idle], [], [], 0)[0]) and idle.recv(1) == b""
    finally:
        idle.close()
    if defer is None:
        assert not dropped  # the worker never held it: the real request did not wait
    else:
        assert dropped and took > 1.0, took


def test_defer_accept_is_set_on_tcp_listeners_only(tmp_path: Path) -> None:
    from monoceros.listeners import bind_all

    listeners = bind_all(["127.0.0.1:0", f"unix:{tmp_path / 's.sock'}"], "http", defer_accept=1)
    plain = bind_all(["127.0.0.1:0"], "http", defer_accept=0)
    try:
        tcp = listeners[0].sock
        assert tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) > 0
        assert plain[0].sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) == 0
    finally:
        for listener in listeners + plain:
            listener.close(unlink=True)


def test_accepted_connections_inherit_nodelay_from_the_listener() -> None:
    """The asgi worker sets TCP_NODELAY per connection only on listeners without it: the ones
    monoceros binds have it, and accepted sockets inherit it."""
    from monoceros.listeners import bind_all

    listener = bind_all(["127.0.0.1:0"], "http")[0]
    try:
        with socket.create_connection(listener.sock.getsockname(), timeout=5):
            conn, _ = listener.sock.accept()
            with conn:
                assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        listener.close()


def _as_unprivileged_owner(cmd: list[str]) -> list[str]:
    """Run ``cmd`` so file permissions apply to it: as root, without the capabilities that
    bypass them (root owns the test directories, so their owner bits then decide)."""
    if os.geteuid() != 0:
        return cmd
    drop = "-dac_override,-dac_read_search,-fowner"
    return ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", *cmd]


def _bind_fails(workdir: Path, address: str) -> str:
    cmd = _as_unprivileged_owner([MONOCEROS, "app:app", "--chdir", str(APPS), "--bind", address])
    env = {k: v for k, v in os.environ.items() if k != "MONOCEROS_CMD_ARGS"}
    r = subprocess.run(
        cmd,
        cwd=str(workdir),
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "Traceback" not in out, out
    return out


def _stale_socket(path: Path) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # the file stays, nobody listens: what a crashed server leaves


@pytest.mark.parametrize("case", ["unsearchable", "parent-is-a-file", "stale-not-removable"])
def test_unix_bind_errors_are_one_line(workdir: Path, case: str) -> None:
    """Each of these was a traceback from listeners.py instead of a `bind:` line."""
    locked = workdir / "locked"
    locked.mkdir()
    if case == "unsearchable":
        locked.chmod(0)
        address, reason = f"unix:{locked}/app.sock", "Permission denied"
    elif case == "parent-is-a-file":
        (workdir / "file").write_text("")
        address, reason = f"unix:{workdir}/file/app.sock", "Not a directory"
    else:
        _stale_socket(locked / "app.sock")
        locked.chmod(0o555)
        address = f"unix:{locked}/app.sock"
        reason = "cannot remove the stale socket file: Permission denied"
    try:
        out = _bind_fails(workdir, address)
    finally:
        locked.chmod(0o755)
    assert f"bind: {address}: {reason}" in out, out
