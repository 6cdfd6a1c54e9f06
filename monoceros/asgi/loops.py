"""The event loop choice (``asgi_loop``): uvloop when installed, else asyncio's own."""

from __future__ import annotations

import asyncio
import importlib

from ..config import ASGI_LOOPS as LOOP_KINDS

__all__ = ["LOOP_KINDS", "new_event_loop"]


def new_event_loop(kind: str = "auto") -> tuple[asyncio.AbstractEventLoop, str]:
    """A new event loop of ``kind`` and the name of what was picked ("uvloop" or "asyncio").

    ``auto`` takes uvloop when it imports, ``uvloop`` requires it (ImportError otherwise).
    """
    if kind not in LOOP_KINDS:
        raise ValueError(f"unknown event loop kind {kind!r} (expected one of {LOOP_KINDS})")
    if kind != "asyncio":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            if kind == "uvloop":
                raise ImportError("asgi_loop is 'uvloop' but uvloop is not installed") from None
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop, "uvloop"
    return asyncio.new_event_loop(), "asyncio"
