"""statsd (--statsd-host), driven like a user: the real CLI sends to a UDP socket the test binds."""

from __future__ import annotations

import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from conftest import Server, send_known_mix

TAGS = "|#env:test,team:web"


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


def _read(sock: socket.socket, timeout: float) -> list[str]:
    """The lines of one datagram, or [] if none came within ``timeout`` seconds."""
    sock.settimeout(timeout)
    try:
        return sock.recv(65536).decode("ascii").split("\n")
    except TimeoutError:
        return []


def _add(seen: Counter[str], gauges: list[str], lines: list[str]) -> None:
    for line in lines:
        assert line.endswith(TAGS), line
        name, _, rest = line[: -len(TAGS)].partition(":")
        value, _, kind = rest.partition("|")
        if kind == "g":
            gauges.append(f"{name}={value}")
        elif kind == "c":
            seen[name] += int(value)
        else:
            assert name == "web.gunicorn.request.duration", line
            assert kind.startswith("ms"), line
            seen["timings"] += round(1 / float(kind.split("@")[1])) if "@" in kind else 1


def test_statsd_counts_every_request_once(
    server: Callable[..., Server], receiver: socket.socket
) -> None:
    port = receiver.getsockname()[1]
    srv = server(
        [
            "-w", "2",
            "--statsd-host", f"127.0.0.1:{port}",
            "--statsd-prefix", "web",
            "--dogstatsd-tags", "env:test,team:web",
        ],
        wait=False,
    )  # fmt: skip
    seen: Counter[str] = Counter()
    gauges: list[str] = []
    first = _read(receiver, 20)  # the master's loop runs: requests queue until a worker boots
    assert first, srv.log()
    _add(seen, gauges, first)
    assert seen["web.gunicorn.requests"] == 0, first
    send_known_mix(srv)  # 5 answered 200, 2 without Host answered 400
    assert srv.request("/raise")[0] == 500
    deadline = time.monotonic() + 15
    while seen["web.gunicorn.requests"] < 8 and time.monotonic() < deadline:
        _add(seen, gauges, _read(receiver, 2))
    assert seen["web.gunicorn.requests"] == 8, (seen, srv.log())
    assert "web.gunicorn.workers=2" in gauges, gauges
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(20) == 0, srv.log()
    for _ in range(100):  # drain what was sent before the exit: nothing more is coming
        lines = _read(receiver, 0.01)
        if not lines:
            break
        _add(seen, gauges, lines)
    assert seen["web.gunicorn.requests"] == 8
    assert seen["web.gunicorn.request.status.200"] == 5
    assert seen["web.gunicorn.request.status.400"] == 2
    assert seen["web.gunicorn.request.status.500"] == 1
    assert seen["timings"] == 8
    assert seen["web.gunicorn.log.exception"] == 1  # "Error handling request /raise"
    assert gauges[-1] == "web.gunicorn.workers=0", gauges  # the final send, after the stop


def test_statsd_final_send_on_stop_and_unix_socket(
    server: Callable[..., Server], tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("statsd") / "statsd.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        srv = server(["-w", "1", "--statsd-host", f"unix:{path}"], wait=False)
        assert _read(sock, 20), srv.log()  # the master's first send: no request so far
        for _ in range(3):
            srv.get_ok("/pid")
        srv.signal(signal.SIGTERM)  # at once: the last second's counts go in the final send
        assert srv.wait_exit(20) == 0, srv.log()
        total = 0
        for _ in range(100):
            lines = _read(sock, 0.01)
            if not lines:
                break
            total += sum(int(x.split(":")[1].split("|")[0]) for x in lines if "requests:" in x)
    assert total == 3
    assert "statsd" not in srv.log().lower(), srv.log()


@pytest.mark.parametrize(
    ("args", "app"),
    [(["-k", "gthread", "--threads", "4"], "app:app"), (["-k", "asgi"], "asgi_app:app")],
)
def test_statsd_counts_other_worker_kinds(
    server: Callable[..., Server], receiver: socket.socket, args: list[str], app: str
) -> None:
    port = receiver.getsockname()[1]
    srv = server([*args, "--statsd-host", f"127.0.0.1:{port}"], app=app, wait=False)
    assert _read(receiver, 20), srv.log()  # the master's first send: no request so far
    for _ in range(4):
        srv.get_ok("/pid")
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(20) == 0, srv.log()
    counts: Counter[str] = Counter()
    for _ in range(100):
        lines = _read(receiver, 0.01)
        if not lines:
            break
        for line in lines:
            name, _, rest = line.partition(":")
            if rest.endswith("|c"):
                counts[name] += int(rest[:-2])
    assert counts["gunicorn.requests"] == 4, (counts, srv.log())
    assert counts["gunicorn.request.status.200"] == 4
