"""What TLS costs monoceros, measured with wrk straight at the server (no proxy), one worker each.

Usage, from the repository root: ``.venv/bin/python bench/tls.py [--duration 10] [--rounds 3]``
(or ``python -m bench.tls``). Two comparisons, each a Markdown table on stdout (progress on
stderr), the same certificate for every server (made with ``openssl`` for the run):

- ``asgi-keepalive``: the asgi worker against uvicorn (uvloop, httptools) over HTTPS with
  keep-alive (``wrk -c N https://...``): the cost of encryption on a stream of requests.
- ``sync-per-connection``: the sync worker with a new connection per request (``Connection:
  close``; every sync response closes anyway), over TLS and plain HTTP, and gunicorn's sync
  worker over TLS when it is installed: the cost of a handshake per request.

The figure to compare is the **server's CPU time per request** (utime + stime of its whole
process tree over the measured window, from ``/proc``, divided by the requests wrk completed),
read as a ratio against the reference in the same run (uvicorn; the plain sync worker). Rounds
are interleaved and the order of the servers rotates each round; the tables show medians. The
peers come from ``bench/setup.sh``'s virtualenv (``PEERS_BIN``), as for ``bench/run.py``.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import shlex
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

if not __package__:  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import procs, procstat
from bench.servers import APPS, HOST
from bench.wrk import WrkResult, parse_wrk

DEFAULT_PEERS = Path.home() / ".cache" / "monoceros-bench" / "peers" / "bin"
SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")
EXIT_USAGE, EXIT_ERRORS = 2, 3
HELLO = b"Hello, World!"


def log(message: str) -> None:
    """Progress, on stderr."""
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Contender:
    """One server of a comparison: its command (tokens formatted with ``port``, ``cert``,
    ``key``) and whether it serves TLS."""

    name: str
    comparison: str
    tool: str  # "monoceros", or an executable looked up in PEERS_BIN, then PATH
    tokens: tuple[str, ...]
    tls: bool
    reference: bool = False


_MONO = ("--bind", f"{HOST}:{{port}}", "--workers", "1", "--log-level", "warning")
_MONO_TLS = ("--certfile", "{cert}", "--keyfile", "{key}")

CONTENDERS: tuple[Contender, ...] = (
    Contender(
        "monoceros-asgi",
        "asgi-keepalive",
        "monoceros",
        ("asgi_apps:hello", *_MONO, "--worker-class", "asgi", *_MONO_TLS),
        tls=True,
    ),
    Contender(
        "uvicorn",
        "asgi-keepalive",
        "uvicorn",
        (
            "asgi_apps:hello",
            "--host",
            HOST,
            "--port",
            "{port}",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--lifespan",
            "on",
            "--no-access-log",
            "--log-level",
            "warning",
            "--ssl-certfile",
            "{cert}",
            "--ssl-keyfile",
            "{key}",
        ),
        tls=True,
        reference=True,
    ),
    Contender(
        "monoceros-sync-tls",
        "sync-per-connection",
        "monoceros",
        ("wsgi_apps:hello", *_MONO, "--worker-class", "sync", *_MONO_TLS),
        tls=True,
    ),
    Contender(
        "monoceros-sync-plain",
        "sync-per-connection",
        "monoceros",
        ("wsgi_apps:hello", *_MONO, "--worker-class", "sync"),
        tls=False,
        reference=True,
    ),
    Contender(
        "gunicorn-sync-tls",
        "sync-per-connection",
        "gunicorn",
        (
            "wsgi_apps:hello",
            "--bind",
            f"{HOST}:{{port}}",
            "--workers",
            "1",
            "--worker-class",
            "sync",
            "--log-level",
            "warning",
            "--no-control-socket",
            *_MONO_TLS,
        ),
        tls=True,
    ),
)
COMPARISONS = ("asgi-keepalive", "sync-per-connection")


@dataclass
class Cell:
    """One contender measured once."""

    name: str
    comparison: str
    round: int
    status: str = "failed"
    reason: str = ""
    command: str = ""
    requests: int = 0
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: int = 0
    error_text: str = ""
    server_cpu_s: float = 0.0
    wrk_cpu_s: float = 0.0
    us_per_request: float | None = None
    extra: dict[str, str] = field(default_factory=dict)


class CellFailed(Exception):
    """The cell cannot be measured; the message says why."""


# ------------------------------------------------------------------------------ certificates


def make_certificate(folder: Path, openssl: str, key_type: str) -> tuple[str, str, str]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key) paths."""
    key_args = (
        ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        if key_type == "ec"
        else ["-newkey", "rsa:2048"]
    )

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True, timeout=60)

    run(
        "req",
        "-x509",
        *key_args,
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=bench CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=keyCertSign",
    )
    run(
        "req",
        *key_args,
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    )
    return str(folder / "ca.pem"), str(folder / "server.pem"), str(folder / "server.key")


# ------------------------------------------------------------------------------ one cell


def _tail(path: Path, size: int = 400) -> str:
    try:
        return " ".join(path.read_text(errors="replace")[-size:].split())
    except OSError:
        return ""


def check_answer(port: int, tls: bool, ca: str, timeout: float) -> None:
    """One GET / answered 200 with the hello body; retried (bounded) while the server starts."""
    deadline = time.monotonic() + timeout
    while True:
        conn: http.client.HTTPConnection
        if tls:
            context = ssl.create_default_context(cafile=ca)
            conn = http.client.HTTPSConnection(HOST, port, context=context, timeout=10)
        else:
            conn = http.client.HTTPConnection(HOST, port, timeout=10)
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            body = resp.read()
            if resp.status == 200 and body == HELLO:
                return
            raise CellFailed(f"wrong answer: {resp.status} {body[:80]!r}")
        except (OSError, http.client.HTTPException) as exc:
            if time.monotonic() > deadline:
                raise CellFailed(f"no answer: {exc}") from None
            time.sleep(0.1)
        finally:
            conn.close()


def run_wrk(
    wrk: str, url: str, seconds: int, connections: int, close: bool
) -> tuple[WrkResult, float]:
    """wrk's result, and the CPU seconds wrk itself used."""
    argv = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if close:
        argv += ["-H", "Connection: close"]
    before = os.times()
    done = subprocess.run([*argv, url], capture_output=True, text=True, timeout=seconds + 60)
    after = os.times()
    used = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    try:
        return parse_wrk(done.stdout), used
    except ValueError:
        raise CellFailed(f"wrk failed ({done.returncode}): {done.stderr.strip()[-300:]}") from None


def run_cell(
    a: argparse.Namespace,
    contender: Contender,
    tool: list[str],
    certs: tuple[str, str, str],
    workdir: Path,
    rnd: int,
) -> Cell:
    """Measure one contender once; failures are in the result, never raised."""
    cell = Cell(contender.name, contender.comparison, rnd)
    ca, cert, key = certs
    port = procs.free_port()
    folder = Path(tempfile.mkdtemp(prefix=f"{contender.name}-", dir=workdir))
    server_log = folder / "server.log"
    values = {"port": str(port), "cert": cert, "key": key}
    argv = [*tool, *(t.format(**values) for t in contender.tokens)]
    cell.command = shlex.join(argv)
    env = dict(
        os.environ,
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONPATH=os.pathsep.join(p for p in (str(APPS), os.environ.get("PYTHONPATH")) if p),
    )
    server = None
    try:
        server = procs.start(argv, server_log, cwd=APPS, env=env)
        try:
            procs.wait_listening(server, a.start_timeout, port=port)
        except procs.StartError as exc:
            raise CellFailed(f"server did not start: {exc}; log: {_tail(server_log)}") from None
        check_answer(port, contender.tls, ca, a.start_timeout)
        url = f"{'https' if contender.tls else 'http'}://{HOST}:{port}/"
        close = contender.comparison == "sync-per-connection"
        if a.warmup > 0:
            run_wrk(a.wrk, url, a.warmup, a.connections, close)
        before = procstat.read_table()
        result, wrk_cpu = run_wrk(a.wrk, url, a.duration, a.connections, close)
        after = procstat.read_table()
        cell.requests, cell.rps = result.requests, result.rps
        cell.p50_ms, cell.p99_ms = result.p50_ms, result.p99_ms
        cell.errors, cell.error_text = result.errors, result.error_text()
        cell.server_cpu_s = procstat.window_cpu_seconds(server.pid, before, after)
        cell.wrk_cpu_s = wrk_cpu
        if result.requests:
            cell.us_per_request = cell.server_cpu_s / result.requests * 1e6
        if server.poll() is not None:
            raise CellFailed(f"server died under load ({server.returncode}): {_tail(server_log)}")
        check_answer(port, contender.tls, ca, 10)
        cell.status = "ok"
    except CellFailed as exc:
        cell.reason = str(exc)
    except subprocess.TimeoutExpired as exc:
        cell.reason = f"timed out: {exc}"
    finally:
        if server is not None:
            procs.stop(server, procs.signal.SIGTERM)
    return cell


# ------------------------------------------------------------------------------ the report


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def report(cells: list[Cell], contenders: list[Contender]) -> str:
    """A Markdown table per comparison: medians of the clean cells, ratio to the reference."""
    out: list[str] = []
    for comparison in COMPARISONS:
        members = [c for c in contenders if c.comparison == comparison]
        if not members:
            continue
        rows = []
        medians: dict[str, float | None] = {}
        for contender in members:
            ok = [c for c in cells if c.name == contender.name and c.status == "ok"]
            cpu = [c.us_per_request for c in ok if c.us_per_request is not None]
            medians[contender.name] = _median(cpu)
            rows.append((contender, ok, cpu))
        reference = next((medians[c.name] for c in members if c.reference), None)
        out += [
            f"### {comparison}",
            "",
            "| server | TLS | rounds | req/s | p50 ms | p99 ms | server µs/req (min-max) "
            "| vs reference | wrk µs/req | errors |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for contender, ok, cpu in rows:
            mid = medians[contender.name]
            ratio = f"{mid / reference:.2f}x" if mid is not None and reference else "-"
            spread = f"{_fmt(min(cpu))}-{_fmt(max(cpu))}" if cpu else "-"
            failed = [c.reason for c in cells if c.name == contender.name and c.status != "ok"]
            errors = sum(c.errors for c in ok)
            note = f"{errors}" + (f"; failed: {failed[0]}" if failed else "")
            out.append(
                f"| {contender.name}{' (ref)' if contender.reference else ''} "
                f"| {'yes' if contender.tls else 'no'} | {len(ok)} "
                f"| {_fmt(_median([c.rps for c in ok]), '.0f')} "
                f"| {_fmt(_median([c.p50_ms for c in ok]), '.2f')} "
                f"| {_fmt(_median([c.p99_ms for c in ok]), '.2f')} "
                f"| {_fmt(mid)} ({spread}) | {ratio} "
                f"| {_fmt(_median([c.wrk_cpu_s / c.requests * 1e6 for c in ok if c.requests]))} "
                f"| {note} |"
            )
        out.append("")
    return "\n".join(out)


# ------------------------------------------------------------------------------ main


def find_exe(name: str) -> str:
    """name on PATH or in the usual sbin folders ('' when absent)."""
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN)) or ""


def resolve_tool(contender: Contender, peers_bin: str, monoceros_cmd: str) -> list[str]:
    """The command prefix of a contender's server ([] when it is not installed)."""
    if contender.tool == "monoceros":
        if monoceros_cmd:
            return shlex.split(monoceros_cmd)
        if importlib.util.find_spec("monoceros") is None:
            return []
        return [sys.executable, "-m", "monoceros"]
    if peers_bin and os.access(Path(peers_bin) / contender.tool, os.X_OK):
        return [str(Path(peers_bin) / contender.tool)]
    found = shutil.which(contender.tool)
    return [found] if found else []


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--comparisons", default=",".join(COMPARISONS), help="comma list")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="measured seconds per cell")
    ap.add_argument("--warmup", type=int, default=2, help="unmeasured seconds of load before it")
    ap.add_argument("--connections", type=int, default=32, help="wrk -c")
    ap.add_argument(
        "--key",
        choices=("ec", "rsa"),
        default="ec",
        help="the certificate's key: P-256 or RSA 2048",
    )
    ap.add_argument("--start-timeout", type=float, default=30.0)
    ap.add_argument(
        "--peers-bin",
        default=os.environ.get("PEERS_BIN")
        or (str(DEFAULT_PEERS) if DEFAULT_PEERS.is_dir() else ""),
        help="folder with uvicorn and gunicorn [env PEERS_BIN]",
    )
    ap.add_argument(
        "--monoceros-cmd",
        default=os.environ.get("MONOCEROS_CMD", ""),
        help="command that starts monoceros [env MONOCEROS_CMD; default: this Python -m monoceros]",
    )
    ap.add_argument("--wrk", default=os.environ.get("WRK") or find_exe("wrk"))
    ap.add_argument("--openssl", default=find_exe("openssl"))
    ap.add_argument("--json", default="", help="also write every cell's figures to this file")
    a = ap.parse_args(argv)
    if a.rounds < 1 or a.duration < 1 or a.warmup < 0 or a.connections < 1:
        ap.error("--rounds, --duration and --connections must be positive, --warmup not negative")
    if not a.wrk or not a.openssl:
        ap.error("wrk and openssl are needed (apt-get install wrk openssl)")
    unknown = set(a.comparisons.split(",")) - set(COMPARISONS)
    if unknown:
        ap.error(f"unknown comparison(s): {', '.join(sorted(unknown))}")
    return a


def main(argv: list[str] | None = None) -> int:
    """Run every comparison's contenders for --rounds rounds; print the tables."""
    a = parse_args(argv)
    wanted = set(a.comparisons.split(","))
    contenders: list[tuple[Contender, list[str]]] = []
    for contender in CONTENDERS:
        if contender.comparison not in wanted:
            continue
        tool = resolve_tool(contender, a.peers_bin, a.monoceros_cmd)
        if tool:
            contenders.append((contender, tool))
        else:
            log(f"skipped {contender.name}: `{contender.tool}` is not installed (bench/setup.sh)")
    if not contenders:
        log("nothing to measure")
        return EXIT_USAGE
    per_cell = a.duration + a.warmup + 3
    log(
        f"{len(contenders)} servers x {a.rounds} rounds, about "
        f"{len(contenders) * a.rounds * per_cell / 60:.1f} min"
    )
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="monoceros-bench-tls-") as tmp:
        workdir = Path(tmp)
        certs = make_certificate(workdir, a.openssl, a.key)
        for rnd in range(1, a.rounds + 1):
            shift = (rnd - 1) % len(contenders)
            for contender, tool in contenders[shift:] + contenders[:shift]:
                cell = run_cell(a, contender, tool, certs, workdir, rnd)
                cells.append(cell)
                figure = _fmt(cell.us_per_request) if cell.status == "ok" else cell.reason
                log(f"round {rnd}: {contender.name}: {figure} µs/req, {cell.rps:.0f} req/s")
    print(
        f"TLS cost, {a.rounds} round(s) of {a.duration}s, wrk -c{a.connections}, "
        f"{a.key} certificate, {os.cpu_count()} CPUs\n"
    )
    print(report(cells, [c for c, _ in contenders]))
    if a.json:
        Path(a.json).write_text(json.dumps([asdict(c) for c in cells], indent=1))
    clean = all(c.status == "ok" and not c.errors for c in cells)
    return 0 if clean else EXIT_ERRORS


if __name__ == "__main__":
    sys.exit(main())
