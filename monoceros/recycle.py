"""When the master replaces a worker for its memory or its age: the decision, not the act.

``max_worker_memory`` (MiB): the master reads each booted worker's resident memory (RSS, from
``/proc/PID/statm`` with :func:`~monoceros.stats_render.read_rss`, the reader ``/metrics`` uses)
once every :data:`SAMPLE_INTERVAL` seconds; a worker above the limit at :data:`MEMORY_SAMPLES`
samples in a row is replaced, so a spike shorter than ``(MEMORY_SAMPLES - 1) * SAMPLE_INTERVAL``
is forgiven. ``max_worker_lifetime`` (seconds): a worker is replaced once it has lived that long
plus its own random share of :data:`LIFETIME_JITTER` of it, drawn at its fork, so workers
started together leave apart.

:class:`Recycler` only decides; the arbiter acts on a :class:`Verdict` the way it does on HUP
(the replacement boots, then the old worker gets TERM), one worker at a time: it asks for a
verdict only while no worker is leaving or booting. A replacement that dies before it booted
pauses recycling (:meth:`Recycler.failed`: 2 s, doubling up to 5 minutes). Nothing here runs
when both settings are 0: the arbiter checks :attr:`Recycler.enabled` first.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from .stats_render import read_rss

__all__ = [
    "LIFETIME_JITTER",
    "MEMORY_SAMPLES",
    "MIB",
    "RETRY_FIRST",
    "RETRY_MAX",
    "SAMPLE_INTERVAL",
    "Recycler",
    "Verdict",
]

#: consecutive samples above ``max_worker_memory`` that get a worker replaced
MEMORY_SAMPLES: Final = 3
#: seconds between two reads of the workers' resident memory
SAMPLE_INTERVAL: Final = 1.0
#: each worker's lifetime is ``max_worker_lifetime * (1 + LIFETIME_JITTER * U)``, U in [0, 1)
LIFETIME_JITTER: Final = 0.1
#: seconds recycling pauses after a replacement died before it booted (doubled each time)
RETRY_FIRST: Final = 2.0
#: the longest such pause
RETRY_MAX: Final = 300.0
MIB: Final = 1024 * 1024


class _Log(Protocol):
    def debug(self, msg: str, *args: object) -> None: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    """Worker ``pid`` is to be replaced, for ``reason`` (``memory`` or ``lifetime``)."""

    pid: int
    reason: str
    #: its resident memory at the last sample, bytes (None: not read)
    rss: int | None
    #: seconds since it was forked
    age: float


class Recycler:
    """What the master tracks to recycle workers: fork times, lifetime draws, memory streaks.

    The arbiter tells it about each fork (:meth:`born`) and each reaped worker (:meth:`gone`),
    and asks :meth:`check` at each wake-up of its loop, no later than :meth:`wait` says.
    """

    def __init__(
        self,
        max_memory_mib: int = 0,
        max_lifetime: float = 0.0,
        *,
        log: _Log | None = None,
        rss: Callable[[int], int | None] = read_rss,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._log = log
        self._rss = rss
        self._rand = rand
        self._born: dict[int, float] = {}
        self._draw: dict[int, float] = {}
        #: pid -> samples in a row above the limit, and the last one's RSS
        self._over: dict[int, tuple[int, int]] = {}
        self._next_sample = 0.0
        self._paused_until = 0.0
        self._failures = 0
        self.limit = 0
        self.lifetime = 0.0
        self.configure(max_memory_mib, max_lifetime)

    def configure(self, max_memory_mib: int, max_lifetime: float) -> None:
        """Take the settings (at start and on HUP); a pause after failed boots ends."""
        self.limit = max_memory_mib * MIB
        self.lifetime = float(max_lifetime)
        self._paused_until = 0.0
        self._failures = 0
        if not self.limit:
            self._over.clear()

    @property
    def enabled(self) -> bool:
        """Whether either limit is set (the arbiter skips everything else when not)."""
        return bool(self.limit or self.lifetime)

    def born(self, pid: int, now: float) -> None:
        """Worker ``pid`` was forked at ``now``: draw its share of the lifetime jitter."""
        self._born[pid] = now
        self._draw[pid] = self._rand()

    def gone(self, pid: int) -> None:
        """Worker ``pid`` was reaped: forget it."""
        self._born.pop(pid, None)
        self._draw.pop(pid, None)
        self._over.pop(pid, None)

    def deadline(self, pid: int) -> float:
        """When worker ``pid`` has lived its lifetime (``inf`` without ``max_worker_lifetime``)."""
        if not self.lifetime or pid not in self._born:
            return float("inf")
        return self._born[pid] + self.lifetime * (1.0 + LIFETIME_JITTER * self._draw[pid])

    def wait(self, now: float) -> float:
        """Seconds until something may be due: the next memory sample, the next lifetime
        deadline still ahead, or the end of a pause (``inf``: nothing)."""
        due = [self._next_sample] if self.limit else []
        if self.lifetime:
            due.extend(d for d in map(self.deadline, self._born) if d > now)
        if self._paused_until > now:
            due.append(self._paused_until)
        return max(0.0, min(due) - now) if due else float("inf")

    def check(self, now: float, candidates: Iterable[int], may_start: bool) -> Verdict | None:
        """Sample memory if a sample is due, then name the worker to replace, if any.

        ``candidates`` are the pids of the booted workers that are not leaving; ``may_start``
        is False while a replacement is under way (the samples are still taken). Memory comes
        before lifetime: the largest worker over the limit, else the one whose life ended first.
        """
        pids = list(candidates)
        if self.limit and now >= self._next_sample:
            self._next_sample = now + SAMPLE_INTERVAL
            self._sample(pids)
        if not may_start or now < self._paused_until:
            return None
        over = [(rss, pid) for pid, (n, rss) in self._over.items() if n >= MEMORY_SAMPLES]
        over = [(rss, pid) for rss, pid in over if pid in pids]
        if over:
            rss, pid = max(over)
            del self._over[pid]
            return Verdict(pid, "memory", rss, now - self._born.get(pid, now))
        if self.lifetime and pids:
            first, pid = min((self.deadline(pid), pid) for pid in pids)
            if first <= now:
                return Verdict(pid, "lifetime", None, now - self._born.get(pid, now))
        return None

    def failed(self, now: float) -> float:
        """A replacement died before it booted: pause recycling; return the pause, seconds."""
        pause = min(RETRY_MAX, RETRY_FIRST * 2.0**self._failures)
        self._failures += 1
        self._paused_until = now + pause
        return pause

    def succeeded(self) -> None:
        """A replacement booted: the next failure pauses for :data:`RETRY_FIRST` again."""
        self._failures = 0

    def _sample(self, pids: list[int]) -> None:
        """Read each candidate's RSS and update its streak above the limit."""
        streaks = {}
        for pid in pids:
            rss = self._rss(pid)
            count = self._over.get(pid, (0, 0))[0]
            if rss is not None and rss > self.limit:
                streaks[pid] = (count + 1, rss)
                self._say(
                    "Worker (pid:%s) resident memory %.1f MiB above max_worker_memory %s MiB "
                    "(sample %s of %s)",
                    pid,
                    rss / MIB,
                    self.limit // MIB,
                    count + 1,
                    MEMORY_SAMPLES,
                )
            elif count and rss is not None:
                self._say(
                    "Worker (pid:%s) resident memory back to %.1f MiB, under max_worker_memory "
                    "%s MiB after %s sample(s) above it: forgiven",
                    pid,
                    rss / MIB,
                    self.limit // MIB,
                    count,
                )
        self._over = streaks

    def _say(self, msg: str, *args: object) -> None:
        if self._log is not None:
            self._log.debug(msg, *args)
