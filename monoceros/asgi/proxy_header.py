"""The PROXY protocol header of a connection, read before the listener's own protocol starts.

With ``proxy_protocol`` on, a new connection's transport first gets a
:class:`ProxyHeaderProtocol`. It reads the header from the first bytes that arrive (no extra
read: the request usually comes in the same segment), then hands the transport over to the
listener's protocol with :meth:`asyncio.Transport.set_protocol`: that protocol starts with the
client's address as its peer (``proxied_peer``) and gets the bytes after the header. A peer not
allowed to send a header, a malformed header, or no header where one is required closes the
connection with one log line; the wait for the header is bounded by ``header_timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..access_log import log_safe
from ..addresses import PeerAddress
from ..protocols.errors import InvalidProxyHeader
from ..protocols.events import NEED_DATA
from ..protocols.proxy_protocol import NO_HEADER, ProxyHeaderReader
from .connection import TransportConnection

if TYPE_CHECKING:
    from ..logs import Logger
    from .context import ServerContext
    from .cycle import HttpCycle

__all__ = ["ProxyHeaderProtocol", "log_proxy_refused", "proxy_refused"]


def proxy_refused(ctx: ServerContext, peer: PeerAddress, reason: str) -> None:
    """The one log line of a connection closed at its PROXY header."""
    log_proxy_refused(ctx.log, peer, reason)


def log_proxy_refused(log: Logger, peer: PeerAddress, reason: str) -> None:
    """:func:`proxy_refused` with a logger (the acceptor's, before a TLS handshake)."""
    who = peer[0] if isinstance(peer, tuple) else "a local peer"
    log.warning("PROXY protocol: closing the connection from %s: %s", who, log_safe(reason))


class ProxyHeaderProtocol(asyncio.Protocol):
    """Reads the PROXY header of one connection, then hands the transport to ``factory()``'s
    protocol. ``initial``: bytes already read from the socket (the uwsgi fast path's)."""

    cycle: HttpCycle | None = None
    """No request runs before the header is read (what ``request_timeout``'s sweep looks at)."""

    def __init__(
        self,
        ctx: ServerContext,
        reader: ProxyHeaderReader,
        factory: Callable[[], TransportConnection],
        initial: bytes = b"",
    ) -> None:
        self.ctx = ctx
        self.reader = reader
        self.factory = factory
        self.buf = initial
        self.deadline = 0.0
        self.done = False
        self.peer: PeerAddress = ""
        self.ip: str | None = None
        self.transport: asyncio.Transport | None = None

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Refuse a peer that can never be served; start the header deadline."""
        self.transport = transport  # type: ignore[assignment]
        peer = self.peer = transport.get_extra_info("peername")
        ctx = self.ctx
        ctx.add(self)
        self.ip = peer[0] if isinstance(peer, tuple) else None
        why = self.reader.refused(self.ip)
        if why is not None:
            self._refuse(why)
            return
        if ctx.header_timeout:
            self.deadline = ctx.loop.time() + ctx.header_timeout
        initial, self.buf = self.buf, b""
        if initial:
            self.data_received(initial)

    def data_received(self, data: bytes) -> None:
        """Parse what came so far; hand over once the header is whole."""
        if self.done:
            return
        buf = self.buf + data if self.buf else data
        try:
            header = self.reader.parse(buf, self.ip)
        except InvalidProxyHeader as exc:
            self._refuse(exc.reason)
            return
        if header is NEED_DATA:
            self.buf = buf
            return
        if header is NO_HEADER:
            self._hand_over(self.peer, buf)
        else:
            self._hand_over(header.source or self.peer, buf[header.size :])

    def eof_received(self) -> bool | None:
        """The peer closed its side before the header was whole."""
        if self.buf and not self.done:
            self._refuse("the connection closed inside the PROXY header")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Closed before the hand-over (after it, the listener's protocol is told instead)."""
        self.done = True
        self.ctx.discard(self)

    # ------------------------------------------------------------------ the hand-over

    def _hand_over(self, peer: PeerAddress, rest: bytes) -> None:
        self.done = True
        self.deadline = 0.0
        self.ctx.connections.discard(self)  # not ctx.discard: the connection lives on
        transport = self.transport
        assert transport is not None
        protocol = self.factory()
        protocol.proxied_peer = peer
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if rest and not transport.is_closing():
            protocol.data_received(rest)

    def _refuse(self, reason: str) -> None:
        self.done = True
        self.deadline = 0.0
        proxy_refused(self.ctx, self.peer, reason)
        assert self.transport is not None
        self.transport.close()

    # ------------------------------------------------------------------ the worker's view

    @property
    def busy(self) -> bool:
        """No request has begun."""
        return False

    def on_deadline(self) -> None:
        """No complete header within header_timeout: close (as a silent request head is)."""
        self.deadline = 0.0
        self.ctx.log.debug(
            "Client %s: no complete PROXY header within header_timeout (%gs)",
            self.peer[0] if isinstance(self.peer, tuple) else "a local peer",
            self.ctx.header_timeout,
        )
        self.done = True
        if self.transport is not None:
            self.transport.close()

    def shutdown(self) -> None:
        """Graceful stop: a new connection still gets its first request (within
        header_timeout), as the listener's protocol would give it."""

    def abort(self) -> None:
        """Close now."""
        if self.transport is not None:
            self.transport.abort()
