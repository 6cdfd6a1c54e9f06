"""HTTP/1.1 connections as an asyncio Protocol over the sans-IO :class:`HttpParser`.

Bytes go into the parser; its events drive one :class:`HttpCycle` at a time. Pipelined requests
wait in the parser until the response before them is complete. A request's body streams to the
application with reading paused while it is behind (see :mod:`.flow`). Deadlines: a new
connection or a started head gets ``header_timeout``, an idle keep-alive connection ``keepalive``.
A WebSocket upgrade hands the connection over to :class:`WebSocketSession`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..access_log import log_safe
from ..protocols.errors import ProtocolError
from ..protocols.events import NEED_DATA, Data, EndOfMessage
from ..protocols.http import HttpParser, HttpRequest
from ..protocols.response import error_response
from .connection import TransportConnection
from .cycle import HttpCycle
from .scope import HttpScopeBuilder
from .websocket import WebSocketSession

if TYPE_CHECKING:
    from .context import ServerContext

__all__ = ["HttpProtocol"]

#: pipelined bytes buffered while a response is produced, before reading pauses
_PIPELINE_LIMIT = 64 * 1024


class HttpProtocol(TransportConnection):
    """One HTTP/1.x client connection."""

    def __init__(
        self, ctx: ServerContext, builder: HttpScopeBuilder, deadline: float = 0.0
    ) -> None:
        """``deadline``: when the first request head must be complete, if it was counted
        before the connection was made (a TLS handshake's time included); 0.0: from then."""
        self.ctx = ctx
        self.proxied_peer = None
        self.builder = builder
        self.parser = HttpParser(ctx.limits)
        self.cycle: HttpCycle | None = None
        self.ws: WebSocketSession | None = None
        self.deadline = deadline
        self.idle = False
        self.closed = False
        self._pipelined = 0
        self._held = False

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the header deadline and register with the worker."""
        self._attach(transport)
        ctx = self.ctx
        if ctx.header_timeout and not self.deadline:
            self.deadline = ctx.loop.time() + ctx.header_timeout
        ctx.add(self)
        # accepted while the worker stops (the listen queue it takes in): the first request is
        # still served, then the connection closes

    def data_received(self, data: bytes) -> None:
        """Feed the parser and act on its events."""
        if self.ws is not None:
            self.ws.data_received(data)
            return
        if self.idle:
            self.idle = False
            ctx = self.ctx
            self.deadline = ctx.loop.time() + ctx.header_timeout if ctx.header_timeout else 0.0
        self.parser.receive_data(data)
        cycle = self.cycle
        if cycle is not None and cycle.body_done:
            self._pipelined += len(data)
            if self._pipelined > _PIPELINE_LIMIT:
                self.pause_reading()
            return
        self._process()

    def eof_received(self) -> bool | None:
        """The client closed its side: an unfinished request is an error, else just close."""
        if self.ws is not None:
            return self.ws.eof_received()
        self.parser.receive_data(b"")
        cycle = self.cycle
        if cycle is None:
            self._process()
        else:  # a client that closes is gone (a half-close cannot be told apart from it)
            cycle.lost()
        return None

    # ------------------------------------------------------------------ requests

    def _process(self) -> None:
        parser = self.parser
        while not self.closed:
            cycle = self.cycle
            if cycle is not None and cycle.body_done:
                return  # the next request waits until this response is complete
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                self._bad_request(exc)
                return
            if event is NEED_DATA:
                if cycle is None and parser.in_message and not self.deadline:
                    ctx = self.ctx
                    if ctx.header_timeout:
                        self.deadline = ctx.loop.time() + ctx.header_timeout
                return
            cls = event.__class__
            if cls is Data:
                assert cycle is not None
                cycle.feed(event.data)  # type: ignore[union-attr]
            elif cls is EndOfMessage:
                assert cycle is not None
                cycle.end()
                if cycle.discard:
                    self._next()
                    return
            else:
                assert isinstance(event, HttpRequest)
                self._start(event)
                if self.ws is not None:
                    return  # the rest of the connection belongs to the WebSocket

    def _start(self, req: HttpRequest) -> None:
        ctx = self.ctx
        self.deadline = 0.0
        try:
            scope = self.builder.build(req, self.peer, ctx.state)
        except ProtocolError as exc:
            self._bad_request(exc)
            return
        ctx.request_started()
        if scope["type"] == "websocket":
            self.ws = WebSocketSession(self, scope, uwsgi=False)
            self.ws.start(self.parser.upgraded_data)
            return
        cycle = HttpCycle(
            self,
            scope,
            keep_alive=req.keep_alive and ctx.keepalive > 0 and ctx.alive,
            expect_100=req.expect_continue,
            http11=req.version == "1.1",
            uwsgi=False,
        )
        self.cycle = cycle
        ctx.start_request(cycle)

    def response_done(self, cycle: HttpCycle) -> None:
        """Called by the cycle when its response is complete: keep alive, or close."""
        if self.closed:
            return
        if not cycle.keep_alive or not self.ctx.alive:
            self.transport.close()
            return
        if not cycle.body_done:
            if cycle.expect_100:  # the client still waits to be told to send: do not read it
                self.transport.close()
                return
            cycle.discard = True  # read what is left of the body, then serve the next request
            self.resume_reading()
            return
        self._next()

    def _next(self) -> None:
        self.cycle = None
        self._pipelined = 0
        if self.write_paused:
            # the client does not read its responses: start no other until it has taken this
            # one (no deadline meanwhile, as for a response being sent to a slow reader)
            self._held = True
            self.deadline = 0.0
            self.pause_reading()
            return
        ctx = self.ctx
        self.idle = True
        self.deadline = ctx.loop.time() + ctx.keepalive
        self.resume_reading()
        self._process()

    def writable(self) -> None:
        """Writes are accepted again: a WebSocket carries on, a held pipelined request starts."""
        if self.ws is not None:
            self.ws.writable()
        elif self._held:
            self._held = False
            if self.ctx.alive:
                self._next()
            else:
                self.transport.close()

    def _bad_request(self, exc: ProtocolError) -> None:
        cycle = self.cycle
        if cycle is not None:  # the body of the request being served
            cycle.body_error(exc)
        else:
            self.ctx.log.info(
                "Invalid HTTP request from %s: %s", self.peer_label(), log_safe(exc.reason)
            )
            self.ctx.metrics.answered(exc.status, False)
            self.transport.write(error_response(exc.status, exc.reason))
        self.transport.close()
        self.closed = True

    # ------------------------------------------------------------------ the worker's view

    def on_deadline(self) -> None:
        """Header or keep-alive deadline passed: close (an idle client is not worth a log line)."""
        self.deadline = 0.0
        if self.websocket_deadline():
            return
        if self.cycle is not None and not self.idle:
            return
        if self.parser.in_message:
            self.ctx.log.debug(
                "Client %s: no complete request head within header_timeout (%gs)",
                self.peer_label(),
                self.ctx.header_timeout,
            )
        self.transport.close()

    def shutdown(self) -> None:
        """Graceful stop: a kept-alive connection between requests closes now, a busy one after
        its response; a new one still gets its first request (within header_timeout), which
        the front end that opened it is about to send."""
        if self.cycle is None and self.ws is None and self.idle:
            self.transport.close()
        elif self.ws is not None:
            self.ws.shutdown()
