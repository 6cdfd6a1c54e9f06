"""The gthread worker: a pool of ``threads`` threads per worker, keep-alive and pipelining.

One long-lived epoll set holds the listeners and every connection that waits for bytes (a new
one whose request has not arrived yet, a kept-alive one between requests, a slow client in the
middle of its head; each armed for one event at a time, ``EPOLLONESHOT``). The pool threads take
turns at it, leader and followers: one thread, the leader, waits in the set and serves what it
takes itself — a listener's readiness is an ``accept`` and that connection, then the next ones
straight from the listener's queue while it has one (an accept run, no poll between them); a
parked connection's readiness is that connection — then waits again; the others wait for their
turn. On a plain uwsgi listener a connection whose packet came with it is served without a
connection record, by compiled code (:meth:`RequestPath.uwsgi_accept_run
<monoceros.workers.request_path.RequestPath.uwsgi_accept_run>`).
A stream of quick requests is thus served by one thread as the sync worker serves it, with no
hand-off between threads (no queue, no waking of another thread, no passing of the GIL, which
would cost more than the request). When the leader's request takes longer than
:data:`HAND_OVER` seconds (the application waits on something), the main thread makes the next
thread the leader, so the listeners and the parked connections are never left unattended
longer than that; the old leader finishes its request and queues for its next turn. Up to
``threads`` requests run at once, as in gunicorn.

A thread reads and parses what is there without waiting, serves the complete requests (blocking,
as the sync worker does, for the body and the response), and when the next request is not there
yet, parks the connection again. Idle kept-alive connections are closed after ``keepalive``
seconds, heads that do not complete within ``header_timeout`` seconds are dropped, and no more
connections are accepted while ``worker_connections`` are open (the listeners leave the set
until the main thread sees room again). A connection's next step is its own (``_Conn.step``):
with ``proxy_protocol`` on, a new one starts with the PROXY header's
(:meth:`ThreadWorker._step_proxy`), which hands over to the protocol's once the header is read.

The main thread keeps the time: it waits on the signal wake-up pipe and beats the heartbeat,
closes expired connections, takes the listeners back when there is room, hands the lead over,
and reports stuck requests. Liveness, as in gunicorn: one hung request does not stop the
worker. A request that goes ``timeout`` seconds without progress (body bytes read, response
bytes written) is logged once at WARNING with the stack of the thread serving it, and the worker
goes on serving the others. Only a main thread that cannot run (the GIL held in C code) lets the
master abort the worker; it then logs the requests in flight.

Accept errors, ``max_requests`` and the listen queue on a stop follow every kind's policy
(:mod:`monoceros.workers.base`): a leader that meets an accept error pauses (its turn is handed
over meanwhile, so the other threads go on serving).
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from ..addresses import PeerAddress
from ..listeners import Listener, connection_maker
from ..protocols.errors import InvalidProxyHeader, ProtocolError
from ..protocols.events import NEED_DATA
from ..protocols.http import HttpParser, HttpRequest
from ..protocols.proxy_protocol import NO_HEADER
from ..protocols.uwsgi import PONG, Ping, UwsgiRequest, parse_head, truncated_head
from ..worker_metrics import WorkerMetrics
from .base import stack_of
from .blocking import RECV_SIZE, BlockingWorker, take_exactly
from .request_path import ConnectionCount, ThreadProgress

if TYPE_CHECKING:
    from ssl import SSLContext

    from .tls_handshake import Handshakes

__all__ = ["ThreadWorker"]

_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
_PEEK = socket.MSG_PEEK
_PARK = select.EPOLLIN | select.EPOLLONESHOT if hasattr(select, "epoll") else 0
#: listeners wake one worker process per connection; only the leader thread waits on them
_LISTEN = select.EPOLLIN | getattr(select, "EPOLLEXCLUSIVE", 0) if hasattr(select, "epoll") else 0
HAND_OVER = 0.002
"""Seconds a leader may serve one connection before the main thread gives the lead to the next
thread: the longest a new connection waits while the application makes a request wait."""
#: seconds between two sweeps for expired deadlines, at most
_TICK = 0.25
_FOREVER = float("inf")
#: connections a leader takes straight from a listener's queue in a row, before it polls again
_ACCEPT_RUN = 16


#: what a pool thread does with a connection that has bytes to read; True to park it again
_Step = Callable[["_Conn", "ThreadProgress"], bool]


class _Conn:
    """One client connection and what is known of it between two readiness events."""

    __slots__ = (
        "buf",
        "checked",
        "deadline",
        "fd",
        "fresh",
        "head_deadline",
        "listener",
        "parser",
        "peer",
        "registered",
        "served",
        "sock",
        "step",
        "tls",
        "uwsgi",
    )

    def __init__(
        self,
        sock: socket.socket,
        listener: Listener,
        peer: PeerAddress,
        head_deadline: float,
        parser: HttpParser | None,
        step: _Step,
    ) -> None:
        self.sock = sock
        #: the next step: the PROXY header's, the TLS handshake's, then the protocol's
        self.step = step
        #: the TLS context while the handshake is to be done (None: done, or a plain listener)
        self.tls: SSLContext | None = listener.tls
        self.fd = sock.fileno()
        self.listener = listener
        self.peer = peer
        self.uwsgi = parser is None
        self.parser = parser
        self.buf = b""
        self.served = 0
        self.head_deadline = head_deadline
        self.deadline = head_deadline
        self.registered = False
        #: accepted, first request not begun yet: it counts towards max_requests already
        self.fresh = True
        #: the uwsgi allow-list was checked (before the packet is read)
        self.checked = False


class _Listening:
    """A listener as the pool threads accept from it: the raw accept, what makes a new
    connection's socket object (:func:`~monoceros.listeners.connection_maker`), a new
    connection's first step, and whether its uWSGI packets are served straight from the
    accept (:meth:`RequestPath.uwsgi_at_once
    <monoceros.workers.request_path.RequestPath.uwsgi_at_once>`)."""

    __slots__ = ("accept", "listener", "make", "step", "uwsgi_direct")

    def __init__(self, listener: Listener, step: _Step, uwsgi_direct: bool) -> None:
        sock = listener.sock
        self.listener = listener
        self.step = step
        #: a plain uwsgi listener without the PROXY protocol: the packet is the first byte
        self.uwsgi_direct = uwsgi_direct
        self.accept: Callable[[], tuple[int, PeerAddress]] = sock._accept  # type: ignore[attr-defined]
        self.make = connection_maker(listener)


class ThreadWorker(BlockingWorker):
    """Serve many connections with a thread pool; HTTP/1.1 keep-alive and pipelining."""

    def new_metrics(self) -> WorkerMetrics:
        """One request slot per pool thread; the counters under a lock."""
        return WorkerMetrics(max(1, self.cfg.threads), threaded=True)

    def run(self) -> None:
        """Start the pool and serve until told to stop."""
        if not hasattr(select, "epoll"):
            raise RuntimeError("the gthread worker needs epoll (Linux)")
        cfg = self.cfg
        self.setup_serving(True)
        #: the TLS handshakes of TLS listeners (None: no listener serves TLS)
        self.tls: Handshakes | None = self.tls_handshakes()
        self.keepalive = float(cfg.keepalive)
        self._parked: dict[int, _Conn] = {}
        #: connections handed to the pool by the main thread while it stops
        self._jobs: queue.SimpleQueue[_Conn] = queue.SimpleQueue()
        self._progress: list[ThreadProgress] = []
        self._poller = select.epoll()
        #: readable once the pool threads are to leave (level-triggered: every one sees it)
        self._stop_r, self._stop_w = os.pipe()
        self._poller.register(self._stop_r, select.EPOLLIN)
        self._listen(True)
        #: held by the leader: the one pool thread that waits in the set
        self._lead = threading.Lock()
        #: guards the hand-over: the leader's progress while it serves, and ``deposed``
        self._turns = threading.Lock()
        self._serving: ThreadProgress | None = None
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"monoceros-{i}", daemon=True)
            for i in range(cfg.threads)
        ]
        for thread in self._threads:
            thread.start()
        # A fast stop (QUIT, INT) or an abort leaves through SystemExit: no waiting for threads.
        self._serve_forever()
        self._shutdown()

    def setup_serving(self, multithread: bool) -> None:
        """Read the settings every request needs; start counting connections."""
        super().setup_serving(multithread)
        self.max_connections = self.cfg.worker_connections
        self._http_step: _Step = self._step_http
        self._uwsgi_step: _Step = self._step_uwsgi
        self._proxy_tls_step: _Step = self._step_proxy_before_tls
        #: per listener fd: what a pool thread needs to accept from it, and the new
        #: connection's first step
        self._listening: dict[int, _Listening] = {
            listener.sock.fileno(): _Listening(
                listener,
                self._first_step_of(listener),
                listener.protocol == "uwsgi" and listener.tls is None and self.proxy is None,
            )
            for listener in self.listeners
        }
        #: open connections, and those whose first request has not begun
        self._count = ConnectionCount()
        #: False while the listeners are out of the set (no room, or a pause after an accept
        #: error); the main thread puts them back
        self._accepting = True
        #: accepting pauses until then after an accept error (monotonic)
        self._paused_until = 0.0

    def _first_step_of(self, listener: Listener) -> _Step:
        """The PROXY header's step when it is on, else the TLS handshake's on a TLS listener,
        else the protocol's."""
        if self.proxy is not None:
            return self._step_proxy if listener.tls is None else self._proxy_tls_step
        if listener.tls is not None:
            return self._step_tls
        return self._uwsgi_step if listener.protocol == "uwsgi" else self._http_step

    # ------------------------------------------------------------------ main thread

    def _listen(self, on: bool) -> None:
        """Put the listeners in the set, or take them out (no room; stopping)."""
        for fd in self._listening:
            with contextlib.suppress(OSError, ValueError):  # already in (or out); closed
                if on:
                    self._poller.register(fd, _LISTEN)
                else:
                    self._poller.unregister(fd)

    def _serve_forever(self) -> None:
        """The main thread's loop: signals, the heartbeat, deadlines, room to accept again,
        the lead handed over when the leader is held up."""
        heartbeat = self.heartbeat
        timeout = self.cfg.timeout
        wait = self.idle_wait(_TICK)
        wakeup = select.epoll()
        wakeup.register(self._wakeup_r, select.EPOLLIN)
        next_tick = 0.0
        try:
            while self.alive:
                now = time.monotonic()
                serving = self._serving
                until = next_tick - now
                if serving is not None:  # wake when the lead is to be handed over
                    until = min(until, serving.leading_since + HAND_OVER - now)
                if self._paused_until > now:  # wake when accepting may resume
                    until = min(until, self._paused_until - now)
                try:
                    if wakeup.poll(max(until, 0.0)):
                        self.drain_wakeup()
                except InterruptedError:
                    pass
                if self.check_max_requests() or not self.alive:
                    break
                now = time.monotonic()
                self._hand_over(now, HAND_OVER)
                if not self._accepting and now >= self._paused_until and self._admits():
                    self._accepting = True
                    self._listen(True)
                if now < next_tick:
                    continue
                next_tick = now + wait
                heartbeat.beat()
                if timeout > 0:
                    self._report_stuck(now, timeout)
                self._expire(now)
                if self.reopen_logs:
                    self.reopen_log_files()
                if self.parent_changed():
                    self.alive = False
        finally:
            wakeup.close()

    def pause_accepting(self, seconds: float) -> None:
        """Accept nothing for ``seconds``: the listeners leave the set, and the main thread
        puts them back (no thread sleeps; the others go on serving)."""
        self._paused_until = time.monotonic() + seconds
        self._accepting = False
        self._listen(False)
        with contextlib.suppress(OSError):  # the main thread: wake up at the pause's end
            os.write(self._wakeup_w, b"p")

    def _hand_over(self, now: float, after: float) -> None:
        """Give the lead to the next thread if the leader has served what it took for
        ``after`` seconds or more (it finishes that, then waits for its turn again)."""
        with self._turns:
            serving = self._serving
            if serving is None or now - serving.leading_since < after:
                return
            serving.deposed = True
            self._serving = None
            self._lead.release()

    def _admits(self) -> bool:
        """Whether one more connection may be accepted: fewer than ``worker_connections`` are
        open, and the requests served plus the connections still waiting for their first one
        are fewer than ``max_requests`` (a worker that reached it takes no new connection: the
        listen queue is left to the other workers and to this one's replacement)."""
        return self._count.admits(self.max_connections, self.request_path.nr, self.max_requests)

    def _new_conn(
        self, listener: Listener, client: socket.socket, peer: PeerAddress, step: _Step
    ) -> _Conn:
        """Count a new connection (towards ``worker_connections`` and ``max_requests``);
        ``step``: its first."""
        self._count.opened()
        return self._conn_record(listener, client, peer, step)

    def _conn_record(
        self, listener: Listener, client: socket.socket, peer: PeerAddress, step: _Step
    ) -> _Conn:
        """The record of a new connection (counted already) that waits for its head from now
        on, within ``header_timeout``."""
        header_timeout = self.header_timeout
        deadline = time.monotonic() + header_timeout if header_timeout else _FOREVER
        parser = None if listener.protocol == "uwsgi" else HttpParser(self.limits)
        return _Conn(client, listener, peer, deadline, parser, step)

    def _take_queued(self, listener: Listener, client: socket.socket, peer: PeerAddress) -> None:
        """Graceful stop: hand a connection from the listen queue to the pool (beyond
        ``worker_connections`` if need be), so closing the listeners does not reset it."""
        step = self._listening[listener.sock.fileno()].step
        self._jobs.put(self._new_conn(listener, client, peer, step))

    def _report_stuck(self, now: float, timeout: int) -> None:
        """Log once, at WARNING, each request in flight that made no progress for ``timeout``
        seconds, with the stack of the thread serving it; the worker goes on (gunicorn's
        gthread semantics: one hung thread does not stop the worker)."""
        for progress in self._progress:
            since, started = progress.since, progress.started
            if not since or now - since <= timeout or progress.reported == started:
                continue
            frame = sys._current_frames().get(progress.thread)
            if progress.since != since:
                continue  # it moved, or ended, meanwhile
            progress.reported = started
            self.log.warning(
                "Worker (pid:%s): request in flight for %.1fs (%.1fs without progress, "
                "timeout %ss); the worker goes on serving: %s\n%s",
                self.pid,
                now - started,
                now - since,
                timeout,
                progress.describe(),
                stack_of(frame, "the thread serving it"),
            )

    def _expire(self, now: float) -> None:
        """Close parked connections past their deadline (idle keep-alive, slow heads)."""
        parked = self._parked
        for conn in list(parked.values()):
            if conn.deadline <= now and parked.pop(conn.fd, None) is not None:
                if conn.tls is not None and conn.step != self._proxy_tls_step:
                    # a TLS handshake that did not finish in time
                    assert self.tls is not None
                    self.tls.failed(conn.listener, conn.peer, TimeoutError())
                elif conn.served and (conn.uwsgi or not conn.parser or not conn.parser.in_message):
                    self.log.debug("Closing idle keep-alive connection from %s", conn.peer)
                else:
                    self.log.debug(
                        "Client %s: no complete request head within header_timeout (%gs)",
                        conn.peer or conn.listener.name,
                        self.header_timeout,
                    )
                self._close(conn)

    def _shutdown(self) -> None:
        """Stop accepting, close idle connections, let requests in flight finish, stop."""
        self.alive = False
        self._listen(False)
        if self.serves_listen_queue():
            self.take_listen_queue(self._take_queued)
        for conn in list(self._parked.values()):
            if self._parked.pop(conn.fd, None) is not None:
                if conn.served:
                    self._close(conn)  # idle between requests: nothing is lost
                else:
                    self._jobs.put(conn)  # accepted, request not there yet: still served
        os.write(self._stop_w, b"s")  # every pool thread serves what is queued, then leaves
        deadline = time.monotonic() + max(self.cfg.graceful_timeout, 0)
        for thread in self._threads:
            while thread.is_alive():
                now = time.monotonic()
                if now >= deadline:
                    break
                self._hand_over(now, 0.0)  # the queued ones need no wait for a slow request
                self.heartbeat.beat()
                thread.join(min(0.05, deadline - now))
        for conn in list(self._parked.values()):  # parked by a thread racing the stop
            self._close(conn)
        self._poller.close()
        for fd in (self._stop_r, self._stop_w):
            os.close(fd)

    def _handle_abort(self, signum: int, frame: FrameType | None) -> None:
        """Timed out: name the request(s) in flight, each with the stack of the thread serving
        it, then exit as any worker does."""
        now = time.monotonic()
        frames = sys._current_frames()
        for progress in list(self._progress):
            if progress.since and progress.request is not None:
                self.log.error(
                    "Request in flight for %.1fs (%.1fs without progress) when the worker was "
                    "aborted: %s\n%s",
                    now - progress.started,
                    now - progress.since,
                    progress.describe(),
                    stack_of(frames.get(progress.thread), "the thread serving it"),
                )
        super()._handle_abort(signum, frame)

    # ------------------------------------------------------------------ pool threads

    def _close(self, conn: _Conn) -> None:
        fresh = conn.fresh
        conn.fresh = False
        self._count.close(conn.sock, fresh)

    def _begin(
        self, conn: _Conn, progress: ThreadProgress, request: HttpRequest | UwsgiRequest
    ) -> None:
        """A request of ``conn`` starts: record it, and count the connection's first one."""
        if conn.fresh:
            conn.fresh = False
            self._count.began()
        progress.begin(request, conn.peer)

    def _park(self, conn: _Conn) -> None:
        """Wait for the connection's next bytes in the main thread's poller."""
        if not self.alive:
            self._close(conn)
            return
        parser = conn.parser
        if conn.served and (parser is None or not parser.in_message):
            conn.deadline = time.monotonic() + self.keepalive  # idle between two requests
        else:
            if conn.head_deadline == 0.0:
                timeout = self.header_timeout
                conn.head_deadline = time.monotonic() + timeout if timeout else _FOREVER
            conn.deadline = conn.head_deadline
        fd = conn.fd
        self._parked[fd] = conn
        if conn.registered:
            self._poller.modify(fd, _PARK)
        else:
            conn.registered = True
            self._poller.register(fd, _PARK)

    def _work(self, index: int = 0) -> None:
        """A pool thread: wait for the lead; as the leader, take the next ready listener or
        connection from the set and serve it, until the lead is handed over or the stop."""
        progress = ThreadProgress(self.metrics.recorders[index])
        self._progress.append(progress)
        poll = self._poller.poll
        parked = self._parked
        listening = self._listening
        stop = self._stop_r
        lead = self._lead
        turns = self._turns
        monotonic = time.monotonic
        path = self.request_path
        count = self._count
        while True:
            lead.acquire()
            while True:  # leading
                try:
                    events = poll(-1, 1)
                except InterruptedError:
                    continue
                except (OSError, ValueError):  # the set was closed: the worker is gone
                    lead.release()
                    return
                if not events:
                    continue
                fd = events[0][0]
                conn = parked.pop(fd, None)
                if conn is None:
                    if fd == stop:
                        lead.release()  # the next thread sees the stop too
                        self._drain_jobs(progress)
                        return
                    if fd not in listening:
                        continue  # the connection was closed (expired) after its event came
                with turns:
                    progress.leading_since = monotonic()
                    self._serving = progress
                if conn is not None:
                    self._serve(conn, progress)
                else:
                    # a listener: its connection, then the next ones straight from its queue
                    # while it has one (no poll between them), at most _ACCEPT_RUN in a row
                    # (the parked connections and the other listeners wait for the next poll)
                    taking = listening[fd]
                    if taking.uwsgi_direct:  # compiled, the whole run
                        path.uwsgi_accept_run(taking, progress, count, _ACCEPT_RUN)
                    else:
                        for _ in range(_ACCEPT_RUN):
                            if not self._accept(taking, progress) or progress.deposed:
                                break
                            progress.leading_since = monotonic()
                with turns:
                    deposed = progress.deposed
                    if deposed:
                        progress.deposed = False
                    else:
                        self._serving = None
                if deposed:
                    break  # another thread leads now: wait for the next turn

    def _drain_jobs(self, progress: ThreadProgress) -> None:
        """Stopping: serve the connections the main thread queued."""
        jobs = self._jobs
        while True:
            try:
                conn = jobs.get_nowait()
            except queue.Empty:
                return
            self._serve(conn, progress)

    def _accept(self, listening: _Listening, progress: ThreadProgress) -> bool:
        """The leader took a listener's readiness: accept one connection and serve it; True
        when there was one (the listener's queue may hold the next). With no room (or
        stopping) the listeners leave the set until the main thread sees room."""
        if not self.alive:
            return False
        if not self._admits():
            self.no_room()
            return False
        try:
            client_fd, peer = listening.accept()
        except (BlockingIOError, InterruptedError):  # the queue is empty (another worker took it)
            return False
        except OSError as exc:
            self.accept_failed(listening.listener, exc)  # EMFILE: a pause (pause_accepting)
            return False
        conn = self._new_conn(listening.listener, listening.make(client_fd), peer, listening.step)
        self._serve(conn, progress)
        return True

    def no_room(self) -> None:
        """No room for one more connection (or stopping): the listeners leave the set until
        the main thread sees room again."""
        self._accepting = False
        self._listen(False)

    def serve_new_uwsgi(
        self,
        listener: Listener,
        client: socket.socket,
        peer: PeerAddress,
        buf: bytes,
        progress: ThreadProgress,
    ) -> None:
        """A new connection (counted already) on a plain uwsgi listener whose packet did not
        come whole with it (``buf``: what came): the usual steps take it (:meth:`_step_uwsgi`,
        parked until the rest comes)."""
        conn = self._conn_record(listener, client, peer, self._uwsgi_step)
        conn.checked = True
        conn.buf = buf
        self._serve(conn, progress)

    def _serve(self, conn: _Conn, progress: ThreadProgress) -> None:
        """Take the connection's steps while it has bytes; then park or close it."""
        keep = False
        while True:
            try:
                # accept -> (PROXY header, plain text) -> TLS handshake -> protocol
                keep = conn.step(conn, progress)
            except Exception as exc:
                keep = False
                self.log_connection_error(exc, conn.peer, conn.listener)
            finally:
                progress.end()
            # stopping: a connection accepted before the stop still gets its first request
            if keep and not self.alive and not conn.served and self._first_bytes(conn):
                continue
            break
        if keep:
            try:
                self._park(conn)
            except Exception as exc:  # the set is closed: the worker is stopping
                self.log.debug("Could not park a connection: %s", exc)
                self._parked.pop(conn.fd, None)
                self._close(conn)
        else:
            self._close(conn)
        if self.request_path.nr >= self.max_requests:
            self.tell_max_requests()

    def tell_max_requests(self) -> None:
        """The worker reached ``max_requests``: tell the main thread at once (while it is not
        stopping already)."""
        if self.alive:
            with contextlib.suppress(OSError):
                os.write(self._wakeup_w, b"m")

    def _first_bytes(self, conn: _Conn) -> bool:
        """While stopping: wait (bounded) in this thread for a new connection's request."""
        limit = min(conn.head_deadline - time.monotonic(), float(self.cfg.graceful_timeout))
        if limit <= 0:
            return False
        try:
            readable, _, _ = select.select([conn.sock], [], [], limit)
        except (OSError, ValueError):
            return False
        return bool(readable)

    def _step_proxy(self, conn: _Conn, progress: ThreadProgress) -> bool:
        """Read the PROXY header without waiting (True: park for more); once it is whole, the
        client's address becomes the connection's peer, the bytes after it go to the
        protocol's step, which goes on at once."""
        proxy = self.proxy
        assert proxy is not None
        sock = conn.sock
        peer = conn.peer
        ip = peer[0] if isinstance(peer, tuple) else None
        if not conn.registered and not conn.buf and self.proxy_peer_refused(conn.listener, peer):
            return False
        buf = conn.buf
        try:
            while True:
                try:  # without waiting, and without a mode switch the protocol's step makes
                    data = sock.recv(RECV_SIZE, _DONTWAIT)
                except BlockingIOError:
                    conn.buf = buf
                    return True
                if not data:
                    if buf:
                        raise InvalidProxyHeader("the connection closed inside the PROXY header")
                    return False  # connected and closed: a health check, nothing to say
                buf += data
                header = proxy.parse(buf, ip)
                if header is not NEED_DATA:
                    break
        except InvalidProxyHeader as exc:
            self.proxy_refused(conn.listener, peer, exc.reason)
            return False
        if header is not NO_HEADER:
            conn.peer = header.source or peer
            buf = buf[header.size :]
        if conn.tls is not None:
            conn.buf = buf
            conn.step = self._step_tls
        elif conn.uwsgi:
            conn.buf = buf
            conn.step = self._uwsgi_step
        else:
            conn.buf = b""
            assert conn.parser is not None
            if buf:
                conn.parser.receive_data(buf)
            conn.step = self._http_step
        return conn.step(conn, progress)

    def _step_proxy_before_tls(self, conn: _Conn, progress: ThreadProgress) -> bool:
        """:meth:`_step_proxy` on a TLS listener: the header is read to its last byte and no
        further (each read peeks, then takes only what is header), so the TLS handshake's step
        finds all of its bytes in the socket; it goes on at once."""
        proxy = self.proxy
        assert proxy is not None
        sock = conn.sock
        peer = conn.peer
        ip = peer[0] if isinstance(peer, tuple) else None
        held = conn.buf
        if not conn.registered and not held and self.proxy_peer_refused(conn.listener, peer):
            return False
        try:
            while True:
                try:
                    peeked = sock.recv(RECV_SIZE, _PEEK | _DONTWAIT)
                except BlockingIOError:
                    conn.buf = held
                    return True
                if not peeked:
                    if held:
                        raise InvalidProxyHeader("the connection closed inside the PROXY header")
                    return False  # connected and closed: a health check, nothing to say
                header, take = proxy.parse_peeked(held, peeked, ip)
                if take:
                    held += take_exactly(sock, take)
                if header is not NEED_DATA:
                    break
        except InvalidProxyHeader as exc:
            self.proxy_refused(conn.listener, peer, exc.reason)
            return False
        if header is not NO_HEADER:
            conn.peer = header.source or peer
        conn.buf = b""
        conn.step = self._step_tls
        return self._step_tls(conn, progress)

    def _step_tls(self, conn: _Conn, progress: ThreadProgress) -> bool:
        """The TLS handshake's step (True: park for more); once it is done, the protocol's
        step goes on at once."""
        waiting = self._handshake(conn)
        if waiting is not None:
            return waiting
        conn.step = self._uwsgi_step if conn.uwsgi else self._http_step
        return conn.step(conn, progress)

    def _handshake(self, conn: _Conn) -> bool | None:
        """Carry a TLS handshake on without waiting: None once it is done (serve the
        connection now), True to park it until the client sends more, False when it failed
        (logged: close it). A uwsgi listener's allow-list is checked after it, by the uwsgi
        step (its 403 goes out over TLS)."""
        tls = self.tls
        assert tls is not None
        listener = conn.listener
        sock = conn.sock
        if sock.__class__ is socket.socket:  # the first step: the socket is not wrapped yet
            sock = conn.sock = tls.start(listener, sock)
        try:
            if not tls.step(sock, conn.head_deadline):  # type: ignore[arg-type]
                return True
        except (OSError, ValueError) as exc:
            tls.failed(listener, conn.peer, exc)
            return False
        conn.tls = None
        if tls.own_budget:  # the request head gets a header_timeout of its own, from its park
            conn.head_deadline = 0.0
        return None

    def _step_http(self, conn: _Conn, progress: ThreadProgress) -> bool:
        """Serve the complete requests the connection holds; True to park it for more."""
        sock = conn.sock
        parser = conn.parser
        assert parser is not None
        listener = conn.listener
        sock.settimeout(0.0)
        while True:
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                self.http_invalid(listener, sock, conn.peer, exc)
                return False
            if event is NEED_DATA:
                try:
                    data = sock.recv(RECV_SIZE)
                except BlockingIOError:
                    return True
                if not data and not parser.in_message:
                    return False  # closed between requests (or before the first): no answer
                parser.receive_data(data)
                continue
            if event.__class__ is not HttpRequest:
                continue  # the EndOfMessage of a request served without a body
            req = event
            keep_alive = (
                req.keep_alive
                and self.alive
                and self.keepalive > 0
                and self.request_path.nr + 1 < self.max_requests
            )
            self._begin(conn, progress, req)
            keep = self.request_path.http_request(
                listener, sock, conn.peer, parser, req, progress, keep_alive
            )
            progress.end()
            if not keep:
                return False
            conn.served += 1
            conn.head_deadline = 0.0
            sock.settimeout(0.0)

    def _step_uwsgi(self, conn: _Conn, progress: ThreadProgress) -> bool:
        """Read the uWSGI packet without waiting; serve it once whole. True to park for more."""
        sock = conn.sock
        listener = conn.listener
        peer = conn.peer
        if not conn.checked:
            conn.checked = True
            if peer and self.request_path.uwsgi_forbidden(listener, sock, peer):
                return False
        buf = conn.buf
        try:
            parsed = parse_head(buf, self.uwsgi_max_vars) if buf else None
            while parsed is None:
                try:  # the socket stays blocking: no mode switch (a system call) to read
                    data = sock.recv(RECV_SIZE, _DONTWAIT)
                except BlockingIOError:
                    conn.buf = buf
                    return True
                if not data:
                    if not buf:
                        return False  # connected and closed: a health check, nothing to say
                    raise truncated_head(buf)
                buf += data
                parsed = parse_head(buf, self.uwsgi_max_vars)
        except ProtocolError as exc:
            self.uwsgi_invalid(listener, sock, peer, exc)
            return False
        conn.buf = b""
        head, used = parsed
        # as in the sync worker, the first send and body read do not wait, and one that has to
        # sets a kernel timeout (a Python timeout would poll before every send)
        if isinstance(head, Ping):
            sock.sendall(PONG)
            return False
        self._begin(conn, progress, head)
        self.request_path.uwsgi_request(listener, sock, buf, head, used, progress)
        return False
