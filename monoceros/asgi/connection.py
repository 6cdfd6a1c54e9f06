"""What the HTTP and uWSGI connection protocols share: flow control, teardown, the worker's view."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import ServerContext
    from .cycle import HttpCycle
    from .flow import FlowControl
    from .websocket import WebSocketSession

__all__ = ["Connection"]


class Connection(asyncio.Protocol):
    """Base of one client (or front-end) connection served by the asgi worker."""

    ctx: ServerContext
    transport: asyncio.Transport
    flow: FlowControl
    cycle: HttpCycle | None
    ws: WebSocketSession | None
    peer: Any
    closed: bool

    def connection_lost(self, exc: Exception | None) -> None:
        """Tell the request or WebSocket in flight; unregister."""
        self.closed = True
        self.flow.connection_lost()
        if self.cycle is not None:
            self.cycle.lost()
        if self.ws is not None:
            self.ws.connection_lost()
        self.ctx.discard(self)

    def pause_writing(self) -> None:
        """The transport's buffer is full."""
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        """The transport's buffer drained."""
        self.flow.resume_writing()

    def peer_label(self) -> str:
        """The peer's address, for log lines."""
        peer = self.peer
        if isinstance(peer, tuple):
            return str(peer[0])
        return "a local peer"

    @property
    def busy(self) -> bool:
        """True while a request or a WebSocket is in progress."""
        return self.ws is not None or self.cycle is not None

    def websocket_deadline(self) -> bool:
        """At a deadline with a WebSocket in progress: close if our Close went unanswered.

        Returns True when the connection is a WebSocket (the caller has nothing more to do)."""
        if self.ws is None:
            return False
        if self.ws.close_sent:  # the client never answered our Close
            self.transport.close()
        return True
