"""bench's growth mode, pure parts: the growth scenarios, the least-squares fit, the growth tables;
and the one request that checks an answer, sent to a loopback listener to see its exact bytes."""

from __future__ import annotations

import json
import math
import socket
import sys
import tempfile
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import growth, report, run  # noqa: E402
from bench.report import CellResult  # noqa: E402
from bench.scenarios import BODY, DEFAULT, GROWTH, HEADERS, SCENARIOS, WrongAnswer  # noqa: E402

DASH = report.DASH


def cell(server: str, scenario: str, us: float | None, protocol: str = "uwsgi") -> CellResult:
    """An ok cell of 1000 requests costing us µs each (None: a failed cell)."""
    if us is None:
        return CellResult(server, protocol, scenario, 0, status="failed", reason="did not start")
    return CellResult(
        server, protocol, scenario, 0, status="ok", requests=1000, server_cpu_s=us * 1e-3
    )


# ------------------------------------------------------------------------------------------ fit
def test_fit_of_points_on_a_line_is_exact() -> None:
    f = growth.fit_line([(1, 5.0), (16, 35.0), (100, 203.0)])  # 3 + 2x
    assert f.slope == pytest.approx(2.0)
    assert f.intercept == pytest.approx(3.0)
    assert f.r2 == pytest.approx(1.0)
    assert f.max_dev == pytest.approx(0.0, abs=1e-12)
    assert f.at(10) == pytest.approx(23.0)
    assert f.points == 3


def test_fit_against_a_hand_computed_example() -> None:
    # mean x 1, mean y 2; Sxx 2, Sxy 1: slope 0.5, intercept 1.5; residuals -0.5, 1, -0.5
    f = growth.fit_line([(0, 1.0), (1, 3.0), (2, 2.0)])
    assert (f.slope, f.intercept) == (pytest.approx(0.5), pytest.approx(1.5))
    assert f.r2 == pytest.approx(1 - 1.5 / 2)  # residual 1.5 over total 2
    assert f.max_dev == pytest.approx(0.5)  # the first point: 0.5 off a value of 1


def test_fit_flat_points_and_too_few() -> None:
    f = growth.fit_line([(0, 7.0), (4, 7.0), (1024, 7.0)])
    assert f.slope == pytest.approx(0.0, abs=1e-12) and f.intercept == pytest.approx(7.0)
    assert math.isnan(f.r2)  # no variance to explain
    assert f.max_dev == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        growth.fit_line([(4, 1.0), (4, 2.0)])
    with pytest.raises(ValueError):
        growth.fit_line([])


def test_a_superlinear_series_shows_in_r2_and_deviation() -> None:
    quadratic = growth.fit_line([(x, 10 + x * x / 10) for x in (1.0, 16.0, 100.0)])
    assert quadratic.r2 < 0.99 and quadratic.max_dev > 0.3


# ------------------------------------------------------------------------------------ scenarios
def test_growth_scenarios_and_their_axes() -> None:
    assert set(GROWTH) | set(DEFAULT) == set(SCENARIOS)
    assert [SCENARIOS[n].axis_value for n in GROWTH] == [1, 16, 100, 0, 4, 1024]
    assert [SCENARIOS[n].axis for n in GROWTH] == [HEADERS] * 3 + [BODY] * 3
    assert all(not SCENARIOS[n].axis for n in DEFAULT)


def test_headers_scenarios_send_host_and_the_rest() -> None:
    assert SCENARIOS["headers-1"].wrk_script() is None  # wrk sends Host, nothing else
    script = SCENARIOS["headers-100"].wrk_script()
    assert script is not None
    lines = script.splitlines()
    assert len(lines) == 99 and len(set(lines)) == 99
    assert lines[0] == 'wrk.headers["X-Bench-01"] = "0123456789abcdef"'
    assert "wrk.method" not in script  # a GET of hello


def test_body_scenarios_post_to_the_length_app() -> None:
    script = SCENARIOS["body-0"].wrk_script()
    assert script is not None  # an empty POST still sends Content-Length: 0
    assert 'wrk.method = "POST"' in script and 'string.rep("e", 0)' in script
    script = SCENARIOS["body-1m"].wrk_script()
    assert script is not None and 'string.rep("e", 1048576)' in script
    assert 'wrk.headers["Content-Type"] = "application/octet-stream"' in script
    size, _ = SCENARIOS["body-1m"].expected(b"x" * (1 << 20))
    assert size == len(b"1048576")
    assert SCENARIOS["body-0"].expected(b"")[0] == 1  # "0"


def serve_once(answer: bytes) -> tuple[int, list[bytes], threading.Thread]:
    """A loopback listener that records one request's bytes (head and body) and sends answer."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)  # a check that never connects does not leave the thread waiting
    got: list[bytes] = []

    def handle() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = [
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.startswith(b"Content-Length")
            ]
            while len(body) < (length[0] if length else 0):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                body += chunk
            got.extend([head, body])
            conn.sendall(answer)

    thread = threading.Thread(target=handle, daemon=True)
    thread.start()
    return listener.getsockname()[1], got, thread


def test_the_check_sends_what_wrk_sends_and_no_more() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"
    )
    port, got, thread = serve_once(answer)
    assert SCENARIOS["headers-100"].check("127.0.0.1", port, timeout=10) == "200 text/plain 13 B"
    thread.join(10)
    head = got[0].split(b"\r\n")
    assert head[0] == b"GET / HTTP/1.1"
    fields = [line.split(b":")[0].lower() for line in head[1:]]
    assert len(fields) == 100  # the limit of gunicorn's and monoceros's limit_request_fields
    assert b"host" in fields and b"accept-encoding" not in fields


def test_the_check_of_a_body_reads_its_length_back() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\n4096"
    port, got, thread = serve_once(answer)
    assert SCENARIOS["body-4k"].check("127.0.0.1", port, timeout=10) == "200 text/plain 4 B"
    thread.join(10)
    assert got[0].startswith(b"POST /length HTTP/1.1\r\n") and len(got[1]) == 4096
    wrong = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\n4095"
    port, got, thread = serve_once(wrong)
    with pytest.raises(WrongAnswer, match="content differs"):
        SCENARIOS["body-4k"].check("127.0.0.1", port, timeout=10)
    thread.join(10)


# ---------------------------------------------------------------------------------------- tables
def growth_rows(us: dict[str, float | None]) -> list[report.Row]:
    """Rows of monoceros-sync over uwsgi, one per scenario, costing us[scenario] µs."""
    return report.summarize([cell("monoceros-sync", name, v) for name, v in us.items()])


def test_growth_series_fit_each_axis_in_order_of_x() -> None:
    rows = growth_rows(
        {
            "body-1m": 31.0 + 1024 * 0.5,
            "headers-100": 20.0 + 100 * 0.25,
            "headers-1": 20.25,
            "body-0": 31.0,
            "headers-16": 24.0,
            "body-4k": 33.0,
            "hello": 15.0,  # not a growth scenario: left out
        }
    )
    items = growth.growth_series(rows)
    assert [(s.axis, s.scenarios) for s in items] == [
        (HEADERS, ("headers-1", "headers-16", "headers-100")),
        (BODY, ("body-0", "body-4k", "body-1m")),
    ]
    headers, body = (s.fit for s in items)
    assert headers is not None and headers.slope == pytest.approx(0.25)
    assert body is not None and body.slope == pytest.approx(0.5) and body.r2 == pytest.approx(1.0)
    text = growth.render(rows).replace(DASH, "-")
    assert "| server | proto | headers-1 | headers-16 | headers-100 | µs per header |" in text
    assert "| monoceros-sync | uwsgi | 20.2 | 24.0 | 45.0 | 0.250 | 20.0 | 1.0000 | 0.0 % |" in text
    assert (
        "| monoceros-sync | uwsgi | 31.0 | 33.0 | 543.0 | 0.500 | 31.0 | 1.0000 | 0.0 % |" in text
    )


def test_growth_tables_with_a_failed_point_and_without_growth_scenarios() -> None:
    rows = growth_rows({"headers-1": 20.0, "headers-16": None, "headers-100": 45.0})
    text = growth.render(rows).replace(DASH, "-")
    # two points: a slope, but R² and the deviation would say nothing
    assert "| monoceros-sync | uwsgi | 20.0 | - | 45.0 | 0.253 | 19.7 | - | - |" in text
    assert "request body" not in text
    assert growth.render(growth_rows({"hello": 15.0, "echo-4k": 20.0})) == ""
    one = growth.growth_series(growth_rows({"headers-1": 20.0}))
    assert one[0].fit is None


# ------------------------------------------------------------------------------------ run.py CLI
def test_growth_flag_picks_the_growth_scenarios_and_monoceros() -> None:
    a = run.parse_args(["--growth"])
    assert a.scenarios.split(",") == list(GROWTH)
    assert a.servers.split(",") == list(run.GROWTH_SERVERS)
    assert [(s.name, p) for s, p in run.plan(a)][:2] == [
        ("monoceros-sync", "uwsgi"),
        ("monoceros-sync", "http"),
    ]
    a = run.parse_args(["--growth", "--servers", "uwsgi:uwsgi", "--scenarios", "body-4k"])
    assert (a.servers, a.scenarios) == ("uwsgi:uwsgi", "body-4k")
    a = run.parse_args([])
    assert a.scenarios.split(",") == list(DEFAULT) and not a.growth


def test_results_file_holds_no_path_of_this_machine() -> None:
    checkout = run.HERE.parent
    text = json.dumps(
        {
            "command": f"{checkout}/.venv/bin/python -m monoceros --bind unix:"
            f"{tempfile.gettempdir()}/mbench-x/app.sock",
            "peers": f"{Path.home()}/.cache/monoceros-bench/peers/bin/uwsgi",
        }
    )
    doc = json.loads(run.portable(text))
    assert doc["command"] == "./.venv/bin/python -m monoceros --bind unix:$TMPDIR/mbench-x/app.sock"
    assert doc["peers"] == "~/.cache/monoceros-bench/peers/bin/uwsgi"
    assert str(checkout) not in run.portable(text)
