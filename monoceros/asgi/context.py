"""What every connection of one worker shares: the app, settings, open connections, deadlines.

The worker's periodic sweep (:meth:`ServerContext.sweep`) is the only timer: it acts on each
connection whose deadline passed (header, idle and body timeouts, a WebSocket's keepalive and
closing handshake) and, when ``request_timeout`` is on, on each request running longer.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from ..logs import Logger

from ..addresses import AddressMatcher
from ..protocols.http import HttpLimits
from ..worker_metrics import WorkerMetrics
from .request_task import run_request

if TYPE_CHECKING:
    from .acceptor import Acceptor
    from .cycle import HttpCycle

__all__ = ["REQUEST_TASK_NAME", "Connection", "ServerContext"]

REQUEST_TASK_NAME: Final = "monoceros.request"
"""The name of every request's task (``asyncio.Task.get_name``): asyncio would number each
(``Task-N``), a string made per task that costs more than the rest of the task's set-up."""
_EAGER: Final = sys.version_info >= (3, 12)
_TASK: Final = asyncio.Task  # (compiled: a static, where asyncio.Task is two lookups a request)
#: asyncio.Task's keyword from 3.12 on (a dict: the same source type-checks on 3.11 and 3.12)
_EAGER_START: Final[dict[str, Any]] = {"eager_start": True}


class Connection(Protocol):
    """What the worker needs of an open connection (over a transport or a bare socket)."""

    deadline: float

    @property
    def cycle(self) -> HttpCycle | None:
        """The request in progress, if any."""

    def on_deadline(self) -> None:
        """The connection's deadline passed."""

    def shutdown(self) -> None:
        """Graceful stop: close now if idle, else after the response in flight."""

    def abort(self) -> None:
        """Close now (the graceful stop's time is up)."""

    @property
    def busy(self) -> bool:
        """True while a request or a WebSocket is in progress."""


class ServerContext:
    """Per-worker state handed to every protocol instance."""

    def __init__(
        self,
        app: Callable[..., Any],
        log: Logger,
        loop: asyncio.AbstractEventLoop,
        *,
        limits: HttpLimits,
        keepalive: float,
        header_timeout: float,
        uwsgi_allowed: AddressMatcher,
        uwsgi_max_vars: int,
        ws_max_message_size: int,
        forwarded_allow_ips: AddressMatcher,
        secure_scheme_headers: dict[str, str],
        max_requests: int,
        ws_ping_interval: float = 0.0,
        ws_ping_timeout: float = 0.0,
        ws_per_message_deflate: bool = False,
        request_timeout: float = 0.0,
    ) -> None:
        self.app = app
        self.log = log
        self.loop = loop
        self.limits = limits
        self.keepalive = keepalive
        self.header_timeout = header_timeout
        self.uwsgi_allowed = uwsgi_allowed
        self.uwsgi_max_vars = uwsgi_max_vars
        self.ws_max_message_size = ws_max_message_size
        self.ws_ping_interval = ws_ping_interval
        self.ws_ping_timeout = ws_ping_timeout
        self.ws_per_message_deflate = ws_per_message_deflate
        self.request_timeout = request_timeout
        """Seconds a request may run before it is cancelled (0: no limit)."""
        self.forwarded_allow_ips = forwarded_allow_ips
        self.secure_scheme_headers = secure_scheme_headers
        self.access_log: bool = bool(getattr(log, "access_enabled", False))
        self.state: dict[str, Any] | None = None
        """Lifespan state, copied into every request scope (None without lifespan)."""
        self.alive = True
        """False once the worker stops accepting (graceful stop or max_requests)."""
        self.connections: set[Connection] = set()
        self.nr = 0
        self.max_requests = max_requests
        self.on_max_requests: Callable[[], None] | None = None
        """Called with each request started once :attr:`nr` reached ``max_requests``."""
        self.metrics = WorkerMetrics(1)
        """The worker's shared counting block (the worker sets its own)."""
        self.acceptor: Acceptor | None = None
        """What accepted the connections (told of each close: room for one more)."""
        self.on_room: Callable[[], None] | None = None
        """Called when a connection closes while the acceptor is not accepting (at the cap, or
        paused): the worker decides whether to accept again."""

    def request_started(self) -> None:
        """Count one request (the worker's ``nr``, towards ``max_requests``)."""
        self.nr += 1
        if self.nr >= self.max_requests and self.on_max_requests is not None:
            self.on_max_requests()

    def start_request(self, cycle: HttpCycle, *, eager: bool = False) -> None:
        """Run the application over ``cycle`` in a task of its own, named
        :data:`REQUEST_TASK_NAME`; ``eager``: from Python 3.12 on, run the task's first step
        now (a request read whole: no loop round before the application starts).

        The loop's ``create_task`` is skipped unless the application set a task factory (which
        then makes every task): uvloop's wraps the same ``asyncio.Task`` call and names a task
        after making it, so asyncio's own numbered name would be made first."""
        loop = self.loop
        if loop.get_task_factory() is not None:
            loop.create_task(run_request(cycle), name=REQUEST_TASK_NAME)
        elif eager and _EAGER:
            _TASK(run_request(cycle), loop=loop, name=REQUEST_TASK_NAME, **_EAGER_START)
        else:
            _TASK(run_request(cycle), loop=loop, name=REQUEST_TASK_NAME)

    def add(self, conn: Connection) -> None:
        """Register an open connection."""
        self.connections.add(conn)

    def discard(self, conn: object) -> None:
        """Forget a closed connection (anything that was added)."""
        self.connections.discard(conn)
        self.connection_closed()

    def connection_closed(self) -> None:
        """An accepted connection closed (registered or not): room for one more.

        Compiled code to compiled code while the acceptor accepts; the worker is asked only
        when it does not (at the cap, or paused)."""
        acceptor = self.acceptor
        if acceptor is not None:
            acceptor.closed()
            if not acceptor.accepting and self.on_room is not None:
                self.on_room()

    def sweep(self, now: float) -> None:
        """Act on every connection whose deadline passed (header, idle and body timeouts, the
        WebSocket keepalive), then on every request past ``request_timeout``."""
        expired = [c for c in self.connections if c.deadline and c.deadline <= now]
        for conn in expired:
            conn.on_deadline()
        if self.request_timeout:
            self.expire_requests(time.monotonic() - self.request_timeout)

    def expire_requests(self, started_before: float) -> None:
        """Cancel every request still running that started before ``started_before`` (on the
        ``time.monotonic`` clock of :attr:`HttpCycle.started`)."""
        late = [
            cycle
            for conn in self.connections
            if (cycle := conn.cycle) is not None and cycle.overdue(started_before)
        ]
        for cycle in late:
            cycle.time_out(self.request_timeout)

    @property
    def busy(self) -> int:
        """Connections with a request or WebSocket in progress."""
        return sum(1 for c in self.connections if c.busy)
