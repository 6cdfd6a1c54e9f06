"""TLS for the listeners: the server context (gunicorn's settings and ``ssl_context`` hook), the
socket the blocking workers serve a TLS connection on, and how a failed handshake is logged.

The master builds the context (:func:`server_context`) at start and on HUP, before it forks any
worker; the workers inherit it, so the key need only be readable by the master's user, and a file
that cannot be read, a key that does not match its certificate or a setting that asks for what
cannot be given stops the start with one line (:class:`TlsError`). A listener serves TLS when its
bind says ``https://`` or ``suwsgi://``, or says no scheme while ``certfile`` is set.

Per connection the order is: accept, (a PROXY protocol header, which comes in plain text before
the handshake), the TLS handshake, then the listener's protocol. This module is imported only
when TLS is configured: a server without it never loads :mod:`ssl`.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
from typing import TYPE_CHECKING, NoReturn, Protocol

if TYPE_CHECKING:
    from .config import Config

__all__ = [
    "TlsError",
    "TlsSocket",
    "default_context",
    "HandshakeLog",
    "handshake_failure",
    "log_handshake_failure",
    "server_context",
    "settings_error",
    "wrap",
]

_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
_WOULD_WAIT = (ssl.SSLWantReadError, ssl.SSLWantWriteError)


class TlsError(Exception):
    """A TLS setting that cannot be served as asked; the message is one readable line."""


# ------------------------------------------------------------------ the settings


def settings_error(cfg: Config) -> str | None:
    """What is wrong with the TLS settings taken together (None: nothing), without reading a
    file: settings that ask for TLS or client certificates while no listener could serve
    them, and client certificates that nothing could verify."""
    hook = cfg.hook_is_set("ssl_context")
    if not cfg.certfile:
        for name, given in (
            ("keyfile", cfg.keyfile is not None),
            ("ca_certs", cfg.ca_certs is not None),
            ("cert_reqs", cfg.cert_reqs != 0),
            ("the ssl_context hook", hook),
        ):
            if given:
                return (
                    f"{name} is set but certfile is not, so no listener would serve TLS; "
                    "give the server's certificate with certfile (--certfile)"
                )
        return None
    if cfg.cert_reqs and not cfg.ca_certs and not hook:
        return (
            f"cert_reqs = {cfg.cert_reqs} asks for client certificates, but without ca_certs "
            "(--ca-certs) none could be verified: give the CA certificates that sign them"
        )
    return None


def _read(setting: str, path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise TlsError(f"{setting} {path!r}: {exc.strerror or exc}") from None


def _no_passphrase() -> NoReturn:
    raise TlsError(
        "the private key is encrypted and monoceros asks for no passphrase: decrypt it "
        "(openssl pkey -in KEY -out KEY.plain) or load it in the ssl_context hook"
    )


def default_context(cfg: Config) -> ssl.SSLContext:
    """The context monoceros serves TLS with (gunicorn's ``default_ssl_context_factory``):
    ``certfile``/``keyfile``, the ``ca_certs`` client certificates are verified against,
    ``cert_reqs`` and ``ciphers``. Raises :class:`TlsError` naming the setting at fault."""
    certfile = cfg.certfile
    if not certfile:
        raise TlsError("certfile is not set: TLS needs the server's certificate")
    keyfile = cfg.keyfile
    cert = _read("certfile", certfile)
    if b"-----BEGIN CERTIFICATE-----" not in cert:
        raise TlsError(f"certfile {certfile!r}: no PEM certificate in it")
    key = _read("keyfile", keyfile) if keyfile else cert
    if b"PRIVATE KEY-----" not in key:
        where = f"keyfile {keyfile!r}" if keyfile else f"certfile {certfile!r} (no keyfile)"
        raise TlsError(f"{where}: no PEM private key in it")
    ca_certs = cfg.ca_certs
    if ca_certs:
        _read("ca_certs", ca_certs)
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca_certs)
    except ssl.SSLError as exc:
        raise TlsError(f"ca_certs {ca_certs!r}: {_reason(exc)}") from None
    try:
        context.load_cert_chain(certfile, keyfile, password=_no_passphrase)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            shown = f"keyfile {keyfile!r}" if keyfile else "its private key"
            raise TlsError(
                f"{shown} does not match certfile {certfile!r} (key values mismatch)"
            ) from None
        raise TlsError(f"certfile {certfile!r}: {_reason(exc)}") from None
    except OSError as exc:
        raise TlsError(f"certfile {certfile!r}: {exc.strerror or exc}") from None
    context.verify_mode = ssl.VerifyMode(cfg.cert_reqs)
    if cfg.ciphers:
        try:
            context.set_ciphers(cfg.ciphers)
        except ssl.SSLError:
            raise TlsError(
                f"ciphers {cfg.ciphers!r}: no cipher can be selected from this list"
            ) from None
    return context


def server_context(cfg: Config) -> ssl.SSLContext | None:
    """The context of the TLS listeners: the ``ssl_context`` hook's answer, given
    :func:`default_context` as its factory; None when ``certfile`` is not set. Raises
    :class:`TlsError` for a bad setting or file, a hook that raises or returns something else."""
    problem = settings_error(cfg)
    if problem is not None:
        raise TlsError(problem)
    if not cfg.certfile:
        return None

    def default_ssl_context_factory() -> ssl.SSLContext:
        return default_context(cfg)

    try:
        context = cfg.ssl_context(cfg, default_ssl_context_factory)
    except TlsError:
        raise
    except Exception as exc:
        detail = " ".join(str(exc).split())
        raise TlsError(
            f"the ssl_context hook raised {type(exc).__name__}" + (f": {detail}" if detail else "")
        ) from None
    if not isinstance(context, ssl.SSLContext):
        raise TlsError(
            f"the ssl_context hook returned {type(context).__name__}, not an ssl.SSLContext"
        )
    if context.protocol == ssl.PROTOCOL_TLS_CLIENT:
        raise TlsError(
            "the ssl_context hook returned a client-side context (ssl.PROTOCOL_TLS_CLIENT); "
            "start from default_ssl_context_factory() or ssl.Purpose.CLIENT_AUTH"
        )
    context.sslsocket_class = TlsSocket
    return context


def _reason(exc: ssl.SSLError) -> str:
    """An OpenSSL error as one short line: its reason, else its text."""
    reason = exc.reason
    if reason:
        return str(reason).replace("_", " ").lower()
    return " ".join(str(exc).split()) or type(exc).__name__


# ------------------------------------------------------------------ the blocking workers' socket


class TlsSocket(ssl.SSLSocket):
    """An :class:`ssl.SSLSocket` that takes the plain-socket calls of the blocking workers.

    - ``recv(n, MSG_DONTWAIT)`` reads what is there without waiting, and a read that would wait
      raises :class:`BlockingIOError` (not ``SSLWantReadError``), as a plain socket's does.
    - ``close()`` and ``shutdown(SHUT_WR)`` send TLS's close_notify first, without waiting for
      the peer's: a client reading to the end of the connection sees a clean end.

    Its waits are Python timeouts (:func:`monoceros.socket_waits.wait_in_kernel` sets them for
    any socket that is not a plain one): OpenSSL would retry a read that a kernel timeout
    (``SO_RCVTIMEO``) interrupted, for ever. Responses go through
    :class:`monoceros.wsgi.response.TlsResponse`.
    """

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        """Read up to ``buflen`` decrypted bytes; ``MSG_DONTWAIT`` is the only flag taken."""
        if not flags:
            try:
                return super().recv(buflen)
            except _WOULD_WAIT:
                raise BlockingIOError(errno.EAGAIN, "no complete TLS record yet") from None
        if flags != _DONTWAIT:
            raise ValueError(f"recv() flags {flags:#x} are not supported on a TLS socket")
        timeout = self.gettimeout()
        if timeout == 0.0:
            return self.recv(buflen)
        self.settimeout(0.0)
        try:
            return self.recv(buflen)
        finally:
            self.settimeout(timeout)

    def close(self) -> None:
        """Send close_notify (if the session is up), then close."""
        if self.fileno() >= 0:
            self._notify_close()
        super().close()

    def shutdown(self, how: int) -> None:
        """Send close_notify before shutting the writing side down."""
        if how != socket.SHUT_RD:
            self._notify_close()
        super().shutdown(how)

    def _notify_close(self) -> None:
        try:
            self.settimeout(0.0)
            self.unwrap()  # sends close_notify; the peer's is not waited for
        except (OSError, ValueError):
            pass


def wrap(context: ssl.SSLContext, sock: socket.socket, cfg: Config) -> TlsSocket:
    """``sock`` (accepted, handshake not started) as a server-side :class:`TlsSocket`."""
    tls = context.wrap_socket(
        sock,
        server_side=True,
        do_handshake_on_connect=False,
        suppress_ragged_eofs=cfg.suppress_ragged_eofs,
    )
    assert isinstance(tls, TlsSocket)  # server_context() set the context's sslsocket_class
    return tls


# ------------------------------------------------------------------ failed handshakes

FailureReason = tuple[int, str]
"""A log level and the reason a handshake failed, for ``TLS handshake failed from PEER: REASON``."""

#: OpenSSL reasons of a failed handshake, as the log line says them
_REASONS: dict[str, FailureReason] = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": (logging.WARNING, "no client certificate (cert_reqs)"),
    "HTTP_REQUEST": (logging.INFO, "plain HTTP sent to a TLS port"),
    "HTTPS_PROXY_REQUEST": (logging.INFO, "an HTTP proxy request sent to a TLS port"),
    "WRONG_VERSION_NUMBER": (logging.INFO, "not a TLS handshake (wrong version number)"),
    "UNKNOWN_PROTOCOL": (logging.INFO, "not a TLS handshake (unknown protocol)"),
    "RECORD_LAYER_FAILURE": (logging.INFO, "not a TLS handshake (record layer failure)"),
    "PACKET_LENGTH_TOO_LONG": (logging.INFO, "not a TLS handshake (packet length too long)"),
    "UNSUPPORTED_PROTOCOL": (logging.INFO, "the client's TLS version is not accepted"),
    "VERSION_TOO_LOW": (logging.INFO, "the client's TLS version is not accepted"),
    "NO_SHARED_CIPHER": (logging.INFO, "no cipher suite in common (ciphers)"),
}

_GONE: FailureReason = (logging.DEBUG, "the client closed the connection during the TLS handshake")


def handshake_failure(exc: BaseException, timeout: float | None) -> FailureReason:
    """The level and reason to log for a handshake that raised ``exc`` (``timeout``: the
    header_timeout that bounded it). A client that went away is a DEBUG line; a client
    certificate refused a WARNING; anything else an INFO."""
    if isinstance(exc, TimeoutError):
        return logging.INFO, f"no TLS handshake within header_timeout ({timeout or 0:g}s)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or _reason(exc)
        return logging.WARNING, f"client certificate refused: {why}"
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return _GONE
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or "")
        known = _REASONS.get(reason)
        if known is not None:
            return known
        if "_ALERT_" in reason:
            alert = reason.split("_ALERT_", 1)[1].replace("_", " ").lower()
            return logging.INFO, f"the client ended the handshake with the alert {alert!r}"
        if reason == "UNEXPECTED_EOF_WHILE_READING":
            return _GONE
        return logging.INFO, _reason(exc)
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return _GONE
    return logging.INFO, " ".join(str(exc).split()) or type(exc).__name__


class HandshakeLog(Protocol):
    """The logger methods a failed handshake's line goes through (monoceros's Logger)."""

    def debug(self, msg: str, *args: object) -> None:
        """Log at DEBUG."""

    def info(self, msg: str, *args: object) -> None:
        """Log at INFO."""

    def warning(self, msg: str, *args: object) -> None:
        """Log at WARNING."""


def log_handshake_failure(
    log: HandshakeLog, who: object, exc: BaseException, timeout: float | None
) -> None:
    """The one log line of a failed handshake: ``TLS handshake failed from WHO: REASON``."""
    level, reason = handshake_failure(exc, timeout)
    if level >= logging.WARNING:
        log.warning("TLS handshake failed from %s: %s", who, reason)
    elif level >= logging.INFO:
        log.info("TLS handshake failed from %s: %s", who, reason)
    else:
        log.debug("TLS handshake failed from %s: %s", who, reason)
