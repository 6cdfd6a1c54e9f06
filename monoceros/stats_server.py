"""The master's stats listener: non-blocking HTTP/1.1, served from the master's own loop.

The master forks, so it runs no threads; it already waits in ``select`` on its signal wake-up
pipe. :class:`StatsServer` adds its listening socket and open connections to that wait
(:meth:`StatsServer.wants`) and serves whatever became ready (:meth:`StatsServer.serve_ready`)
without ever blocking: each connection reads one request head with the shared sans-IO
:class:`~monoceros.protocols.http.HttpParser`, gets its whole response from a route, writes it
as far as the socket takes it, and is closed. A connection gets :data:`DEADLINE` seconds in all
and at most :data:`MAX_CONNECTIONS` are open at once (the rest wait in the listen queue), so a
slow or hostile scraper costs the master a bounded amount of work and never holds up signals.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Callable
from typing import Final

from .protocols.errors import ProtocolError
from .protocols.events import NEED_DATA
from .protocols.http import HttpLimits, HttpParser, HttpRequest
from .protocols.response import error_response, status_line

__all__ = ["DEADLINE", "MAX_CONNECTIONS", "Response", "Route", "StatsServer", "response_bytes"]

#: seconds a stats connection may take, from accept to its last byte sent
DEADLINE: Final = 2.0
#: stats connections open at once, at most
MAX_CONNECTIONS: Final = 16
#: bytes of a request head, at most (a scraper sends a few hundred)
_HEAD_LIMIT: Final = 8192
_ACCEPTS_PER_WAKE: Final = 16

#: (status, content type, body)
Response = tuple[int, str, bytes]
#: a route answers one path: called with nothing, returns the whole response
Route = Callable[[], Response]


def response_bytes(status: int, content_type: str, body: bytes, head_only: bool = False) -> bytes:
    """A complete, self-closing HTTP/1.1 response."""
    head = b"%sContent-Type: %s\r\nContent-Length: %d\r\nCache-Control: no-store\r\n" % (
        status_line(status),
        content_type.encode("latin-1"),
        len(body),
    )
    return head + b"Connection: close\r\n\r\n" + (b"" if head_only else body)


class _Conn:
    """One scraper connection: reading its head, then writing the response."""

    __slots__ = ("deadline", "out", "parser", "received", "sock")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.parser = HttpParser(HttpLimits(line=4094, fields=100, field_size=8190))
        self.received = 0
        self.out: bytes | None = None  # None while reading the head


class StatsServer:
    """Serves ``routes`` (path -> :data:`Route`) on a listening socket; see the module."""

    def __init__(
        self,
        sock: socket.socket,
        routes: dict[str, Route],
        *,
        deadline: float = DEADLINE,
        max_connections: int = MAX_CONNECTIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.routes = routes
        self.deadline = deadline
        self.max_connections = max_connections
        self._clock = clock
        self._conns: dict[int, _Conn] = {}

    # ------------------------------------------------------------------ what to wait for

    def wants(self) -> tuple[list[int], list[int], float | None]:
        """Descriptors to wait on for reading and for writing, and the earliest deadline (a
        ``time.monotonic()`` value; None when no connection is open)."""
        readable = [fd for fd, c in self._conns.items() if c.out is None]
        writable = [fd for fd, c in self._conns.items() if c.out is not None]
        if len(self._conns) < self.max_connections:
            readable.append(self.sock.fileno())
        earliest = min((c.deadline for c in self._conns.values()), default=None)
        return readable, writable, earliest

    def wait(self, fds: list[int], timeout: float) -> list[int]:
        """Wait up to ``timeout`` seconds for one of ``fds`` to be readable, serving the stats
        listener meanwhile; returns the ready ones among ``fds`` (maybe none)."""
        end = time.monotonic() + timeout
        while True:
            readable, writable, earliest = self.wants()
            wait = end - time.monotonic()
            if earliest is not None:
                wait = min(wait, earliest - self._clock())
            try:
                ready_r, ready_w, _ = select.select([*fds, *readable], writable, [], max(0.0, wait))
            except InterruptedError:  # pragma: no cover - retried by PEP 475
                ready_r, ready_w = [], []
            mine = [fd for fd in ready_r if fd not in fds] + ready_w
            self.serve_ready(mine)
            theirs = [fd for fd in ready_r if fd in fds]
            if theirs or time.monotonic() >= end:
                return theirs

    @property
    def open_connections(self) -> int:
        """Scraper connections open now."""
        return len(self._conns)

    # ------------------------------------------------------------------ serving

    def serve_ready(self, ready: set[int] | list[int]) -> None:
        """Make progress on every descriptor in ``ready`` (readable or writable ones among
        :meth:`wants`), then close connections past their deadline. Never blocks."""
        for fd in ready:
            if fd == self.sock.fileno():
                self._accept()
                continue
            conn = self._conns.get(fd)
            if conn is None:
                continue
            if conn.out is None:
                self._read(conn)
            else:
                self._write(conn)
        self.expire()

    def expire(self) -> None:
        """Close the connections past their deadline."""
        now = self._clock()
        for conn in [c for c in self._conns.values() if c.deadline <= now]:
            self._close(conn)

    def _accept(self) -> None:
        for _ in range(_ACCEPTS_PER_WAKE):
            if len(self._conns) >= self.max_connections:
                return
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # EMFILE, ECONNABORTED...: the next wake tries again
            sock.setblocking(False)
            self._conns[sock.fileno()] = _Conn(sock, self._clock() + self.deadline)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)  # left before sending a whole head: nothing to answer
            return
        conn.received += len(data)
        try:
            conn.parser.receive_data(data)
            event = conn.parser.next_event()
        except ProtocolError as exc:
            self._respond(conn, error_response(exc.status, exc.reason))
            return
        if event is NEED_DATA:
            if conn.received > _HEAD_LIMIT:
                self._respond(conn, error_response(431, "request head too large"))
            return
        assert isinstance(event, HttpRequest)
        self._respond(conn, self.answer(event.method, event.target))

    def answer(self, method: str, target: bytes) -> bytes:
        """The whole response to ``method target``."""
        path = target.partition(b"?")[0].decode("latin-1")
        route = self.routes.get(path)
        if route is None:
            return response_bytes(404, "text/plain; charset=utf-8", b"Not Found\n")
        if method not in ("GET", "HEAD"):
            body = response_bytes(405, "text/plain; charset=utf-8", b"Method Not Allowed\n")
            return body.replace(b"\r\n\r\n", b"\r\nAllow: GET, HEAD\r\n\r\n", 1)
        try:
            status, content_type, body = route()
        except Exception as exc:  # a scrape must never take the master down
            text = f"Internal Server Error\n{type(exc).__name__}: {exc}\n".encode()
            return response_bytes(500, "text/plain; charset=utf-8", text)
        return response_bytes(status, content_type, body, head_only=method == "HEAD")

    def _respond(self, conn: _Conn, data: bytes) -> None:
        conn.out = data
        self._write(conn)

    def _write(self, conn: _Conn) -> None:
        assert conn.out is not None
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        conn.out = conn.out[sent:]
        if not conn.out:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_WR)
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        self._conns.pop(conn.sock.fileno(), None)
        conn.sock.close()

    def close(self) -> None:
        """Close every connection and the listening socket."""
        for conn in list(self._conns.values()):
            self._close(conn)
        self.sock.close()
