"""The C twins in monoceros/_counting.c against the Python functions they stand in for.

``count`` stands in for :func:`monoceros.worker_metrics._count` and ``pack_slot`` for
:func:`monoceros.worker_metrics._pack_slot` where it is built: every case here runs through
both, each on its own copy of a block, and both must end with the same bytes and return the
same result, or both raise the same exception type (an error is a caller's bug: the C twin then
stores nothing, the Python one may have stored the counters before the bad index). The rest of
the suite drives them through :class:`~monoceros.worker_metrics.Recorder` (and its pure pass,
with ``MONOCEROS_PURE=1``, drives the Python ones).
"""

from __future__ import annotations

import bisect
import functools
import importlib.util
import math
import mmap
import os
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monoceros import worker_metrics
from monoceros.worker_metrics import WorkerMetrics

try:
    from monoceros import _counting
except ImportError:  # not built (no C compiler), or MONOCEROS_PURE: nothing to pin
    if os.environ.get("MONOCEROS_EXPECT_COMPILED") == "1" and not os.environ.get("MONOCEROS_PURE"):
        raise
    pytestmark = pytest.mark.skip(reason="the C extension is not loaded")


def _source_module() -> Any:
    """monoceros/worker_metrics.py loaded from its source under another name: the Python twins
    as the interpreter runs them, beside the imported module (compiled where built)."""
    path = Path(worker_metrics.__file__).with_name("worker_metrics.py")
    spec = importlib.util.spec_from_file_location("monoceros._worker_metrics_source", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


#: the Python twins to pin the C ones to: as imported, and interpreted from the source
TWIN_MODULES = [worker_metrics, _source_module()]
TWINS = pytest.mark.parametrize("twins", TWIN_MODULES, ids=["imported", "source"])

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ITEMS = 64  # 8-byte items in a test block
SLOT = worker_metrics._SLOT_BYTES


def fresh(seed: int) -> mmap.mmap:
    """A writable block of ITEMS 8-byte items with recognisable contents."""
    block = mmap.mmap(-1, ITEMS * 8)
    block[:] = bytes((seed + i * 7) % 251 for i in range(ITEMS * 8))
    return block


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """What a call did: ("ok", its result) or ("raised", the exception's type)."""
    try:
        return "ok", call()
    except Exception as exc:
        return "raised", type(exc)


INDEX = st.one_of(st.integers(-ITEMS - 2, ITEMS + 2), st.integers(-(2**70), 2**70))
SECTION = st.tuples(INDEX, INDEX, INDEX)
STATUS = st.one_of(st.integers(-4, ITEMS), st.integers(-(2**70), 2**70))
#: around the bucket bounds, and anything
DURATIONS = st.one_of(
    st.sampled_from([0.0, 0.005, 0.0050001, 0.01, 0.3, 10.0, 10.5, -1.0, math.inf, math.nan]),
    st.floats(allow_nan=True, allow_infinity=True),
)


def count_both(
    args: tuple[Any, ...], twins: Any = worker_metrics, seed: int = 3
) -> tuple[str, Any]:
    """Run ``count`` and ``_count`` on two copies of a block; they must agree."""
    blocks = fresh(seed), fresh(seed)
    results = []
    for fn, block in zip((_counting.count, twins._count), blocks, strict=True):
        q, d = memoryview(block).cast("q"), memoryview(block).cast("d")
        results.append(outcome(functools.partial(fn, q, d, *args)))
        q.release()
        d.release()
    assert results[0] == results[1], (args, results)
    assert blocks[0][:] == blocks[1][:], args  # an error leaves the same in both
    return results[0]


@TWINS
@SETTINGS
@given(SECTION, STATUS, DURATIONS, INDEX)
def test_count_agrees_with_its_python_twin(
    twins: Any, section: tuple[int, int, int], status: int, duration: float, start_at: int
) -> None:
    count_both((section, status, duration, start_at), twins)


@pytest.mark.parametrize("duration", [0.0, 0.005, 0.0051, 0.01, 0.011, 2.5, 10.0, 10.1, math.inf])
def test_count_puts_a_duration_in_the_bucket_bisect_left_finds(duration: float) -> None:
    block = mmap.mmap(-1, ITEMS * 8)
    q, d = memoryview(block).cast("q"), memoryview(block).cast("d")
    _counting.count(q, d, (0, 20, 40), 3, duration, 41)
    bucket = bisect.bisect_left(worker_metrics.BUCKETS, duration)
    assert [i - 20 for i in range(20, 40) if q[i]] == ([bucket] if bucket else [])
    q.release()
    d.release()


def test_count_stores_each_counter_and_frees_the_slot_last() -> None:
    block = mmap.mmap(-1, ITEMS * 8)
    q, d = memoryview(block).cast("q"), memoryview(block).cast("d")
    d[41] = 123.5  # a request's start
    _counting.count(q, d, (0, 20, 40), 1, 0.25, 41)  # status 1, bucket 5
    _counting.count(q, d, (0, 20, 40), 1, 0.0, 41)  # no histogram bucket
    _counting.count(q, d, (-ITEMS, 20 - ITEMS, 40 - ITEMS), 1, 0.75, 41 - ITEMS)  # from the end
    assert (q[1], q[25], q[27], d[40], d[41]) == (3, 1, 1, 1.0, 0.0)
    assert [i for i in range(ITEMS) if q[i]] == [1, 25, 27, 40]  # nothing else written
    q.release()
    d.release()


@pytest.mark.parametrize(
    "args",
    [
        ((0, 20, 40), 1.0, 0.1, 9),  # a float is not an index
        ((0, 20, 40), 1, "0.1", 9),
        ((0, 20), 1, 0.1, 9),  # not a section
        ([0, 20, 40], 1, 0.1, 9),
        ((0, 20, 40), ITEMS, 0.1, 9),  # out of range
        ((0, 20, 40), 1, 0.1, ITEMS),  # out of range, last
        ((0, ITEMS, 40), 1, 0.1, 9),
        ((0, 20, -ITEMS - 1), 1, 0.1, 9),
        ((0, 2**64, 40), 1, 0.1, 9),  # beyond any index
        ((-(2**64), 20, 40), 1, 0.1, 9),
        ((2**62, 20, 40), 2**62, 0.1, 9),
        ((0, 20, 40), 1, 10**400, 9),  # an int too large for a float
    ],
)
@TWINS
def test_count_refuses_what_its_twin_refuses(twins: Any, args: tuple[Any, ...]) -> None:
    assert count_both(args, twins)[0] == "raised"


@TWINS
def test_count_refuses_views_its_twin_refuses(twins: Any) -> None:
    block = mmap.mmap(-1, ITEMS * 8)
    frozen = memoryview(bytes(ITEMS * 8))
    for q, d in [
        (memoryview(block), memoryview(block).cast("d")),  # 1-byte items
        (frozen.cast("q"), memoryview(block).cast("d")),  # read-only
        (memoryview(block).cast("q"), frozen.cast("d")),
    ]:
        for fn in (_counting.count, twins._count):
            with pytest.raises(TypeError):
                fn(q, d, (0, 20, 40), 1, 0.1, 41)
    assert block[:] == bytes(ITEMS * 8)  # nothing stored by either


def test_count_at_the_largest_counter_raises_as_the_memoryview_does() -> None:
    for fn in (_counting.count, worker_metrics._count):
        block = mmap.mmap(-1, ITEMS * 8)
        q, d = memoryview(block).cast("q"), memoryview(block).cast("d")
        q[1] = 2**63 - 1
        with pytest.raises(ValueError):
            fn(q, d, (0, 20, 40), 1, 0.1, 41)
        q.release()
        d.release()


def test_count_takes_only_8_byte_views() -> None:
    block = mmap.mmap(-1, ITEMS * 8)
    with pytest.raises(TypeError):
        _counting.count(memoryview(block), memoryview(block), (0, 20, 40), 1, 0.1, 41)
    released = memoryview(block).cast("q")
    released.release()
    with pytest.raises(ValueError):  # a released view: no buffer to write
        _counting.count(released, memoryview(block).cast("d"), (0, 20, 40), 1, 0.1, 41)


LATIN1 = st.characters(min_codepoint=0, max_codepoint=255)
TEXTS = st.one_of(
    st.sampled_from(["GET", "POST", "", "/", "/hello?x=1"]),
    st.text(LATIN1, max_size=300),
    st.text(max_size=40),  # anything: not latin-1 now and then
)
PATHS = st.one_of(TEXTS, st.binary(max_size=300))
OFFSETS = st.one_of(
    st.integers(0, ITEMS * 8 - SLOT), st.integers(-8, ITEMS * 8), st.integers(-(2**70), 2**70)
)
STARTS = st.floats(allow_nan=False)


def pack_both(
    args: tuple[Any, ...], twins: Any = worker_metrics, seed: int = 5, block: Any = None
) -> tuple[str, Any]:
    """Run ``pack_slot`` and ``_pack_slot`` on two copies of a block; they must agree."""
    blocks = (fresh(seed), fresh(seed)) if block is None else (block, block)
    results = [
        outcome(functools.partial(fn, blk, *args))
        for fn, blk in zip((_counting.pack_slot, twins._pack_slot), blocks, strict=True)
    ]
    assert results[0] == results[1], (args, results)
    assert blocks[0][:] == blocks[1][:], args  # an error or False writes nothing in both
    return results[0]


@TWINS
@SETTINGS
@given(OFFSETS, TEXTS, PATHS, STARTS)
def test_pack_slot_agrees_with_its_python_twin(
    twins: Any, offset: int, method: str, path: str | bytes, start: float
) -> None:
    pack_both((offset, method, path, start), twins)


def test_pack_slot_writes_the_struct_layout_cut_and_padded() -> None:
    block = mmap.mmap(-1, ITEMS * 8)
    block[:] = b"\xff" * len(block)
    assert _counting.pack_slot(block, 8, "PROPFIND-LONG-METHOD", "/é" + "x" * 300, 1.5) is True
    method, path, start = struct.unpack_from("@16s224sd", block, 8)
    assert method == b"PROPFIND-LONG-ME" and path == ("/é" + "x" * 300).encode("latin-1")[:224]
    assert start == 1.5 and block[:8] == b"\xff" * 8 and block[8 + SLOT] == 0xFF
    assert _counting.pack_slot(block, 8, "GET", b"/", 2.0) is True  # shorter: NUL-padded
    method, path, start = struct.unpack_from("@16s224sd", block, 8)
    assert (method, path, start) == (b"GET".ljust(16, b"\0"), b"/".ljust(224, b"\0"), 2.0)


@pytest.mark.parametrize(
    "args",
    [
        (0, "GET", "/\u20ac", 1.0),  # not latin-1: False, nothing written
        (0, "G\u0100T", b"/", 1.0),
        (ITEMS * 8 - SLOT + 1, "GET", "/", 1.0),  # past the end
        (-1, "GET", "/", 1.0),
        (0, b"GET", "/", 1.0),  # wrong types
        (0, "GET", bytearray(b"/"), 1.0),
        (0, "GET", "/", "1"),
        (0.0, "GET", "/", 1.0),
        (0, "GET", "/", 10**400),  # an int too large for a float
    ],
)
@TWINS
def test_pack_slot_refuses_or_declines_as_its_twin(twins: Any, args: tuple[Any, ...]) -> None:
    assert pack_both(args, twins) != ("ok", True)


@TWINS
@pytest.mark.parametrize("offset", [0, ITEMS * 8])
def test_pack_slot_refuses_a_read_only_block_as_its_twin(twins: Any, offset: int) -> None:
    # inside it: the block's error; past its end: the offset's first, in both
    assert pack_both((offset, "GET", "/", 1.0), twins, block=bytes(ITEMS * 8))[0] == "raised"


def test_the_slot_layout_and_the_buckets_are_the_same_on_both_sides() -> None:
    assert _counting.BUCKETS == worker_metrics.BUCKETS
    assert _counting.METHOD_MAX == worker_metrics._METHOD_MAX
    assert _counting.TEXT_MAX == worker_metrics._TEXT_MAX
    assert struct.calcsize("@16s224sd") == SLOT == worker_metrics._TEXT_MAX + 8


def recorded(monkeypatch: pytest.MonkeyPatch, native: bool, t: float) -> bytes:
    """The block after a few requests recorded with the C or the Python twins (the duration
    sums zeroed: they differ from run to run)."""
    if native:
        monkeypatch.setattr(worker_metrics, "_count_response", _counting.count)
        monkeypatch.setattr(worker_metrics, "_write_slot", _counting.pack_slot)
    else:
        monkeypatch.setattr(worker_metrics, "_count_response", worker_metrics._count)
        monkeypatch.setattr(worker_metrics, "_write_slot", worker_metrics._pack_slot)
    metrics = WorkerMetrics(slots=2)
    first, second = metrics.take(), metrics.take()
    overflow = metrics.take()  # no slot left: counted, not described
    first.begin("GET", "/a", t)
    second.begin("POST", b"/b\xe9", t + 1)
    overflow.begin("GET", "/c", t + 2)
    first.end(t, 200, False)
    second.end(t + 1, 404, True)
    overflow.end(t + 2, 500, True)
    first.begin("G\u0100T", "/\u20ac", t + 3)  # not latin-1: written with replacements
    data = bytearray(metrics._map)
    assert data.count(b"/b\xe9") == 1 and data.count(b"G?T") == 1
    d = memoryview(data).cast("d")
    for total in (first._http[2], first._uwsgi[2]):
        assert d[total] > 0.0
        d[total] = 0.0
    d.release()
    return bytes(data)


def test_a_recorder_writes_the_same_block_with_either_twin(monkeypatch: pytest.MonkeyPatch) -> None:
    t = time.monotonic() - 100.0  # every duration in the last bucket (+Inf)
    assert recorded(monkeypatch, True, t) == recorded(monkeypatch, False, t)
