"""Build a ``Config`` from defaults < config file < ``MONOCEROS_CMD_ARGS`` < command line.

A renamed gunicorn deployment works too: without ``-c`` and ``./monoceros.conf.py``,
``./gunicorn.conf.py`` is loaded, and without ``MONOCEROS_CMD_ARGS``, ``GUNICORN_CMD_ARGS`` is
read; ``cfg.notices`` says which were used. gunicorn settings monoceros lacks are warned about
(``cfg.warnings``) unless their value is gunicorn's default, and refused when leaving them out
would fail open (TLS).

Side-effect free apart from executing the config file: no chdir, no ``sys.path`` change
(``monoceros.app.apply_paths`` does those), no logging (the arbiter logs warnings and notices).
"""

from __future__ import annotations

import argparse
import builtins
import difflib
import importlib.util
import inspect
import os
import shlex
import traceback
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from monoceros import __version__
from monoceros.config import (
    FOREIGN_WORKER_CLASSES,
    GUNICORN_ONLY,
    HOOK_NAMES,
    SETTING_ALIASES,
    SETTINGS,
    SETTINGS_BY_NAME,
    Config,
    ConfigError,
    Setting,
)
from monoceros.gunicorn_only import GunicornOnly

ENV_ARGS_VAR = "MONOCEROS_CMD_ARGS"
"""The environment variable holding extra command-line arguments (like GUNICORN_CMD_ARGS)."""

GUNICORN_ENV_ARGS_VAR = "GUNICORN_CMD_ARGS"
"""gunicorn's variable, read when ``MONOCEROS_CMD_ARGS`` is not set at all."""

DEFAULT_CONFIG_FILE = "monoceros.conf.py"
"""The config file loaded from the current directory when no ``-c`` is given and it exists."""

GUNICORN_CONFIG_FILE = "gunicorn.conf.py"
"""gunicorn's default config file, loaded when neither ``-c`` nor ``DEFAULT_CONFIG_FILE`` is."""

_GUNICORN_DEST = "gunicorn-only:"

USAGE = "monoceros [OPTIONS] [APP_MODULE]"
"""The usage line of the command-line interface."""


class UsageError(ConfigError):
    """Bad command-line input: an unknown option, a missing option argument, bad quoting."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(_with_suggestion(message, self))


def _with_suggestion(message: str, parser: argparse.ArgumentParser) -> str:
    prefix = "unrecognized arguments: "
    if not message.startswith(prefix):
        return message
    known = [
        flag
        for action in parser._actions
        for flag in action.option_strings
        if action.help != argparse.SUPPRESS
    ]
    for token in message[len(prefix) :].split():
        if token.startswith("-"):
            close = difflib.get_close_matches(token.split("=", 1)[0], known, n=1, cutoff=0.75)
            if close:
                return f"{message} (did you mean {close[0]!r}?)"
    return message


def _help(setting: Setting) -> str:
    repeat = " Repeatable." if setting.action == "append" else ""
    text = f"{setting.doc}{repeat} [default: {setting.describe_default()}]"
    return text.replace("`", "").replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser generated from the settings table (defaults are left out)."""
    parser = _Parser(
        prog="monoceros", usage=USAGE, description="A pre-fork WSGI/ASGI application server."
    )
    parser.add_argument(
        "-v",
        "--version",
        action="version",
        version=f"%(prog)s (version {__version__})",
        help="show the version and exit",
    )
    parser.add_argument(
        "app_module",
        nargs="?",
        default=None,
        metavar="APP_MODULE",
        help="the application, as module:name (sets wsgi_app)",
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for setting in SETTINGS:
        if not setting.flags:
            continue
        group = groups.get(setting.section)
        if group is None:
            group = groups[setting.section] = parser.add_argument_group(setting.section)
        kwargs: dict[str, Any] = {
            "dest": setting.name,
            "action": setting.action,
            "default": argparse.SUPPRESS,
            "help": _help(setting),
        }
        if setting.action in ("store", "append"):
            kwargs["metavar"] = setting.metavar or setting.name.upper()
        if setting.action == "store_const":
            kwargs["const"] = setting.const
        if setting.nargs is not None:
            kwargs.update(nargs=setting.nargs, const=setting.const)
        group.add_argument(*setting.flags, **kwargs)
    _add_gunicorn_only(parser)
    return parser


def _add_gunicorn_only(parser: argparse.ArgumentParser) -> None:
    """gunicorn's flags for settings monoceros lacks: parsed (to warn or refuse), not shown."""
    for row in GUNICORN_ONLY.values():
        if not row.flags:
            continue
        kwargs: dict[str, Any] = {
            "dest": _GUNICORN_DEST + row.name,
            "default": argparse.SUPPRESS,
            "help": argparse.SUPPRESS,
        }
        if row.kind == "flag":
            kwargs["action"] = "store_true"
        elif row.kind == "append":
            kwargs["action"] = "append"
        parser.add_argument(*row.flags, **kwargs)


def _parse(
    parser: argparse.ArgumentParser, args: Sequence[str], source: str | None
) -> dict[str, Any]:
    try:
        namespace = parser.parse_args(list(args))
    except UsageError as exc:
        if source is None:
            raise
        raise UsageError(f"{source}: {exc}") from None
    return vars(namespace)


def _env_args_var(environ: Mapping[str, str]) -> str:
    """The variable extra arguments come from: ours when set at all, else gunicorn's."""
    if ENV_ARGS_VAR not in environ and GUNICORN_ENV_ARGS_VAR in environ:
        return GUNICORN_ENV_ARGS_VAR
    return ENV_ARGS_VAR


def _env_args(environ: Mapping[str, str], var: str) -> list[str]:
    try:
        return shlex.split(environ.get(var, ""))
    except ValueError as exc:
        raise UsageError(f"{var}: {exc}") from None


def _resolve_config_path(given: str) -> str:
    """The file a ``-c`` value names: a path, ``file:PATH`` or ``python:MODULE``."""
    if given.startswith("python:"):
        module = given[len("python:") :]
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.origin or not os.path.isfile(spec.origin):
            raise ConfigError(f"config: no such config module {module!r}", "config")
        return spec.origin
    path = given[len("file:") :] if given.startswith("file:") else given
    if not os.path.isfile(path):
        raise ConfigError(f"config: no such file {path!r}", "config")
    return os.path.abspath(path)


def _exec_config_file(path: str, shown: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            source = file.read()
    except OSError as exc:
        raise ConfigError(f"config: cannot read {shown!r}: {exc.strerror}", "config") from None
    try:
        code = compile(source, path, "exec")
    except (SyntaxError, ValueError) as exc:
        where = f", line {exc.lineno}" if isinstance(exc, SyntaxError) and exc.lineno else ""
        detail = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise ConfigError(
            f"config file {shown!r}{where}: {type(exc).__name__}: {detail}", "config"
        ) from None
    namespace: dict[str, Any] = {
        "__builtins__": builtins,
        "__file__": path,
        "__name__": "__config__",
    }
    try:
        exec(code, namespace)
    except Exception as exc:
        tb = traceback.walk_tb(exc.__traceback__)
        lines = [line for frame, line in tb if frame.f_code.co_filename == path]
        where = f", line {lines[-1]}" if lines else ""
        detail = " ".join(str(exc).split())
        what = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        raise ConfigError(f"config file {shown!r}{where}: {what}", "config") from None
    return namespace


def _gunicorn_only(cfg: Config, row: GunicornOnly, value: Any, where: str, shown: str) -> None:
    """Ignore a gunicorn-only value silently (gunicorn's default), with a warning, or refuse it.

    ``where`` names the setting in the message (``certfile``, ``--certfile``); ``shown`` says
    where it came from ("in gunicorn.conf.py", "from GUNICORN_CMD_ARGS", "on the command line").
    """
    if row.is_default(value):
        return
    if row.refuse is not None:
        raise ConfigError(f"{where} ({shown}): {row.refuse}", row.name)
    cfg.warnings.append(f"gunicorn {where} {shown} is not supported by monoceros; ignored")


def _unknown_name_warning(name: str, value: Any, shown: str) -> str | None:
    """A warning for a config-file name that is not a setting, or None to stay silent.

    Helper variables and functions are common in config files, so only names close to a
    setting (or, for functions, to a hook) are reported.
    """
    if callable(value):
        close = difflib.get_close_matches(name, HOOK_NAMES, n=1, cutoff=0.8)
    else:
        close = difflib.get_close_matches(name, list(SETTINGS_BY_NAME), n=1, cutoff=0.75)
    if not close:
        return None
    return f"unknown setting {name!r} in {shown} (did you mean {close[0]!r}?)"


def _apply_config_file(
    cfg: Config, path: str, shown: str, overridden: frozenset[str]
) -> dict[str, Any]:
    """Apply the file's settings except those ``overridden`` later; return its namespace.

    An overridden setting is not even validated: a command-line flag wins over the file even
    when the file's value is invalid.
    """
    namespace = _exec_config_file(path, shown)
    for name, value in namespace.items():
        if name.startswith("_"):
            continue
        target = SETTING_ALIASES.get(name, name)
        if name == "config":
            cfg.warnings.append(f"setting 'config' in {shown} has no effect; use -c")
        elif target in SETTINGS_BY_NAME:
            if target not in overridden:
                _set(cfg, target, value, f"in {shown}")
        elif name in GUNICORN_ONLY:
            _gunicorn_only(cfg, GUNICORN_ONLY[name], value, f"setting {name!r}", f"in {shown}")
        elif not (inspect.ismodule(value) or inspect.isclass(value)):
            warning = _unknown_name_warning(name, value, shown)
            if warning is not None:
                cfg.warnings.append(warning)
    return namespace


def _set(cfg: Config, name: str, value: Any, where: str | None) -> None:
    """``cfg.set``; its error says ``where`` the value came from, unless that is None."""
    try:
        cfg.set(name, value)
    except ConfigError as exc:
        if where is None:
            raise
        raise ConfigError(f"{exc} ({where})", name) from None


def _apply_options(
    cfg: Config,
    options: Mapping[str, Any],
    source: str | None,
    overridden: frozenset[str] = frozenset(),
) -> None:
    where = None if source is None else f"from {source}"
    for setting in SETTINGS:
        if setting.name in options and setting.name not in overridden:
            _set(cfg, setting.name, options[setting.name], where)
    shown = where or "on the command line"
    for dest, value in options.items():
        if dest.startswith(_GUNICORN_DEST):
            row = GUNICORN_ONLY[dest[len(_GUNICORN_DEST) :]]
            _gunicorn_only(cfg, row, value, f"option {row.flags[-1]}", shown)


def _source_notice(config_path: str | None, env_var: str | None) -> str | None:
    """The INFO line naming the config file and the argument variable used, if any."""
    parts = []
    if config_path is not None:
        parts.append(f"config file {config_path}")
    if env_var is not None:
        parts.append(f"arguments from ${env_var}")
    return "Using " + " and ".join(parts) if parts else None


def _worker_class_notice(given: Any) -> str | None:
    """The INFO line for another package's worker class that monoceros replaces."""
    if isinstance(given, str) and given.strip() in FOREIGN_WORKER_CLASSES:
        return f"Worker class {given.strip()!r}: served by monoceros's own asgi worker"
    return None


def _default_config_file() -> str | None:
    return next(filter(os.path.isfile, (DEFAULT_CONFIG_FILE, GUNICORN_CONFIG_FILE)), None)


def load_config(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Config:
    """Build a Config from ``argv`` (arguments after the program name) and ``environ``."""
    env = os.environ if environ is None else environ
    args = list(argv)
    parser = build_parser()
    cli_options = _parse(parser, args, None)
    env_var = _env_args_var(env)
    env_args = _env_args(env, env_var)
    env_options = _parse(parser, env_args, env_var)

    cfg = Config(env)
    given = cli_options.get("config") or env_options.get("config") or _default_config_file()
    namespace: dict[str, Any] = {}
    if given is not None:
        path = _resolve_config_path(given)
        overridden = frozenset(cli_options) | frozenset(env_options)
        namespace = _apply_config_file(cfg, path, given, overridden)
        cfg.set("config", path)

    env_only = {k: v for k, v in env_options.items() if k != "config"}
    _apply_options(cfg, env_only, env_var, frozenset(cli_options))
    _apply_options(cfg, {k: v for k, v in cli_options.items() if k != "config"}, None)
    app_module = cli_options.get("app_module") or env_options.get("app_module")
    if app_module:
        cfg.set("wsgi_app", app_module)
    worker_class = (
        cli_options.get("worker_class")
        or env_options.get("worker_class")
        or namespace.get("worker_class")
    )
    for notice in (
        _source_notice(cfg.config, env_var if env_args else None),
        _worker_class_notice(worker_class),
    ):
        if notice is not None:
            cfg.notices.append(notice)
    cfg.argv = args
    return cfg
