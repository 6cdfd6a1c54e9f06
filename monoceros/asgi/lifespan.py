"""The ASGI lifespan protocol (``asgi_lifespan``): startup before serving, shutdown at the end.

``auto`` runs it and carries on without it when the application raises before answering
startup (an application that does not speak lifespan); ``on`` makes that a failed startup;
``off`` never runs it. The lifespan ``state`` dict is shallow-copied into every request scope.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..logs import Logger

from ..config import ASGI_LIFESPANS as LIFESPAN_MODES
from .scope import ASGI_VERSION

__all__ = ["LIFESPAN_MODES", "Lifespan", "LifespanFailure"]


class LifespanFailure(Exception):
    """The application's startup failed (``lifespan.startup.failed``, or raised with ``on``)."""


class Lifespan:
    """Runs the application's lifespan task and talks to it."""

    def __init__(self, app: Any, mode: str, log: Logger) -> None:
        if mode not in LIFESPAN_MODES:
            raise ValueError(f"unknown lifespan mode {mode!r}")
        self.app = app
        self.mode = mode
        self.log = log
        self.state: dict[str, Any] = {}
        self.supported = False
        self._task: asyncio.Task[None] | None = None
        self._incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._startup_done = asyncio.Event()
        self._shutdown_done = asyncio.Event()
        self._failure: str | None = None
        self._shutdown_failure: str | None = None
        self._error: BaseException | None = None

    async def startup(self) -> None:
        """Run startup; raise :class:`LifespanFailure` when it failed."""
        if self.mode == "off":
            return
        self._incoming.put_nowait({"type": "lifespan.startup"})
        self._task = asyncio.get_running_loop().create_task(self._main())
        await self._startup_done.wait()
        if self._failure is not None:
            raise LifespanFailure(self._failure or "the application reported a failed startup")
        if self._error is not None:
            if self.mode == "on":
                raise LifespanFailure(
                    f"the application raised during lifespan startup: {self._error!r}"
                )
            self.log.info("ASGI 'lifespan' protocol appears unsupported; continuing without it.")
            return
        if self._task.done():  # returned without answering: treat as not speaking lifespan
            return
        self.supported = True

    async def shutdown(self, timeout: float) -> None:
        """Run shutdown (at most ``timeout`` seconds) when startup succeeded."""
        if not self.supported or self._task is None or self._task.done():
            return
        self._incoming.put_nowait({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(self._shutdown_done.wait(), timeout or None)
        except asyncio.TimeoutError:
            self.log.warning("ASGI lifespan shutdown did not complete within %gs", timeout)
            self._task.cancel()
            return
        if self._shutdown_failure is not None:
            self.log.error("Application shutdown failed: %s", self._shutdown_failure)

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            if not self._startup_done.is_set():
                self._error = exc
                if self.mode == "on":
                    self.log.exception("Exception in the ASGI lifespan startup")
            elif not isinstance(exc, asyncio.CancelledError):
                self.log.exception("Exception in the ASGI lifespan protocol")
        finally:
            self._startup_done.set()
            self._shutdown_done.set()

    async def _receive(self) -> dict[str, Any]:
        return await self._incoming.get()

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self._startup_done.set()
        elif kind == "lifespan.startup.failed":
            self._failure = str(message.get("message", ""))
            self._startup_done.set()
        elif kind == "lifespan.shutdown.complete":
            self._shutdown_done.set()
        elif kind == "lifespan.shutdown.failed":
            self._shutdown_failure = str(message.get("message", ""))
            self._shutdown_done.set()
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in lifespan")
