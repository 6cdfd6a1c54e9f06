"""The lean uWSGI path: a whole request read at accept time is served without a transport.

nginx opens a new uwsgi connection per request and sends the packet (vars and a small body) at
once, so most connections are complete the moment they are accepted. :class:`UwsgiFastPath`
reads them with one non-blocking ``recv``, builds the scope and runs the application's
:class:`~.cycle.HttpCycle` over a :class:`FastConnection`: the accepted socket itself as the
cycle's :class:`~.channel.Channel`, written with non-blocking ``send`` (the rest buffered behind
a writer callback, with the same pause and drain as a transport), closed when the response is
complete. Anything else — nothing readable
yet, a partial packet or body, a chunked body, a ping, a malformed packet, a peer outside the
allow-list, a WebSocket upgrade — is handed over with the bytes already read to the
transport-based :class:`~.uwsgi_protocol.UwsgiProtocol`, which answers, logs and times out
exactly as before.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import TYPE_CHECKING, Final

from ..addresses import PeerAddress, peer_label
from ..protocols.errors import InvalidProxyHeader, ProtocolError
from ..protocols.events import NEED_DATA
from ..protocols.proxy_protocol import NO_HEADER, ProxyHeaderReader
from ..protocols.uwsgi import UwsgiRequest, parse_head
from ..socket_waits import SEND_THEN_CLOSE
from .cycle import HttpCycle
from .scope import PacketScope, UwsgiScopeBuilder

if TYPE_CHECKING:
    from .context import ServerContext

__all__ = ["FastConnection", "UwsgiFastPath", "WRITE_HIGH", "WRITE_LOW"]

WRITE_HIGH: Final = 64 * 1024
"""Unsent response bytes at which the application's writes wait (asyncio's default mark)."""

WRITE_LOW: Final = 16 * 1024
"""Unsent response bytes under which waiting writes resume."""

_RECV: Final = 16 * 1024
"""The first read of a connection: a request larger than this is not whole after it, and goes to
the protocol with these bytes. A 64 KiB read costs more once the requests of a batch are in
flight together: each ``recv`` allocates its size before it shrinks to what came, and with 16
buffers of 4.8 KiB alive, 64 KiB reads took 9.9 µs where 16 KiB reads took 5.5 µs (a loop of
socketpair reads; 700-byte requests: the same either way)."""
_DONTWAIT: Final = socket.MSG_DONTWAIT
_GATHER_UNDER: Final = 4096
"""A piece written while others wait that is smaller than this is copied into the queue's last
``bytearray``: many small pieces make one buffer, not one queue entry each."""
_SENDMSG_MAX: Final = 64
"""The most queued pieces one ``sendmsg`` is given (far under the system's IOV_MAX)."""

#: hands an accepted socket, the bytes read from it and its peer (the client a PROXY header
#: named, else the socket's) to the transport-based protocol
HandOver = Callable[[socket.socket, bytes, PeerAddress], None]
#: hands an accepted socket and the bytes read from it to the PROXY header's protocol
ProxyHandOver = Callable[[socket.socket, bytes], None]


class UwsgiFastPath:
    """Serves the uwsgi connections of one listener that arrive complete; hands over the rest."""

    __slots__ = (
        "_builder",
        "_ctx",
        "_hand_over",
        "_max_vars",
        "_proxy",
        "_proxy_hand_over",
        "_tcp",
    )

    def __init__(
        self,
        ctx: ServerContext,
        builder: UwsgiScopeBuilder,
        hand_over: HandOver,
        *,
        tcp: bool,
        proxy: ProxyHeaderReader | None = None,
        proxy_hand_over: ProxyHandOver | None = None,
    ) -> None:
        self._ctx = ctx
        self._builder = builder
        self._hand_over = hand_over
        self._max_vars = ctx.uwsgi_max_vars
        self._tcp = tcp
        self._proxy = proxy
        self._proxy_hand_over = proxy_hand_over

    def serve(self, sock: socket.socket, peer: PeerAddress, data: bytes = b"") -> None:
        """Serve one freshly accepted connection (counted open by the acceptor); ``data``: the
        bytes that followed its PROXY header (and ``peer`` the client it named), if any."""
        ctx = self._ctx
        if not data:
            if self._tcp and peer[0] not in ctx.uwsgi_allowed:
                self._hand_over(sock, b"", peer)  # the protocol refuses it and logs the warning
                return
            try:
                data = sock.recv(_RECV, _DONTWAIT)
            except BlockingIOError:
                self._hand_over(sock, b"", peer)
                return
            except OSError:
                data = b""
            if not data:  # connected and closed (a health check) or reset: nothing to say
                self._closed(sock)
                return
        result = self._builder.from_packet(data, self._max_vars, ctx.state)
        if result is None:  # anything unusual: the general path, or the protocol
            result = self._general(sock, peer, data)
            if result is None:
                return
        scope, used, length = result
        if len(data) - used < length:  # the body is still on its way
            self._hand_over(sock, data, peer)
            return
        conn = FastConnection(ctx, sock, peer)
        ctx.connections.add(conn)
        ctx.request_started()
        cycle = conn.cycle = HttpCycle(
            conn,
            scope,
            keep_alive=False,
            expect_100=False,
            http11=scope["http_version"] == "1.1",
            uwsgi=True,
            body_done=True,
        )
        if length:
            cycle.feed(data[used : used + length])
        ctx.start_request(cycle, eager=True)

    def _general(self, sock: socket.socket, peer: PeerAddress, data: bytes) -> PacketScope:
        """The scope of a packet :meth:`UwsgiScopeBuilder.from_packet` declined, through
        ``parse_head`` and the builder; None once the connection went to the protocol (which
        answers a ping, refuses or reports a bad packet, reads a chunked body, upgrades)."""
        try:
            result = parse_head(data, self._max_vars)
        except ProtocolError:
            result = None
        if result is not None:
            head, used = result
            if isinstance(head, UwsgiRequest) and not head.chunked:
                try:
                    scope = self._builder.build(head.environ, self._ctx.state)
                except Exception:  # the protocol meets the same failure and reports it
                    scope = None
                if scope is not None and scope["type"] == "http":
                    return scope, used, head.content_length
        self._hand_over(sock, data, peer)
        return None

    def serve_proxied(self, sock: socket.socket, peer: PeerAddress) -> None:
        """Serve a connection that starts with a PROXY header (``proxy_protocol`` on): the
        header is read from the same first ``recv``; a request whole after it is served here
        as :meth:`serve` would, anything else goes to the PROXY header's protocol (which
        refuses, logs and waits) or, once the header is read, to the uwsgi protocol."""
        reader = self._proxy
        assert reader is not None and self._proxy_hand_over is not None
        try:
            data = sock.recv(_RECV, _DONTWAIT)
        except BlockingIOError:
            self._proxy_hand_over(sock, b"")  # (a peer refused at once is logged there)
            return
        except OSError:
            data = b""
        if not data:  # connected and closed (a health check) or reset: nothing to say
            self._closed(sock)
            return
        ip = peer[0] if isinstance(peer, tuple) else None
        try:
            header = reader.parse(data, ip) if reader.refused(ip) is None else NEED_DATA
        except InvalidProxyHeader:
            header = NEED_DATA  # the header's protocol meets the same error and logs it
        if header is NEED_DATA:
            self._proxy_hand_over(sock, data)
            return
        if header is not NO_HEADER:
            peer = header.source or peer
            data = data[header.size :]
        if not data or (isinstance(peer, tuple) and peer[0] not in self._ctx.uwsgi_allowed):
            self._hand_over(sock, data, peer)  # waits for the packet, or refuses the peer
            return
        self.serve(sock, peer, data)

    def _closed(self, sock: socket.socket) -> None:
        sock.close()
        self._ctx.connection_closed()


class FastConnection:
    """One uwsgi connection served over its bare socket: the :class:`~.channel.Channel` of its
    :class:`HttpCycle`, transport and flow control in one.

    It writes the socket itself, pauses and drains the writer like a transport (with the rules
    :class:`~.flow.WriteFlow` keeps for the transport-based connections: it pauses at
    :data:`WRITE_HIGH` unsent bytes, resumes under :data:`WRITE_LOW`); nothing is read
    after the request, whose body was complete at accept time, except to see the peer leave
    while the application waits for that. It registers in ``ctx.connections`` like the protocols
    do.
    """

    __slots__ = (
        "_drain_waiter",
        "_queue",
        "_unsent",
        "_watching",
        "_writing",
        "closed",
        "closing",
        "ctx",
        "cycle",
        "deadline",
        "peer",
        "sock",
        "write_paused",
    )

    read_paused: bool = False
    """Nothing is read after the request, so reading is never paused."""

    def __init__(self, ctx: ServerContext, sock: socket.socket, peer: PeerAddress) -> None:
        self.ctx = ctx
        self.sock = sock
        self.peer = peer
        self.cycle: HttpCycle | None = None
        self.deadline = 0.0
        """Always 0: the request is complete, so no deadline applies."""
        self.closed = False
        self.closing = False
        self.write_paused = False
        self._queue: deque[bytes | bytearray | memoryview] = deque()
        """What the socket has not taken yet, in order."""
        self._unsent = 0
        self._writing = False
        self._watching = False
        self._drain_waiter: asyncio.Future[None] | None = None

    def peer_label(self) -> str:
        """The front end's address, for log lines."""
        return peer_label(self.peer)

    def resume_writing(self) -> None:
        """The unsent bytes fell under :data:`WRITE_LOW` (or the connection closed)."""
        self.write_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        """Wait until writes are accepted again (or the connection is closed)."""
        if not self.write_paused or self.closed:
            return
        waiter = self._drain_waiter
        if waiter is None:
            waiter = self._drain_waiter = self.ctx.loop.create_future()
        await waiter

    # ------------------------------------------------------------------ as the cycle's connection

    def response_done(self, cycle: HttpCycle) -> None:
        """The response is complete: close once it is sent (the body was read whole)."""
        self.close()

    # ------------------------------------------------------------------ as its transport

    def write(self, data: bytes, flags: int = _DONTWAIT) -> None:
        """Send now what the socket takes; queue the rest behind a writer callback.

        What the cycle writes is ``bytes``, which nothing changes after: a large piece is
        queued as it is (a view of its unsent part), not copied into a buffer; small pieces
        are gathered into one ``bytearray`` of the queue's own."""
        if self.closing:
            return
        if self._unsent:
            if not data:
                return  # (an empty entry would keep the queue from ever emptying)
            queue = self._queue
            if len(data) >= _GATHER_UNDER:
                queue.append(data)
            else:
                last = queue[-1]
                if type(last) is bytearray:
                    last += data
                else:
                    queue.append(bytearray(data))
            self._unsent += len(data)
        else:
            try:
                sent = self.sock.send(data, flags)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._lost()
                return
            if sent == len(data):
                return
            self._queue.append(memoryview(data)[sent:] if sent else data)
            self._unsent = len(data) - sent
            if not self._writing:
                self._writing = True
                self.ctx.loop.add_writer(self.sock.fileno(), self._on_writable)
        if self._unsent > WRITE_HIGH:
            self.write_paused = True

    @property
    def unsent(self) -> int:
        """Bytes written and not yet taken by the socket."""
        return self._unsent

    def write_last(self, data: bytes) -> None:
        """The response's last bytes, the close to follow at once: they leave with the FIN."""
        self.write(data, SEND_THEN_CLOSE)

    def _on_writable(self) -> None:
        queue = self._queue
        if not queue:
            # emptied last round and nothing came since: stop watching (a streaming
            # application usually writes again first, which saves two epoll_ctl calls a block)
            self._writing = False
            self.ctx.loop.remove_writer(self.sock.fileno())
            return
        try:
            if len(queue) == 1:
                sent = self.sock.send(queue[0], _DONTWAIT)
            else:  # the queued pieces in one system call
                sent = self.sock.sendmsg(islice(queue, _SENDMSG_MAX), (), _DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            self._lost()
            return
        self._unsent -= sent
        while sent:
            first = queue[0]
            size = len(first)
            if sent < size:
                queue[0] = memoryview(first)[sent:]
                break
            queue.popleft()
            sent -= size
        if not queue and self.closing:
            self._close_now()
            return
        if self.write_paused and self._unsent <= WRITE_LOW:
            self.resume_writing()

    def is_closing(self) -> bool:
        """True once closing was asked for (or the peer went away)."""
        return self.closing

    def close(self) -> None:
        """Close after the buffered bytes are sent."""
        if self.closing:
            return
        self.closing = True
        if not self._queue:
            self._close_now()

    def abort(self) -> None:
        """Close now, dropping anything unsent."""
        self.closing = True
        self._close_now()

    def _lost(self) -> None:
        """The peer went away (a failed send or read)."""
        self._queue.clear()
        self._unsent = 0
        self.abort()

    def _close_now(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._writing:
            self._writing = False
            self.ctx.loop.remove_writer(self.sock.fileno())
        if self._watching:
            self._watching = False
            self.ctx.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self.resume_writing()
        cycle = self.cycle
        if cycle is not None:
            self.cycle = None  # no reference cycle left for the collector
            cycle.lost()
        self.ctx.discard(self)

    # ------------------------------------------------------------------ as its flow control

    def buffered(self, size: int) -> None:
        """The whole body is in hand: reading never pauses."""

    def pause_reading(self) -> None:
        """Nothing is read after the request."""

    def resume_reading(self) -> None:
        """Nothing is read after the request."""

    def watch_peer(self) -> None:
        """The application waits for the disconnect: watch the socket for EOF or a reset.

        Only from here on is the socket polled for reading: a request whose application never
        waits on ``receive()`` with nothing left to deliver costs no extra system call."""
        if self._watching or self.closed:
            return
        self._watching = True
        self.ctx.loop.add_reader(self.sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(_RECV, _DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            self._lost()
            return
        if not data:  # front ends never half-close: EOF after the request is the client gone
            self._lost()
        # bytes after the request are not ours

    # ------------------------------------------------------------------ the worker's view

    @property
    def busy(self) -> bool:
        """True until the response is complete."""
        cycle = self.cycle
        return cycle is not None and not cycle.response_complete

    def on_deadline(self) -> None:
        """No deadline applies to a request read whole."""
        self.deadline = 0.0

    def shutdown(self) -> None:
        """Graceful stop: the response in flight finishes, then the connection closes."""
        if self.cycle is None:
            self.close()
