"""The process model under stress, through the real command: what a worker does on its way out
never runs master code, a dead worker is replaced at once, an orphaned worker leaves, a restart
waits for its port, and a uwsgi socket everyone may connect to is said so."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Server, wait_for

KINDS = {
    "sync": (["-k", "sync"], "app:app"),
    "gthread": (["-k", "gthread", "--threads", "2"], "app:app"),
    "asgi": (["-k", "asgi"], "asgi_app:app"),
}


def gone(pid: int) -> bool:
    """Whether ``pid`` exited (a zombie counts: it serves nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# ----------------------------------------------------------------------------- stdout closed


@pytest.mark.parametrize("how", ["file", "fd"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_worker_whose_app_closed_stdout_exits_without_running_master_code(
    server: Callable[..., Server], workdir: Path, kind: str, how: str
) -> None:
    """The app closes stdout, the worker is recycled (max_requests 1): flushing stdout on the
    way out fails, and the worker still leaves by os._exit. The socket file and the pidfile
    stay, no worker logs the master's last words, and the next requests are served."""
    args, app = KINDS[kind]
    sock_path = workdir / "app.sock"
    pidfile = workdir / "app.pid"
    srv = server(
        [*args, "--workers", "1", "--max-requests", "1", "--pid", str(pidfile)],
        app=app,
        bind=f"unix:{sock_path}",
        env={"PYTHONUNBUFFERED": ""},  # block-buffered stdout: something is left to flush
    )
    status, _, body = srv.request(f"/close-stdout?how={how}")
    assert status == 200 and body.startswith(b"closed "), (status, body, srv.log())
    first = int(body.split()[1])
    assert wait_for(lambda: gone(first), 15), srv.log()
    for _ in range(3):
        status, _, body = srv.request("/pid")
        assert status == 200 and body.isdigit() and int(body) != first, (status, body, srv.log())
    assert sock_path.exists() and pidfile.read_text().strip() == str(srv.pid), srv.log()
    log = srv.log()
    assert "master loop" not in log and "Shutting down" not in log, log
    assert f"Worker exiting (pid: {first})" in log, log


# ----------------------------------------------------------------------------- a dead worker


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_killed_worker_is_replaced_at_once(server: Callable[..., Server], kind: str) -> None:
    """SIGKILL the only worker: the master reacts to SIGCHLD and forks its replacement at once,
    not on its next once-a-second wake-up (the request waits in the listen queue meanwhile)."""
    args, app = KINDS[kind]
    srv = server([*args, "--workers", "1"], app=app)
    figures = []
    for _ in range(3):
        victim = int(srv.get_ok("/pid"))
        start = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        assert wait_for(lambda v=victim: gone(v), 5)  # type: ignore[misc]
        served_by = int(srv.get_ok("/pid"))
        figures.append(time.monotonic() - start)
        assert served_by != victim
    # typically 0.05-0.15 s (the replacement's boot included); 1.0-1.2 s before
    assert max(figures) < 0.8, (figures, srv.log())


# ----------------------------------------------------------------------------- orphans


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_an_orphaned_worker_under_steady_traffic_leaves_and_frees_the_port(
    server: Callable[..., Server], kind: str
) -> None:
    """SIGKILL the master while its worker serves back-to-back requests: the worker notices
    within about a second and exits, and a new server started at once on the same port binds
    it (retrying while the orphan still holds it) and serves."""
    args, app = KINDS[kind]
    srv = server([*args, "--workers", "1"], app=app)
    worker = int(srv.get_ok("/pid"))
    stop = threading.Event()
    served: list[int] = []

    def traffic() -> None:
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline and len(served) < 100_000:
            try:
                served.append(srv.request("/pid", timeout=5)[0])
            except OSError:
                time.sleep(0.01)  # refused once the worker left: keep the pace bounded

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: len(served) >= 20, 10), served
        start = time.monotonic()
        os.kill(srv.pid, signal.SIGKILL)
        srv.proc.wait(5)
        restarted = server([*args, "--workers", "1"], app=app, bind=srv.bind, wait=False)
        assert wait_for(lambda: gone(worker), 10), srv.log()
        left_after = time.monotonic() - start
    finally:
        stop.set()
        thread.join(10)
    assert left_after < 2.0, (left_after, srv.log())
    assert f"Parent changed, shutting down: <Worker {worker}>" in srv.log(), srv.log()
    restarted.wait_ready()  # the orphan is gone: only the new server can answer
    assert int(restarted.get_ok("/pid")) != worker


# ----------------------------------------------------------------------------- open uwsgi sockets

OPEN_SOCKET = "every local user can connect to this uwsgi socket"


@pytest.mark.parametrize(
    ("bind", "args", "warned"),
    [
        ("uwsgi://unix:{dir}/app.sock", [], True),  # gunicorn's default umask 0: kept, said
        ("uwsgi://unix:{dir}/app.sock", ["--umask", "007"], False),
        ("unix:{dir}/app.sock", [], False),  # HTTP: a UNIX peer is not trusted with more
        ("uwsgi://unix:{dir}/closed/app.sock", [], False),  # a directory others cannot enter
        ("uwsgi://unix:@monoceros-{pid}", [], True),  # abstract: no permissions at all
    ],
)
def test_a_uwsgi_socket_everyone_can_connect_to_is_said_at_start(
    server: Callable[..., Server], workdir: Path, bind: str, args: list[str], warned: bool
) -> None:
    workdir.chmod(0o711)  # others may pass through the test's own directory
    (workdir / "closed").mkdir(mode=0o700)
    address = bind.format(dir=workdir, pid=os.getpid())
    srv = server(["--workers", "1", "--bind", address, *args], wait=False)
    assert wait_for(lambda: "Booting worker" in srv.log(), 15), srv.log()
    log = srv.log()
    lines = [line for line in log.splitlines() if OPEN_SOCKET in line]
    assert len(lines) == (1 if warned else 0), log
    if warned:
        assert "[WARNING]" in lines[0]
        fix = "bind a socket file" if "@" in address else "use --umask 007 and a group nginx is in"
        assert fix in lines[0], lines[0]


# ----------------------------------------------------------------------------- files given away


def test_files_created_as_root_are_given_to_the_worker_user(
    server: Callable[..., Server], workdir: Path
) -> None:
    """As root with --user/--group: the log files and the socket file belong to the workers'
    user (given through the log files' descriptors, the socket by path without following)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch users")
    import pwd

    nobody = pwd.getpwnam("nobody")
    sock = workdir / "app.sock"
    logs = [workdir / "error.log", workdir / "access.log"]
    srv = server(
        [
            *("--user", str(nobody.pw_uid), "--group", str(nobody.pw_gid), "--preload"),
            *("--error-logfile", str(logs[0]), "--access-logfile", str(logs[1])),
        ],
        bind=f"unix:{sock}",
    )
    assert srv.get_ok("/") == b"Hello, World!"
    for path in (sock, *logs):
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid), path
