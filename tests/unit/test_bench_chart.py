"""bench/chart.py and bench/svg.py: the SVG charts drawn from bench/run.py's JSON, by hand.

Each chart is parsed with xml.etree (well-formed), its bars, lines and labels counted against the
results it was drawn from, and drawn twice to check that the same JSON gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import chart, report, svg  # noqa: E402
from bench.report import CellResult  # noqa: E402
from bench.scenarios import GROWTH  # noqa: E402

NS = "{http://www.w3.org/2000/svg}"


def cell(server: str, scenario: str, protocol: str, us: float | None, rnd: int = 0) -> CellResult:
    """An ok cell of 1000 requests costing us µs each (None: a failed cell)."""
    if us is None:
        return CellResult(server, protocol, scenario, rnd, status="failed", reason="no")
    return CellResult(
        server, protocol, scenario, rnd, status="ok", requests=1000, server_cpu_s=us * 1e-3
    )


SIDE_BY_SIDE = [
    cell("uwsgi", "hello", "uwsgi", 10.3),
    cell("gunicorn-sync", "hello", "uwsgi", 87.4),
    cell("monoceros-sync", "hello", "uwsgi", 16.3),
    cell("monoceros-asgi", "hello", "uwsgi", 24.0),
    cell("uvicorn", "hello", "http", 12.7),
    cell("monoceros-asgi", "hello", "http", 12.2),
    cell("uwsgi", "echo-4k", "uwsgi", 13.1),
    cell("gunicorn-sync", "echo-4k", "uwsgi", None),  # failed: a label, no bar
    cell("monoceros-sync", "echo-4k", "uwsgi", 21.1),
]


def write_results(tmp_path: Path, cells: list[CellResult]) -> Path:
    """The JSON file bench/run.py --json writes for these cells."""
    path = tmp_path / "results.json"
    doc = {
        "argv": ["--json", str(path)],
        "versions": {"nginx": "1.22.1"},
        "cells": [dict(dataclasses.asdict(c), server_us=c.server_us) for c in cells],
    }
    path.write_text(json.dumps(doc, indent=1))
    return path


def parse(text: str) -> ET.Element:
    """The SVG document's root (raises when the text is not well-formed XML)."""
    root = ET.fromstring(text)
    assert root.tag == f"{NS}svg"
    return root


def texts(root: ET.Element) -> list[str]:
    """Every text element's content."""
    return [t.text or "" for t in root.iter(f"{NS}text")]


def of_class(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    """The elements of a tag with a class."""
    return [e for e in root.iter(f"{NS}{tag}") if e.get("class") == cls]


# ------------------------------------------------------------------------------------------ bars
def test_bars_one_per_measured_cell_with_labels_and_legend() -> None:
    rows = report.summarize(SIDE_BY_SIDE)
    root = parse(chart.chart(rows))
    bars = of_class(root, "rect", "bar")
    assert len(bars) == len([r for r in rows if r.server_us is not None]) == 8
    assert [(b.get("data-scenario"), b.get("data-server"), b.get("data-protocol")) for b in bars][
        :3
    ] == [
        ("hello", "uwsgi", "uwsgi"),
        ("hello", "gunicorn-sync", "uwsgi"),
        ("hello", "monoceros-sync", "uwsgi"),
    ]
    words = texts(root)
    assert [t.text for t in of_class(root, "text", "group")] == ["hello", "echo-4k"]
    for r in rows:
        assert f"{r.server} ({r.protocol})" in words
    assert "failed" in words
    assert "87.4" in words and "10.3" in words  # each bar's value at its end
    legend = [t.text for t in of_class(root, "text", "legend")]
    assert legend == ["uwsgi", "gunicorn-sync", "monoceros-sync", "monoceros-asgi", "uvicorn"]
    assert root.find(f"{NS}title") is not None
    assert root.find(f"{NS}rect").get("fill") == "#ffffff"  # type: ignore[union-attr]


def test_bar_lengths_are_proportional_within_a_group() -> None:
    root = parse(chart.chart(report.summarize(SIDE_BY_SIDE)))
    hello = {
        (b.get("data-server"), b.get("data-protocol")): float(b.get("width", "nan"))
        for b in of_class(root, "rect", "bar")
        if b.get("data-scenario") == "hello"
    }
    ratio = hello[("gunicorn-sync", "uwsgi")] / hello[("uwsgi", "uwsgi")]
    assert ratio == pytest.approx(87.4 / 10.3, rel=1e-3)
    # the largest bar ends inside the axis: the last tick is at or beyond it
    assert max(hello.values()) <= chart.WIDTH - 70


def test_bars_colour_by_server_even_across_protocols() -> None:
    root = parse(chart.chart(report.summarize(SIDE_BY_SIDE)))
    fills = {
        (b.get("data-server"), b.get("data-protocol")): b.get("fill")
        for b in of_class(root, "rect", "bar")
    }
    assert fills[("monoceros-asgi", "uwsgi")] == fills[("monoceros-asgi", "http")]
    assert (
        len(
            {
                fills[("uwsgi", "uwsgi")],
                fills[("uvicorn", "http")],
                fills[("monoceros-sync", "uwsgi")],
            }
        )
        == 3
    )


def test_text_is_escaped() -> None:
    rows = report.summarize([cell('a<b>&"c"', "hello", "uwsgi", 5.0)])
    text = chart.chart(rows, title="x < y & z")
    assert "a&lt;b&gt;&amp;" in text
    root = parse(text)
    assert 'a<b>&"c" (uwsgi)' in texts(root)
    assert root.find(f"{NS}title").text == "x < y & z"  # type: ignore[union-attr]
    bar = of_class(root, "rect", "bar")[0]
    assert bar.get("data-server") == 'a<b>&"c"'


# ---------------------------------------------------------------------------------------- growth
def growth_cells() -> list[CellResult]:
    """Three workers over two protocols, every growth scenario; linear in headers and KiB."""
    cells = []
    for i, server in enumerate(("monoceros-sync", "monoceros-gthread", "monoceros-asgi")):
        for protocol in ("uwsgi", "http"):
            for name in GROWTH:
                x = {"headers-1": 1, "headers-16": 16, "headers-100": 100}.get(name)
                kib = {"body-0": 0, "body-4k": 4, "body-1m": 1024}.get(name, 0)
                us = 15 + 3 * i + (0.3 * x if x else 0.5 * kib)
                cells.append(cell(server, name, protocol, us))
    return cells


def test_growth_chart_has_a_line_per_server_and_protocol_on_each_axis() -> None:
    rows = report.summarize(growth_cells())
    text = chart.chart(rows)  # auto: every scenario is a growth scenario
    root = parse(text)
    lines = of_class(root, "polyline", "series")
    assert len(lines) == 2 * 6  # two axes, six (server, protocol) pairs
    assert all(len(pl.get("points", "").split()) == 3 for pl in lines)
    assert len(of_class(root, "circle", "point")) == 2 * 6 * 3
    words = texts(root)
    assert "against the request headers" in words and "against the request body KiB" in words
    legend = [t.text for t in of_class(root, "text", "legend")]
    assert legend[:2] == ["monoceros-sync (uwsgi)", "monoceros-sync (http)"] and len(legend) == 6
    dashed = [pl for pl in lines if pl.get("stroke-dasharray")]
    assert len(dashed) == 6  # the HTTP lines
    # a line through three collinear points: the middle one is on the segment of the outer two
    pts = [tuple(map(float, p.split(","))) for p in lines[0].get("points", "").split()]
    (x0, y0), (x1, y1), (x2, y2) = pts
    assert y1 == pytest.approx(y0 + (y2 - y0) * (x1 - x0) / (x2 - x0), abs=0.02)


def test_growth_points_skip_a_failed_cell_and_kinds_can_be_forced() -> None:
    cells = [c for c in growth_cells() if c.server == "monoceros-sync" and c.protocol == "uwsgi"]
    cells[1] = cell("monoceros-sync", "headers-16", "uwsgi", None)
    rows = report.summarize(cells)
    root = parse(chart.chart(rows))
    first = of_class(root, "polyline", "series")[0]
    assert len(first.get("points", "").split()) == 2
    assert len(of_class(parse(chart.chart(rows, kind="bars")), "rect", "bar")) == 5
    with pytest.raises(ValueError, match="no growth scenario"):
        chart.chart(report.summarize(SIDE_BY_SIDE), kind="growth")
    assert of_class(parse(chart.chart(report.summarize(SIDE_BY_SIDE))), "rect", "bar")


# ------------------------------------------------------------------------------ determinism, CLI
def test_same_json_same_bytes_through_the_command_line(tmp_path: Path) -> None:
    results = write_results(tmp_path, SIDE_BY_SIDE + growth_cells())
    outputs = []
    for name in ("a.svg", "b.svg"):
        out = tmp_path / name
        done = subprocess.run(
            [sys.executable, "-m", "bench.chart", str(results), "-o", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    parse(outputs[0].decode())
    direct = chart.chart(chart.load(results)).encode()
    assert direct == outputs[0]


def test_command_line_refuses_a_file_that_is_not_results(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"cells": [{"server": "x"}]}')
    for path in (bad, tmp_path / "missing.json"):
        done = subprocess.run(
            [sys.executable, "-m", "bench.chart", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert done.stderr.startswith("bench.chart: error: ") and done.stderr.count("\n") == 1


# ------------------------------------------------------------------------------------------ svg
@pytest.mark.parametrize("top", [0.033, 0.7, 1, 9.9, 13, 50, 87.4, 104.7, 1024, 3387.8, 622.2])
def test_nice_ticks(top: float) -> None:
    ticks = svg.nice_ticks(top)
    step = ticks[1] - ticks[0]
    assert ticks[0] == 0 and ticks[-1] >= top and ticks[-2] < top
    assert 2 <= len(ticks) <= 7
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert round(mantissa, 6) in (1, 2, 2.5, 5)
    assert all(b - a == pytest.approx(step) for a, b in itertools.pairwise(ticks))


def test_numbers_and_tick_labels() -> None:
    assert [svg.num(v) for v in (0.0, -0.001, 1.5, 2.0, 12.345)] == ["0", "0", "1.5", "2", "12.35"]
    assert svg.tick_label(1000.0, [0.0, 500.0]) == "1,000"
    assert svg.tick_label(0.5, [0.0, 0.25]) == "0.50"
    assert svg.tick_label(2.5, [0.0, 2.5]) == "2.5"
    assert svg.nice_ticks(0.0) == [0.0, 1.0]
