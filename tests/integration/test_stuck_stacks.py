"""The stacks of stuck requests in the error log, through the real command (issue 14).

A worker the master aborts for its ``timeout`` logs, before it exits, the stack of the request
in flight (the application's function with ``file:line``), its pid, and the request's method
and path. A gthread worker is not aborted for one hung thread: the request is logged once at
WARNING and the worker goes on serving. A worker stuck in C code, where no Python signal
handler runs, still leaves every thread's stack (faulthandler) before it is killed.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import APPS, REPO, Server, wait_for

STUCK_APP = APPS / "stuck_app.py"

KINDS = {
    "sync": (["-k", "sync"], "stuck_app:app"),
    "gthread": (["-k", "gthread", "--threads", "4"], "stuck_app:app"),
    "asgi": (["-k", "asgi"], "stuck_app:asgi_app"),
}


def where(function: str, text: str) -> str:
    """``File "...stuck_app.py", line N, in FUNCTION`` as a Python traceback names a line."""
    lines = STUCK_APP.read_text().splitlines()
    number = next(i for i, line in enumerate(lines, 1) if text in line)
    return f'File "{STUCK_APP}", line {number}, in {function}'


def faulthandler_where(function: str, text: str) -> str:
    """The same line as faulthandler writes it (``File "...", line N in FUNCTION``)."""
    return where(function, text).replace(", in ", " in ")


def start(server: Callable[..., Server], kind: str) -> tuple[Server, int]:
    """One worker of ``kind`` with ``--timeout 1`` (the least: each abort waits it out), and
    its pid (a stop at the end of a test gives a thread still stuck one second)."""
    args, app = KINDS[kind]
    srv = server([*args, "--workers", "1", "--timeout", "1", "--graceful-timeout", "1"], app=app)
    return srv, srv.wait_workers(1)[0]


def send(srv: Server, route: str) -> tuple[str, Path, list[object]]:
    """Request ``route`` from a thread (it hangs); return its target, its start marker, and a
    list that gets the response (or the error) once it ends."""
    mark = srv.workdir / f"started-{threading.get_ident()}-{len(list(srv.workdir.iterdir()))}"
    target = f"{route}&started={mark}" if "?" in route else f"{route}?started={mark}"
    out: list[object] = []

    def run() -> None:
        try:
            out.append(srv.request(target, timeout=40))
        except OSError as exc:  # the worker was aborted under it
            out.append(exc)

    threading.Thread(target=run, daemon=True).start()
    assert wait_for(mark.exists, 15), srv.log()
    return target, mark, out


def replaced(srv: Server, pid: int) -> bool:
    workers = srv.workers()
    return len(workers) == 1 and pid not in workers


# ----------------------------------------------------------------------------- stuck in Python


def test_sync_timeout_logs_the_app_function_pid_and_request(
    server: Callable[..., Server],
) -> None:
    srv, pid = start(server, "sync")
    target, _, out = send(srv, "/python?s=30")
    head = f"[{pid}] [ERROR] Error handling request GET {target}\nTraceback"
    assert wait_for(lambda: head in srv.log(), 20), srv.log()
    assert wait_for(lambda: replaced(srv, pid), 20), srv.log()
    log = srv.log()
    assert where("stuck_in_app", "time.sleep(seconds)") + "\n" in log, log
    assert wait_for(lambda: bool(out), 10)
    assert out[0][0] == 500, out  # type: ignore[index]


def test_asgi_timeout_logs_the_stack_of_the_blocked_loop(server: Callable[..., Server]) -> None:
    srv, pid = start(server, "asgi")
    target, _, _ = send(srv, "/python?s=30")
    head = (
        f"[{pid}] [ERROR] Worker (pid:{pid}) timed out; the event loop was blocked by the "
        f"handler of GET {target} from 127.0.0.1\nStack of the event loop (most recent call "
        "last):\n"
    )
    assert wait_for(lambda: head in srv.log(), 20), srv.log()
    assert wait_for(lambda: replaced(srv, pid), 20), srv.log()
    log = srv.log()
    stack = log[log.index(head) + len(head) :]
    # from the handler down: the server's frames below it (CLI, master, fork) are left out
    assert stack.startswith(f'  File "{REPO}/monoceros/asgi/request_task.py", line '), log
    assert where("stuck_in_app", "time.sleep(seconds)") + "\n" in stack, log
    assert where("asgi_app", "# blocks the loop") in stack, log  # the app's caller, above it
    assert "still running" not in log, log  # it left on SIGABRT: no faulthandler dump needed
    assert "Task exception was never retrieved" not in log, log  # the stack once, not twice


def test_gthread_logs_a_stuck_request_once_and_goes_on_serving(
    server: Callable[..., Server],
) -> None:
    srv, pid = start(server, "gthread")
    target, _, out = send(srv, "/python?s=3")  # stuck 3 timeouts long, then it answers
    head = f"[{pid}] [WARNING] Worker (pid:{pid}): request in flight for "  # then the age
    tail = (
        f"; the worker goes on serving: GET {target} HTTP/1.1 from 127.0.0.1\n"
        "Stack of the thread serving it (most recent call last):\n"
    )
    assert wait_for(lambda: tail in srv.log(), 20), srv.log()
    assert srv.get_ok("/pid") == str(pid).encode()  # the same worker, while the first hangs
    assert not out, out
    log = srv.log()
    assert head in log and log.index(head) < log.index(tail), log
    assert where("stuck_in_app", "time.sleep(seconds)") + "\n" in log[log.index(tail) :], log
    # the stuck request ends by itself, answered by the same worker; it was reported once
    assert wait_for(lambda: bool(out), 20), srv.log()
    assert out[0][0] == 200 and out[0][2] == str(pid).encode(), out  # type: ignore[index]
    log = srv.log()
    assert log.count(tail) == 1, log
    assert "WORKER TIMEOUT" not in log and srv.workers() == [pid], log


# ----------------------------------------------------------------------------- stuck in C


@pytest.mark.parametrize("kind", ["sync", "asgi"])
def test_worker_stuck_in_c_leaves_its_stack_before_it_is_killed(
    server: Callable[..., Server], kind: str
) -> None:
    """No Python handler runs in the worker: the master's SIGABRT does nothing, so after the
    abort grace the master has faulthandler write every thread's stack, then kills it."""
    srv, pid = start(server, kind)
    send(srv, "/c")
    killed = f"Worker (pid:{pid}) was killed after its timeout"
    assert wait_for(lambda: killed in srv.log(), 30), srv.log()
    log = srv.log()
    asked = f"[ERROR] Worker (pid:{pid}) still running "
    assert asked in log, log
    dump = log[log.index(asked) : log.index(killed)]
    assert "Current thread 0x" in dump and "(most recent call first):\n" in dump, log
    assert faulthandler_where("stuck_in_c", "# never returns") + "\n" in dump, log
    assert wait_for(lambda: replaced(srv, pid), 20), srv.log()


def test_gthread_thread_stuck_in_c_is_reported_and_the_worker_goes_on(
    server: Callable[..., Server],
) -> None:
    """A pool thread in C code that released the GIL: the main thread beats on, the request's
    stack (its Python frames down to the C call) is logged once, other requests are served."""
    srv, pid = start(server, "gthread")
    target, _, _ = send(srv, "/c")
    tail = f"; the worker goes on serving: GET {target} HTTP/1.1 from 127.0.0.1\n"
    assert wait_for(lambda: tail in srv.log(), 20), srv.log()
    assert srv.get_ok("/pid") == str(pid).encode()
    log = srv.log()
    assert where("stuck_in_c", "# never returns") + "\n" in log[log.index(tail) :], log
    assert "WORKER TIMEOUT" not in log and srv.workers() == [pid], log


# ----------------------------------------------------------------------------- on demand


def fds_on(pid: int, path: Path) -> int:
    """How many of process ``pid``'s descriptors are open on ``path`` (Linux /proc)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}") == str(path)
        except OSError:  # closed meanwhile
            pass
    return count


def test_pwr_writes_a_live_workers_stacks_to_the_reopened_error_log(
    server: Callable[..., Server], workdir: Path
) -> None:
    """``kill -PWR <worker>`` dumps its threads' stacks and the worker goes on; after USR1
    (logrotate) the dump lands in the new error log file, not in the renamed one."""
    error_log = workdir / "error.log"
    rotated = workdir / "error.log.1"
    srv = server(["--workers", "1", "--error-logfile", str(error_log)], app="stuck_app:app")
    pid = srv.wait_workers(1)[0]
    assert wait_for(lambda: fds_on(pid, error_log) >= 2, 10)  # the handler's and the dump's
    error_log.rename(rotated)
    srv.signal(signal.SIGUSR1)
    assert wait_for(lambda: fds_on(pid, error_log) >= 2 and not fds_on(pid, rotated), 10)
    os.kill(pid, signal.SIGPWR)
    assert wait_for(lambda: "(most recent call first):\n" in error_log.read_text(), 10)
    assert f'File "{REPO}/monoceros/workers/sync.py", line ' in error_log.read_text()
    assert "most recent call first" not in rotated.read_text()
    assert srv.get_ok("/pid") == str(pid).encode() and srv.workers() == [pid]
