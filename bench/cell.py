"""One cell: start the server and nginx, check the answer, warm up, measure with wrk, stop all."""

from __future__ import annotations

import http.client
import os
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import nginx, procs, procstat
from .report import CellResult
from .scenarios import Scenario, WrongAnswer
from .servers import APPS, HOST, Address, Server
from .wrk import WrkResult, parse_wrk


@dataclass(frozen=True)
class Settings:
    """What every cell of a run shares."""

    nginx: str
    wrk: str
    duration: int
    warmup: int
    connections: int
    threads: int
    listen: str  # "unix" or "tcp"
    start_timeout: float
    wrk_timeout: str


class CellFailed(Exception):
    """The cell cannot be measured; the message says why."""


def _tail(path: Path, size: int = 400) -> str:
    """The end of a log file, on one line."""
    try:
        return " ".join(path.read_text(errors="replace")[-size:].split())
    except OSError:
        return ""


def _tracebacks(path: Path, offset: int) -> int:
    """Tracebacks a server logged from byte offset on."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().count(b"Traceback (most recent call last)")
    except OSError:
        return 0


def _check(
    sc: Scenario, port: int, timeout: float, server: subprocess.Popen[bytes], log: Path
) -> str:
    """Check the answer once, retrying (bounded) while the app is still loading: 502 or refused."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return sc.check(HOST, port, timeout=10)
        except (OSError, http.client.HTTPException, WrongAnswer) as exc:
            loading = not isinstance(exc, WrongAnswer) or "status 502" in str(exc)
            if server.poll() is not None:
                raise CellFailed(f"server exited ({server.returncode}): {_tail(log)}") from None
            if not loading or time.monotonic() > deadline:
                raise CellFailed(f"wrong answer: {exc}; server log: {_tail(log)}") from None
            time.sleep(0.1)


def _wrk(s: Settings, sc: Scenario, url: str, seconds: int, script: Path | None) -> WrkResult:
    """Run wrk for seconds against url and parse its output (CellFailed when it did not run)."""
    connections = min(s.connections, sc.max_connections or s.connections)
    argv = [
        s.wrk,
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        s.wrk_timeout,
    ]
    if script is not None:
        argv += ["-s", str(script)]
    done = subprocess.run([*argv, url], capture_output=True, text=True, timeout=seconds + 60)
    try:
        return parse_wrk(done.stdout)
    except ValueError:
        raise CellFailed(f"wrk failed ({done.returncode}): {done.stderr.strip()[-300:]}") from None


def run_cell(
    s: Settings,
    workdir: Path,
    server: Server,
    tool: list[str],
    protocol: str,
    sc: Scenario,
    rnd: int,
) -> CellResult:
    """Measure one server / protocol / scenario once; failures are in the result, never raised."""
    res = CellResult(server.name, protocol, sc.name, rnd)
    folder = Path(tempfile.mkdtemp(prefix=f"{server.name}-{protocol}-{sc.name}-", dir=workdir))
    folder.chmod(0o755)  # nginx's worker may run as another user and must reach the socket
    log = folder / "server.log"
    backend = front = None
    try:
        where = (
            Address(path=str(folder / "app.sock"))
            if s.listen == "unix"
            else Address(port=procs.free_port())
        )
        argv = server.command(protocol, f"{server.iface}_apps:{sc.app}", where, tool, s.threads)
        res.command = shlex.join(argv)
        env = dict(
            os.environ,
            PYTHONDONTWRITEBYTECODE="1",
            PYTHONPATH=os.pathsep.join(p for p in (str(APPS), os.environ.get("PYTHONPATH")) if p),
        )
        backend = procs.start(argv, log, cwd=APPS, env=env)
        try:
            procs.wait_listening(backend, s.start_timeout, path=where.path, port=where.port)
        except procs.StartError as exc:
            raise CellFailed(f"server did not start: {exc}; log: {_tail(log)}") from None
        if where.path:
            os.chmod(where.path, 0o666)
        res.rest_rss = procs.settled_rss(backend.pid)

        port = procs.free_port()
        conf = folder / "nginx.conf"
        conf.write_text(nginx.render(folder, port, protocol, where.nginx_target))
        front = procs.start(
            [
                s.nginx,
                "-p",
                str(folder),
                "-e",
                str(folder / "nginx-error.log"),
                "-c",
                str(conf),
                "-g",
                "daemon off;",
            ],
            folder / "nginx.out",
        )
        try:
            procs.wait_listening(front, 15, port=port)
        except procs.StartError as exc:
            raise CellFailed(
                f"nginx did not start: {exc}; {_tail(folder / 'nginx-error.log')}"
            ) from None

        res.verified = _check(sc, port, s.start_timeout, backend, log)
        url = f"http://{HOST}:{port}{sc.path}"
        lua = sc.wrk_script()
        script = folder / "request.lua" if lua else None
        if script is not None and lua is not None:
            script.write_text(lua)
        workers = procstat.worker_pids(backend.pid, procstat.read_table())
        hwm_before = {pid: procstat.read_hwm_bytes(pid) for pid in workers}
        sampler = procs.RssSampler(backend.pid).start()
        try:
            if s.warmup > 0:
                warm = _wrk(s, sc, url, s.warmup, script)
                if warm.errors:
                    res.warnings = f"warm-up: {warm.error_text()}"
            log_offset = log.stat().st_size
            before, m0, t0 = procstat.read_table(), procstat.read_machine(), time.monotonic()
            result = _wrk(s, sc, url, s.duration, script)
            after, m1, t1 = procstat.read_table(), procstat.read_machine(), time.monotonic()
        finally:
            peak = sampler.stop()
        # the kernel's high-water mark catches a peak between two samples, when it rose under load
        grown = [
            h
            for pid in sampler.pids
            if (h := procstat.read_hwm_bytes(pid)) > hwm_before.get(pid, 0)
        ]
        res.peak_rss = max([peak, *grown])
        res.requests, res.rps = result.requests, result.rps
        res.p50_ms, res.p99_ms = result.p50_ms, result.p99_ms
        res.errors, res.error_text = result.errors, result.error_text()
        res.server_cpu_s = procstat.window_cpu_seconds(backend.pid, before, after)
        res.nginx_cpu_s = procstat.window_cpu_seconds(front.pid, before, after)
        res.busy_cores = (m1.busy - m0.busy) / procstat.HZ / (t1 - t0)
        tracebacks = _tracebacks(log, log_offset)
        if tracebacks:
            res.warnings = "; ".join(
                x for x in (res.warnings, f"{tracebacks} tracebacks logged") if x
            )
        if backend.poll() is not None:
            raise CellFailed(f"server died under load ({backend.returncode}): {_tail(log)}")
        try:
            sc.check(HOST, port, timeout=10)
        except (OSError, http.client.HTTPException, WrongAnswer) as exc:
            res.errors += 1
            res.error_text = "; ".join(x for x in (res.error_text, f"check after load: {exc}") if x)
        res.status = "ok"
    except CellFailed as exc:
        res.reason = str(exc)
    except subprocess.TimeoutExpired as exc:
        res.reason = f"timed out: {exc}"
    finally:
        if front is not None:
            procs.stop(front)
        if backend is not None:
            procs.stop(backend, server.stop)
    return res
