"""Kernel timeouts for plain sockets (monoceros.socket_waits): a bare ``_socket.socket`` too.

A plain connection is a bare ``_socket.socket`` in every worker (monoceros.listeners); falling
back to a Python timeout on it made every send of a streamed response a ``poll`` plus the send.
"""

from __future__ import annotations

import _socket
import socket
import struct

import pytest

from monoceros.listeners import BARE_SOCKET
from monoceros.socket_waits import KERNEL_TIMEOUTS, wait_in_kernel

pytestmark = pytest.mark.skipif(not KERNEL_TIMEOUTS, reason="kernel timeouts: Linux, 64-bit")


def kernel_timeout(sock: socket.socket, option: int) -> float:
    seconds, micros = struct.unpack("ll", sock.getsockopt(socket.SOL_SOCKET, option, 16))
    return seconds + micros / 1_000_000


@pytest.mark.parametrize("bare", [True, False], ids=["bare", "socket.socket"])
def test_a_plain_socket_waits_in_the_kernel(bare: bool) -> None:
    a, b = socket.socketpair()
    sock: socket.socket = BARE_SOCKET(a.family, a.type, a.proto, a.detach()) if bare else a
    assert (sock.__class__ is _socket.socket) is bare
    try:
        sock.settimeout(0.0)  # the workers' first, non-waiting send
        wait_in_kernel(sock, 2.5)
        assert sock.gettimeout() is None  # blocking: no poll before each call
        assert kernel_timeout(sock, socket.SO_SNDTIMEO) == 2.5
        assert kernel_timeout(sock, socket.SO_RCVTIMEO) == 2.5
    finally:
        sock.close()
        b.close()
