"""Fixtures shared by the unit tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected socket pair: the code under test writes to the first, the test reads the
    second (with a 5 s timeout)."""
    a, b = socket.socketpair()
    b.settimeout(5)
    yield a, b
    a.close()
    b.close()
