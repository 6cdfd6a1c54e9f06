"""Results of the cells, summarized over rounds, and the tables printed at the end (pure code)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

MONOCEROS = "monoceros-"
REFERENCE = "uwsgi"  # the C ceiling, compared against in every row
TIMES, DASH = "\u00d7", "\u2013"  # the table's multiplication sign and en dash


@dataclass
class CellResult:
    """One measured (or failed) cell: one server, protocol and scenario in one round."""

    server: str
    protocol: str
    scenario: str
    round: int
    status: str = "failed"  # "ok" or "failed"
    reason: str = ""  # why it failed
    command: str = ""
    verified: str = ""  # the checked answer, e.g. "200 text/plain 13 B"
    requests: int = 0
    rps: float = 0.0
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    errors: int = 0
    error_text: str = ""  # wrk's errors, a failed check after the load
    warnings: str = ""  # warm-up errors, tracebacks in the server's log
    server_cpu_s: float | None = None
    nginx_cpu_s: float | None = None
    busy_cores: float | None = None
    rest_rss: int = 0  # bytes, largest worker after start and before any request
    peak_rss: int = 0  # bytes, largest worker during warm-up and the measured window

    @property
    def server_us(self) -> float | None:
        """Server CPU microseconds per request."""
        if self.server_cpu_s is None or not self.requests:
            return None
        return self.server_cpu_s / self.requests * 1e6

    @property
    def nginx_us(self) -> float | None:
        """nginx CPU microseconds per request."""
        if self.nginx_cpu_s is None or not self.requests:
            return None
        return self.nginx_cpu_s / self.requests * 1e6


@dataclass
class Row:
    """One (scenario, protocol, server) over all rounds: medians, spread, errors."""

    scenario: str
    protocol: str
    server: str
    rounds: int = 0
    rounds_ok: int = 0
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0
    server_us: float | None = None
    server_us_min: float | None = None
    server_us_max: float | None = None
    nginx_us: float | None = None
    busy_cores: float | None = None
    rest_rss: int = 0
    peak_rss: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Ratio:
    """A monoceros row's server CPU per request over each peer's (same scenario and protocol)."""

    scenario: str
    protocol: str
    server: str
    server_us: float | None
    vs: dict[str, float | None]


def median(values: Iterable[float | None]) -> float | None:
    """Median of the values that are numbers (None when there are none)."""
    nums = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(nums) if nums else None


def summarize(cells: Sequence[CellResult]) -> list[Row]:
    """Group cells by (scenario, protocol, server), in first-seen order, and take medians."""
    groups: dict[tuple[str, str, str], list[CellResult]] = {}
    for c in cells:
        groups.setdefault((c.scenario, c.protocol, c.server), []).append(c)
    rows = []
    for (scenario, protocol, server), group in groups.items():
        ok = [c for c in group if c.status == "ok"]
        cpu = [u for c in ok if (u := c.server_us) is not None]
        rows.append(
            Row(
                scenario,
                protocol,
                server,
                rounds=len(group),
                rounds_ok=len(ok),
                rps=median(c.rps for c in ok),
                p50_ms=median(c.p50_ms for c in ok),
                p99_ms=median(c.p99_ms for c in ok),
                errors=sum(c.errors for c in group),
                server_us=median(cpu),
                server_us_min=min(cpu, default=None),
                server_us_max=max(cpu, default=None),
                nginx_us=median(c.nginx_us for c in ok),
                busy_cores=median(c.busy_cores for c in ok),
                rest_rss=int(median(c.rest_rss for c in group if c.rest_rss) or 0),
                peak_rss=max((c.peak_rss for c in ok), default=0),
                problems=[
                    f"r{c.round}: {c.reason or c.error_text}"
                    for c in group
                    if c.status != "ok" or c.error_text
                ],
                warnings=[f"r{c.round}: {c.warnings}" for c in group if c.warnings],
            )
        )
    return rows


def peers_of(server: str, protocol: str) -> dict[str, str]:
    """The peers a monoceros server is compared with: column label -> server name."""
    kind = server.removeprefix(MONOCEROS)
    peers = {f"{TIMES} uwsgi": REFERENCE, f"{TIMES} gunicorn": f"gunicorn-{kind}"}
    if kind == "asgi" and protocol == "http":
        peers[f"{TIMES} uvicorn"] = "uvicorn"
    return peers


def _over(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    return a / b if a is not None and b else None


def ratios(rows: Sequence[Row]) -> list[Ratio]:
    """Each monoceros row's CPU per request over its peers' (None where a peer was not measured)."""
    index = {(r.scenario, r.protocol, r.server): r for r in rows}
    out = []
    for r in rows:
        if not r.server.startswith(MONOCEROS):
            continue
        vs: dict[str, float | None] = {}
        for label, peer in peers_of(r.server, r.protocol).items():
            other = index.get((r.scenario, r.protocol, peer))
            vs[label] = _over(r.server_us, other.server_us if other else None)
        out.append(Ratio(r.scenario, r.protocol, r.server, r.server_us, vs))
    return out


# ------------------------------------------------------------------------------------ formatting
def fmt(value: float | None, spec: str = ".0f") -> str:
    """A number formatted, or an en dash when missing."""
    return DASH if value is None or math.isnan(value) else format(value, spec)


def mib(size: int) -> str:
    """Bytes as MiB with one decimal (an en dash for 0: not measured)."""
    return f"{size / (1 << 20):.1f}" if size else DASH


def markdown_table(head: Sequence[str], lines: Iterable[Sequence[str]], text_columns: int) -> str:
    """A Markdown table; the first text_columns are left-aligned, the rest right-aligned."""
    out = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i < text_columns else "---:" for i in range(len(head))) + "|",
    ]
    out += ["| " + " | ".join(cell.replace("|", "/") for cell in line) + " |" for line in lines]
    return "\n".join(out)


def figures_table(rows: Sequence[Row]) -> str:
    """The main table: throughput, latency, errors, server and nginx CPU per request."""
    index = {(r.scenario, r.protocol, r.server): r for r in rows}
    head = [
        "scenario",
        "proto",
        "server",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "server µs/req",
        f"min{DASH}max",
        f"{TIMES} uwsgi",
        "nginx µs/req",
        "busy cores",
    ]
    lines = []
    for r in rows:
        if not r.rounds_ok:
            lines.append(
                [r.scenario, r.protocol, r.server]
                + [DASH] * 3
                + [f"**FAILED** ({r.rounds} of {r.rounds})"]
                + [DASH] * 5
            )
            continue
        ref = index.get((r.scenario, r.protocol, REFERENCE))
        errors = str(r.errors) if not r.errors else f"**{r.errors}**"
        if r.rounds_ok < r.rounds:
            errors += f" (**{r.rounds - r.rounds_ok} failed**)"
        lines.append(
            [
                r.scenario,
                r.protocol,
                r.server,
                fmt(r.rps),
                fmt(r.p50_ms, ".2f"),
                fmt(r.p99_ms, ".2f"),
                errors,
                fmt(r.server_us, ".1f"),
                f"{fmt(r.server_us_min, '.1f')}{DASH}{fmt(r.server_us_max, '.1f')}",
                fmt(_over(r.server_us, ref.server_us if ref else None), ".2f"),
                fmt(r.nginx_us, ".1f"),
                fmt(r.busy_cores, ".2f"),
            ]
        )
    return markdown_table(head, lines, 3)


def ratio_table(items: Sequence[Ratio]) -> str:
    """monoceros's server CPU per request as a multiple of each peer's (lower is better)."""
    labels = list(dict.fromkeys(label for x in items for label in x.vs))
    head = ["scenario", "proto", "server", "server µs/req", *labels]
    lines = [
        [
            x.scenario,
            x.protocol,
            x.server,
            fmt(x.server_us, ".1f"),
            *(fmt(x.vs.get(label), ".2f") for label in labels),
        ]
        for x in items
    ]
    return markdown_table(head, lines, 3)


def memory_table(rows: Sequence[Row], download: str = "download-32m") -> str:
    """Per server and protocol: worker RSS at rest, and its peak while serving the download."""
    servers: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        servers.setdefault((r.server, r.protocol), []).append(r)
    lines = []
    for (server, protocol), group in servers.items():
        rest = median(float(r.rest_rss) for r in group if r.rest_rss)
        peak = max((r.peak_rss for r in group if r.scenario == download), default=0)
        growth = f"{(peak - rest) / (1 << 20):+.1f}" if peak and rest else DASH
        lines.append([server, protocol, mib(int(rest or 0)), mib(peak), growth])
    return markdown_table(
        ["server", "proto", "worker RSS at rest MiB", f"peak during {download} MiB", "growth MiB"],
        lines,
        2,
    )


def problems(rows: Sequence[Row]) -> list[str]:
    """One line per failed cell or cell with errors (empty when everything was clean)."""
    return [f"{r.scenario} {r.protocol} {r.server} {p}" for r in rows for p in r.problems]


def render(rows: Sequence[Row], header: str = "") -> str:
    """The whole report: header, figures, ratios, memory, then errors and warnings."""
    parts = [header, figures_table(rows)] if header else [figures_table(rows)]
    found = ratios(rows)
    if found:
        parts += [
            "monoceros against its peers (server CPU per request; below 1 is cheaper):",
            ratio_table(found),
        ]
    parts += ["Worker memory:", memory_table(rows)]
    errs = problems(rows)
    if errs:
        parts += [
            "**ERRORS / FAILURES** (such a row cannot be trusted):",
            "\n".join(f"- {e}" for e in errs),
        ]
    warns = [f"{r.scenario} {r.protocol} {r.server} {w}" for r in rows for w in r.warnings]
    if warns:
        parts += [
            "Warnings (measured; the server's cost includes them):",
            "\n".join(f"- {w}" for w in warns),
        ]
    return "\n\n".join(parts)
