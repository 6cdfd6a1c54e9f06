"""Worker liveness through a shared memory word: no file, no system call per beat.

gunicorn's workers ``utime`` a temp file, which can block on a slow or full disk. Here the
master maps one anonymous shared page per worker before forking; the worker stores the monotonic
clock in it and the master reads it. CLOCK_MONOTONIC is system-wide, so the two processes agree.
"""

from __future__ import annotations

import mmap
import struct
import time

__all__ = ["Heartbeat"]

_FMT = struct.Struct("=dd")  # last beat, boot completed at (0.0 while booting)
_BEAT = struct.Struct("=d")
#: after them: 1.0 once the master retired the worker and keeps its listeners open
_KEPT = struct.Struct("=d")
_KEPT_AT = _FMT.size
_SIZE = _FMT.size + _KEPT.size


class Heartbeat:
    """One worker's heartbeat slot, created in the master and inherited by the forked worker."""

    __slots__ = ("_map",)

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, _SIZE)
        _FMT.pack_into(self._map, 0, time.monotonic(), 0.0)

    def beat(self) -> None:
        """Record that the worker is alive now (worker side)."""
        _BEAT.pack_into(self._map, 0, time.monotonic())

    def booted(self) -> None:
        """Record that the worker finished booting and serves requests (worker side)."""
        now = time.monotonic()
        _FMT.pack_into(self._map, 0, now, now)

    def last_beat(self) -> float:
        """Monotonic time of the last beat (master side)."""
        return float(_BEAT.unpack_from(self._map, 0)[0])

    def is_booted(self) -> bool:
        """Whether the worker reported a completed boot (master side)."""
        return float(_FMT.unpack_from(self._map, 0)[1]) > 0.0

    def keep_listeners(self) -> None:
        """Record, before TERM retires the worker, that the master keeps every listener of the
        worker open (master side): the connections queued on them are not the worker's to
        serve on its way out, the other workers will take them."""
        _KEPT.pack_into(self._map, _KEPT_AT, 1.0)

    def listeners_kept(self) -> bool:
        """Whether the master retired the worker with its listeners kept open (worker side)."""
        return float(_KEPT.unpack_from(self._map, _KEPT_AT)[0]) > 0.0

    def close(self) -> None:
        """Release the mapping (master side, after the worker was reaped)."""
        self._map.close()
