"""The benchmark's ASGI apps: ``hello``, ``echo``, ``length`` and ``download`` of ``asgi_apps``.

The same answers as :mod:`wsgi_apps`; each also completes the lifespan protocol, so servers that
require it (uvicorn ``--lifespan on``) and servers that probe it behave alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HELLO = b"Hello, World!"
HELLO_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(HELLO))],
}
HELLO_BODY = {"type": "http.response.body", "body": HELLO}

CHUNK = bytes(range(256)) * 256  # 64 KiB, sent 512 times: 32 MiB
CHUNKS = 512
DOWNLOAD_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", b"%d" % (len(CHUNK) * CHUNKS)),
    ],
}


async def lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge startup and shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    """``Hello, World!`` as text/plain with its Content-Length."""
    if scope["type"] != "http":
        await lifespan(receive, send)
        return
    await send(HELLO_START)
    await send(HELLO_BODY)


async def read_body(receive: Receive) -> bytes:
    """The request body, whole."""
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """The request body, byte for byte, as application/octet-stream."""
    if scope["type"] != "http":
        await lifespan(receive, send)
        return
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = b"".join(parts)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", b"%d" % len(body)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def length(scope: Scope, receive: Receive, send: Send) -> None:
    """Read the request body whole and answer its length in bytes, as text/plain."""
    if scope["type"] != "http":
        await lifespan(receive, send)
        return
    answer = b"%d" % len(await read_body(receive))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", b"%d" % len(answer)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": answer})


async def download(scope: Scope, receive: Receive, send: Send) -> None:
    """32 MiB streamed in 64 KiB blocks, with Content-Length."""
    if scope["type"] != "http":
        await lifespan(receive, send)
        return
    await send(DOWNLOAD_START)
    block = {"type": "http.response.body", "body": CHUNK, "more_body": True}
    for _ in range(CHUNKS - 1):
        await send(block)
    await send({"type": "http.response.body", "body": CHUNK})
