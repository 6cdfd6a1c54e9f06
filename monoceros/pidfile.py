"""The master's pidfile: written at start, removed at exit, refused if another master is alive."""

from __future__ import annotations

import contextlib
import os
import tempfile

__all__ = ["Pidfile", "PidfileError"]


class PidfileError(Exception):
    """The pidfile names a live process or cannot be written; one readable line."""


class Pidfile:
    """A pidfile at ``path``, written atomically (temp file + rename)."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.pid = 0

    def create(self, pid: int) -> None:
        """Write ``pid``; refuse when the file names another live process."""
        other = self.read()
        if other and other != pid and _alive(other):
            raise PidfileError(f"pidfile {self.path}: already running on PID {other}")
        self.pid = pid
        self._write(pid)

    def _write(self, pid: int) -> None:
        directory = os.path.dirname(self.path)
        try:
            fd, tmp = tempfile.mkstemp(prefix=".monoceros-pid-", dir=directory)
            with os.fdopen(fd, "w") as f:
                f.write(f"{pid}\n")
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except OSError as exc:
            raise PidfileError(f"pidfile {self.path}: {exc.strerror}") from None

    def rename(self, path: str) -> None:
        """Move to a new path (HUP with a changed pidfile setting)."""
        self.unlink()
        self.path = os.path.abspath(path)
        self._write(self.pid)

    def read(self) -> int:
        """The pid in the file, or 0."""
        try:
            with open(self.path) as f:
                return int(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    def unlink(self) -> None:
        """Remove the file if it still names this process."""
        with contextlib.suppress(OSError):
            if self.read() == self.pid:
                os.unlink(self.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
