"""The WSGI application the integration tests serve (routed by PATH_INFO)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from urllib.parse import parse_qs
from wsgiref.validate import validator

_BREAK_IF = os.environ.get("APP_BREAK_IF")  # a file whose existence breaks the next import
if _BREAK_IF and os.path.exists(_BREAK_IF):
    raise RuntimeError("app.py broken on purpose: the APP_BREAK_IF file exists")
_GATE = os.environ.get("APP_IMPORT_GATE")  # a file that holds the import while it exists
_gate_deadline = time.monotonic() + 30
while _GATE and os.path.exists(_GATE) and time.monotonic() < _gate_deadline:
    time.sleep(0.01)

VERSION = os.environ.get("APP_VERSION", "v1")
#: memory a /grow request keeps for the worker's whole life
KEPT = []
#: the worker serving this copy of the app, when a test's post_worker_init hook sets it
WORKER = None


def _q(environ, name, default):
    return parse_qs(environ.get("QUERY_STRING", "")).get(name, [default])[0]


def _reply(start_response, body, status="200 OK", ctype="text/plain"):
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def _plain(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"validated ", environ["PATH_INFO"].encode("latin-1")]


validated = validator(_plain)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/pid":
        return _reply(start_response, str(os.getpid()).encode())
    if path == "/version":
        return _reply(start_response, VERSION.encode())
    if path == "/echo":
        inp = environ["wsgi.input"]
        h = hashlib.sha256()
        n = 0
        while True:
            chunk = inp.read(65536)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        return _reply(
            start_response,
            json.dumps({"len": n, "sha256": h.hexdigest()}).encode(),
            ctype="application/json",
        )
    if path == "/echo-exact":  # reads exactly CONTENT_LENGTH bytes, as frameworks do
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        return _reply(start_response, body, ctype="application/octet-stream")
    if path.startswith("/env"):  # /env and anything below it: the environ as JSON
        data = {k: v for k, v in environ.items() if isinstance(v, str)}
        data["wsgi.url_scheme"] = environ["wsgi.url_scheme"]
        return _reply(start_response, json.dumps(data).encode(), ctype="application/json")
    if path.startswith("/validate"):
        return validated(environ, start_response)
    if path == "/slow":
        _mark_started(_q(environ, "started", ""))
        time.sleep(float(_q(environ, "s", "1")))
        return _reply(start_response, b"slept")
    if path == "/hold":
        return _reply(start_response, _hold(_q(environ, "name", "hold")))
    if path == "/grow":  # keeps ?mib= more MiB of resident memory until the worker exits
        KEPT.append(b"\1" * (int(_q(environ, "mib", "1")) << 20))
        return _reply(start_response, str(os.getpid()).encode())
    if path == "/spike":  # holds ?mib= MiB while it waits as /hold does, then lets them go
        ballast = b"\1" * (int(_q(environ, "mib", "1")) << 20)
        body = _hold(_q(environ, "name", "spike"))
        del ballast
        return _reply(start_response, body)
    if path == "/started-then-slow":  # the head and a first piece leave, then it hangs
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _started_then_slow(float(_q(environ, "s", "1")))
    if path == "/stream":
        mib = int(_q(environ, "mib", "1"))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        block = bytes(range(256)) * 256
        return (block for _ in range(mib * 16))
    if path == "/file":
        mib = int(_q(environ, "mib", "1"))
        f = tempfile.TemporaryFile()
        block = bytes(range(256)) * 256
        for _ in range(mib * 16):
            f.write(block)
        f.seek(0)
        start_response("200 OK", [("Content-Length", str(mib * 1024 * 1024))])
        return environ["wsgi.file_wrapper"](f, 65536)
    if path == "/raise":
        raise RuntimeError("deliberate failure")
    if path == "/close-stdout":  # an app that closes its stdout (?how=file|fd)
        return _reply(start_response, _close_stdout(_q(environ, "how", "file")))
    if path == "/hold-fds":  # takes every free descriptor for ?s= seconds (a thread gives
        return _reply(start_response, _hold_fds(float(_q(environ, "s", "2"))))  # them back)
    if path == "/print":
        print("printed by the app")
        sys.stdout.flush()
        return _reply(start_response, b"printed")
    return _reply(start_response, b"Hello, World!")


def _close_stdout(how):
    """Close stdout the way some applications do: the file object, or descriptor 1 with
    something still in the buffer."""
    if how == "fd":
        sys.stdout.write("left in the buffer")
        os.close(1)
    else:
        sys.stdout.close()
    return f"closed {os.getpid()}".encode()


def _hold_fds(seconds):
    """Take every free descriptor for ``seconds`` (from a thread, so the reply leaves first),
    also those freed meanwhile (a blocked accept() holds one number while it waits, and frees
    it whenever it times out)."""
    import threading

    def hold():
        deadline = time.monotonic() + seconds
        held = []
        while time.monotonic() < deadline and len(held) < 100_000:
            try:
                held.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                time.sleep(0.001)
        for fd in held:
            os.close(fd)

    threading.Thread(target=hold, daemon=True).start()
    return b"holding"


def _mark_started(path):
    """Create ``path`` (a test's marker that the request reached the application)."""
    if path:
        open(path, "w").close()


def _write_atomically(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def _hold(name):
    """Say where it runs (HOLD_DIR/NAME.pid), then wait (30 s at most) for HOLD_DIR/NAME.go; if
    that says "after-stop", wait further until the worker serving it was told to stop."""
    where = os.path.join(os.environ["HOLD_DIR"], name)
    _write_atomically(where + ".pid", str(os.getpid()))
    deadline = time.monotonic() + 30
    while not os.path.exists(where + ".go") and time.monotonic() < deadline:
        time.sleep(0.01)
    with open(where + ".go") as f:
        after_stop = f.read() == "after-stop"
    while after_stop and WORKER.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    return str(os.getpid()).encode()


def _started_then_slow(seconds):
    yield b"first piece\n"
    time.sleep(seconds)
    yield b"never sent if the worker is aborted\n"


def factory(greeting="Hello"):
    """An application factory taking a literal argument."""

    def inner(environ, start_response):
        return _reply(start_response, greeting.encode())

    return inner
