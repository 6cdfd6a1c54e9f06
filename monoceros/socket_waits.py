"""Waiting for a slow peer on a blocking socket, with the kernel doing the timing.

A Python socket timeout makes every ``send``/``recv`` a ``poll`` plus the call, and ``sendall``
a loop of both: streaming 32 MiB to nginx that way cost a quarter more CPU than plain blocking
calls. Kernel timeouts (``SO_SNDTIMEO``/``SO_RCVTIMEO``) bound each wait the same way, without
the extra system calls; a call that times out fails with ``BlockingIOError`` (``EAGAIN``).

Only for a plain socket (``socket.socket``, or the bare ``_socket.socket`` the workers make of a
plain connection, :data:`monoceros.listeners.BARE_SOCKET`): a TLS socket
(:class:`monoceros.tls.TlsSocket`) waits with a Python timeout, which OpenSSL's calls honour
(and which try before they poll); under a kernel timeout, OpenSSL would retry the interrupted
read for ever.
"""

from __future__ import annotations

import _socket
import socket
import struct
import sys
from typing import Final

__all__ = ["KERNEL_TIMEOUTS", "PLAIN_SOCKETS", "SEND_THEN_CLOSE", "wait_in_kernel"]

#: ``struct timeval`` is two longs on Linux (x86-64, arm64); elsewhere a Python timeout is used
KERNEL_TIMEOUTS: Final = sys.platform.startswith("linux") and struct.calcsize("l") == 8
_TIMEVAL: Final = struct.Struct("ll")
PLAIN_SOCKETS: Final = (socket.socket, _socket.socket)
"""The classes of a plain (not TLS) connection's socket, ``socket.socket`` or the bare C socket
the workers make (:data:`monoceros.listeners.BARE_SOCKET`): the one test of "plain" for kernel
timeouts and for the WSGI response kind (a bare socket that fell back to Python timeouts made
a 32 MiB stream from the sync worker cost 46 % more CPU)."""

SEND_THEN_CLOSE: Final = getattr(socket, "MSG_DONTWAIT", 0) | getattr(socket, "MSG_MORE", 0)
"""``send`` flags for a connection's last bytes when ``close()`` follows at once: the send does
not wait, and MSG_MORE makes TCP hold the bytes until the close sends them with the FIN in one
segment (a packet, and a round of loopback processing, fewer per request; UNIX sockets ignore
it). Never for bytes that something else may follow after a pause: they would wait for it."""


def wait_in_kernel(sock: socket.socket, timeout: float | None) -> None:
    """Let ``sock`` block, each ``send``/``recv`` for at most ``timeout`` seconds (None: no
    limit); the timeouts stay on the socket for the rest of the connection. Any socket but a
    plain one (a TLS one) gets a Python timeout."""
    if not KERNEL_TIMEOUTS or sock.__class__ not in PLAIN_SOCKETS:
        if sock.gettimeout() != timeout:
            sock.settimeout(timeout)
        return
    if sock.gettimeout() is not None:
        sock.settimeout(None)
    seconds = int(timeout or 0)
    value = _TIMEVAL.pack(seconds, int(((timeout or 0) - seconds) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
