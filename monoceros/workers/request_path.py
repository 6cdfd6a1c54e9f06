"""The path every request of the blocking workers takes once it is accepted, compiled.

:class:`RequestPath` holds what each request needs (the application, the environ builders, the
timeouts, the hooks, the request slot) and runs the steps every request takes: a uwsgi packet
read and parsed, the environ built, the body source behind ``wsgi.input``, the application
called, its response sent, then the count, the access log and the hooks. The worker classes
stay plain Python (users subclass them, hooks get them): the path reads their settings once,
when serving starts, and calls back into the worker only off the usual path (an error to log or
answer, a body left unread, a wait for the rest of a packet). setup.py compiles this module
with the rest of the core; with ``MONOCEROS_PURE=1`` the same source runs interpreted.

Every function that may wait on the peer takes a *beater*: an object whose ``beat()`` records
progress. The sync worker passes its heartbeat; the gthread worker passes a per-thread record,
so a request that stops moving is told apart from a worker that is merely busy.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

from ..access_log import log_safe
from ..addresses import AddressMatcher, PeerAddress
from ..listeners import connection_maker
from ..protocols.errors import MissingChunkedBody, ProtocolError
from ..protocols.events import NEED_DATA, Data
from ..protocols.http import HttpParser, HttpRequest
from ..protocols.uwsgi import PONG, Ping, UwsgiParser, UwsgiRequest, parse_head, truncated_head
from ..socket_waits import KERNEL_TIMEOUTS, PLAIN_SOCKETS, wait_in_kernel
from ..worker_metrics import Recorder, WorkerMetrics
from ..wsgi.body import EMPTY_INPUT, ClientDisconnected, EmptyInput, Input
from ..wsgi.environ import HttpEnvironBuilder, UwsgiEnvironBuilder
from ..wsgi.hook_request import HookRequest
from ..wsgi.response import FileWrapper, Response, ResponseError, TlsResponse
from .base import WorkerAborted

if TYPE_CHECKING:
    from ..heartbeat import Heartbeat
    from ..listeners import Listener
    from ..logs import Logger
    from .blocking import BlockingWorker
    from .gthread import ThreadWorker

__all__ = [
    "RECV_SIZE",
    "Beater",
    "ConnectionCount",
    "Listening",
    "RequestPath",
    "ThreadProgress",
    "recv_head",
]

RECV_SIZE: Final = 65536
"""Bytes asked of each ``recv``."""

_DONTWAIT: Final = getattr(socket, "MSG_DONTWAIT", 0)
_monotonic: Final = time.monotonic


Handle = Callable[["Listener", socket.socket, PeerAddress], None]
"""What serves one accepted connection (and closes it)."""


class Listening(Protocol):
    """A listener as the gthread worker's threads accept from it."""

    listener: Listener
    #: the raw accept: the new connection's descriptor and its peer
    accept: Callable[[], tuple[int, PeerAddress]]
    #: the socket object of a new connection's descriptor
    make: Callable[[int], socket.socket]


class ConnectionCount:
    """The gthread worker's open connections, and how many of them have not begun their first
    request yet (``fresh``: they count towards ``max_requests`` already). The pool threads and
    the main thread change them, under one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.open = 0
        self.fresh = 0

    def opened(self) -> None:
        """A connection was accepted."""
        with self._lock:
            self.open += 1
            self.fresh += 1

    def began(self) -> None:
        """A connection's first request began."""
        with self._lock:
            self.fresh -= 1

    def close(self, sock: socket.socket, fresh: bool) -> None:
        """Close a connection's socket and count it closed (``fresh``: before its first
        request began)."""
        try:
            sock.close()
        finally:
            with self._lock:
                self.open -= 1
                if fresh:
                    self.fresh -= 1

    def admits(self, max_connections: int, served: int, max_requests: int) -> bool:
        """Whether one more connection may be accepted: fewer than ``max_connections`` are
        open, and ``served`` plus the fresh connections are fewer than ``max_requests``."""
        return self.open < max_connections and served + self.fresh < max_requests


class Beater(Protocol):
    """What records progress while a request waits on its peer."""

    def beat(self) -> object:
        """Record progress now (what it returns is not used)."""


class RequestPath:
    """One worker's request path: built by :meth:`BlockingWorker.setup_serving`, used by every
    request of its sync loop or gthread pool."""

    def __init__(self, worker: BlockingWorker, nr: int) -> None:
        assert worker.app is not None
        self._worker = worker
        self._log: Logger = worker.log
        self._app: Callable[..., Any] = worker.app
        #: requests served so far (``worker.nr`` reads and writes this)
        self.nr = nr
        self._recorder: Recorder | None = worker.recorder
        self._io_timeout = worker.io_timeout
        self._header_timeout = worker.header_timeout
        self._use_sendfile = worker.use_sendfile
        self._access_log = worker.access_log
        self._pre_request = worker.pre_request
        self._post_request = worker.post_request
        self._hooks = worker.pre_request is not None or worker.post_request is not None
        self._http_builders: dict[int, HttpEnvironBuilder] = worker.http_builders
        self._uwsgi_builders: dict[int, UwsgiEnvironBuilder] = worker.uwsgi_builders
        self._uwsgi_allowed: AddressMatcher = worker.uwsgi_allowed
        self._uwsgi_max_vars = worker.uwsgi_max_vars
        self._heartbeat: Heartbeat = worker.heartbeat

    # ------------------------------------------------------------------ uwsgi

    def uwsgi_forbidden(self, listener: Listener, conn: socket.socket, peer: PeerAddress) -> bool:
        """Refuse (403) a TCP peer outside ``uwsgi_allow_ips``; True when it was refused.
        UNIX-socket peers ("" or, for a client bound to a name, its path) are always allowed."""
        if peer.__class__ is tuple and peer[0] not in self._uwsgi_allowed:
            self._worker.uwsgi_refused(conn, peer)
            return True
        return False

    def uwsgi_connection(
        self,
        listener: Listener,
        conn: socket.socket,
        peer: PeerAddress,
        first: bytes | None,
        deadline: float,
    ) -> None:
        """Serve the one request of a uwsgi connection (the sync worker's; the caller closes it).

        ``first``: bytes read already (after a PROXY header), None: nothing read yet; the first
        read does not wait. ``deadline``: of the packet, 0.0 starts ``header_timeout`` at the
        first wait."""
        if peer and self.uwsgi_forbidden(listener, conn, peer):
            return
        if first is None:
            try:
                buf = conn.recv(RECV_SIZE, _DONTWAIT)
            except BlockingIOError:
                buf = b""
        else:
            buf = first
        max_vars = self._uwsgi_max_vars
        try:
            while True:
                if buf:
                    parsed = parse_head(buf, max_vars)
                    if parsed is not None:
                        break
                data, deadline = recv_head(conn, self._header_timeout, deadline, "uWSGI packet")
                if not data:
                    if not buf:
                        return  # connected and closed: a health check, nothing to say
                    raise truncated_head(buf)
                buf += data
        except ProtocolError as exc:
            self._worker.uwsgi_invalid(listener, conn, peer, exc)
            return
        if deadline and not KERNEL_TIMEOUTS:
            conn.settimeout(None)  # the head deadline is over; body waits get io_timeout
        head, used = parsed
        if isinstance(head, Ping):
            conn.sendall(PONG)
            return
        self.uwsgi_request(listener, conn, buf, head, used, self._heartbeat)

    def accept_loop(self, listener: Listener, handle: Handle | None, wait: float) -> None:
        """The sync worker's loop on its one listener, made blocking with an accept timeout of
        ``wait`` seconds by the caller (:meth:`SyncWorker._serve_one_listener`): each connection
        is served by ``handle`` (None: :meth:`serve_uwsgi`), the heartbeat beats after each
        and on each timeout, the master is looked for at most every ``wait`` seconds. Returns
        when the worker stops (``alive`` false) or its master is gone."""
        worker = self._worker
        heartbeat = self._heartbeat
        beats = heartbeat.beat_slot  # a beat after each request: one store, not a call
        max_requests: int = worker.max_requests
        # the raw accept, and the socket object made by connection_maker (plain ints, a bare
        # C socket for a plain connection): no enum and no Python __init__ per connection
        accept = listener.sock._accept  # type: ignore[attr-defined]  # CPython, all versions
        make = connection_maker(listener)
        # the master is looked for at most every `wait` seconds, busy or idle, by the clock the
        # heartbeat reads anyway: a compare per request (an orphan under steady traffic served on)
        next_check = _monotonic() + wait
        while worker.alive:
            try:
                fd, peer = accept()
            except (BlockingIOError, InterruptedError):  # the timeout: nobody connected
                heartbeat.beat()
                if worker.reopen_logs:
                    worker.reopen_log_files()
                if worker.parent_changed():
                    return
                continue
            except OSError as exc:
                worker.accept_failed(listener, exc)
                continue
            if handle is None:
                self.serve_uwsgi(listener, make(fd), peer)
            else:
                handle(listener, make(fd), peer)
            now = _monotonic()
            beats[0] = now
            if now >= next_check:
                next_check = now + wait
                if worker.parent_changed():
                    return
            if worker.reopen_logs:  # a USR1 that came during the request
                worker.reopen_log_files()
            if self.nr >= max_requests:  # the check's own test first: no call per request
                worker.check_max_requests()

    def serve_uwsgi(self, listener: Listener, conn: socket.socket, peer: PeerAddress) -> None:
        """A connection accepted on a plain uwsgi listener (no PROXY header, no TLS): its
        request served, what ended it logged, and the connection closed."""
        try:
            self.uwsgi_connection(listener, conn, peer, None, 0.0)
        except Exception as exc:
            self._worker.log_connection_error(exc, peer, listener)
        finally:
            conn.close()

    def uwsgi_accept_run(
        self, listening: Listening, progress: ThreadProgress, count: ConnectionCount, most: int
    ) -> None:
        """The gthread leader's accepts on a plain uwsgi listener that is ready: up to ``most``
        connections straight from its queue (no poll between them), each served by this thread
        (:meth:`uwsgi_at_once`) and closed. Ends early when the queue is empty, on an accept
        error, when the worker stops, when it has no room (it takes its listeners out of the
        poller) and when the lead was handed over. A packet not whole yet is the worker's to
        park (:meth:`ThreadWorker.serve_new_uwsgi`)."""
        worker = cast("ThreadWorker", self._worker)
        listener = listening.listener
        accept = listening.accept
        make = listening.make
        max_connections: int = worker.max_connections
        max_requests: int = worker.max_requests
        for _ in range(most):
            if not worker.alive:
                return
            if not count.admits(max_connections, self.nr, max_requests):
                worker.no_room()
                return
            try:
                fd, peer = accept()
            except (BlockingIOError, InterruptedError):  # empty (another worker took it)
                return
            except OSError as exc:
                worker.accept_failed(listener, exc)  # EMFILE: a pause (pause_accepting)
                return
            client = make(fd)
            count.opened()
            rest = self.uwsgi_at_once(listener, client, peer, progress)
            if rest is None:  # served (or refused): closed, and counted as fresh until then,
                # which keeps max_requests on the safe side while it is served (one lock)
                count.close(client, True)
                if self.nr >= max_requests:
                    worker.tell_max_requests()
            else:
                worker.serve_new_uwsgi(listener, client, peer, rest, progress)
            if progress.deposed:
                return
            progress.leading_since = _monotonic()

    def uwsgi_at_once(
        self, listener: Listener, sock: socket.socket, peer: PeerAddress, progress: ThreadProgress
    ) -> bytes | None:
        """A gthread worker's new connection on a plain uwsgi listener. nginx writes the packet
        as it connects, so it is whole at the first read as a rule: served then and there by
        the thread that accepted it (None; also when it is refused or a health check: the
        caller closes it). A packet still on its way: the bytes read so far (b"" for none), for
        the caller to park the connection until the rest comes. What ended it is logged."""
        try:
            if peer and self.uwsgi_forbidden(listener, sock, peer):
                return None
            try:
                buf = sock.recv(RECV_SIZE, _DONTWAIT)
                if not buf:
                    return None  # connected and closed: a health check, nothing to say
                parsed = parse_head(buf, self._uwsgi_max_vars)
            except BlockingIOError:
                return b""
            except ProtocolError as exc:
                self._worker.uwsgi_invalid(listener, sock, peer, exc)
                return None
            if parsed is None:
                return buf
            head, used = parsed
            if isinstance(head, Ping):
                sock.sendall(PONG)
                return None
            progress.begin(head, peer)
            self.uwsgi_request(listener, sock, buf, head, used, progress)
        except Exception as exc:
            self._worker.log_connection_error(exc, peer, listener)
        finally:
            progress.end()
        return None

    def uwsgi_request(
        self,
        listener: Listener,
        conn: socket.socket,
        buf: bytes,
        head: UwsgiRequest,
        used: int,
        beater: Beater,
    ) -> None:
        """Serve a parsed uWSGI request whose packet (and maybe some body) is in ``buf``."""
        environ = self._uwsgi_builders[listener.sock.fileno()].build(head.environ)
        length = head.content_length
        body: Input | EmptyInput
        if length and not head.chunked and len(buf) - used >= length:
            # the whole body came with the vars (nginx writes a small body with them): no parser
            body = Input.whole(buf[used : used + length])
        elif length or head.chunked:
            # the uWSGI router may announce a chunked body it never sends: header_timeout
            timeout = self._header_timeout or self._io_timeout if head.chunked else self._io_timeout
            parser = UwsgiParser.after_head(head, buf[used:])
            body = Input(UwsgiBody(conn, parser, beater, timeout))
        else:
            body = EMPTY_INPUT
        environ["wsgi.input"] = body
        self.serve(conn, environ, body, beater, True, False, False)

    # ------------------------------------------------------------------ HTTP

    def http_request(
        self,
        listener: Listener,
        conn: socket.socket,
        peer: PeerAddress,
        parser: HttpParser,
        req: HttpRequest,
        beater: Beater,
        keep_alive: bool,
    ) -> bool:
        """Serve a parsed HTTP request; True when the connection may carry another one."""
        try:
            environ = self._http_builders[listener.sock.fileno()].build(req, peer)
        except ProtocolError as exc:
            self._worker.http_invalid(listener, conn, peer, exc)
            return False
        body: Input | EmptyInput
        if req.content_length == 0 and not req.chunked:
            body = EMPTY_INPUT
        else:
            body = Input(HttpBody(conn, parser, req.expect_continue, beater, self._io_timeout))
        environ["wsgi.input"] = body
        return self.serve(conn, environ, body, beater, False, keep_alive, req.version == "1.0")

    # ------------------------------------------------------------------ the application

    def serve(
        self,
        conn: socket.socket,
        environ: dict[str, Any],
        body: Input | EmptyInput,
        beater: Beater,
        uwsgi: bool,
        keep_alive: bool,
        http10: bool,
    ) -> bool:
        """Call the application and send its response; then log, run hooks, drain.

        ``uwsgi``: to a uWSGI front end; ``keep_alive``: the connection may carry another
        request (``http10``: from an HTTP/1.0 client, which must ask for it).

        Returns True when the response kept the connection open and it can carry another
        request: complete, framed, and the request body read to its end.
        """
        rec = self._recorder
        start: float
        if rec is not None:
            start = _monotonic()
        else:  # a gthread pool thread: its progress record holds its recorder and the start
            progress: Any = beater
            rec = progress.recorder
            start = progress.started
        assert rec is not None
        method = environ["REQUEST_METHOD"]
        rec.begin(method, environ.get("REQUEST_URI") or environ["PATH_INFO"], start)
        worker = self._worker
        hook_req = HookRequest(environ) if self._hooks else None
        # a TLS connection's socket is not a plain socket (monoceros.tls.TlsSocket)
        resp: Response
        if conn.__class__ in PLAIN_SOCKETS:
            resp = Response(conn, method == "HEAD", uwsgi, beater.beat, self._io_timeout)
        else:
            resp = TlsResponse(conn, method == "HEAD", uwsgi, beater.beat, self._io_timeout)
        if keep_alive:
            resp.keep_alive = True
            resp.http10 = http10
            resp.body = body
            resp.should_close = worker.stopping
        self.nr += 1
        result: Any = None
        failed: Exception | None = None
        try:
            if self._pre_request is not None:  # its exception is answered like the app's: a 500
                self._pre_request(worker, hook_req)
            result = self._app(environ, resp.start_response)
            if result.__class__ is list and len(result) == 1:
                data = result[0]
                if data.__class__ is not bytes:
                    data = _as_bytes(data)
                if not keep_alive and (body is EMPTY_INPUT or body.exhausted):
                    # the last bytes of the connection (nothing left to read or drain): they
                    # leave with the FIN, and the close comes before logging and hooks
                    resp.write_single(data, True)
                    conn.close()
                else:
                    resp.write_single(data)
            elif isinstance(result, FileWrapper):
                resp.send_file(result, self._use_sendfile)
            else:
                resp.send_iterable(_checked(result))
        except (ClientDisconnected, ConnectionError, TimeoutError):
            if resp.headers_sent:  # a response cut short by the peer: it was sent all the same
                rec.end(start, resp.status_code, uwsgi)
            else:
                rec.abandon()
            raise
        except Exception as exc:
            failed = exc
            worker.app_failed(conn, environ, resp, exc)
        except WorkerAborted:
            worker.aborted_request(conn, environ, resp)
            rec.end(start, resp.status_code or 500, uwsgi)
            raise
        finally:
            if result is not None and result.__class__ is not list:
                close = getattr(result, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception:
                        self._log.exception("Error closing the response iterable")
        duration = rec.end(start, resp.status_code or 500, uwsgi)
        if self._access_log:
            self._log.access(
                environ, resp.status or "500", resp.headers, resp.sent, duration, uwsgi
            )
        if self._post_request is not None:
            try:
                self._post_request(worker, hook_req, environ, resp)
            except Exception:
                self._log.exception("Exception in the post_request hook")
        if body is EMPTY_INPUT or body.exhausted:
            drained = True
        elif body.awaiting_continue:
            drained = False
        else:
            # a body that broke its framing under the app was answered and logged already
            broke = isinstance(failed, ProtocolError)
            drained = not broke and worker.drain_body(conn, body, environ)
        return resp.keep_alive and drained and failed is None and resp.complete


def recv_head(
    conn: socket.socket, timeout: float | None, deadline: float, what: str
) -> tuple[bytes, float]:
    """A waiting ``recv`` of head bytes, bounded by what is left of ``timeout`` (header_timeout).

    Returns the bytes and the deadline (set on the first wait). The kernel does the timing
    (one ``setsockopt``, no ``poll``); without a header_timeout the wait is unbounded, which
    also clears the accept timeout the socket inherited from its listener.
    """
    if timeout:
        now = _monotonic()
        if not deadline:
            deadline = now + timeout
        remaining = deadline - now
        if remaining <= 0:
            raise ClientDisconnected(f"no complete {what} within header_timeout ({timeout:g}s)")
        wait_in_kernel(conn, remaining)
    elif not deadline:
        wait_in_kernel(conn, None)
        deadline = 1.0
    try:
        return conn.recv(RECV_SIZE), deadline
    except (TimeoutError, BlockingIOError):
        raise ClientDisconnected(
            f"no complete {what} within header_timeout ({timeout or 0:g}s)"
        ) from None


class ThreadProgress:
    """What one pool thread of the gthread worker is serving, and when that request last moved
    (0.0: idle): the beater of its requests, read by the main thread for stuck requests."""

    __slots__ = (
        "deposed",
        "leading_since",
        "peer",
        "recorder",
        "reported",
        "request",
        "since",
        "started",
        "thread",
    )

    def __init__(self, recorder: Recorder | None = None) -> None:
        #: this thread's request slot in the worker's counting block (a private one if none)
        self.recorder = recorder or WorkerMetrics(1, threaded=True).recorders[0]
        self.thread = threading.get_ident()
        self.since = 0.0
        self.started = 0.0
        self.request: HttpRequest | UwsgiRequest | None = None
        self.peer: PeerAddress | None = None
        #: ``started`` of the last request logged as stuck (each is logged once): kept by the
        #: main thread, so serving a request stores nothing more
        self.reported = 0.0
        #: when this thread, as the leader, began serving what it took (monotonic)
        self.leading_since = 0.0
        #: the main thread gave the lead to another thread while this one served
        self.deposed = False

    def begin(self, request: HttpRequest | UwsgiRequest, peer: PeerAddress) -> None:
        """A request starts being served."""
        self.request = request
        self.peer = peer
        self.started = self.since = _monotonic()

    def beat(self) -> None:
        """The request in flight made progress."""
        self.since = _monotonic()

    def end(self) -> None:
        """The request is done."""
        self.since = 0.0
        self.request = None

    def describe(self) -> str:
        """The request line in flight and its peer, for the timeout report."""
        req = self.request
        if isinstance(req, HttpRequest):
            line = f"{req.method} {req.target.decode('latin-1')} HTTP/{req.version}"
        elif isinstance(req, UwsgiRequest):
            env = req.environ
            uri = env.get("REQUEST_URI") or env.get("PATH_INFO", "")
            line = f"{env.get('REQUEST_METHOD', '?')} {uri} {env.get('SERVER_PROTOCOL', '')}"
        else:
            line = "?"
        peer = self.peer[0] if isinstance(self.peer, tuple) else "a local peer"
        return f"{log_safe(line.rstrip())} from {peer}"


class HttpBody:
    """Pull function over an HTTP parser: the next de-chunked body piece, b"" at the end."""

    __slots__ = ("_conn", "_continue", "_heartbeat", "_parser", "_timeout", "_waits")

    def __init__(
        self,
        conn: socket.socket,
        parser: HttpParser,
        send_continue: bool,
        heartbeat: Beater,
        timeout: float | None,
    ) -> None:
        self._conn = conn
        self._parser = parser
        self._continue = send_continue
        self._heartbeat = heartbeat
        self._timeout = timeout
        self._waits = False

    @property
    def awaiting_continue(self) -> bool:
        """True while the client waits for ``100 Continue`` and has sent no body yet."""
        return self._continue

    @property
    def finished(self) -> bool:
        """True once every piece of the body was returned (only its end is left to read)."""
        return self._parser.at_message_end

    def __call__(self) -> bytes:
        parser = self._parser
        while True:
            event = parser.next_event()
            if event is NEED_DATA:
                if not self._waits:
                    self._waits = True
                    wait_in_kernel(self._conn, self._timeout)
                if self._continue:
                    self._continue = False
                    self._conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                try:
                    data = self._conn.recv(RECV_SIZE)
                except (TimeoutError, BlockingIOError):
                    raise ClientDisconnected("timed out reading the request body") from None
                if not data:
                    raise ClientDisconnected("client closed the connection inside the body")
                self._heartbeat.beat()
                parser.receive_data(data)
                continue
            if isinstance(event, Data):
                return event.data
            # EndOfMessage: the bytes of a pipelined next request stay in the parser, unread here
            return b""


class UwsgiBody:
    """Pull function over the body events of a :class:`UwsgiParser` continued after the head.

    The first read does not wait; waits are bounded by ``timeout`` in the kernel. A body cut
    short is the front end leaving, or, chunk-framed, the parser's :class:`TruncatedPacket`.
    """

    __slots__ = ("_conn", "_heartbeat", "_parser", "_timeout", "_waits")

    def __init__(
        self, conn: socket.socket, parser: UwsgiParser, heartbeat: Beater, timeout: float | None
    ) -> None:
        self._conn = conn
        self._parser = parser
        self._heartbeat = heartbeat
        self._timeout = timeout
        self._waits = False

    @property
    def finished(self) -> bool:
        """True once every body byte was returned."""
        return self._parser.body_remaining == 0

    def __call__(self) -> bytes:
        parser = self._parser
        while True:
            event = parser.next_event()
            if isinstance(event, Data):
                return event.data
            if event is not NEED_DATA:
                return b""  # EndOfMessage
            parser.receive_data(self._recv(parser.body_remaining))

    def _recv(self, remaining: int | None) -> bytes:
        """The next bytes from the socket (at most the rest of a CONTENT_LENGTH body)."""
        conn = self._conn
        size = remaining if remaining is not None and remaining < RECV_SIZE else RECV_SIZE
        try:
            data = conn.recv(size, 0 if self._waits else _DONTWAIT)
        except TimeoutError:  # a Python-level timeout the socket already had
            raise _stalled(remaining) from None
        except BlockingIOError:
            if self._waits:  # the kernel timeout expired
                raise _stalled(remaining) from None
            self._waits = True
            wait_in_kernel(conn, self._timeout)
            try:
                data = conn.recv(size)
            except (TimeoutError, BlockingIOError):
                raise _stalled(remaining) from None
        if data:
            self._heartbeat.beat()
        elif remaining:
            head = self._parser.head
            assert isinstance(head, UwsgiRequest)
            raise ClientDisconnected(
                f"front end closed the connection after {head.content_length - remaining} of "
                f"{head.content_length} body bytes"
            )
        return data  # b"" inside a chunked body: the parser reports the truncation


def _stalled(remaining: int | None) -> Exception:
    """The error for a body wait that timed out."""
    if remaining is None:
        return MissingChunkedBody()
    return ClientDisconnected("timed out reading the request body")


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise ResponseError(
        f"the application's response iterable yielded {type(data).__name__}, expected bytes"
    )


def _checked(result: Any) -> Iterator[bytes]:
    for data in result:
        yield data if data.__class__ is bytes else _as_bytes(data)
