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
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..addresses import PeerAddress
from ..listeners import Listener
from ..logs import Logger

if TYPE_CHECKING:
    from ssl import SSLContext

__all__ = ["Acceptor"]

_ACCEPT_BATCH = 64

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
    ) -> None:
        """``handshake_timeout``: seconds a TLS handshake may take (None: the loop's 60 s)."""
        self.loop = loop
        self.handshake_timeout = handshake_timeout
        self.listeners = listeners
        self.factories = factories
        self.direct: dict[int, DirectHandler] = direct if direct is not None else {}
        """Listeners (by fd) whose accepted sockets go to a handler instead of a factory."""
        self.cap = cap
        self.log = log
        self.accept_failed = accept_failed
        self._resume: asyncio.TimerHandle | None = None
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
        # socket.accept() converts family and type to enums for every connection: once here
        family, kind, proto = sock.family, sock.type, sock.proto
        taken = 0
        for _ in range(limit):
            if capped and self.open >= self.cap:
                self.stop()
                break
            try:
                fd, addr = sock._accept()  # type: ignore[attr-defined]  # CPython, all versions
            except BlockingIOError:
                break
            except OSError as exc:
                if self.accept_failed(listener, exc):
                    continue
                break
            conn = socket.socket(family, kind, proto, fd)
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
        """Set a transport and a protocol from ``factory`` up on an accepted, counted socket."""
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
        try:
            await loop.connect_accepted_socket(
                factory, conn, ssl=context, ssl_handshake_timeout=timeout
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

    async def _connect(self, conn: socket.socket, factory: ProtocolFactory) -> None:
        try:
            await self.loop.connect_accepted_socket(factory, conn)
        except OSError as exc:
            self.log.debug("Connection lost before it was set up: %s", exc)
            conn.close()
            self.open -= 1
        finally:
            self.connecting -= 1
