"""Draw the JSON that ``bench/run.py --json`` writes as an SVG chart, by hand (no plotting library).

Usage, from the repository root::

    .venv/bin/python -m bench.chart RESULTS.json -o docs/img/side-by-side.svg [--kind bars|growth]

``bars``: server CPU µs per request as horizontal bars, one group per scenario (each with its own
axis), one bar per server and protocol, coloured by server. ``growth``: for the growth scenarios
(``--growth``), µs per request against the number of request headers and against the body size,
one line per server and protocol. ``auto`` (the default) draws ``growth`` when every scenario in the
file is a growth scenario, else ``bars``. The same JSON always gives the same bytes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

if not __package__:  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.growth import Series, growth_series
from bench.report import CellResult, Row, summarize
from bench.scenarios import AXIS_UNITS, SCENARIOS
from bench.svg import AXIS, GRID, Svg, nice_ticks, num, text_width, tick_label

WIDTH = 760
SERVER_COLORS = {
    "uwsgi": "#7f7f7f",
    "gunicorn-sync": "#e69f00",
    "gunicorn-gthread": "#d55e00",
    "gunicorn-asgi": "#cc79a7",
    "uvicorn": "#009e73",
    "granian": "#117733",
    "monoceros-sync": "#0072b2",
    "monoceros-gthread": "#56b4e9",
    "monoceros-asgi": "#332288",
}
OTHER_COLORS = ("#882255", "#44aa99", "#999933", "#aa4499", "#661100")
DASHES = {"uwsgi": "", "http": "7 4"}  # growth lines: solid over uwsgi, dashed over HTTP
BAR, BAR_GAP = 18, 6
TITLE_SIZE, LABEL_SIZE, TICK_SIZE = 15, 12, 11


def load(path: Path) -> list[Row]:
    """The rows (medians over rounds) of a JSON file that bench/run.py wrote."""
    doc = json.loads(path.read_text())
    names = {f.name for f in dataclasses.fields(CellResult)}
    cells = [CellResult(**{k: v for k, v in c.items() if k in names}) for c in doc["cells"]]
    return summarize(cells)


def colors(servers: Sequence[str]) -> dict[str, str]:
    """A colour per server: the fixed ones for known servers, then the others in order."""
    out: dict[str, str] = {}
    others = iter(OTHER_COLORS * (len(servers) // len(OTHER_COLORS) + 1))
    for name in dict.fromkeys(servers):
        out[name] = SERVER_COLORS.get(name) or next(others)
    return out


def rounds_note(rows: Sequence[Row]) -> str:
    """What each figure is: medians of how many rounds, behind what."""
    most = max((r.rounds for r in rows), default=0)
    medians = f"median of {most} rounds" if most > 1 else "1 round"
    return f"server CPU per request (user + system, /proc), {medians}; 1 worker each, behind nginx"


def _legend(svg: Svg, y: float, entries: list[tuple[str, str, str]]) -> float:
    """Legend entries (label, colour, dash or '' for a bar swatch) in rows; returns the next y."""
    x0, widest = 20.0, max(text_width(label, LABEL_SIZE) for label, _, _ in entries)
    step = widest + 44
    per_row = max(1, int((WIDTH - 2 * x0) // step))
    for i, (label, color, dash) in enumerate(entries):
        x = x0 + (i % per_row) * step
        row_y = y + (i // per_row) * 20
        if dash == "":
            svg.rect(x, row_y - 10, 22, 12, color)
        else:
            extra = {"stroke_dasharray": dash} if dash != "solid" else {}
            svg.line(x, row_y - 4, x + 22, row_y - 4, color, stroke_width="2.5", **extra)
        svg.text(x + 28, row_y, label, LABEL_SIZE, cls="legend")
    return y + ((len(entries) - 1) // per_row + 1) * 20


def bars_svg(rows: Sequence[Row], title: str) -> str:
    """Grouped horizontal bars: one group per scenario, one bar per server and protocol."""
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(r.scenario, []).append(r)
    labels = {id(r): f"{r.server} ({r.protocol})" for r in rows}
    x0 = 20 + max((text_width(t, LABEL_SIZE) for t in labels.values()), default=0) + 10
    x1 = WIDTH - 70
    svg = Svg(WIDTH, 0, title)  # the height is known once everything is placed
    svg.text(20, 26, title, TITLE_SIZE, font_weight="bold")
    svg.text(20, 44, rounds_note(rows), TICK_SIZE, fill=AXIS)
    palette = colors([r.server for r in rows])
    y = 70.0
    for scenario, group in groups.items():
        svg.text(20, y + 4, scenario, 13, font_weight="bold", cls="group")
        top = y + 14
        bottom = top + len(group) * (BAR + BAR_GAP)
        ticks = nice_ticks(max((r.server_us or 0.0 for r in group), default=0.0))
        scale = (x1 - x0) / ticks[-1]
        for t in ticks:
            svg.line(x0 + t * scale, top, x0 + t * scale, bottom, GRID)
            svg.text(x0 + t * scale, bottom + 15, tick_label(t, ticks), TICK_SIZE, "middle")
        for i, r in enumerate(group):
            by = top + i * (BAR + BAR_GAP) + BAR_GAP / 2
            svg.text(x0 - 8, by + BAR - 5, labels[id(r)], LABEL_SIZE, "end", cls="label")
            if r.server_us is None:
                svg.text(x0 + 4, by + BAR - 5, "failed", LABEL_SIZE, fill=AXIS)
                continue
            svg.rect(
                x0,
                by,
                r.server_us * scale,
                BAR,
                palette[r.server],
                cls="bar",
                data_server=r.server,
                data_protocol=r.protocol,
                data_scenario=r.scenario,
            )
            svg.text(x0 + r.server_us * scale + 4, by + BAR - 5, f"{r.server_us:.1f}", TICK_SIZE)
        svg.line(x0, top, x0, bottom, AXIS)
        svg.line(x0, bottom, x1, bottom, AXIS)
        svg.text(
            (x0 + x1) / 2, bottom + 32, "µs per request (lower is cheaper)", TICK_SIZE, "middle"
        )
        y = bottom + 60
    svg.height = _legend(svg, y + 6, [(name, color, "") for name, color in palette.items()]) + 10
    return svg.render()


def _panel(
    svg: Svg, box: tuple[float, float, float, float], axis: str, items: list[Series]
) -> None:
    """One growth axis: µs/req against x, a line and markers per server and protocol."""
    left, top, right, bottom = box
    xs = [x for s in items for x, _ in s.points]
    ys = [y for s in items for _, y in s.points if y is not None]
    xticks, yticks = nice_ticks(max(xs, default=0.0)), nice_ticks(max(ys, default=0.0))
    sx, sy = (right - left) / xticks[-1], (bottom - top) / yticks[-1]
    svg.text(left, top - 12, f"against the {AXIS_UNITS[axis]}", 13, font_weight="bold")
    for t in yticks:
        svg.line(left, bottom - t * sy, right, bottom - t * sy, GRID)
        svg.text(left - 6, bottom - t * sy + 4, tick_label(t, yticks), TICK_SIZE, "end")
    for t in xticks:
        svg.line(left + t * sx, bottom, left + t * sx, bottom + 4, AXIS)
        svg.text(left + t * sx, bottom + 16, tick_label(t, xticks), TICK_SIZE, "middle")
    svg.line(left, top, left, bottom, AXIS)
    svg.line(left, bottom, right, bottom, AXIS)
    svg.text((left + right) / 2, bottom + 34, AXIS_UNITS[axis], TICK_SIZE, "middle")
    mid = (top + bottom) / 2
    svg.text(
        left - 46,
        mid,
        "µs per request",
        TICK_SIZE,
        "middle",
        transform=f"rotate(-90 {num(left - 46)} {num(mid)})",
    )
    palette = colors([s.server for s in items])
    for s in items:
        pts = [(left + x * sx, bottom - y * sy) for x, y in s.points if y is not None]
        color = palette[s.server]
        dash = DASHES.get(s.protocol, "2 3")
        extra = {"stroke_dasharray": dash} if dash else {}
        svg.polyline(pts, color, stroke_width="2", cls="series", **extra)
        for x, y in pts:
            hollow = s.protocol != "uwsgi"
            svg.circle(x, y, 3.5, "#ffffff" if hollow else color, stroke=color, cls="point")


def growth_svg(rows: Sequence[Row], title: str) -> str:
    """Line charts of µs/req against each growth axis measured, side by side, one shared legend."""
    items = growth_series(rows)
    axes = [a for a in AXIS_UNITS if any(s.axis == a for s in items)]
    if not axes:
        raise ValueError("no growth scenario (headers-*, body-*) in these results")
    keys = list(dict.fromkeys((s.server, s.protocol) for s in items))
    top, plot_h = 84.0, 260.0
    svg = Svg(WIDTH, 0, title)  # the height is known once everything is placed
    svg.text(20, 26, title, TITLE_SIZE, font_weight="bold")
    svg.text(20, 44, rounds_note(rows), TICK_SIZE, fill=AXIS)
    width = (WIDTH - 20) / len(axes)
    for i, axis in enumerate(axes):
        left = 20 + i * width + 60
        box = (left, top, left + width - 90, top + plot_h)
        _panel(svg, box, axis, [s for s in items if s.axis == axis])
    palette = colors([s for s, _ in keys])
    entries = [
        (f"{server} ({protocol})", palette[server], DASHES.get(protocol, "2 3") or "solid")
        for server, protocol in keys
    ]
    svg.height = _legend(svg, top + plot_h + 66, entries) + 10
    return svg.render()


def chart(rows: Sequence[Row], kind: str = "auto", title: str = "") -> str:
    """The SVG text of the chart kind ('auto', 'bars' or 'growth') for rows."""
    if kind == "auto":
        growth = [r for r in rows if r.scenario in SCENARIOS and SCENARIOS[r.scenario].axis]
        kind = "growth" if rows and len(growth) == len(rows) else "bars"
    if kind == "growth":
        return growth_svg(rows, title or "How server CPU per request grows")
    return bars_svg(rows, title or "Server CPU per request (µs, lower is cheaper)")


def main(argv: list[str] | None = None) -> int:
    """Read the JSON, write the SVG; exit 2 with one line on a bad file or option."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("results", type=Path, help="a JSON file written by bench/run.py --json")
    ap.add_argument("-o", "--output", default="-", help="the SVG file ('-': stdout)")
    ap.add_argument("--kind", choices=("auto", "bars", "growth"), default="auto")
    ap.add_argument("--title", default="", help="the chart's title")
    a = ap.parse_args(argv)
    try:
        text = chart(load(a.results), a.kind, a.title)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"bench.chart: error: {a.results}: {exc}", file=sys.stderr)
        return 2
    if a.output == "-":
        sys.stdout.write(text)
    else:
        Path(a.output).write_bytes(text.encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
