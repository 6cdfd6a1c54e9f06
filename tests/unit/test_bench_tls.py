"""bench/tls.py's pure parts: the servers' command lines and the tables (the measurement itself
is run by hand, see bench/README.md)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import tls  # noqa: E402


def test_every_comparison_has_one_reference_and_tls_servers_get_the_certificate() -> None:
    for comparison in tls.COMPARISONS:
        members = [c for c in tls.CONTENDERS if c.comparison == comparison]
        assert sum(c.reference for c in members) == 1, comparison
    for contender in tls.CONTENDERS:
        args = [t.format(port="8443", cert="c.pem", key="k.pem") for t in contender.tokens]
        assert ("c.pem" in args and "k.pem" in args) == contender.tls, contender.name
        assert any("8443" in a for a in args), contender.name


def _cell(name: str, comparison: str, rnd: int, us: float, requests: int = 1000) -> tls.Cell:
    cell = tls.Cell(name, comparison, rnd, status="ok", requests=requests, rps=requests / 10)
    cell.us_per_request = us
    cell.wrk_cpu_s = requests * 20e-6
    return cell


def test_report_gives_medians_and_the_ratio_to_the_reference() -> None:
    asgi = [c for c in tls.CONTENDERS if c.comparison == "asgi-keepalive"]
    cells = [
        _cell("monoceros-asgi", "asgi-keepalive", 1, 30.0),
        _cell("monoceros-asgi", "asgi-keepalive", 2, 34.0),
        _cell("monoceros-asgi", "asgi-keepalive", 3, 32.0),
        _cell("uvicorn", "asgi-keepalive", 1, 40.0),
        _cell("uvicorn", "asgi-keepalive", 2, 40.0),
        tls.Cell("uvicorn", "asgi-keepalive", 3, reason="server did not start"),
    ]
    text = tls.report(cells, asgi)
    assert "### asgi-keepalive" in text and "sync-per-connection" not in text
    row = next(line for line in text.splitlines() if line.startswith("| monoceros-asgi "))
    assert "| 32.0 (30.0-34.0) | 0.80x | 20.0 |" in row, row
    ref = next(line for line in text.splitlines() if line.startswith("| uvicorn (ref)"))
    assert "| 2 |" in ref and "failed: server did not start" in ref, ref
