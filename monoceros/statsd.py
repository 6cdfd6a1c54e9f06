"""gunicorn's statsd metrics, sent by the master about once a second.

Nothing is sent on the request path: the workers count in their shared blocks
(:mod:`monoceros.worker_metrics`), and the master, from its main loop, sums them with the
departed workers' counts, takes the difference to what it sent last, and sends that in a few
UDP (or UNIX datagram) packets from a non-blocking socket. Names and types are gunicorn's:

- ``gunicorn.requests`` (counter) and ``gunicorn.request.status.<code>`` (counter, per status);
- ``gunicorn.request.duration`` (timer, ms): one sample carrying the mean duration of the
  interval's N requests, with sample rate ``1/N``, so a statsd server counts N timings of
  that mean (its count and mean are right; percentiles see the mean, not each request);
- ``gunicorn.workers`` (gauge): the live workers;
- ``gunicorn.log.<level>`` (counters): error-log lines at critical, error, warning, and
  ``exception`` (an error with a traceback), from the master and the workers.

:func:`lines` and :func:`datagrams` only format; :class:`StatsdSender` owns the socket.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping
from typing import Final, Protocol

from .worker_metrics import LOG_COUNTED, Totals

__all__ = ["MAX_DATAGRAM", "StatsdSender", "datagrams", "lines", "normalise_prefix"]

#: bytes per datagram at most (fits an Ethernet MTU with IPv6 and UDP headers)
MAX_DATAGRAM: Final = 1432
#: seconds between two sends
INTERVAL: Final = 1.0
_RESOLVE_RETRY = 60.0


class _Log(Protocol):
    def warning(self, msg: str, *args: object) -> None: ...


def normalise_prefix(prefix: str) -> str:
    """``"app"`` and ``"app."`` give ``"app."``; ``""`` gives ``""`` (as gunicorn)."""
    stem = prefix.strip().rstrip(".")
    return f"{stem}." if stem else ""


def _rate(n: int) -> str:
    return f"{1.0 / n:.9g}"


def lines(
    last: Totals, now: Totals, workers: int, logs: Mapping[str, int] | None = None
) -> list[str]:
    """The metric lines (without prefix or tags) for what happened between ``last`` and
    ``now``, and the ``workers`` gauge; ``logs``: error-log lines by level since ``last``.
    Counters that did not move are left out."""
    out: list[str] = []
    by_status: dict[int, int] = {}
    for key, value in now.counts.items():
        delta = value - last.counts.get(key, 0)
        if delta > 0:
            by_status[key[1]] = by_status.get(key[1], 0) + delta
    requests = sum(by_status.values())
    if requests:
        out.append(f"gunicorn.requests:{requests}|c")
        seconds = sum(now.sums.values()) - sum(last.sums.values())
        mean_ms = max(0.0, seconds) * 1000.0 / requests
        rate = "" if requests == 1 else f"|@{_rate(requests)}"
        out.append(f"gunicorn.request.duration:{mean_ms:.3f}|ms{rate}")
        for status in sorted(by_status):
            out.append(f"gunicorn.request.status.{status}:{by_status[status]}|c")
    for level in LOG_COUNTED:
        count = (logs or {}).get(level, 0)
        if count > 0:
            out.append(f"gunicorn.log.{level}:{count}|c")
    out.append(f"gunicorn.workers:{workers}|g")
    return out


def datagrams(
    metric_lines: list[str], prefix: str = "", tags: str = "", limit: int = MAX_DATAGRAM
) -> list[bytes]:
    """Prefix and tag each line (``|#tags``, DogStatsD), and pack them, newline-separated,
    into datagrams of at most ``limit`` bytes (a longer line goes alone)."""
    suffix = f"|#{tags}" if tags else ""
    out: list[bytes] = []
    current = b""
    for line in metric_lines:
        item = f"{prefix}{line}{suffix}".encode("ascii", "replace")
        if current and len(current) + 1 + len(item) > limit:
            out.append(current)
            current = b""
        current = current + b"\n" + item if current else item
    if current:
        out.append(current)
    return out


def _target(address: str) -> tuple[int, str | tuple[str, int]]:
    """(family, sendto address) of a validated ``statsd_host`` (may resolve a name)."""
    if address.startswith("unix:"):
        return socket.AF_UNIX, address[5:]
    host, _, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") else host
    family, _, _, _, sockaddr = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)[0]
    return family, (str(sockaddr[0]), int(sockaddr[1]))


class StatsdSender:
    """Sends the deltas of the master's totals at most once per :data:`INTERVAL`.

    The arbiter calls :meth:`tick` from its main loop with a callable that reads the totals
    (only called when a send is due). A send error is logged once, then ignored.
    """

    def __init__(
        self,
        address: str,
        prefix: str,
        tags: str,
        log: _Log,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = address
        self.prefix = normalise_prefix(prefix)
        self.tags = tags
        self._log = log
        self._clock = clock
        self._last = Totals()
        self._next = clock() + INTERVAL
        self._sock: socket.socket | None = None
        self._to: str | tuple[str, int] | None = None
        self._resolve_at = 0.0
        self._warned = False

    def configure(self, address: str, prefix: str, tags: str) -> None:
        """New settings (a HUP): keep the counts sent so far, open a new socket if needed."""
        if address != self.address:
            self.close()
            self.address = address
            self._resolve_at = 0.0
        self.prefix = normalise_prefix(prefix)
        self.tags = tags

    def tick(self, read: Callable[[], tuple[Totals, int]], force: bool = False) -> None:
        """Send if a second passed since the last send (or ``force``): ``read()`` gives the
        grand totals and the live workers."""
        now = self._clock()
        if not force and now < self._next:
            return
        self._next = now + INTERVAL
        totals, workers = read()
        metric_lines = lines(self._last, totals, workers, _log_deltas(self._last, totals))
        self._last = totals
        for datagram in datagrams(metric_lines, self.prefix, self.tags):
            self._send(datagram, now)

    def _send(self, datagram: bytes, now: float) -> None:
        if self._sock is None:
            if now < self._resolve_at:
                return
            self._resolve_at = now + _RESOLVE_RETRY
            try:
                family, self._to = _target(self.address)
                sock = socket.socket(family, socket.SOCK_DGRAM)
            except OSError as exc:
                self._warn(exc)
                return
            sock.setblocking(False)
            self._sock = sock
        try:
            self._sock.sendto(datagram, self._to)  # type: ignore[arg-type]
        except OSError as exc:
            self._warn(exc)

    def _warn(self, exc: OSError) -> None:
        if not self._warned:
            self._warned = True
            self._log.warning("Cannot send statsd metrics to %s: %s", self.address, exc)

    def close(self) -> None:
        """Close the socket (also in a forked worker, which must not keep it)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _log_deltas(last: Totals, now: Totals) -> dict[str, int]:
    return {level: now.logs.get(level, 0) - last.logs.get(level, 0) for level in now.logs}
