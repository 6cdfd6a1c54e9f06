"""--reload: editing the application's source restarts the workers with the new code."""

from __future__ import annotations

import os
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


def edit(src: Path, text: str) -> None:
    """Write ``text`` to ``src`` with a modification time 2 s after the last one: what an edit
    made seconds later looks like, even on a filesystem with coarse times (no sleep)."""
    before = src.stat()
    src.write_text(text)
    os.utime(src, ns=(before.st_atime_ns, before.st_mtime_ns + 2_000_000_000))


def inotify_watches(pid: int) -> int:
    """How many inotify watches process ``pid`` holds (Linux /proc fdinfo)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    count += f.read().count("inotify wd:")
        except OSError:  # closed meanwhile
            pass
    return count


def watching(srv: Server) -> None:
    """Wait until the worker's reloader watches (inotify: the engine ``auto`` picks on Linux):
    an edit made before would go unseen."""
    assert wait_for(lambda: any(inotify_watches(pid) for pid in srv.workers()), 10), srv.log()


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
    if engine == "auto":
        watching(srv)  # (poll: its first look is taken as the thread starts, before serving)
    edit(src, APP.format(text="two"))
    assert wait_for(lambda: body_or_none(srv) == b"two", 15), srv.log()
    assert f"Worker reloading: {src} modified" in srv.log()


def test_a_syntax_error_waits_for_the_fix(server: Callable[..., Server], workdir: Path) -> None:
    src = workdir / "devapp_fix.py"
    src.write_text(APP.format(text="one"))
    srv = server(["--reload", "--chdir", str(workdir), "--workers", "1"], app="devapp_fix:app")
    assert srv.get_ok("/") == b"one"
    watching(srv)
    edit(src, "def app(:\n")  # broken
    assert wait_for(lambda: "Waiting for a change" in srv.log(), 15), srv.log()
    assert srv.proc.poll() is None  # the master did not give up
    watching(srv)  # the log line comes before the worker's reloader starts
    edit(src, APP.format(text="fixed"))
    assert wait_for(lambda: body_or_none(srv) == b"fixed", 15), srv.log()


@pytest.mark.parametrize("engine", ["inotify", "poll"])
def test_a_file_saved_as_start_returns_is_seen(tmp_path: Path, engine: str) -> None:
    """The watch is set up before Reloader.start() returns (the worker logs that it waits for a
    change, or serves, right after): an edit made at once is not missed by a thread that had
    not looked yet."""
    from monoceros.reloader import Reloader

    seen: list[str] = []
    for attempt in range(5):  # an old race lost once in five would show
        src = tmp_path / f"mod{attempt}.py"
        src.write_text("A = 1\n")
        reloader = Reloader([str(src)], seen.append, engine, interval=0.05)
        reloader.start()
        edit(src, "A = 2\n")
        assert wait_for(lambda n=attempt: len(seen) == n + 1, 5), (engine, attempt, seen)
        assert seen[-1] == str(src)
