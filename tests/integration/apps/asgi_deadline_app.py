"""An ASGI app for request_timeout: routes that hang, one that streams then hangs, one that
swallows its cancellation, and a WebSocket echo (routed by path)."""

from __future__ import annotations

import asyncio
import os


async def _start(send, status=200, extra=()):
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), *extra],
        }
    )


async def wait_for_ever():
    await asyncio.sleep(3600)  # the line the cancelled request's traceback points to


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text") or "?"})
    path = scope["path"]
    if path == "/hang":
        await wait_for_ever()
    elif path == "/stream-then-hang":
        await _start(send)
        await send({"type": "http.response.body", "body": b"first part", "more_body": True})
        await wait_for_ever()
    elif path == "/swallow":
        try:
            await wait_for_ever()
        except asyncio.CancelledError:
            return  # returns without a response, as if nothing happened
    await _start(send)
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
