"""Zero-downtime operations under load: steady traffic through real nginx while the master gets
several HUPs and one USR2 upgrade (then WINCH and QUIT for the old master). No request may fail,
and the workers left at the end must run the code deployed last."""

from __future__ import annotations

import http.client
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Nginx, Server, children_of, exited, wait_for
from load_support import Load
from uwsgi_support import nginx_uwsgi_params

KIND_ARGS = {
    "sync": ["--worker-class", "sync"],
    "gthread": ["--worker-class", "gthread", "--threads", "4"],
    "asgi": ["--worker-class", "asgi"],
}
KIND_APPS = {"sync": "app:app", "gthread": "app:app", "asgi": "asgi_app:app"}


def deploy(conf: Path, version: str, workers: int) -> None:
    """What a deployment changes: here the configuration and the code version it sets."""
    conf.write_text(f"workers = {workers}\nraw_env = ['APP_VERSION={version}']\n")


@pytest.mark.parametrize("kind", sorted(KIND_ARGS))
def test_hups_and_a_usr2_upgrade_under_load_fail_no_request(
    server: Callable[..., Server], nginx: Callable[..., Nginx], workdir: Path, kind: str
) -> None:
    conf = workdir / "soak.conf.py"
    deploy(conf, "v1", 2)
    sock = workdir / "soak.sock"
    pidfile = workdir / "soak.pid"
    srv = server(
        ["-c", str(conf), "--pid", str(pidfile), "--protocol", "uwsgi", *KIND_ARGS[kind]],
        app=KIND_APPS[kind],
        bind=f"unix:{sock}",
        wait=False,
    )
    ngx = nginx(
        f"location / {{ include {nginx_uwsgi_params()}; uwsgi_pass backend; }}", f"unix:{sock}"
    )
    assert wait_for(lambda: _version(ngx.port) == b"v1", 20), srv.log()
    load = Load(ngx.port)
    new_master = 0
    try:
        for n, version in enumerate(("v2", "v3", "v4"), start=2):
            assert load.served_more(30, 20), srv.log()  # each generation serves some load
            deploy(conf, version, 2 + n % 2)
            srv.signal(signal.SIGHUP)
        assert wait_for(lambda: _version(ngx.port) == b"v4", 20), srv.log()
        assert load.served_more(30, 20), srv.log()
        old_master = srv.pid
        deploy(conf, "v5", 2)
        srv.signal(signal.SIGUSR2)
        assert wait_for(lambda: _pid_in(pidfile) not in (0, old_master), 20), srv.log()
        new_master = _pid_in(pidfile)
        assert wait_for(lambda: len(children_of(new_master)) == 2, 20), srv.log()
        srv.signal(signal.SIGWINCH)
        assert wait_for(lambda: children_of(old_master) == [new_master], 20), srv.log()
        srv.signal(signal.SIGQUIT)
        assert srv.wait_exit(20) == 0
        assert load.served_more(30, 20), srv.log()  # the new master alone
    finally:
        load.stop()
    try:
        assert load.errors == [], load.errors[:5]
        assert load.count > 100
        assert load.versions[-1] == b"v5" and b"v1" in load.versions, load.versions
        assert _version(ngx.port) == b"v5"
        assert "[error]" not in ngx.error_log(), ngx.error_log()
    finally:
        if new_master:  # the fixture stops the process group too; stop it cleanly first
            os.kill(new_master, signal.SIGTERM)
            assert wait_for(lambda: exited(new_master), 20)


def _pid_in(path: Path) -> int:
    """The pid a pidfile names, or 0 while it is absent (the old master renames it away first)."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return 0
    return int(text) if text.isdigit() else 0


def _version(port: int) -> bytes | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/version")
        resp = conn.getresponse()
        return resp.read() if resp.status == 200 else None
    except OSError:
        return None
    finally:
        conn.close()
