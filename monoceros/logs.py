"""The error log and the access log of one process, configured from gunicorn's logging settings.

Settings read from ``cfg``: ``errorlog`` (path, ``-`` or None = stderr), ``loglevel``, ``accesslog``
(None = off, ``-`` = stdout, else a path), ``access_log_format`` and ``capture_output`` (point file
descriptors 1 and 2 at the error log file). Error log lines look like gunicorn's::

    [2026-11-24 10:00:00 +0000] [4242] [INFO] Listening at: http://127.0.0.1:8000
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from .config import Config

from .access_log import AccessFormat
from .worker_metrics import LOG_COUNTED, WorkerMetrics

__all__ = [
    "ACCESS_LOGGER",
    "ERROR_DATEFMT",
    "ERROR_FORMAT",
    "ERROR_LOGGER",
    "LOG_LEVELS",
    "ErrorLogger",
    "LevelCounter",
    "Logger",
]

ERROR_LOGGER = "monoceros.error"
ACCESS_LOGGER = "monoceros.access"
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


def _open_handler(path: str, what: str) -> logging.Handler:
    if path == "-":
        return logging.StreamHandler(sys.stderr if what == "error log" else sys.stdout)
    try:
        return _LogFile(path, encoding=_ENCODING, errors=_ERRORS)
    except OSError as exc:
        raise _named_error(exc, what, path) from exc


def _named_error(exc: OSError, what: str, path: str) -> OSError:
    """The same kind of OSError, with a one-line message that names the file."""
    err = type(exc)(f"cannot open {what} {path}: {exc.strerror or exc}")
    err.errno = exc.errno
    err.__cause__ = exc
    return err


def _install(log: logging.Logger, handler: logging.Handler | None, fmt: logging.Formatter) -> None:
    for old in [h for h in log.handlers if getattr(h, _MARK, False)]:
        log.removeHandler(old)
        old.close()
    if handler is not None:
        handler.setFormatter(fmt)
        setattr(handler, _MARK, True)
        log.addHandler(handler)


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
        self.error.propagate = False
        for old in [f for f in self.error.filters if isinstance(f, LevelCounter)]:
            self.error.removeFilter(old)
        #: the error log's lines by level, for statsd
        self.levels = LevelCounter()
        self.error.addFilter(self.levels)
        self._access_log = logging.getLogger(ACCESS_LOGGER)
        self._access_log.propagate = False
        self._access_log.setLevel(logging.INFO)
        self._access_format: AccessFormat | None = None
        #: the handler monoceros installed on the access logger, for the direct write
        self._access_handler: logging.StreamHandler[Any] | None = None
        self.access_enabled = False
        self._capture = False
        self._saved_stdio: tuple[int, int] | None = None
        self.setup(cfg)

    def setup(self, cfg: Config) -> None:
        """(Re)configure from ``cfg``; on error, raise and keep the previous configuration."""
        level_name = str(cfg.loglevel).lower()
        if level_name not in LOG_LEVELS:
            raise ValueError(f"loglevel must be one of {', '.join(LOG_LEVELS)}, not {level_name!r}")
        access_format = None
        if cfg.accesslog is not None:
            access_format = AccessFormat(cfg.access_log_format)
        errorlog = cfg.errorlog or "-"  # None (unset) logs to stderr, like "-"
        error_handler = _open_handler(errorlog, "error log")
        try:
            access_handler = None
            if cfg.accesslog is not None:
                access_handler = _open_handler(cfg.accesslog, "access log")
        except OSError:
            error_handler.close()
            raise
        self.error.setLevel(LOG_LEVELS[level_name])
        _install(self.error, error_handler, logging.Formatter(ERROR_FORMAT, ERROR_DATEFMT))
        _install(self._access_log, access_handler, logging.Formatter("%(message)s"))
        self._access_handler = (
            access_handler if isinstance(access_handler, logging.StreamHandler) else None
        )
        self._access_format = access_format
        self.access_enabled = access_format is not None
        self._capture = bool(cfg.capture_output) and errorlog != "-"
        if self._capture:
            self._capture_stdio()
        else:
            self._restore_stdio()

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
    ) -> None:
        """Write the access log line of one finished request (``request_time`` in seconds)."""
        access_format = self._access_format
        if access_format is None:
            return
        try:
            line = access_format.render(
                environ, status, response_headers, response_length, request_time
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
            except (OSError, ValueError):
                pass  # the standard path below reports it the way logging does
        # skip Logger.info's caller lookup: ~1 µs a line
        log.handle(log.makeRecord(ACCESS_LOGGER, logging.INFO, "", 0, line, (), None))

    def reopen_files(self) -> None:
        """Reopen every log file at its path (USR1, after logrotate renamed the files away)."""
        failure: OSError | None = None
        for handler in _file_handlers():
            try:
                _reopen(handler)
            except OSError as exc:  # keep writing to the old file; reopen the others anyway
                failure = failure or _named_error(exc, "log file", handler.baseFilename)
        if self._capture:
            self._capture_stdio()
        if failure is not None:
            raise failure

    def close_on_exec(self) -> None:
        """Mark the log files' descriptors close-on-exec (fds 1 and 2 are left inheritable)."""
        fds = [h.stream.fileno() for h in _file_handlers() if h.stream is not None]
        if self._saved_stdio is not None:
            fds.extend(self._saved_stdio)
        for fd in fds:
            if fd > 2:
                os.set_inheritable(fd, False)

    def close(self) -> None:
        """Remove this module's handlers, close their files and give fds 1 and 2 back."""
        self._restore_stdio()
        self._capture = False
        _install(self.error, None, logging.Formatter())
        _install(self._access_log, None, logging.Formatter())
        self._access_handler = None
        self._access_format = None
        self.access_enabled = False

    def error_fileno(self) -> int:
        """The descriptor the error log writes to: its file's, or stderr's (2) when it logs to
        stderr or its stream has none. For writers below logging (``faulthandler``)."""
        for handler in self.error.handlers:
            if getattr(handler, _MARK, False) and isinstance(handler, logging.StreamHandler):
                with contextlib.suppress(AttributeError, OSError, ValueError):
                    return int(handler.stream.fileno())
        return 2

    def _error_stream(self) -> IO[str] | None:
        for handler in self.error.handlers:
            if isinstance(handler, _LogFile) and getattr(handler, _MARK, False):
                return handler.stream
        return None

    def _capture_stdio(self) -> None:
        stream = self._error_stream()
        if stream is None:
            return
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
