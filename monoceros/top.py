"""``monoceros-top ADDR``: the stats listener's ``/stats`` as a live terminal table, like uwsgitop.

One row per worker (its pid, state, requests, memory and the request it serves now, with that
request's age), under a header line (the master's pid, uptime, busy workers, total requests and
the requests per second since the previous refresh). ``ADDR`` is written as for ``--stats-bind``:
``HOST:PORT``, ``[V6]:PORT`` or ``unix:PATH``. Only the standard library: :mod:`http.client`,
with a small subclass for a UNIX socket. :func:`render` is a pure function of the JSON document.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import shutil
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any, Final

from .access_log import log_safe
from .listeners import BindError, BindSpec, parse_bind

__all__ = ["StatsError", "UnixHTTPConnection", "fetch_stats", "main", "render", "request_rate"]

#: clear the screen and put the cursor top left (ANSI), written before each live refresh
CLEAR: Final = "\x1b[H\x1b[2J"
#: seconds to wait for the stats listener's answer
TIMEOUT: Final = 5.0
_MIB: Final = 1024 * 1024
_COLUMNS: Final = ("ID", "PID", "STATE", "REQUESTS", "RSS MiB", "AGE s", "REQUEST")
#: the columns aligned to the right (numbers)
_RIGHT: Final = frozenset({"ID", "PID", "REQUESTS", "RSS MiB", "AGE s"})
_PROG: Final = "monoceros-top"


class StatsError(Exception):
    """The stats listener could not be reached, or did not answer ``/stats`` with JSON."""


class UnixHTTPConnection(http.client.HTTPConnection):
    """An :class:`http.client.HTTPConnection` to a UNIX socket at ``path``."""

    def __init__(self, path: str, timeout: float = TIMEOUT) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        """Connect an ``AF_UNIX`` stream socket instead of a TCP one."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def _connection(spec: BindSpec, timeout: float) -> http.client.HTTPConnection:
    if spec.kind == "unix":
        return UnixHTTPConnection(spec.path, timeout)
    # a listener on every address is reached on loopback
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(spec.host, spec.host)
    return http.client.HTTPConnection(host, spec.port, timeout=timeout)


def fetch_stats(spec: BindSpec, timeout: float = TIMEOUT) -> dict[str, Any]:
    """GET ``/stats`` from the stats listener at ``spec``; :class:`StatsError` with a readable
    reason when that fails."""
    conn = _connection(spec, timeout)
    try:
        conn.request("GET", "/stats", headers={"Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        reason = reason or type(exc).__name__
        raise StatsError(f"cannot reach the stats listener at {spec}: {reason}") from exc
    finally:
        conn.close()
    if resp.status != 200:
        raise StatsError(f"the stats listener at {spec} answered /stats with {resp.status}")
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise StatsError(f"the stats listener at {spec} sent no JSON on /stats") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("workers"), list):
        raise StatsError(f"{spec} does not look like a monoceros stats listener")
    return doc


def request_rate(previous: tuple[float, int] | None, current: tuple[float, int]) -> float | None:
    """Requests per second between two ``(monotonic time, requests_total)`` readings; None for
    the first reading, or when the total went down (a new master)."""
    if previous is None:
        return None
    seconds = current[0] - previous[0]
    done = current[1] - previous[1]
    if seconds <= 0 or done < 0:
        return None
    return done / seconds


def _duration(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else float(value)


def _cut(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    if width <= 3:
        return text[: max(width, 0)]
    return text[: width - 3] + "..."


def _header(doc: dict[str, Any], rate: float | None) -> str:
    workers = [w for w in doc.get("workers") or [] if isinstance(w, dict)]
    busy = sum(1 for w in workers if w.get("state") == "busy")
    uptime = _number(doc.get("uptime_seconds"))
    parts = [
        f"monoceros master {log_safe(doc.get('pid', '-'))}",
        f"up {_duration(uptime) if uptime is not None else '-'}",
        f"workers {busy}/{len(workers)} busy",
        f"requests {log_safe(doc.get('requests_total', '-'))}",
    ]
    if rate is not None:
        parts.append(f"{rate:.1f} req/s")
    if doc.get("ready") is False:
        parts.append("NOT READY")
    return "  ".join(parts)


def _row(worker: dict[str, Any]) -> list[str]:
    rss = _number(worker.get("rss_bytes"))
    current = worker.get("current")
    age, request = "-", "-"
    if isinstance(current, dict):
        seconds = _number(current.get("age_seconds"))
        age = f"{seconds:.1f}" if seconds is not None else "-"
        method = log_safe(current.get("method", ""))
        request = f"{method} {log_safe(current.get('path', ''))}"
    return [
        log_safe(worker.get("id", "-")),
        log_safe(worker.get("pid", "-")),
        log_safe(worker.get("state", "-")),
        log_safe(worker.get("requests", "-")),
        f"{rss / _MIB:.1f}" if rss is not None else "-",
        age,
        request,
    ]


def render(doc: dict[str, Any], width: int = 80, rate: float | None = None) -> str:
    """The screen for one ``/stats`` document: a header line, then one aligned row per worker,
    every line cut to ``width`` columns; ``rate`` is shown as requests per second."""
    rows = [list(_COLUMNS)]
    rows += [_row(w) for w in doc.get("workers") or [] if isinstance(w, dict)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS) - 1)]
    lines = [_cut(_header(doc, rate), width), ""]
    for row in rows:
        cells = [
            cell.rjust(w) if name in _RIGHT else cell.ljust(w)
            for name, cell, w in zip(_COLUMNS[:-1], row[:-1], widths, strict=True)
        ]
        prefix = "  ".join(cells) + "  "
        lines.append(_cut(prefix + row[-1], width).rstrip())
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Show a monoceros master's stats listener (--stats-bind) as a live table.",
    )
    parser.add_argument("addr", metavar="ADDR", help="HOST:PORT, [V6]:PORT or unix:PATH")
    parser.add_argument("--once", action="store_true", help="print one table and exit")
    parser.add_argument(
        "--interval", type=float, default=1.0, metavar="SECONDS", help="refresh every SECONDS"
    )
    return parser


def _live(spec: BindSpec, interval: float) -> None:
    previous: tuple[float, int] | None = None
    while True:
        size = shutil.get_terminal_size()
        try:
            doc = fetch_stats(spec)
        except StatsError as exc:
            screen = f"{_PROG}: {exc} (retrying every {interval:g}s)\n"
            previous = None
        else:
            now = time.monotonic()
            total = doc.get("requests_total")
            reading = (now, total) if isinstance(total, int) else None
            rate = request_rate(previous, reading) if reading else None
            previous = reading
            lines = render(doc, size.columns, rate).splitlines()
            screen = "\n".join(lines[: max(size.lines - 1, 1)]) + "\n"
        sys.stdout.write(CLEAR + screen)
        sys.stdout.flush()
        time.sleep(interval)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``monoceros-top``; the exit status: 0, 1 when ``--once`` cannot read the stats, 2 for
    a usage error."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.interval > 0 or math.isinf(args.interval):
        parser.error(f"--interval: {args.interval} is not a positive number of seconds")
    try:
        spec = parse_bind(args.addr)
    except BindError as exc:
        parser.error(str(exc))
    if spec.kind == "fd":
        parser.error(f"{args.addr}: give the stats listener's address, not a file descriptor")
    try:
        if args.once:
            try:
                doc = fetch_stats(spec)
            except StatsError as exc:
                print(f"{_PROG}: {exc}", file=sys.stderr)
                return 1
            sys.stdout.write(render(doc, shutil.get_terminal_size().columns))
            sys.stdout.flush()
        else:
            _live(spec, args.interval)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `monoceros-top ADDR --once | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
