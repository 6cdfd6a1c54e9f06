"""The one interface a request cycle or a WebSocket session talks to its peer through.

:class:`Channel` is their connection, its transport and its flow control seen as one object.
Implemented by :class:`~.connection.TransportConnection` (over an asyncio transport, HTTP/1.1 and
uWSGI) and :class:`~.uwsgi_fast.FastConnection` (over a bare uwsgi socket).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .context import ServerContext
    from .cycle import HttpCycle

__all__ = ["Channel"]


@runtime_checkable
class Channel(Protocol):
    """A connection as its request cycle or WebSocket session uses it."""

    ctx: ServerContext
    deadline: float  # when the worker acts on the connection; a closing WebSocket sets it
    read_paused: bool  # True while reading from the peer is paused

    def write(self, data: bytes) -> None:
        """Send ``data`` (buffered as far as the peer does not take it yet)."""

    def write_last(self, data: bytes) -> None:
        """Send the response's last bytes; the connection may close right after them."""

    def is_closing(self) -> bool:
        """True once the connection is closing or closed: further writes are dropped."""

    def close(self) -> None:
        """Close once the buffered bytes are sent."""

    def abort(self) -> None:
        """Close now, dropping anything unsent."""

    def buffered(self, size: int) -> None:
        """``size`` bytes of the request wait for the application: pause or resume reading."""

    def pause_reading(self) -> None:
        """Stop reading from the peer (idempotent)."""

    def resume_reading(self) -> None:
        """Read from the peer again (idempotent)."""

    def watch_peer(self) -> None:
        """The application waits for the disconnect: make sure the peer's leaving is seen."""

    @property
    def write_paused(self) -> bool:
        """True while the peer is behind: the writer should :meth:`drain`."""

    async def drain(self) -> None:
        """Wait until writes are accepted again (or the connection is gone)."""

    def response_done(self, cycle: HttpCycle) -> None:
        """The response of ``cycle`` is complete: keep the connection alive, or close it."""

    def peer_label(self) -> str:
        """The peer, for log lines."""
