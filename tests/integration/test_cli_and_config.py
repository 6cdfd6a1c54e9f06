"""The real command with config files, environment arguments, hooks, and bad input."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

from conftest import APPS, Server, run_cli, wait_for

GUNICORN_CONF = """
import multiprocessing  # a module: ignored without a warning

bind = "127.0.0.1:{port}"
workers = 2
worker = 4  # a typo: warned about
timeout = 20
keepalive = 5
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s'
raw_env = ["FROM_CONF=yes"]

def on_starting(server):
    server.log.info("hook on_starting")

def when_ready(server):
    server.log.info("hook when_ready")

def post_fork(server, worker):
    server.log.info("hook post_fork %s", worker.pid)

def pre_request(worker, req):
    worker.log.info("hook pre_request %s %s", req.method, req.path)

def post_request(worker, req, environ, resp):
    worker.log.info("hook post_request %s %s", req.uri, resp.status)

def worker_exit(server, worker):
    server.log.info("hook worker_exit %s", worker.pid)

def on_exit(server):
    server.log.info("hook on_exit")
"""


def test_gunicorn_conf_with_hooks(server: Callable[..., Server], workdir: Path) -> None:
    from conftest import free_port

    port = free_port()
    conf = workdir / "gunicorn.conf.py"
    conf.write_text(GUNICORN_CONF.format(port=port))
    srv = server(["-c", str(conf)], bind=f"127.0.0.1:{port}")
    assert len(srv.wait_workers(2)) == 2
    env = json.loads(srv.get_ok("/env?x=1"))
    assert env.get("FROM_CONF") is None  # raw_env reaches os.environ, not the WSGI environ
    assert wait_for(lambda: "hook post_request /env?x=1 200 OK" in srv.log(), 5), srv.log()
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(15) == 0
    log = srv.log()
    for line in (
        "hook on_starting",
        "hook when_ready",
        "hook post_fork",
        "hook pre_request GET /env",
        "hook worker_exit",
        "hook on_exit",
        "unknown setting 'worker'",
        "did you mean 'workers'?",
        '127.0.0.1 "GET /env?x=1 HTTP/1.1" 200',
    ):
        assert line in log, (line, log)
    assert "multiprocessing" not in log


def test_env_args_and_default_config_file(server: Callable[..., Server], workdir: Path) -> None:
    (workdir / "monoceros.conf.py").write_text("workers = 3\n")
    srv = server(env={"MONOCEROS_CMD_ARGS": "--workers 2"})
    assert len(srv.wait_workers(2)) == 2  # env args beat the config file


def one_line_error(result: object) -> str:
    proc = result  # subprocess.CompletedProcess
    lines = proc.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1, proc.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in proc.stderr  # type: ignore[attr-defined]
    return lines[0]


def test_bad_option_value_is_one_line(workdir: Path) -> None:
    r = run_cli(["app:app", "--chdir", str(APPS), "--workers", "abc"], workdir)
    assert r.returncode == 2
    line = one_line_error(r)
    assert "workers" in line and "abc" in line


def test_unknown_option_is_one_line(workdir: Path) -> None:
    r = run_cli(["app:app", "--wrokers", "2"], workdir)
    assert r.returncode == 2
    assert "--wrokers" in one_line_error(r)


def test_bad_app_path_is_one_line(workdir: Path) -> None:
    r = run_cli(["nosuchmodule:app"], workdir)
    assert r.returncode == 4
    assert "nosuchmodule" in one_line_error(r)


def test_missing_callable_exits_nonzero_with_a_clear_line(workdir: Path) -> None:
    r = run_cli(["app:nosuchapp", "--chdir", str(APPS), "--bind", "127.0.0.1:0"], workdir)
    assert r.returncode == 4
    assert "Failed to find attribute 'nosuchapp' in 'app'." in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_check_config(workdir: Path) -> None:
    ok = run_cli(["app:app", "--chdir", str(APPS), "--check-config"], workdir)
    assert ok.returncode == 0, ok.stderr
    bad = run_cli(["app:nosuchapp", "--chdir", str(APPS), "--check-config"], workdir)
    assert bad.returncode == 4 and "nosuchapp" in one_line_error(bad)


def test_print_config(workdir: Path) -> None:
    r = run_cli(["app:app", "--workers", "3", "--print-config"], workdir)
    assert r.returncode == 0
    assert "workers = 3" in r.stdout.splitlines()


def test_bind_in_use_is_retried_then_one_clear_line(
    server: Callable[..., Server], workdir: Path
) -> None:
    """gunicorn's patience: five attempts a second apart, each retry said, then one line."""
    srv = server()
    r = run_cli(["app:app", "--chdir", str(APPS), "--bind", srv.bind], workdir)
    out = r.stdout + r.stderr
    assert r.returncode == 1
    retries = [line for line in out.splitlines() if "retrying in 1 s (attempt" in line]
    assert len(retries) == 4 and "(attempt 5 of 5)" in retries[-1], out
    assert out.rstrip().endswith(f"bind: {srv.bind}: Address already in use"), out
    assert "Traceback" not in out
