"""Helpers shared by the unit tests.

Not a ``conftest.py``: the integration tests import their own ``conftest`` by name, and a second
module of that name would shadow it. A test module turns :func:`socket_pair` into its ``pair``
fixture with ``pair = pytest.fixture(name="pair")(socket_pair)``.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator


def socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected socket pair: the code under test writes to the first, the test reads the
    second (with a 5 s timeout)."""
    a, b = socket.socketpair()
    b.settimeout(5)
    yield a, b
    a.close()
    b.close()


def received(a: socket.socket, b: socket.socket) -> bytes:
    """Close ``a`` and return everything ``b`` receives until the end."""
    a.close()
    chunks = []
    while data := b.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def encode(
    pairs: list[tuple[bytes, bytes]], modifier1: int = 0, modifier2: int = 0, body: bytes = b""
) -> bytes:
    """Build a uwsgi packet from (key, value) byte pairs."""
    block = b"".join(
        struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v for k, v in pairs
    )
    return struct.pack("<BHB", modifier1, len(block), modifier2) + block + body
