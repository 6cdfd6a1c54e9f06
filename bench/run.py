"""Benchmark monoceros against gunicorn, uWSGI, uvicorn and granian, one worker each, behind nginx.

Usage, from the repository root: ``.venv/bin/python bench/run.py [--scenarios ...] [--servers ...]``
(or ``python -m bench.run``). It runs every (server, protocol, scenario) cell once per round,
rotating the order of servers each round, and prints Markdown tables on stdout; progress goes to
stderr. ``--growth`` measures how the cost grows with the request headers and body instead. See
bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

if not __package__:  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import growth, report
from bench.cell import Settings, run_cell
from bench.scenarios import DEFAULT, GROWTH, SCENARIOS
from bench.servers import SERVERS, Address, Server

HERE = Path(__file__).resolve().parent
DEFAULT_PEERS = Path.home() / ".cache" / "monoceros-bench" / "peers" / "bin"
SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")
EXIT_USAGE, EXIT_ERRORS = 2, 3
GROWTH_SERVERS = ("monoceros-sync", "monoceros-gthread", "monoceros-asgi")


def log(message: str) -> None:
    """Progress, on stderr."""
    print(message, file=sys.stderr, flush=True)


def find_exe(name: str) -> str:
    """name on PATH or in the usual sbin folders ('' when absent)."""
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN)) or ""


def first_line(argv: list[str]) -> str:
    """The first non-empty output line of a short command (its version), or why there is none."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"(unavailable: {exc})"
    lines = [x.strip() for x in (done.stdout + "\n" + done.stderr).splitlines() if x.strip()]
    return lines[0] if lines else f"(exit {done.returncode})"


def version_of(text: str) -> str:
    """The version number in a tool's --version line (the whole line when there is none)."""
    found = re.search(r"\d+(?:\.\d+)+[\w.+-]*", text)
    return found.group(0) if found else text


def resolve_tool(server: Server, peers_bin: str, monoceros_cmd: str) -> tuple[list[str], str]:
    """(command prefix, '') for a server's executable, or ([], why it is missing)."""
    if server.tool == "monoceros":
        if monoceros_cmd:
            argv = shlex.split(monoceros_cmd)
            ok = bool(argv) and bool(shutil.which(argv[0]) or os.access(argv[0], os.X_OK))
            return (argv, "") if ok else ([], f"MONOCEROS_CMD={monoceros_cmd!r} not found")
        if importlib.util.find_spec("monoceros") is None:
            return (
                [],
                f"monoceros is not importable by {Path(sys.executable).name}: set MONOCEROS_CMD",
            )
        return [sys.executable, "-m", "monoceros"], ""
    if peers_bin and os.access(Path(peers_bin) / server.tool, os.X_OK):
        return [str(Path(peers_bin) / server.tool)], ""
    on_path = shutil.which(server.tool)
    if on_path:
        return [on_path], ""
    return [], f"`{server.tool}` neither in PEERS_BIN={peers_bin or '(unset)'} nor on PATH"


def setup_peers() -> str:
    """Create or update the peers' virtualenv with bench/setup.sh; returns its bin folder."""
    done = subprocess.run(
        ["bash", str(HERE / "setup.sh")],
        stdout=subprocess.PIPE,
        text=True,
        timeout=1800,
        check=True,
    )
    for line in done.stdout.splitlines():
        if line.startswith("export PEERS_BIN="):
            return line.split("=", 1)[1].strip()
    raise RuntimeError("setup.sh did not print PEERS_BIN")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument(
        "--servers",
        default=argparse.SUPPRESS,
        help="comma list of NAME or NAME:PROTOCOL (--list shows them) [default: all; "
        f"with --growth: {','.join(GROWTH_SERVERS)}]",
    )
    ap.add_argument(
        "--protocols", default="uwsgi,http", help="protocols for servers named without one"
    )
    ap.add_argument(
        "--scenarios",
        default=argparse.SUPPRESS,
        help=f"comma list of {', '.join(SCENARIOS)} [default: {','.join(DEFAULT)}; "
        f"with --growth: {','.join(GROWTH)}]",
    )
    ap.add_argument(
        "--growth",
        action="store_true",
        help="how cost grows with the request headers and body: the growth scenarios on "
        "monoceros's workers, with a least-squares line per server",
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="measured seconds per cell")
    ap.add_argument("--warmup", type=int, default=2, help="unmeasured seconds of load before it")
    ap.add_argument(
        "--connections", type=int, default=32, help="wrk -c (download scenarios use at most 4)"
    )
    ap.add_argument("--threads", type=int, default=8, help="threads of gthread workers")
    ap.add_argument(
        "--listen", choices=("unix", "tcp"), default="unix", help="the server's socket behind nginx"
    )
    ap.add_argument("--wrk-timeout", default="10s", help="wrk --timeout")
    ap.add_argument(
        "--start-timeout",
        type=float,
        default=30.0,
        help="seconds a server gets to listen and answer",
    )
    ap.add_argument(
        "--peers-bin",
        default=os.environ.get("PEERS_BIN")
        or (str(DEFAULT_PEERS) if DEFAULT_PEERS.is_dir() else ""),
        help="folder with gunicorn, uwsgi, uvicorn, granian [env PEERS_BIN; "
        "default ~/.cache/monoceros-bench/peers/bin if present, else PATH]",
    )
    ap.add_argument(
        "--monoceros-cmd",
        default=os.environ.get("MONOCEROS_CMD", ""),
        help="command that starts monoceros [env MONOCEROS_CMD; default: this Python -m monoceros]",
    )
    ap.add_argument("--nginx", default=os.environ.get("NGINX") or find_exe("nginx"))
    ap.add_argument("--wrk", default=os.environ.get("WRK") or find_exe("wrk"))
    ap.add_argument(
        "--setup",
        action="store_true",
        help="first create the peers' virtualenv with bench/setup.sh",
    )
    ap.add_argument("--json", default="", help="also write every cell's figures to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (logs, configs)")
    ap.add_argument("--list", action="store_true", help="print the server commands and exit")
    a = ap.parse_args(argv)
    if "servers" not in a:
        a.servers = ",".join(GROWTH_SERVERS if a.growth else SERVERS)
    if "scenarios" not in a:
        a.scenarios = ",".join(GROWTH if a.growth else DEFAULT)
    return a


def plan(a: argparse.Namespace) -> list[tuple[Server, str]]:
    """The (server, protocol) pairs asked for; ValueError for an unknown name or pairing."""
    protocols = [p for p in a.protocols.split(",") if p]
    pairs: list[tuple[Server, str]] = []
    for item in (x for x in a.servers.split(",") if x):
        name, _, only = item.partition(":")
        if name not in SERVERS:
            raise ValueError(f"unknown server {name!r}; known: {', '.join(SERVERS)}")
        server = SERVERS[name]
        if only and only not in server.commands:
            raise ValueError(f"{name} does not speak {only!r}")
        pairs += [(server, p) for p in server.commands if (p == only if only else p in protocols)]
    unique = {(server.name, protocol): (server, protocol) for server, protocol in pairs}
    return list(unique.values())


def header(a: argparse.Namespace, versions: dict[str, str], minutes: float) -> str:
    """Lines above the tables: the command, the machine, the versions, the settings."""
    argv = shlex.join(["python", "bench/run.py", *sys.argv[1:]])
    return (
        f"Command: `{argv}`  \n"
        f"{time.strftime('%Y-%m-%d %H:%M')}, {minutes:.1f} min, {os.cpu_count()} CPUs, "
        f"Linux {platform.release()}, Python {platform.python_version()}; "
        + "; ".join(f"{k}: {v}" for k, v in versions.items())
        + "  \n"
        f"1 worker per server, {a.listen} socket behind nginx (1 worker, access_log off); "
        f"wrk -t1 -c{a.connections} (downloads -c4) -d{a.duration}s after {a.warmup}s warm-up; "
        f"rounds: {a.rounds}, order rotated each round; medians."
    )


def measure(
    a: argparse.Namespace,
    settings: Settings,
    workdir: Path,
    pairs: list[tuple[Server, str, list[str]]],
) -> list[report.CellResult]:
    """Run every cell once per round, rotating the order of the pairs each round."""
    scenarios = [SCENARIOS[s] for s in a.scenarios.split(",") if s]
    total, done = a.rounds * len(scenarios) * len(pairs), 0
    cells: list[report.CellResult] = []
    try:
        for rnd in range(a.rounds):
            shift = rnd % len(pairs)
            for sc in scenarios:
                for server, protocol, tool in pairs[shift:] + pairs[:shift]:
                    r = run_cell(settings, workdir, server, tool, protocol, sc, rnd)
                    cells.append(r)
                    done += 1
                    label = f"[{done}/{total}] r{rnd} {sc.name:12} {protocol:5} {server.name:17}"
                    if r.status != "ok":
                        log(f"{label} FAILED: {r.reason}")
                        continue
                    log(
                        f"{label} {r.rps:8.0f} req/s  server {report.fmt(r.server_us, '6.1f')} "
                        f"µs/req  p99 {r.p99_ms:.2f} ms  rest {report.mib(r.rest_rss)} MiB  "
                        f"peak {report.mib(r.peak_rss)} MiB"
                        + (f"  ERRORS: {r.error_text}" if r.error_text else "")
                        + (f"  ({r.warnings})" if r.warnings else "")
                    )
    except KeyboardInterrupt:
        log(f"interrupted: reporting the {len(cells)} cells measured so far")
    return cells


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 0 if clean, 3 if a cell failed or saw errors, 2 on usage."""
    a = parse_args(argv)
    try:
        pairs = plan(a)
        unknown = [s for s in a.scenarios.split(",") if s and s not in SCENARIOS]
        if unknown:
            raise ValueError(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    except ValueError as exc:
        log(f"error: {exc}")
        return EXIT_USAGE
    if a.setup:
        a.peers_bin = setup_peers()
    resolved = []
    for server, protocol in pairs:
        tool, why = resolve_tool(server, a.peers_bin, a.monoceros_cmd)
        if a.list:
            shown = server.command(
                protocol,
                f"{server.iface}_apps:hello",
                report_address(),
                tool or [server.tool],
                a.threads,
            )
            print(
                f"{server.name:18} {protocol:5} {shlex.join(shown)}" + (f"  [{why}]" if why else "")
            )
        elif why:
            log(f"SKIPPED {server.name}:{protocol}: {why}")
        else:
            resolved.append((server, protocol, tool))
    if a.list:
        return 0
    if not (a.nginx and a.wrk):
        log("error: nginx and wrk are needed (on PATH, or NGINX= / WRK=)")
        return EXIT_USAGE
    if not resolved:
        log("error: nothing to run")
        return EXIT_USAGE
    n_cells = a.rounds * len(resolved) * len([s for s in a.scenarios.split(",") if s])
    log(f"{n_cells} cells, about {n_cells * (a.duration + a.warmup + 3) / 60:.0f} min")
    versions = {
        "nginx": version_of(first_line([a.nginx, "-v"])),
        "wrk": version_of(first_line([a.wrk, "-v"])),
    }
    for server, _, tool in resolved:
        versions.setdefault(server.tool, version_of(first_line([*tool, "--version"])))
    settings = Settings(
        nginx=a.nginx,
        wrk=a.wrk,
        duration=a.duration,
        warmup=a.warmup,
        connections=a.connections,
        threads=a.threads,
        listen=a.listen,
        start_timeout=a.start_timeout,
        wrk_timeout=a.wrk_timeout,
    )
    workdir = Path(tempfile.mkdtemp(prefix="mbench-"))
    workdir.chmod(0o755)
    started = time.monotonic()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        cells = measure(a, settings, workdir, resolved)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if a.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    rows = report.summarize(cells)
    print(report.render(rows, header(a, versions, (time.monotonic() - started) / 60)))
    grown = growth.render(rows)
    if grown:
        print(f"\n{grown}")
    if a.json:
        doc = {
            "argv": sys.argv[1:],
            "versions": versions,
            "cells": [dict(dataclasses.asdict(c), server_us=c.server_us) for c in cells],
        }
        Path(a.json).write_text(portable(json.dumps(doc, indent=1)))
    return EXIT_ERRORS if report.problems(rows) else 0


def portable(text: str) -> str:
    """text without this machine's paths: the checkout is ``.``, the temp folder ``$TMPDIR``, and
    the home folder ``~`` (so a results file can be committed beside the chart drawn from it)."""
    places = {
        str(HERE.parent): ".",
        tempfile.gettempdir(): "$TMPDIR",
        str(Path.home()): "~",
    }
    for place, name in sorted(places.items(), key=lambda kv: -len(kv[0])):
        if len(place) > 1:  # never "/"
            text = text.replace(json.dumps(place)[1:-1], name)
    return text


def report_address() -> Address:
    """A placeholder socket address for --list."""
    return Address(path=str(Path(tempfile.gettempdir()) / "monoceros-bench" / "app.sock"))


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM stops the run like Ctrl-C: the processes are stopped and the temp folder removed."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
