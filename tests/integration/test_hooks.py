"""Server hooks that use the ``server`` and ``worker`` objects, as gunicorn config files do.

Every worker kind boots and serves with a gunicorn.conf.py carrying the usual template hooks,
and the log shows the values they read; ``--check-config`` reports a hook reading an attribute
monoceros lacks; a hook that raises is logged with its traceback and stops the server only where
gunicorn's stops.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import APPS, Server, free_port, run_cli, wait_for

TEMPLATE_HOOKS = """
import time

bind = "127.0.0.1:{port}"
workers = 1
proc_name = "hooked"
timeout = 40

def when_ready(server):
    server.log.info("Listening on: %s", server.address)
    server.log.info("listeners: %s", ",".join(str(lnr) for lnr in server.LISTENERS))
    server.log.info("when_ready workers=%s timeout=%s master_pid=%s proc_name=%s pid_ok=%s",
                    len(server.WORKERS), server.timeout, server.master_pid, server.proc_name,
                    server.pid > 0)

def pre_fork(server, worker):
    server.log.info("pre_fork pid=%s age=%s", worker.pid, worker.age)

def post_fork(server, worker):
    server.log.info("post_fork proc_name=%s pid=%s", server.proc_name, worker.pid)

def post_worker_init(worker):
    worker.tmp.notify()
    fresh = 0 < time.monotonic() - worker.tmp.last_update() < 5
    worker.log.info("post_worker_init pid=%s timeout=%s fresh=%s sockets=%s aborted=%s app=%s",
                    worker.pid, worker.timeout, fresh, ",".join(map(str, worker.sockets)),
                    worker.aborted, callable(worker.wsgi))

def worker_int(worker):
    worker.log.info("worker_int pid=%s", worker.pid)

def worker_exit(server, worker):
    server.log.info("worker_exit pid=%s nr=%s", worker.pid, worker.nr)

def child_exit(server, worker):
    server.log.info("child_exit pid=%s aborted=%s workers=%s", worker.pid, worker.aborted,
                    sorted(server.WORKERS))

def on_exit(server):
    server.log.info("on_exit %s", server.master_name)
"""

KINDS = [("sync", "app:app"), ("gthread", "app:app"), ("asgi", "asgi_app:app")]


def _start(
    server: Callable[..., Server],
    workdir: Path,
    conf_text: str,
    args: list[str],
    app: str = "app:app",
    wait: bool = True,
) -> Server:
    port = free_port()
    conf = workdir / "gunicorn.conf.py"
    conf.write_text(conf_text.format(port=port))
    return server(["-c", str(conf), *args], app=app, bind=f"127.0.0.1:{port}", wait=wait)


@pytest.mark.parametrize(("kind", "app"), KINDS, ids=[k for k, _ in KINDS])
def test_template_hooks_read_gunicorn_attributes(
    server: Callable[..., Server], workdir: Path, kind: str, app: str
) -> None:
    srv = _start(server, workdir, TEMPLATE_HOOKS, ["-k", kind], app)
    [pid] = srv.wait_workers(1)
    for _ in range(3):
        srv.get_ok("/pid")
    assert wait_for(lambda: f"post_worker_init pid={pid}" in srv.log(), 10), srv.log()
    os.kill(pid, signal.SIGQUIT)  # a fast stop of this worker: worker_int, worker_exit, child_exit
    assert wait_for(lambda: f"child_exit pid={pid}" in srv.log(), 15), srv.log()
    srv.wait_workers(1)  # the master forks a replacement (age 2)
    assert wait_for(lambda: "pre_fork pid=[booting] age=2" in srv.log(), 15), srv.log()
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(20) == 0, srv.log()
    log = srv.log()
    port = srv.port
    for line in (
        f"Listening on: [('127.0.0.1', {port})]",
        f"listeners: http://127.0.0.1:{port}",
        "when_ready workers=0 timeout=40 master_pid=0 proc_name=hooked pid_ok=True",
        "pre_fork pid=[booting] age=1",
        f"post_fork proc_name=hooked pid={pid}",
        f"post_worker_init pid={pid} timeout=20.0 fresh=True sockets=http://127.0.0.1:{port} "
        "aborted=False app=True",
        f"worker_int pid={pid}",
        f"child_exit pid={pid} aborted=False workers=[]",
        "on_exit Master",
    ):
        assert line in log, (line, log.splitlines())
    served = re.search(rf"worker_exit pid={pid} nr=(\d+)", log)
    assert served and int(served.group(1)) >= 4, log  # the readiness probe and our three
    assert "Traceback" not in log and "Exception in" not in log, log


def test_check_config_names_a_missing_attribute(workdir: Path) -> None:
    conf = workdir / "gunicorn.conf.py"
    conf.write_text(
        "def when_ready(server):\n"
        "    server.log.info('Listening on: %s', server.address)\n"
        "    server.log.info('%s', server.no_such_thing)\n"
        "def post_fork(server, worker):\n"
        "    server.log.info('%s %s %s', server.proc_name, worker.pid, worker.tmp)\n"
    )
    r = run_cli(["app:app", "--chdir", str(APPS), "-c", str(conf), "--check-config"], workdir)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, r.stderr
    assert re.search(
        r"gunicorn\.conf\.py:3: the when_ready hook reads server\.no_such_thing", lines[0]
    ), lines[0]


def test_check_config_passes_the_template_hooks(workdir: Path) -> None:
    conf = workdir / "gunicorn.conf.py"
    conf.write_text(TEMPLATE_HOOKS.format(port=free_port()))
    for kind in ("sync", "gthread", "asgi"):
        r = run_cli(
            ["app:app", "--chdir", str(APPS), "-c", str(conf), "-k", kind, "--check-config"],
            workdir,
        )
        assert r.returncode == 0, (kind, r.stderr)
        assert "error" not in r.stderr and "warning" not in r.stderr, (kind, r.stderr)


RAISES = """
bind = "127.0.0.1:{port}"
workers = 2

def {hook}(*args):
    raise RuntimeError("boom in {hook}")
"""


@pytest.mark.parametrize(("hook", "status"), [("when_ready", 1), ("post_fork", 3)])
def test_hook_exception_stops_where_gunicorn_stops(
    server: Callable[..., Server], workdir: Path, hook: str, status: int
) -> None:
    srv = _start(server, workdir, RAISES.replace("{hook}", hook), [], wait=False)
    assert srv.wait_exit(30) == status, srv.log()
    log = srv.log()
    assert f"Exception in the {hook} hook" in log, log
    assert "Traceback (most recent call last)" in log and f"RuntimeError: boom in {hook}" in log
    if hook == "when_ready":  # gunicorn calls it before forking any worker
        assert "Booting worker" not in log, log


def test_worker_exit_exception_is_logged_and_serving_goes_on(
    server: Callable[..., Server], workdir: Path
) -> None:
    srv = _start(server, workdir, RAISES.replace("{hook}", "worker_exit"), [])
    srv.wait_workers(2)
    srv.signal(signal.SIGTTOU)  # one worker stops: its worker_exit raises
    assert wait_for(lambda: "RuntimeError: boom in worker_exit" in srv.log(), 15), srv.log()
    srv.wait_workers(1)
    srv.get_ok("/pid")
    assert srv.proc.poll() is None
    log = srv.log()
    assert "Exception in the worker_exit hook" in log and "Traceback" in log, log


REQUEST_HOOKS_RAISE = """
bind = "127.0.0.1:{port}"
workers = 1

def pre_request(worker, req):
    if req.path == "/env":
        raise RuntimeError("boom in pre_request")

def post_request(worker, req, environ, resp):
    if req.path == "/echo":
        raise RuntimeError("boom in post_request")
"""


@pytest.mark.parametrize("kind", ["sync", "gthread"])
def test_request_hook_exceptions_are_answered_and_logged(
    server: Callable[..., Server], workdir: Path, kind: str
) -> None:
    srv = _start(server, workdir, REQUEST_HOOKS_RAISE, ["-k", kind])
    [pid] = srv.wait_workers(1)
    status, _, _ = srv.request("/env")
    assert status == 500  # gunicorn answers a failing pre_request like a failing app
    assert srv.request("/echo", method="POST", body=b"x")[0] == 200
    assert srv.get_ok("/pid") == str(pid).encode()  # the same worker goes on serving
    assert wait_for(lambda: "RuntimeError: boom in post_request" in srv.log(), 10), srv.log()
    log = srv.log()
    assert "Error handling request /env" in log and "RuntimeError: boom in pre_request" in log
    assert "Exception in the post_request hook" in log, log


def test_on_exit_exception_makes_the_exit_status_1(
    server: Callable[..., Server], workdir: Path
) -> None:
    srv = _start(server, workdir, RAISES.replace("{hook}", "on_exit"), [])
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(20) == 1, srv.log()  # gunicorn's master dies of the exception
    log = srv.log()
    assert "Exception in the on_exit hook" in log and "RuntimeError: boom in on_exit" in log, log
