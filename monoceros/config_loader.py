"""Build a ``Config`` from defaults < config file < ``MONOCEROS_CMD_ARGS`` < command line.

Side-effect free apart from executing the config file: no chdir, no ``sys.path`` change
(``monoceros.app.apply_paths`` does those).
"""

from __future__ import annotations

import argparse
import builtins
import difflib
import importlib.util
import inspect
import os
import shlex
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, NoReturn

from monoceros import __version__
from monoceros.config import (
    GUNICORN_ONLY,
    HOOK_NAMES,
    SETTINGS,
    SETTINGS_BY_NAME,
    Config,
    ConfigError,
    Setting,
)

ENV_ARGS_VAR = "MONOCEROS_CMD_ARGS"
"""The environment variable holding extra command-line arguments (like GUNICORN_CMD_ARGS)."""

DEFAULT_CONFIG_FILE = "monoceros.conf.py"
"""The config file loaded from the current directory when no ``-c`` is given and it exists."""

USAGE = "monoceros [OPTIONS] [APP_MODULE]"
"""The usage line of the command-line interface."""


class UsageError(ConfigError):
    """Bad command-line input: an unknown option, a missing option argument, bad quoting."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(_with_suggestion(message, self))


def _gunicorn_only(token: str) -> bool:
    return token.split("=", 1)[0][2:].replace("-", "_") in GUNICORN_ONLY


def _with_suggestion(message: str, parser: argparse.ArgumentParser) -> str:
    prefix = "unrecognized arguments: "
    if not message.startswith(prefix):
        return message
    known = [flag for action in parser._actions for flag in action.option_strings]
    for token in message[len(prefix):].split():
        if token.startswith("--") and _gunicorn_only(token):
            return f"{message} (a gunicorn option that monoceros does not support)"
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
    parser = _Parser(prog="monoceros", usage=USAGE,
                     description="A pre-fork WSGI/ASGI application server.")
    parser.add_argument("-v", "--version", action="version",
                        version=f"%(prog)s (version {__version__})",
                        help="show the version and exit")
    parser.add_argument("app_module", nargs="?", default=None, metavar="APP_MODULE",
                        help="the application, as module:name (sets wsgi_app)")
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
        group.add_argument(*setting.flags, **kwargs)
    return parser


def _parse(parser: argparse.ArgumentParser, args: Sequence[str],
           source: str | None) -> dict[str, Any]:
    try:
        namespace = parser.parse_args(list(args))
    except UsageError as exc:
        if source is None:
            raise
        raise UsageError(f"{source}: {exc}") from None
    return vars(namespace)


def _env_args(environ: Mapping[str, str]) -> list[str]:
    raw = environ.get(ENV_ARGS_VAR, "")
    try:
        return shlex.split(raw)
    except ValueError as exc:
        raise UsageError(f"{ENV_ARGS_VAR}: {exc}") from None


def _resolve_config_path(given: str) -> str:
    """The file a ``-c`` value names: a path, ``file:PATH`` or ``python:MODULE``."""
    if given.startswith("python:"):
        module = given[len("python:"):]
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.origin or not os.path.isfile(spec.origin):
            raise ConfigError(f"config: no such config module {module!r}", "config")
        return spec.origin
    path = given[len("file:"):] if given.startswith("file:") else given
    if not os.path.isfile(path):
        raise ConfigError(f"config: no such file {path!r}", "config")
    return os.path.abspath(path)


def _error_line(tb: TracebackType | None, filename: str) -> int | None:
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _one_line(text: str) -> str:
    return " ".join(text.split())


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
        raise ConfigError(f"config file {shown!r}{where}: {type(exc).__name__}: {detail}",
                          "config") from None
    namespace: dict[str, Any] = {
        "__builtins__": builtins,
        "__file__": path,
        "__name__": "__config__",
    }
    try:
        exec(code, namespace)
    except Exception as exc:
        line = _error_line(exc.__traceback__, path)
        where = f", line {line}" if line is not None else ""
        detail = _one_line(str(exc))
        what = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        raise ConfigError(f"config file {shown!r}{where}: {what}", "config") from None
    return namespace


def _unknown_name_warning(name: str, value: Any, shown: str) -> str | None:
    """A warning for a config-file name that is not a setting, or None to stay silent.

    Helper variables and functions are common in config files, so only names close to a
    setting (or, for functions, to a hook) are reported, plus gunicorn settings we lack.
    """
    if name in GUNICORN_ONLY:
        return f"gunicorn setting {name!r} in {shown} is not supported by monoceros; ignored"
    if callable(value):
        close = difflib.get_close_matches(name, HOOK_NAMES, n=1, cutoff=0.8)
    else:
        close = difflib.get_close_matches(name, list(SETTINGS_BY_NAME), n=1, cutoff=0.75)
    if not close:
        return None
    return f"unknown setting {name!r} in {shown} (did you mean {close[0]!r}?)"


def _apply_config_file(cfg: Config, path: str, shown: str) -> None:
    for name, value in _exec_config_file(path, shown).items():
        if name.startswith("_"):
            continue
        if name == "config":
            cfg.warnings.append(f"setting 'config' in {shown} has no effect; use -c")
        elif name in SETTINGS_BY_NAME:
            try:
                cfg.set(name, value)
            except ConfigError as exc:
                raise ConfigError(f"{exc} (in {shown})", name) from None
        elif not (inspect.ismodule(value) or inspect.isclass(value)):
            warning = _unknown_name_warning(name, value, shown)
            if warning is not None:
                cfg.warnings.append(warning)


def _apply_options(cfg: Config, options: Mapping[str, Any], source: str | None) -> None:
    for setting in SETTINGS:
        if setting.name in options:
            try:
                cfg.set(setting.name, options[setting.name])
            except ConfigError as exc:
                if source is None:
                    raise
                raise ConfigError(f"{exc} (from {source})", setting.name) from None


def load_config(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Config:
    """Build a Config from ``argv`` (arguments after the program name) and ``environ``."""
    env = os.environ if environ is None else environ
    args = list(argv)
    parser = build_parser()
    cli_options = _parse(parser, args, None)
    env_options = _parse(parser, _env_args(env), ENV_ARGS_VAR)

    cfg = Config(env)
    given = cli_options.get("config") or env_options.get("config")
    if given is None and os.path.isfile(DEFAULT_CONFIG_FILE):
        given = DEFAULT_CONFIG_FILE
    if given is not None:
        path = _resolve_config_path(given)
        _apply_config_file(cfg, path, given)
        cfg.set("config", path)

    _apply_options(cfg, {k: v for k, v in env_options.items() if k != "config"}, ENV_ARGS_VAR)
    _apply_options(cfg, {k: v for k, v in cli_options.items() if k != "config"}, None)
    app_module = cli_options.get("app_module") or env_options.get("app_module")
    if app_module:
        cfg.set("wsgi_app", app_module)
    cfg.argv = args
    return cfg
