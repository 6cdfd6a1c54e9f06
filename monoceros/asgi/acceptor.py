"""Accepting connections on the worker's listeners, up to a cap (``worker_connections``).

The worker accepts itself, one connection at a time, checking the cap before each: the loops'
own ``create_server`` accept whole batches (asyncio) or cannot be paused from the protocol
factory (uvloop), so either would overshoot the cap under a burst. At the cap the listeners are
unwatched and further connections wait in the kernel's backlog for a worker with room; the
first connection to close brings the watching back.

An ``accept()`` error is judged by the worker's policy (``accept_failed``,
:meth:`monoceros.workers.base.Worker.accept_failed`): retried at once, or logged there, and the
worker calls :meth:`Acceptor.pause` (out of descriptors: do not spin on the queue).

A listener may have a *direct handler* instead of a protocol factory (the lean uwsgi path,
:mod:`.uwsgi_fast`): it gets the accepted socket and its peer, already counted open, and either
serves it or hands it to :meth:`Acceptor.connect`.

On a TLS listener (``listener.tls``) the loop's TLS transport does the handshake, bounded by
``handshake_timeout`` (header_timeout), before the protocol is made; a failed one is one log
line naming the peer and the reason (:func:`monoceros.tls.log_handshake_failure`). Per
connection the order is: accept, (a PROXY header, in plain text), the handshake, the protocol.
"""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..addresses import PeerAddress
from ..listeners import BARE_SOCKET, Listener, accept_nowait, connection_maker
from ..logs import Logger
from ..protocols.errors import InvalidProxyHeader
from ..protocols.events import NEED_DATA
from ..protocols.proxy_protocol import NO_HEADER, ProxyHeaderReader
from .connection import TransportConnection
from .proxy_header import log_proxy_refused

if TYPE_CHECKING:
    from ssl import SSLContext

__all__ = ["Acceptor"]

_RECV = 64 * 1024


def _proxied(factory: ProtocolFactory, client: PeerAddress) -> ProtocolFactory:
    """``factory``, whose protocols take ``client`` (a PROXY header's) as their peer."""

    def make() -> asyncio.Protocol:
        protocol = factory()
        assert isinstance(protocol, TransportConnection)
        protocol.proxied_peer = client
        return protocol

    return make


_ACCEPT_BATCH = 64
"""Connections accepted at most per readiness of a listener. After the first, a ``poll()`` of
the listener asks whether another is queued: an ``accept()`` that finds the queue empty, which
ends a batch, costs about 5 µs (the kernel makes and frees a socket and a file before it looks
at the queue, then CPython raises BlockingIOError with its message decoded in the locale), the
``poll()`` about 0.6 µs. When one is, the batch goes on until the queue is empty: under load
(nginx's 32 connections) a batch takes about 16."""

ProtocolFactory = Callable[[], asyncio.Protocol]
DirectHandler = Callable[[socket.socket, PeerAddress], None]
AcceptFailed = Callable[[Listener, OSError], bool]
"""The accept-error policy: True to accept again at once."""


class Acceptor:
    """Starts and stops accepting on every listener; counts the connections it opened."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        listeners: list[Listener],
        factories: dict[int, ProtocolFactory],
        cap: int,
        log: Logger,
        accept_failed: AcceptFailed,
        direct: dict[int, DirectHandler] | None = None,
        handshake_timeout: float | None = None,
        proxy: ProxyHeaderReader | None = None,
    ) -> None:
        """``handshake_timeout``: seconds a TLS handshake may take (None: the loop's 60 s),
        a PROXY header before it included; ``proxy``: the PROXY protocol policy, which TLS
        listeners apply here (a plain listener's protocol factory does)."""
        self.loop = loop
        self.handshake_timeout = handshake_timeout
        self.proxy = proxy
        self.listeners = listeners
        self.factories = factories
        self.direct: dict[int, DirectHandler] = direct if direct is not None else {}
        """Listeners (by fd) whose accepted sockets go to a handler instead of a factory."""
        self.cap = cap
        self.log = log
        self.accept_failed = accept_failed
        self._resume: asyncio.TimerHandle | None = None
        # a connection for the uwsgi fast path (a direct handler) is a bare C socket;
        # connect() makes one it hands over a socket.socket, for the loop's transport. Made
        # at the first accept: the worker registers its direct handlers after this
        self._makers: dict[int, Callable[[int], socket.socket]] = {}
        #: per listener: a poll of it alone, asking whether another connection is queued
        self._queued: dict[int, select.poll] = {}
        for listener in listeners:
            queued = self._queued[listener.sock.fileno()] = select.poll()
            queued.register(listener.sock.fileno(), select.POLLIN)
        self.open = 0
        """Connections accepted and not yet closed."""
        self.accepting = False
        self.connecting = 0
        """Accepted sockets whose transport and protocol are still being set up."""
        # accepted TCP sockets inherit TCP_NODELAY from their listener (monoceros sets it on
        # the sockets it binds): only a listener passed in without it needs it per connection
        self._set_nodelay = {
            listener.sock.fileno()
            for listener in listeners
            if not listener.is_unix
            and not listener.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        }

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        """Accept on every listener (no-op while accepting or at the cap)."""
        if self.accepting or self.open >= self.cap:
            return
        self.accepting = True
        for listener in self.listeners:
            self.loop.add_reader(
                listener.sock.fileno(), self._accept_from, listener, _ACCEPT_BATCH, True
            )

    def stop(self) -> None:
        """Stop accepting; connections wait in the listen backlog."""
        if self._resume is not None:  # a stop ends a pause too
            self._resume.cancel()
        if not self.accepting:
            return
        self.accepting = False
        for listener in self.listeners:
            try:
                self.loop.remove_reader(listener.sock.fileno())
            except (ValueError, OSError):
                pass

    def closed(self) -> None:
        """A connection closed: room for one more."""
        self.open -= 1

    def pause(self, seconds: float) -> None:
        """Stop accepting for ``seconds`` (an accept() error that retrying at once repeats)."""
        self.stop()
        self._resume = self.loop.call_later(seconds, self.start)

    # ------------------------------------------------------------------ accepting

    def take_queued(self, limit: int) -> int:
        """Graceful stop: accept and serve the connections already waiting in the listen queues.

        The last process to close a listening socket resets every connection still queued on
        it (nginx then answers 502, and does not retry a POST). At most ``limit`` per listener,
        beyond the cap; returns how many were taken.
        """
        return sum(self._accept_from(listener, limit, capped=False) for listener in self.listeners)

    def _accept_from(self, listener: Listener, limit: int, capped: bool) -> int:
        sock = listener.sock
        fd = sock.fileno()
        direct = self.direct.get(fd)
        factory = self.factories.get(fd)
        tls = listener.tls
        nodelay = fd in self._set_nodelay
        make = self._makers.get(fd)
        if make is None:
            make = self._makers[fd] = connection_maker(listener, bare=direct is not None)
        queued = self._queued[fd]
        taken = 0
        for _ in range(limit):
            if capped and self.open >= self.cap:
                self.stop()
                break
            if taken == 1 and not queued.poll(0):
                break  # nothing more queued (see _ACCEPT_BATCH): the usual case unless busy
            try:
                accepted = accept_nowait(sock)  # None: the queue is empty
            except OSError as exc:
                if self.accept_failed(listener, exc):
                    continue
                break
            if accepted is None:
                break
            fd, addr = accepted
            conn = make(fd)
            if nodelay:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.open += 1
            taken += 1
            # accept -> (PROXY header, plain text) -> TLS handshake -> protocol
            if direct is not None:
                direct(conn, addr)
            elif tls is not None:
                assert factory is not None
                self.connect_tls(conn, factory, tls, addr, listener)
            else:
                assert factory is not None
                self.connect(conn, factory)
            if capped and not self.accepting:  # a handler stopped the worker (max_requests)
                break
        return taken

    def connect(self, conn: socket.socket, factory: ProtocolFactory) -> None:
        """Set a transport and a protocol from ``factory`` up on an accepted, counted socket
        (a bare ``_socket.socket`` from the uwsgi fast path becomes a ``socket.socket``)."""
        if type(conn) is BARE_SOCKET:
            conn = socket.socket(conn.family, conn.type, conn.proto, conn.detach())
        conn.setblocking(False)
        self.connecting += 1
        self.loop.create_task(self._connect(conn, factory))

    def connect_tls(
        self,
        conn: socket.socket,
        factory: ProtocolFactory,
        context: SSLContext,
        peer: PeerAddress,
        listener: Listener,
    ) -> None:
        """:meth:`connect` over TLS: the protocol is made once the handshake is done."""
        conn.setblocking(False)
        self.connecting += 1
        self.loop.create_task(self._connect_tls(conn, factory, context, peer, listener))

    async def _connect_tls(
        self,
        conn: socket.socket,
        factory: ProtocolFactory,
        context: SSLContext,
        peer: PeerAddress,
        listener: Listener,
    ) -> None:
        from ..tls import log_handshake_failure

        loop = self.loop
        started = loop.time()
        timeout = self.handshake_timeout
        left = timeout
        try:
            if self.proxy is not None:
                client = await self._proxy_header(conn, peer, listener, started)
                if client is None:
                    conn.close()
                    self.open -= 1
                    return
                if client != peer:
                    peer = client
                    factory = _proxied(factory, client)
                if timeout:
                    left = max(started + timeout - loop.time(), 0.001)
            await loop.connect_accepted_socket(
                factory, conn, ssl=context, ssl_handshake_timeout=left
            )
        except OSError as exc:
            # the loops end a handshake that takes too long with ConnectionAbortedError
            late = bool(timeout) and loop.time() - started >= (timeout or 0.0) * 0.9
            if isinstance(exc, ConnectionAbortedError) and late:
                exc = TimeoutError()
            who = peer[0] if isinstance(peer, tuple) else listener.name
            log_handshake_failure(self.log, who, exc, timeout)
            conn.close()
            self.open -= 1
        finally:
            self.connecting -= 1

    async def _proxy_header(
        self, conn: socket.socket, peer: PeerAddress, listener: Listener, started: float
    ) -> PeerAddress | None:
        """Read the PROXY header before a TLS handshake, to its last byte and no further: each
        read peeks (``MSG_PEEK``) and takes only what is header, so the TLS transport finds
        the handshake's bytes in the socket. The client's address (the peer's when the header
        names none); None when the connection is to be closed (refused with one log line, or
        closed or silent: a DEBUG line). The wait is bounded by handshake_timeout."""
        proxy = self.proxy
        assert proxy is not None
        ip = peer[0] if isinstance(peer, tuple) else None
        why = proxy.refused(ip)
        if why is not None:
            log_proxy_refused(self.log, peer, why)
            return None
        timeout = self.handshake_timeout
        held = b""
        try:
            while True:
                try:
                    peeked = conn.recv(_RECV, socket.MSG_PEEK)
                except BlockingIOError:
                    if not await self._readable(conn, started + timeout if timeout else None):
                        self.log.debug(
                            "Client %s: no complete PROXY header within header_timeout (%gs)",
                            ip or listener.name,
                            timeout,
                        )
                        return None
                    continue
                if not peeked:
                    if held:
                        raise InvalidProxyHeader("the connection closed inside the PROXY header")
                    return None  # connected and closed: a health check, nothing to say
                header, take = proxy.parse_peeked(held, peeked, ip)
                if take:
                    data = conn.recv(take)
                    if len(data) != take:
                        raise ConnectionError(f"read {len(data)} of {take} peeked bytes")
                    held += data
                if header is not NEED_DATA:
                    break
        except InvalidProxyHeader as exc:
            log_proxy_refused(self.log, peer, exc.reason)
            return None
        if header is NO_HEADER:
            return peer
        return header.source or peer

    async def _readable(self, conn: socket.socket, deadline: float | None) -> bool:
        """Wait until ``conn`` has bytes to read: False when ``deadline`` (loop time) came
        first."""
        loop = self.loop
        ready: asyncio.Future[None] = loop.create_future()
        fd = conn.fileno()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, wake)
        try:
            if deadline is None:
                await ready
                return True
            await asyncio.wait_for(ready, max(deadline - loop.time(), 0.0))
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            loop.remove_reader(fd)

    async def _connect(self, conn: socket.socket, factory: ProtocolFactory) -> None:
        try:
            await self.loop.connect_accepted_socket(factory, conn)
        except OSError as exc:
            self.log.debug("Connection lost before it was set up: %s", exc)
            conn.close()
            self.open -= 1
        finally:
            self.connecting -= 1
