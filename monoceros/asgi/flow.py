"""Flow control of one connection: reading paused while the app is behind, writes drained.

Reading: a request body is buffered for the application up to :data:`HIGH_WATER` bytes; past
it the transport stops reading, and it reads again as soon as the application has taken the
buffer below :data:`LOW_WATER` — or asks for more while nothing is buffered, so a paused reader
is always resumed by the very call that waits for data (the stall this module exists to avoid).

Writing: the transport calls :meth:`FlowControl.pause_writing` when its buffer is full;
:meth:`FlowControl.drain` then waits until :meth:`FlowControl.resume_writing` or the connection
is lost.
"""

from __future__ import annotations

import asyncio
from typing import Final

__all__ = ["wake", "HIGH_WATER", "LOW_WATER", "FlowControl"]


def wake(waiter: asyncio.Future[None] | None) -> None:
    """Release a coroutine waiting on ``waiter`` (if any, and not already released)."""
    if waiter is not None and not waiter.done():
        waiter.set_result(None)

HIGH_WATER: Final = 256 * 1024
"""Buffered body bytes at which reading pauses."""

LOW_WATER: Final = 64 * 1024
"""Buffered body bytes under which a paused reader resumes."""


class FlowControl:
    """Read pausing and write draining for one transport."""

    __slots__ = ("_drain_waiter", "_transport", "closed", "read_paused", "write_paused")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.read_paused = False
        self.write_paused = False
        self.closed = False
        self._drain_waiter: asyncio.Future[None] | None = None

    def pause_reading(self) -> None:
        """Stop reading from the peer (idempotent)."""
        if not self.read_paused and not self.closed:
            self.read_paused = True
            try:
                self._transport.pause_reading()
            except (RuntimeError, AttributeError):  # closing transport
                pass

    def resume_reading(self) -> None:
        """Read from the peer again (idempotent)."""
        if self.read_paused and not self.closed:
            self.read_paused = False
            try:
                self._transport.resume_reading()
            except (RuntimeError, AttributeError):
                pass

    def buffered(self, size: int) -> None:
        """Adjust reading to ``size`` bytes now buffered for the application."""
        if size > HIGH_WATER:
            self.pause_reading()
        elif size < LOW_WATER:
            self.resume_reading()

    def watch_peer(self) -> None:
        """The application waits for the disconnect: a transport always watches its peer."""

    def pause_writing(self) -> None:
        """The transport's write buffer is above its high-water mark."""
        self.write_paused = True

    def resume_writing(self) -> None:
        """The transport's write buffer drained below its low-water mark."""
        self.write_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        wake(waiter)

    def connection_lost(self) -> None:
        """Wake any writer waiting on :meth:`drain`; nothing will ever be read again."""
        self.closed = True
        self.resume_writing()

    async def drain(self) -> None:
        """Wait until the transport accepts more writes (or the connection is gone)."""
        if not self.write_paused or self.closed:
            return
        waiter = self._drain_waiter
        if waiter is None:
            waiter = self._drain_waiter = asyncio.get_running_loop().create_future()
        await waiter
