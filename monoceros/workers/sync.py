"""The sync worker: one connection at a time on blocking sockets, closed after each response.

The cycle a front end pays for — accept, read, parse, call, write, close — is kept short: one
listener is served with a blocking accept (several are polled with ``EPOLLEXCLUSIVE`` on Linux,
so one idle worker wakes per connection, not all of them); the first read and the first send do
not wait, so a request that is already there costs no timeout set-up; the head and a small body
leave in one send; nothing below the active log level is formatted. The loop on one listener
and a plain uwsgi connection from its accept to its close are compiled code
(:mod:`monoceros.workers.request_path`), and what follows a parsed head is shared with the
gthread worker there. With ``proxy_protocol``
on, a PROXY header is read first, from the same first read (:meth:`SyncWorker._proxy_header`),
and the request follows on the bytes after it. What to do on an accept
error, after ``max_requests`` and with the listen queue on a stop is every kind's policy
(:mod:`monoceros.workers.base`), applied here with blocking accepts.
"""

from __future__ import annotations

import select
import socket
import struct
import sys
import time
from typing import TYPE_CHECKING, Any

from ..addresses import PeerAddress
from ..listeners import Listener
from ..protocols.errors import InvalidProxyHeader, ProtocolError
from ..protocols.events import NEED_DATA
from ..protocols.http import HttpParser
from ..protocols.proxy_protocol import NO_HEADER
from ..socket_waits import KERNEL_TIMEOUTS
from ..wsgi.body import ClientDisconnected
from .blocking import RECV_SIZE, BlockingWorker, error_response, take_exactly
from .request_path import recv_head

if TYPE_CHECKING:
    from .tls_handshake import Handshakes

__all__ = ["SyncWorker", "error_response"]

_RECV = RECV_SIZE
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
_PEEK = socket.MSG_PEEK


class SyncWorker(BlockingWorker):
    """Serve one connection at a time; every response closes its connection."""

    #: the TLS handshakes of TLS listeners (None: no listener serves TLS)
    tls: Handshakes | None

    def run(self) -> None:
        """Accept and serve until told to stop."""
        self.setup_serving(False)
        self.tls = self.tls_handshakes()
        self._serve_forever()

    # ------------------------------------------------------------------ accept loop

    def _make_poller(self) -> select.epoll | select.poll:
        if hasattr(select, "epoll"):
            poller = select.epoll()
            exclusive = getattr(select, "EPOLLEXCLUSIVE", 0)
            for listener in self.listeners:
                poller.register(listener.sock.fileno(), select.EPOLLIN | exclusive)
            poller.register(self._wakeup_r, select.EPOLLIN)
            return poller
        fallback = select.poll()
        for listener in self.listeners:
            fallback.register(listener.sock.fileno(), select.POLLIN)
        fallback.register(self._wakeup_r, select.POLLIN)
        return fallback

    def _serve_forever(self) -> None:
        if len(self.listeners) == 1 and sys.platform.startswith("linux"):
            self._serve_one_listener(self.listeners[0])
        else:
            self._serve_listeners()
        if self.serves_listen_queue():
            # bounded by graceful_timeout too: the master kills what is still running after it
            deadline = time.monotonic() + max(0.0, self.cfg.graceful_timeout - 1.0)
            self.take_listen_queue(self._handle, deadline)

    def _serve_one_listener(self, listener: Listener) -> None:
        """One listener, the usual case: a blocking accept() with a kernel timeout.

        An idle worker sleeps in accept() itself (the kernel wakes one waiting worker per
        connection), and a busy one pays one system call per connection instead of the
        accept/EAGAIN/poll/read-the-wake-up-pipe round of the general loop. The timeout
        (SO_RCVTIMEO, at most 0.25 s) keeps the heartbeat going and bounds how long an idle
        worker takes to notice TERM or a --reload.
        """
        wait = self.idle_wait(0.25)
        sock = listener.sock
        sock.setblocking(True)
        seconds = int(wait)
        sock.setsockopt(
            socket.SOL_SOCKET,
            socket.SO_RCVTIMEO,
            struct.pack("ll", seconds, int((wait - seconds) * 1_000_000)),
        )
        # a plain uwsgi listener is served by compiled code from accept to close
        fast = listener.protocol == "uwsgi" and listener.tls is None and self.proxy is None
        self.request_path.accept_loop(listener, None if fast else self._handle, wait)

    def _serve_listeners(self) -> None:
        """Several listeners (or not Linux): one wait on all of them and the wake-up pipe (epoll
        with ``EPOLLEXCLUSIVE`` where there is one), then one non-blocking accept on each ready
        listener. The wait is level-triggered, so a listener with more queued is ready again at
        once; an accept() that finds the queue empty costs more than that wait (about 5 µs: the
        kernel makes and frees a socket before it looks at the queue, then CPython raises)."""
        heartbeat = self.heartbeat
        wait = self.idle_wait(1.0)
        use_epoll = hasattr(select, "epoll")
        poll_timeout: float = wait if use_epoll else wait * 1000.0
        poller = self._make_poller()
        by_fd = {listener.sock.fileno(): listener for listener in self.listeners}
        wakeup = self._wakeup_r
        next_check = time.monotonic() + wait
        try:
            while self.alive:
                now = heartbeat.beat()
                if now >= next_check:  # busy or idle: the master is looked for every `wait` s
                    next_check = now + wait
                    if self.parent_changed():
                        return
                try:
                    ready = poller.poll(poll_timeout)
                except InterruptedError:
                    continue
                for fd, _ in ready:
                    listener = by_fd.get(fd)
                    if listener is None:  # the wake-up pipe: a signal came
                        if fd == wakeup:
                            self.drain_wakeup()
                        continue
                    if not self.alive:
                        break
                    try:
                        conn, peer = listener.sock.accept()
                    except BlockingIOError:  # another worker took it
                        continue
                    except OSError as exc:
                        self.accept_failed(listener, exc)  # ready again at the next wait
                        continue
                    self._handle(listener, conn, peer)
                    heartbeat.beat()
                    self.check_max_requests()
                if self.reopen_logs:
                    self.reopen_log_files()
        finally:
            if isinstance(poller, select.epoll):
                poller.close()

    # ------------------------------------------------------------------ one connection

    def _handle(self, listener: Listener, conn: socket.socket, peer: PeerAddress) -> None:
        # per connection: accept -> (PROXY header, plain text) -> TLS handshake -> protocol
        try:
            first = None  # bytes already read after a PROXY header (None: nothing read yet)
            deadline = 0.0  # of the request head: 0.0 starts header_timeout at the first wait
            if self.proxy is not None:
                proxied: tuple[PeerAddress, bytes | None, float] | None
                if listener.tls is None:
                    proxied = self._proxy_header(listener, conn, peer)
                else:  # the handshake's bytes that follow the header are the TLS layer's
                    proxied = self._proxy_header_before_tls(listener, conn, peer)
                if proxied is None:
                    return
                peer, first, deadline = proxied
            if listener.tls is not None:
                assert self.tls is not None
                handshaken = self.tls.complete(listener, conn, peer, deadline)
                if handshaken is None:
                    return  # failed: logged, closed
                conn, deadline = handshaken
            if listener.protocol == "uwsgi":
                self.request_path.uwsgi_connection(listener, conn, peer, first, deadline)
            else:
                self._handle_http(listener, conn, peer, first, deadline)
        except Exception as exc:
            self.log_connection_error(exc, peer, listener)
        finally:
            conn.close()

    def _proxy_header(
        self, listener: Listener, conn: socket.socket, peer: PeerAddress
    ) -> tuple[PeerAddress, bytes, float] | None:
        """Read the PROXY header that starts the connection, with the same first ``recv`` the
        request would have had: the client's address (the peer's when the header names none),
        the bytes after the header, and the head deadline started meanwhile (0.0: none yet).
        None when the connection is closed: refused (one log line) or left without a word."""
        proxy = self.proxy
        assert proxy is not None
        if self.proxy_peer_refused(listener, peer):
            return None
        ip = peer[0] if isinstance(peer, tuple) else None
        try:
            buf = conn.recv(_RECV, _DONTWAIT)
            if not buf:
                return None  # connected and closed: a health check, nothing to say
        except BlockingIOError:
            buf = b""
        deadline = 0.0
        try:
            while True:
                if buf:
                    header = proxy.parse(buf, ip)
                    if header is not NEED_DATA:
                        break
                data, deadline = recv_head(conn, self.header_timeout, deadline, "PROXY header")
                if not data:
                    if buf:
                        raise InvalidProxyHeader("the connection closed inside the PROXY header")
                    return None
                buf += data
        except InvalidProxyHeader as exc:
            self.proxy_refused(listener, peer, exc.reason)
            return None
        if header is NO_HEADER:
            return peer, buf, deadline
        return header.source or peer, buf[header.size :], deadline

    def _proxy_header_before_tls(
        self, listener: Listener, conn: socket.socket, peer: PeerAddress
    ) -> tuple[PeerAddress, None, float] | None:
        """:meth:`_proxy_header` on a TLS listener: the header is read to its last byte and no
        further, so the TLS handshake that follows finds all of its bytes in the socket. Each
        read peeks (``MSG_PEEK``) and takes only what is header; the waits are Python timeouts,
        which the TLS socket keeps using (a kernel timeout would stay under OpenSSL)."""
        proxy = self.proxy
        assert proxy is not None
        if self.proxy_peer_refused(listener, peer):
            return None
        ip = peer[0] if isinstance(peer, tuple) else None
        held = b""
        deadline = 0.0
        try:
            try:
                peeked: bytes | None = conn.recv(_RECV, _PEEK | _DONTWAIT)
            except BlockingIOError:
                peeked = None
            while True:
                if peeked is None:
                    peeked, deadline = self._peek_header(conn, deadline)
                if not peeked:
                    if held:
                        raise InvalidProxyHeader("the connection closed inside the PROXY header")
                    return None  # connected and closed: a health check, nothing to say
                header, take = proxy.parse_peeked(held, peeked, ip)
                if take:
                    held += take_exactly(conn, take)
                if header is not NEED_DATA:
                    break
                peeked = None
        except InvalidProxyHeader as exc:
            self.proxy_refused(listener, peer, exc.reason)
            return None
        if header is NO_HEADER:
            return peer, None, deadline
        return header.source or peer, None, deadline

    def _peek_header(self, conn: socket.socket, deadline: float) -> tuple[bytes, float]:
        """Wait for bytes of a PROXY header and peek at them, within header_timeout (a Python
        timeout); the deadline is set on the first wait."""
        timeout = self.header_timeout
        if timeout:
            now = time.monotonic()
            if not deadline:
                deadline = now + timeout
            remaining = deadline - now
            if remaining <= 0:
                raise ClientDisconnected(
                    f"no complete PROXY header within header_timeout ({timeout:g}s)"
                )
            conn.settimeout(remaining)
        else:
            conn.settimeout(None)
        try:
            return conn.recv(_RECV, _PEEK), deadline
        except (TimeoutError, BlockingIOError):
            raise ClientDisconnected(
                f"no complete PROXY header within header_timeout ({timeout:g}s)"
            ) from None

    def _read_head(
        self, conn: socket.socket, parser: HttpParser, first: bytes | None, deadline: float
    ) -> Any:
        """Read until the parser yields a request head; None when the client sent nothing.

        ``first``: the bytes that followed a PROXY header (b"" for none yet); None: nothing
        was read yet. ``deadline``: the header deadline the PROXY header started, or 0.0."""
        if first is None:
            try:
                data: bytes | None = conn.recv(_RECV, _DONTWAIT)
            except BlockingIOError:
                data = None
        else:
            data = first or None
        while True:
            if data is None:
                data, deadline = recv_head(conn, self.header_timeout, deadline, "request head")
            parser.receive_data(data)
            event = parser.next_event()
            if event is not NEED_DATA:
                if deadline and not KERNEL_TIMEOUTS:
                    conn.settimeout(None)  # the head deadline is over; body waits get io_timeout
                return event
            if not data:
                return None
            data = None

    def _handle_http(
        self,
        listener: Listener,
        conn: socket.socket,
        peer: PeerAddress,
        first: bytes | None,
        deadline: float,
    ) -> None:
        parser = HttpParser(self.limits)
        try:
            req = self._read_head(conn, parser, first, deadline)
        except ProtocolError as exc:
            self.http_invalid(listener, conn, peer, exc)
            return
        if req is None:
            return  # connected and closed without a request: nothing to say
        self.request_path.http_request(listener, conn, peer, parser, req, self.heartbeat, False)
