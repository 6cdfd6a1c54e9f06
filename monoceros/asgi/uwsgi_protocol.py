"""uWSGI connections as an asyncio Protocol over the shared sans-IO :class:`UwsgiParser`.

One request per connection, as every front end does it: the vars become the scope, the body
(CONTENT_LENGTH-framed, or chunk-framed from the uWSGI router) streams to the application, and
the response is never chunk-framed — without a Content-Length it ends when the connection
closes. A ``101`` answer to a WebSocket upgrade turns the connection into a tunnel. The
allow-list, the errors and their log lines are the sync worker's.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..access_log import log_safe
from ..addresses import PeerAddress
from ..protocols.errors import MissingChunkedBody, ProtocolError, TruncatedPacket
from ..protocols.events import NEED_DATA, Data, EndOfMessage
from ..protocols.response import error_response
from ..protocols.uwsgi import PONG, Ping, UwsgiParser, UwsgiRequest
from .connection import TransportConnection
from .cycle import HttpCycle
from .scope import UwsgiScopeBuilder
from .websocket import WebSocketSession

if TYPE_CHECKING:
    from .context import ServerContext

__all__ = ["UwsgiProtocol"]

#: seconds given to a front end to finish sending a body the application did not read
_DISCARD_GRACE = 1.0


class UwsgiProtocol(TransportConnection):
    """One uWSGI connection from a front end (nginx, Apache, the uWSGI router)."""

    def __init__(
        self,
        ctx: ServerContext,
        builder: UwsgiScopeBuilder,
        initial: bytes = b"",
        peer: PeerAddress | None = None,
        deadline: float = 0.0,
    ) -> None:
        """``peer``: the front end a PROXY header named (read by the fast path), else None;
        ``deadline``: when the packet must be complete, if it was counted before the
        connection was made (a TLS handshake's time included); 0.0: from then."""
        self.ctx = ctx
        self.initial = initial
        """Bytes read before the hand-over from the fast path, fed in at connection_made."""
        self.proxied_peer = peer
        self.builder = builder
        self.parser = UwsgiParser(max_vars_size=ctx.uwsgi_max_vars)
        self.cycle: HttpCycle | None = None
        self.ws: WebSocketSession | None = None
        self.deadline = deadline
        self.closed = False
        self.received = False
        self.done = False
        self.chunked = False

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Check the allow-list, start the header deadline, register with the worker."""
        self._attach(transport)
        peer = self.peer
        ctx = self.ctx
        ctx.add(self)
        if isinstance(peer, tuple) and peer[0] not in ctx.uwsgi_allowed:
            ctx.log.warning("Forbidden uWSGI request from %s", peer[0])
            self._refuse(403, "")
            return
        if ctx.header_timeout and not self.deadline:
            self.deadline = ctx.loop.time() + ctx.header_timeout
        initial = self.initial
        if initial:
            self.initial = b""
            self.data_received(initial)

    def data_received(self, data: bytes) -> None:
        """Feed the parser and act on its events."""
        if self.ws is not None:
            self.ws.data_received(data)
            return
        if self.closed or self.done:
            return  # bytes after the request are not ours
        self.received = True
        self.parser.receive_data(data)
        self._process()

    def eof_received(self) -> bool | None:
        """The front end closed its side: front ends never half-close, so the client is gone."""
        if self.ws is not None:
            return self.ws.eof_received()
        if self.done:  # the whole request is here: tell the application, then close
            if self.cycle is not None:
                self.cycle.lost()
            return None
        if not self.received:
            return None  # connected and closed: a health check, nothing to say
        self.parser.receive_data(b"")
        self._process()
        return None

    # ------------------------------------------------------------------ the request

    def _process(self) -> None:
        parser = self.parser
        while not self.done and not self.closed:
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                self._protocol_error(exc)
                return
            if event is NEED_DATA:
                return
            cls = event.__class__
            if cls is Data:
                cycle = self.cycle
                assert cycle is not None
                if self.chunked:
                    self.deadline = 0.0
                cycle.feed(event.data)  # type: ignore[union-attr]
            elif cls is EndOfMessage:
                self.done = True
                self.deadline = 0.0
                cycle = self.cycle
                assert cycle is not None
                cycle.end()
                if cycle.discard:
                    self.transport.close()
            elif cls is Ping:
                self.done = True
                self.transport.write(PONG)
                self.transport.close()
            else:
                assert isinstance(event, UwsgiRequest)
                self._start(event)

    def _start(self, head: UwsgiRequest) -> None:
        ctx = self.ctx
        self.deadline = 0.0
        scope = self.builder.build(head.environ, ctx.state)
        ctx.request_started()
        if scope["type"] == "websocket":
            self.done = True
            self.ws = WebSocketSession(self, scope, uwsgi=True)
            self.ws.start(self.parser.trailing_data)
            return
        if head.chunked:
            self.chunked = True
            if ctx.header_timeout:  # the uWSGI router may announce a body it never sends
                self.deadline = ctx.loop.time() + ctx.header_timeout
        cycle = HttpCycle(
            self,
            scope,
            keep_alive=False,
            expect_100=False,  # the front end answered 100-continue itself
            http11=scope["http_version"] == "1.1",
            uwsgi=True,
        )
        self.cycle = cycle
        ctx.start_request(cycle)

    def response_done(self, cycle: HttpCycle) -> None:
        """The response is complete: close (after the rest of an unread body, briefly)."""
        if self.closed:
            return
        if self.done or cycle.disconnected:
            self.transport.close()
            return
        cycle.discard = True
        self.resume_reading()
        self.deadline = self.ctx.loop.time() + _DISCARD_GRACE

    def _protocol_error(self, exc: ProtocolError) -> None:
        cycle = self.cycle
        if cycle is None:
            self.ctx.log.warning(
                "Invalid uWSGI header: %s from %s", log_safe(exc.reason), self.peer_label()
            )
            self._refuse(exc.status, exc.reason)
            return
        if isinstance(exc, TruncatedPacket):
            self.ctx.log.debug("Client %s: %s", self.peer_label(), log_safe(exc.reason))
            cycle.lost()
            self.transport.close()
            return
        cycle.body_error(exc)
        self.transport.close()

    def _refuse(self, status: int, reason: str) -> None:
        self.done = True
        self.ctx.metrics.answered(status, True)
        self.transport.write(error_response(status, reason))
        self.transport.close()

    # ------------------------------------------------------------------ the worker's view

    def on_deadline(self) -> None:
        """No complete packet in time, a chunked body that never came, or an unread body."""
        self.deadline = 0.0
        if self.websocket_deadline():
            return
        cycle = self.cycle
        if cycle is None:
            if self.received:
                self.ctx.log.debug(
                    "Client %s: no complete uWSGI packet within header_timeout (%gs)",
                    self.peer_label(),
                    self.ctx.header_timeout,
                )
            self.transport.close()
            return
        if cycle.discard:
            self.transport.close()
            return
        if self.chunked and not cycle.response_complete:
            exc = MissingChunkedBody()
            self.ctx.log.warning(
                "Invalid uWSGI header: %s from %s", log_safe(exc.reason), self.peer_label()
            )
            cycle.fail(exc.status, exc.reason)
            self.transport.close()

    def shutdown(self) -> None:
        """Graceful stop: the request of a connection (one per connection) is still served,
        also one still arriving (within header_timeout); a WebSocket is told to go away."""
        if self.ws is not None:
            self.ws.shutdown()
