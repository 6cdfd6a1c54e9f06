"""Helpers shared by the unit tests (fixtures are in conftest.py)."""

from __future__ import annotations

import socket
import struct


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
