"""What the stats listener answers: the master's view of the server, as Prometheus text and JSON.

The master builds a :class:`ServerView` at each scrape (its workers' shared counting blocks
read with :meth:`~monoceros.worker_metrics.WorkerMetrics.snapshot`, their RSS from ``/proc``,
the listen queues from ``TCP_INFO``); :func:`prometheus` and :func:`stats_json` only format it.
The statsd sender (:mod:`monoceros.statsd`) diffs two :meth:`MasterStats.totals`.
"""

from __future__ import annotations

import json
import math
import os
import socket
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from .heartbeat import Heartbeat
from .stats_server import Response, Route
from .worker_metrics import (
    BUCKETS,
    PROTOCOLS,
    RESTART_REASONS,
    Totals,
    WorkerMetrics,
    WorkerSample,
)

__all__ = [
    "PROMETHEUS_TYPE",
    "ListenerView",
    "MasterStats",
    "ServerView",
    "WorkerView",
    "listen_queue",
    "prometheus",
    "read_rss",
    "stats_json",
]

#: the Content-Type of the Prometheus text exposition format
PROMETHEUS_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# struct tcp_info: 8 one-byte fields, then u32 rto, ato, snd_mss, rcv_mss, unacked, sacked...
_TCP_INFO = struct.Struct("8B6I")
_TCP_LISTEN = 10


@dataclass(slots=True)
class WorkerView:
    """One live worker at scrape time."""

    pid: int
    #: the worker's number (``worker.age``: 1 for the first one forked, growing)
    age: int
    sample: WorkerSample
    rss_bytes: int | None
    booted: bool
    #: seconds since its last heartbeat
    silent: float

    @property
    def state(self) -> str:
        """``busy`` while at least one request is in flight, else ``idle``."""
        return "busy" if self.sample.in_flight else "idle"


@dataclass(slots=True)
class ListenerView:
    """One listening socket: its address, protocol and accept queue (None where unknown)."""

    name: str
    protocol: str
    queue: int | None
    backlog: int | None


@dataclass(slots=True)
class ServerView:
    """Everything a scrape reports; ``now`` is ``time.monotonic()`` at the scrape."""

    pid: int
    now: float
    uptime: float
    workers: list[WorkerView]
    #: the counts of the workers that are gone
    departed: Totals
    restarts: dict[str, int]
    listeners: list[ListenerView]
    ready: bool
    healthy: bool
    num_workers: int
    extra: dict[str, Any] = field(default_factory=dict)

    def totals(self) -> Totals:
        """Every response since the master started: the departed workers' and the live ones'."""
        out = self.departed.copy()
        for worker in self.workers:
            out.add(worker.sample)
        return out


def read_rss(pid: int) -> int | None:
    """Resident set size of process ``pid`` in bytes (Linux ``/proc``), None elsewhere."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


def listen_queue(sock: socket.socket) -> tuple[int, int] | None:
    """(connections waiting to be accepted, the backlog) of a listening TCP socket.

    Linux's ``TCP_INFO`` of a socket in the LISTEN state reports the accept queue's current
    length as ``tcpi_unacked`` and its limit as ``tcpi_sacked``. None where not available
    (UNIX sockets, other systems).
    """
    option = getattr(socket, "TCP_INFO", None)
    if option is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, option, _TCP_INFO.size)
    except OSError:
        return None
    if len(raw) < _TCP_INFO.size:
        return None
    fields = _TCP_INFO.unpack_from(raw)
    if fields[0] != _TCP_LISTEN:
        return None
    return fields[12], fields[13]


# ---------------------------------------------------------------------------------- Prometheus


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, doc: str) -> None:
        self.lines.append(f"# HELP {name} {doc}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: dict[str, str], value: float) -> None:
        if labels:
            inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{inner}}} {_number(value)}")
        else:
            self.lines.append(f"{name} {_number(value)}")


def prometheus(view: ServerView) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of ``view``."""
    out = _Text()
    totals = view.totals()
    out.family(
        "monoceros_requests_total",
        "counter",
        "Responses sent by the workers since the master started, by protocol and status.",
    )
    for (proto, status), value in sorted(totals.counts.items()):
        out.sample("monoceros_requests_total", {"protocol": proto, "status": str(status)}, value)
    name = "monoceros_request_duration_seconds"
    out.family(name, "histogram", "Time from a request's head to its response's end.")
    bounds = [*(_number(b) for b in BUCKETS), "+Inf"]
    for proto in PROTOCOLS:
        running = 0
        for bound, value in zip(bounds, totals.buckets[proto], strict=True):
            running += value
            out.sample(f"{name}_bucket", {"protocol": proto, "le": bound}, running)
        out.sample(f"{name}_sum", {"protocol": proto}, totals.sums[proto])
        out.sample(f"{name}_count", {"protocol": proto}, running)
    out.family("monoceros_workers", "gauge", "Live workers, busy while a request is in flight.")
    busy = sum(1 for w in view.workers if w.state == "busy")
    out.sample("monoceros_workers", {"state": "idle"}, len(view.workers) - busy)
    out.sample("monoceros_workers", {"state": "busy"}, busy)
    out.family("monoceros_workers_expected", "gauge", "Workers the master keeps running.")
    out.sample("monoceros_workers_expected", {}, view.num_workers)
    out.family("monoceros_worker_requests_in_flight", "gauge", "Requests in flight in each worker.")
    for w in view.workers:
        in_flight = w.sample.in_flight
        out.sample("monoceros_worker_requests_in_flight", {"worker": str(w.age)}, in_flight)
    out.family(
        "monoceros_worker_restarts_total", "counter", "Workers replaced, by the reason they went."
    )
    for reason in RESTART_REASONS:
        out.sample("monoceros_worker_restarts_total", {"reason": reason}, view.restarts[reason])
    out.family("monoceros_worker_rss_bytes", "gauge", "Resident memory of each worker.")
    for w in view.workers:
        if w.rss_bytes is not None:
            out.sample("monoceros_worker_rss_bytes", {"worker": str(w.age)}, w.rss_bytes)
    out.family(
        "monoceros_listen_queue", "gauge", "Connections waiting to be accepted (TCP, Linux)."
    )
    for lst in view.listeners:
        if lst.queue is not None:
            out.sample("monoceros_listen_queue", {"listener": lst.name}, lst.queue)
    out.family("monoceros_listen_queue_limit", "gauge", "The accept queue's limit (backlog).")
    for lst in view.listeners:
        if lst.backlog is not None:
            out.sample("monoceros_listen_queue_limit", {"listener": lst.name}, lst.backlog)
    out.family("monoceros_uptime_seconds", "gauge", "Seconds since the master started.")
    out.sample("monoceros_uptime_seconds", {}, round(view.uptime, 3))
    out.family("monoceros_ready", "gauge", "1 while serving, 0 once a graceful stop began.")
    out.sample("monoceros_ready", {}, int(view.ready))
    return ("\n".join(out.lines) + "\n").encode("utf-8")


# ---------------------------------------------------------------------------------- JSON


def stats_json(view: ServerView) -> bytes:
    """uWSGI's stats server in spirit: the master, each worker, totals and listeners."""
    totals = view.totals()
    requests: dict[str, dict[str, int]] = {p: {} for p in PROTOCOLS}
    for (proto, status), value in sorted(totals.counts.items()):
        requests[proto][str(status)] = value
    workers = []
    for w in sorted(view.workers, key=lambda w: w.age):
        current = [
            {
                "method": r.method,
                "path": r.path,
                "age_seconds": round(max(0.0, view.now - r.start), 3),
            }
            for r in w.sample.current
        ]
        workers.append(
            {
                "id": w.age,
                "pid": w.pid,
                "state": w.state,
                "booted": w.booted,
                "requests": w.sample.requests,
                "in_flight": w.sample.in_flight,
                "rss_bytes": w.rss_bytes,
                "heartbeat_age_seconds": round(w.silent, 3),
                "current": current[0] if current else None,
                "in_flight_requests": current,
            }
        )
    doc = {
        "pid": view.pid,
        "uptime_seconds": round(view.uptime, 3),
        "ready": view.ready,
        "healthy": view.healthy,
        "workers_expected": view.num_workers,
        "requests_total": sum(totals.counts.values()),
        "requests": requests,
        "restarts": dict(view.restarts),
        "workers": workers,
        "listeners": [
            {"name": lst.name, "protocol": lst.protocol, "queue": lst.queue, "limit": lst.backlog}
            for lst in view.listeners
        ],
        **view.extra,
    }
    return (json.dumps(doc, indent=1) + "\n").encode("utf-8")


# ---------------------------------------------------------------------------------- the master


class MasterStats:
    """What the master keeps for the stats listener: the departed workers' counts and the
    restarts by reason. Counters only grow: a worker's counts join :attr:`departed` when the
    master reaps it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started = clock()
        self.departed = Totals()
        self.restarts = dict.fromkeys(RESTART_REASONS, 0)

    def worker_gone(self, metrics: WorkerMetrics, reason: str | None) -> None:
        """A worker was reaped: keep its counts, count its restart (``reason`` None: it was
        not replaced, e.g. stopped by TTOU or a stop), release its block."""
        sample = metrics.snapshot()
        self.departed.add(sample)
        reason = sample.exit_reason or reason  # what the worker said beats the master's guess
        if reason is not None:
            self.restarts[reason] += 1
        metrics.close()

    def totals(self, blocks: Iterable[WorkerMetrics]) -> Totals:
        """The departed workers' counts plus those of the live workers' ``blocks``."""
        out = self.departed.copy()
        for metrics in blocks:
            out.add(metrics.snapshot())
        return out

    def view(
        self,
        pid: int,
        workers: Iterable[tuple[int, int, Heartbeat, WorkerMetrics]],
        listeners: Iterable[tuple[str, str, socket.socket]],
        *,
        num_workers: int,
        stopping: bool,
        timeout: float,
    ) -> ServerView:
        """Read every live worker's block (``(pid, age, heartbeat, metrics)``) and the
        listeners (``(name, protocol, socket)``) into a :class:`ServerView`."""
        now = self._clock()
        views = []
        for wpid, age, heartbeat, metrics in workers:
            silent = max(0.0, now - heartbeat.last_beat())
            views.append(
                WorkerView(
                    wpid, age, metrics.snapshot(), read_rss(wpid), heartbeat.is_booted(), silent
                )
            )
        healthy = any(w.booted and (timeout <= 0 or w.silent <= timeout) for w in views)
        listener_views = []
        for name, protocol, sock in listeners:
            queue = listen_queue(sock)
            listener_views.append(ListenerView(name, protocol, *(queue if queue else (None, None))))
        return ServerView(
            pid,
            now,
            now - self.started,
            views,
            self.departed,
            self.restarts,
            listener_views,
            ready=healthy and not stopping,
            healthy=healthy,
            num_workers=num_workers,
        )

    def routes(self, view: Callable[[], ServerView]) -> dict[str, Route]:
        """The stats listener's paths, each answering from a fresh ``view()``."""

        def metrics() -> Response:
            return 200, PROMETHEUS_TYPE, prometheus(view())

        def stats() -> Response:
            return 200, "application/json", stats_json(view())

        def healthz() -> Response:
            ok = view().healthy
            return (200, "text/plain", b"ok\n") if ok else (503, "text/plain", b"no worker\n")

        def readyz() -> Response:
            v = view()
            if v.ready:
                return 200, "text/plain", b"ready\n"
            return 503, "text/plain", b"stopping\n" if v.healthy else b"no worker\n"

        return {"/metrics": metrics, "/stats": stats, "/healthz": healthz, "/readyz": readyz}
