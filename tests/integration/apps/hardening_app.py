"""WSGI and ASGI applications for the integrity tests (issue 18): heads an application should
not be able to send, the mount point as the application sees it, and a path that is logged."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

#: case -> (PEP 3333 status, headers, body) the application tries to send
HEADS = {
    "ok": ("200 OK", [("Content-Type", "text/plain")], b"fine"),
    "bare-status": ("200", [("Content-Type", "text/plain")], b"bare"),
    "nul-value": ("200 OK", [("X-Bad", "a\x00b")], b"x"),
    "esc-value": ("200 OK", [("X-Bad", "a\x1b[31mb")], b"x"),
    "del-value": ("200 OK", [("X-Bad", "a\x7fb")], b"x"),
    "vt-value": ("200 OK", [("X-Bad", "a\x0bb")], b"x"),
    "tab-value": ("200 OK", [("X-Tab", "a\tb"), ("X-Obs", "caf\xe9")], b"tab"),
    "ctl-reason": ("200 O\x1bK", [("Content-Type", "text/plain")], b"x"),
    "negative-length": ("200 OK", [("Content-Length", "-5")], b"hello"),
}


def _case(query: str) -> str:
    return parse_qs(query).get("case", ["ok"])[0]


def wsgi(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/raise") or path.startswith("/mounted/raise"):
        raise RuntimeError("deliberate failure")
    if path == "/head":
        status, headers, body = HEADS[_case(environ.get("QUERY_STRING", ""))]
        start_response(status, list(headers))
        return [body]
    body = json.dumps({"SCRIPT_NAME": environ["SCRIPT_NAME"], "PATH_INFO": path, "pid": 0}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    path = scope["path"]
    if path.startswith("/raise"):
        raise RuntimeError("deliberate failure")
    if path == "/head":
        status, headers, body = HEADS[_case(scope["query_string"].decode("latin-1"))]
        await send(
            {
                "type": "http.response.start",
                "status": int(status[:3]),
                "headers": [(n.encode(), v.encode("latin-1")) for n, v in headers],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    body = json.dumps({"root_path": scope["root_path"], "path": path}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
