"""The benchmark harness's pure parts: wrk output, /proc accounting of a process tree, the tables."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import procstat, report  # noqa: E402
from bench.procs import listening_tcp, listening_unix  # noqa: E402
from bench.procstat import ProcStat  # noqa: E402
from bench.report import CellResult  # noqa: E402
from bench.scenarios import SCENARIOS  # noqa: E402
from bench.wrk import parse_wrk, to_ms  # noqa: E402

# Captured from wrk 4.1.0 (Debian) against a local server.
WRK_CLEAN = """\
Running 1s test @ http://127.0.0.1:18777/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.11ms    1.80ms  14.15ms   80.11%
    Req/Sec     1.30k   207.66     1.70k    60.00%
  Latency Distribution
     50%    2.56ms
     75%    3.68ms
     90%    5.47ms
     99%    9.85ms
  1301 requests in 1.00s, 4.52MB read
Requests/sec:   1295.56
Transfer/sec:      4.50MB
"""
WRK_ERRORS = """\
Running 1s test @ http://127.0.0.1:18777/nope
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.95ms    2.28ms  18.15ms   85.79%
    Req/Sec     1.92k   390.52     2.27k    75.00%
  Latency Distribution
     50%    2.08ms
     75%    3.65ms
     90%    6.02ms
     99%   11.61ms
  767 requests in 1.00s, 389.49KB read
  Socket errors: connect 0, read 6, write 2586, timeout 0
  Non-2xx or 3xx responses: 767
Requests/sec:    766.13
Transfer/sec:    389.05KB
"""


X = report.TIMES  # the tables' multiplication sign


def plain(text: str) -> str:
    """A table with its en dashes as hyphens, to compare with ASCII literals."""
    return text.replace(report.DASH, "-")


# ----------------------------------------------------------------------------------------- wrk
def test_wrk_clean_run() -> None:
    r = parse_wrk(WRK_CLEAN)
    assert (r.requests, r.seconds, r.rps) == (1301, 1.0, 1295.56)
    assert (r.p50_ms, r.p99_ms) == (2.56, 9.85)
    assert r.errors == 0
    assert r.error_text() == ""


def test_wrk_errors_are_all_counted() -> None:
    r = parse_wrk(WRK_ERRORS)
    assert (r.non2xx, r.connect_errors, r.read_errors, r.write_errors, r.timeouts) == (
        767,
        0,
        6,
        2586,
        0,
    )
    assert r.errors == 767 + 6 + 2586
    assert r.error_text() == "767 non-2xx, 6 read, 2586 write"


def test_wrk_units_and_timeouts() -> None:
    text = (
        WRK_CLEAN.replace("2.56ms", "812.00us")
        .replace("9.85ms", "1.20s")
        .replace("1301 requests in 1.00s", "90 requests in 1.00m")
        .replace(
            "Requests/sec", "  Socket errors: connect 1, read 0, write 0, timeout 12\nRequests/sec"
        )
    )
    r = parse_wrk(text)
    assert r.p50_ms == pytest.approx(0.812)
    assert r.p99_ms == pytest.approx(1200.0)
    assert r.seconds == pytest.approx(60.0)
    assert (r.connect_errors, r.timeouts, r.errors) == (1, 12, 13)
    assert math.isnan(to_ms("n/a"))


def test_wrk_without_summary_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


# ---------------------------------------------------------------------------------------- /proc
def stat_line(
    pid: int,
    ppid: int,
    utime: int,
    stime: int,
    cutime: int = 0,
    cstime: int = 0,
    comm: str = "python3",
    start: int = 1000,
    rss: int = 4096,
) -> str:
    """A /proc/PID/stat line in the kernel's layout (fields after rss left as zeros)."""
    fields = [
        "S",
        ppid,
        pid,
        pid,
        0,
        -1,
        4194560,
        10,
        0,
        0,
        0,
        utime,
        stime,
        cutime,
        cstime,
        20,
        0,
        1,
        0,
        start,
        123456789,
        rss,
    ] + [0] * 30
    return f"{pid} ({comm}) " + " ".join(str(f) for f in fields) + "\n"


def table(*stats: ProcStat) -> dict[int, ProcStat]:
    """A /proc snapshot holding these processes."""
    return {s.pid: s for s in stats}


def test_stat_line_with_spaces_and_parentheses_in_the_name() -> None:
    s = procstat.parse_stat(
        stat_line(4242, 17, 300, 40, 5, 6, comm="uWSGI (worker 1) x", start=777, rss=2560)
    )
    assert (s.pid, s.ppid, s.pgrp) == (4242, 17, 4242)
    assert s.cpu_ticks == 300 + 40 + 5 + 6
    assert (s.start_ticks, s.rss_pages) == (777, 2560)


def test_own_stat_from_proc() -> None:
    s = procstat.read_stat(os.getpid())
    assert s is not None
    assert (s.pid, s.ppid, s.pgrp) == (os.getpid(), os.getppid(), os.getpgrp())
    assert s.rss_pages > 0


def test_tree_cpu_counts_descendants_only() -> None:
    snap = table(
        procstat.parse_stat(stat_line(10, 1, 5, 5)),  # master
        procstat.parse_stat(stat_line(11, 10, 100, 20)),  # worker
        procstat.parse_stat(stat_line(12, 11, 7, 3)),  # worker's child
        procstat.parse_stat(stat_line(20, 1, 9999, 9999)),  # a neighbour
    )
    assert sorted(procstat.tree_pids(10, snap)) == [10, 11, 12]
    assert procstat.tree_cpu_ticks(10, snap) == 10 + 120 + 10
    assert procstat.tree_pids(99, snap) == []


def test_window_includes_a_worker_reaped_during_it() -> None:
    before = table(
        procstat.parse_stat(stat_line(10, 1, 5, 5)),
        procstat.parse_stat(stat_line(11, 10, 40, 10)),  # 50 ticks so far
    )
    # worker 11 ran 30 more ticks, exited and was reaped (its 80 moved to the master's c-times);
    # worker 13 replaced it and ran 7; the master itself ran 2
    after = table(
        procstat.parse_stat(stat_line(10, 1, 6, 6, cutime=60, cstime=20)),
        procstat.parse_stat(stat_line(13, 10, 5, 2)),
    )
    assert procstat.window_cpu_seconds(10, before, after) * procstat.HZ == pytest.approx(30 + 7 + 2)


def test_worker_pids_and_rss() -> None:
    master = procstat.parse_stat(stat_line(10, 1, 1, 1, rss=1000))
    worker = procstat.parse_stat(stat_line(11, 10, 1, 1, rss=3000))
    assert procstat.worker_pids(10, table(master, worker)) == [11]
    assert procstat.worker_pids(10, table(master)) == [10]  # single process (uvicorn)
    assert procstat.max_rss_bytes([11, 99], table(master, worker)) == 3000 * procstat.PAGE
    assert procstat.max_rss_bytes([], table(master)) == 0


def test_hwm_and_machine_lines() -> None:
    status = "Name:\tpython3\nVmPeak:\t  30000 kB\nVmHWM:\t   16896 kB\nVmRSS:\t   16000 kB\n"
    assert procstat.parse_hwm_kib(status) == 16896
    assert procstat.parse_hwm_kib("Name:\tkthreadd\n") == 0
    m = procstat.parse_machine("cpu  100 5 50 1000 20 3 7 2 0 0")
    assert (m.busy, m.total) == (100 + 5 + 50 + 3 + 7 + 2, 1187)


def test_listening_sockets_from_proc_net() -> None:
    unix = (
        "Num       RefCount Protocol Flags    Type St Inode Path\n"
        "0000000000000000: 00000002 00000000 00010000 0001 01 3306 /tmp/x/app.sock\n"
        "0000000000000000: 00000003 00000000 00000000 0001 03 3307 /tmp/x/other.sock\n"
    )
    assert listening_unix("/tmp/x/app.sock", unix)
    assert not listening_unix("/tmp/x/other.sock", unix)  # connected, not listening
    tcp = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0\n"
        "   1: 0100007F:1F91 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0\n"
    )
    assert listening_tcp(8080, tcp)
    assert not listening_tcp(8081, tcp)  # established only


# --------------------------------------------------------------------------------------- report
def cell(
    server: str,
    us: float | None,
    scenario: str = "hello",
    protocol: str = "uwsgi",
    rnd: int = 0,
    **kw: object,
) -> CellResult:
    """An ok cell of 1000 requests costing us µs each (None: a failed cell)."""
    if us is None:
        return CellResult(server, protocol, scenario, rnd, status="failed", reason="did not start")
    c = CellResult(
        server,
        protocol,
        scenario,
        rnd,
        status="ok",
        requests=1000,
        rps=5000.0 + rnd,
        p50_ms=1.0,
        p99_ms=2.0,
        server_cpu_s=us * 1000 / 1e6,
        nginx_cpu_s=0.02,
    )
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def test_summary_takes_medians_and_spread() -> None:
    rows = report.summarize(
        [cell("uwsgi", 10.0, rnd=0), cell("uwsgi", 14.0, rnd=1), cell("uwsgi", 12.0, rnd=2)]
    )
    (r,) = rows
    assert (r.rounds, r.rounds_ok) == (3, 3)
    assert r.server_us == pytest.approx(12.0)
    assert r.server_us_min == pytest.approx(10.0)
    assert r.server_us_max == pytest.approx(14.0)
    assert r.nginx_us == pytest.approx(20.0)
    assert r.rps == 5001.0
    assert report.problems(rows) == []


def test_ratios_against_each_peer() -> None:
    rows = report.summarize(
        [
            cell("uwsgi", 10.0),
            cell("gunicorn-sync", 100.0),
            cell("monoceros-sync", 15.0),
            cell("uvicorn", 20.0, protocol="http"),
            cell("monoceros-asgi", 15.0, protocol="http"),
            cell("gunicorn-asgi", 60.0, protocol="http"),
        ]
    )
    by = {(x.server, x.protocol): x for x in report.ratios(rows)}
    assert set(by) == {("monoceros-sync", "uwsgi"), ("monoceros-asgi", "http")}
    sync = by["monoceros-sync", "uwsgi"].vs
    assert sync == {f"{X} uwsgi": pytest.approx(1.5), f"{X} gunicorn": pytest.approx(0.15)}
    asgi = by["monoceros-asgi", "http"].vs
    assert asgi[f"{X} uvicorn"] == pytest.approx(0.75)
    assert asgi[f"{X} gunicorn"] == pytest.approx(0.25)
    assert asgi[f"{X} uwsgi"] is None  # uWSGI's http row was not measured
    text = plain(report.ratio_table(list(by.values())))
    assert "| hello | uwsgi | monoceros-sync | 15.0 | 1.50 | 0.15 | - |" in text
    assert "| hello | http | monoceros-asgi | 15.0 | - | 0.25 | 0.75 |" in text


def test_failed_and_erroneous_cells_are_loud() -> None:
    rows = report.summarize(
        [
            cell("uwsgi", 10.0),
            cell("gunicorn-sync", None),
            cell("monoceros-sync", 15.0, errors=3, error_text="3 non-2xx"),
            cell("monoceros-sync", 16.0, rnd=1),
        ]
    )
    text = plain(report.figures_table(rows))
    assert "| hello | uwsgi | gunicorn-sync | - | - | - | **FAILED** (1 of 1) |" in text
    assert (
        "| hello | uwsgi | monoceros-sync | 5000 | 1.00 | 2.00 | **3** | 15.5 | 15.0-16.0 | 1.55 |"
        in text
    )
    assert report.problems(rows) == [
        "hello uwsgi gunicorn-sync r0: did not start",
        "hello uwsgi monoceros-sync r0: 3 non-2xx",
    ]
    assert "**ERRORS / FAILURES**" in report.render(rows)


def test_memory_table_shows_growth_during_the_download() -> None:
    mb = 1 << 20
    rows = report.summarize(
        [
            cell("monoceros-sync", 15.0, rest_rss=16 * mb, peak_rss=16 * mb),
            cell(
                "monoceros-sync",
                4000.0,
                scenario="download-32m",
                rest_rss=16 * mb,
                peak_rss=17 * mb,
            ),
            cell("buffering", 4000.0, scenario="download-32m", rest_rss=20 * mb, peak_rss=84 * mb),
        ]
    )
    text = report.memory_table(rows)
    assert "| monoceros-sync | uwsgi | 16.0 | 17.0 | +1.0 |" in text
    assert "| buffering | uwsgi | 20.0 | 84.0 | +64.0 |" in text


# ------------------------------------------------------------------------------------ scenarios
def test_scenarios() -> None:
    echo = SCENARIOS["echo-4k"]
    script = echo.wrk_script()
    assert script is not None
    assert 'wrk.method = "POST"' in script and 'string.rep("e", 4096)' in script
    assert SCENARIOS["hello"].wrk_script() is None
    size, _ = SCENARIOS["download-32m"].expected(None)
    assert size == 32 << 20
    assert echo.expected(b"abc")[0] == 3
