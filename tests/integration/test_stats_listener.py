"""The master's stats listener (--stats-bind), driven like a user: the real CLI, real sockets."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

from conftest import (
    Server,
    free_port,
    read_response,
    send_known_mix,
    slow_target,
    wait_for,
    wait_started,
)
from uwsgi_support import exchange, good_env, nginx_uwsgi_params, packet

KINDS = {
    "sync": (["-k", "sync"], "app:app"),
    "gthread": (["-k", "gthread", "--threads", "4"], "app:app"),
    "asgi": (["-k", "asgi"], "asgi_app:app"),
}
_SAMPLE = re.compile(r"^(\w+)(?:\{(.*)\})? (\S+)$")


def _get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: stats\r\n\r\n".encode())
        status, _, body = read_response(s, method)
    return status, body


def _metrics(port: int) -> dict[str, float]:
    status, body = _get(port, "/metrics")
    assert status == 200
    out = {}
    for line in body.decode().splitlines():
        m = _SAMPLE.match(line)
        if m:
            out[f"{m[1]}{{{m[2] or ''}}}"] = float(m[3])
    return out


def _stats(port: int) -> dict:
    status, body = _get(port, "/stats")
    assert status == 200
    return json.loads(body)


def _start(server: Callable[..., Server], kind: str, *extra: str) -> tuple[Server, int, int]:
    args, app = KINDS[kind]
    http_port, uwsgi_port, stats_port = free_port(), free_port(), free_port()
    srv = server(
        [
            *args,
            "--bind", f"http://127.0.0.1:{http_port}",
            "--bind", f"uwsgi://127.0.0.1:{uwsgi_port}",
            "--stats-bind", f"127.0.0.1:{stats_port}",
            *extra,
        ],
        app=app,
        bind=f"127.0.0.1:{http_port}",
    )  # fmt: skip
    return srv, uwsgi_port, stats_port


REQ = 'monoceros_requests_total{protocol="%s",status="%s"}'


@pytest.mark.parametrize("kind", list(KINDS))
def test_counts_every_response_and_shows_the_request_in_flight(
    server: Callable[..., Server], kind: str
) -> None:
    srv, uwsgi_port, stats_port = _start(server, kind, "-w", "1")
    # the start-up probe's response may still be on its way into the counts (gthread counts
    # after sending): a worker seen idle has counted it
    idle = 'monoceros_workers{state="idle"}'
    assert wait_for(lambda: _metrics(stats_port).get(idle) == 1, 10)
    before = _metrics(stats_port)
    send_known_mix(srv)  # 5 answered 200, 2 without Host answered 400
    for _ in range(3):
        assert exchange(("127.0.0.1", uwsgi_port), packet(good_env("/pid"))).startswith(
            b"HTTP/1.1 200"
        )
    expected = {REQ % ("http", 200): 5, REQ % ("http", 400): 2, REQ % ("uwsgi", 200): 3}

    def delta() -> dict[str, float]:
        now = _metrics(stats_port)
        return {k: now.get(k, 0) - before.get(k, 0) for k in expected}

    assert wait_for(lambda: delta() == expected, 10), delta()
    now = _metrics(stats_port)
    count = 'monoceros_request_duration_seconds_count{protocol="%s"}'
    assert now[count % "uwsgi"] - before.get(count % "uwsgi", 0) == 3
    http_total = sum(
        v for k, v in now.items() if k.startswith('monoceros_requests_total{protocol="http"')
    )
    assert now[count % "http"] == http_total
    assert now['monoceros_workers{state="idle"}'] == 1
    assert now['monoceros_workers{state="busy"}'] == 0
    assert now['monoceros_worker_requests_in_flight{worker="1"}'] == 0
    assert now['monoceros_worker_rss_bytes{worker="1"}'] > 1_000_000
    assert now[f'monoceros_listen_queue{{listener="127.0.0.1:{srv.port}"}}'] == 0

    target, mark = slow_target(srv, 1)  # outlasts the four looks below (milliseconds)
    slow = threading.Thread(target=srv.request, args=(target,), daemon=True)
    slow.start()
    wait_started(mark)
    stats = _stats(stats_port)
    (worker,) = stats["workers"]
    assert worker["state"] == "busy" and worker["in_flight"] == 1
    assert worker["current"]["method"] == "GET"
    assert worker["current"]["path"] == target
    assert worker["current"]["age_seconds"] >= 0
    assert _metrics(stats_port)['monoceros_workers{state="busy"}'] == 1
    assert _get(stats_port, "/healthz")[0] == 200
    slow.join(15)
    assert wait_for(lambda: _stats(stats_port)["workers"][0]["state"] == "idle", 10)


def test_a_killed_worker_keeps_its_counts_and_counts_as_a_crash(
    server: Callable[..., Server],
) -> None:
    srv, _, stats_port = _start(server, "sync", "-w", "2")
    srv.wait_workers(2)
    for _ in range(6):
        srv.get_ok("/pid")
    key = REQ % ("http", 200)
    assert wait_for(lambda: _metrics(stats_port)[key] >= 7, 10)
    served = _metrics(stats_port)[key]
    victim = srv.workers()[0]
    srv.get_ok("/pid")
    assert wait_for(lambda: _metrics(stats_port)[key] == served + 1, 10)

    os.kill(victim, signal.SIGKILL)
    crash = 'monoceros_worker_restarts_total{reason="crash"}'
    assert wait_for(lambda: _metrics(stats_port)[crash] == 1, 15), srv.log()
    after = _metrics(stats_port)
    assert after[key] == served + 1  # the dead worker's counts stayed
    assert after['monoceros_worker_restarts_total{reason="reload"}'] == 0
    srv.wait_workers(2)
    assert wait_for(lambda: _get(stats_port, "/healthz")[0] == 200, 10)


def test_an_asgi_status_out_of_range_is_answered_and_counted_as_500(
    server: Callable[..., Server],
) -> None:
    """The counters are indexed by status: an app's 5000 or 42 is refused before it is."""
    srv, _, stats_port = _start(server, "asgi", "-w", "1")
    before = _metrics(stats_port)
    for code in (5000, 42, -1):
        assert srv.request(f"/status?code={code}")[0] == 500
    key = REQ % ("http", 500)
    assert wait_for(lambda: _metrics(stats_port).get(key, 0) - before.get(key, 0) == 3, 10)
    assert not [k for k in _metrics(stats_port) if re.search(r'status="(5000|42|-1|0)"', k)]
    assert "expected an int from 100 to 999" in srv.log()


def test_readyz_turns_503_as_a_graceful_stop_begins(server: Callable[..., Server]) -> None:
    srv, _, stats_port = _start(server, "sync", "-w", "1", "--graceful-timeout", "20")
    assert _get(stats_port, "/readyz")[0] == 200
    target, mark = slow_target(srv, 1.5)  # outlasts the TERM's way to /readyz (milliseconds)
    result: list[int] = []
    slow = threading.Thread(target=lambda: result.append(srv.request(target)[0]), daemon=True)
    slow.start()
    wait_started(mark)
    srv.signal(signal.SIGTERM)
    assert wait_for(lambda: _get(stats_port, "/readyz")[0] == 503, 5)
    assert slow.is_alive()  # still finishing: the master answers meanwhile
    assert _stats(stats_port)["ready"] is False
    status, _ = _get(stats_port, "/nope")
    assert status == 404
    slow.join(15)
    assert result == [200]
    assert srv.wait_exit(15) == 0


_NGINX_LOCATIONS = """
location /u/ {{
    include {params};
    uwsgi_param PATH_INFO /pid;
    uwsgi_pass uwsgi_backend;
}}
location / {{
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_pass http://backend;
}}"""


@pytest.mark.parametrize("kind", list(KINDS))
def test_counts_what_nginx_sends_over_both_protocols(
    server: Callable[..., Server], nginx: Callable[..., Any], kind: str
) -> None:
    """Requests through a real nginx, proxy_pass to the HTTP listener and uwsgi_pass to the
    uwsgi one (a new uwsgi connection each), are counted exactly, by protocol and status."""
    srv, uwsgi_port, stats_port = _start(server, kind, "-w", "2")
    idle = 'monoceros_workers{state="idle"}'
    assert wait_for(lambda: _metrics(stats_port).get(idle) == 2, 10)
    before = _metrics(stats_port)
    locations = _NGINX_LOCATIONS.format(params=nginx_uwsgi_params()).replace(
        "uwsgi_pass uwsgi_backend;", f"uwsgi_pass 127.0.0.1:{uwsgi_port};"
    )
    ngx = nginx(locations, f"127.0.0.1:{srv.port}")
    for _ in range(7):
        assert ngx.request("/pid")[0] == 200
    for _ in range(4):
        assert ngx.request("/u/x")[0] == 200
    expected = {REQ % ("http", 200): 7, REQ % ("uwsgi", 200): 4}

    def delta() -> dict[str, float]:
        now = _metrics(stats_port)
        return {k: now.get(k, 0) - before.get(k, 0) for k in expected}

    assert wait_for(lambda: delta() == expected, 10), delta()
