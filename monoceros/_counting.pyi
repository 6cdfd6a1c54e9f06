"""A worker's request counting in C: the twins of :func:`monoceros.worker_metrics._count` and
:func:`monoceros.worker_metrics._pack_slot`."""

import mmap

METHOD_MAX: int
TEXT_MAX: int
BUCKETS: tuple[float, ...]

def count(
    q: memoryview[int],
    d: memoryview[float],
    section: tuple[int, ...],
    status: int,
    duration: float,
    start_at: int,
    /,
) -> None:
    """Count one response in a counter section and free its request slot (start 0.0, last)."""

def pack_slot(
    block: mmap.mmap, offset: int, method: str, path: str | bytes, start: float, /
) -> bool:
    """Write a request slot; False with nothing written for a str that is not latin-1."""
