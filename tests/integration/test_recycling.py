"""Workers recycled for their memory (--max-worker-memory) and their age (--max-worker-lifetime)
under steady load through real nginx uwsgi_pass: no request may fail, the replacement boots
before the old worker stops, one worker at a time, and the restarts are counted by reason."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Nginx, Server, free_port, read_response, wait_for
from load_support import Load
from uwsgi_support import nginx_uwsgi_params

KINDS = {
    "sync": (["-k", "sync"], "app:app"),
    "gthread": (["-k", "gthread", "--threads", "4"], "app:app"),
    "asgi": (["-k", "asgi"], "asgi_app:app"),
}
#: the memory limit of the memory tests, MiB (a fresh worker of any kind uses 20-30 MiB)
LIMIT = 100
#: what a /grow or /spike request takes on top: past the limit
OVER = 120
_SAMPLE = re.compile(r"^(\w+)(?:\{(.*)\})? (\S+)$")


def _get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: stats\r\n\r\n".encode())
        status, _, body = read_response(s)
    assert status == 200
    return body


def _booted(port: int) -> int:
    """Workers that finished booting, as the master's /stats says."""
    return sum(1 for w in json.loads(_get(port, "/stats"))["workers"] if w["booted"])


def _metrics(port: int) -> dict[str, float]:
    out = {}
    for line in _get(port, "/metrics").decode().splitlines():
        m = _SAMPLE.match(line)
        if m:
            out[f"{m[1]}{{{m[2] or ''}}}"] = float(m[3])
    return out


def _restarts(port: int, reason: str) -> float:
    return _metrics(port)[f'monoceros_worker_restarts_total{{reason="{reason}"}}']


def _responses(port: int) -> float:
    """Every response the server counted, live and departed workers together."""
    return sum(v for k, v in _metrics(port).items() if k.startswith("monoceros_requests_total"))


def _start(
    server: Callable[..., Server],
    nginx: Callable[..., Nginx],
    workdir: Path,
    kind: str,
    *extra: str,
    env: dict[str, str] | None = None,
) -> tuple[Server, Nginx, int]:
    """Two workers on a uwsgi UNIX socket behind nginx, with a stats listener."""
    args, app = KINDS[kind]
    sock = workdir / "recycle.sock"
    stats_port = free_port()
    srv = server(
        [
            "--protocol",
            "uwsgi",
            "-w",
            "2",
            "--stats-bind",
            f"127.0.0.1:{stats_port}",
            *args,
            *extra,
        ],
        app=app,
        bind=f"unix:{sock}",
        wait=False,
        env={"HOLD_DIR": str(workdir), **(env or {})},
    )
    ngx = nginx(
        f"location / {{ include {nginx_uwsgi_params()}; uwsgi_pass backend; }}", f"unix:{sock}"
    )
    assert wait_for(lambda: _ok(ngx, "/version") and _booted(stats_port) == 2, 20), srv.log()
    return srv, ngx, stats_port


def _ok(ngx: Nginx, path: str) -> bool:
    try:
        return ngx.request(path, timeout=5)[0] == 200
    except OSError:
        return False


def _in_log(srv: Server, pattern: str) -> bool:
    return re.search(pattern, srv.log()) is not None


def test_memory_recycling_forgives_a_spike_and_replaces_a_grown_worker(
    server: Callable[..., Server], nginx: Callable[..., Nginx], workdir: Path
) -> None:
    """The master samples the workers' memory from /proc and decides; the replacement is the
    one of lifetime recycling, tested under load for every worker kind below: one kind here."""
    srv, ngx, stats_port = _start(
        server, nginx, workdir, "sync", "--max-worker-memory", str(LIMIT), "--log-level", "debug"
    )
    load = Load(ngx.port)
    try:
        # a spike: above the limit at one or two samples, then back under it
        spike: list[object] = []
        thread = threading.Thread(
            target=lambda: spike.append(ngx.request(f"/spike?mib={OVER}&name=spike")), daemon=True
        )
        thread.start()
        assert wait_for((workdir / "spike.pid").exists, 15), srv.log()
        spiker = int((workdir / "spike.pid").read_text())
        above = rf"Worker \(pid:{spiker}\) resident memory [\d.]+ MiB above max_worker_memory {LIMIT} MiB \(sample 1 of 3\)"
        assert wait_for(lambda: _in_log(srv, above), 10), srv.log()
        (workdir / "spike.go").write_text("go")
        thread.join(15)
        assert spike and spike[0][0] == 200, spike  # type: ignore[index]
        forgiven = rf"Worker \(pid:{spiker}\) resident memory back to [\d.]+ MiB, under max_worker_memory {LIMIT} MiB after [12] sample\(s\) above it: forgiven"
        assert wait_for(lambda: _in_log(srv, forgiven), 10), srv.log()
        assert "replacing it" not in srv.log()
        assert spiker in srv.workers()

        # a worker that keeps its memory: replaced, its successor booted first
        status, _, body = ngx.request(f"/grow?mib={OVER}")
        assert status == 200
        grown = int(body)
        assert load.served_more(20, 20), srv.log()
        replacing = rf"\[WARNING\] Worker \(pid:{grown}\) resident memory [\d.]+ MiB above max_worker_memory {LIMIT} MiB at 3 samples in a row: replacing it \(memory\)"
        assert wait_for(lambda: _in_log(srv, replacing), 15), srv.log()
        stopping = (
            rf"Worker \(pid:(\d+)\) booted; stopping worker \(pid:{grown}\) gracefully \(memory\)"
        )
        assert wait_for(lambda: _in_log(srv, stopping), 15), srv.log()
        assert wait_for(lambda: grown not in srv.workers() and len(srv.workers()) == 2, 15)
        assert wait_for(lambda: _restarts(stats_port, "memory") == 1, 10), srv.log()
        log = srv.log()
        successor = int(re.findall(stopping, log)[0])
        assert successor in srv.workers()
        # the successor was forked after the verdict, the old worker left after its boot
        assert (
            log.index(f"Booting worker with pid: {successor}") > re.search(replacing, log).start()
        )  # type: ignore[union-attr]
        assert load.served_more(30, 20), srv.log()  # the new pair serves
    finally:
        load.stop()
    assert load.errors == [], load.errors[:5]
    assert load.count > 50
    # the departed worker's responses stay in the totals (the spike and the grow requests too)
    assert _responses(stats_port) >= load.count + 2
    assert _restarts(stats_port, "crash") == 0
    assert "[error]" not in ngx.error_log(), ngx.error_log()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_lifetime_recycling_replaces_workers_one_at_a_time(
    server: Callable[..., Server], nginx: Callable[..., Nginx], workdir: Path, kind: str
) -> None:
    srv, ngx, stats_port = _start(server, nginx, workdir, kind, "--max-worker-lifetime", "1")
    first = set(srv.workers())
    counts: set[int] = set()  # how many workers ran, seen at each look

    def replaced(n: int) -> bool:
        counts.add(len(srv.workers()))
        return _restarts(stats_port, "lifetime") >= n

    load = Load(ngx.port)
    try:
        # every worker of the first pair replaced, and one more after that
        assert wait_for(lambda: replaced(3), 25), srv.log()
        assert load.served_more(30, 20), srv.log()
    finally:
        load.stop()
    assert load.errors == [], load.errors[:5]
    assert load.count > 50
    assert not first & set(srv.workers())
    # two workers, and a third while one is replaced: never fewer, never two replaced at once
    assert counts <= {2, 3} and 3 in counts, counts
    # one at a time: each verdict is followed by its successor's boot and its TERM before the
    # next verdict, never two workers leaving at once
    events = re.findall(
        r"Worker \(pid:(\d+)\) reached max_worker_lifetime \(1 s\) after [\d.]+ s: replacing it"
        r"|stopping worker \(pid:(\d+)\) gracefully \(lifetime\)",
        srv.log(),
    )
    assert len(events) >= 6, srv.log()
    for verdict, stop in zip(events[0::2], events[1::2], strict=False):
        assert verdict[0] and stop[1] == verdict[0], events
    assert "(memory)" not in srv.log()
    assert _restarts(stats_port, "crash") == 0
    assert "[error]" not in ngx.error_log(), ngx.error_log()


def test_a_successor_that_cannot_boot_leaves_the_old_worker_serving(
    server: Callable[..., Server], nginx: Callable[..., Nginx], workdir: Path
) -> None:
    broken = workdir / "broken"
    srv, ngx, stats_port = _start(
        server, nginx, workdir, "sync", "--max-worker-lifetime", "2",
        env={"APP_BREAK_IF": str(broken)},
    )  # fmt: skip
    first = set(srv.workers())
    broken.touch()  # the application no longer imports: every successor fails to boot
    load = Load(ngx.port)
    try:
        failed = (
            r"Worker \(pid:\d+\), the replacement of worker \(pid:(\d+)\) \(lifetime\), could not "
            r"load the application \(exit status 4\) before it booted; worker \(pid:\d+\) keeps "
            r"serving; recycling resumes in 2 s"
        )
        assert wait_for(lambda: _in_log(srv, failed), 15), srv.log()
        kept = int(re.findall(failed, srv.log())[0])
        assert load.served_more(20, 10), srv.log()
        assert first <= set(srv.workers()) and kept in first  # the master did not give up
        broken.unlink()  # fixed: the next try, after the pause, succeeds
        assert wait_for(lambda: not first & set(srv.workers()), 25), srv.log()
        assert load.served_more(20, 10), srv.log()
    finally:
        load.stop()
    assert load.errors == [], load.errors[:5]
    assert srv.proc.poll() is None
    assert len(srv.workers()) in (2, 3)  # a third while one is replaced
    assert _restarts(stats_port, "lifetime") >= 2
    assert "RuntimeError: app.py broken on purpose" in srv.log()


def test_the_old_worker_serves_until_its_successor_booted(
    server: Callable[..., Server], workdir: Path
) -> None:
    # one worker; its successor's import hangs at a gate until `timeout` aborts it: all that
    # time the recycled worker serves, and it is told to stop only by a successor that booted
    gate = workdir / "gate"
    srv = server(
        ["-w", "1", "--max-worker-lifetime", "2", "--timeout", "1"],
        env={"APP_IMPORT_GATE": str(gate)},
    )
    old = int(srv.get_ok("/pid"))
    gate.touch()
    replacing = rf"Worker \(pid:{old}\) reached max_worker_lifetime \(2 s\)"
    assert wait_for(lambda: _in_log(srv, replacing), 15), srv.log()
    hung = r"WORKER TIMEOUT \(pid:(\d+)\)"
    assert wait_for(lambda: _in_log(srv, hung), 15), srv.log()
    assert "stopping worker" not in srv.log()
    assert int(srv.get_ok("/pid")) == old
    failed = (
        rf"Worker \(pid:\d+\), the replacement of worker \(pid:{old}\) \(lifetime\), was "
        rf"killed by SIGKILL before it booted; worker \(pid:{old}\) keeps serving"
        rf"|Worker \(pid:\d+\), the replacement of worker \(pid:{old}\) \(lifetime\), "
        rf"exited with status 1 before it booted; worker \(pid:{old}\) keeps serving"
    )
    assert wait_for(lambda: _in_log(srv, failed), 15), srv.log()
    assert srv.workers() == [old]
    gate.unlink()
    stopping = rf"Worker \(pid:(\d+)\) booted; stopping worker \(pid:{old}\) gracefully"
    assert wait_for(lambda: _in_log(srv, stopping), 15), srv.log()
    successor = int(re.findall(stopping, srv.log())[0])
    assert wait_for(lambda: old not in srv.workers(), 15), srv.log()
    assert int(srv.get_ok("/pid")) == successor
