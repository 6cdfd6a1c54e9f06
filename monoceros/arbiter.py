"""The master process: binds the listeners, forks workers and supervises them.

Signals (gunicorn's meanings): TERM graceful stop, INT/QUIT fast stop, HUP reload the
configuration and replace the workers (the new ones boot before the old ones are told to stop, and
the listeners never close, so no connection is refused), TTIN/TTOU one worker more/less, USR1
reopen the log files, CHLD reap and respawn. Signal handlers only queue the signal; the main loop
acts on it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import __version__
from .app import current_dir
from .config import Config, ConfigError
from .heartbeat import Heartbeat
from .listeners import (
    BIND_ATTEMPTS,
    BIND_RETRY_DELAY,
    INHERIT_ENV,
    BindError,
    Listener,
    bind_all,
    inherit_env,
    inherited_sockets,
    open_to_every_user,
    parse_bind,
    set_defer_accept,
    systemd_sockets,
)
from .logs import Logger
from .pidfile import Pidfile, PidfileError
from .proctitle import AVAILABLE as PROCTITLE_AVAILABLE
from .proctitle import set_title
from .recycle import MEMORY_SAMPLES, MIB, Recycler, Verdict
from .stats_render import MasterStats, ServerView, read_rss
from .stats_server import StatsServer
from .statsd import StatsdSender
from .worker_metrics import Totals
from .workers.base import APP_LOAD_ERROR, STACKS_SIGNAL, WORKER_BOOT_ERROR, Worker

if TYPE_CHECKING:
    from ssl import SSLContext

__all__ = ["Arbiter", "HaltServer", "load_tls"]

_HANDLED = ("HUP", "QUIT", "INT", "TERM", "TTIN", "TTOU", "USR1", "CHLD")
#: the binary-upgrade pair: USR2 starts a new master, WINCH stops the old one's workers
_UPGRADE = ("USR2", "WINCH")
_SIGNAL_NAMES = {getattr(signal, "SIG" + name): name.lower() for name in _HANDLED + _UPGRADE}
_BLOCKED_AROUND_FORK = {getattr(signal, "SIG" + name) for name in _HANDLED} | {signal.SIGABRT}
#: a worker that dies this many times in a row before finishing its boot stops the master
_MAX_BOOT_FAILURES = 5
#: seconds a worker that timed out gets to exit after SIGABRT; then it is asked for its stacks
_ABORT_GRACE = 2.0
#: seconds between that request (STACKS_SIGNAL) and SIGKILL: faulthandler writes from C at once
_STACKS_GRACE = 0.5
#: seconds between two looks at a recycled worker's booting successor
_SUCCESSOR_POLL = 0.1
_NO_RSS = "max_worker_memory: cannot read the workers' resident memory here (no /proc/PID/statm)"


class HaltServer(Exception):
    """Stop the master with this message and exit status."""

    def __init__(self, reason: str, exit_status: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_status = exit_status


@dataclass(slots=True, eq=False)
class WorkerRecord:
    """What the master knows about one live worker."""

    pid: int
    age: int
    heartbeat: Heartbeat
    worker: Worker
    retiring: bool = False
    #: retired to be replaced (HUP, or WINCH after USR2): a "reload" restart
    replaced: bool = False
    #: retired by recycling (max_worker_memory, max_worker_lifetime): "memory" or "lifetime"
    recycled: str | None = None
    #: the pid of the worker forked to replace it when it was recycled
    successor: int = 0
    term_sent: bool = False
    abort_sent: float = 0.0
    stacks_sent: float = 0.0


class Arbiter:
    """``Arbiter(cfg).run()`` serves until stopped and returns the process exit status.

    Server hooks receive this object as ``server``. The annotated attributes and the properties
    are what they may read, with gunicorn's meanings; the ``--check-config`` hook check and
    docs/hooks.md are derived from them.
    """

    #: exit status of a master whose worker could not boot (gunicorn's constant)
    WORKER_BOOT_ERROR = WORKER_BOOT_ERROR
    #: exit status of a master whose application could not be loaded
    APP_LOAD_ERROR = APP_LOAD_ERROR

    cfg: Config
    log: Logger
    #: the master's pid (set by ``start``)
    pid: int
    #: the bound listening sockets (``LISTENERS`` is the same list)
    listeners: list[Listener]
    #: what the master knows about each live worker, by pid (``WORKERS`` has the workers)
    workers: dict[int, WorkerRecord]
    #: how many workers the master keeps (changed by TTIN/TTOU, HUP, WINCH)
    num_workers: int
    #: how many workers were forked so far (the last one's ``worker.age``)
    worker_age: int
    #: the application loaded in the master by ``preload_app``, else None
    app: Callable[..., Any] | None
    pidfile: Pidfile | None
    #: True when the listeners came from systemd socket activation
    systemd: bool
    #: pid of the new master started by USR2 while it runs (0 otherwise)
    reexec_pid: int
    #: pid of the old master when this one was started by its USR2 (0 otherwise)
    upgraded_from: int
    launch_dir: str
    boot_failures: int
    #: the TLS context of the listeners that serve TLS (None: none does), built from the
    #: settings at start and on HUP; the workers inherit it
    tls_context: SSLContext | None

    def __init__(
        self, cfg: Config, launch_dir: str | None = None, tls_context: SSLContext | None = None
    ) -> None:
        """``tls_context``: the one :func:`load_tls` already built from ``cfg`` (the command
        line checks the settings before starting the arbiter), else it is built at start."""
        self.cfg = cfg
        self.tls_context = tls_context
        #: where the command was started: relative paths in argv (``-c conf.py``) are from here
        self.launch_dir = launch_dir or current_dir()
        self.log = Logger(cfg)
        self.pid = 0
        self.listeners = []
        self.workers = {}
        self.num_workers = cfg.workers
        self.worker_age = 0
        self.app = None
        self.pidfile = None
        self.systemd = False
        self.boot_failures = 0
        self._signals: list[int] = []
        self.reexec_pid = 0
        self.upgraded_from = 0
        self._wakeup_r = -1
        self._wakeup_w = -1
        self._stopping = False
        self._stats = MasterStats()
        self._stats_server: StatsServer | None = None
        self._stats_listener: Listener | None = None
        self._statsd: StatsdSender | None = None
        self._statsd_failed = False
        self._recycler = Recycler(cfg.max_worker_memory, cfg.max_worker_lifetime, log=self.log)
        #: the master's process title as last set
        self._title = ""

    # ------------------------------------------------------------------ gunicorn's names for hooks

    @property
    def LISTENERS(self) -> list[Listener]:  # gunicorn's name
        """The listening sockets; ``str()`` of one is its address (``http://127.0.0.1:8000``)."""
        return self.listeners

    @property
    def WORKERS(self) -> dict[int, Worker]:  # gunicorn's name
        """The live workers by pid (a fresh dict: changing it changes nothing)."""
        return {pid: record.worker for pid, record in self.workers.items()}

    @property
    def address(self) -> list[Any]:
        """The ``bind`` addresses as gunicorn parses them: ``(host, port)``, a UNIX socket path,
        or an inherited descriptor number."""
        return [_parsed_address(value) for value in self.cfg.bind]

    @property
    def timeout(self) -> int:
        """The ``timeout`` setting: seconds of silence after which a worker is aborted."""
        return self.cfg.timeout

    @property
    def master_pid(self) -> int:
        """During a USR2 upgrade, in the new master: the old master's pid (0 otherwise)."""
        if self.upgraded_from and os.getppid() == self.upgraded_from:
            return self.upgraded_from
        return 0

    @property
    def master_name(self) -> str:
        """``"Master"``, or ``"Master.2"`` for the new master while the old one runs."""
        return "Master.2" if self.master_pid else "Master"

    @property
    def proc_name(self) -> str:
        """The ``proc_name`` setting, with ``.2`` appended in the new master of an upgrade."""
        return self.cfg.proc_name + (".2" if self.master_pid else "")

    @property
    def worker_class(self) -> type:
        """The worker class the master forks."""
        from .workers import load_worker_class

        return load_worker_class(self.cfg.worker_class_path)

    def kill_worker(self, pid: int, sig: int) -> None:
        """Send ``sig`` to worker ``pid`` (one that is gone is forgotten)."""
        try:
            os.kill(pid, sig)
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                record = self.workers.pop(pid, None)
                if record is not None:
                    self._recycler.gone(pid)
                    record.heartbeat.close()
                    self._stats.worker_gone(record.worker.metrics, self._restart_reason(record))

    def _hook(self, name: str, *args: Any) -> None:
        """Run server hook ``name``. An exception is logged with its traceback and stops the
        master: these are the hooks whose exceptions end gunicorn's master too."""
        if not self._logged_hook(name, *args):
            raise HaltServer(f"The {name} hook failed.")

    def _logged_hook(self, name: str, *args: Any) -> bool:
        """Run server hook ``name``; False when it raised (its traceback is logged)."""
        try:
            getattr(self.cfg, name)(*args)
        except Exception:
            self.log.exception("Exception in the %s hook", name)
            return False
        return True

    # ------------------------------------------------------------------ start / run

    def run(self) -> int:
        """Start, supervise until a stop signal, stop; return the exit status."""
        try:
            self.start()
        except HaltServer as exc:
            self.log.error("%s", exc.reason)
            self._cleanup()
            return exc.exit_status
        status = 0
        if not PROCTITLE_AVAILABLE:
            self.log.debug("setproctitle cannot be imported: process titles are not set")
        self._retitle()
        try:
            self._hook("nworkers_changed", self, self.num_workers, None)
            self.spawn_workers()
            while True:
                sig = self._signals.pop(0) if self._signals else None
                if sig is None:
                    self.sleep(self._recycle_wait())
                    self.send_statsd()
                    self._retitle()  # an upgrade's new master drops ".2" once the old one ends
                    if self._signals:
                        continue  # act on a stop signal before respawning anything
                    self.reap_workers()
                    self.murder_workers()
                    self.manage_workers()
                    if self._recycler.enabled:
                        self.recycle_workers()
                    continue
                name = _SIGNAL_NAMES.get(sig, str(sig))
                if name != "chld":
                    self.log.info("Handling signal: %s", name)
                getattr(self, f"handle_{name}")()
        except StopIteration:
            pass
        except KeyboardInterrupt:
            self.stop(graceful=False)
        except HaltServer as exc:
            self.log.error("%s", exc.reason)
            self.stop(graceful=False)
            status = exc.exit_status
        except Exception:
            self.log.exception("Unhandled exception in the master loop")
            self.stop(graceful=False)
            status = 1
        self.send_statsd(final=True)  # what the last second counted
        self.log.info("Shutting down: %s", self.master_name)
        if not self._cleanup():
            status = status or 1  # gunicorn exits with the on_exit hook's exception
        return status

    def start(self) -> None:
        """Set up logging, signals, pidfile and listeners; preload the app if asked."""
        cfg = self.cfg
        if cfg.daemon:
            _daemonize()
        self.pid = os.getpid()
        self.log.info("Starting monoceros %s", __version__)
        for notice in cfg.notices:
            self.log.info("%s", notice)
        for warning in cfg.warnings:
            self.log.warning("%s", warning)
        self._hook("on_starting", self)
        self._init_signals()
        if cfg.pidfile:
            self.pidfile = Pidfile(cfg.pidfile)
            try:
                self.pidfile.create(self.pid)
            except PidfileError as exc:
                self.pidfile = None
                raise HaltServer(str(exc)) from None
        if self.tls_context is None:
            try:
                self.tls_context = load_tls(cfg)
            except ConfigError as exc:
                raise HaltServer(str(exc)) from None
        try:
            upgraded = inherited_sockets()
            if upgraded:
                self.upgraded_from = os.getppid()
                self.log.info(
                    "Adopting %s listener(s) from the master that started this one "
                    "(pid %s, USR2 upgrade)",
                    len(upgraded),
                    self.upgraded_from,
                )
            activated = systemd_sockets()
            self.systemd = bool(activated)
            self.listeners = bind_all(
                cfg.bind,
                cfg.protocol,
                cfg.backlog,
                cfg.reuse_port,
                cfg.umask,
                activated,
                upgraded,
                defer_accept=cfg.defer_accept,
                retry=self._bind_retry,
                tls=self.tls_context,
            )
        except BindError as exc:
            raise HaltServer(str(exc)) from None
        for listener in self.listeners:
            self._listening(listener)
        self._start_stats_server()
        self._give_files_to_worker_user()
        if cfg.max_worker_memory and read_rss(self.pid) is None:
            raise HaltServer(_NO_RSS)
        if cfg.threads > 1 and cfg.worker_class == "sync":
            # gunicorn's rule: more than one thread means the threaded worker
            self.log.info("threads = %s: using the gthread worker instead of sync", cfg.threads)
            cfg.set("worker_class", "gthread")
        self.log.info("Using worker: %s", cfg.worker_class)
        if cfg.request_timeout and cfg.worker_class != "asgi":
            self.log.warning(request_timeout_ignored(cfg))
        if cfg.preload_app:
            if cfg.reload:
                self.log.warning("--reload cannot reload code loaded in the master by --preload")
            self.app = self._load_app_in_master()
        self._hook("when_ready", self)  # as in gunicorn: before the first worker is forked

    def _retitle(self) -> None:
        """Set the master's process title, ``monoceros: master [NAME]``, if NAME changed."""
        name = self.proc_name
        if name != self._title:
            self._title = name
            set_title("master", name)

    def _bind_retry(self, exc: BindError, attempt: int) -> None:
        """An address is in use at start: say so and try again in a second, as gunicorn does
        (a restart right after a stop, while the old workers let go); not once told to stop."""
        if any(sig in self._signals for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)):
            raise exc
        self.log.error(
            "%s; retrying in %g s (attempt %s of %s)",
            exc,
            BIND_RETRY_DELAY,
            attempt,
            BIND_ATTEMPTS,
        )

    # ------------------------------------------------------------------ the stats listener

    def _start_stats_server(self) -> None:
        """Bind ``stats_bind`` and serve it from the master's loop (see stats_server)."""
        value = self.cfg.stats_bind
        if not value or self._stats_server is not None:
            return
        try:
            listener = _stats_listener(value, self.cfg.umask)
        except BindError as exc:
            if not self.upgraded_from:
                raise HaltServer(str(exc)) from None
            if not getattr(self, "_stats_bind_warned", False):
                self._stats_bind_warned = True
                self.log.warning("Stats listener: %s; retrying while the old master has it", exc)
            return
        self._stats_listener = listener
        self._stats_server = StatsServer(listener.sock, self._stats.routes(self._stats_view))
        self.log.info("Stats listener at: http://%s (%s)", listener.name, self.pid)

    def _stats_view(self) -> ServerView:
        """What a scrape reports, read now."""
        return self._stats.view(
            self.pid,
            [(r.pid, r.age, r.heartbeat, r.worker.metrics) for r in self.workers.values()],
            [(lst.name, lst.protocol, lst.sock) for lst in self.listeners],
            num_workers=self.num_workers,
            stopping=self._stopping,
            timeout=self.cfg.timeout,
        )

    # ------------------------------------------------------------------ statsd

    def send_statsd(self, final: bool = False) -> None:
        """Send statsd metrics (``statsd_host``) if a second passed since the last send, or
        now if ``final``; an error is logged once and never stops the master."""
        cfg = self.cfg
        try:
            if not cfg.statsd_host:
                if self._statsd is not None:
                    self._statsd.close()
                    self._statsd = None
                return
            if self._statsd is None:
                self._statsd = StatsdSender(
                    cfg.statsd_host, cfg.statsd_prefix, cfg.dogstatsd_tags, self.log
                )
            else:
                self._statsd.configure(cfg.statsd_host, cfg.statsd_prefix, cfg.dogstatsd_tags)
            self._statsd.tick(self._statsd_totals, force=final)
        except Exception:
            if not self._statsd_failed:
                self._statsd_failed = True
                self.log.exception("Cannot send statsd metrics")

    def _statsd_totals(self) -> tuple[Totals, int]:
        """Every count since the master started (with the master's own log lines), and the
        live workers."""
        totals = self._stats.totals(r.worker.metrics for r in self.workers.values())
        totals.add(Totals(logs=self.log.levels.counts()))
        return totals, len(self.workers)

    def _restart_reason(self, record: WorkerRecord) -> str | None:
        """Why a reaped worker went, for monoceros_worker_restarts_total (None: not counted,
        a stop or a TTOU); the worker's own word (max_requests) wins over this."""
        if record.abort_sent:
            return "timeout"
        if record.recycled:
            return record.recycled
        if record.replaced:
            return "reload"
        if self._stopping or record.retiring:
            return None
        return "crash"

    def _listening(self, listener: Listener) -> None:
        self.log.info("Listening at: %s://%s (%s)", listener.scheme, listener.name, self.pid)
        if listener.protocol == "uwsgi" and open_to_every_user(listener):
            # gunicorn's default (umask 0) kept, but a UNIX uwsgi peer is trusted with
            # REMOTE_ADDR and HTTPS: say who else can be that peer
            fix = (
                "bind a socket file instead"
                if listener.name.startswith("unix:@")  # no permissions to tighten
                else "use --umask 007 and a group nginx is in (--group), or a directory only "
                "they can enter"
            )
            self.log.warning(
                "%s: every local user can connect to this uwsgi socket and set REMOTE_ADDR and "
                "HTTPS (a UNIX socket peer is trusted); %s (docs/deploy.md)",
                listener.name,
                fix,
            )

    def _give_files_to_worker_user(self) -> None:
        """Workers running as ``user``/``group`` must reopen the logs and own the sockets.

        Created as root, these files are handed over without trusting their paths again: a
        user who may write to their directory could have put a symlink there since, and
        ``chown(path)`` would follow it and hand over any file on the system. A log file is
        changed through the descriptor the master has open on it (``fchown``). A UNIX socket
        file cannot be reached through the socket's descriptor (``fchown`` on a socket changes
        the socket's own inode, not the file ``bind()`` created, and ``bind()`` cannot create
        it with another owner), so it is changed by path without following a symlink
        (``lchown``), and only while it is still a socket owned by the master's user.
        """
        cfg = self.cfg
        if (cfg.user, cfg.group) == (os.geteuid(), os.getegid()):
            return
        for handler in self.log.log_files():
            stream = handler.stream
            if stream is None:
                continue
            try:
                os.fchown(stream.fileno(), cfg.user, cfg.group)
            except (OSError, ValueError) as exc:
                self._not_given(handler.baseFilename, exc)
        for listener in self.listeners:
            path = listener.spec.path
            if not (listener.is_unix and listener.unlink_on_close and path[:1] not in ("", "@")):
                continue
            try:
                st = os.lstat(path)
                if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
                    raise OSError(errno.EPERM, "no longer the socket this master created")
                os.chown(path, cfg.user, cfg.group, follow_symlinks=False)
            except OSError as exc:
                self._not_given(path, exc)

    def _not_given(self, path: str, exc: Exception) -> None:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self.log.warning("Could not give %s to uid %s: %s", path, self.cfg.user, reason)

    def _load_app_in_master(self) -> Callable[..., Any]:
        from .app import AppLoadError, load_app

        try:
            return load_app(self.cfg.wsgi_app or "")
        except AppLoadError as exc:
            raise HaltServer(str(exc), APP_LOAD_ERROR) from None
        except Exception:
            self.log.exception("Exception while loading the application %s", self.cfg.wsgi_app)
            raise HaltServer("App failed to load.", APP_LOAD_ERROR) from None

    def _init_signals(self) -> None:
        if self._wakeup_r < 0:
            self._wakeup_r, self._wakeup_w = os.pipe()
            for fd in (self._wakeup_r, self._wakeup_w):
                os.set_blocking(fd, False)
                os.set_inheritable(fd, False)
        for name in _HANDLED + _UPGRADE:
            signal.signal(getattr(signal, "SIG" + name), self._queue_signal)
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)

    def _queue_signal(self, signum: int, frame: Any) -> None:
        if len(self._signals) < 10 and not (signum == signal.SIGCHLD and signum in self._signals):
            self._signals.append(signum)

    def sleep(self, seconds: float = 1.0) -> None:
        """Wait up to ``seconds`` for a signal (the wake-up pipe makes it immediate), serving
        the stats listener meanwhile."""
        import select

        if self._stats_server is None and self.cfg.stats_bind:
            self._start_stats_server()  # a USR2 upgrade's old master held the address
        if self._stats_server is not None:
            ready = self._stats_server.wait([self._wakeup_r], seconds)
        else:  # retried on EINTR (PEP 475)
            ready, _, _ = select.select([self._wakeup_r], [], [], seconds)
        if ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wakeup_r, 4096):
                    pass

    # ------------------------------------------------------------------ signal handlers

    def handle_chld(self) -> None:
        """A child exited: reap it and fork its replacement now, not at the next wake-up
        (unless another signal is queued: a stop is acted on before anything is forked)."""
        self.reap_workers()
        if not self._signals:
            self.manage_workers()

    def handle_hup(self) -> None:
        """Reload the configuration and replace the workers gracefully."""
        self.reload()

    def handle_term(self) -> None:
        """Graceful stop."""
        self.stop(graceful=True)
        raise StopIteration

    def handle_int(self) -> None:
        """Fast stop."""
        self.stop(graceful=False)
        raise StopIteration

    handle_quit = handle_int

    def handle_ttin(self) -> None:
        """One worker more."""
        self._set_num_workers(self.num_workers + 1)

    def handle_ttou(self) -> None:
        """One worker less (never fewer than one)."""
        if self.num_workers > 1:
            self._set_num_workers(self.num_workers - 1)

    def _set_num_workers(self, count: int) -> None:
        old, self.num_workers = self.num_workers, count
        self._hook("nworkers_changed", self, count, old)
        self.manage_workers()

    def handle_usr2(self) -> None:
        """Upgrade: start a new master from the code on disk, handing it the listeners."""
        self.reexec()

    def handle_winch(self) -> None:
        """After a USR2 upgrade (or when daemonized): stop this master's workers gracefully.

        A terminal sends WINCH when its window is resized, so a foreground master with no
        upgrade running ignores it.
        """
        if not (self.reexec_pid or self.cfg.daemon):
            self.log.info("WINCH ignored: no USR2 upgrade is running and not daemonized")
            return
        self.log.info("Stopping this master's workers gracefully (WINCH)")
        for record in self.workers.values():
            record.replaced = True
        self.num_workers = 0
        self.manage_workers()

    def reexec(self) -> None:
        """Fork and exec a new master with the listeners inherited (gunicorn's USR2)."""
        if self.reexec_pid:
            self.log.warning(
                "USR2 ignored: an upgrade is already running (new master pid %s)", self.reexec_pid
            )
            return
        if self.pidfile is not None:
            self.pidfile.rename(self.pidfile.path + ".oldbin")
        argv = reexec_argv(sys.argv, self.launch_dir)
        environ = dict(os.environ)
        environ[INHERIT_ENV] = inherit_env(self.listeners)
        signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED_AROUND_FORK)
        pid = os.fork()
        if pid:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _BLOCKED_AROUND_FORK)
            for listener in self.listeners:
                os.set_inheritable(listener.fileno(), False)
            self.reexec_pid = pid
            self.log.info(
                "Started a new master (pid %s) for the upgrade; send WINCH here to "
                "stop the old workers, then TERM or QUIT",
                pid,
            )
            return
        try:
            signal.set_wakeup_fd(-1)
            for sig in _BLOCKED_AROUND_FORK:
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            self.cfg.pre_exec(self)
            os.chdir(self.launch_dir)
            os.execve(sys.executable, argv, environ)
        except BaseException:
            self.log.exception("Could not execute the new master")
        finally:
            os._exit(1)

    def handle_usr1(self) -> None:
        """Reopen log files here and in every worker."""
        self.log.reopen_files()
        self.kill_workers(signal.SIGUSR1)

    # ------------------------------------------------------------------ workers

    def spawn_workers(self) -> None:
        """Spawn workers until there are ``num_workers`` that are not retiring."""
        while sum(not w.retiring for w in self.workers.values()) < self.num_workers:
            self.spawn_worker()

    def spawn_worker(self) -> int:
        """Fork one worker; return its pid (in the master)."""
        from .workers import load_worker_class

        self.worker_age += 1
        heartbeat = Heartbeat()
        worker_class = load_worker_class(self.cfg.worker_class_path)
        worker = worker_class(
            self.worker_age, self.pid, self.listeners, self.cfg, self.log, heartbeat, self.app
        )
        self._hook("pre_fork", self, worker)
        proc_name = self.proc_name  # the master's: ".2" in the new master of an upgrade
        # Signals stay blocked across the fork until the child has its own handlers, so a TERM
        # sent to a worker that is still booting is acted on, not lost in the master's queue.
        signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED_AROUND_FORK)
        pid = os.fork()
        if pid:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _BLOCKED_AROUND_FORK)
            worker.pid = pid  # the master's copy, as hooks (child_exit) see it
            self.workers[pid] = WorkerRecord(pid, self.worker_age, heartbeat, worker)
            self._recycler.born(pid, time.monotonic())
            return pid
        # ---- in the child: from here on nothing may return into the master's code, whatever
        # the application did (a closed stdout makes the last flush raise): os._exit ends it
        code = 1
        try:
            code = self._worker_process(worker, proc_name)
        finally:
            os._exit(code)

    def _worker_process(self, worker: Worker, proc_name: str) -> int:
        """The forked child's whole life: boot, serve, worker_exit; returns the exit status."""
        code = 0
        try:
            self._child_reset()
            set_title("worker", proc_name)
            self.log.levels.count_into(worker.metrics)  # the master reads what it counts
            worker.pid = os.getpid()
            self.log.info("Booting worker with pid: %s", worker.pid)
            if not self._logged_hook("post_fork", self, worker):
                sys.exit(WORKER_BOOT_ERROR)  # the worker did not boot: the master stops (gunicorn)
            worker.init_process()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            with contextlib.suppress(BaseException):
                self.log.exception("Exception in worker process")
            code = 1 if worker.booted else WORKER_BOOT_ERROR
        try:
            self.log.info("Worker exiting (pid: %s)", os.getpid())
            self.cfg.worker_exit(self, worker)
        except BaseException:
            with contextlib.suppress(BaseException):
                self.log.exception("Exception in the worker_exit hook")
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # closed by the application (ValueError, EBADF), or None
                pass
        return code

    def _child_reset(self) -> None:
        """In a fresh child: forget the master's signal plumbing and drop privileges."""
        signal.set_wakeup_fd(-1)
        if self._stats_server is not None:  # its connections must close when the master's do
            self._stats_server.close()
            self._stats_server = None
        if self._statsd is not None:
            self._statsd.close()
            self._statsd = None
        for fd in (self._wakeup_r, self._wakeup_w):
            os.close(fd)
        self._signals = []
        self.workers = {}
        cfg = self.cfg
        if cfg.user != os.geteuid() or cfg.group != os.getegid():
            if os.geteuid() == 0:
                os.setgroups([])  # do not keep root's supplementary groups
            if cfg.group != os.getegid():
                os.setgid(cfg.group)
            if cfg.user != os.geteuid():
                os.setuid(cfg.user)

    def reap_workers(self) -> None:
        """Collect every exited child, run child_exit, and stop on boot failures."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if not pid:
                return
            record = self.workers.pop(pid, None)
            if record is None:
                if pid == self.reexec_pid:
                    self._upgrade_ended(status)
                continue
            self._recycler.gone(pid)
            code = os.waitstatus_to_exitcode(status)
            booted = record.heartbeat.is_booted()
            record.heartbeat.close()
            self._stats.worker_gone(record.worker.metrics, self._restart_reason(record))
            if code < 0:
                signame = _signal_name(-code)
                if -code == signal.SIGKILL and record.abort_sent:
                    self.log.error("Worker (pid:%s) was killed after its timeout", pid)
                elif not (self._stopping and -code in (signal.SIGTERM, signal.SIGQUIT)):
                    self.log.error("Worker (pid:%s) was sent %s!", pid, signame)
            elif code not in (0,) and not self._stopping:
                self.log.warning("Worker (pid:%s) exited with code %s", pid, code)
            self._child_exit(record.worker)
            if self._stopping:
                continue
            if not booted and not record.retiring and self._successor_failed(pid, code):
                continue
            if record.retiring and code in (APP_LOAD_ERROR, WORKER_BOOT_ERROR):
                continue  # a worker of an abandoned reload: already handled
            if code == APP_LOAD_ERROR:
                self._boot_failed("App failed to load.", APP_LOAD_ERROR, record)
            elif code == WORKER_BOOT_ERROR:
                self._boot_failed("Worker failed to boot.", WORKER_BOOT_ERROR, record)
            elif not booted and not record.retiring:
                self.boot_failures += 1
                if self.boot_failures >= _MAX_BOOT_FAILURES:
                    raise HaltServer(
                        f"{self.boot_failures} workers in a row died before they finished "
                        "booting; stopping instead of forking in a loop",
                        WORKER_BOOT_ERROR,
                    )
            elif booted:
                self.boot_failures = 0

    def _child_exit(self, worker: Worker) -> None:
        """Run the child_exit hook: its exception stops the master, as in gunicorn, unless the
        master is stopping already (then it is logged)."""
        if self._stopping:
            self._logged_hook("child_exit", self, worker)
        else:
            self._hook("child_exit", self, worker)

    def _upgrade_ended(self, status: int) -> None:
        """The new master of a USR2 upgrade exited: take the pidfile back and carry on."""
        self.log.error(
            "The new master (pid %s) exited with status %s; this master keeps serving",
            self.reexec_pid,
            os.waitstatus_to_exitcode(status),
        )
        self.reexec_pid = 0
        if self.pidfile is not None and self.cfg.pidfile:
            self.pidfile.rename(self.cfg.pidfile)
        if self.num_workers == 0:
            self.num_workers = self.cfg.workers  # WINCH had stopped ours: serve again

    def _boot_failed(self, reason: str, status: int, record: WorkerRecord) -> None:
        retiring = [w for w in self.workers.values() if w.retiring and not w.recycled]
        if retiring and not record.retiring:
            # A reload whose new workers cannot boot: keep serving with the old ones.
            self.log.error("%s Reload abandoned; the previous workers keep serving.", reason)
            for w in list(self.workers.values()):
                if not w.retiring:
                    w.retiring = w.term_sent = True
                    self.kill_worker(w.pid, signal.SIGTERM)
                elif not w.term_sent:
                    w.retiring = False
            return
        raise HaltServer(reason, status)

    def murder_workers(self) -> None:
        """Abort workers whose heartbeat is older than ``timeout``."""
        timeout = self.cfg.timeout
        if timeout <= 0:
            return
        now = time.monotonic()
        for record in list(self.workers.values()):
            if record.abort_sent:
                if now - record.abort_sent > _ABORT_GRACE:
                    self._kill_stuck(record, now)
                continue
            silent = now - record.heartbeat.last_beat()
            if silent <= timeout:
                continue
            self.log.critical(
                "WORKER TIMEOUT (pid:%s): no heartbeat for %.0fs (timeout %ss); aborting it",
                record.pid,
                silent,
                timeout,
            )
            record.abort_sent = now
            record.worker.aborted = True
            self.kill_worker(record.pid, signal.SIGABRT)

    def _kill_stuck(self, record: WorkerRecord, now: float) -> None:
        """A worker alive ``_ABORT_GRACE`` after SIGABRT is stuck where no Python signal handler
        runs (C code): have it write its threads' stacks (faulthandler), then SIGKILL it."""
        if STACKS_SIGNAL is not None and not record.stacks_sent:
            self.log.error(
                "Worker (pid:%s) still running %.0fs after SIGABRT (stuck outside Python, e.g. "
                "in C code); its threads' stacks follow, then SIGKILL",
                record.pid,
                now - record.abort_sent,
            )
            record.stacks_sent = now
            self.kill_worker(record.pid, STACKS_SIGNAL)
        elif now - record.stacks_sent > _STACKS_GRACE:
            self.kill_worker(record.pid, signal.SIGKILL)

    def manage_workers(self) -> None:
        """Keep ``num_workers`` active workers; retire extras, oldest first."""
        active = sorted((w for w in self.workers.values() if not w.retiring), key=lambda w: w.age)
        if len(active) < self.num_workers:
            self.spawn_workers()
        elif len(active) > self.num_workers:
            for record in active[: len(active) - self.num_workers]:
                record.retiring = True
        retiring = [w for w in self.workers.values() if w.retiring and not w.term_sent]
        if retiring:
            fresh = [w for w in self.workers.values() if not w.retiring]
            if all(w.heartbeat.is_booted() for w in fresh):
                for record in retiring:
                    record.term_sent = True
                    if record.recycled:
                        self._successor_booted(record)
                    if set(record.worker.listeners) <= set(self.listeners):
                        record.heartbeat.keep_listeners()  # its listen queue is not its to serve
                    self.kill_worker(record.pid, signal.SIGTERM)

    # ------------------------------------------------------------------ recycling

    def recycle_workers(self) -> None:
        """Replace a worker that outgrew ``max_worker_memory`` or outlived
        ``max_worker_lifetime`` (see :mod:`monoceros.recycle`) the way HUP replaces workers:
        its successor is forked now, and :meth:`manage_workers` sends it TERM once the
        successor has booted. One at a time: none starts while a worker is leaving or booting."""
        records = list(self.workers.values())
        candidates = [r.pid for r in records if not r.retiring and r.heartbeat.is_booted()]
        idle = len(candidates) == len(records) == self.num_workers
        verdict = self._recycler.check(time.monotonic(), candidates, may_start=idle)
        if verdict is not None:
            self._recycle(self.workers[verdict.pid], verdict)

    def _recycle(self, record: WorkerRecord, verdict: Verdict) -> None:
        if verdict.reason == "memory":
            self.log.warning(
                "Worker (pid:%s) resident memory %.1f MiB above max_worker_memory %s MiB at "
                "%s samples in a row: replacing it (memory)",
                record.pid,
                (verdict.rss or 0) / MIB,
                self.cfg.max_worker_memory,
                MEMORY_SAMPLES,
            )
        else:
            self.log.info(
                "Worker (pid:%s) reached max_worker_lifetime (%g s) after %.1f s: "
                "replacing it (lifetime)",
                record.pid,
                self.cfg.max_worker_lifetime,
                verdict.age,
            )
        record.retiring = True
        record.recycled = verdict.reason
        record.successor = self.spawn_worker()

    def _successor_booted(self, record: WorkerRecord) -> None:
        """The successor of recycled worker ``record`` booted: TERM follows (by the caller)."""
        self._recycler.succeeded()
        self.log.info(
            "Worker (pid:%s) booted; stopping worker (pid:%s) gracefully (%s)",
            record.successor,
            record.pid,
            record.recycled,
        )

    def _successor_failed(self, pid: int, code: int) -> bool:
        """Worker ``pid`` died before it booted: if it was a recycled worker's successor, the
        recycled worker keeps serving and recycling pauses. True when that was the case."""
        record = next((r for r in self.workers.values() if r.successor == pid), None)
        if record is None or record.term_sent or record.replaced:
            return False
        pause = self._recycler.failed(time.monotonic())
        self.log.error(
            "Worker (pid:%s), the replacement of worker (pid:%s) (%s), %s before it booted; "
            "worker (pid:%s) keeps serving; recycling resumes in %.0f s",
            pid,
            record.pid,
            record.recycled,
            _exit_description(code),
            record.pid,
            pause,
        )
        record.retiring = False
        record.recycled = None
        record.successor = 0
        return True

    def _recycle_wait(self) -> float:
        """Seconds the loop may sleep: 1, or less when a memory sample or a worker's end of
        life is due sooner, and 0.1 while a successor boots (its boot is seen sooner, so the
        recycled worker leaves sooner)."""
        if not self._recycler.enabled:
            return 1.0
        if any(r.successor and not r.term_sent for r in self.workers.values()):
            return _SUCCESSOR_POLL
        return min(1.0, self._recycler.wait(time.monotonic()))

    def kill_workers(self, sig: int) -> None:
        """Send ``sig`` to every worker."""
        for pid in list(self.workers):
            self.kill_worker(pid, sig)

    # ------------------------------------------------------------------ reload / stop

    def reload(self) -> None:
        """HUP: re-read the configuration, rebind if needed, replace every worker."""
        from .app import apply_paths
        from .config_loader import load_config

        here = os.getcwd()
        try:
            # argv and the config's relative paths (-c, --chdir) are from where we started
            os.chdir(self.launch_dir)
            new_cfg = load_config(self.cfg.argv)
            apply_paths(new_cfg)
            new_tls = load_tls(new_cfg)  # certificates are read again: a renewed one is used
        except (ConfigError, SystemExit, OSError) as exc:
            os.chdir(here)
            self.log.error("Reload failed, keeping the current configuration: %s", exc)
            return
        old_cfg = self.cfg
        self.cfg = new_cfg
        if new_cfg.threads > 1 and new_cfg.worker_class == "sync":
            new_cfg.set("worker_class", "gthread")
        try:
            self.log.setup(new_cfg)
        except (OSError, ValueError) as exc:  # a file, syslog, or the logging config
            self.cfg = old_cfg
            self._restore_logging(old_cfg)
            self.log.error("Reload failed, keeping the current configuration: %s", exc)
            return
        self._retitle()
        for notice in new_cfg.notices:  # once per start: only what this reload changed
            if notice not in old_cfg.notices:
                self.log.info("%s", notice)
        for warning in new_cfg.warnings:
            if warning not in old_cfg.warnings:
                self.log.warning("%s", warning)
        if new_cfg.protocol != old_cfg.protocol and new_cfg.bind == old_cfg.bind:
            for listener in self.listeners:
                if listener.spec.protocol is None:  # plain addresses follow the setting
                    listener.protocol = new_cfg.protocol
                    self._listening(listener)
        if new_cfg.defer_accept != old_cfg.defer_accept and new_cfg.bind == old_cfg.bind:
            for listener in self.listeners:
                if listener.spec.kind == "tcp":
                    set_defer_accept(listener.sock, new_cfg.defer_accept)
        rebound = False
        if new_cfg.bind != old_cfg.bind:
            try:
                listeners = bind_all(
                    new_cfg.bind,
                    new_cfg.protocol,
                    new_cfg.backlog,
                    new_cfg.reuse_port,
                    new_cfg.umask,
                    defer_accept=new_cfg.defer_accept,
                    tls=new_tls,
                )
            except BindError as exc:
                self.log.error("Reload: %s; keeping the current listeners", exc)
                self.cfg.set("bind", old_cfg.bind)
            else:
                rebound = True
                for listener in self.listeners:
                    listener.close(unlink=True)
                self.listeners = listeners
                for listener in listeners:
                    self._listening(listener)
        if not rebound:
            self._use_tls(new_tls)
        self.tls_context = new_tls
        self._give_files_to_worker_user()  # log files and sockets this reload created
        if self.pidfile is not None and new_cfg.pidfile != old_cfg.pidfile:
            self.pidfile.rename(new_cfg.pidfile) if new_cfg.pidfile else self.pidfile.unlink()
        self._hook("on_reload", self)
        self._recycler.configure(new_cfg.max_worker_memory, new_cfg.max_worker_lifetime)
        if new_cfg.max_worker_memory and read_rss(self.pid) is None:
            self.log.error("%s; not enforced", _NO_RSS)
            self._recycler.configure(0, new_cfg.max_worker_lifetime)
        self.num_workers = new_cfg.workers
        for record in self.workers.values():
            record.retiring = record.replaced = True
            if not record.term_sent:  # a recycling under way is part of the reload now
                record.recycled, record.successor = None, 0
        self.spawn_workers()
        # the old workers are told to stop by manage_workers once the new ones have booted

    def _use_tls(self, context: SSLContext | None) -> None:
        """HUP without new addresses: the listeners take the new TLS context (or lose it)."""
        for listener in self.listeners:
            before = listener.scheme
            try:
                listener.use_tls(context)
            except BindError as exc:
                self.log.error("Reload: %s; it keeps its current TLS settings", exc)
                continue
            if listener.scheme != before:
                self._listening(listener)

    def _restore_logging(self, cfg: Config) -> None:
        """Set logging up from ``cfg`` again after a reload's logging config failed half-way."""
        try:
            self.log.setup(cfg)
        except (OSError, ValueError) as exc:  # the old files went away meanwhile: stderr at least
            fallback = Config()
            fallback.set("loglevel", cfg.loglevel)
            self.log.setup(fallback)
            self.log.error("Cannot set the previous logging up again: %s", exc)

    def stop(self, graceful: bool = True) -> None:
        """Stop every worker (TERM and wait graceful_timeout, or QUIT), then KILL leftovers."""
        self._stopping = True
        for listener in self.listeners:
            listener.close(unlink=self._sockets_are_ours())
        self.listeners = []
        sig = signal.SIGTERM if graceful else signal.SIGQUIT
        limit = self.cfg.graceful_timeout if graceful else 2.0
        self.kill_workers(sig)
        deadline = time.monotonic() + limit
        while self.workers and time.monotonic() < deadline:
            self.reap_workers()
            if not self.workers:
                break
            if graceful and any(s in self._signals for s in (signal.SIGINT, signal.SIGQUIT)):
                self._signals.clear()
                self.kill_workers(signal.SIGQUIT)
            self.sleep(0.05)  # /readyz answers 503 meanwhile
        if self.workers:
            self.log.warning(
                "Killing %s worker(s) still running after %.0fs", len(self.workers), limit
            )
            self.kill_workers(signal.SIGKILL)
            end = time.monotonic() + 5.0
            while self.workers and time.monotonic() < end:
                self.reap_workers()
                time.sleep(0.02)

    def _sockets_are_ours(self) -> bool:
        """False while another master shares our socket files (either side of a USR2)."""
        if self.reexec_pid:
            return False
        return not (self.upgraded_from and os.getppid() == self.upgraded_from)

    def _cleanup(self) -> bool:
        """Close the listeners, remove the pidfile, run on_exit; False if on_exit raised."""
        if self._stats_server is not None and self._stats_listener is not None:
            self._stats_server.close()
            self._stats_listener.close(unlink=self._sockets_are_ours())
            self._stats_server = None
        for listener in self.listeners:
            listener.close(unlink=self._sockets_are_ours())
        self.listeners = []
        if self.pidfile is not None:
            self.pidfile.unlink()
            self.pidfile = None
        return self._logged_hook("on_exit", self)


def _stats_listener(value: str, umask: int) -> Listener:
    """Bind the stats listener's address (``--bind`` syntax, HTTP only)."""
    spec = parse_bind(value, default_port=9100)
    if spec.kind == "fd" or spec.protocol == "uwsgi" or spec.tls:
        raise BindError(f"stats_bind: {value!r}: give HOST:PORT, [V6]:PORT or unix:PATH")
    return bind_all([str(spec)], "http", 64, False, umask)[0]


def load_tls(cfg: Config) -> SSLContext | None:
    """The TLS context of the listeners ``cfg`` asks for (None when no listener serves TLS),
    built by :func:`monoceros.tls.server_context`; ConfigError, one line, for TLS settings
    that cannot be served (a TLS bind without certfile, a file that cannot be read...).
    :mod:`ssl` is loaded only when a setting asks for TLS."""
    tls_binds = [value for value in cfg.bind if _asks_tls(value)]
    asked = cfg.certfile or cfg.keyfile or cfg.ca_certs or cfg.cert_reqs or tls_binds
    if not asked and not cfg.hook_is_set("ssl_context"):
        return None
    from .tls import TlsError, server_context

    try:
        context = server_context(cfg)
    except TlsError as exc:
        raise ConfigError(str(exc)) from None
    if context is None and tls_binds:
        raise ConfigError(
            f"bind {tls_binds[0]!r}: a TLS listener needs certfile (the server's certificate)"
        )
    return context


def _asks_tls(value: str) -> bool:
    """Whether a bind value's scheme asks for TLS (``https://``, ``suwsgi://``)."""
    try:
        return bool(parse_bind(value).tls)
    except BindError:
        return False  # reported when it is bound


def _parsed_address(value: str) -> Any:
    """One ``bind`` value the way gunicorn's ``server.address`` holds it."""
    spec = parse_bind(value)
    if spec.kind == "unix":
        return spec.path
    if spec.kind == "fd":
        return spec.fd
    return (spec.host, spec.port)


#: how a new master starts when this one was not started by a script (``python -m monoceros``):
#: the package is imported from where this master's was, never from the working directory
_BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = 'monoceros'; "
    "from monoceros.cli import main; main()"
)


def reexec_argv(argv: list[str], launch_dir: str) -> list[str]:
    """The command line of the new master a USR2 upgrade starts (gunicorn's way).

    Started by the installed ``monoceros`` script, the new master runs that script again with
    the same interpreter, so a ``monoceros/`` folder in the working directory cannot shadow the
    package (a script puts its own directory first on ``sys.path``, not the working directory).
    Started as ``python -m monoceros``, it imports the package from the directory this master's
    came from. ``launch_dir`` is where this master was started (``argv[0]`` may be relative).
    """
    script = os.path.join(launch_dir, argv[0]) if argv and argv[0] else ""
    if script and os.path.basename(script) != "__main__.py" and os.path.isfile(script):
        return [sys.executable, os.path.normpath(script), *argv[1:]]
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return [sys.executable, "-c", _BOOTSTRAP, package_parent, *argv[1:]]


def _exit_description(code: int) -> str:
    """How a worker ended, from its exit code (negative: the signal)."""
    if code == APP_LOAD_ERROR:
        return "could not load the application (exit status 4)"
    if code == WORKER_BOOT_ERROR:
        return "failed to boot (exit status 3)"
    if code < 0:
        return f"was killed by {_signal_name(-code)}"
    return f"exited with status {code}"


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _daemonize() -> None:
    """Detach from the terminal: double fork, new session, stdio to /dev/null."""
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if devnull > 2:
        os.close(devnull)


def request_timeout_ignored(cfg: Config) -> str:
    """The start-up warning of ``request_timeout`` set for a worker kind without it (sync,
    gthread): what bounds that kind's requests instead (``timeout``)."""
    head = f"request_timeout ({cfg.request_timeout:g}s) applies to the asgi worker only"
    if not cfg.timeout:
        return f"{head}; with timeout = 0 nothing bounds a {cfg.worker_class} request"
    if cfg.worker_class == "gthread":
        return (
            f"{head}; a gthread request is never cancelled: one without progress for timeout "
            f"({cfg.timeout}s) is logged with its stack while the worker goes on serving"
        )
    return (
        f"{head}; a sync worker whose request runs for timeout ({cfg.timeout}s) is killed "
        "and replaced, and its client gets no response"
    )
