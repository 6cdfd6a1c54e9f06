"""Requests on blocking sockets, shared by the sync and gthread workers.

Each worker reads and schedules connections its own way; once a connection is accepted, the
steps every request takes are :class:`~monoceros.workers.request_path.RequestPath`'s (compiled
with the core), built here when serving starts. What is left here is off that path: the
settings it reads, the error responses, the log lines of a connection that ended badly, the
answer of an application that failed, and draining what it left unread.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from typing import TYPE_CHECKING, Any

from ..access_log import log_safe
from ..addresses import AddressMatcher, PeerAddress
from ..config import Hook
from ..listeners import Listener
from ..protocols.errors import ProtocolError, TruncatedPacket
from ..protocols.http import HttpLimits, error_response
from ..protocols.proxy_protocol import ProxyHeaderReader
from ..worker_metrics import Recorder
from ..wsgi.body import ClientDisconnected
from ..wsgi.environ import (
    ForwardedForEnvironBuilder,
    HttpEnvironBuilder,
    UwsgiEnvironBuilder,
    base_environ,
)
from ..wsgi.response import Response, ResponseError
from .base import Worker
from .request_path import RECV_SIZE, Beater, RequestPath

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

DRAIN_LIMIT = 1 << 20
"""Unread request-body bytes read and discarded after a response, at most (so a close does not
reset the connection under the response, or a kept-alive one can be reused); beyond it the
connection is just closed."""

_QUIET_ERRNOS = frozenset(
    (errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN, errno.ESHUTDOWN)
)


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
    #: the steps of every request (made by :meth:`setup_serving`; it counts the requests)
    request_path: RequestPath

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
        self.request_path = self._request_counter = RequestPath(self, self.nr)

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

    # ------------------------------------------------------------------ off the request path

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

    def uwsgi_refused(self, conn: socket.socket, peer: tuple[Any, ...]) -> None:
        """Log and answer (403) a TCP peer outside ``uwsgi_allow_ips``."""
        self.log.warning("Forbidden uWSGI request from %s", peer[0])
        self.metrics.answered(403, True)
        self.send_error(conn, 403, "")

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

    def app_failed(
        self, conn: socket.socket, environ: dict[str, Any], resp: Response, exc: Exception
    ) -> None:
        """Log what the application (or the pre_request hook) raised, and answer 500 when no
        response had started (a body that broke its framing under it: 400, logged as such)."""
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

    def aborted_request(self, conn: socket.socket, environ: dict[str, Any], resp: Response) -> None:
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

    def drain_body(self, conn: socket.socket, body: Any, environ: dict[str, Any]) -> bool:
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
