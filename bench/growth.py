"""How cost grows: server CPU per request along the growth axes, fitted to a line (pure code).

The growth scenarios (``headers-*``, ``body-*`` in :mod:`bench.scenarios`) are points on an axis:
the number of request headers, or the request body in KiB. For each server and protocol the
medians over rounds are fitted by least squares to ``µs = intercept + slope * x``; the slope is the
cost of one more header or KiB, and R² and the largest relative deviation of a point from the line
say how well a line describes the growth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .report import DASH, Row, fmt, markdown_table
from .scenarios import AXIS_UNITS, BODY, HEADERS, SCENARIOS

SLOPE_LABELS = {HEADERS: "µs per header", BODY: "µs per KiB"}


@dataclass(frozen=True)
class Fit:
    """A least-squares line through (x, y) points and how far the points are from it."""

    slope: float
    intercept: float
    r2: float  # 1 - residual / total sum of squares (nan when every y is the same)
    max_dev: float  # largest |y - line(x)| / y over the points (a fraction)
    points: int  # how many: through two points a line always fits, so R² and max_dev say nothing

    def at(self, x: float) -> float:
        """The line's value at x."""
        return self.intercept + self.slope * x


@dataclass(frozen=True)
class Series:
    """One server and protocol along one axis: its points (x, median µs/req or None), its fit."""

    axis: str
    server: str
    protocol: str
    scenarios: tuple[str, ...]  # the scenario of each point, in order of x
    points: tuple[tuple[float, float | None], ...]
    fit: Fit | None  # None with fewer than two measured points at distinct x


def fit_line(points: Sequence[tuple[float, float]]) -> Fit:
    """The least-squares line through points; ValueError with fewer than two distinct x."""
    n = len(points)
    if len({x for x, _ in points}) < 2:
        raise ValueError("a line needs points at two different x at least")
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    residual = sum((y - intercept - slope * x) ** 2 for x, y in points)
    total = sum((y - mean_y) ** 2 for _, y in points)
    r2 = 1 - residual / total if total else math.nan
    max_dev = max(
        (abs(y - intercept - slope * x) / abs(y) if y else math.inf for x, y in points),
        default=0.0,
    )
    return Fit(slope, intercept, r2, max_dev, n)


def growth_series(rows: Sequence[Row]) -> list[Series]:
    """Every (axis, server, protocol) with growth points in rows: headers first, then body."""
    groups: dict[tuple[str, str, str], list[tuple[float, str, float | None]]] = {}
    for axis in AXIS_UNITS:
        for r in rows:
            sc = SCENARIOS.get(r.scenario)
            if sc is not None and sc.axis == axis:
                key = (axis, r.server, r.protocol)
                groups.setdefault(key, []).append((sc.axis_value, sc.name, r.server_us))
    out = []
    for (axis, server, protocol), found in groups.items():
        found.sort(key=lambda p: p[0])
        measured = [(x, y) for x, _, y in found if y is not None]
        fit = fit_line(measured) if len({x for x, _ in measured}) >= 2 else None
        out.append(
            Series(
                axis,
                server,
                protocol,
                tuple(name for _, name, _ in found),
                tuple((x, y) for x, _, y in found),
                fit,
            )
        )
    return out


def _percent(value: float | None) -> str:
    """A fraction as a percentage with one decimal (an en dash when missing)."""
    return DASH if value is None or math.isnan(value) else f"{value * 100:.1f} %"


def growth_table(items: Sequence[Series], axis: str) -> str:
    """One axis: each server's µs/req at every point, the line's slope, intercept, R², max dev."""
    mine = [s for s in items if s.axis == axis]
    names = list(dict.fromkeys(name for s in mine for name in s.scenarios))
    head = [
        "server",
        "proto",
        *names,
        SLOPE_LABELS[axis],
        "µs at 0",
        "R²",
        "max dev",
    ]
    lines = []
    for s in mine:
        by_name = dict(zip(s.scenarios, (y for _, y in s.points), strict=True))
        f = s.fit
        tested = f if f and f.points > 2 else None
        lines.append(
            [
                s.server,
                s.protocol,
                *(fmt(by_name.get(n), ".1f") for n in names),
                fmt(f.slope if f else None, ".3f"),
                fmt(f.intercept if f else None, ".1f"),
                fmt(tested.r2 if tested else None, ".4f"),
                _percent(tested.max_dev if tested else None),
            ]
        )
    return markdown_table(head, lines, 2)


def render(rows: Sequence[Row]) -> str:
    """The growth tables of every axis measured ('' when rows hold no growth scenario)."""
    items = growth_series(rows)
    parts = []
    for axis, unit in AXIS_UNITS.items():
        if any(s.axis == axis for s in items):
            parts += [
                f"How cost grows with the {unit} (server µs/req, medians; least-squares line "
                "through them: slope, value at 0, R², largest deviation of a point from it):",
                growth_table(items, axis),
            ]
    return "\n\n".join(parts)
