"""gunicorn's logging config settings: ``logconfig_dict``, ``logconfig_json`` and ``logconfig``.

At most one of them is used, in gunicorn's order of precedence: a non-empty ``logconfig_dict``,
else ``logconfig_json``, else ``logconfig`` (an ini file). The dict (and the JSON file's dict)
is merged over :data:`CONFIG_DEFAULTS`, gunicorn's ``glogging.CONFIG_DEFAULTS``, as gunicorn
merges it: a top-level key of the user's dict replaces the default's whole value, so
``"loggers"`` replaces both default loggers and ``"handlers"`` replaces ``console`` and
``error_console``. The ini file is read by ``logging.config.fileConfig`` with the default
``disable_existing_loggers=False`` and the variables ``__file__`` and ``here`` for
interpolation, as in gunicorn.

:func:`prepare` reads and checks what can be checked without touching logging (the JSON file
parses to a dict, the ini file exists and parses); :meth:`PreparedConfig.apply` then hands it to
the standard library. Errors are :class:`LogConfigError`, one line that names the setting.
"""

from __future__ import annotations

import configparser
import copy
import json
import logging.config
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["CONFIG_DEFAULTS", "LogConfigError", "LogSettings", "PreparedConfig", "prepare"]

CONFIG_DEFAULTS: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {
            "level": "INFO",
            "handlers": ["error_console"],
            "propagate": True,
            "qualname": "gunicorn.error",
        },
        "gunicorn.access": {
            "level": "INFO",
            "handlers": ["console"],
            "propagate": True,
            "qualname": "gunicorn.access",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "generic",
            "stream": "ext://sys.stdout",
        },
        "error_console": {
            "class": "logging.StreamHandler",
            "formatter": "generic",
            "stream": "ext://sys.stderr",
        },
    },
    "formatters": {
        "generic": {
            "format": "%(asctime)s [%(process)d] [%(levelname)s] %(message)s",
            "datefmt": "[%Y-%m-%d %H:%M:%S %z]",
            "class": "logging.Formatter",
        }
    },
}
"""gunicorn's default logging dict, which ``logconfig_dict`` and ``logconfig_json`` are merged
over (gunicorn 23-27 ``glogging.CONFIG_DEFAULTS``)."""

_ROOT_HINT = (
    " (gunicorn's default 'root' logger writes to the handler 'console', and a 'handlers' "
    "entry replaces gunicorn's handlers: define 'console' or give a 'root' entry, as gunicorn "
    "needs too)"
)


class LogConfigError(ValueError):
    """A logging config that cannot be read or applied; the message is one line."""


class LogSettings(Protocol):
    """The settings :func:`prepare` reads (a :class:`monoceros.config.Config` has them)."""

    logconfig: str | None
    logconfig_dict: dict[str, Any]
    logconfig_json: str | None


@dataclass
class PreparedConfig:
    """A logging config read and checked, ready to :meth:`apply`."""

    #: the setting it comes from, for messages ("logconfig_dict", "logconfig_json FILE", ...)
    origin: str
    #: the logger names it configures (qualnames; "" for the root logger)
    loggers: frozenset[str]
    #: the merged dict (dict and JSON configs), else None
    config: dict[str, Any] | None = None
    #: the ini file (``logconfig``), else None
    path: str | None = None
    defaults: dict[str, str] = field(default_factory=dict)

    def apply(self) -> None:
        """Configure logging with it; a failure is a :class:`LogConfigError`."""
        try:
            if self.config is not None:
                logging.config.dictConfig(copy.deepcopy(self.config))
            else:
                assert self.path is not None
                logging.config.fileConfig(
                    self.path,
                    defaults=self.defaults,
                    disable_existing_loggers=False,
                    encoding="utf-8",
                )
        except Exception as exc:  # the stdlib raises many kinds, all of them the config's fault
            message = f"{self.origin}: {_chain(exc)}"
            if self.config is not None and "root logger" in message and "'console'" in message:
                message += _ROOT_HINT
            raise LogConfigError(message) from exc


def _chain(exc: BaseException) -> str:
    """The messages of ``exc`` and of the exceptions that caused it, joined by ': '."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 5:
        text = str(current) or type(current).__name__
        if isinstance(current, KeyError):
            text = f"no such entry {text}"
        if text not in parts:
            parts.append(text)
        current = current.__cause__ or current.__context__
    return ": ".join(parts)


def _merged(user: Mapping[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(CONFIG_DEFAULTS)
    config.update(copy.deepcopy(dict(user)))
    return config


def _dict_loggers(config: Mapping[str, Any]) -> frozenset[str]:
    loggers = config.get("loggers")
    names = set(loggers) if isinstance(loggers, Mapping) else set()
    if "root" in config:
        names.add("")
    return frozenset(str(name) for name in names)


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise LogConfigError(f"logconfig_json: cannot open {path}: {exc.strerror}") from exc
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        raise LogConfigError(f"logconfig_json: {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise LogConfigError(f"logconfig_json: {path} must hold a JSON object (a dict)")
    return data


def _ini_loggers(path: str, defaults: dict[str, str]) -> frozenset[str]:
    """The qualnames of the loggers an ini logging config names (what fileConfig reads)."""
    parser = configparser.ConfigParser(defaults)
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as exc:
        raise LogConfigError(f"logconfig: cannot open {path}: {exc.strerror}") from exc
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise LogConfigError(f"logconfig: {path} is not a valid ini file: {exc}") from exc
    try:
        keys = [key.strip() for key in parser["loggers"]["keys"].split(",") if key.strip()]
        return frozenset(
            "" if key == "root" else parser[f"logger_{key}"]["qualname"] for key in keys
        )
    except (KeyError, configparser.Error) as exc:
        raise LogConfigError(f"logconfig: {path}: missing section or key {exc}") from exc


def prepare(cfg: LogSettings) -> PreparedConfig | None:
    """The logging config the settings ask for, read and checked; None when there is none."""
    if cfg.logconfig_dict:
        config = _merged(cfg.logconfig_dict)
        return PreparedConfig("logconfig_dict", _dict_loggers(config), config=config)
    if cfg.logconfig_json:
        config = _merged(_read_json(cfg.logconfig_json))
        origin = f"logconfig_json {cfg.logconfig_json}"
        return PreparedConfig(origin, _dict_loggers(config), config=config)
    if cfg.logconfig:
        path = cfg.logconfig
        defaults = {"__file__": path, "here": os.path.dirname(path)}
        loggers = _ini_loggers(path, defaults)
        return PreparedConfig(f"logconfig {path}", loggers, path=path, defaults=defaults)
    return None
