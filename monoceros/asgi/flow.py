"""Flow control of a connection: reading paused while the app is behind, writes drained.

Reading (:class:`~.connection.TransportConnection`): a request body is buffered for the
application up to :data:`HIGH_WATER` bytes; past it the transport stops reading, and it reads
again as soon as the application has taken the buffer below :data:`LOW_WATER` — or asks for more
while nothing is buffered, so a paused reader is always resumed by the very call that waits for
data (the stall this module exists to avoid).

Writing (:class:`WriteFlow`, the base of the transport-based connections; the compiled
bare-socket one, :class:`~.uwsgi_fast.FastConnection`, keeps the same rules): the writer's
buffer is full at :meth:`WriteFlow.pause_writing`; :meth:`WriteFlow.drain` then waits until
:meth:`WriteFlow.resume_writing` or the connection is closed.
"""

from __future__ import annotations

import asyncio
from typing import Final

from ..addresses import PeerAddress, peer_label

__all__ = ["wake", "HIGH_WATER", "LOW_WATER", "WriteFlow"]


def wake(waiter: asyncio.Future[None] | None) -> None:
    """Release a coroutine waiting on ``waiter`` (if any, and not already released)."""
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


HIGH_WATER: Final = 256 * 1024
"""Buffered body bytes at which reading pauses."""

LOW_WATER: Final = 64 * 1024
"""Buffered body bytes under which a paused reader resumes."""


class WriteFlow:
    """Write pausing and draining of a transport-based connection, and the peer's label for
    log lines."""

    __slots__ = ("_drain_waiter", "closed", "peer", "write_paused")
    # set by the subclass's constructor: no extra call per connection
    write_paused: bool
    closed: bool
    _drain_waiter: asyncio.Future[None] | None
    peer: PeerAddress | None  # None: the peer reset before its address was read

    def peer_label(self) -> str:
        """The peer's address (the client's, or the front end's for uwsgi), for log lines."""
        return peer_label(self.peer)

    def pause_writing(self) -> None:
        """The write buffer is above its high-water mark."""
        self.write_paused = True

    def resume_writing(self) -> None:
        """The write buffer drained below its low-water mark (or the connection closed)."""
        self.write_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        wake(waiter)

    async def drain(self) -> None:
        """Wait until writes are accepted again (or the connection is closed)."""
        if not self.write_paused or self.closed:
            return
        waiter = self._drain_waiter
        if waiter is None:
            waiter = self._drain_waiter = asyncio.get_running_loop().create_future()
        await waiter
