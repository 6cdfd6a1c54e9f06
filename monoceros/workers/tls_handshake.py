"""The TLS handshake of the blocking workers (sync and gthread), bounded by ``header_timeout``.

A worker with a TLS listener makes one :class:`Handshakes` at start (this module loads
:mod:`ssl`, so a worker without TLS never imports it). The sync worker completes a handshake
waiting in the kernel (:meth:`Handshakes.complete`); the gthread worker takes it a step at a
time without waiting (:meth:`Handshakes.step`), the connection parked in the main thread's
poller in between, so a silent client holds no pool thread. Either way a failure is one log
line naming the peer and the reason, and that connection is closed.

``do_handshake_on_connect`` decides how ``header_timeout`` is counted: False (gunicorn's
default), one budget from the accept for the handshake and the first request head together;
True, the handshake first within its own, then the head with a fresh one.
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from typing import TYPE_CHECKING

from ..addresses import PeerAddress
from ..listeners import Listener
from ..tls import TlsSocket, log_handshake_failure, wrap

if TYPE_CHECKING:
    from ..config import Config
    from ..logs import Logger

__all__ = ["Handshakes", "peer_name"]


def peer_name(peer: PeerAddress, listener: Listener) -> str:
    """The peer as the log lines name it: its IP, or the listener for a UNIX socket peer."""
    if isinstance(peer, tuple):
        return str(peer[0])
    return listener.name


class Handshakes:
    """Completes the TLS handshakes of one worker's connections."""

    def __init__(self, cfg: Config, log: Logger, header_timeout: float | None) -> None:
        self.cfg = cfg
        self.log = log
        self.timeout = header_timeout
        #: True: the first request head gets its own header_timeout after the handshake
        self.own_budget = bool(cfg.do_handshake_on_connect)

    def failed(self, listener: Listener, peer: PeerAddress, exc: BaseException) -> None:
        """Log a failed handshake (one line)."""
        log_handshake_failure(self.log, peer_name(peer, listener), exc, self.timeout)

    def head_deadline(self, accepted: float) -> float:
        """The deadline of the first request head once the handshake is done (``accepted``:
        the connection's accept time; 0.0: a fresh header_timeout, started at the first wait)."""
        if self.own_budget or not self.timeout:
            return 0.0
        return accepted + self.timeout

    # ------------------------------------------------------------------ sync: waiting

    def complete(
        self, listener: Listener, conn: socket.socket, peer: PeerAddress, deadline: float = 0.0
    ) -> tuple[TlsSocket, float] | None:
        """Wrap a just-accepted socket and complete its handshake, waiting at most
        header_timeout. Returns the TLS socket and the first head's deadline (see
        :meth:`head_deadline`), or None when the handshake failed (logged, socket closed).
        ``deadline``: when a PROXY header read before it started header_timeout, the end of
        that budget, which the handshake (and the head, without ``do_handshake_on_connect``)
        must keep to; 0.0: the budget starts now."""
        assert listener.tls is not None
        accepted = time.monotonic()
        timeout = self.timeout
        if deadline and timeout:  # what the PROXY header left of header_timeout
            accepted = deadline - timeout
            timeout = max(deadline - time.monotonic(), 0.001)
        tls = wrap(listener.tls, conn, self.cfg)
        tls.settimeout(timeout)
        try:
            tls.do_handshake()
        except (OSError, ValueError) as exc:
            self.failed(listener, peer, exc)
            tls.close()
            return None
        return tls, self.head_deadline(accepted)

    # ------------------------------------------------------------------ gthread: step by step

    def start(self, listener: Listener, conn: socket.socket) -> TlsSocket:
        """Wrap a just-accepted socket for :meth:`step` (non-blocking)."""
        assert listener.tls is not None
        conn.settimeout(0.0)
        return wrap(listener.tls, conn, self.cfg)

    def step(self, tls: TlsSocket, deadline: float) -> bool:
        """Carry the handshake on with what the peer sent, without waiting for more: True once
        it is done, False while it waits for the peer (park the connection for reading).
        Raises what ended it (the caller logs it with :meth:`failed`). In the rare case that the
        kernel cannot take our part of the handshake at once (the peer reads nothing), it waits
        here for room, at most until ``deadline``."""
        while True:
            try:
                tls.do_handshake()
                return True
            except ssl.SSLWantReadError:
                return False
            except ssl.SSLWantWriteError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the client reads nothing of the TLS handshake") from None
                select.select([], [tls], [], None if left == float("inf") else left)
