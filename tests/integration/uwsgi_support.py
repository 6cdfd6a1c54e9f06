"""Helpers for the uWSGI integration tests: raw packets, the example configs, Apache, the router."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, free_port, missing, wait_for

EXAMPLES = REPO / "examples"
#: the WSGI worker kinds (they serve apps/app.py and run the request hooks)
WSGI_KINDS = ["sync", "gthread"]
#: the worker kinds every uWSGI front-end test runs on; later worker kinds add themselves here
WORKER_KINDS = [*WSGI_KINDS, "asgi"]
#: the test application each worker kind serves: the same routes, in WSGI and in ASGI
APP_OF = {"sync": "app:app", "gthread": "app:app", "asgi": "asgi_app:app"}


def packet(env: dict[str, str], body: bytes = b"", modifier1: int = 0) -> bytes:
    """A uWSGI request packet (vars as given, in order) followed by ``body``."""
    block = b"".join(
        len(k.encode("latin-1")).to_bytes(2, "little")
        + k.encode("latin-1")
        + len(v.encode("latin-1")).to_bytes(2, "little")
        + v.encode("latin-1")
        for k, v in env.items()
    )
    return bytes([modifier1]) + len(block).to_bytes(2, "little") + b"\x00" + block + body


def good_env(path: str = "/pid", body: bytes = b"", method: str = "GET") -> dict[str, str]:
    """The vars nginx would send for a simple request."""
    return {
        "REQUEST_METHOD": method,
        "REQUEST_URI": path,
        "PATH_INFO": path.split("?")[0],
        "QUERY_STRING": path.partition("?")[2],
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "10.9.8.7",
        "REMOTE_PORT": "4242",
        "HTTP_HOST": "test",
        "CONTENT_LENGTH": str(len(body)) if body else "",
        "CONTENT_TYPE": "",
    }


def exchange(
    addr: str | tuple[str, int], payload: bytes, source: str | None = None, timeout: float = 10.0
) -> bytes:
    """Send ``payload`` like a front end (no half-close) and read until the server closes."""
    if isinstance(addr, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if source:
            s.bind((source, 0))
    s.settimeout(timeout)
    chunks = []
    try:
        s.connect(addr)
        if payload:
            s.sendall(payload)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = s.recv(1 << 20)
            if not data:
                break
            chunks.append(data)
    except (
        ConnectionResetError,
        BrokenPipeError,
        ConnectionRefusedError,
        FileNotFoundError,
        TimeoutError,
    ):
        pass  # nothing (more) to read: the caller checks what arrived
    finally:
        s.close()
    return b"".join(chunks)


def request_facts(body: bytes) -> dict[str, str]:
    """What the app saw of a request, from its ``/env`` answer: the WSGI environ (apps/app.py)
    or the ASGI scope (apps/asgi_app.py), read into method, path (decoded), query, script (the
    mount prefix: SCRIPT_NAME or root_path) and the headers (lower-case names, repeated ones
    joined with ", ", cookies with "; ")."""
    data = json.loads(body)
    if "REQUEST_METHOD" in data:
        headers = {
            k[5:].lower().replace("_", "-"): v for k, v in data.items() if k.startswith("HTTP_")
        }
        return {
            "method": data["REQUEST_METHOD"],
            "path": data["PATH_INFO"],
            "query": data["QUERY_STRING"],
            "script": data["SCRIPT_NAME"],
            **headers,
        }
    joined: dict[str, str] = {}
    for name, value in data["headers"]:
        sep = "; " if name == "cookie" else ", "
        joined[name] = joined[name] + sep + value if name in joined else value
    path, root = data["path"], data["root_path"]
    assert path.startswith(root), data  # ASGI's path holds root_path, PATH_INFO does not
    path = path[len(root) :].encode("utf-8").decode("latin-1")  # as WSGI's latin-1 PATH_INFO
    return {
        "method": data["method"],
        "path": path,
        "query": data["query_string"],
        "script": root,
        **joined,
    }


def status_of(raw: bytes) -> int | None:
    """The status code of a raw HTTP/1.x response."""
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(m.group(1)) if m else None


def body_of(raw: bytes) -> bytes:
    """The bytes after the head of a raw response."""
    return raw.partition(b"\r\n\r\n")[2]


def example(name: str, replacements: dict[str, str]) -> str:
    """An example config from ``examples/`` with its placeholders replaced for the test."""
    text = (EXAMPLES / name).read_text()
    for old, new in replacements.items():
        assert old in text, f"{name} no longer contains {old!r}"
        text = text.replace(old, new)
    return text


def nginx_uwsgi_params() -> str:
    """The uwsgi_params file nginx ships (Debian's, which also sets HTTP_HOST)."""
    for candidate in ("/etc/nginx/uwsgi_params", "/usr/local/nginx/conf/uwsgi_params"):
        if os.path.exists(candidate):
            return candidate
    pytest.fail("nginx's uwsgi_params file was not found")


def find_apache() -> tuple[str, str]:
    """(apache2 binary, modules dir); fails under CI when missing, skips elsewhere."""
    exe = (
        shutil.which("apache2")
        or shutil.which("httpd")
        or ("/usr/sbin/apache2" if os.path.exists("/usr/sbin/apache2") else None)
    )
    for mods in ("/usr/lib/apache2/modules", "/usr/lib64/httpd/modules", "/usr/lib/httpd/modules"):
        if exe and os.path.exists(os.path.join(mods, "mod_proxy_uwsgi.so")):
            return exe, mods
    missing(
        "Apache with mod_proxy_uwsgi is required under CI (scripts/test installs it)",
        "Apache with mod_proxy_uwsgi is not installed",
    )


class Apache:
    """Apache httpd in the foreground, own process group, serving the example vhost."""

    def __init__(self, workdir: Path, upstream_port: int) -> None:
        exe, mods = find_apache()
        self.dir = workdir / f"apache-{time.monotonic_ns()}"
        (self.dir / "logs").mkdir(parents=True)
        self.port = free_port()
        vhost = example(
            "apache/mod-proxy-uwsgi.conf",
            {
                "<VirtualHost *:80>": f"<VirtualHost 127.0.0.1:{self.port}>",
                "127.0.0.1:8000": f"127.0.0.1:{upstream_port}",
            },
        )
        user = ""
        if os.geteuid() == 0:
            user = (
                "User nobody\nGroup nogroup" if _group("nogroup") else "User nobody\nGroup nobody"
            )
        conf = f"""
ServerRoot {self.dir}
DefaultRuntimeDir {self.dir}
PidFile {self.dir}/httpd.pid
ErrorLog {self.dir}/logs/error.log
LogLevel warn
Listen 127.0.0.1:{self.port}
ServerName test.example
LoadModule mpm_event_module {mods}/mod_mpm_event.so
LoadModule authz_core_module {mods}/mod_authz_core.so
LoadModule env_module {mods}/mod_env.so
LoadModule proxy_module {mods}/mod_proxy.so
LoadModule proxy_uwsgi_module {mods}/mod_proxy_uwsgi.so
{user}
Timeout 10
{vhost}
"""
        (self.dir / "httpd.conf").write_text(conf)
        self._err = open(self.dir / "logs" / "stderr", "wb")
        self.proc = subprocess.Popen(
            [exe, "-f", str(self.dir / "httpd.conf"), "-DFOREGROUND"],
            stdout=subprocess.DEVNULL,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert wait_for(lambda: _listening(self.port, self.proc), 15), self.error_log()

    def error_log(self) -> str:
        return "".join(
            (self.dir / "logs" / n).read_text(errors="replace")
            for n in ("error.log", "stderr")
            if (self.dir / "logs" / n).exists()
        )

    def stop(self) -> None:
        _stop_group(self.proc, signal.SIGTERM)
        self._err.close()


def find_uwsgi() -> str:
    """The uwsgi binary (installed into the test virtualenv by the test extras)."""
    for candidate in (str(Path(sys.executable).parent / "uwsgi"), shutil.which("uwsgi")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    missing(
        "the uwsgi binary is required under CI (pip install '.[test]' installs it)",
        "the uwsgi binary (uWSGI HTTP router) is not installed",
    )


class UwsgiRouter:
    """``uwsgi --http 127.0.0.1:P --http-to UPSTREAM``: the uWSGI server's HTTP router."""

    def __init__(self, workdir: Path, upstream: str, extra: tuple[str, ...] = ()) -> None:
        exe = find_uwsgi()
        self.port = free_port()
        self.log_path = workdir / f"router-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        cmd = [
            exe,
            "--http",
            f"127.0.0.1:{self.port}",
            "--http-to",
            upstream,
            "--master",
            "--die-on-term",
            "--disable-logging",
            "--http-timeout",
            "10",
            *extra,
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(workdir),
            start_new_session=True,
        )
        assert wait_for(lambda: _listening(self.port, self.proc), 15), self.log_path.read_text()

    def stop(self) -> None:
        _stop_group(self.proc, signal.SIGINT)
        self._log.close()


def _group(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def _listening(port: int, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"front end exited with {proc.returncode}")
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _stop_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)
