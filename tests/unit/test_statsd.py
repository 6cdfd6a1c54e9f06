"""The statsd sender: gunicorn's metric lines, the deltas, datagram packing, the socket."""

from __future__ import annotations

import logging
import socket

import pytest

from monoceros.config import Config, ConfigError
from monoceros.logs import LevelCounter
from monoceros.statsd import StatsdSender, datagrams, lines, normalise_prefix
from monoceros.worker_metrics import Totals, WorkerMetrics


def totals(counts: dict[tuple[str, int], int], seconds: float = 0.0, **logs: int) -> Totals:
    out = Totals(counts=dict(counts), logs=dict(logs))
    out.sums["http"] = seconds
    return out


def test_lines_are_the_deltas_with_gunicorns_names() -> None:
    last = totals({("http", 200): 2}, 0.5)
    now = totals({("http", 200): 5, ("uwsgi", 200): 1, ("http", 404): 1}, 0.9)
    assert lines(last, now, 3, {"error": 2}) == [
        "gunicorn.requests:5|c",
        "gunicorn.request.duration:80.000|ms|@0.2",  # 400 ms over 5 requests, counted 5 times
        "gunicorn.request.status.200:4|c",
        "gunicorn.request.status.404:1|c",
        "gunicorn.log.error:2|c",
        "gunicorn.workers:3|g",
    ]


def test_one_request_has_no_sample_rate_and_idle_sends_only_the_gauge() -> None:
    assert lines(Totals(), totals({("http", 500): 1}, 0.0125), 1) == [
        "gunicorn.requests:1|c",
        "gunicorn.request.duration:12.500|ms",
        "gunicorn.request.status.500:1|c",
        "gunicorn.workers:1|g",
    ]
    same = totals({("http", 200): 7}, 1.0)
    assert lines(same, same, 2) == ["gunicorn.workers:2|g"]


def test_sample_rate_of_three_requests() -> None:
    out = lines(Totals(), totals({("http", 200): 3}, 0.003), 1)
    assert out[1] == "gunicorn.request.duration:1.000|ms|@0.333333333"


@pytest.mark.parametrize(
    ("given", "prefix"), [("", ""), ("app", "app."), ("app.", "app."), ("a..", "a."), ("x", "x.")]
)
def test_prefix_ends_with_one_dot(given: str, prefix: str) -> None:
    assert normalise_prefix(given) == prefix


def test_datagrams_prefix_tag_and_split() -> None:
    assert datagrams(["a:1|c", "b:2|g"], "p.", "env:prod,team:x") == [
        b"p.a:1|c|#env:prod,team:x\np.b:2|g|#env:prod,team:x"
    ]
    packed = datagrams([f"m{i}:1|c" for i in range(10)], limit=16)
    assert packed == [f"m{i}:1|c\nm{i + 1}:1|c".encode() for i in range(0, 10, 2)]
    assert all(len(d) <= 16 for d in packed)


def test_sender_sends_once_a_second_over_udp() -> None:
    now = [100.0]
    current = [totals({("http", 200): 4}, 0.04)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        port = receiver.getsockname()[1]
        sender = StatsdSender(
            f"127.0.0.1:{port}", "web", "", logging.getLogger("t"), lambda: now[0]
        )
        sender.tick(lambda: (current[0], 2))  # not due yet
        now[0] += 1.0
        sender.tick(lambda: (current[0], 2))
        assert receiver.recv(2048) == (
            b"web.gunicorn.requests:4|c\nweb.gunicorn.request.duration:10.000|ms|@0.25\n"
            b"web.gunicorn.request.status.200:4|c\nweb.gunicorn.workers:2|g"
        )
        sender.tick(lambda: (current[0], 2), force=True)
        assert receiver.recv(2048) == b"web.gunicorn.workers:2|g"
        sender.close()


def test_sender_logs_a_failure_once(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("statsd-test")
    sender = StatsdSender("unix:/nonexistent/statsd.sock", "", "", log, lambda: 0.0)
    with caplog.at_level(logging.WARNING, "statsd-test"):
        for _ in range(3):
            sender.tick(lambda: (Totals(), 1), force=True)
    assert [r.message for r in caplog.records] == [
        "Cannot send statsd metrics to unix:/nonexistent/statsd.sock: "
        "[Errno 2] No such file or directory"
    ]
    sender.close()


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("localhost", "localhost:8125"),
        ("127.0.0.1:9125", "127.0.0.1:9125"),
        ("[::1]:9125", "[::1]:9125"),
        ("[::1]", "[::1]:8125"),
        ("unix:/run/statsd.sock", "unix:/run/statsd.sock"),
        ("unix:///run/statsd.sock", "unix:/run/statsd.sock"),
        ("unix:8125", "unix:8125"),  # gunicorn: a host named unix
        (None, None),
    ],
)
def test_statsd_host_setting(given: str | None, stored: str | None) -> None:
    cfg = Config({})
    cfg.set("statsd_host", given)
    assert cfg.statsd_host == stored


@pytest.mark.parametrize("bad", ["h:0", "h:x", "::1:80", "[::1", "unix:", "h:70000"])
def test_statsd_host_setting_refuses(bad: str) -> None:
    with pytest.raises(ConfigError, match="statsd_host"):
        Config({}).set("statsd_host", bad)


def test_dogstatsd_tags_setting() -> None:
    cfg = Config({})
    cfg.set("dogstatsd_tags", " env:prod , team:web ")
    assert cfg.dogstatsd_tags == "env:prod,team:web"
    with pytest.raises(ConfigError, match="dogstatsd_tags"):
        cfg.set("dogstatsd_tags", "a|b")


def test_level_counter_counts_master_then_into_a_block() -> None:
    counter = LevelCounter()
    log = logging.getLogger("statsd-levels")
    log.propagate = False
    log.addFilter(counter)
    try:
        log.info("not counted")
        log.warning("w")
        log.error("e")
        log.critical("c")
        try:
            raise ValueError("x")
        except ValueError:
            log.exception("x")
        assert counter.counts() == {"warning": 1, "error": 1, "critical": 1, "exception": 1}
        block = WorkerMetrics(1)
        counter.count_into(block)
        log.error("e")
        log.error("e")
        assert block.snapshot().logs == {"error": 2}
        assert counter.counts()["error"] == 1
        block.close()
    finally:
        log.removeFilter(counter)


def test_configure_keeps_the_counts_sent_so_far() -> None:
    current = totals({("http", 200): 2})
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as one,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as two,
    ):
        for sock in (one, two):
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(5)
        sender = StatsdSender(f"127.0.0.1:{one.getsockname()[1]}", "", "", logging.getLogger("t"))
        sender.tick(lambda: (current, 1), force=True)
        assert one.recv(2048).startswith(b"gunicorn.requests:2|c\n")
        sender.configure(f"127.0.0.1:{two.getsockname()[1]}", "new", "k:v")  # a HUP
        current = totals({("http", 200): 3})
        sender.tick(lambda: (current, 1), force=True)
        assert two.recv(2048).startswith(b"new.gunicorn.requests:1|c|#k:v\n")
        sender.close()
