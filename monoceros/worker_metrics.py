"""Request counts of one worker in shared memory: written by the worker, read by the master.

Like :mod:`monoceros.heartbeat`, the master maps one anonymous shared block per worker before
forking (the :class:`~monoceros.workers.base.Worker` object creates it), so counting costs no
system call: each request makes two method calls, :meth:`Recorder.begin` and
:meth:`Recorder.end`, which store into aligned 8-byte slots (a counter is one load and one
store) and write the request's description. Where a C compiler was present at install, the
stores are made by ``monoceros._counting`` (``monoceros/_counting.c``, about 2.4k instructions
a request less than the ``memoryview`` items and ``struct.pack_into`` of its Python twins,
:func:`_count` and :func:`_pack_slot`, which stand in for it otherwise).

Its fixed part also counts the worker's error-log lines by level (for statsd's
``gunicorn.log.<level>``, written by :class:`monoceros.logs.LevelCounter` under its lock).
The block holds *counter sections*: per protocol (HTTP, uWSGI), a counter per status code 0-999,
the duration histogram's bucket counts (not cumulative) and the duration sum. A single-threaded
worker has one section; the gthread worker one per pool thread, plus one for the responses
counted with :meth:`WorkerMetrics.answered` (under a lock), so no thread ever updates a
counter another thread writes, and a request costs no lock. The master adds the sections up.
Then comes one *request slot* per
request that can be in flight at once (1 for sync, ``threads`` for gthread, up to
:data:`MAX_SLOTS` for asgi): the method (cut to 16 bytes), the path (cut to 224 bytes) and
the request's start (monotonic; 0.0 while free). A request that finds every slot taken is
counted all the same, as an "overflow" in-flight request without a description.

Single writer per counter: the sync and asgi workers write from one thread, each gthread pool
thread into its own section (request slots are handed out from a list, whose ``pop`` and
``append`` need no lock).

The master reads with :meth:`WorkerMetrics.snapshot`. A request slot is read start, text, start
again: ``end`` zeroes the start before a later ``begin`` rewrites the text, so two equal
non-zero starts mean the text belongs to them.
"""

from __future__ import annotations

import mmap
import struct
import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "BUCKETS",
    "LOG_COUNTED",
    "MAX_SLOTS",
    "PROTOCOLS",
    "RESTART_REASONS",
    "TEXT_SIZE",
    "CurrentRequest",
    "Totals",
    "WorkerMetrics",
    "WorkerSample",
    "Recorder",
    "metrics_for",
]

#: protocol label values, in the order of the block's sections
PROTOCOLS: Final = ("http", "uwsgi")
#: upper bounds of the duration histogram's finite buckets, in seconds (+Inf follows)
#: (not Final: mypyc leaves a Final tuple of floats unset for the module's own top level)
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: why a worker was replaced: every label value of monoceros_worker_restarts_total
RESTART_REASONS: Final = ("crash", "timeout", "max_requests", "memory", "lifetime", "reload")
#: error-log levels counted for statsd's gunicorn.log.<level> (exception: an error with a traceback)
LOG_COUNTED: Final = ("critical", "error", "warning", "exception")
#: bytes of ``METHOD path`` kept per request slot (longer ones are cut)
TEXT_SIZE: Final = 256
#: request slots of an asgi worker at most (more requests in flight are counted, not described)
MAX_SLOTS: Final = 256

_STATUSES = 1000
_NBUCKETS = len(BUCKETS) + 1
# slot indices (8 bytes each) of the fixed part
_OVERFLOW = 0  # requests in flight that found no free request slot
_EXIT_REASON = 1  # 1 + index in RESTART_REASONS once the worker says why it exits, else 0
_LOGS = 2  # error-log lines by LOG_COUNTED level (4 slots)
_FIXED = 8  # the first counter section starts here
# within a counter section: HTTP counters, uWSGI counters, histograms, the two sums
_UWSGI = _STATUSES
_HIST = 2 * _STATUSES
_SUMS = _HIST + 2 * _NBUCKETS
_SECTION = _SUMS + 2
# a request slot, TEXT_SIZE bytes: the method and the path, each padded with NULs, then the
# start (d); written by one pack_into, which clears the slot first (the start reads 0.0, "free",
# for that moment)
_REQ_SHIFT = 5
_REQ_SLOTS = 1 << _REQ_SHIFT
_METHOD_MAX = 16
_TEXT_MAX = TEXT_SIZE - 16
_START = _TEXT_MAX // 8
# Final: the compiled module reads them as C statics, not from its globals dict per request
_PACK_SLOT: Final = struct.Struct(f"@{_METHOD_MAX}s{_TEXT_MAX - _METHOD_MAX}sd").pack_into
_monotonic: Final = time.monotonic
#: the common methods' bytes (a lookup is cheaper than an encode)
_METHODS: Final = {
    m: m.encode() for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
}
_FIRST_BOUND: Final = BUCKETS[0]
_READ_TRIES = 8
_SLOT_BYTES: Final = _TEXT_MAX + 8


def _count(
    q: memoryview[int],
    d: memoryview[float],
    section: tuple[int, ...],
    status: int,
    duration: float,
    start_at: int,
) -> None:
    """Count one response in a counter ``section`` (where its status counters, histogram and
    duration sum are): its status, its duration's histogram bucket and the sum; then free the
    request slot (its start 0.0, last: a worker seen idle has counted its responses). The C twin
    is ``monoceros._counting.count`` (pinned by tests/unit/test_counting_native.py)."""
    # every argument checked before the first store, as the C twin does (and the same whether
    # this module runs compiled, which checks the annotations at the call, or interpreted)
    if not isinstance(section, tuple):
        raise TypeError("count: the section must be a tuple of 3 ints")
    counts, histogram, total = section
    if not (
        isinstance(counts, int)
        and isinstance(histogram, int)
        and isinstance(total, int)
        and isinstance(status, int)
        and isinstance(start_at, int)
    ):
        raise TypeError("count: an index must be an int")
    if not isinstance(duration, (float, int)):
        raise TypeError("count: the duration must be a float")
    try:  # an int too large for a float is refused as compiled code refuses it at the call
        duration = float(duration)
    except OverflowError:
        raise TypeError("count: the duration must be a float") from None
    if q.itemsize != 8 or d.itemsize != 8 or q.readonly or d.readonly:
        raise TypeError("count: expected writable memoryviews of 8-byte items")
    q[counts + status] += 1
    if duration > _FIRST_BOUND:  # the first bucket is derived: total minus the others
        q[histogram + bisect_left(BUCKETS, duration)] += 1
    d[total] += duration
    d[start_at] = 0.0


def _pack_slot(block: mmap.mmap, offset: int, method: str, path: str | bytes, start: float) -> bool:
    """Write a request slot at ``offset``: True, or False with nothing written when ``method``
    or ``path`` is a str that is not latin-1. The C twin is ``monoceros._counting.pack_slot``."""
    if (
        method.__class__ is not str
        or (path.__class__ is not str and path.__class__ is not bytes)
        or not isinstance(offset, int)
        or not isinstance(start, (float, int))
    ):
        raise TypeError(
            "pack_slot: expected an int offset, a str method, a str or bytes path and a float start"
        )
    try:  # an int too large for a float is refused as compiled code refuses it at the call
        start = float(start)
    except OverflowError:
        raise TypeError("pack_slot: the start must be a float") from None
    if offset < 0 or offset > len(block) - _SLOT_BYTES:
        raise ValueError("pack_slot: the slot is outside the block")
    try:
        _PACK_SLOT(
            block,
            offset,
            _METHODS.get(method) or method.encode("latin-1"),
            path.encode("latin-1") if isinstance(path, str) else path,
            start,
        )
    except UnicodeEncodeError:
        return False
    return True


_count_response: Callable[
    [memoryview[int], memoryview[float], tuple[int, ...], int, float, int], None
]
_write_slot: Callable[[mmap.mmap, int, str, str | bytes, float], bool]
try:  # the C twins, where built (and MONOCEROS_PURE is not set)
    from . import _counting

    _count_response = _counting.count
    _write_slot = _counting.pack_slot
except (ImportError, AttributeError):  # not built, or refused
    _count_response = _count
    _write_slot = _pack_slot


@dataclass(frozen=True, slots=True)
class CurrentRequest:
    """A request in flight: its method, path (as sent, maybe cut) and monotonic start."""

    method: str
    path: str
    start: float


@dataclass(slots=True)
class WorkerSample:
    """What one read of a worker's block found (master side)."""

    #: (protocol, status) -> responses sent; only non-zero entries
    counts: dict[tuple[str, int], int]
    #: protocol -> histogram bucket counts (not cumulative, +Inf last)
    buckets: dict[str, list[int]]
    #: protocol -> sum of the request durations, seconds
    sums: dict[str, float]
    #: requests in flight (described or not)
    in_flight: int
    #: the described requests in flight, oldest first
    current: list[CurrentRequest]
    #: why the worker said it exits (a RESTART_REASONS value), else None
    exit_reason: str | None
    #: error-log lines by LOG_COUNTED level; only non-zero entries
    logs: dict[str, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        """Responses sent, every status and protocol."""
        return sum(self.counts.values())


@dataclass(slots=True)
class Totals:
    """Counts summed over workers: the departed workers' total, or a scrape's grand total."""

    counts: dict[tuple[str, int], int] = field(default_factory=dict)
    buckets: dict[str, list[int]] = field(
        default_factory=lambda: {p: [0] * _NBUCKETS for p in PROTOCOLS}
    )
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PROTOCOLS, 0.0))
    #: error-log lines by LOG_COUNTED level
    logs: dict[str, int] = field(default_factory=dict)

    def add(self, other: WorkerSample | Totals) -> None:
        """Add another worker's (or total's) counts to these."""
        for key, value in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + value
        for proto, values in other.buckets.items():
            mine = self.buckets[proto]
            for i, value in enumerate(values):
                mine[i] += value
        for proto, seconds in other.sums.items():
            self.sums[proto] += seconds
        for level, count in other.logs.items():
            self.logs[level] = self.logs.get(level, 0) + count

    def copy(self) -> Totals:
        """An independent copy."""
        out = Totals()
        out.add(self)
        return out


class Recorder:
    """Records the requests of one request slot: those of the sync worker, of one gthread pool
    thread, or one asgi request at a time (:meth:`WorkerMetrics.take`)."""

    __slots__ = ("_d", "_http", "_map", "_offset", "_q", "_start", "_uwsgi")

    def __init__(self, block: WorkerMetrics, slot: int, section: int) -> None:
        self._map = block._map
        self._q = block._q
        self._d = block._d
        first = _FIXED + section * _SECTION  # where this recorder's counter section starts
        #: per protocol: where its status counters, histogram and duration sum are
        # boxed tuples (variable-length to mypyc), passed to the counting call as they are
        self._http: tuple[int, ...] = (first, first + _HIST, first + _SUMS)
        self._uwsgi: tuple[int, ...] = (
            first + _UWSGI,
            first + _HIST + _NBUCKETS,
            first + _SUMS + 1,
        )
        index = block._reqs + (slot << _REQ_SHIFT)
        self._offset = index << 3
        self._start = index + _START

    def begin(self, method: str, path: str | bytes, start: float) -> None:
        """A request started at ``start`` (monotonic). ``method``: latin-1 ``str``;
        ``path``: a WSGI environ's latin-1 ``str``, or bytes."""
        # one call writes method and path (cut or padded with NULs), then the start
        if not _write_slot(self._map, self._offset, method, path, start):
            _PACK_SLOT(
                self._map,
                self._offset,
                method.encode("latin-1", "replace"),
                str(path).encode("latin-1", "replace"),
                start,
            )

    def end(self, start: float, status: int, uwsgi: bool) -> float:
        """The request started at ``start`` was answered with ``status`` (100-999: callers
        check an application's); ``uwsgi``: over the uWSGI protocol. Returns its duration
        (seconds), for the access log."""
        duration = _monotonic() - start
        _count_response(
            self._q, self._d, self._uwsgi if uwsgi else self._http, status, duration, self._start
        )
        return duration

    def abandon(self) -> None:
        """The request ended without a response (the peer left): counted nowhere."""
        self._d[self._start] = 0.0


class _OverflowRecorder(Recorder):
    """Stands in when every request slot is taken (asgi): counts, describes nothing."""

    __slots__ = ()

    def begin(self, method: str, path: str | bytes, start: float) -> None:
        """One more request in flight, without a description."""
        self._q[_OVERFLOW] += 1

    def end(self, start: float, status: int, uwsgi: bool) -> float:
        """Count the response; one request less in flight."""
        self._d[self._start] = start  # the scratch slot: Recorder.end zeroes it
        duration = Recorder.end(self, start, status, uwsgi)
        self._q[_OVERFLOW] -= 1  # after the count, as Recorder.end frees its slot last
        return duration

    def abandon(self) -> None:
        """One request less in flight."""
        self._q[_OVERFLOW] -= 1


class WorkerMetrics:
    """One worker's shared counting block; see the module's docstring."""

    __slots__ = (
        "_bytes",
        "_d",
        "_free",
        "_lock",
        "_map",
        "_overflow",
        "_q",
        "_reqs",
        "_sections",
        "recorders",
    )

    def __init__(self, slots: int = 1, threaded: bool = False) -> None:
        #: threaded: a counter section per recorder, and one for answered() and the overflow
        self._sections = slots + 1 if threaded else 1
        self._reqs = _FIXED + self._sections * _SECTION
        #: one more slot than asked: the overflow recorder's scratch slot, never described
        self._map = mmap.mmap(-1, (self._reqs + (slots + 1) * _REQ_SLOTS) * 8)
        self._q = memoryview(self._map).cast("q")
        self._d = memoryview(self._map).cast("d")
        self._bytes = memoryview(self._map)
        self._lock = threading.Lock() if threaded else None
        #: the request slots' recorders, one per request that can be in flight at once
        self.recorders: list[Recorder] = [
            Recorder(self, i, i if threaded else 0) for i in range(slots)
        ]
        #: free recorders for :meth:`take`, lowest slot last (few pages are touched)
        self._free = self.recorders[::-1]
        self._overflow = _OverflowRecorder(self, slots, self._sections - 1)

    @property
    def slots(self) -> int:
        """How many requests can be described at once."""
        return len(self.recorders)

    # ------------------------------------------------------------------ worker side

    def take(self) -> Recorder:
        """A free recorder for one request (asgi); hand it back with :meth:`give`."""
        free = self._free
        return free.pop() if free else self._overflow

    def give(self, recorder: Recorder) -> None:
        """The request of a recorder from :meth:`take` ended."""
        if recorder is not self._overflow:
            self._free.append(recorder)

    def answered(self, status: int, uwsgi: bool) -> None:
        """Count a response sent without a request reaching the application (a malformed
        request, a refused peer): duration 0."""
        if not 100 <= status <= 999:
            status = 0
        if self._lock is None:
            self._overflow.begin("", b"", 0.0)
            self._overflow.end(time.monotonic(), status, uwsgi)
        else:
            with self._lock:
                self._overflow.begin("", b"", 0.0)
                self._overflow.end(time.monotonic(), status, uwsgi)

    def exiting(self, reason: str) -> None:
        """Say why the worker exits (a :data:`RESTART_REASONS` value), for the master."""
        self._q[_EXIT_REASON] = 1 + RESTART_REASONS.index(reason)

    def logged(self, level: int) -> None:
        """One more error-log line at ``LOG_COUNTED[level]`` (callers serialise: the log
        filter holds a lock)."""
        self._q[_LOGS + level] += 1

    # ------------------------------------------------------------------ master side

    def snapshot(self) -> WorkerSample:
        """Read the whole block (master side)."""
        q = self._q
        d = self._d
        raw = [0] * _SECTION
        sums_raw = [0.0, 0.0]
        for first in range(_FIXED, self._reqs, _SECTION):
            raw = list(map(int.__add__, raw, q[first : first + _SECTION].tolist()))
            sums_raw[0] += float(d[first + _SUMS])
            sums_raw[1] += float(d[first + _SUMS + 1])
        hist = raw[_HIST:_SUMS]
        raw = raw[:_HIST]
        counts: dict[tuple[str, int], int] = {}
        totals = [0] * len(PROTOCOLS)
        for index, value in enumerate(raw):
            if value:
                proto, status = divmod(index, _STATUSES)
                counts[(PROTOCOLS[proto], status)] = value
                totals[proto] += value
        buckets = {}
        for i, proto_name in enumerate(PROTOCOLS):
            values = hist[i * _NBUCKETS : (i + 1) * _NBUCKETS]
            values[0] = max(0, totals[i] - sum(values[1:]))
            buckets[proto_name] = values
        sums = dict(zip(PROTOCOLS, sums_raw, strict=True))
        current = [r for r in map(self._read_slot, range(self.slots)) if r is not None]
        current.sort(key=lambda r: r.start)
        overflow = int(q[_OVERFLOW])
        if overflow < 0:  # a decrement seen before its increment: never negative
            overflow = 0
        reason = int(q[_EXIT_REASON])
        logs = {name: int(q[_LOGS + i]) for i, name in enumerate(LOG_COUNTED) if q[_LOGS + i]}
        return WorkerSample(
            counts,
            buckets,
            sums,
            len(current) + overflow,
            current,
            RESTART_REASONS[reason - 1] if 0 < reason <= len(RESTART_REASONS) else None,
            logs,
        )

    def _read_slot(self, slot: int) -> CurrentRequest | None:
        d = self._d
        index = self._reqs + (slot << _REQ_SHIFT)
        offset = index << 3
        for _ in range(_READ_TRIES):
            start = float(d[index + _START])
            if not start:
                return None
            text = bytes(self._bytes[offset : offset + _TEXT_MAX])
            if float(d[index + _START]) == start:
                method = text[:_METHOD_MAX].rstrip(b"\0").decode("latin-1")
                path = text[_METHOD_MAX:].rstrip(b"\0").decode("latin-1")
                return CurrentRequest(method, path, start)
        return None

    def close(self) -> None:
        """Release the mapping (master side, after the worker was reaped)."""
        self.recorders = []
        self._free = []
        for view in (self._q, self._d, self._bytes):
            view.release()
        self._map.close()


def metrics_for(worker_class: str, threads: int, worker_connections: int) -> WorkerMetrics:
    """The block for a worker of this kind: one request slot per request it can have in
    flight (1 for sync, ``threads`` for gthread, ``worker_connections`` up to MAX_SLOTS)."""
    if worker_class == "gthread":
        return WorkerMetrics(max(1, threads), threaded=True)
    if worker_class == "asgi":
        return WorkerMetrics(max(1, min(worker_connections, MAX_SLOTS)))
    return WorkerMetrics(1)
