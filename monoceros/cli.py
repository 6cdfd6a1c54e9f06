"""The ``monoceros`` command: load the configuration, check the application, run the arbiter."""

from __future__ import annotations

import os
import sys
import traceback
from typing import NoReturn

from monoceros.app import AppLoadError, apply_paths, check_app_spec, current_dir, load_app
from monoceros.config import Config, ConfigError
from monoceros.config_loader import load_config
from monoceros.log_config import LogConfigError
from monoceros.log_config import prepare as prepare_log_config

USAGE_ERROR = 2
"""Exit status for a bad option, a bad setting value or a bad config file."""

APP_LOAD_ERROR = 4
"""Exit status when the application cannot be found or loaded (gunicorn's APP_LOAD_ERROR)."""

PROG = "monoceros"
"""The program name used in error and warning lines."""


def _print_notices(cfg: Config) -> None:
    for notice in cfg.notices:
        print(f"{PROG}: {notice}", file=sys.stderr)


def _print_warnings(cfg: Config) -> None:
    for warning in cfg.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)


def _die(message: str, status: int, cfg: Config | None = None) -> NoReturn:
    if cfg is not None:
        _print_warnings(cfg)
    print(f"{PROG}: error: {message}", file=sys.stderr)
    sys.exit(status)


def _check_hooks(cfg: Config) -> None:
    """``--check-config``: report hooks that read attributes the server or worker lacks."""
    from monoceros.arbiter import Arbiter
    from monoceros.hook_check import check_hooks
    from monoceros.workers import load_worker_class

    owners = {"server": Arbiter, "worker": load_worker_class(cfg.worker_class_path)}
    findings = check_hooks(cfg, owners)
    if findings:
        _print_warnings(cfg)
        for finding in findings:
            print(f"{PROG}: error: {finding}", file=sys.stderr)
        sys.exit(USAGE_ERROR)


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and exit with its status."""
    args = sys.argv[1:] if argv is None else argv
    try:
        cfg = load_config(args)
    except ConfigError as exc:
        _die(str(exc), USAGE_ERROR)

    if cfg.print_config:
        _print_notices(cfg)
        _print_warnings(cfg)
        try:
            print("\n".join(cfg.describe()), flush=True)
        except BrokenPipeError:  # `monoceros --print-config | head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    if not cfg.wsgi_app:
        _die(
            "no application given: pass APP_MODULE (e.g. myapp:app) or set wsgi_app in the "
            "config file",
            USAGE_ERROR,
            cfg,
        )

    launch_dir = current_dir()
    try:
        apply_paths(cfg)
    except OSError as exc:
        _die(f"chdir: cannot change to {cfg.chdir!r}: {exc.strerror}", USAGE_ERROR, cfg)
    try:
        check_app_spec(cfg.wsgi_app)
        if cfg.check_config:
            prepare_log_config(cfg)
            load_app(cfg.wsgi_app)
    except AppLoadError as exc:
        _die(str(exc), APP_LOAD_ERROR, cfg)
    except LogConfigError as exc:  # --check-config reads the logging config's file
        _die(str(exc), USAGE_ERROR, cfg)
    except Exception:
        # The application's own code failed: its traceback is what the user needs.
        traceback.print_exc()
        _die(f"failed to load application {cfg.wsgi_app!r}", APP_LOAD_ERROR, cfg)
    if cfg.check_config:
        _print_notices(cfg)
        _check_hooks(cfg)
        _print_warnings(cfg)
        sys.exit(0)

    from monoceros.arbiter import Arbiter

    try:
        arbiter = Arbiter(cfg, launch_dir=launch_dir)
    except OSError as exc:  # a log file that cannot be opened, a syslog that cannot be reached
        _die(str(exc), 1, cfg)
    except ValueError as exc:  # a logging config or an access log format that does not work
        _die(str(exc), USAGE_ERROR, cfg)
    sys.exit(arbiter.run())
