"""``--reload``: watch the application's source files and report the first one that changes.

Linux inotify (through ctypes, no extra package) when available; polling file modification times
once a second otherwise. The worker runs a watcher in a daemon thread and exits when it fires, so
the master starts a fresh worker that imports the new code.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import select
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable

__all__ = ["Reloader", "module_files"]

_IN_MODIFY = 0x002
_IN_ATTRIB = 0x004
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_DIR_MASK = _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE | _IN_MODIFY | _IN_ATTRIB
_EVENT = struct.Struct("iIII")


def module_files() -> set[str]:
    """The source files of every imported module that lives outside the standard library."""
    stdlib = {os.path.dirname(os.__file__)}
    files = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not path.endswith((".py", ".pyc")):
            continue
        if path.endswith(".pyc"):
            path = path[:-1]
        path = os.path.abspath(path)
        if any(path.startswith(prefix + os.sep) for prefix in stdlib) or "site-packages" in path:
            continue
        if os.path.exists(path):
            files.add(path)
    return files


class Reloader(threading.Thread):
    """Calls ``callback(path)`` once, from its own thread, when a watched file changes."""

    def __init__(
        self,
        files: Iterable[str],
        callback: Callable[[str], None],
        engine: str = "auto",
        interval: float = 1.0,
    ) -> None:
        super().__init__(name="monoceros-reloader", daemon=True)
        self.files = {os.path.abspath(f) for f in files}
        self.callback = callback
        self.interval = interval
        self.engine = self._choose(engine)
        #: set up by start(): the inotify descriptor and its watched directories (-1: polling),
        #: or the modification times polling compares with
        self._inotify_fd = -1
        self._dirs: dict[int, str] = {}
        self._before: dict[str, float] = {}

    @staticmethod
    def _choose(engine: str) -> str:
        if engine == "poll":
            return "poll"
        if _libc_inotify() is not None:
            return "inotify"
        if engine == "inotify":
            raise RuntimeError("reload_engine = 'inotify' but inotify is not available here")
        return "poll"

    def start(self) -> None:
        """Set the watch up now, in the caller's thread, then watch from the reloader's own: a
        file saved once this returns is seen (the thread may start a while later)."""
        if self.engine == "inotify":
            self._inotify_fd, self._dirs = self._add_watches()
        if self._inotify_fd < 0:
            self._before = self._mtimes()
        super().start()

    def run(self) -> None:
        """Watch until a file changes, then call the callback once."""
        changed = self._watch_inotify() if self._inotify_fd >= 0 else self._watch_poll()
        if changed:
            self.callback(changed)

    def _mtimes(self) -> dict[str, float]:
        out = {}
        for path in self.files:
            try:
                out[path] = os.stat(path).st_mtime
            except OSError:
                out[path] = -1.0
        return out

    def _watch_poll(self) -> str | None:
        before = self._before
        while True:
            time.sleep(self.interval)
            for path, mtime in self._mtimes().items():
                if before.get(path) != mtime:
                    return path

    def _add_watches(self) -> tuple[int, dict[int, str]]:
        """An inotify descriptor watching the files' directories (-1 if inotify fails)."""
        libc = _libc_inotify()
        assert libc is not None
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        dirs: dict[int, str] = {}
        if fd < 0:
            return fd, dirs
        # Watch directories, not files: editors replace files by renaming over them.
        for directory in {os.path.dirname(f) for f in self.files}:
            wd = libc.inotify_add_watch(fd, os.fsencode(directory), _DIR_MASK)
            if wd >= 0:
                dirs[wd] = directory
        return fd, dirs

    def _watch_inotify(self) -> str | None:
        fd, dirs = self._inotify_fd, self._dirs
        try:
            while True:
                select.select([fd], [], [])
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                offset = 0
                while offset + _EVENT.size <= len(data):
                    wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
                    raw = data[offset + _EVENT.size : offset + _EVENT.size + length]
                    offset += _EVENT.size + length
                    name = raw.split(b"\0", 1)[0].decode(errors="surrogateescape")
                    path = os.path.join(dirs.get(wd, ""), name)
                    if path in self.files:
                        return path
        finally:
            os.close(fd)


@functools.cache
def _libc_inotify() -> ctypes.CDLL | None:
    """libc with the inotify functions, or None where there is no inotify."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):
        return None
    return libc
