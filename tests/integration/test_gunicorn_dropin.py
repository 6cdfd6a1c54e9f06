"""A gunicorn deployment renamed to monoceros: its files, worker classes, settings and headers.

Every test drives the real command as such a deployment would: ``./gunicorn.conf.py`` and
``GUNICORN_CMD_ARGS`` found by themselves, uvicorn's worker class, gunicorn-only settings (warned
about once, or refused when leaving them out would fail open) and a proxy's SCRIPT_NAME header.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

from conftest import APPS, Nginx, Server, free_port, run_cli, wait_for


def test_gunicorn_conf_py_and_gunicorn_cmd_args_are_found(
    server: Callable[..., Server], workdir: Path
) -> None:
    port = free_port()
    (workdir / "gunicorn.conf.py").write_text(f"bind = '127.0.0.1:{port}'\nworkers = 3\n")
    srv = server(env={"GUNICORN_CMD_ARGS": "--workers 2"}, bind=f"127.0.0.1:{port}", bind_arg=False)
    assert len(srv.wait_workers(2)) == 2  # the variable beats the file, as in gunicorn
    line = f"Using config file {workdir / 'gunicorn.conf.py'} and arguments from $GUNICORN_CMD_ARGS"
    assert [text for text in srv.log().splitlines() if line in text and "[INFO]" in text], srv.log()


def test_uvicorn_worker_class_serves_an_asgi_app(server: Callable[..., Server]) -> None:
    srv = server(["-k", "uvicorn.workers.UvicornWorker"], app="starlette_app:app")
    st, _, body = srv.request("/items/42?q=x")
    assert st == 200 and json.loads(body)["item"] == 42
    notice = "Worker class 'uvicorn.workers.UvicornWorker': served by monoceros's own asgi worker"
    assert srv.log().count(notice) == 1, srv.log()


def test_a_flag_rescues_a_config_with_an_unknown_worker_class(
    server: Callable[..., Server], workdir: Path
) -> None:
    conf = workdir / "c.py"
    conf.write_text('worker_class = "nonsense"\n')
    bad = run_cli(["-c", str(conf), "--chdir", str(APPS), "--check-config", "app:app"], workdir)
    assert bad.returncode == 2 and "nonsense" in bad.stderr
    srv = server(["-c", str(conf), "-k", "asgi"], app="asgi_app:app")
    assert srv.request("/pid")[0] == 200


GUNICORN_27_CONF = """
keyfile = None                  # gunicorn's defaults: silent
certfile = None
proxy_protocol = "off"
root_path = ""
http2_max_concurrent_streams = 100
http_protocols = "h2,h1"        # other values: one warning each
dirty_workers = 2
asgi_disconnect_grace_period = 10
"""


def test_gunicorn_only_settings_warn_once_per_start(
    server: Callable[..., Server], workdir: Path
) -> None:
    conf = workdir / "g.py"
    conf.write_text(GUNICORN_27_CONF)
    srv = server(["-c", str(conf)])
    old = srv.wait_workers(1)
    srv.signal(signal.SIGHUP)
    assert wait_for(lambda: len(srv.workers()) == 1 and not set(old) & set(srv.workers()), 20), (
        srv.log()
    )
    srv.get_ok()
    log = srv.log()
    for name in ("http_protocols", "dirty_workers", "asgi_disconnect_grace_period"):
        warning = f"gunicorn setting {name!r} in {conf} is not supported by monoceros; ignored"
        assert log.count(warning) == 1, (name, log)
    for name in ("keyfile", "certfile", "proxy_protocol", "root_path", "http2_max"):
        assert name not in log, (name, log)


def test_tls_settings_refuse_to_start(workdir: Path) -> None:
    conf = workdir / "tls.py"
    conf.write_text("certfile = '/etc/ssl/site.pem'\nkeyfile = '/etc/ssl/site.key'\n")
    base = ["--chdir", str(APPS), "--bind", f"127.0.0.1:{free_port()}", "app:app"]
    for extra in (
        ["-c", str(conf)],
        ["-c", str(conf), "--check-config"],
        ["--certfile", "c.pem"],
    ):
        r = run_cli([*extra, *base], workdir)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, (extra, r.stderr)
        assert lines[0].startswith("monoceros: error: ") and "not" in lines[0], lines


def env_of(srv: Server | Nginx, path: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    st, _, body = srv.request(path, headers=headers)
    assert st == 200, (st, body)
    return json.loads(body)  # type: ignore[no-any-return]


def test_script_name_header_from_a_trusted_proxy(server: Callable[..., Server]) -> None:
    header = {"SCRIPT_NAME": "/prefix"}
    env = env_of(server(), "/prefix/env/x", header)
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/prefix", "/env/x")
    env = env_of(server(["--forwarded-allow-ips", "10.9.9.9"]), "/env/x", header)
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", "/env/x")
    assert "HTTP_SCRIPT_NAME" not in env


def test_script_name_header_sets_the_asgi_root_path(server: Callable[..., Server]) -> None:
    header = {"SCRIPT_NAME": "/prefix"}
    srv = server(["-k", "asgi"], app="starlette_app:app")
    st, _, body = srv.request("/prefix/items/7", headers=header)
    assert st == 200 and json.loads(body)["item"] == 7
    untrusted = server(["-k", "asgi", "--forwarded-allow-ips", "10.9.9.9"], app="starlette_app:app")
    assert untrusted.request("/prefix/items/7", headers=header)[0] == 404


PREFIX_LOCATION = """
        location /prefix/ {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header SCRIPT_NAME /prefix;
        }
"""


def test_nginx_proxy_pass_mounts_the_app_under_a_prefix(
    server: Callable[..., Server], nginx: Callable[..., Nginx]
) -> None:
    srv = server()
    ngx = nginx(PREFIX_LOCATION, srv.bind)
    env = env_of(ngx, "/prefix/env/users/1?x=1")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"], env["QUERY_STRING"]) == (
        "/prefix",
        "/env/users/1",
        "x=1",
    )
