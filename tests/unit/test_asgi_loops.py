"""The event loop choice of the asgi worker (``asgi_loop``)."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from monoceros.asgi.loops import new_event_loop

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


def test_asyncio_is_asyncios_own_loop() -> None:
    loop, kind = new_event_loop("asyncio")
    try:
        assert kind == "asyncio" and type(loop).__module__.startswith("asyncio")
    finally:
        loop.close()


def test_auto_prefers_uvloop_when_installed() -> None:
    loop, kind = new_event_loop("auto")
    try:
        assert kind == ("uvloop" if HAVE_UVLOOP else "asyncio")
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert loop.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
    finally:
        loop.close()


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="trio"):
        new_event_loop("trio")
