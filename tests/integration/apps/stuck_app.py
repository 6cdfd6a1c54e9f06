"""Requests that hang where a timeout report must find them: in a Python function of the app
(``stuck_in_app``), or in C code that no Python signal handler can interrupt (``stuck_in_c``).

``app`` is the WSGI application, ``asgi_app`` the ASGI one; both answer ``/pid``. The hanging
routes create the file named by ``?started=`` once they run, so a test waits for that instead
of sleeping.
"""

from __future__ import annotations

import ctypes
import os
import time
from urllib.parse import parse_qs


def stuck_in_app(seconds: float) -> None:
    time.sleep(seconds)  # a Python signal handler runs here: SIGABRT interrupts the sleep


def stuck_in_c() -> None:
    # A second lock of a normal pthread mutex waits in futex() forever, and a signal does not
    # end that wait (unlike sleep(), select() or a Python lock): no Python handler ever runs.
    mutex = ctypes.create_string_buffer(64)  # zeroed: PTHREAD_MUTEX_INITIALIZER (glibc)
    libc = ctypes.CDLL(None)
    libc.pthread_mutex_lock(mutex)
    libc.pthread_mutex_lock(mutex)  # never returns


def _serve(path: str, query: str) -> bytes:
    params = parse_qs(query)
    started = params.get("started", [""])[0]
    if started:
        open(started, "w").close()
    if path == "/python":
        stuck_in_app(float(params.get("s", ["30"])[0]))
    elif path == "/c":
        stuck_in_c()
    return str(os.getpid()).encode()


def app(environ, start_response):
    body = _serve(environ["PATH_INFO"], environ.get("QUERY_STRING", ""))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = _serve(scope["path"], scope["query_string"].decode("latin-1"))  # blocks the loop
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
