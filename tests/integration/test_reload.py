"""--reload: editing the application's source restarts the workers with the new code."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Server, wait_for

APP = """
def app(environ, start_response):
    body = b"{text}"
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"""


def body_or_none(srv: Server) -> bytes | None:
    try:
        st, _, body = srv.request("/", timeout=3)
        return body if st == 200 else None
    except OSError:
        return None


@pytest.mark.parametrize("engine", ["auto", "poll"])
def test_editing_the_app_reloads_it(
    server: Callable[..., Server], workdir: Path, engine: str
) -> None:
    src = workdir / f"devapp_{engine}.py"
    src.write_text(APP.format(text="one"))
    srv = server(
        ["--reload", "--reload-engine", engine, "--chdir", str(workdir), "--workers", "1"],
        app=f"devapp_{engine}:app",
    )
    assert srv.get_ok("/") == b"one"
    time.sleep(1.1)  # a new mtime, even on coarse filesystems
    src.write_text(APP.format(text="two"))
    assert wait_for(lambda: body_or_none(srv) == b"two", 15), srv.log()
    assert f"Worker reloading: {src} modified" in srv.log()


def test_a_syntax_error_waits_for_the_fix(server: Callable[..., Server], workdir: Path) -> None:
    src = workdir / "devapp_fix.py"
    src.write_text(APP.format(text="one"))
    srv = server(["--reload", "--chdir", str(workdir), "--workers", "1"], app="devapp_fix:app")
    assert srv.get_ok("/") == b"one"
    time.sleep(1.1)  # a new mtime: the scenario, not a wait for the server
    src.write_text("def app(:\n")  # broken
    assert wait_for(lambda: "Waiting for a change" in srv.log(), 15), srv.log()
    assert srv.proc.poll() is None  # the master did not give up
    time.sleep(1.1)  # a new mtime again
    src.write_text(APP.format(text="fixed"))
    assert wait_for(lambda: body_or_none(srv) == b"fixed", 15), srv.log()
