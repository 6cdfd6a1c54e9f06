"""The task of one HTTP request: the application called over its :class:`~.cycle.HttpCycle`.

This coroutine stays Python where the cycle is compiled (:mod:`monoceros._compiled`): the
worker's timeout report walks the interrupted stack to the frame of :func:`run_request` to name
the request that blocked the loop, and a compiled coroutine has no frame.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cycle import HttpCycle

__all__ = ["run_request"]


async def run_request(cycle: HttpCycle) -> None:
    """Call the application and make sure a response (or a closed connection) results."""
    app = cycle.begin()
    if cycle.keeps_task:
        cycle.keep_task(asyncio.current_task())
    try:
        await app(cycle.scope, cycle.receive, cycle.send)
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        cycle.app_raised(exc)
    else:
        cycle.app_returned()
    finally:
        cycle.ended()
