"""``monoceros-top``'s screen from a ``/stats`` document: a pure function, no server."""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monoceros.listeners import parse_bind
from monoceros.top import StatsError, fetch_stats, main, render, request_rate

SAMPLE: dict[str, Any] = {
    "pid": 4711,
    "uptime_seconds": 3723.5,
    "ready": True,
    "healthy": True,
    "workers_expected": 2,
    "requests_total": 1234,
    "workers": [
        {
            "id": 1,
            "pid": 4712,
            "state": "busy",
            "requests": 610,
            "in_flight": 1,
            "rss_bytes": 22884352,
            "current": {"method": "GET", "path": "/report?year=2024", "age_seconds": 12.5},
        },
        {
            "id": 2,
            "pid": 4713,
            "state": "idle",
            "requests": 24,
            "in_flight": 0,
            "rss_bytes": None,
            "current": None,
        },
    ],
    "listeners": [],
}


def test_header_and_one_aligned_row_per_worker() -> None:
    lines = render(SAMPLE, width=120, rate=3.25).splitlines()
    assert lines[0] == (
        "monoceros master 4711  up 1h02m03s  workers 1/2 busy  requests 1234  3.2 req/s"
    )
    assert lines[1] == ""
    header, busy, idle = lines[2:]
    assert header.split() == ["ID", "PID", "STATE", "REQUESTS", "RSS", "MiB", "AGE", "s", "REQUEST"]
    assert busy.split() == ["1", "4712", "busy", "610", "21.8", "12.5", "GET", "/report?year=2024"]
    assert idle.split() == ["2", "4713", "idle", "24", "-", "-", "-"]
    # numbers end in the same column as their heading
    for heading in ("PID", "REQUESTS", "MiB", "AGE s"):
        end = header.index(heading) + len(heading)
        assert busy[end - 1] != " " and busy[end] == " "
        assert idle[end - 1] != " " and idle[end] == " "
    assert busy.index("GET") == header.rindex("REQUEST")


def test_no_rate_on_the_first_screen_and_not_ready_is_said() -> None:
    first = render({**SAMPLE, "ready": False}, width=120).splitlines()[0]
    assert "req/s" not in first
    assert first.endswith("NOT READY")


def test_every_line_is_cut_to_the_width() -> None:
    long = {**SAMPLE, "workers": [{**SAMPLE["workers"][0], "current": {
        "method": "POST", "path": "/" + "x" * 300, "age_seconds": 1}}]}  # fmt: skip
    out = render(long, width=60)
    assert all(len(line) <= 60 for line in out.splitlines())
    assert out.splitlines()[3].endswith("xxx...")
    assert all(len(line) <= 10 for line in render(long, width=10).splitlines())


def test_control_characters_from_clients_are_escaped() -> None:
    evil = {**SAMPLE, "workers": [{**SAMPLE["workers"][0], "current": {
        "method": "GET", "path": "/a\x1b[2J\nb\\", "age_seconds": 0.5}}]}  # fmt: skip
    out = render(evil, width=200)
    assert "\x1b" not in out
    assert "GET /a\\x1b[2J\\x0ab\\\\" in out
    assert len(out.splitlines()) == 4


def test_a_document_with_missing_fields_still_renders() -> None:
    out = render({"workers": [{}, "junk"]}, width=80)
    assert out.splitlines()[0] == "monoceros master -  up -  workers 0/1 busy  requests -"


def test_request_rate() -> None:
    assert request_rate(None, (10.0, 5)) is None
    assert request_rate((10.0, 5), (12.0, 25)) == 10.0
    assert request_rate((10.0, 50), (12.0, 25)) is None  # a new master counts from 0
    assert request_rate((10.0, 5), (10.0, 5)) is None


# -------------------------------------------------------------------- the client, on a stub


class _Stub(http.server.BaseHTTPRequestHandler):
    body = b""
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[type[_Stub]]:
    handler = type("Handler", (_Stub,), {"body": json.dumps(SAMPLE).encode()})
    srv = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    handler.port = srv.server_address[1]  # type: ignore[attr-defined]
    yield handler
    srv.shutdown()
    thread.join(5)
    srv.server_close()


def test_fetch_over_tcp_and_once(stub: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert fetch_stats(parse_bind(f"127.0.0.1:{stub.port}")) == SAMPLE
    assert main([f"127.0.0.1:{stub.port}", "--once"]) == 0
    out = capsys.readouterr().out
    assert "4712" in out and "GET /report?year=2024" in out and "\x1b" not in out


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [(404, b"no", "answered /stats with 404"), (200, b"<html>", "sent no JSON"),
     (200, b"[1]", "does not look like")],
)  # fmt: skip
def test_a_wrong_answer_is_one_readable_error(
    stub: Any, status: int, body: bytes, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    stub.status, stub.body = status, body
    with pytest.raises(StatsError, match=reason):
        fetch_stats(parse_bind(f"127.0.0.1:{stub.port}"))
    assert main([f"127.0.0.1:{stub.port}", "--once"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and reason in err


def test_a_missing_unix_socket(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([f"unix:{tmp_path / 'nothing.sock'}", "--once"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("monoceros-top: cannot reach the stats listener at unix:")
    assert err.count("\n") == 1


@pytest.mark.parametrize("argv", [["fd://3"], ["1.2.3.4:x"], ["h:1", "--interval", "0"]])
def test_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--once"])
    assert exc.value.code == 2
    assert "monoceros-top: error:" in capsys.readouterr().err


def test_a_free_port_is_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(StatsError, match=os.strerror(111)):
            fetch_stats(parse_bind(f"127.0.0.1:{port}"))
