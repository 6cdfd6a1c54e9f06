"""Helpers shared by the unit tests.

Not a ``conftest.py``: the integration tests import their own ``conftest`` by name, and a second
module of that name would shadow it. A test module turns :func:`socket_pair` into its ``pair``
fixture with ``pair = pytest.fixture(name="pair")(socket_pair)``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from monoceros import protocols
from monoceros.addresses import AddressMatcher
from monoceros.asgi.context import ServerContext
from monoceros.config import Config
from monoceros.logs import Logger
from monoceros.protocols.http import HttpLimits


def protocols_source(name: str) -> Any:
    """``monoceros/protocols/<name>.py`` loaded from its source under another name: a C twin's
    Python twin as the interpreter runs it, beside the imported module (compiled where built)."""
    path = Path(protocols.__file__).with_name(f"{name}.py")  # (the package is not compiled)
    spec = importlib.util.spec_from_file_location(f"monoceros.protocols._{name}_source", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


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


def make_ctx(
    app: Any,
    loop: asyncio.AbstractEventLoop,
    tmp_path: Path,
    allowed: list[str] | None = None,
) -> ServerContext:
    """An asgi ServerContext for unit tests: errors logged under ``tmp_path``, uwsgi peers in
    ``allowed`` (all by default), a 1 MiB WebSocket message limit, no max_requests in reach."""
    cfg = Config({})
    cfg.set("errorlog", str(tmp_path / "error.log"))
    return ServerContext(
        app,
        Logger(cfg),
        loop,
        limits=HttpLimits(),
        keepalive=5.0,
        header_timeout=0.0,
        uwsgi_allowed=AddressMatcher(allowed or ["*"]),
        uwsgi_max_vars=65535,
        ws_max_message_size=1 << 20,
        forwarded_allow_ips=AddressMatcher([]),
        secure_scheme_headers={},
        max_requests=1 << 30,
    )
