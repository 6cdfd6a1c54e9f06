"""Requests on blocking sockets, shared by the sync and gthread workers.

Once a request head is parsed (each worker reads heads its own way), everything else is here:
the environ, the body sources behind ``wsgi.input``, calling the application, the response, the
error responses, the access log, the hooks and draining what the application left unread.

Every function that may wait on the peer takes a *beater*: an object whose ``beat()`` records
progress. The sync worker passes its heartbeat; the gthread worker passes a per-thread record,
so a request that stops moving is told apart from a worker that is merely busy.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from typing import TYPE_CHECKING, Any, Protocol

from ..access_log import log_safe
from ..addresses import AddressMatcher, PeerAddress
from ..config import Hook
from ..listeners import Listener
from ..protocols.errors import MissingChunkedBody, ProtocolError, TruncatedPacket
from ..protocols.events import NEED_DATA, Data
from ..protocols.http import HttpLimits, HttpParser, HttpRequest, error_response
from ..protocols.proxy_protocol import ProxyHeaderReader
from ..protocols.uwsgi import UwsgiParser, UwsgiRequest
from ..socket_waits import PLAIN_SOCKETS, wait_in_kernel
from ..worker_metrics import Recorder
from ..wsgi.body import EMPTY_INPUT, ClientDisconnected, EmptyInput, Input
from ..wsgi.environ import (
    ForwardedForEnvironBuilder,
    HttpEnvironBuilder,
    UwsgiEnvironBuilder,
    base_environ,
)
from ..wsgi.hook_request import HookRequest
from ..wsgi.response import FileWrapper, Response, ResponseError, TlsResponse
from .base import Worker, WorkerAborted

if TYPE_CHECKING:
    from .tls_handshake import Handshakes

__all__ = [
    "DRAIN_LIMIT",
    "RECV_SIZE",
    "Beater",
    "BlockingWorker",
    "error_response",
    "request_line",
    "take_exactly",
]

RECV_SIZE = 65536
"""Bytes asked of each ``recv``."""
DRAIN_LIMIT = 1 << 20
"""Unread request-body bytes read and discarded after a response, at most (so a close does not
reset the connection under the response, or a kept-alive one can be reused); beyond it the
connection is just closed."""

_QUIET_ERRNOS = frozenset(
    (errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN, errno.ESHUTDOWN)
)


class Beater(Protocol):
    """What records progress while a request waits on its peer."""

    def beat(self) -> object:
        """Record progress now (what it returns is not used)."""


_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
_monotonic = time.monotonic


class _HttpBody:
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
            if event.__class__ is Data:
                return event.data
            # EndOfMessage: the bytes of a pipelined next request stay in the parser, unread here
            return b""


class _UwsgiBody:
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
            if event.__class__ is Data:
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
            raise self._stalled(remaining) from None
        except BlockingIOError:
            if self._waits:  # the kernel timeout expired
                raise self._stalled(remaining) from None
            self._waits = True
            wait_in_kernel(conn, self._timeout)
            try:
                data = conn.recv(size)
            except (TimeoutError, BlockingIOError):
                raise self._stalled(remaining) from None
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

    @staticmethod
    def _stalled(remaining: int | None) -> Exception:
        """The error for a wait that timed out."""
        if remaining is None:
            return MissingChunkedBody()
        return ClientDisconnected("timed out reading the request body")


class BlockingWorker(Worker):
    """A worker serving requests on blocking sockets; subclasses read heads and schedule."""

    limits: HttpLimits
    header_timeout: float | None
    io_timeout: float | None
    use_sendfile: bool
    access_log: bool
    pre_request: Hook | None
    post_request: Hook | None
    #: environ builders by listening socket fd, one table per protocol
    http_builders: dict[int, HttpEnvironBuilder]
    uwsgi_builders: dict[int, UwsgiEnvironBuilder]
    uwsgi_allowed: AddressMatcher
    uwsgi_max_vars: int
    #: the PROXY protocol policy (proxy_protocol, proxy_allow_ips); None when it is off
    proxy: ProxyHeaderReader | None
    #: the one request slot of a single-threaded worker; None: each thread's beater has one
    recorder: Recorder | None

    def setup_serving(self, multithread: bool) -> None:
        """Read the settings every request needs; build one environ builder per listener."""
        cfg = self.cfg
        self.limits = HttpLimits(
            cfg.limit_request_line, cfg.limit_request_fields, cfg.limit_request_field_size
        )
        self.header_timeout = cfg.header_timeout or None
        self.io_timeout = float(cfg.timeout) if cfg.timeout > 0 else None
        if cfg.sendfile is None:  # gunicorn's rule: unset means the SENDFILE variable decides
            self.use_sendfile = os.environ.get("SENDFILE", "1").lower() not in ("0", "false", "no")
        else:
            self.use_sendfile = cfg.sendfile
        self.access_log = self.log.access_enabled
        self.pre_request = cfg.pre_request if cfg.hook_is_set("pre_request") else None
        self.post_request = cfg.post_request if cfg.hook_is_set("post_request") else None
        base = base_environ(cfg.workers > 1, multithread, script_name=self.http_root_path())
        trusted = AddressMatcher(cfg.forwarded_allow_ips)
        http_builder = ForwardedForEnvironBuilder if cfg.proxy_headers else HttpEnvironBuilder
        self.http_builders = {}
        self.uwsgi_builders = {}
        for listener in self.listeners:
            sockname = listener.sock.getsockname()
            if listener.protocol == "uwsgi":
                self.uwsgi_builders[listener.sock.fileno()] = UwsgiEnvironBuilder(base, sockname)
            else:
                self.http_builders[listener.sock.fileno()] = http_builder(
                    base,
                    sockname,
                    trusted,
                    cfg.secure_scheme_headers,
                    cfg.forwarder_headers,
                    "http" if listener.tls is None else "https",
                )
        self.uwsgi_allowed = AddressMatcher(cfg.uwsgi_allow_ips)
        self.uwsgi_max_vars = cfg.uwsgi_max_vars_size
        self.proxy = self.proxy_header_reader()
        self.recorder = None if multithread else self.metrics.recorders[0]
        for listener in self.listeners:
            listener.sock.setblocking(False)

    def tls_handshakes(self) -> Handshakes | None:
        """The TLS handshakes of the listeners that serve TLS; None (and :mod:`ssl` never
        loaded) when none does."""
        if all(listener.tls is None for listener in self.listeners):
            return None
        from .tls_handshake import Handshakes

        return Handshakes(self.cfg, self.log, self.header_timeout)

    def stopping(self) -> bool:
        """True once the worker was told to stop (responses then close their connection)."""
        return not self.alive

    # ------------------------------------------------------------------ connection errors

    def log_connection_error(
        self, exc: BaseException, peer: PeerAddress, listener: Listener
    ) -> None:
        """Log what ended a connection (call it while handling ``exc``): quietly for a peer
        that left, with the traceback for anything else."""
        who = peer or listener.name
        if isinstance(exc, ClientDisconnected):
            self.log.debug("Client %s: %s", who, exc)
        elif isinstance(exc, OSError):
            if exc.errno in _QUIET_ERRNOS or isinstance(exc, TimeoutError):
                self.log.debug("Connection from %s ended: %s", who, exc)
            elif _is_tls_error(exc):  # after the handshake: a ragged EOF, a bad record...
                ip = peer[0] if isinstance(peer, tuple) else who
                self.log.info("TLS error on the connection from %s: %s", ip, _tls_reason(exc))
            else:
                self.log.exception("Error on the connection from %s", who)
        else:
            self.log.exception("Error handling a connection from %s", who)

    def send_error(self, conn: socket.socket, status: int, reason: str) -> None:
        """Send a self-closing error response, ignoring a peer that is gone.

        Unread input would make the close reset the connection, and a reset can destroy the
        answer before the peer reads it (nginx then logs ``readv() failed (104: Connection
        reset by peer)``): what already arrived is discarded first, without waiting for more
        (a flood of bad requests must not cost the worker any waiting).
        """
        try:
            conn.settimeout(0.0)  # a socket timeout would make even MSG_DONTWAIT wait
            for _ in range(16):
                if not conn.recv(RECV_SIZE):
                    break
        except OSError:
            pass
        try:
            conn.settimeout(1.0)
            conn.sendall(error_response(status, reason))
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    # ------------------------------------------------------------------ after the head

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
            environ = self.http_builders[listener.sock.fileno()].build(req, peer)
        except ProtocolError as exc:
            self.http_invalid(listener, conn, peer, exc)
            return False
        if req.content_length == 0 and not req.chunked:
            body: Any = EMPTY_INPUT
        else:
            body = Input(_HttpBody(conn, parser, req.expect_continue, beater, self.io_timeout))
        environ["wsgi.input"] = body
        return self.serve(
            conn, environ, body, beater, keep_alive=keep_alive, http10=req.version == "1.0"
        )

    def http_invalid(
        self, listener: Listener, conn: socket.socket, peer: PeerAddress, exc: ProtocolError
    ) -> None:
        """Log and answer a malformed HTTP request."""
        who = peer[0] if isinstance(peer, tuple) else peer or listener.name  # as the asgi worker
        self.log.info("Invalid HTTP request from %s: %s", who, log_safe(exc.reason))
        self.metrics.answered(exc.status, False)
        self.send_error(conn, exc.status, exc.reason)

    def proxy_peer_refused(self, listener: Listener, peer: PeerAddress) -> bool:
        """Whether the PROXY protocol refuses this peer (``proxy_allow_ips``); if so, logged
        (:meth:`proxy_refused`) and the caller closes the connection."""
        assert self.proxy is not None
        why = self.proxy.refused(peer[0] if isinstance(peer, tuple) else None)
        if why is None:
            return False
        self.proxy_refused(listener, peer, why)
        return True

    def proxy_refused(self, listener: Listener, peer: PeerAddress, reason: str) -> None:
        """The one log line of a connection closed at its PROXY header (the caller closes it:
        nothing is answered before the protocol has begun)."""
        who = peer[0] if isinstance(peer, tuple) else listener.name
        self.log.warning(
            "PROXY protocol: closing the connection from %s: %s", who, log_safe(reason)
        )

    def uwsgi_forbidden(self, listener: Listener, conn: socket.socket, peer: PeerAddress) -> bool:
        """Refuse (403) a TCP peer outside ``uwsgi_allow_ips``; True when it was refused.
        UNIX-socket peers ("" or, for a client bound to a name, its path) are always allowed."""
        if peer.__class__ is tuple and peer[0] not in self.uwsgi_allowed:
            self.log.warning("Forbidden uWSGI request from %s", peer[0])
            self.metrics.answered(403, True)
            self.send_error(conn, 403, "")
            return True
        return False

    def uwsgi_invalid(
        self, listener: Listener, conn: socket.socket, peer: PeerAddress, exc: ProtocolError
    ) -> None:
        """Log and answer a malformed uWSGI packet."""
        self.log.warning(
            "Invalid uWSGI header: %s from %s",
            log_safe(exc.reason),
            peer[0] if peer else listener.name,
        )
        self.metrics.answered(exc.status, True)
        self.send_error(conn, exc.status, exc.reason)

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
        environ = self.uwsgi_builders[listener.sock.fileno()].build(head.environ)
        length = head.content_length
        body: Input | EmptyInput
        if length and not head.chunked and len(buf) - used >= length:
            # the whole body came with the vars (nginx writes a small body with them): no parser
            body = Input.whole(buf[used : used + length])
        elif length or head.chunked:
            # the uWSGI router may announce a chunked body it never sends: header_timeout
            timeout = self.header_timeout or self.io_timeout if head.chunked else self.io_timeout
            parser = UwsgiParser.after_head(head, buf[used:])
            body = Input(_UwsgiBody(conn, parser, beater, timeout))
        else:
            body = EMPTY_INPUT
        environ["wsgi.input"] = body
        self.serve(conn, environ, body, beater, uwsgi=True)

    # ------------------------------------------------------------------ the application

    def serve(
        self,
        conn: socket.socket,
        environ: dict[str, Any],
        body: Any,
        beater: Beater,
        *,
        uwsgi: bool = False,
        keep_alive: bool = False,
        http10: bool = False,
    ) -> bool:
        """Call the application and send its response; then log, run hooks, drain.

        ``uwsgi``: to a uWSGI front end; ``keep_alive``: the connection may carry another
        request (``http10``: from an HTTP/1.0 client, which must ask for it).

        Returns True when the response kept the connection open and it can carry another
        request: complete, framed, and the request body read to its end.
        """
        rec = self.recorder
        if rec is not None:
            start = _monotonic()
        else:  # a gthread pool thread: its progress record holds its recorder and the start
            rec = beater.recorder  # type: ignore[attr-defined]
            start = beater.started  # type: ignore[attr-defined]
        method = environ["REQUEST_METHOD"]
        rec.begin(method, environ.get("REQUEST_URI") or environ["PATH_INFO"], start)
        hook_req = None
        if self.pre_request is not None or self.post_request is not None:
            hook_req = HookRequest(environ)
        # a TLS connection's socket is not a plain socket (monoceros.tls.TlsSocket)
        response = Response if conn.__class__ in PLAIN_SOCKETS else TlsResponse
        resp = response(conn, method == "HEAD", uwsgi, beater.beat, self.io_timeout)
        if keep_alive:
            resp.keep_alive = True
            resp.http10 = http10
            resp.body = body
            resp.should_close = self.stopping
        self.nr += 1
        result: Any = None
        failed: Exception | None = None
        assert self.app is not None
        try:
            if self.pre_request is not None:  # its exception is answered like the app's: a 500
                self.pre_request(self, hook_req)
            result = self.app(environ, resp.start_response)
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
                resp.send_file(result, self.use_sendfile)
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
            self._app_error(conn, environ, resp, exc)
        except WorkerAborted:
            self._aborted(conn, environ, resp)
            rec.end(start, resp.status_code or 500, uwsgi)
            raise
        finally:
            close = None if result.__class__ is list else getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    self.log.exception("Error closing the response iterable")
        duration = rec.end(start, resp.status_code or 500, uwsgi)
        if self.access_log:
            self.log.access(environ, resp.status or "500", resp.headers, resp.sent, duration, uwsgi)
        if self.post_request is not None:
            try:
                self.post_request(self, hook_req, environ, resp)
            except Exception:
                self.log.exception("Exception in the post_request hook")
        if body is not EMPTY_INPUT and not body.exhausted and not body.awaiting_continue:
            # a body that broke its framing under the app was answered and logged already
            drained = not isinstance(failed, ProtocolError) and self._drain(conn, body, environ)
        else:
            drained = body is EMPTY_INPUT or body.exhausted
        return resp.keep_alive and drained and not failed and resp.complete

    def _app_error(
        self, conn: socket.socket, environ: dict[str, Any], resp: Response, exc: Exception
    ) -> None:
        where = log_safe(environ.get("REQUEST_URI") or environ.get("PATH_INFO", ""))
        if isinstance(exc, ProtocolError):
            # the body broke its framing while the app read it: the client's fault, not the app's
            self._bad_body(environ, exc)
            if not resp.headers_sent:
                resp.status, resp.status_code = f"{exc.status} Bad Request", exc.status
                resp.headers = []
                self.send_error(conn, exc.status, exc.reason)
            return
        if isinstance(exc, OSError) and _is_tls_error(exc):
            # the TLS connection failed under the app (reading the body): the client's doing
            self.log.info(
                "TLS error on the connection from %s during %s: %s",
                log_safe(environ.get("REMOTE_ADDR") or "a local peer"),
                where,
                _tls_reason(exc),
            )
            if not resp.headers_sent:  # nothing can be sent on it: logged as not answered
                resp.status, resp.status_code = "500 Internal Server Error", 500
            return
        if isinstance(exc, ResponseError):
            self.log.error("Bad response from the application to %s: %s", where, exc)
        else:
            self.log.exception("Error handling request %s", where)
        if not resp.headers_sent:
            resp.status = "500 Internal Server Error"
            resp.status_code = 500
            resp.headers = []
            try:
                conn.sendall(error_response(500))
            except OSError:
                pass
        # otherwise the response is cut short: closing the connection tells the client

    def _aborted(self, conn: socket.socket, environ: dict[str, Any], resp: Response) -> None:
        """The master aborted the worker (timeout) during this request: log the request with
        the stack it was stuck in (call it while handling the abort), and answer 500 when no
        response had started; the caller closes the connection and the worker exits."""
        self.log.exception("Error handling request %s", request_line(environ))
        if resp.headers_sent:
            return  # the response is cut short: closing the connection tells the client
        resp.status = "500 Internal Server Error"
        resp.status_code = 500
        resp.headers = []
        self.send_error(conn, 500, "")

    def _bad_body(self, environ: dict[str, Any], exc: ProtocolError) -> None:
        """The one log line of a request body that broke its framing (the asgi worker's too)."""
        self.log.info(
            "Invalid request body from %s for %s: %s",
            log_safe(environ.get("REMOTE_ADDR") or "a local peer"),  # a uwsgi var: the peer's
            log_safe(environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")),
            log_safe(exc.reason),
        )

    def _drain(self, conn: socket.socket, body: Any, environ: dict[str, Any]) -> bool:
        """Read what the app left of the body; True when it was read to its end."""
        try:
            conn.settimeout(1.0)
            return bool(body.drain(DRAIN_LIMIT))
        except OSError:
            return False
        except ProtocolError as exc:  # the response is out: the log line is all that is left
            if not isinstance(exc, TruncatedPacket):  # a front end that left: not worth a line
                self._bad_body(environ, exc)
            return False


def _is_tls_error(exc: OSError) -> bool:
    """Whether ``exc`` is an ``ssl.SSLError`` (:mod:`ssl` is loaded once TLS is served)."""
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(exc, ssl.SSLError)


def _tls_reason(exc: OSError) -> str:
    """A TLS error after the handshake, in a few words."""
    if exc.__class__.__name__ == "SSLEOFError":
        return "closed without TLS close_notify (suppress_ragged_eofs is off)"
    reason = getattr(exc, "reason", None)
    return str(reason).replace("_", " ").lower() if reason else " ".join(str(exc).split())


def take_exactly(sock: socket.socket, size: int) -> bytes:
    """Take ``size`` bytes that a peek showed are in the socket (the PROXY header before a TLS
    handshake): one ``recv``, which cannot wait or come short for bytes already there."""
    data = sock.recv(size)
    if len(data) != size:
        raise ConnectionError(f"read {len(data)} of the {size} PROXY header bytes peeked")
    return data


def request_line(environ: dict[str, Any]) -> str:
    """``METHOD /path?query`` of a request, as the client sent it, escaped for the error log."""
    uri = environ.get("REQUEST_URI")
    if not uri:
        query = environ.get("QUERY_STRING")
        uri = environ.get("PATH_INFO", "") + (f"?{query}" if query else "")
    return log_safe(f"{environ.get('REQUEST_METHOD', '?')} {uri}")


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise ResponseError(
        f"the application's response iterable yielded {type(data).__name__}, expected bytes"
    )


def _checked(result: Any) -> Any:
    for data in result:
        yield data if data.__class__ is bytes else _as_bytes(data)
