"""Worker liveness through a shared memory word: no file, no system call per beat.

gunicorn's workers ``utime`` a temp file, which can block on a slow or full disk. Here the
master maps one anonymous shared page per worker before forking; the worker stores the monotonic
clock in it and the master reads it. CLOCK_MONOTONIC is system-wide, so the two processes agree.

The master must never see a torn or cleared value while the worker writes: ``struct.pack_into``
clears its target bytes before it writes them, so a reader in another process could see 0.0 and
take a busy worker for a hung one. Each value is therefore one naturally aligned 8-byte slot
written and read through a ``memoryview`` cast to doubles, which CPython copies with a single
fixed-size ``memcpy`` (one store, one load on every 64-bit platform). On top of that the master's
reads confirm themselves (two equal loads in a row) and a beat never goes backwards, so even a
platform whose 8-byte stores are not atomic cannot make a live worker look silent.
"""

from __future__ import annotations

import mmap
import time

__all__ = ["Heartbeat"]

#: [0]: last beat; [1]: boot completed at (0.0 while booting); [2]: 1.0 once the master retired
#: the worker and keeps its listeners open
_SLOTS = 3
_SLOT_SIZE = 8
_CONFIRM_TRIES = 8


class Heartbeat:
    """One worker's heartbeat slot, created in the master and inherited by the forked worker."""

    __slots__ = ("_map", "_seen", "_slots")

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, _SLOTS * _SLOT_SIZE)
        self._slots = memoryview(self._map).cast("d")
        now = time.monotonic()
        self._slots[0] = now
        #: the latest beat the master has read (master side): beats only move forward
        self._seen = now

    def beat(self) -> float:
        """Record that the worker is alive now (worker side): one aligned 8-byte store.
        Returns that ``time.monotonic()``, for a caller timing something else by it."""
        self._slots[0] = now = time.monotonic()
        return now

    @property
    def beat_slot(self) -> memoryview[float]:
        """The slot :meth:`beat` stores into, for a compiled loop that beats without a call
        (:meth:`monoceros.workers.request_path.RequestPath.accept_loop`): it stores
        ``time.monotonic()`` at index 0, as :meth:`beat` does, and nothing else."""
        return self._slots

    def booted(self) -> None:
        """Record that the worker finished booting and serves requests (worker side)."""
        now = time.monotonic()
        self._slots[0] = now
        self._slots[1] = now

    def last_beat(self) -> float:
        """Monotonic time of the last beat (master side); never earlier than one read before."""
        self._seen = max(self._seen, self._confirmed_read(0))
        return self._seen

    def is_booted(self) -> bool:
        """Whether the worker reported a completed boot (master side)."""
        return self._confirmed_read(1) > 0.0

    def _confirmed_read(self, index: int) -> float:
        """A value read twice in a row with the same result (bounded: a writer may be busy)."""
        slots = self._slots
        value = slots[index]
        for _ in range(_CONFIRM_TRIES):
            again = slots[index]
            if again == value:
                break
            value = again
        return float(value)

    def keep_listeners(self) -> None:
        """Record, before TERM retires the worker, that the master keeps every listener of the
        worker open (master side): the connections queued on them are not the worker's to
        serve on its way out, the other workers will take them."""
        self._slots[2] = 1.0

    def listeners_kept(self) -> bool:
        """Whether the master retired the worker with its listeners kept open (worker side)."""
        return float(self._slots[2]) > 0.0

    def close(self) -> None:
        """Release the mapping (master side, after the worker was reaped)."""
        self._slots.release()
        self._map.close()
