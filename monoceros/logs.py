"""The error log and the access log of one process, configured from gunicorn's logging settings.

Settings read from ``cfg``: ``errorlog`` (path, ``-`` or None = stderr), ``loglevel``, ``accesslog``
(None = off, ``-`` = stdout, else a path), ``access_log_format`` or ``access_log_json`` (what an
access line holds), ``capture_output`` (point file descriptors 1 and 2 at the error log file),
``syslog`` and its ``syslog_*`` settings, ``disable_redirect_access_to_syslog``, and the logging
configs ``logconfig_dict``, ``logconfig_json`` and ``logconfig`` (see :mod:`.log_config`).
Error log lines look like gunicorn's::

    [2026-11-24 10:00:00 +0000] [4242] [INFO] Listening at: http://127.0.0.1:8000

The order is gunicorn's: the file (or stream) handlers and the syslog handlers are made first,
then a logging config is applied, which replaces the handlers, and sets the level and
propagation it gives, of every logger it names. The error logger is ``monoceros.error`` and
also answers to ``gunicorn.error`` (``logging.getLogger("gunicorn.error")`` returns it), the
access logger likewise ``monoceros.access`` and ``gunicorn.access``, so a config written for
gunicorn configures them; their records carry the gunicorn names when the config names only
those.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from .config import Config

from .access_log import AccessFormat, JsonAccess
from .config import SYSLOG_FACILITIES, syslog_address
from .log_config import LogConfigError, PreparedConfig, prepare
from .worker_metrics import LOG_COUNTED, WorkerMetrics

__all__ = [
    "ACCESS_LOGGER",
    "ERROR_DATEFMT",
    "ERROR_FORMAT",
    "ERROR_LOGGER",
    "GUNICORN_ACCESS_LOGGER",
    "GUNICORN_ERROR_LOGGER",
    "LOG_LEVELS",
    "SYSLOG_FORMAT",
    "AccessRenderer",
    "ErrorLogger",
    "LevelCounter",
    "LogConfigError",
    "Logger",
]

ERROR_LOGGER = "monoceros.error"
ACCESS_LOGGER = "monoceros.access"
GUNICORN_ERROR_LOGGER = "gunicorn.error"
"""gunicorn's name of the error logger: the same logger object as :data:`ERROR_LOGGER`."""
GUNICORN_ACCESS_LOGGER = "gunicorn.access"
"""gunicorn's name of the access logger: the same logger object as :data:`ACCESS_LOGGER`."""
SYSLOG_FORMAT = "[%(process)d] %(message)s"
"""A syslog line after its program name, as gunicorn writes it."""
ERROR_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
ERROR_DATEFMT = "%Y-%m-%d %H:%M:%S %z"
LOG_LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

_MARK = "_monoceros"  # attribute set on the handlers this module installs
_ENCODING = "utf-8"
_ERRORS = "backslashreplace"


class ErrorLogger(logging.Logger):
    """The ``monoceros.error`` logger; calling it logs at ERROR, so ``log.error(msg)`` works too."""

    def __call__(self, msg: str, *args: object) -> None:
        """Log ``msg % args`` at ERROR."""
        if self.isEnabledFor(logging.ERROR):
            self._log(logging.ERROR, msg, args)


def _error_logger() -> ErrorLogger:
    log = logging.getLogger(ERROR_LOGGER)
    if not isinstance(log, ErrorLogger):
        base = type(log)
        log.__class__ = (
            ErrorLogger if base is logging.Logger else type("ErrorLogger", (base, ErrorLogger), {})
        )
    return cast(ErrorLogger, log)


def _alias(log: logging.Logger, name: str) -> None:
    """Make ``logging.getLogger(name)`` return ``log`` (so a config naming it configures it)."""
    registry = logging.Logger.manager.loggerDict
    if registry.get(name) is not log:
        registry[name] = log


class AccessRenderer(Protocol):
    """What turns a finished request into its access line: :class:`AccessFormat` (the
    ``access_log_format`` line) or :class:`JsonAccess` (``access_log_json``)."""

    @property
    def source(self) -> str:
        """How error lines about it name it."""

    def render(
        self,
        environ: Mapping[str, Any],
        status: str | int,
        response_headers: Sequence[tuple[str, str]],
        response_length: int | None,
        request_time: float,
        uwsgi: bool = False,
    ) -> str:
        """The line, without newline."""


class LevelCounter(logging.Filter):
    """Counts the error log's records at the levels of ``LOG_COUNTED`` (for statsd's
    ``gunicorn.log.<level>``): in the master, here; in a worker, into its shared block.
    Only records the log level lets through are counted; an ERROR with a traceback counts
    as ``exception`` (gunicorn's ``log.exception``), not ``error``."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        #: the master's own counts, by LOG_COUNTED index
        self._counts = [0] * len(LOG_COUNTED)
        self._block: WorkerMetrics | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        """Count ``record``; never drops it."""
        level = record.levelno
        if level < logging.WARNING:
            return True
        if level >= logging.CRITICAL:
            index = 0
        elif level >= logging.ERROR:
            index = 3 if record.exc_info else 1
        else:
            index = 2
        with self._lock:
            if self._block is None:
                self._counts[index] += 1
            else:
                self._block.logged(index)
        return True

    def count_into(self, block: WorkerMetrics) -> None:
        """Count into a worker's shared block from now on (in the forked worker)."""
        self._block = block

    def counts(self) -> dict[str, int]:
        """This process's own counts by level (the master's)."""
        return {name: n for name, n in zip(LOG_COUNTED, self._counts, strict=True) if n}


class _LogFile(logging.FileHandler):
    """A FileHandler that can reopen its path, for log rotation (the old file may be renamed)."""

    def reopen(self) -> None:
        """Open the configured path again and write there from now on; close the old file."""
        stream = self._open()
        self.acquire()
        try:
            old, self.stream = self.stream, stream
        finally:
            self.release()
        if old is not None:
            try:
                old.close()
            except (OSError, ValueError, RuntimeError):  # e.g. reopened from a signal handler
                pass  # that interrupted a write: the old file is closed when collected


def _open_handler(path: str, what: str, fmt: logging.Formatter) -> logging.Handler:
    handler: logging.Handler
    if path == "-":
        handler = logging.StreamHandler(sys.stderr if what == "error log" else sys.stdout)
    else:
        try:
            handler = _LogFile(path, encoding=_ENCODING, errors=_ERRORS)
        except OSError as exc:
            raise _named_error(exc, f"cannot open {what} {path}") from exc
    handler.setFormatter(fmt)
    return handler


def _named_error(exc: OSError, message: str) -> OSError:
    """The same kind of OSError, with a one-line message that names the file or address."""
    err = type(exc)(f"{message}: {exc.strerror or exc}")
    err.errno = exc.errno
    err.__cause__ = exc
    return err


class _SysLog(logging.handlers.SysLogHandler):
    """Python's SysLogHandler, whose failures to send are one line on stderr (at most one a
    minute, with how many were lost), not a traceback per record."""

    def __init__(self, cfg: Config, which: str) -> None:
        addr = syslog_address(cfg.syslog_addr)
        super().__init__(addr.address, SYSLOG_FACILITIES[cfg.syslog_facility], addr.socktype)
        self.cfg = cfg
        self.which = which
        self._failed = 0
        self._said = -_FAILURE_EVERY
        prefix = cfg.syslog_prefix or cfg.proc_name.replace(":", ".")
        program = f"gunicorn.{prefix}.{which}".replace("%", "%%")
        self.setFormatter(logging.Formatter(f"{program}: {SYSLOG_FORMAT}"))

    def reachable(self) -> bool:
        """False for a UNIX socket that could not be connected (Python goes on without it,
        as C's openlog does, and tries again at each record)."""
        sock = getattr(self, "socket", None)  # set by the standard library's connect
        return not self.unixsocket or (sock is not None and sock.fileno() != -1)

    def handleError(self, record: logging.LogRecord) -> None:
        """Count a record that could not be sent; say so on stderr now and then."""
        self._failed += 1
        now = time.monotonic()
        if now - self._said < _FAILURE_EVERY:
            return
        self._said = now
        exc = sys.exc_info()[1]
        reason = (exc.strerror if isinstance(exc, OSError) else None) or exc
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.write(
                f"[{os.getpid()}] cannot send the {self.which} log to syslog at "
                f"{self.cfg.syslog_addr}: {reason} ({self._failed} line(s) lost so far)\n"
            )
            sys.stderr.flush()


_FAILURE_EVERY = 60.0  # seconds between two lines about syslog failures


def _syslog_handler(cfg: Config, which: str) -> _SysLog:
    """A handler that sends ``which`` ("error" or "access") to syslog as gunicorn does:
    ``<PRI>gunicorn.PREFIX.WHICH: [PID] message``, PRI from ``syslog_facility`` and the level."""
    try:
        return _SysLog(cfg, which)
    except OSError as exc:
        raise _named_error(exc, f"cannot reach syslog at {cfg.syslog_addr}") from exc


def _revived(handlers: Sequence[logging.Handler]) -> list[logging.Handler]:
    """``handlers`` ready to write again after a logging config closed every handler there
    was (the standard library's dictConfig and fileConfig do): files reopened, syslog
    handlers made anew."""
    out: list[logging.Handler] = []
    for handler in handlers:
        if isinstance(handler, _LogFile) and handler.stream is None:
            handler.reopen()
        elif isinstance(handler, _SysLog):
            handler = _syslog_handler(handler.cfg, handler.which)
        out.append(handler)
    return out


def _names(configured: frozenset[str], name: str) -> bool:
    """Whether a logging config that names ``configured`` loggers configures ``name``: names
    it, or a parent of it (whose children the standard library resets)."""
    return any(c == name or name.startswith(c + ".") for c in configured if c)


def _close_all(handlers: Sequence[logging.Handler]) -> None:
    for handler in handlers:
        handler.close()


def _install(log: logging.Logger, handlers: Sequence[logging.Handler]) -> None:
    """Replace the handlers this module put on ``log`` (closing them) with ``handlers``."""
    for old in [h for h in log.handlers if getattr(h, _MARK, False)]:
        log.removeHandler(old)
        old.close()
    for handler in handlers:
        setattr(handler, _MARK, True)
        log.addHandler(handler)


def _apply(prepared: PreparedConfig, logs: Sequence[logging.Logger]) -> set[logging.Logger]:
    """Apply a logging config; return those of ``logs`` whose handlers it set (a logger it
    names, or a child of one: the standard library resets those too)."""
    sentinels = [(log, logging.NullHandler()) for log in logs]
    for log, sentinel in sentinels:
        log.addHandler(sentinel)
    try:
        prepared.apply()
    finally:
        taken = {log for log, sentinel in sentinels if sentinel not in log.handlers}
        for log, sentinel in sentinels:
            log.removeHandler(sentinel)
    return taken


def _file_handlers() -> list[logging.FileHandler]:
    """Every FileHandler of every logger, once each."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    handlers = [h for log in loggers if isinstance(log, logging.Logger) for h in log.handlers]
    return list(dict.fromkeys(h for h in handlers if isinstance(h, logging.FileHandler)))


def _reopen(handler: logging.FileHandler) -> None:
    if isinstance(handler, _LogFile):
        handler.reopen()
        return
    handler.acquire()
    try:
        old = handler.stream
        if old is not None:  # a FileHandler with delay=True that never wrote has no stream
            handler.stream = handler._open()
            old.close()
    finally:
        handler.release()


class Logger:
    """Error log + access log of one process (master or worker).

    ``error`` is the ``monoceros.error`` logger itself, and it is callable:
    ``log.error(msg, *args)`` logs at ERROR like the other level methods, while
    ``log.error.isEnabledFor(...)`` and friends reach the stdlib logger. Workers check
    ``access_enabled`` before calling :meth:`access`.
    """

    def __init__(self, cfg: Config) -> None:
        self.error: ErrorLogger = _error_logger()
        self._access_log = logging.getLogger(ACCESS_LOGGER)
        _alias(self.error, GUNICORN_ERROR_LOGGER)
        _alias(self._access_log, GUNICORN_ACCESS_LOGGER)
        for old in [f for f in self.error.filters if isinstance(f, LevelCounter)]:
            self.error.removeFilter(old)
        #: the error log's lines by level, for statsd
        self.levels = LevelCounter()
        self.error.addFilter(self.levels)
        self._access_format: AccessRenderer | None = None
        #: the handler monoceros installed on the access logger, for the direct write
        self._access_handler: logging.StreamHandler[Any] | None = None
        self.access_enabled = False
        self._capture = False
        #: the error log file that capture_output points fds 1 and 2 at
        self._capture_file: _LogFile | None = None
        self._saved_stdio: tuple[int, int] | None = None
        #: the loggers the logging config names
        self._config_loggers: frozenset[str] = frozenset()
        self.setup(cfg)

    def setup(self, cfg: Config) -> None:
        """(Re)configure from ``cfg``.

        Everything that can fail is opened or read first: the log files, the syslog socket,
        the logging config's file. When one of these fails this raises (``OSError``,
        ``ValueError``, :class:`LogConfigError`) and the previous configuration stays. A
        logging config that the standard library refuses once it applies it (a handler class
        that does not import, a formatter that does not exist) raises :class:`LogConfigError`
        with logging half-configured: set the previous configuration up again.
        """
        level_name = str(cfg.loglevel).lower()
        if level_name not in LOG_LEVELS:
            raise ValueError(f"loglevel must be one of {', '.join(LOG_LEVELS)}, not {level_name!r}")
        prepared = prepare(cfg)
        syslog_access = bool(cfg.syslog) and not cfg.disable_redirect_access_to_syslog
        renderer: AccessRenderer | None = None
        if cfg.accesslog is not None or syslog_access or prepared is not None:
            renderer = JsonAccess() if cfg.access_log_json else AccessFormat(cfg.access_log_format)
        error_handlers, access_handlers = self._open_handlers(cfg, syslog_access)
        self._reset_loggers(LOG_LEVELS[level_name])
        taken: set[logging.Logger] = set()
        if prepared is not None:
            try:
                taken = _apply(prepared, (self.error, self._access_log))
                error_handlers = _revived(error_handlers)
                access_handlers = _revived(access_handlers)
            except (LogConfigError, OSError):
                _close_all([*error_handlers, *access_handlers])
                raise
            self._name_loggers(prepared.loggers)
            self.error.disabled = self._access_log.disabled = False
            if self.levels not in self.error.filters:
                self.error.addFilter(self.levels)
            self._overridden(cfg, prepared.origin, taken)
        self._config_loggers = prepared.loggers if prepared is not None else frozenset()
        error_file = next((h for h in error_handlers if isinstance(h, _LogFile)), None)
        self._capture = bool(cfg.capture_output) and error_file is not None
        self._capture_file = error_file if self._capture else None
        if self.error in taken:
            _close_all([h for h in error_handlers if h is not self._capture_file])
        else:
            _install(self.error, error_handlers)
        if self._access_log in taken:
            _close_all(access_handlers)
            access_handlers = []
        else:
            _install(self._access_log, access_handlers)
        first = access_handlers[0] if access_handlers else None
        self._access_handler = first if isinstance(first, logging.StreamHandler) else None
        for handler in (*error_handlers, *access_handlers):
            if isinstance(handler, _SysLog) and not handler.reachable():
                self.error.warning(
                    "syslog at %s cannot be reached now; its lines are sent once it can be",
                    cfg.syslog_addr,
                )
                break
        self._access_format = renderer
        log = self._access_log
        self.access_enabled = (
            renderer is not None and log.isEnabledFor(logging.INFO) and log.hasHandlers()
        )
        if self._capture:
            self._capture_stdio()
        else:
            self._restore_stdio()

    def _open_handlers(
        self, cfg: Config, syslog_access: bool
    ) -> tuple[list[logging.Handler], list[logging.Handler]]:
        """The error log's and the access log's handlers the settings ask for (files, streams,
        syslog); on a failure, close the ones opened already and raise."""
        opened: list[logging.Handler] = []
        try:
            errorlog = cfg.errorlog or "-"  # None (unset) logs to stderr, like "-"
            error_format = logging.Formatter(ERROR_FORMAT, ERROR_DATEFMT)
            opened.append(_open_handler(errorlog, "error log", error_format))
            if cfg.accesslog is not None:
                message_only = logging.Formatter("%(message)s")
                opened.append(_open_handler(cfg.accesslog, "access log", message_only))
            access = opened[1:]
            error = opened[:1]
            if cfg.syslog:
                error.append(_syslog_handler(cfg, "error"))
                opened.append(error[-1])
                if syslog_access:
                    access.append(_syslog_handler(cfg, "access"))
                    opened.append(access[-1])
        except (OSError, ValueError):
            _close_all(opened)
            raise
        return error, access

    def _reset_loggers(self, error_level: int) -> None:
        """Put the two loggers back as they are without a logging config."""
        for parent in ("gunicorn", "monoceros"):  # a config that names one resets its children
            logging.getLogger(parent)
        _install(self.error, [])
        _install(self._access_log, [])
        self.error.setLevel(error_level)
        self._access_log.setLevel(logging.INFO)
        self._name_loggers(frozenset())
        for log in (self.error, self._access_log):
            log.propagate = False
            log.disabled = False

    def _name_loggers(self, configured: frozenset[str]) -> None:
        """The records of each logger carry gunicorn's name when the logging config names
        that (or its parent ``gunicorn``) and not monoceros's; they then propagate, when the
        config lets them, to the ``gunicorn`` logger, as under gunicorn."""
        pairs = (
            (self.error, ERROR_LOGGER, GUNICORN_ERROR_LOGGER),
            (self._access_log, ACCESS_LOGGER, GUNICORN_ACCESS_LOGGER),
        )
        for log, ours, gunicorns in pairs:
            use_gunicorn = _names(configured, gunicorns) and not _names(configured, ours)
            log.name = gunicorns if use_gunicorn else ours
            log.parent = logging.getLogger(log.name.partition(".")[0])
            log.setLevel(log.level)  # forget the levels the standard library cached

    def _overridden(self, cfg: Config, origin: str, taken: set[logging.Logger]) -> None:
        """Say which file and syslog settings a logging config made unused."""
        error: list[str] = []
        if cfg.errorlog not in (None, "-") and not cfg.capture_output:
            error.append(f"errorlog {cfg.errorlog}")
        access = [f"accesslog {cfg.accesslog}"] if cfg.accesslog is not None else []
        if cfg.syslog:
            error.append("syslog")
            if not cfg.disable_redirect_access_to_syslog:
                access.append("syslog")
        for log, what, unused in (
            (self.error, "error", error),
            (self._access_log, "access", access),
        ):
            if log in taken and unused:
                self.error.warning(
                    "%s sets the handlers of the %s log: %s not used for it",
                    origin,
                    what,
                    ", ".join(unused),
                )

    def debug(self, msg: str, *args: object) -> None:
        """Log ``msg % args`` at DEBUG."""
        self.error.debug(msg, *args)

    def info(self, msg: str, *args: object) -> None:
        """Log ``msg % args`` at INFO."""
        self.error.info(msg, *args)

    def warning(self, msg: str, *args: object) -> None:
        """Log ``msg % args`` at WARNING."""
        self.error.warning(msg, *args)

    def critical(self, msg: str, *args: object) -> None:
        """Log ``msg % args`` at CRITICAL."""
        self.error.critical(msg, *args)

    def exception(self, msg: str, *args: object) -> None:
        """Log ``msg % args`` at ERROR followed by the traceback of the exception being handled."""
        self.error.exception(msg, *args)

    def is_enabled_for(self, level: int) -> bool:
        """Whether an error log message at ``level`` would be written."""
        return self.error.isEnabledFor(level)

    def access(
        self,
        environ: Mapping[str, Any],
        status: str | int,
        response_headers: Sequence[tuple[str, str]],
        response_length: int | None,
        request_time: float,
        uwsgi: bool = False,
    ) -> None:
        """Write the access log line of one finished request (``request_time`` in seconds;
        ``uwsgi``: it came over the uwsgi protocol)."""
        access_format = self._access_format
        if access_format is None:
            return
        try:
            line = access_format.render(
                environ, status, response_headers, response_length, request_time, uwsgi
            )
        except Exception:
            self.error.exception("cannot format access log line with %r", access_format.source)
            return
        log = self._access_log
        if not log.isEnabledFor(logging.INFO):
            return
        handler = self._access_handler
        handlers = log.handlers
        if (
            handler is not None
            and len(handlers) == 1
            and handlers[0] is handler
            and not log.filters
            and not handler.filters
        ):
            # Only our own handler, which would write "%(message)s\n" and flush: do just that,
            # without a LogRecord and the handler chain (about 2 µs a line). The lock is the
            # handler's own: threads of a gthread worker, and USR1 swapping the file, take it.
            try:
                with handler.lock:  # type: ignore[union-attr]
                    stream = handler.stream
                    stream.write(line + "\n")
                    stream.flush()
                return
            except (OSError, ValueError, AttributeError):
                pass  # the standard path below reports it the way logging does
        # skip Logger.info's caller lookup: ~1 µs a line
        log.handle(log.makeRecord(log.name, logging.INFO, "", 0, line, (), None))

    def log_files(self) -> list[logging.FileHandler]:
        """The log files this setup opened: those of the error and access loggers, of the
        loggers the logging config names, and the file capture_output writes to."""
        names = [name for name in self._config_loggers if name]
        loggers = [self.error, self._access_log, *(logging.getLogger(n) for n in names)]
        if "" in self._config_loggers:
            loggers.append(logging.getLogger())
        found: list[logging.FileHandler] = [
            h for log in loggers for h in log.handlers if isinstance(h, logging.FileHandler)
        ]
        if self._capture_file is not None:
            found.append(self._capture_file)
        return list(dict.fromkeys(found))

    def reopen_files(self) -> None:
        """Reopen every log file at its path (USR1, after logrotate renamed the files away)."""
        failure: OSError | None = None
        handlers: list[logging.FileHandler] = _file_handlers()
        if self._capture_file is not None and self._capture_file not in handlers:
            handlers.append(self._capture_file)
        for handler in handlers:
            try:
                _reopen(handler)
            except OSError as exc:  # keep writing to the old file; reopen the others anyway
                failure = failure or _named_error(
                    exc, f"cannot open log file {handler.baseFilename}"
                )
        if self._capture:
            self._capture_stdio()
        if failure is not None:
            raise failure

    def close_on_exec(self) -> None:
        """Mark the log files' descriptors close-on-exec (fds 1 and 2 are left inheritable)."""
        handlers: list[logging.FileHandler] = _file_handlers()
        if self._capture_file is not None:
            handlers.append(self._capture_file)
        fds = [h.stream.fileno() for h in handlers if h.stream is not None]
        if self._saved_stdio is not None:
            fds.extend(self._saved_stdio)
        for fd in fds:
            if fd > 2:
                os.set_inheritable(fd, False)

    def close(self) -> None:
        """Remove this module's handlers, close their files and give fds 1 and 2 back."""
        self._restore_stdio()
        self._capture = False
        capture, self._capture_file = self._capture_file, None
        _install(self.error, [])
        _install(self._access_log, [])
        if capture is not None:
            capture.close()
        self._access_handler = None
        self._access_format = None
        self.access_enabled = False

    def error_fileno(self) -> int:
        """The descriptor the error log writes to: its file's (monoceros's, else the first
        stream or file a logging config gave it), or stderr's (2) when it logs to stderr or has
        no stream. For writers below logging (``faulthandler``)."""
        handlers = sorted(self.error.handlers, key=lambda h: not getattr(h, _MARK, False))
        for handler in handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is not None:
                with contextlib.suppress(AttributeError, OSError, ValueError):
                    return int(handler.stream.fileno())
        return 2

    def _capture_stdio(self) -> None:
        capture = self._capture_file
        if capture is None or capture.stream is None:
            return
        stream: IO[str] = capture.stream
        _flush_stdio()
        if self._saved_stdio is None:
            self._saved_stdio = (os.dup(1), os.dup(2))
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)

    def _restore_stdio(self) -> None:
        saved, self._saved_stdio = self._saved_stdio, None
        if saved is None:
            return
        _flush_stdio()
        for target, fd in zip((1, 2), saved, strict=True):
            os.dup2(fd, target)
            os.close(fd)


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
