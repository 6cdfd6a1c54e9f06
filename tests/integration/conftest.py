"""Fixtures that run the real ``monoceros`` command and a real nginx, on loopback only.

Every process is started in its own process group and stopped by that group; every wait is
bounded. Tests that need nginx fail (not skip) when the CI variable is set.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

APPS = Path(__file__).resolve().parent / "apps"
REPO = Path(__file__).resolve().parents[2]
MONOCEROS = str(Path(sys.executable).parent / "monoceros")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def sockets_of(pid: int) -> int:
    """How many sockets process ``pid`` holds open."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


def wait_for(pred: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``pred`` until it is true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (read from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return sorted(out)


def exited(pid: int) -> bool:
    """Whether process ``pid`` has exited: gone, or a zombie that its parent has not reaped yet
    (an orphan, such as a master started by USR2 whose parent left, is reaped by PID 1 or a
    subreaper when that gets to it: up to seconds later on some machines)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class Server:
    """One ``monoceros`` process group; output goes to a log file."""

    def __init__(
        self,
        args: list[str],
        workdir: Path,
        env: dict[str, str] | None = None,
        wait: bool = True,
        bind: str | None = None,
        bind_arg: bool = True,
        program: list[str] | None = None,
        client_tls: ssl.SSLContext | None = None,
    ) -> None:
        """``bind`` is where the tests connect; ``bind_arg=False`` leaves it to a config file;
        ``program`` replaces the ``monoceros`` script (``[python, "-m", "monoceros"]``);
        ``client_tls``: connect with TLS, with this client context (server name localhost)."""
        self.workdir = workdir
        self.client_tls = client_tls
        self.bind = bind or f"127.0.0.1:{free_port()}"
        self.log_path = workdir / f"server-{time.monotonic_ns()}.log"
        self.cmd = [*(program or [MONOCEROS]), *args]
        if bind_arg and "--bind" not in args and "-b" not in args:
            self.cmd += ["--bind", self.bind]
        full_env = dict(os.environ, PYTHONUNBUFFERED="1")
        full_env.pop("MONOCEROS_CMD_ARGS", None)
        full_env.pop("GUNICORN_CMD_ARGS", None)
        full_env.pop("WEB_CONCURRENCY", None)
        if env:
            full_env.update(env)
        self._logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=self._logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(workdir),
            env=full_env,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.stop()  # the fixture never sees a server that failed to start: no leftovers
                raise

    @property
    def port(self) -> int:
        return int(self.bind.rsplit(":", 1)[1])

    @property
    def unix_path(self) -> str | None:
        return self.bind[5:] if self.bind.startswith("unix:") else None

    def log(self) -> str:
        self._logf.flush()
        return self.log_path.read_text(errors="replace")

    def connect(self, timeout: float = 10.0) -> socket.socket:
        if self.unix_path:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.connect(self.unix_path)
        else:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        if self.client_tls is not None:
            return self.client_tls.wrap_socket(s, server_hostname="localhost")
        return s

    def request(
        self,
        path: str = "/",
        method: str = "GET",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request on a new connection: (status, lower-case headers, body)."""
        raw = f"{method} {path} HTTP/1.1\r\nHost: test\r\n".encode()
        for k, v in (headers or {}).items():
            raw += f"{k}: {v}\r\n".encode()
        if body is not None:
            raw += f"Content-Length: {len(body)}\r\n".encode()
        raw += b"\r\n" + (body or b"")
        with self.connect(timeout) as s:
            s.sendall(raw)
            return read_response(s, method)

    def get_ok(self, path: str = "/pid", timeout: float = 10.0) -> bytes:
        st, _, body = self.request(path, timeout=timeout)
        assert st == 200, (st, body)
        return body

    def wait_ready(self, timeout: float = 20.0) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                return self.request("/pid", timeout=2)[0] == 200
            except OSError:
                return False

        if not wait_for(up, timeout, 0.1):
            raise AssertionError(f"server did not become ready:\n{self.log()}")

    def workers(self) -> list[int]:
        return children_of(self.pid)

    def wait_workers(self, n: int, timeout: float = 15.0) -> list[int]:
        assert wait_for(lambda: len(self.workers()) == n, timeout), (self.workers(), self.log())
        return self.workers()

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """Stop the server fast (INT): a graceful stop (TERM) lets an idle sync worker notice
        at its accept timeout, a quarter of a second per test; the graceful path has tests of
        its own (test_signals.py, test_soak.py, ...)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGINT)
                self.proc.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)  # leftovers of this group only
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(5)
        self._logf.close()

    def kill(self) -> None:
        """End the process group at once (KILL): the fixtures' teardown, where how the server
        stops is not under test (INT, TERM and QUIT have tests of their own); a graceful or
        fast stop costs 0.05-0.1 s a server, the suite starts hundreds."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(5)
        self._logf.close()


def slow_target(srv: Server, seconds: float) -> tuple[str, Path]:
    """A ``/slow`` request target that creates a marker file once the application has the
    request, and that file (wait for it with :func:`wait_started` instead of sleeping)."""
    mark = srv.workdir / f"started-{time.monotonic_ns()}"
    return f"/slow?s={seconds}&started={mark}", mark


def wait_started(mark: Path, timeout: float = 15.0) -> None:
    """Wait until the request of :func:`slow_target` reached the application."""
    assert wait_for(mark.exists, timeout), f"the request never reached the application ({mark})"


def listen_queue(port: int) -> int:
    """Connections waiting to be accepted on the TCP listener 127.0.0.1:PORT (Linux)."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[3] == "0A":  # LISTEN: rx_queue is the backlog
                return int(fields[4].split(":")[1], 16)
    return 0


def listening(port: int) -> bool:
    """Whether something listens on the TCP port 127.0.0.1:PORT (Linux)."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        return any(
            fields[1] == local and fields[3] == "0A"
            for fields in (line.split() for line in f.readlines()[1:])
        )


def term_with_queued(
    srv: Server, slow: Callable[[str], object], queued: Callable[[], object], count: int = 4
) -> list[object]:
    """Run ``slow(target)`` (``target`` is a ``/slow?s=1`` that marks its start; it takes the
    only worker or connection slot), then ``count`` calls of ``queued``, wait until they sit in
    the listen queue, then send TERM; return what every call returned (or raised), ``slow``'s
    first."""
    results: list[list[object]] = [[] for _ in range(count + 1)]

    def run(fn: Callable[[], object], out: list[object]) -> None:
        try:
            out.append(fn())
        except Exception as exc:  # recorded for the caller's assertion
            out.append(exc)

    target, mark = slow_target(srv, 1)
    threads = [threading.Thread(target=run, args=(lambda: slow(target), results[0]), daemon=True)]
    threads[0].start()
    wait_started(mark)  # the slot is taken: the next connections wait in the queue
    for i in range(count):
        threads.append(threading.Thread(target=run, args=(queued, results[i + 1]), daemon=True))
        threads[-1].start()
    assert wait_for(lambda: listen_queue(srv.port) >= count, 15), listen_queue(srv.port)
    srv.signal(signal.SIGTERM)
    for t in threads:
        t.join(20)
    return [out[0] if out else None for out in results]


@contextlib.contextmanager
def module_server(args: list[str], prefix: str) -> Iterator[Server]:
    """A one-worker server of the test apps shared by a module's tests, stopped at the end."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        srv = Server([*args, "--chdir", str(APPS), "--workers", "1"], Path(tmp))
        try:
            yield srv
        finally:
            srv.kill()


def send_known_mix(srv: Server, ok: int = 5, no_host: int = 2) -> None:
    """``ok`` requests answered 200 by the application, then ``no_host`` HTTP/1.1 requests
    without Host, answered 400 by the server: a mix whose counts a test can check."""
    for _ in range(ok):
        srv.get_ok("/pid")
    for _ in range(no_host):
        with srv.connect() as s:
            s.sendall(b"GET /pid HTTP/1.1\r\n\r\n")
            assert read_response(s)[0] == 400


def read_response(sock: socket.socket, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response (Content-Length, chunked or close-delimited)."""
    resp = http.client.HTTPResponse(sock, method=method)
    resp.begin()
    body = resp.read()
    headers: dict[str, str] = {}
    for k, v in resp.getheaders():
        k = k.lower()
        headers[k] = headers[k] + ", " + v if k in headers else v
    return resp.status, headers, body


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="monoceros-it-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def server(workdir: Path) -> Iterator[Callable[..., Server]]:
    """``server(args, env=None, wait=True, bind=None)`` starts ``monoceros`` with the test apps."""
    started: list[Server] = []

    def start(args: list[str] | None = None, app: str = "app:app", **kw: object) -> Server:
        argv = [app, "--chdir", str(APPS), *(args or [])] if app else list(args or [])
        srv = Server(argv, workdir, **kw)  # type: ignore[arg-type]
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.kill()


def run_cli(
    args: list[str], cwd: Path, timeout: float = 30.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``monoceros ARGS`` to completion (for commands that exit by themselves)."""
    full_env = dict(os.environ)
    full_env.pop("MONOCEROS_CMD_ARGS", None)
    full_env.pop("GUNICORN_CMD_ARGS", None)
    if env:
        full_env.update(env)
    return subprocess.run(
        [MONOCEROS, *args],
        cwd=str(cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=full_env,
        start_new_session=True,
    )


def missing(under_ci: str, elsewhere: str) -> NoReturn:
    """A tool the tests drive is not installed: fail under CI (which installs every one of
    them), skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(under_ci)
    pytest.skip(elsewhere)


def find_nginx() -> str:
    """The nginx binary; missing nginx fails under CI and skips elsewhere."""
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx", "/usr/local/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    missing("nginx is required under CI (scripts/test installs it)", "nginx is not installed")


class Nginx:
    """A private nginx (one worker, foreground, own process group) with a generated config."""

    def __init__(
        self,
        locations: str,
        workdir: Path,
        upstream: str,
        http_block: str | None = None,
        port: int | None = None,
    ) -> None:
        """Serve ``locations`` in front of ``upstream``, or a whole ``http_block`` as given
        (an example config whose ``listen`` already names ``port``)."""
        exe = find_nginx()
        self.dir = workdir / f"nginx-{time.monotonic_ns()}"
        for sub in ("logs", "tmp"):
            (self.dir / sub).mkdir(parents=True)
        self.port = port or free_port()
        servers = (
            http_block
            or f"""
    upstream backend {{ server {upstream}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{self.port};
        server_name test.example;
        {locations}
    }}"""
        )
        user = "user root;" if os.geteuid() == 0 else ""
        conf = f"""
{user}
worker_processes 1;
daemon off;
error_log {self.dir}/logs/error.log warn;
pid {self.dir}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {self.dir}/tmp/cb;
    proxy_temp_path {self.dir}/tmp/px;
    uwsgi_temp_path {self.dir}/tmp/uw;
    fastcgi_temp_path {self.dir}/tmp/fc;
    scgi_temp_path {self.dir}/tmp/sc;
    client_max_body_size 64m;
    {servers}
}}
"""
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(conf)
        self._err = open(self.dir / "logs" / "stderr", "wb")
        self.proc = subprocess.Popen(
            [exe, "-p", str(self.dir), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited: {self.error_log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        assert wait_for(up, 15), self.error_log()

    def error_log(self) -> str:
        out = ""
        for name in ("error.log", "stderr"):
            p = self.dir / "logs" / name
            if p.exists():
                out += p.read_text(errors="replace")
        return out

    def request(
        self,
        path: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
        encode_chunked: bool = False,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(
                method, path, body=body, headers=headers or {}, encode_chunked=encode_chunked
            )
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGQUIT)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._err.close()


@pytest.fixture
def nginx(workdir: Path) -> Iterator[Callable[..., Nginx]]:
    """``nginx(locations, upstream[, http_block, port])`` starts nginx in front of ``upstream``."""
    started: list[Nginx] = []

    def start(
        locations: str, upstream: str, http_block: str | None = None, port: int | None = None
    ) -> Nginx:
        ngx = Nginx(locations, workdir, upstream, http_block, port)
        started.append(ngx)
        return ngx

    yield start
    for ngx in started:
        ngx.stop()


def find_haproxy() -> str:
    """The haproxy binary; missing haproxy fails under CI and skips elsewhere."""
    for candidate in (shutil.which("haproxy"), "/usr/sbin/haproxy", "/usr/local/sbin/haproxy"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    missing("haproxy is required under CI (scripts/test installs it)", "haproxy is not installed")


class Haproxy:
    """A private HAProxy (foreground, own process group) relaying TCP to ``servers``.

    One frontend per ``(name, server_line)``: it listens on a free loopback port (``ports[name]``)
    and passes every connection to the server line, e.g. ``127.0.0.1:8000 send-proxy-v2``.
    """

    def __init__(self, servers: dict[str, str], workdir: Path, mode: str = "tcp") -> None:
        exe = find_haproxy()
        self.dir = workdir / f"haproxy-{time.monotonic_ns()}"
        self.dir.mkdir(parents=True)
        self.ports = {name: free_port() for name in servers}
        blocks = "".join(
            f"""
frontend fe_{name}
    bind 127.0.0.1:{self.ports[name]}
    default_backend be_{name}
backend be_{name}
    server s_{name} {line}
"""
            for name, line in servers.items()
        )
        conf = f"""
global
    maxconn 256
defaults
    mode {mode}
    timeout connect 5s
    timeout client 30s
    timeout server 30s
{blocks}"""
        self.conf = self.dir / "haproxy.cfg"
        self.conf.write_text(conf)
        self._out = open(self.dir / "output", "wb")
        self.proc = subprocess.Popen(
            [exe, "-db", "-f", str(self.conf)],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

        def up() -> bool:  # listening: seen without a connection, which HAProxy would relay
            if self.proc.poll() is not None:
                raise AssertionError(f"haproxy exited: {self.output()}")
            return all(listening(port) for port in self.ports.values())

        assert wait_for(up, 15), self.output()

    def output(self) -> str:
        self._out.flush()
        return (self.dir / "output").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._out.close()


@pytest.fixture
def haproxy(workdir: Path) -> Iterator[Callable[..., Haproxy]]:
    """``haproxy({name: server_line}, mode="tcp")`` starts HAProxy with one frontend each."""
    started: list[Haproxy] = []

    def start(servers: dict[str, str], mode: str = "tcp") -> Haproxy:
        proxy = Haproxy(servers, workdir, mode)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
