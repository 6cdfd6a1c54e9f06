"""What every worker kind shares: boot, signals, heartbeat, app loading, exit codes, and the
serving policy each kind applies with its own I/O (blocking accept, poll and a thread pool,
asyncio): which ``accept()`` errors are retried at once and which pause accepting
(:meth:`Worker.accept_failed`; a kind pauses its own way, :meth:`Worker.pause_accepting`), when
``max_requests`` stops the worker (:meth:`Worker.check_max_requests`), and whether a stopping
worker serves the connections waiting in the listen queues (:meth:`Worker.serves_listen_queue`,
:meth:`Worker.take_listen_queue`).
"""

from __future__ import annotations

import contextlib
import errno
import faulthandler
import io
import os
import random
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from ..addresses import AddressMatcher, PeerAddress
from ..heartbeat import Heartbeat
from ..listeners import Listener
from ..protocols.proxy_protocol import ProxyHeaderReader
from ..reloader import Reloader, module_files
from ..worker_metrics import WorkerMetrics

if TYPE_CHECKING:
    from ..config import Config
    from ..logs import Logger

__all__ = [
    "ACCEPT_BACKOFF",
    "ACCEPT_LOG_INTERVAL",
    "ACCEPT_RETRY",
    "APP_LOAD_ERROR",
    "STACKS_SIGNAL",
    "WORKER_BOOT_ERROR",
    "Worker",
    "WorkerAborted",
    "WorkerTmp",
    "stack_of",
]

WORKER_BOOT_ERROR = 3
APP_LOAD_ERROR = 4

ACCEPT_RETRY = frozenset((errno.ECONNABORTED, errno.EPROTO, errno.EINTR))
"""``accept()`` errors retried at once: the connection was lost before it was accepted (the
client gave up), or a signal came; the next connection in the queue is unaffected."""
ACCEPT_BACKOFF = 0.1
"""Seconds without accepting after any other ``accept()`` error (EMFILE, ENFILE, ENOBUFS, ENOMEM:
out of descriptors or memory), so the worker does not spin on a queue it cannot take from."""

ACCEPT_LOG_INTERVAL = 5.0
"""Seconds between two log lines about the same ``accept()`` error on the same listener: the
first is logged at once, the next ones once per interval with how many there were."""

STACKS_SIGNAL: int | None = getattr(signal, "SIGPWR", None)
"""The signal on which a worker writes the stack of each of its threads to the error log, from
C (:mod:`faulthandler`), so also while it is stuck in C code where no Python signal handler
runs. The master sends it to a timed-out worker still alive after the abort grace, before
SIGKILL; ``kill -PWR <worker pid>`` asks a live worker for its stacks. SIGPWR (Linux): no
gunicorn signal uses it, and the kernel sends it to nothing but PID 1. None elsewhere: no dump."""

_IGNORED_SIGNALS = ("SIGHUP", "SIGTTIN", "SIGTTOU", "SIGUSR2", "SIGWINCH")


class RequestCounter(Protocol):
    """What counts a worker's requests once it serves (see ``Worker._request_counter``)."""

    nr: int


class WorkerTmp:
    """gunicorn's ``worker.tmp`` over the shared-memory heartbeat.

    gunicorn's workers touch an unlinked temporary file and the master reads its mtime; here the
    worker writes the monotonic clock into a shared page (:mod:`monoceros.heartbeat`). There is no
    file behind it, so :meth:`fileno` raises :class:`io.UnsupportedOperation` instead of handing
    out a descriptor that is not a heartbeat.
    """

    __slots__ = ("_heartbeat",)

    def __init__(self, heartbeat: Heartbeat) -> None:
        self._heartbeat = heartbeat

    def notify(self) -> None:
        """Beat: tell the master this worker is alive now."""
        self._heartbeat.beat()

    def last_update(self) -> float:
        """The ``time.monotonic()`` of the last beat (gunicorn's tmp file mtime holds the same)."""
        return self._heartbeat.last_beat()

    def fileno(self) -> int:
        """No descriptor: the heartbeat is an anonymous shared mapping, not a file."""
        raise io.UnsupportedOperation("worker.tmp is monoceros's shared-memory heartbeat: no file")

    def close(self) -> None:
        """Release this process's mapping of the heartbeat (beats after it raise)."""
        self._heartbeat.close()


class WorkerAborted(SystemExit):
    """Raised where the main thread was when SIGABRT came (the master saw no heartbeat for
    ``timeout`` seconds): inside the application when it was stuck there. The worker exits with
    status 1; a worker serving a request in its main thread catches it on the way, to log the
    request with this stack and answer it."""

    def __init__(self) -> None:
        super().__init__(1)

    def __str__(self) -> str:
        return "worker timeout: aborted by the master after no heartbeat for `timeout` seconds"


class Worker:
    """Base class of a worker process. Subclasses implement :meth:`run`.

    The annotated attributes below are what server hooks may read (gunicorn's meanings); the
    ``--check-config`` hook check and docs/hooks.md are derived from them.
    """

    #: the worker's number, counted up by the master for each worker it forks
    age: int
    #: the worker's pid: ``"[booting]"`` until fork (so in ``pre_fork``), then the child's pid
    pid: int | str
    #: the master's pid
    ppid: int
    #: the listening sockets (``worker.sockets`` is the same list)
    listeners: list[Listener]
    cfg: Config
    log: Logger
    #: the application callable (None until loaded in the worker, unless preloaded)
    app: Callable[..., Any] | None
    #: the worker must beat at least this often, in seconds (gunicorn's ``timeout / 2``)
    timeout: float
    #: False once the worker was told to stop
    alive: bool
    #: True once the application is loaded and the worker serves (after post_worker_init)
    booted: bool
    #: True when the master sent SIGABRT because the heartbeat was older than ``timeout``
    aborted: bool
    #: the ``--reload`` file watcher, or None
    reloader: Reloader | None
    #: what counts the requests once serving started (the blocking workers' compiled
    #: :class:`~monoceros.workers.request_path.RequestPath`, the asgi worker's
    #: :class:`~monoceros.asgi.context.ServerContext`), so that counting one is no call into the
    #: worker; None before (the worker counts, in ``_nr``)
    _request_counter: RequestCounter | None = None
    _nr = 0
    #: the worker restarts after this many requests (``max_requests`` plus jitter)
    max_requests: int
    #: gunicorn's heartbeat file, here a view of the shared-memory heartbeat
    tmp: WorkerTmp
    heartbeat: Heartbeat
    #: the shared-memory request counts the master's stats listener reports (monoceros's own)
    metrics: WorkerMetrics
    graceful_stop: bool
    reopen_logs: bool

    @property
    def nr(self) -> int:
        """Requests served by this worker so far."""
        counter = self._request_counter
        return self._nr if counter is None else counter.nr

    @nr.setter
    def nr(self, value: int) -> None:
        counter = self._request_counter
        if counter is None:
            self._nr = value
        else:
            counter.nr = value

    def __init__(
        self,
        age: int,
        ppid: int,
        listeners: list[Listener],
        cfg: Config,
        log: Logger,
        heartbeat: Heartbeat,
        app: Callable[..., Any] | None = None,
    ) -> None:
        self.age = age
        self.ppid = ppid
        self.pid = "[booting]"
        self.listeners = listeners
        self.cfg = cfg
        self.log = log
        self.heartbeat = heartbeat
        self.tmp = WorkerTmp(heartbeat)
        self.app = app
        self.timeout = cfg.timeout / 2.0
        self.alive = True
        #: set by TERM: the worker finishes what it has (and, for sync, what is queued) first
        self.graceful_stop = False
        self.reopen_logs = False
        self.booted = False
        self.aborted = False
        self.reloader = None
        self.nr = 0
        jitter = random.randint(0, cfg.max_requests_jitter) if cfg.max_requests_jitter > 0 else 0
        self.max_requests = cfg.max_requests + jitter if cfg.max_requests > 0 else sys.maxsize
        self._wakeup_r = -1
        self._wakeup_w = -1
        #: the worker's own copy of the error log's descriptor, where faulthandler writes
        self._stacks_fd = -1
        #: (listener name, errno) -> (monotonic time of the last line, failures since then)
        self._accept_errors: dict[tuple[str, int | None], tuple[float, int]] = {}
        # made here, in the master, before the fork: the master reads what the worker counts
        self.metrics = self.new_metrics()

    def new_metrics(self) -> WorkerMetrics:
        """This kind's counting block: one request slot per request it can have in flight."""
        return WorkerMetrics(1)

    @property
    def sockets(self) -> list[Listener]:
        """gunicorn's name for the listening sockets."""
        return self.listeners

    @sockets.setter
    def sockets(self, value: list[Listener]) -> None:
        self.listeners = value

    @property
    def wsgi(self) -> Callable[..., Any] | None:
        """The application callable (gunicorn's ``worker.wsgi``; here also ``worker.app``)."""
        return self.app

    def notify(self) -> None:
        """Beat the heartbeat (gunicorn's ``Worker.notify``)."""
        self.heartbeat.beat()

    def __repr__(self) -> str:
        return f"<Worker {self.pid}>"

    # ------------------------------------------------------------------ process lifecycle

    def init_process(self) -> None:
        """Run in the forked child: signals, app, hooks, then serve until told to stop."""
        self.pid = os.getpid()
        random.seed()
        self._init_signals()
        if self.app is None:
            self.app = self._load_app()
        if self.cfg.reload:
            self._start_reloader(module_files())
        if not self._run_hook("post_worker_init"):
            sys.exit(WORKER_BOOT_ERROR)  # gunicorn: the worker did not boot, so the master stops
        self.booted = True
        self.heartbeat.booted()
        self.run()

    def _load_app(self) -> Callable[..., Any]:
        from ..app import AppLoadError, load_app

        spec = self.cfg.wsgi_app or ""
        try:
            return load_app(spec)
        except AppLoadError as exc:
            self.log.error("%s", exc)
            if self.cfg.reload:
                self._wait_for_a_fix(exc)
            sys.exit(APP_LOAD_ERROR)
        except Exception as exc:
            self.log.exception("Exception while loading the application %s", spec)
            if self.cfg.reload:
                self._wait_for_a_fix(exc)
            sys.exit(APP_LOAD_ERROR)

    # ------------------------------------------------------------------ --reload

    def _start_reloader(self, files: set[str]) -> None:
        files |= {os.path.abspath(f) for f in self.cfg.reload_extra_files}
        self.reloader = Reloader(files, self._source_changed, self.cfg.reload_engine)
        self.reloader.start()

    def _source_changed(self, path: str) -> None:
        """Reloader thread: a watched file changed; stop serving so a fresh worker starts."""
        self.log.info("Worker reloading: %s modified", path)
        self.alive = False
        with contextlib.suppress(OSError):
            os.write(self._wakeup_w, b"r")  # wake a worker waiting in poll()

    def _wait_for_a_fix(self, exc: BaseException) -> NoReturn:
        """--reload and the app does not import: keep watching, restart once a file changes."""
        files = module_files()
        files.update(frame.f_code.co_filename for frame, _ in traceback.walk_tb(exc.__traceback__))
        broken = getattr(exc, "filename", None)
        if broken:
            files.add(broken)
        files = {os.path.abspath(f) for f in files if os.path.exists(f)}
        self._start_reloader(files)  # watching once it returns: a fix saved from now is seen
        self.log.info("Waiting for a change to %s file(s) to try again (--reload)", len(files))
        self.heartbeat.booted()  # alive and watching: not a boot failure
        while self.alive:
            self.heartbeat.beat()
            time.sleep(0.2)
        sys.exit(0)

    def _init_signals(self) -> None:
        for name in _IGNORED_SIGNALS:
            signal.signal(getattr(signal, name), signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self._handle_term)
        signal.signal(signal.SIGINT, self._handle_quit)
        signal.signal(signal.SIGQUIT, self._handle_quit)
        signal.signal(signal.SIGUSR1, self._handle_usr1)
        signal.signal(signal.SIGABRT, self._handle_abort)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self._register_stacks()
        # A pipe the C-level signal handler writes to, so a worker waiting in poll() wakes at once.
        self._wakeup_r, self._wakeup_w = os.pipe()
        for fd in (self._wakeup_r, self._wakeup_w):
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
        # The master blocked signals around fork(); from here on they reach these handlers.
        signal.pthread_sigmask(signal.SIG_SETMASK, set())

    def _register_stacks(self) -> None:
        """On :data:`STACKS_SIGNAL`, write every thread's stack to the error log (from C).

        faulthandler keeps a descriptor number, not the file: it gets a copy of the error log's
        descriptor that :meth:`reopen_log_files` points at the new file, so a rotation never
        leaves it writing to a closed (or reused) descriptor."""
        if STACKS_SIGNAL is None:
            return
        try:
            self._stacks_fd = os.dup(self.log.error_fileno())
        except OSError:  # no error log descriptor at all: nowhere to write stacks
            return
        faulthandler.register(STACKS_SIGNAL, file=self._stacks_fd, all_threads=True)

    def drain_wakeup(self) -> None:
        """Empty the signal wake-up pipe."""
        with contextlib.suppress(OSError):  # BlockingIOError once it is empty
            while os.read(self._wakeup_r, 4096):
                pass

    def _handle_term(self, signum: int, frame: FrameType | None) -> None:
        """Graceful stop: finish the request in flight, accept no more."""
        self.alive = False
        self.graceful_stop = True

    def _handle_quit(self, signum: int, frame: FrameType | None) -> None:
        """Fast stop."""
        self.alive = False
        sys.exit(0 if self._run_hook("worker_int") else 1)

    def _handle_usr1(self, signum: int, frame: FrameType | None) -> None:
        """Reopen log files: flagged here, done by the serving loop between requests."""
        self.reopen_logs = True

    def reopen_log_files(self) -> None:
        """Act on a USR1 received since the last call."""
        self.reopen_logs = False
        try:
            self.log.reopen_files()
        except OSError as exc:
            self.log.error("Could not reopen log files: %s", exc)
        if self._stacks_fd >= 0:
            with contextlib.suppress(OSError):
                os.dup2(self.log.error_fileno(), self._stacks_fd, inheritable=False)

    def _handle_abort(self, signum: int, frame: FrameType | None) -> None:
        """The master found this worker unresponsive (timeout)."""
        self.alive = False
        self._run_hook("worker_abort")
        raise WorkerAborted

    def _run_hook(self, name: str) -> bool:
        """Run worker hook ``name``; False when it raised (its traceback is logged)."""
        try:
            getattr(self.cfg, name)(self)
        except Exception:
            self.log.exception("Exception in the %s hook", name)
            return False
        return True

    def parent_changed(self) -> bool:
        """True when the master died and this worker was re-parented."""
        if os.getppid() != self.ppid:
            self.log.info("Parent changed, shutting down: %s", self)
            return True
        return False

    def run(self) -> None:
        """Serve until ``self.alive`` is False."""
        raise NotImplementedError

    # ------------------------------------------------------------------ serving policy

    def accept_failed(self, listener: Listener, exc: OSError) -> bool:
        """Decide on an ``accept()`` error: True to accept again at once (:data:`ACCEPT_RETRY`);
        otherwise log it, pause accepting for :data:`ACCEPT_BACKOFF` seconds, and False."""
        if exc.errno in ACCEPT_RETRY:
            return True
        self._log_accept_error(listener, exc)
        self.pause_accepting(ACCEPT_BACKOFF)
        return False

    def _log_accept_error(self, listener: Listener, exc: OSError) -> None:
        """Log the first such failure at once, then one line per :data:`ACCEPT_LOG_INTERVAL`
        with the count: a worker out of descriptors fails ten times a second for as long as it
        lasts, and a line each time would bury everything else."""
        now = time.monotonic()
        key = (listener.name, exc.errno)
        last = self._accept_errors.get(key)
        if last is None:
            self.log.error("accept() failed on %s: %s", listener.name, exc)
            self._accept_errors[key] = (now, 0)
            return
        since, count = last[0], last[1] + 1
        if now - since < ACCEPT_LOG_INTERVAL:
            self._accept_errors[key] = (since, count)
            return
        self._accept_errors[key] = (now, 0)
        self.log.error(
            "accept() failed on %s: %s (%s times in the last %.0f s)",
            listener.name,
            exc,
            count,
            now - since,
        )

    def pause_accepting(self, seconds: float) -> None:
        """Accept nothing for ``seconds``: a worker on blocking sockets sleeps."""
        time.sleep(seconds)

    def http_root_path(self) -> str:
        """Where HTTP listeners mount the application (WSGI ``SCRIPT_NAME``, ASGI
        ``root_path``): the ``root_path`` setting, else the ``SCRIPT_NAME`` environment
        variable (gunicorn's WSGI habit), without a trailing ``/``."""
        return (self.cfg.root_path or os.environ.get("SCRIPT_NAME", "")).rstrip("/")

    def proxy_header_reader(self) -> ProxyHeaderReader | None:
        """The PROXY protocol policy of this worker's connections (``proxy_protocol``,
        ``proxy_allow_ips``), or None when it is off: decided once, so a connection pays for it
        only when it is on."""
        mode = self.cfg.proxy_protocol
        if mode == "off":
            return None
        return ProxyHeaderReader(mode, AddressMatcher(self.cfg.proxy_allow_ips))

    def idle_wait(self, most: float) -> float:
        """Seconds an idle worker may wait for work before it beats: ``timeout / 2``, at most
        ``most`` (also with ``timeout = 0``)."""
        return min(most, self.timeout) if self.timeout > 0 else most

    def check_max_requests(self) -> bool:
        """After a request: once ``max_requests`` are served, log it and stop accepting
        (``alive`` False: the request in flight finishes). True when this call stopped it."""
        if self.nr < self.max_requests or not self.alive:
            return False
        self.log.info("Autorestarting worker after current request.")
        self.alive = False
        self.metrics.exiting("max_requests")
        return True

    def serves_listen_queue(self) -> bool:
        """Whether this stopping worker serves the connections waiting in the listen queues: on
        a graceful stop of the server, as the last process to close a listener resets what is
        queued on it (nginx answers 502). Not when the master keeps the listeners open (worker
        replaced on HUP, retired on TTOU or WINCH), nor after max_requests."""
        return self.graceful_stop and not self.heartbeat.listeners_kept()

    def take_listen_queue(
        self,
        take: Callable[[Listener, socket.socket, PeerAddress], None],
        deadline: float = float("inf"),
    ) -> None:
        """Accept what waits in each listener's queue, without waiting, and give each
        connection and its peer address to ``take``: at most ``backlog`` connections per
        listener, none after ``deadline`` (``time.monotonic()``); the heartbeat beats between."""
        for listener in self.listeners:
            sock = listener.sock
            sock.setblocking(False)
            for _ in range(self.cfg.backlog):
                if time.monotonic() >= deadline:
                    return
                try:
                    conn, peer = sock.accept()
                except OSError:  # empty (EAGAIN), or the socket is gone
                    break
                take(listener, conn, peer)
                self.heartbeat.beat()


def stack_of(frame: FrameType | None, whose: str, outermost: FrameType | None = None) -> str:
    """``whose`` stack, formatted as a traceback is (``File "...", line N, in function`` and the
    source line; most recent call last), for the error log: from ``outermost`` when it is one
    of the callers (the frames below it are the server's own), else from the thread's start,
    down to ``frame``."""
    if frame is None:
        return f"(no stack of {whose}: it finished meanwhile)"
    frames = []
    walk: FrameType | None = frame
    while walk is not None:
        frames.append((walk, walk.f_lineno))
        if walk is outermost:
            break
        walk = walk.f_back
    summary = traceback.StackSummary.extract(reversed(frames))
    return f"Stack of {whose} (most recent call last):\n" + "".join(summary.format()).rstrip("\n")
