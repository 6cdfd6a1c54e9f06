"""The ASGI application the integration tests serve (routed by path)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from urllib.parse import parse_qs

EVENTS = os.environ.get("ASGI_EVENTS")  # a file the lifespan events are appended to
FAIL_STARTUP = os.environ.get("ASGI_FAIL_STARTUP")
BLOCK = bytes(range(256)) * 256
#: memory a /grow request keeps for the worker's whole life
KEPT = []
#: the worker serving this copy of the app, when a test's post_worker_init hook sets it
WORKER = None


def _record(line: str) -> None:
    if EVENTS:
        with open(EVENTS, "a") as f:
            f.write(f"{line} {os.getpid()}\n")


def _q(scope, name, default):
    return parse_qs(scope["query_string"].decode("latin-1")).get(name, [default])[0]


async def _hold(name):
    """Say where it runs (HOLD_DIR/NAME.pid), then wait (30 s at most) for HOLD_DIR/NAME.go; if
    that says "after-stop", wait further until the worker serving it was told to stop."""
    where = os.path.join(os.environ["HOLD_DIR"], name)
    with open(where + ".pid.tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(where + ".pid.tmp", where + ".pid")
    deadline = time.monotonic() + 30
    while not os.path.exists(where + ".go") and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    with open(where + ".go") as f:
        after_stop = f.read() == "after-stop"
    while after_stop and WORKER.alive and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return str(os.getpid()).encode()


async def _reply(send, body, status=200, ctype=b"text/plain", extra=()):
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", ctype), *extra],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _jsonable(value):
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if FAIL_STARTUP:
                await send({"type": "lifespan.startup.failed", "message": FAIL_STARTUP})
                return
            scope["state"]["started_by"] = os.getpid()
            _record("startup")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            _record("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def websocket(scope, receive, send):
    assert (await receive())["type"] == "websocket.connect"
    if scope["path"] == "/ws/deny":
        await send({"type": "websocket.close"})
        return
    sub = scope["subprotocols"][0] if scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": sub})
    if scope["path"] == "/ws/scope":
        await send({"type": "websocket.send", "text": json.dumps(_jsonable(scope))})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            _record(f"ws-disconnect-{message['code']}")
            return
        text = message.get("text")
        if text == "close":
            await send({"type": "websocket.close", "code": 4001, "reason": "asked"})
            return
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    if scope["type"] == "websocket":
        return await websocket(scope, receive, send)
    path = scope["path"]
    if path == "/pid":
        return await _reply(send, str(os.getpid()).encode())
    if path == "/echo":  # ?delay=S sleeps between reads: a slow reader
        delay = float(_q(scope, "delay", "0"))
        h = hashlib.sha256()
        n = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            h.update(message["body"])
            n += len(message["body"])
            if delay:
                await asyncio.sleep(delay)
            if not message.get("more_body"):
                break
        body = json.dumps({"len": n, "sha256": h.hexdigest()}).encode()
        return await _reply(send, body, ctype=b"application/json")
    if path == "/stream":  # no Content-Length: chunked on HTTP/1.1, close-delimited on uwsgi
        mib = int(_q(scope, "mib", "1"))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")],
            }
        )
        for _ in range(mib * 16):
            await send({"type": "http.response.body", "body": BLOCK, "more_body": True})
        return await send({"type": "http.response.body", "body": b""})
    if path == "/file":  # a known length sent in pieces: app.py's file_wrapper route
        mib = int(_q(scope, "mib", "1"))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % (mib * 1024 * 1024))],
            }
        )
        for _ in range(mib * 16):
            await send({"type": "http.response.body", "body": BLOCK, "more_body": True})
        return await send({"type": "http.response.body", "body": b""})
    if path == "/bytes":  # ?n=N bytes in one body message (so with a Content-Length)
        return await _reply(send, b"b" * int(_q(scope, "n", "100000")))
    if path == "/hello":  # app.py's answer to any other path, Content-Length included
        body = b"Hello, World!"
        return await _reply(send, body, extra=[(b"content-length", b"%d" % len(body))])
    if path == "/version":  # the deployed version (a config's raw_env sets it)
        return await _reply(send, os.environ.get("APP_VERSION", "v1").encode())
    if path == "/slow":
        if _q(scope, "started", ""):  # a test's marker that the request reached the app
            open(_q(scope, "started", ""), "w").close()
        await asyncio.sleep(float(_q(scope, "s", "1")))
        return await _reply(send, b"slept")
    if path == "/hold":
        return await _reply(send, await _hold(_q(scope, "name", "hold")))
    if path == "/grow":  # keeps ?mib= more MiB of resident memory until the worker exits
        KEPT.append(b"\1" * (int(_q(scope, "mib", "1")) << 20))
        return await _reply(send, str(os.getpid()).encode())
    if path == "/spike":  # holds ?mib= MiB while it waits as /hold does, then lets them go
        ballast = b"\1" * (int(_q(scope, "mib", "1")) << 20)
        body = await _hold(_q(scope, "name", "spike"))
        del ballast
        return await _reply(send, body)
    if path == "/block":  # blocks the whole event loop
        time.sleep(float(_q(scope, "s", "1")))
        return await _reply(send, b"blocked")
    if path == "/disconnect":  # reads the body, records the disconnect it waits for, answers
        tag = _q(scope, "tag", "")
        size = 0
        while (message := await receive())["type"] != "http.disconnect":
            size += len(message["body"])
            if not message.get("more_body"):
                _record(f"http-waiting{tag} {size}")
        _record(f"http-disconnect{tag}")
        await _reply(send, b"too late")  # a send after the disconnect is ignored
        _record(f"http-answered{tag}")
        return
    if path == "/sse":  # server-sent events every ?every=S seconds until the client leaves
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"x-accel-buffering", b"no")],
            }
        )
        await receive()  # the (empty) body
        every = float(_q(scope, "every", "30"))
        n = 0
        while True:
            await send(
                {"type": "http.response.body", "body": b"data: %d\n\n" % n, "more_body": True}
            )
            n += 1
            try:
                message = await asyncio.wait_for(receive(), every)
            except asyncio.TimeoutError:
                continue
            if message["type"] == "http.disconnect":
                _record("sse-stopped")
                return
    if path == "/raise":
        raise RuntimeError("deliberate failure")
    if path == "/close-stdout":  # an app that closes its stdout (?how=file|fd)
        if _q(scope, "how", "file") == "fd":
            sys.stdout.write("left in the buffer")
            os.close(1)
        else:
            sys.stdout.close()
        return await _reply(send, f"closed {os.getpid()}".encode())
    if path == "/inject":
        return await _reply(send, b"x", extra=[(b"x-bad", b"a\r\nSet-Cookie: evil=1")])
    if path == "/status":
        code = int(_q(scope, "code", "200"))
        await send({"type": "http.response.start", "status": code, "headers": []})
        return await send({"type": "http.response.body", "body": b"never for 204/304"})
    if path == "/state":
        return await _reply(send, json.dumps(scope.get("state")).encode())
    # anything else: the scope as JSON
    data = _jsonable({k: v for k, v in scope.items() if k != "state"})
    return await _reply(send, json.dumps(data).encode(), ctype=b"application/json")
