"""gunicorn's logging settings and the JSON access log, driven like a user: the real CLI with a
gunicorn config file used as is, JSON and ini log configs, syslog to UDP and UNIX datagram
sockets the test binds, --access-log-json on every worker kind and both protocols."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import Server, free_port, run_cli, wait_for
from uwsgi_support import APP_OF, WORKER_KINDS, exchange, good_env, packet, status_of

# -- a gunicorn config file, as gunicorn's users write it --------------------------------------

GUNICORN_CONF = """\
# gunicorn.conf.py: the shape of gunicorn's logconfig_dict examples, unchanged
bind = "{bind}"
workers = 1
statsd_host = "127.0.0.1:{statsd}"
logconfig_dict = {{
    "version": 1,
    "disable_existing_loggers": False,
    "root": {{"level": "INFO", "handlers": ["console"]}},
    "loggers": {{
        "gunicorn.error": {{
            "level": "INFO",
            "handlers": ["error_file"],
            "propagate": False,
            "qualname": "gunicorn.error",
        }},
        "gunicorn.access": {{
            "level": "INFO",
            "handlers": ["access_file"],
            "propagate": False,
            "qualname": "gunicorn.access",
        }},
    }},
    "handlers": {{
        "console": {{
            "class": "logging.StreamHandler",
            "formatter": "generic",
            "stream": "ext://sys.stdout",
        }},
        "error_file": {{
            "class": "logging.FileHandler",
            "formatter": "generic",
            "filename": "{error}",
        }},
        "access_file": {{
            "class": "logging.FileHandler",
            "formatter": "access",
            "filename": "{access}",
        }},
    }},
    "formatters": {{
        "generic": {{
            "format": "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
            "datefmt": "[%Y-%m-%d %H:%M:%S %z]",
            "class": "logging.Formatter",
        }},
        "access": {{"format": "%(name)s %(message)s", "class": "logging.Formatter"}},
    }},
}}
"""


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


def datagrams(
    sock: socket.socket, until: Callable[[list[bytes]], bool], timeout: float
) -> list[bytes]:
    """Datagrams received until ``until(all so far)`` holds (or ``timeout`` passes)."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while not until(got) and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(sock.recv(65536))
        except TimeoutError:
            break
    return got


def test_gunicorn_logconfig_dict_file_used_as_is(
    server: Callable[..., Server], workdir: Path, udp: socket.socket
) -> None:
    """./gunicorn.conf.py found without -c; its loggers gunicorn.error and gunicorn.access get
    monoceros's lines; USR1 reopens its files; statsd still counts the error log's levels."""
    error, access = workdir / "error.log", workdir / "access.log"
    bind = f"127.0.0.1:{free_port()}"
    conf = GUNICORN_CONF.format(bind=bind, statsd=udp.getsockname()[1], error=error, access=access)
    (workdir / "gunicorn.conf.py").write_text(conf)
    srv = server(bind=bind, bind_arg=False)
    pid = srv.get_ok("/pid").decode()
    srv.request("/pid", headers={"User-Agent": "curl/8.5.0"})
    assert srv.request("/raise")[0] == 500
    assert wait_for(lambda: len(lines(access)) >= 4, 10), lines(access)
    assert all(line.startswith("gunicorn.access 127.0.0.1 - - [") for line in lines(access))
    assert '"GET /raise HTTP/1.1" 500 ' in lines(access)[-1], lines(access)
    errors = lines(error)
    assert any(
        f"[{pid}] [INFO] gunicorn.error: Booting worker with pid: {pid}" in x for x in errors
    )
    assert any("[ERROR] gunicorn.error: Error handling request /raise" in x for x in errors)
    assert "Booting worker" not in srv.log()  # the config's handlers replaced stderr

    def counted() -> bool:
        text = b"".join(datagrams(udp, lambda got: bool(got), 2)).decode()
        return "gunicorn.log.exception:1|c" in text

    assert wait_for(counted, 15), srv.log()

    access.rename(workdir / "access.log.1")
    error.rename(workdir / "error.log.1")
    srv.signal(signal.SIGUSR1)

    def reopened() -> bool:
        assert srv.request("/raise")[0] == 500  # an access line and an error line
        return bool(lines(access)) and bool(lines(error))

    assert wait_for(reopened, 15, 0.2), srv.log()
    assert lines(access)[-1].startswith("gunicorn.access 127.0.0.1 - - [")
    assert any("Handling signal: usr1" in x for x in lines(workdir / "error.log.1"))


LOG_INI = """\
[loggers]
keys=root,gerror,gaccess

[handlers]
keys=errors,accesses

[formatters]
keys=plain

[logger_root]
level=WARNING
handlers=

[logger_gerror]
level=INFO
handlers=errors
propagate=0
qualname=gunicorn.error

[logger_gaccess]
level=INFO
handlers=accesses
propagate=0
qualname=gunicorn.access

[handler_errors]
class=FileHandler
formatter=plain
args=('%(here)s/ini-error.log', 'a')

[handler_accesses]
class=FileHandler
formatter=plain
args=('%(here)s/ini-access.log', 'a')

[formatter_plain]
format=%(name)s|%(levelname)s|%(message)s
"""


@pytest.mark.parametrize("kind", ["json", "ini"])
def test_log_config_json_and_ini_files(
    server: Callable[..., Server], workdir: Path, kind: str
) -> None:
    if kind == "json":
        config = {
            "version": 1,
            "root": {"level": "WARNING", "handlers": []},
            "loggers": {
                "gunicorn.error": {"level": "INFO", "handlers": ["errors"], "propagate": False},
                "gunicorn.access": {"level": "INFO", "handlers": ["accesses"], "propagate": False},
            },
            "handlers": {
                "errors": {
                    "class": "logging.FileHandler",
                    "filename": str(workdir / "json-error.log"),
                    "formatter": "plain",
                },
                "accesses": {
                    "class": "logging.FileHandler",
                    "filename": str(workdir / "json-access.log"),
                    "formatter": "plain",
                },
            },
            "formatters": {"plain": {"format": "%(name)s|%(levelname)s|%(message)s"}},
        }
        path = workdir / "log.json"
        path.write_text(json.dumps(config))
        args = ["--log-config-json", str(path)]
    else:
        path = workdir / "log.ini"
        path.write_text(LOG_INI)
        args = ["--log-config", str(path)]
    srv = server(args)
    pid = srv.get_ok("/pid").decode()
    access = workdir / f"{kind}-access.log"
    assert wait_for(lambda: len(lines(access)) >= 1, 10)
    assert lines(access)[-1].startswith("gunicorn.access|INFO|127.0.0.1 - - [")
    assert f"gunicorn.error|INFO|Booting worker with pid: {pid}" in lines(
        workdir / f"{kind}-error.log"
    )


def test_syslog_over_udp_with_facility_and_prefix(
    server: Callable[..., Server], udp: socket.socket
) -> None:
    port = udp.getsockname()[1]
    srv = server(
        [
            "--log-syslog",
            "--log-syslog-to", f"udp://127.0.0.1:{port}",
            "--log-syslog-facility", "local3",
            "--log-syslog-prefix", "shop",
        ],
    )  # fmt: skip
    pid = int(srv.get_ok("/pid"))
    assert srv.request("/raise")[0] == 500
    got = datagrams(udp, lambda got: any(b"Error handling request /raise" in d for d in got), 15)
    # local3 is facility 19: <19*8+6> for INFO, <19*8+3> for ERROR; then gunicorn's tag
    assert f"<158>gunicorn.shop.error: [{srv.pid}] Starting monoceros ".encode() in b"".join(got)
    assert f"<158>gunicorn.shop.error: [{pid}] Booting worker with pid: {pid}\x00".encode() in got
    access = [d for d in got if d.startswith(b"<158>gunicorn.shop.access: ")]
    assert access and access[0].startswith(
        f"<158>gunicorn.shop.access: [{pid}] 127.0.0.1 - - [".encode()
    )
    assert b'"GET /pid HTTP/1.1" 200 ' in access[0] and access[0].endswith(b"\x00")
    failed = [d for d in got if b"Error handling request /raise" in d]
    assert failed[0].startswith(
        f"<155>gunicorn.shop.error: [{pid}] Error handling request".encode()
    )
    assert b"\nTraceback (most recent call last):" in failed[0]  # the traceback in the same message
    assert "Booting worker" in srv.log()  # stderr keeps the error log too


def test_syslog_to_a_unix_datagram_socket_without_the_access_log(
    server: Callable[..., Server], workdir: Path
) -> None:
    path = workdir / "syslog.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        srv = server(
            ["--log-syslog", "--log-syslog-to", f"unix://{path}#dgram",
             "--disable-redirect-access-to-syslog", "--access-logfile", "-"],
        )  # fmt: skip
        srv.get_ok("/pid")
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(20) == 0, srv.log()
        got = datagrams(sock, lambda got: any(b"Shutting down: Master" in d for d in got), 15)
    tag = b"<14>gunicorn.app.app.error: ["  # facility user, INFO; proc_name app:app
    assert got and all(d.startswith((tag, b"<12>gunicorn.app.app.error: [")) for d in got), got
    assert any(b"] Booting worker with pid: " in d for d in got)
    assert '"GET /pid HTTP/1.1" 200' in srv.log()  # the access log went to stdout only


# -- the JSON access log on every worker kind and both protocols -------------------------------

FORGED_UA = 'evil\\", "status": 500, "admin": true, "x": "\\'
FIELDS = [
    "time", "remote_addr", "method", "path", "query", "status", "bytes", "duration_ms",
    "referer", "user_agent", "request_id", "pid", "protocol",
]  # fmt: skip


@pytest.mark.parametrize("protocol", ["http", "uwsgi"])
@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_access_log_json(
    server: Callable[..., Server], workdir: Path, kind: str, protocol: str
) -> None:
    log = workdir / "access.json"
    args = ["-k", kind, "--protocol", protocol, "--access-logfile", str(log), "--access-log-json"]
    srv = server(args, app=APP_OF[kind], wait=False)
    addr = ("127.0.0.1", srv.port)
    agent = FORGED_UA + "\tcafé"  # a tab, and é sent as its UTF-8 bytes
    headers = {"User-Agent": agent, "Referer": "https://example.org/a", "X-Request-ID": "req-7"}
    if protocol == "uwsgi":
        env = good_env("/pid?x=1&y=%C3%A9")
        for name, value in headers.items():  # packet() writes each character as one byte
            env[f"HTTP_{name.upper().replace('-', '_')}"] = value.encode().decode("latin-1")
        payload = packet(env)
    else:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        payload = (
            f"GET /pid?x=1&y=%C3%A9 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{head}\r\n".encode()
        )
    responses: list[bytes] = []

    def served() -> bool:
        responses.append(exchange(addr, payload, timeout=2))
        return status_of(responses[-1]) == 200

    assert wait_for(served, 20, 0.1), srv.log()
    assert wait_for(lambda: any("req-7" in x for x in lines(log)), 10), srv.log()
    records = [json.loads(x) for x in lines(log)]
    assert all(list(r) == FIELDS for r in records), lines(log)
    mine = [r for r in records if r["request_id"] == "req-7"]
    assert len(mine) == sum(status_of(r) == 200 for r in responses)
    record = mine[-1]
    body = responses[-1].partition(b"\r\n\r\n")[2]
    assert record["pid"] == int(body)
    assert record == {
        "time": record["time"],
        "remote_addr": "10.9.8.7" if protocol == "uwsgi" else "127.0.0.1",
        "method": "GET",
        "path": "/pid",
        "query": "x=1&y=%C3%A9",
        "status": 200,
        "bytes": len(body),
        "duration_ms": record["duration_ms"],
        "referer": "https://example.org/a",
        "user_agent": agent,
        "request_id": "req-7",
        "pid": int(body),
        "protocol": protocol,
    }
    assert isinstance(record["duration_ms"], float) and 0 <= record["duration_ms"] < 20_000
    assert time.strptime(record["time"][:19], "%Y-%m-%dT%H:%M:%S")


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "logconfig_json = '{json}'",
            "monoceros: error: logconfig_json: {json} is not valid JSON: ",
        ),
        (
            "logconfig_dict = {{'handlers': {{'h': {{'class': 'no.such.Handler'}}}}, "
            "'root': {{'handlers': ['h']}}}}",
            "monoceros: error: logconfig_dict: Unable to configure handler 'h': ",
        ),
        ("syslog_addr = 'udp:514'", "monoceros: error: syslog_addr: expected unix://PATH, "),
        ("syslog_facility = 'local9'", "monoceros: error: syslog_facility: expected one of auth, "),
    ],
)
def test_a_bad_logging_setting_is_one_line(workdir: Path, setting: str, message: str) -> None:
    bad = workdir / "bad.json"
    bad.write_text('{"version": 1,')
    conf = workdir / "bad.conf.py"
    conf.write_text(setting.format(json=bad) + "\n")
    result = run_cli(
        ["-c", str(conf), "--chdir", str(Path(__file__).parent / "apps"), "app:app"], workdir
    )
    assert result.returncode == 2, result
    assert result.stderr.startswith(message.format(json=bad)), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_check_config_reads_the_logging_configs_file(workdir: Path) -> None:
    bad = workdir / "log.ini"
    bad.write_text("[handlers]\nkeys=\n")
    apps = str(Path(__file__).parent / "apps")
    result = run_cli(
        ["--check-config", "--log-config", str(bad), "--chdir", apps, "app:app"], workdir
    )
    assert result.returncode == 2, result
    assert (
        result.stderr == f"monoceros: error: logconfig: {bad}: missing section or key 'loggers'\n"
    )


@pytest.mark.parametrize("broken", ["handler class", "errorlog"])
def test_logging_that_fails_on_hup_keeps_the_current_one(
    server: Callable[..., Server], workdir: Path, broken: str
) -> None:
    errors = workdir / "errors.log"
    config = {
        "root": {"handlers": []},
        "handlers": {"f": {"class": "logging.FileHandler", "filename": str(errors)}},
        "loggers": {"gunicorn.error": {"handlers": ["f"], "level": "INFO"}},
    }
    good = f"logconfig_dict = {config!r}\n"
    conf = workdir / "hup.conf.py"
    conf.write_text(good)
    srv = server(["-c", str(conf)])
    if broken == "errorlog":
        conf.write_text(f"errorlog = {str(workdir / 'no-such-dir' / 'e.log')!r}\n" + good)
        reason = f"cannot open error log {workdir / 'no-such-dir' / 'e.log'}: No such file"
    else:
        conf.write_text(good.replace("logging.FileHandler", "no.such.Handler"))
        reason = "logconfig_dict: Unable to configure handler 'f'"
    srv.signal(signal.SIGHUP)
    assert wait_for(lambda: any("Reload failed" in x for x in lines(errors)), 15), srv.log()
    (line,) = [x for x in lines(errors) if "Reload failed" in x]
    assert f"keeping the current configuration: {reason}" in line, line
    srv.get_ok("/pid")
    os.kill(srv.pid, signal.SIGTTIN)  # the master still logs where it did
    assert wait_for(lambda: any("Handling signal: ttin" in x for x in lines(errors)), 15)
