"""The benchmark's WSGI apps: ``hello``, ``echo``, ``length`` and ``download`` of ``wsgi_apps``.

They run inside the servers being measured, with this folder as the working directory and first on
``sys.path``; they import nothing but the standard library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

HELLO = b"Hello, World!"
HELLO_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))]

# The download: one 64 KiB block (bytes 0..255 repeated) sent 512 times, 32 MiB with Content-Length.
# The same block object is yielded every time, so a server that streams holds 64 KiB, not 32 MiB.
CHUNK = bytes(range(256)) * 256
CHUNKS = 512
DOWNLOAD_HEADERS = [
    ("Content-Type", "application/octet-stream"),
    ("Content-Length", str(len(CHUNK) * CHUNKS)),
]


def hello(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """``Hello, World!`` as text/plain with its Content-Length."""
    start_response("200 OK", HELLO_HEADERS)
    return [HELLO]


def echo(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """The request body, byte for byte, as application/octet-stream."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    start_response(
        "200 OK",
        [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))],
    )
    return [body]


def length(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Read the request body whole and answer its length in bytes, as text/plain.

    It reads until CONTENT_LENGTH bytes have come, as a careful application does: a server's
    ``read(n)`` may return fewer than n bytes (monoceros's returns what has arrived).
    """
    stream = environ["wsgi.input"]
    left = int(environ.get("CONTENT_LENGTH") or 0)
    parts = []
    while left > 0:  # every round reads a byte at least, or stops
        block = stream.read(left)
        if not block:
            break
        parts.append(block)
        left -= len(block)
    answer = str(len(b"".join(parts))).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(answer)))])
    return [answer]


def _blocks() -> Iterator[bytes]:
    """Yield the download's 64 KiB block CHUNKS times."""
    for _ in range(CHUNKS):
        yield CHUNK


def download(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """32 MiB streamed in 64 KiB blocks, with Content-Length."""
    start_response("200 OK", DOWNLOAD_HEADERS)
    return _blocks()
