"""The ASGI worker (``-k asgi``): one asyncio/uvloop event loop serving HTTP/1.1 and uWSGI.

The loop accepts on every listener itself, so it can stop at ``worker_connections`` and resume
when a connection closes. A uwsgi request that is whole when accepted is served on the bare
socket (:mod:`monoceros.asgi.uwsgi_fast`); every other connection gets a transport. With
``proxy_protocol`` on, a connection's transport first gets the PROXY header's protocol
(:mod:`monoceros.asgi.proxy_header`), which hands it to the listener's. A timer
beats the heartbeat and enforces connection deadlines (with the WebSocket keepalive pings and
``request_timeout``); a handler that blocks the loop stops the
beats, the master sends SIGABRT after ``timeout``, and the log names the request that was
running, with the stack it was stuck in. Lifespan startup runs before the first accept (a
failure exits with status 3, which stops the master); graceful TERM stops accepting, lets the
requests in flight finish within ``graceful_timeout``, then runs lifespan shutdown. Accept
errors, ``max_requests`` and the listen queue on a stop follow every kind's policy
(:mod:`monoceros.workers.base`), applied without blocking the loop (:mod:`monoceros.asgi.acceptor`).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from ..access_log import log_safe
from ..addresses import AddressMatcher, PeerAddress
from ..asgi.acceptor import Acceptor, DirectHandler, ProtocolFactory
from ..asgi.connection import TransportConnection
from ..asgi.context import ServerContext
from ..asgi.cycle import HttpCycle
from ..asgi.http_protocol import HttpProtocol
from ..asgi.lifespan import Lifespan, LifespanFailure
from ..asgi.loops import new_event_loop
from ..asgi.proxy_header import ProxyHeaderProtocol
from ..asgi.request_task import run_request
from ..asgi.scope import ForwardedForScopeBuilder, HttpScopeBuilder, UwsgiScopeBuilder
from ..asgi.uwsgi_fast import UwsgiFastPath
from ..asgi.uwsgi_protocol import UwsgiProtocol
from ..asgi.websocket import WebSocketSession
from ..listeners import Listener
from ..protocols.http import HttpLimits
from ..protocols.proxy_protocol import ProxyHeaderReader
from ..worker_metrics import MAX_SLOTS, WorkerMetrics
from .base import WORKER_BOOT_ERROR, Worker, WorkerAborted, stack_of

__all__ = ["AsgiWorker"]

_MIN_TICK = 0.05
"""The shortest period of the worker's timer, however short the deadlines it enforces."""


class AsgiWorker(Worker):
    """Serve ASGI 3 applications on one event loop."""

    loop: asyncio.AbstractEventLoop
    ctx: ServerContext
    acceptor: Acceptor

    def new_metrics(self) -> WorkerMetrics:
        """A request slot per connection, up to MAX_SLOTS (more in flight: counted only)."""
        return WorkerMetrics(max(1, min(self.cfg.worker_connections, MAX_SLOTS)))

    def run(self) -> None:
        """Build the loop and serve until told to stop."""
        cfg = self.cfg
        try:
            loop, kind = new_event_loop(cfg.asgi_loop)
        except ImportError as exc:
            self.log.error("%s", exc)
            sys.exit(WORKER_BOOT_ERROR)
        self.loop = loop
        asyncio.set_event_loop(loop)
        self.log.debug("ASGI worker using the %s event loop", kind)
        assert self.app is not None
        self.ctx = ServerContext(
            self.app,
            self.log,
            loop,
            limits=HttpLimits(
                cfg.limit_request_line, cfg.limit_request_fields, cfg.limit_request_field_size
            ),
            keepalive=float(cfg.keepalive),
            header_timeout=float(cfg.header_timeout),
            uwsgi_allowed=AddressMatcher(cfg.uwsgi_allow_ips),
            uwsgi_max_vars=cfg.uwsgi_max_vars_size,
            ws_max_message_size=cfg.ws_max_message_size,
            forwarded_allow_ips=AddressMatcher(cfg.forwarded_allow_ips),
            secure_scheme_headers=cfg.secure_scheme_headers,
            max_requests=self.max_requests,
            ws_ping_interval=cfg.ws_ping_interval,
            ws_ping_timeout=cfg.ws_ping_timeout,
            ws_per_message_deflate=cfg.ws_per_message_deflate,
            request_timeout=cfg.request_timeout,
        )
        self._request_counter = self.ctx  # counts the requests from now on
        self.ctx.metrics = self.metrics
        self.ctx.on_max_requests = self._on_max_requests
        self.ctx.on_room = self._on_room
        self._stop: asyncio.Future[None] = loop.create_future()
        self._factories: dict[int, ProtocolFactory] = {}
        self._direct: dict[int, DirectHandler] = {}
        self._proxy = self.proxy_header_reader()
        self.acceptor = Acceptor(
            loop,
            self.listeners,
            self._factories,
            cfg.worker_connections,
            self.log,
            self.accept_failed,
            self._direct,
            handshake_timeout=float(cfg.header_timeout) or None,
            proxy=self._proxy,
        )
        self.ctx.acceptor = self.acceptor
        try:
            loop.run_until_complete(self._serve())
            _cancel_leftovers(loop)
        finally:
            loop.close()

    # ------------------------------------------------------------------ lifecycle

    async def _serve(self) -> None:
        loop = self.loop
        cfg = self.cfg
        loop.add_signal_handler(signal.SIGTERM, self._on_term)
        loop.add_signal_handler(signal.SIGUSR1, self._on_usr1)
        for fast in (signal.SIGQUIT, signal.SIGINT):
            loop.add_signal_handler(fast, self._on_quit)
        self._tick_every = self.idle_wait(1.0)
        if cfg.header_timeout or cfg.keepalive:
            self._tick_every = min(self._tick_every, 0.5)
        # the sweep is the only timer of pings and request deadlines: it runs at least twice
        # per period of the shortest of them (request_timeout: cancelled up to a tick late)
        periods = (cfg.ws_ping_interval, cfg.ws_ping_timeout, cfg.request_timeout)
        for period in periods:
            if period:
                self._tick_every = max(min(self._tick_every, period / 2), _MIN_TICK)
        self._tick()
        lifespan = Lifespan(self.app, cfg.asgi_lifespan, self.log)
        try:
            await lifespan.startup()
        except LifespanFailure as exc:
            self.log.error("Application startup failed: %s", exc)
            self.log.error("Worker (pid:%s) exiting: lifespan startup failed", self.pid)
            sys.exit(WORKER_BOOT_ERROR)
        self.ctx.state = lifespan.state if lifespan.supported else None
        proxy = self._proxy
        for listener in self.listeners:
            fd = listener.sock.fileno()
            # a TLS listener's PROXY header is read by the acceptor, before the handshake
            self._factories[fd] = self._factory(listener, proxy if listener.tls is None else None)
            if listener.protocol == "uwsgi" and listener.tls is None:
                lean = self._fast_path(listener, proxy)
                self._direct[fd] = lean.serve if proxy is None else lean.serve_proxied
            listener.sock.setblocking(False)
        self.acceptor.start()
        if self.alive:
            await self._stop
        await self._graceful_stop(lifespan)

    def _factory(self, listener: Listener, proxy: ProxyHeaderReader | None) -> ProtocolFactory:
        """The protocol of the listener's connections; with ``proxy``, wrapped in the PROXY
        header's, which hands the transport over once it read the header."""
        ctx = self.ctx
        cfg = self.cfg
        sockname = listener.sock.getsockname()
        factory: Callable[[], TransportConnection]
        if listener.tls is not None and cfg.header_timeout and not cfg.do_handshake_on_connect:
            factory = self._tls_factory(listener)
        elif listener.protocol == "uwsgi":
            ubuilder = UwsgiScopeBuilder(sockname)
            factory = lambda: UwsgiProtocol(ctx, ubuilder)  # noqa: E731
        else:
            hbuilder = self._http_builder(listener)
            factory = lambda: HttpProtocol(ctx, hbuilder)  # noqa: E731
        if proxy is None:
            return factory
        return lambda: ProxyHeaderProtocol(ctx, proxy, factory)

    def _http_builder(self, listener: Listener) -> HttpScopeBuilder:
        """The scope builder of an HTTP listener (``--proxy-headers``' when it is on)."""
        cfg = self.cfg
        builder = ForwardedForScopeBuilder if cfg.proxy_headers else HttpScopeBuilder
        return builder(
            listener.sock.getsockname(),
            self.ctx.forwarded_allow_ips,
            cfg.secure_scheme_headers,
            cfg.forwarder_headers,
            self.http_root_path(),
            "http" if listener.tls is None else "https",
        )

    def _tls_factory(self, listener: Listener) -> Callable[[], TransportConnection]:
        """A TLS listener's protocols when header_timeout bounds the handshake and the first
        request head together (do_handshake_on_connect off): the loop makes the protocol as
        the handshake starts, so the head's deadline is counted from then."""
        ctx = self.ctx
        loop = self.loop
        timeout = float(self.cfg.header_timeout)
        if listener.protocol == "uwsgi":
            ubuilder = UwsgiScopeBuilder(listener.sock.getsockname())
            return lambda: UwsgiProtocol(ctx, ubuilder, deadline=loop.time() + timeout)
        hbuilder = self._http_builder(listener)
        return lambda: HttpProtocol(ctx, hbuilder, deadline=loop.time() + timeout)

    def _fast_path(self, listener: Listener, proxy: ProxyHeaderReader | None) -> UwsgiFastPath:
        """Serve uwsgi requests that arrive whole on the bare socket; hand the rest over."""
        ctx = self.ctx
        builder = UwsgiScopeBuilder(listener.sock.getsockname())
        connect = self.acceptor.connect

        def hand_over(sock: socket.socket, data: bytes, peer: PeerAddress) -> None:
            connect(sock, lambda: UwsgiProtocol(ctx, builder, data, peer))

        def proxy_hand_over(sock: socket.socket, data: bytes) -> None:
            assert proxy is not None
            make = lambda: UwsgiProtocol(ctx, builder)  # noqa: E731
            connect(sock, lambda: ProxyHeaderProtocol(ctx, proxy, make, data))

        return UwsgiFastPath(
            ctx,
            builder,
            hand_over,
            tcp=not listener.is_unix,
            proxy=proxy,
            proxy_hand_over=proxy_hand_over,
        )

    async def _graceful_stop(self, lifespan: Lifespan) -> None:
        acceptor = self.acceptor
        acceptor.stop()
        ctx = self.ctx
        ctx.alive = False
        for conn in list(ctx.connections):
            conn.shutdown()
        if self.serves_listen_queue():
            acceptor.take_queued(self.cfg.backlog)
        loop = self.loop
        deadline = loop.time() + self.cfg.graceful_timeout
        while (ctx.connections or acceptor.connecting) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(ctx.connections):
            conn.abort()
        await asyncio.sleep(0)
        await lifespan.shutdown(max(1.0, deadline - loop.time()))

    def _request_stop(self) -> None:
        self.alive = False
        if not self._stop.done():
            self._stop.set_result(None)

    def _on_term(self) -> None:
        self.graceful_stop = True
        self._request_stop()

    def _on_quit(self) -> None:
        """Fast stop (worker_int, then exit) from a loop callback: the SystemExit leaves the
        loop directly instead of surfacing in whichever request's task the signal interrupted."""
        self._handle_quit(signal.SIGQUIT, None)

    def pause_accepting(self, seconds: float) -> None:
        """Accept nothing for ``seconds``, without blocking the loop (not while stopping)."""
        if self.alive:
            self.acceptor.pause(seconds)

    def _on_usr1(self) -> None:
        self.reopen_log_files()

    def _on_max_requests(self) -> None:
        if self.check_max_requests():
            self._request_stop()

    def _tick(self) -> None:
        """Beat the heartbeat, enforce deadlines, watch the parent; every _tick_every seconds."""
        self.heartbeat.beat()
        loop = self.loop
        self.ctx.sweep(loop.time())
        if self.alive and self.parent_changed():
            self._request_stop()
        if not loop.is_closed():
            loop.call_later(self._tick_every, self._tick)

    # ------------------------------------------------------------------ accepting

    def _on_room(self) -> None:
        """A connection closed while the acceptor was not accepting: start it again (the cap
        leaves room now), unless the worker is stopping."""
        if self.alive:
            self.acceptor.start()

    # ------------------------------------------------------------------ timeout

    def _handle_abort(self, signum: int, frame: FrameType | None) -> None:
        """The master found this worker unresponsive: log which request blocked the loop, with
        the stack the loop was stuck in (down to the application's line)."""
        what, handler = _running_request(frame)
        self.log.error(
            "Worker (pid:%s) timed out; the event loop was blocked by %s\n%s",
            self.pid,
            what or "code outside any request handler",
            stack_of(frame, "the event loop", handler),
        )
        self.loop.set_exception_handler(_quiet_abort)  # that stack was logged: not twice
        super()._handle_abort(signum, frame)


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks a stop left behind (handlers of aborted connections) and let them end."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())


def _quiet_abort(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's exception handler once the worker is aborted: the task the abort was raised
    in is collected at exit with "Task exception was never retrieved" and the same stack
    again; say nothing of it, and the rest as asyncio does."""
    if not isinstance(context.get("exception"), WorkerAborted):
        loop.default_exception_handler(context)


def _running_request(frame: FrameType | None) -> tuple[str | None, FrameType | None]:
    """Walk the interrupted stack to the ASGI request (or WebSocket) being handled: what it is,
    and the frame of its handler (:func:`~monoceros.asgi.request_task.run_request`, or the
    WebSocket session's ``run``), where the request's stack begins."""
    request_code, session_code = run_request.__code__, WebSocketSession.run.__code__
    depth = 0
    while frame is not None and depth < 200:
        code = frame.f_code
        if code is request_code:
            cycle = frame.f_locals.get("cycle")
            if isinstance(cycle, HttpCycle):
                return f"the handler of {cycle.describe()}", frame
        elif code is session_code:
            owner = frame.f_locals.get("self")
            if isinstance(owner, WebSocketSession):
                path = log_safe(owner.scope.get("path", ""))
                return f"the WebSocket handler of {path}", frame
        frame = frame.f_back
        depth += 1
    return None, None
