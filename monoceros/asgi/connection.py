"""What the HTTP and uWSGI connection protocols share: the :class:`~.channel.Channel` over an
asyncio transport, its flow control (see :mod:`.flow`), teardown, the worker's view."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..addresses import PeerAddress
from .flow import HIGH_WATER, LOW_WATER, WriteFlow

if TYPE_CHECKING:
    from .context import ServerContext
    from .cycle import HttpCycle
    from .websocket import WebSocketSession

__all__ = ["TransportConnection"]


class TransportConnection(WriteFlow, asyncio.Protocol):
    """Base of one client (or front-end) connection over an asyncio transport.

    It is the :class:`~.channel.Channel` of its request cycles and WebSocket: ``write``,
    ``write_last`` and ``is_closing`` are the transport's own methods (bound when the connection
    is made: a write costs no extra call); it pauses the transport's reading itself, and the
    transport pauses its writes.
    """

    ctx: ServerContext
    transport: asyncio.Transport
    cycle: HttpCycle | None
    ws: WebSocketSession | None
    deadline: float
    read_paused: bool
    write: Callable[[bytes], None]
    write_last: Callable[[bytes], None]
    """A transport sends the last bytes like any others."""
    is_closing: Callable[[], bool]
    proxied_peer: PeerAddress | None
    """The client a PROXY header named, set before ``connection_made``; None (each subclass's
    constructor sets it): the transport's peer is the client."""

    def _attach(self, transport: asyncio.BaseTransport) -> None:
        """Take the transport of ``connection_made``: its writer methods, the peer."""
        self.transport = transport  # type: ignore[assignment]
        self.write = self.write_last = self.transport.write
        self.is_closing = transport.is_closing
        self.read_paused = self.write_paused = False
        self._drain_waiter = None
        peer = self.proxied_peer
        self.peer = transport.get_extra_info("peername") if peer is None else peer

    def connection_lost(self, exc: Exception | None) -> None:
        """Wake a waiting writer; tell the request or WebSocket in flight; unregister."""
        self.closed = True
        self.resume_writing()
        if self.cycle is not None:
            self.cycle.lost()
        if self.ws is not None:
            self.ws.connection_lost()
        self.ctx.discard(self)

    # ------------------------------------------------------------------ as a Channel

    def close(self) -> None:
        """Close the transport once its buffer is sent."""
        self.transport.close()

    def abort(self) -> None:
        """Close the transport now."""
        self.transport.abort()

    def buffered(self, size: int) -> None:
        """Adjust reading to ``size`` bytes now buffered for the application."""
        if size > HIGH_WATER:
            self.pause_reading()
        elif size < LOW_WATER:
            self.resume_reading()

    def pause_reading(self) -> None:
        """Stop reading from the peer (idempotent)."""
        if not self.read_paused and not self.closed:
            self.read_paused = True
            try:
                self.transport.pause_reading()
            except (RuntimeError, AttributeError):  # closing transport
                pass

    def resume_reading(self) -> None:
        """Read from the peer again (idempotent)."""
        if self.read_paused and not self.closed:
            self.read_paused = False
            try:
                self.transport.resume_reading()
            except (RuntimeError, AttributeError):
                pass

    def watch_peer(self) -> None:
        """A transport always watches its peer."""

    # ------------------------------------------------------------------ writes held back

    def pause_writing(self) -> None:
        """The write buffer is above its high-water mark: a WebSocket also stops reading (the
        pongs and echoes a client sends for would pile up unsent)."""
        self.write_paused = True
        if self.ws is not None:
            self.pause_reading()

    def resume_writing(self) -> None:
        """The write buffer drained: wake the waiting writer, then carry on what was held."""
        WriteFlow.resume_writing(self)
        if not self.closed:
            self.writable()

    def writable(self) -> None:
        """Writes are accepted again: the WebSocket sends its pending pong and reads again."""
        if self.ws is not None:
            self.ws.writable()

    # ------------------------------------------------------------------ the worker's view

    @property
    def busy(self) -> bool:
        """True while a request or a WebSocket is in progress."""
        return self.ws is not None or self.cycle is not None

    def websocket_deadline(self) -> bool:
        """At a deadline with a WebSocket in progress: the session acts (its Close went
        unanswered, a keepalive ping is due or unanswered).

        Returns True when the connection is a WebSocket (the caller has nothing more to do)."""
        if self.ws is None:
            return False
        self.ws.on_deadline()
        return True
