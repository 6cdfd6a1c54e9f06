"""The lifespan protocol driver: auto/on/off, failures, state, shutdown."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from monoceros.asgi.lifespan import Lifespan, LifespanFailure
from monoceros.config import Config
from monoceros.logs import Logger


@pytest.fixture
def log(tmp_path: Path) -> Logger:
    cfg = Config({})
    cfg.set("errorlog", str(tmp_path / "error.log"))
    return Logger(cfg)


def speaking(events: list[str], fail: str | None = None) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            events.append(message["type"])
            if message["type"] == "lifespan.startup":
                if fail is not None:
                    await send({"type": "lifespan.startup.failed", "message": fail})
                    return
                scope["state"]["pool"] = "ready"
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    return app


async def not_speaking(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise ValueError(f"unsupported scope type {scope['type']}")


def test_startup_and_shutdown_once_with_state(log: Logger) -> None:
    events: list[str] = []

    async def scenario() -> dict[str, Any]:
        lifespan = Lifespan(speaking(events), "auto", log)
        await lifespan.startup()
        assert lifespan.supported
        await lifespan.shutdown(5)
        return lifespan.state

    assert asyncio.run(scenario()) == {"pool": "ready"}
    assert events == ["lifespan.startup", "lifespan.shutdown"]


def test_failed_startup_raises_with_the_apps_message(log: Logger) -> None:
    async def scenario() -> None:
        await Lifespan(speaking([], fail="no database"), "auto", log).startup()

    with pytest.raises(LifespanFailure, match="no database"):
        asyncio.run(scenario())


def test_auto_tolerates_an_app_without_lifespan_but_on_does_not(log: Logger) -> None:
    async def scenario(mode: str) -> bool:
        lifespan = Lifespan(not_speaking, mode, log)
        await lifespan.startup()
        await lifespan.shutdown(1)  # nothing to shut down
        return lifespan.supported

    assert asyncio.run(scenario("auto")) is False
    with pytest.raises(LifespanFailure, match="unsupported scope type"):
        asyncio.run(scenario("on"))


def test_off_never_calls_the_app(log: Logger) -> None:
    events: list[str] = []

    async def scenario() -> None:
        lifespan = Lifespan(speaking(events), "off", log)
        await lifespan.startup()
        await lifespan.shutdown(1)

    asyncio.run(scenario())
    assert events == []


def test_shutdown_that_hangs_is_cut_at_the_timeout(log: Logger, tmp_path: Path) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await asyncio.sleep(60)

    async def scenario() -> float:
        lifespan = Lifespan(app, "on", log)
        await lifespan.startup()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await lifespan.shutdown(0.2)
        return loop.time() - t0

    assert asyncio.run(scenario()) < 2
    assert "did not complete within 0.2s" in (tmp_path / "error.log").read_text()
