"""The systemd units in examples/systemd: their ExecStart runs as written, and the units agree.

No systemd runs here: the ExecStart command line is run by the real ``monoceros`` command, with
the socket passed the way systemd passes it (fd 3, ``LISTEN_FDS``, ``LISTEN_PID``), and
``systemd-analyze verify`` checks the unit syntax where it is installed.
"""

from __future__ import annotations

import ast
import os
import shlex
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import MONOCEROS, REPO, exited, run_cli, wait_for
from uwsgi_support import body_of, exchange, good_env, packet, status_of

UNITS = REPO / "examples" / "systemd"
SERVICE = UNITS / "monoceros.service"
SOCKET = UNITS / "monoceros.socket"
#: stands for the service's WorkingDirectory (/srv/app): the example application lives here
APP_DIR = REPO / "examples"

Unit = dict[str, dict[str, list[str]]]


def read_unit(path: Path) -> Unit:
    """``{section: {key: [values...]}}`` of a systemd unit file (repeated keys keep every value,
    a backslash at the end of a line continues it on the next, as systemd reads them)."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"{path.name}: {line!r} before any [section]"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a key=value line: {line!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    assert not pending, f"{path.name} ends with a continuation line"
    return unit


def one(unit: Unit, section: str, key: str) -> str:
    """The single value of ``key`` in ``section``."""
    values = unit.get(section, {}).get(key, [])
    assert len(values) == 1, f"[{section}] {key}: expected one value, found {values}"
    return values[0]


def exec_start() -> list[str]:
    """The service's ExecStart as an argv for this machine: its monoceros is the test one."""
    argv = shlex.split(one(read_unit(SERVICE), "Service", "ExecStart"))
    assert argv[0].startswith("/") and Path(argv[0]).name == "monoceros", argv[0]
    return [MONOCEROS, *argv[1:]]


def resolved(args: list[str]) -> dict[str, object]:
    """Every setting ``monoceros ARGS`` resolves to, from ``--print-config``."""
    result = run_cli([*args, "--print-config"], APP_DIR)
    assert result.returncode == 0, result.stderr
    settings: dict[str, object] = {}
    for line in result.stdout.splitlines():
        name, _, value = line.partition(" = ")
        try:
            settings[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            settings[name] = value  # hooks print as <no-op> and the like
    return settings


def test_exec_start_passes_check_config() -> None:
    argv = exec_start()
    app = argv[-1]
    assert (APP_DIR / (app.partition(":")[0] + ".py")).is_file(), app
    result = run_cli([*argv[1:], "--check-config"], APP_DIR)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr, result.stderr


def test_the_units_agree_with_each_other_and_with_the_nginx_example() -> None:
    service, sock = read_unit(SERVICE), read_unit(SOCKET)
    argv = exec_start()
    settings = resolved(argv[1:])
    # --bind would be ignored under socket activation: the example must not suggest otherwise
    assert not {"-b", "--bind"} & set(argv) and not any(a.startswith("--bind=") for a in argv)
    assert SOCKET.name in one(service, "Unit", "Requires").split()
    assert SOCKET.name in one(service, "Unit", "After").split()
    # USR2 upgrades: systemd follows the pidfile monoceros writes
    pidfile = one(service, "Service", "PIDFile")
    assert settings["pidfile"] == pidfile
    runtime_dir = "/run/" + one(service, "Service", "RuntimeDirectory")
    assert os.path.dirname(pidfile) == runtime_dir
    listen = one(sock, "Socket", "ListenStream")
    assert os.path.dirname(listen) != runtime_dir  # removed when the service stops
    # systemctl reload = HUP to the master; stop = TERM to the master, then time to finish
    assert shlex.split(one(service, "Service", "ExecReload"))[1:] == ["-HUP", "$MAINPID"]
    assert one(service, "Service", "KillMode") == "mixed"
    graceful = settings["graceful_timeout"]
    assert isinstance(graceful, int)
    assert int(one(service, "Service", "TimeoutStopSec")) > graceful
    assert "--daemon" not in argv and "-D" not in argv and settings["daemon"] is False
    # the socket is the one examples/nginx/uwsgi-unix.conf passes requests to, in that protocol
    nginx_conf = (REPO / "examples" / "nginx" / "uwsgi-unix.conf").read_text()
    assert f"server unix:{listen};" in nginx_conf and "uwsgi_pass" in nginx_conf
    assert settings["protocol"] == "uwsgi"
    assert one(sock, "Socket", "SocketMode") == "0660"


def _start_activated(workdir: Path) -> tuple[Path, Path, Path, subprocess.Popen[bytes]]:
    """Run the unit's ExecStart on a UNIX socket passed as systemd passes it (fd 3, with
    LISTEN_FDS/LISTEN_PID naming it): (socket path, standing for ListenStream=
    /run/monoceros/app.sock; pidfile, for /run/monoceros-app/app.pid; log; process)."""
    listen = workdir / "app.sock"
    pidfile = workdir / "app.pid"
    log = workdir / "server.log"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(listen))
        sock.listen(16)
        fd = sock.fileno()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("MONOCEROS_CMD_ARGS", None)
        cmd = [
            "sh",
            "-c",
            'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"',
            *exec_start(),
            "--pid",
            str(pidfile),
        ]
        with open(log, "wb") as logf:  # the child keeps its own copy
            proc = subprocess.Popen(
                cmd,
                env=env,
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                pass_fds=(3,),
                preexec_fn=lambda: os.dup2(fd, 3),
                start_new_session=True,
                cwd=str(APP_DIR),
            )
    finally:
        sock.close()
    return listen, pidfile, log, proc


def _hello(path: str) -> bytes | None:
    raw = exchange(path, packet(good_env("/")), timeout=5)
    return body_of(raw) if status_of(raw) == 200 else None


def test_exec_start_serves_the_socket_systemd_passes(workdir: Path) -> None:
    listen, pidfile, log, proc = _start_activated(workdir)
    try:
        assert wait_for(lambda: _hello(str(listen)) == b"Hello, World!\n", 20), log.read_text()
        assert f"Listening at: uwsgi://unix:{listen}" in log.read_text()
        master = int(pidfile.read_text())
        assert master == proc.pid  # the pid systemd started is the master: $MAINPID
        # ExecReload, as written in the unit, with $MAINPID
        reload_cmd = shlex.split(one(read_unit(SERVICE), "Service", "ExecReload"))
        reload_cmd = [str(master) if a == "$MAINPID" else a for a in reload_cmd]
        if not os.access(reload_cmd[0], os.X_OK):
            reload_cmd[0] = shutil.which("kill") or reload_cmd[0]
        subprocess.run(reload_cmd, check=True, timeout=10)
        assert wait_for(lambda: "Handling signal: hup" in log.read_text(), 10), log.read_text()
        assert _hello(str(listen)) == b"Hello, World!\n"
        os.kill(master, signal.SIGTERM)  # what systemctl stop sends with KillMode=mixed
        assert proc.wait(int(one(read_unit(SERVICE), "Service", "TimeoutStopSec"))) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert listen.exists()  # the socket file is systemd's: the service leaves it in place
    assert not pidfile.exists()


def test_after_a_usr2_upgrade_the_systemd_socket_file_survives_a_stop(workdir: Path) -> None:
    listen, pidfile, log, proc = _start_activated(workdir)
    oldbin = Path(f"{pidfile}.oldbin")
    new_master = 0
    try:
        assert wait_for(lambda: _hello(str(listen)) is not None, 20), log.read_text()
        os.kill(proc.pid, signal.SIGUSR2)
        assert wait_for(lambda: oldbin.exists() and pidfile.exists(), 20), log.read_text()
        new_master = int(pidfile.read_text())
        assert wait_for(lambda: log.read_text().count("Booting worker") >= 8, 20), log.read_text()
        os.kill(proc.pid, signal.SIGWINCH)
        os.kill(proc.pid, signal.SIGQUIT)
        assert proc.wait(20) == 0
        assert _hello(str(listen)) == b"Hello, World!\n"  # the new master serves
        os.kill(new_master, signal.SIGTERM)  # systemctl stop, later on
        assert wait_for(lambda: exited(new_master), 20)
        new_master = 0
    finally:
        for pid in (new_master, proc.pid if proc.poll() is None else 0):
            if pid:
                os.killpg(os.getpgid(pid), signal.SIGKILL)
        if proc.poll() is None:
            proc.wait(10)
    assert listen.exists()


def test_units_pass_systemd_analyze_verify(workdir: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed")
    text = SERVICE.read_text()
    original = shlex.split(one(read_unit(SERVICE), "Service", "ExecStart"))[0]
    # verify checks that ExecStart's program exists: use this machine's monoceros
    (workdir / SERVICE.name).write_text(text.replace(original, MONOCEROS))
    shutil.copy(SOCKET, workdir / SOCKET.name)
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(workdir / SOCKET.name), str(workdir / SERVICE.name)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    about_ours = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if SERVICE.name in line or SOCKET.name in line
    ]
    assert result.returncode == 0 and not about_ours, result.stdout + result.stderr


def test_the_deploy_page_shows_the_units_as_they_are() -> None:
    page = (REPO / "docs" / "deploy.md").read_text()
    for path in (SOCKET, SERVICE):
        text = path.read_text()
        unit_body = text[text.index("[Unit]") :]
        assert f"`examples/systemd/{path.name}`:\n\n```ini\n{unit_body}```" in page, path.name
