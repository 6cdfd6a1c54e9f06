"""The master's signals with requests in flight, through the real command."""

from __future__ import annotations

import copy
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import (
    APPS,
    Server,
    exited,
    slow_target,
    term_with_queued,
    wait_for,
    wait_started,
)


def in_background(fn: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as exc:  # recorded for the assertion
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_term_lets_the_request_in_flight_finish(server: Callable[..., Server]) -> None:
    srv = server(["--workers", "1", "--graceful-timeout", "10"])
    target, mark = slow_target(srv, 1.5)
    t, out = in_background(lambda: srv.request(target, timeout=10))
    wait_started(mark)
    srv.signal(signal.SIGTERM)
    t.join(10)
    assert out and out[0][:1] == (200,) and out[0][2] == b"slept", out  # type: ignore[index]
    assert srv.wait_exit(10) == 0
    log = srv.log()
    assert "Handling signal: term" in log and "Shutting down: Master" in log


def test_term_serves_the_connections_already_queued(server: Callable[..., Server]) -> None:
    """Connections waiting in the listen queue at TERM are served, not reset (gunicorn resets
    them, and nginx answers 502 without retrying a POST)."""
    srv = server(["--workers", "1", "--graceful-timeout", "10"])
    results = term_with_queued(
        srv,
        lambda target: srv.request(target, timeout=15),
        lambda: srv.request("/echo", "POST", b"x" * 1000, timeout=15),
        count=5,
    )
    assert all(isinstance(r, tuple) and r[0] == 200 for r in results), results
    assert srv.wait_exit(15) == 0


@pytest.mark.parametrize("kind", [[], ["-k", "gthread", "--threads", "4"]], ids=["sync", "gthread"])
def test_term_kills_what_outlives_graceful_timeout(
    server: Callable[..., Server], kind: list[str]
) -> None:
    srv = server([*kind, "--workers", "1", "--graceful-timeout", "1"])
    target, mark = slow_target(srv, 30)
    in_background(lambda: srv.request(target, timeout=30))
    wait_started(mark)
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(10) == 0
    assert time.monotonic() - t0 < 6  # graceful 1 s + kill, far from the request's 30 s


def test_int_and_quit_stop_fast(server: Callable[..., Server]) -> None:
    for sig in (signal.SIGINT, signal.SIGQUIT):
        srv = server(["--workers", "2", "--graceful-timeout", "30"])
        target, mark = slow_target(srv, 20)
        t, out = in_background(lambda srv=srv, target=target: srv.request(target, timeout=30))
        wait_started(mark)
        srv.signal(sig)
        assert srv.wait_exit(10) == 0  # the request's 20 s and graceful 30 s were not awaited
        t.join(10)
        assert out and isinstance(out[0], Exception)  # the in-flight request was cut


def test_ttin_ttou_change_the_worker_count(server: Callable[..., Server]) -> None:
    srv = server(["--workers", "2"])
    srv.wait_workers(2)
    # requests in flight while the count changes: a retired worker finishes its request
    target, mark = slow_target(srv, 1.5)
    t, out = in_background(lambda: srv.request(target, timeout=10))
    wait_started(mark)
    srv.signal(signal.SIGTTIN)
    srv.wait_workers(3)
    srv.signal(signal.SIGTTOU)
    srv.wait_workers(2)  # identical signals sent back to back may merge into one: wait
    srv.signal(signal.SIGTTOU)
    srv.wait_workers(1)
    srv.signal(signal.SIGTTOU)  # never below one
    assert wait_for(lambda: srv.log().count("Handling signal: ttou") == 3, 10), srv.log()
    assert srv.wait_workers(1) and len(srv.workers()) == 1
    assert srv.get_ok("/") == b"Hello, World!"
    t.join(10)
    assert out and out[0][:1] == (200,), out  # type: ignore[index]


def test_dead_worker_is_replaced(server: Callable[..., Server]) -> None:
    srv = server(["--workers", "2"])
    victim = srv.wait_workers(2)[0]
    os.kill(victim, signal.SIGKILL)
    assert wait_for(lambda: victim not in srv.workers() and len(srv.workers()) == 2, 10)
    assert srv.get_ok("/") == b"Hello, World!"
    assert f"Worker (pid:{victim}) was sent SIGKILL" in srv.log()


def test_hup_replaces_workers_without_failing_a_request(
    server: Callable[..., Server], workdir: Path
) -> None:
    conf = workdir / "monoceros.conf.py"
    conf.write_text("workers = 2\nraw_env = ['APP_VERSION=v1']\n")
    srv = server(["-c", str(conf)])
    old = set(srv.wait_workers(2))
    assert srv.get_ok("/version") == b"v1"
    errors: list[object] = []
    stop = threading.Event()

    def load() -> None:
        for _ in range(2000):
            if stop.is_set():
                return
            try:
                st, _, _ = srv.request("/pid", timeout=10)
                if st != 200:
                    errors.append(st)
            except Exception as exc:
                errors.append(exc)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    conf.write_text("workers = 3\nraw_env = ['APP_VERSION=v2']\n")
    for i in range(1, 4):  # three HUPs under load, each handled before the next is sent
        srv.signal(signal.SIGHUP)
        assert wait_for(lambda i=i: srv.log().count("Handling signal: hup") == i, 10), srv.log()
    assert wait_for(lambda: len(srv.workers()) == 3 and not old & set(srv.workers()), 15)
    stop.set()
    t.join(20)
    assert errors == []
    assert srv.get_ok("/version") == b"v2"
    assert "Handling signal: hup" in srv.log()


def test_hup_with_a_broken_app_keeps_the_old_workers(
    server: Callable[..., Server], workdir: Path
) -> None:
    conf = workdir / "c.py"
    conf.write_text("wsgi_app = 'app:app'\n")
    srv = server(["-c", str(conf), "--workers", "1", "--chdir", str(APPS)], app="")
    old = srv.wait_workers(1)
    conf.write_text("wsgi_app = 'broken_import:app'\n")
    srv.signal(signal.SIGHUP)
    assert wait_for(lambda: "Reload abandoned" in srv.log(), 15), srv.log()
    time.sleep(0.5)  # an idle period on purpose: nothing replaces the old workers after it
    assert srv.workers() == old and srv.proc.poll() is None
    assert srv.get_ok("/") == b"Hello, World!"


def test_usr1_reopens_log_files(server: Callable[..., Server], workdir: Path) -> None:
    access = workdir / "access.log"
    srv = server(["--workers", "1", "--access-logfile", str(access)])
    srv.get_ok("/first")
    assert wait_for(lambda: access.exists() and "/first" in access.read_text(), 5)
    access.rename(workdir / "access.log.1")
    target, mark = slow_target(srv, 1)
    t, out = in_background(lambda: srv.request(target, timeout=10))
    wait_started(mark)  # in flight
    srv.signal(signal.SIGUSR1)
    t.join(10)
    assert out and out[0][:1] == (200,), out  # type: ignore[index]
    srv.get_ok("/second")
    assert wait_for(lambda: access.exists() and "/second" in access.read_text(), 5), srv.log()
    assert "/second" not in (workdir / "access.log.1").read_text()


def test_hung_worker_is_aborted_and_replaced(server: Callable[..., Server]) -> None:
    srv = server(["--workers", "1", "--timeout", "1"])  # the least: the test waits it out
    victim = srv.wait_workers(1)[0]
    in_background(lambda: srv.request("/slow?s=60", timeout=60))
    assert wait_for(lambda: "WORKER TIMEOUT" in srv.log(), 15), srv.log()
    assert wait_for(lambda: len(srv.workers()) == 1 and victim not in srv.workers(), 15)
    assert srv.get_ok("/") == b"Hello, World!"
    assert f"WORKER TIMEOUT (pid:{victim})" in srv.log()


def test_max_requests_recycles_the_worker(server: Callable[..., Server]) -> None:
    srv = server(["--workers", "1", "--max-requests", "4"])  # wait_ready made one request
    first = srv.get_ok("/pid")
    assert {srv.get_ok("/pid") for _ in range(2)} == {first}
    assert wait_for(lambda: srv.get_ok("/pid") != first, 10)
    assert "Autorestarting worker after current request." in srv.log()


def test_pidfile_written_and_removed(server: Callable[..., Server], workdir: Path) -> None:
    pidfile = workdir / "m.pid"
    srv = server(["--pid", str(pidfile)])
    assert pidfile.read_text().strip() == str(srv.pid)
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(10) == 0
    assert not pidfile.exists()


def test_app_that_fails_to_import_stops_the_master(server: Callable[..., Server]) -> None:
    srv = server(["--workers", "2"], app="broken_import:app", wait=False)
    assert srv.wait_exit(20) == 4
    log = srv.log()
    assert "this module is broken on purpose" in log
    assert log.count("Booting worker") <= 2  # no fork loop


def test_preload_loads_in_the_master(server: Callable[..., Server]) -> None:
    srv = server(["--preload", "--workers", "1"], app="broken_import:app", wait=False)
    assert srv.wait_exit(20) == 4
    assert "Booting worker" not in srv.log()


def test_factory_with_literal_arguments(server: Callable[..., Server]) -> None:
    srv = server(app="app:factory('Bonjour')")
    assert srv.get_ok("/") == b"Bonjour"


def test_apps_dir_is_the_chdir() -> None:
    assert (APPS / "app.py").exists()


def test_usr2_upgrade_then_winch_and_term_without_failing_a_request(
    server: Callable[..., Server], workdir: Path
) -> None:
    conf = workdir / "up.conf.py"
    conf.write_text("workers = 2\nraw_env = ['APP_VERSION=v1']\n")
    sock = workdir / "up.sock"
    pidfile = workdir / "up.pid"
    srv = server(["-c", str(conf), "--pid", str(pidfile)], bind=f"unix:{sock}")
    old_master = srv.pid
    old_workers = set(srv.wait_workers(2))
    errors: list[object] = []
    seen: set[bytes] = set()
    served: list[bytes] = []
    stop = threading.Event()

    def load() -> None:
        for _ in range(5000):
            if stop.is_set():
                return
            try:
                st, _, body = srv.request("/version", timeout=10)
                if st != 200:
                    errors.append(st)
                seen.add(body)
                served.append(body)
            except Exception as exc:
                errors.append(exc)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    conf.write_text("workers = 2\nraw_env = ['APP_VERSION=v2']\n")  # the "deploy"
    srv.signal(signal.SIGUSR2)

    def new_master() -> int:
        kids = [p for p in srv.workers() if p not in old_workers]
        return kids[0] if kids else 0

    assert wait_for(
        lambda: (
            new_master() != 0
            and pidfile.exists()
            and pidfile.read_text().strip() == str(new_master())
        ),
        20,
    ), srv.log()
    master2 = new_master()
    assert (workdir / "up.pid.oldbin").read_text().strip() == str(old_master)
    from conftest import children_of

    assert wait_for(lambda: len(children_of(master2)) == 2, 20), srv.log()
    srv.signal(signal.SIGWINCH)  # old workers finish and leave
    assert wait_for(lambda: not old_workers & set(srv.workers()), 20), srv.log()
    srv.signal(signal.SIGTERM)  # the old master goes; the new one keeps the socket
    assert srv.wait_exit(20) == 0
    after_exit = len(served)
    assert wait_for(lambda: len(served) >= after_exit + 20, 20), srv.log()  # the new one alone
    stop.set()
    t.join(30)
    try:
        assert errors == []
        assert sock.exists()
        assert srv.request("/version")[2] == b"v2"
        assert b"v1" in seen and b"v2" in seen
    finally:
        os.kill(master2, signal.SIGTERM)
    assert wait_for(lambda: exited(master2), 20)
    assert not sock.exists()  # the new master removed it at its exit


def test_usr2_applies_a_changed_bind(server: Callable[..., Server], workdir: Path) -> None:
    from conftest import free_port

    port_a, port_b = free_port(), free_port()
    conf = workdir / "bind.conf.py"
    conf.write_text(f"bind = ['127.0.0.1:{port_a}']\n")
    srv = server(["-c", str(conf)], bind=f"127.0.0.1:{port_a}", bind_arg=False)
    old_workers = set(srv.wait_workers(1))
    conf.write_text(f"bind = ['127.0.0.1:{port_a}', '127.0.0.1:{port_b}']\n")
    srv.signal(signal.SIGUSR2)
    b = copy.copy(srv)  # a view of the same process group on the new address
    b.bind = f"127.0.0.1:{port_b}"
    assert wait_for(lambda: _answers(b), 20), srv.log()
    srv.signal(signal.SIGWINCH)
    assert wait_for(lambda: not old_workers & set(srv.workers()), 20)
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(20) == 0
    assert _answers(srv) and _answers(b)  # the new master serves both addresses


def _answers(srv: Server) -> bool:
    try:
        return srv.request("/", timeout=3)[0] == 200
    except OSError:
        return False


def _upgrade_serves(srv: Server) -> None:
    """USR2: a new master starts and boots a worker; then it alone is left serving."""
    from conftest import children_of

    old_workers = set(srv.wait_workers(1))
    srv.signal(signal.SIGUSR2)

    def new_master() -> int:
        kids = [p for p in srv.workers() if p not in old_workers]
        return kids[0] if kids else 0

    assert wait_for(lambda: new_master() != 0 and len(children_of(new_master())) == 1, 20), (
        srv.log()
    )
    master2 = new_master()
    try:
        srv.signal(signal.SIGWINCH)
        assert wait_for(lambda: not old_workers & set(srv.workers()), 20), srv.log()
        assert srv.request("/pid")[0] == 200  # served by the new master's worker
        assert "exited with status" not in srv.log()
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(20) == 0
    finally:
        os.kill(master2, signal.SIGTERM)
    assert wait_for(lambda: exited(master2), 20)


def test_usr2_from_a_directory_holding_a_monoceros_folder(
    server: Callable[..., Server], workdir: Path
) -> None:
    """The new master runs the installed script: ./monoceros/ cannot shadow the package."""
    shadow = workdir / "monoceros"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise SystemExit('imported the working directory')\n")
    (shadow / "__main__.py").write_text("raise SystemExit('imported the working directory')\n")
    srv = server(bind=f"unix:{workdir / 'up.sock'}")
    _upgrade_serves(srv)


def test_usr2_when_started_as_python_dash_m(server: Callable[..., Server], workdir: Path) -> None:
    """The new master imports the package from where the old one's came from."""
    import sys

    srv = server(bind=f"unix:{workdir / 'm.sock'}", program=[sys.executable, "-m", "monoceros"])
    _upgrade_serves(srv)
