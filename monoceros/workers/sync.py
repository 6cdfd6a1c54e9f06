"""The sync worker: one connection at a time on blocking sockets, closed after each response.

The cycle a front end pays for — accept, read, parse, call, write, close — is kept short: the
listeners are non-blocking and polled (with ``EPOLLEXCLUSIVE`` on Linux, so one idle worker
wakes per connection, not all of them); the first read does not wait; the head and a small body
leave in one send; nothing below the active log level is formatted.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import time
from typing import Any

from ..addresses import AddressMatcher
from ..protocols.errors import InvalidUWSGIHeader, ProtocolError
from ..protocols.events import NEED_DATA, Data
from ..protocols.http import HttpLimits, HttpParser
from ..protocols.uwsgi import PONG, Ping, UwsgiParser, parse_head
from ..wsgi.body import EMPTY_INPUT, ClientDisconnected, Input
from ..wsgi.environ import HttpEnvironBuilder, UwsgiEnvironBuilder, base_environ
from ..wsgi.hook_request import HookRequest
from ..wsgi.response import FileWrapper, Response, ResponseError
from .base import Worker

__all__ = ["SyncWorker"]

_RECV = 65536
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
_QUIET_ERRNOS = frozenset(
    (errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN, errno.ESHUTDOWN)
)
_ACCEPT_RETRY = frozenset((errno.ECONNABORTED, errno.EPROTO, errno.EINTR))
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
}
#: at most this many unread request-body bytes are drained before closing (so the close does
#: not reset the connection under the response); beyond it the connection is just closed
_DRAIN_LIMIT = 1 << 20


def error_response(status: int, reason_text: str = "") -> bytes:
    """A complete, self-closing HTTP/1.1 error response."""
    phrase = _REASONS.get(status, "Error")
    body = f"{phrase}\n{reason_text}\n" if reason_text else f"{phrase}\n"
    data = body.encode("latin-1", "replace")
    return (
        f"HTTP/1.1 {status} {phrase}\r\nConnection: close\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode("latin-1") + data


class _HttpBody:
    """Pull function over an HTTP parser: the next de-chunked body piece, b"" at the end."""

    __slots__ = ("_conn", "_continue", "_heartbeat", "_parser")

    def __init__(self, conn: socket.socket, parser: HttpParser, send_continue: bool,
                 heartbeat: Any) -> None:
        self._conn = conn
        self._parser = parser
        self._continue = send_continue
        self._heartbeat = heartbeat

    @property
    def awaiting_continue(self) -> bool:
        """True while the client waits for ``100 Continue`` and has sent no body yet."""
        return self._continue

    def __call__(self) -> bytes:
        parser = self._parser
        while True:
            event = parser.next_event()
            if event is NEED_DATA:
                if self._continue:
                    self._continue = False
                    self._conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                try:
                    data = self._conn.recv(_RECV)
                except TimeoutError:
                    raise ClientDisconnected("timed out reading the request body") from None
                if not data:
                    raise ClientDisconnected("client closed the connection inside the body")
                self._heartbeat.beat()
                parser.receive_data(data)
                continue
            if event.__class__ is Data:
                return event.data
            return b""  # EndOfMessage (a pipelined next request is never read here)


class _UwsgiBody:
    """Pull function over a CONTENT_LENGTH-framed uWSGI body (the bytes after the vars)."""

    __slots__ = ("_conn", "_heartbeat", "_length", "_pending", "_remaining")

    def __init__(self, conn: socket.socket, buffered: bytes, length: int, heartbeat: Any) -> None:
        if len(buffered) > length:
            buffered = buffered[:length]  # one request per connection: the rest is not ours
        self._conn = conn
        self._pending = buffered
        self._length = length
        self._remaining = length - len(buffered)
        self._heartbeat = heartbeat

    def __call__(self) -> bytes:
        if self._pending:
            data = self._pending
            self._pending = b""
            return data
        remaining = self._remaining
        if remaining <= 0:
            return b""
        try:
            data = self._conn.recv(remaining if remaining < _RECV else _RECV)
        except TimeoutError:
            raise ClientDisconnected("timed out reading the request body") from None
        if not data:
            raise ClientDisconnected(
                f"front end closed the connection after {self._length - remaining} of "
                f"{self._length} body bytes"
            )
        self._remaining = remaining - len(data)
        self._heartbeat.beat()
        return data


class _UwsgiChunkedBody:
    """Pull function over a chunk-framed uWSGI body (the uWSGI router's --http-chunked-input)."""

    __slots__ = ("_conn", "_heartbeat", "_parser")

    def __init__(self, conn: socket.socket, parser: UwsgiParser, heartbeat: Any) -> None:
        self._conn = conn
        self._parser = parser
        self._heartbeat = heartbeat

    def __call__(self) -> bytes:
        parser = self._parser
        while True:
            event = parser.next_event()
            if event is NEED_DATA:
                try:
                    data = self._conn.recv(_RECV)
                except TimeoutError:
                    raise InvalidUWSGIHeader(
                        "the vars announce a chunked body (HTTP_TRANSFER_ENCODING, no "
                        "CONTENT_LENGTH) but no chunk arrived in time; the uWSGI router forwards "
                        "chunked bodies only with --http-chunked-input"
                    ) from None
                parser.receive_data(data)  # b"" = EOF: the parser reports the truncation
                self._heartbeat.beat()
                continue
            if event.__class__ is Data:
                return event.data
            return b""


class SyncWorker(Worker):
    """Serve one connection at a time; every response closes its connection."""

    def run(self) -> None:
        """Accept and serve until told to stop."""
        cfg = self.cfg
        self.limits = HttpLimits(
            cfg.limit_request_line, cfg.limit_request_fields, cfg.limit_request_field_size
        )
        self.header_timeout: float | None = cfg.header_timeout or None
        self.io_timeout: float | None = float(cfg.timeout) if cfg.timeout > 0 else None
        if cfg.sendfile is None:  # gunicorn's rule: unset means the SENDFILE variable decides
            self.use_sendfile = os.environ.get("SENDFILE", "1").lower() not in ("0", "false", "no")
        else:
            self.use_sendfile = cfg.sendfile
        self.access_log = self.log.access_enabled
        self.pre_request = cfg.pre_request if cfg.hook_is_set("pre_request") else None
        self.post_request = cfg.post_request if cfg.hook_is_set("post_request") else None
        multiprocess = cfg.workers > 1
        base = base_environ(multiprocess, False)
        trusted = AddressMatcher(cfg.forwarded_allow_ips)
        self.builders: dict[int, Any] = {}
        for listener in self.listeners:
            sockname = listener.sock.getsockname()
            if listener.protocol == "uwsgi":
                self.builders[listener.sock.fileno()] = UwsgiEnvironBuilder(base, sockname)
            else:
                self.builders[listener.sock.fileno()] = HttpEnvironBuilder(
                    base, sockname, trusted, cfg.secure_scheme_headers
                )
        self.uwsgi_allowed = AddressMatcher(cfg.uwsgi_allow_ips)
        self.uwsgi_max_vars = cfg.uwsgi_max_vars_size
        for listener in self.listeners:
            listener.sock.setblocking(False)
        self._serve_forever()

    # ------------------------------------------------------------------ accept loop

    def _make_poller(self) -> Any:
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
        heartbeat = self.heartbeat
        timeout = self.cfg.timeout
        wait = min(1.0, timeout / 2.0) if timeout > 0 else 1.0
        use_epoll = hasattr(select, "epoll")
        poll_timeout: float = wait if use_epoll else wait * 1000.0
        poller = self._make_poller()
        socks = [listener.sock for listener in self.listeners]
        by_fd = {listener.sock.fileno(): listener for listener in self.listeners}
        try:
            while self.alive:
                heartbeat.beat()
                served = False
                for sock in socks:
                    listener = by_fd[sock.fileno()]
                    while self.alive:
                        try:
                            conn, peer = sock.accept()
                        except BlockingIOError:
                            break
                        except OSError as exc:
                            if exc.errno in _ACCEPT_RETRY:
                                continue
                            self.log.error("accept() failed on %s: %s", listener.name, exc)
                            time.sleep(0.1)  # EMFILE and friends: do not spin
                            break
                        served = True
                        self._handle(listener, conn, peer)
                        heartbeat.beat()
                        if self.reopen_logs:
                            self.reopen_log_files()
                        if self.nr >= self.max_requests:
                            self.log.info("Autorestarting worker after current request.")
                            self.alive = False
                if served or not self.alive:
                    continue
                if self.parent_changed():
                    return
                try:
                    poller.poll(poll_timeout)
                except InterruptedError:
                    pass
                self.drain_wakeup()
                if self.reopen_logs:
                    self.reopen_log_files()
        finally:
            poller.close() if use_epoll else None

    # ------------------------------------------------------------------ one connection

    def _handle(self, listener: Any, conn: socket.socket, peer: Any) -> None:
        try:
            if listener.protocol == "uwsgi":
                self._handle_uwsgi(listener, conn, peer)
            else:
                self._handle_http(listener, conn, peer)
        except ClientDisconnected as exc:
            self.log.debug("Client %s: %s", peer or listener.name, exc)
        except OSError as exc:
            if exc.errno in _QUIET_ERRNOS or isinstance(exc, TimeoutError):
                self.log.debug("Connection from %s ended: %s", peer or listener.name, exc)
            else:
                self.log.exception("Error on the connection from %s", peer or listener.name)
        except Exception:
            self.log.exception("Error handling a connection from %s", peer or listener.name)
        finally:
            conn.close()

    def _read_head(self, conn: socket.socket, parser: HttpParser) -> Any:
        """Read until the parser yields a request head; None when the client sent nothing."""
        try:
            data = conn.recv(_RECV, _DONTWAIT)
        except BlockingIOError:
            data = None
        deadline = 0.0
        while True:
            if data is None:
                if self.header_timeout:
                    now = time.monotonic()
                    if not deadline:
                        deadline = now + self.header_timeout
                    remaining = deadline - now
                    if remaining <= 0:
                        raise ClientDisconnected(
                            f"no complete request head within header_timeout "
                            f"({self.header_timeout:g}s)"
                        )
                    conn.settimeout(remaining)
                try:
                    data = conn.recv(_RECV)
                except TimeoutError:
                    raise ClientDisconnected(
                        f"no complete request head within header_timeout ({self.header_timeout:g}s)"
                    ) from None
            parser.receive_data(data)
            event = parser.next_event()
            if event is not NEED_DATA:
                return event
            if not data:
                return None
            data = None

    def _handle_http(self, listener: Any, conn: socket.socket, peer: Any) -> None:
        parser = HttpParser(self.limits)
        try:
            req = self._read_head(conn, parser)
        except ProtocolError as exc:
            self.log.info("Invalid HTTP request from %s: %s", peer or listener.name, exc.reason)
            self._send_error(conn, exc.status, exc.reason)
            return
        if req is None:
            return  # connected and closed without a request: nothing to say
        conn.settimeout(self.io_timeout)
        try:
            environ = self.builders[listener.sock.fileno()].build(req, peer)
        except ProtocolError as exc:
            self.log.info("Invalid HTTP request from %s: %s", peer or listener.name, exc.reason)
            self._send_error(conn, exc.status, exc.reason)
            return
        if req.content_length == 0 and not req.chunked:
            body: Any = EMPTY_INPUT
        else:
            body = Input(_HttpBody(conn, parser, req.expect_continue, self.heartbeat))
        environ["wsgi.input"] = body
        self._serve(conn, environ, body, req.method == "HEAD", False)

    def _handle_uwsgi(self, listener: Any, conn: socket.socket, peer: Any) -> None:
        if peer and peer[0] not in self.uwsgi_allowed:  # UNIX peers ("") are always allowed
            self.log.warning("Forbidden uWSGI request from %s", peer[0])
            self._send_error(conn, 403, "")
            return
        try:
            buf = conn.recv(_RECV, _DONTWAIT)
        except BlockingIOError:
            buf = b""
        max_vars = self.uwsgi_max_vars
        deadline = 0.0
        try:
            while True:
                if buf:
                    parsed = parse_head(buf, max_vars)
                    if parsed is not None:
                        break
                if self.header_timeout:
                    now = time.monotonic()
                    if not deadline:
                        deadline = now + self.header_timeout
                    if now >= deadline:
                        raise ClientDisconnected(
                            f"no complete uWSGI packet within header_timeout "
                            f"({self.header_timeout:g}s)"
                        )
                    conn.settimeout(deadline - now)
                try:
                    data = conn.recv(_RECV)
                except TimeoutError:
                    raise ClientDisconnected(
                        f"no complete uWSGI packet within header_timeout ({self.header_timeout:g}s)"
                    ) from None
                if not data:
                    if not buf:
                        return  # connected and closed: a health check, nothing to say
                    parser = UwsgiParser(max_vars_size=max_vars)
                    parser.receive_data(buf)
                    parser.receive_data(b"")
                    parser.next_event()  # raises the precise truncation error
                    raise InvalidUWSGIHeader("truncated packet")
                buf += data
        except ProtocolError as exc:
            self.log.warning(
                "Invalid uWSGI header: %s from %s", exc.reason, peer[0] if peer else listener.name
            )
            self._send_error(conn, exc.status, exc.reason)
            return
        head, used = parsed
        if isinstance(head, Ping):
            conn.sendall(PONG)
            return
        conn.settimeout(self.io_timeout)
        environ = self.builders[listener.sock.fileno()].build(head.environ)
        if head.chunked:
            parser = UwsgiParser(max_vars_size=max_vars)
            parser.receive_data(buf)
            parser.next_event()  # the head, again: the rare chunked case re-parses it
            if self.header_timeout:
                conn.settimeout(self.header_timeout)
            body: Any = Input(_UwsgiChunkedBody(conn, parser, self.heartbeat))
        elif head.content_length:
            body = Input(_UwsgiBody(conn, buf[used:], head.content_length, self.heartbeat))
        else:
            body = EMPTY_INPUT
        environ["wsgi.input"] = body
        self._serve(conn, environ, body, environ["REQUEST_METHOD"] == "HEAD", True)

    def _send_error(self, conn: socket.socket, status: int, reason: str) -> None:
        try:
            conn.settimeout(1.0)
            conn.sendall(error_response(status, reason))
        except OSError:
            pass

    # ------------------------------------------------------------------ the application

    def _serve(
        self,
        conn: socket.socket,
        environ: dict[str, Any],
        body: Any,
        head_only: bool,
        uwsgi: bool,
    ) -> None:
        """Call the application and send its response; then log, run hooks, drain."""
        start = time.monotonic() if self.access_log else 0.0
        hook_req = None
        if self.pre_request is not None or self.post_request is not None:
            hook_req = HookRequest(environ)
            if self.pre_request is not None:
                self.pre_request(self, hook_req)
        resp = Response(conn, head_only, uwsgi, self.heartbeat.beat)
        self.nr += 1
        result: Any = None
        assert self.app is not None
        try:
            result = self.app(environ, resp.start_response)
            if result.__class__ is list and len(result) == 1:
                data = result[0]
                if data.__class__ is not bytes:
                    data = _as_bytes(data)
                resp.write_single(data)
            elif isinstance(result, FileWrapper):
                resp.send_file(result, self.use_sendfile)
            else:
                resp.send_iterable(_checked(result))
        except (ClientDisconnected, ConnectionError, TimeoutError):
            raise
        except Exception as exc:
            self._app_error(conn, environ, resp, exc)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    self.log.exception("Error closing the response iterable")
        if self.access_log:
            self.log.access(
                environ, resp.status or "500", resp.headers, resp.sent,
                time.monotonic() - start,
            )
        if self.post_request is not None:
            self.post_request(self, hook_req, environ, resp)
        if body is not EMPTY_INPUT and not body.exhausted and not body.awaiting_continue:
            self._drain(conn, body)

    def _app_error(
        self, conn: socket.socket, environ: dict[str, Any], resp: Response, exc: Exception
    ) -> None:
        where = environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")
        if isinstance(exc, ProtocolError):
            # the body broke its framing while the app read it: the client's fault, not the app's
            self.log.info("Invalid request body from %s for %s: %s",
                          environ.get("REMOTE_ADDR") or "a local peer", where, exc.reason)
            if not resp.headers_sent:
                resp.status, resp.status_code = f"{exc.status} Bad Request", exc.status
                resp.headers = []
                self._send_error(conn, exc.status, exc.reason)
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

    def _drain(self, conn: socket.socket, body: Any) -> None:
        """Read what the app left of the body, so closing does not reset the response."""
        try:
            conn.settimeout(1.0)
            body.drain(_DRAIN_LIMIT)
        except (OSError, ProtocolError):
            pass


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise ResponseError(
        f"the application's response iterable yielded {type(data).__name__}, expected bytes"
    )


def _checked(result: Any) -> Any:
    for data in result:
        yield data if data.__class__ is bytes else _as_bytes(data)
