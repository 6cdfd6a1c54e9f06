"""The recycling decision (monoceros.recycle): memory streaks, lifetimes with jitter, pauses.

The clock is the ``now`` each call gets, the RSS reader a dict, the jitter draw a constant:
every case is exact.
"""

from __future__ import annotations

import math

import pytest

from monoceros.recycle import (
    LIFETIME_JITTER,
    MEMORY_SAMPLES,
    MIB,
    RETRY_FIRST,
    RETRY_MAX,
    SAMPLE_INTERVAL,
    Recycler,
    Verdict,
)


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def debug(self, msg: str, *args: object) -> None:
        self.lines.append(msg % args)


def recycler(
    memory: int = 0, lifetime: float = 0.0, draw: float = 0.0
) -> tuple[Recycler, dict[int, int], Log]:
    rss: dict[int, int] = {}
    log = Log()
    return Recycler(memory, lifetime, log=log, rss=rss.get, rand=lambda: draw), rss, log


def samples(r: Recycler, pids: list[int], start: float, n: int) -> list[Verdict | None]:
    """``n`` checks one sample interval apart from ``start``."""
    return [r.check(start + i * SAMPLE_INTERVAL, pids, True) for i in range(n)]


def test_off_by_default_and_nothing_is_due() -> None:
    r, rss, _ = recycler()
    assert not r.enabled
    r.born(10, 0.0)
    rss[10] = 10_000 * MIB
    assert r.wait(0.0) == math.inf
    assert r.check(1e6, [10], True) is None


def test_memory_above_the_limit_at_three_samples_in_a_row() -> None:
    r, rss, log = recycler(memory=100)
    assert r.enabled
    r.born(10, 0.0)
    r.born(11, 0.0)
    rss.update({10: 150 * MIB, 11: 50 * MIB})
    assert samples(r, [10, 11], 5.0, MEMORY_SAMPLES - 1) == [None] * (MEMORY_SAMPLES - 1)
    verdict = r.check(5.0 + (MEMORY_SAMPLES - 1) * SAMPLE_INTERVAL, [10, 11], True)
    assert verdict == Verdict(10, "memory", 150 * MIB, 7.0)
    assert log.lines[-1] == (
        "Worker (pid:10) resident memory 150.0 MiB above max_worker_memory 100 MiB (sample 3 of 3)"
    )
    assert r.check(8.0, [11], True) is None  # the streak went with the verdict


def test_a_spike_shorter_than_the_window_is_forgiven() -> None:
    r, rss, log = recycler(memory=100)
    r.born(10, 0.0)
    rss[10] = 150 * MIB
    assert samples(r, [10], 0.0, MEMORY_SAMPLES - 1) == [None] * (MEMORY_SAMPLES - 1)
    rss[10] = 60 * MIB
    assert r.check(2.0, [10], True) is None
    assert log.lines[-1] == (
        "Worker (pid:10) resident memory back to 60.0 MiB, under max_worker_memory 100 MiB "
        "after 2 sample(s) above it: forgiven"
    )
    rss[10] = 150 * MIB  # a new streak starts from one
    assert samples(r, [10], 3.0, MEMORY_SAMPLES - 1) == [None] * (MEMORY_SAMPLES - 1)
    assert r.check(5.0, [10], True) is not None


def test_memory_is_read_at_most_once_per_interval() -> None:
    reads: list[int] = []

    def rss(pid: int) -> int:
        reads.append(pid)
        return 150 * MIB

    r = Recycler(100, rss=rss)
    for i in range(20):  # the loop may wake many times a second (signals)
        assert r.check(i * 0.05, [10], True) is None
    assert reads == [10]
    assert r.wait(0.95) == pytest.approx(0.05)
    assert r.check(1.0, [10], True) is None
    assert reads == [10, 10]


def test_the_largest_worker_over_the_limit_goes_first() -> None:
    r, rss, _ = recycler(memory=100)
    rss.update({10: 150 * MIB, 11: 300 * MIB, 12: 120 * MIB})
    verdicts = samples(r, [10, 11, 12], 0.0, MEMORY_SAMPLES)
    assert verdicts[-1] is not None and verdicts[-1].pid == 11


def test_no_verdict_while_a_replacement_is_under_way_but_samples_go_on() -> None:
    r, rss, _ = recycler(memory=100)
    rss[10] = 150 * MIB
    for i in range(MEMORY_SAMPLES + 2):
        assert r.check(float(i), [10], False) is None
    verdict = r.check(float(MEMORY_SAMPLES + 2), [10], True)
    assert verdict is not None and verdict.reason == "memory"


def test_a_verdict_names_only_a_candidate() -> None:
    r, rss, _ = recycler(memory=100)
    rss.update({10: 150 * MIB, 11: 150 * MIB})
    samples(r, [10, 11], 0.0, MEMORY_SAMPLES - 1)
    # 10 left the candidates (retired by TTOU, say) between two samples
    verdict = r.check(MEMORY_SAMPLES - 1.0, [11], True)
    assert verdict is not None and verdict.pid == 11


def test_an_unreadable_worker_has_no_streak() -> None:
    r, _, _ = recycler(memory=100)  # the reader knows no pid
    assert samples(r, [10], 0.0, MEMORY_SAMPLES + 1) == [None] * (MEMORY_SAMPLES + 1)


@pytest.mark.parametrize("draw", [0.0, 0.5, 0.999])
def test_lifetime_with_its_jitter(draw: float) -> None:
    r, _, _ = recycler(lifetime=100.0, draw=draw)
    r.born(10, 50.0)
    end = 50.0 + 100.0 * (1 + LIFETIME_JITTER * draw)
    assert r.deadline(10) == pytest.approx(end)
    assert r.wait(60.0) == pytest.approx(end - 60.0)
    assert r.check(end - 0.01, [10], True) is None
    assert r.check(end, [10], True) == Verdict(10, "lifetime", None, end - 50.0)


def test_the_jitter_spreads_workers_started_together() -> None:
    draws = iter([0.1, 0.9])
    r = Recycler(0, 1000.0, rand=lambda: next(draws))
    r.born(10, 0.0)
    r.born(11, 0.0)
    assert r.deadline(11) - r.deadline(10) == pytest.approx(1000.0 * LIFETIME_JITTER * 0.8)
    assert r.check(1011.0, [10, 11], True) == Verdict(10, "lifetime", None, 1011.0)


def test_the_first_to_reach_its_end_goes_first_and_past_ends_are_not_waited_for() -> None:
    r, _, _ = recycler(lifetime=10.0)
    r.born(10, 5.0)
    r.born(11, 0.0)
    verdict = r.check(20.0, [10, 11], True)
    assert verdict is not None and verdict.pid == 11
    # both ends are past: nothing to wake up for (a busy loop otherwise)
    assert r.wait(20.0) == math.inf


def test_memory_comes_before_lifetime() -> None:
    r, rss, _ = recycler(memory=100, lifetime=1.0)
    r.born(10, 0.0)
    r.born(11, 0.0)
    rss.update({10: 10 * MIB, 11: 150 * MIB})
    assert samples(r, [10, 11], 10.0, MEMORY_SAMPLES - 1)[0] is not None  # 10's life ended
    verdict = samples(r, [10, 11], 20.0, 1)[0]
    assert verdict is not None and (verdict.pid, verdict.reason) == (11, "memory")


def test_a_failed_replacement_pauses_with_a_doubling_bounded_wait() -> None:
    r, _, _ = recycler(lifetime=1.0)
    r.born(10, 0.0)
    pauses = [r.failed(100.0) for _ in range(12)]
    assert pauses[:3] == [RETRY_FIRST, 2 * RETRY_FIRST, 4 * RETRY_FIRST]
    assert max(pauses) == RETRY_MAX == pauses[-1]
    assert r.check(100.0 + RETRY_MAX - 1, [10], True) is None
    assert r.wait(100.0) == pytest.approx(RETRY_MAX)
    assert r.check(100.0 + RETRY_MAX, [10], True) is not None
    r.succeeded()
    assert r.failed(1000.0) == RETRY_FIRST


def test_reconfiguring_ends_a_pause_and_can_turn_it_off() -> None:
    r, rss, _ = recycler(memory=100)
    r.born(10, 0.0)
    rss[10] = 150 * MIB
    r.failed(0.0)
    r.configure(0, 5.0)  # HUP: no memory limit now, a lifetime instead
    assert r.enabled and r.limit == 0
    assert r.check(10.0, [10], True) == Verdict(10, "lifetime", None, 10.0)
    r.configure(0, 0)
    assert not r.enabled


def test_gone_forgets_a_worker() -> None:
    r, rss, _ = recycler(memory=100, lifetime=5.0)
    r.born(10, 0.0)
    rss[10] = 150 * MIB
    samples(r, [10], 0.0, MEMORY_SAMPLES - 1)
    r.gone(10)
    assert r.deadline(10) == math.inf
    assert r.wait(1.5) == pytest.approx(0.5)  # only the next sample is due
