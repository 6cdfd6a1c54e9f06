"""Find and import the application named by an app spec such as ``myapp:app``.

Accepted forms: ``module:name``, ``module`` (tries ``application``, then ``app``),
``module:obj.attr`` and ``module:factory(1, "x", key=True)`` with literal arguments only.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from monoceros.config import Config

DEFAULT_NAMES: tuple[str, ...] = ("application", "app")
"""Names tried, in order, when the spec names only a module."""


class AppLoadError(Exception):
    """The application cannot be found or built; the message is one readable line."""


@dataclass(frozen=True)
class AppSpec:
    """A parsed app spec: the module, the attribute path, and the factory call if any."""

    text: str
    module: str
    attrs: tuple[str, ...] | None
    args: tuple[Any, ...] | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def is_factory(self) -> bool:
        """Whether the spec calls a factory (``module:factory(...)``)."""
        return self.args is not None

    @property
    def target(self) -> str:
        """The attribute part as written, e.g. ``'app'`` or ``'create_app()'``."""
        return self.text.partition(":")[2].strip()


def _dotted(node: ast.expr) -> tuple[str, ...] | None:
    if isinstance(node, ast.Name):
        return (node.id,)
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else (*base, node.attr)
    return None


def _literal(node: ast.expr, expr: str) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise AppLoadError(
            f"Failed to parse the arguments of {expr!r}: only literal values "
            "(numbers, strings, bytes, tuples, lists, dicts, sets, True, False, None) are allowed."
        ) from None


def parse_app_spec(spec: str) -> AppSpec:
    """Parse ``spec`` without importing anything; raise AppLoadError if it is malformed."""
    text = spec.strip()
    module, colon, expr = text.partition(":")
    module = module.strip()
    if not module:
        raise AppLoadError(f"Invalid application spec {spec!r}: expected module:name.")
    if not all(part.isidentifier() for part in module.split(".")):
        hint = ""
        if "/" in module or os.sep in module:
            hint = " Use a dotted module name; --chdir or --pythonpath add directories."
        raise AppLoadError(f"Invalid module name {module!r} in {spec!r}.{hint}")
    if not colon:
        return AppSpec(text, module, None)
    expr = expr.strip()
    if not expr:
        raise AppLoadError(f"Missing an attribute name after ':' in {spec!r}.")
    try:
        node = ast.parse(expr, mode="eval").body
    except SyntaxError:
        node = None
    attrs = _dotted(node) if node is not None else None
    if attrs is not None:
        return AppSpec(text, module, attrs)
    if isinstance(node, ast.Call):
        func = _dotted(node.func)
        if func is None:
            raise AppLoadError(f"Function reference must be a (dotted) name: {expr!r}.")
        if any(isinstance(arg, ast.Starred) for arg in node.args) or any(
            keyword.arg is None for keyword in node.keywords
        ):
            raise AppLoadError(f"Failed to parse the arguments of {expr!r}: no * or ** allowed.")
        args = tuple(_literal(arg, expr) for arg in node.args)
        kwargs = {str(keyword.arg): _literal(keyword.value, expr) for keyword in node.keywords}
        return AppSpec(text, module, func, args, kwargs)
    raise AppLoadError(f"Failed to parse {expr!r} as an attribute name or function call.")


def _not_found(spec: AppSpec, missing: str | None) -> AppLoadError:
    if missing is not None and missing != spec.module:
        return AppLoadError(f"No module named {missing!r} (needed for {spec.module!r}).")
    hint = ""
    if spec.module.endswith(".py"):
        suggestion = spec.module[:-3] + (f":{spec.target}" if spec.target else "")
        hint = f" Did you mean {suggestion!r}?"
    return AppLoadError(f"No module named {spec.module!r}.{hint}")


def _raise_if_requested(spec: AppSpec, exc: ModuleNotFoundError) -> None:
    """AppLoadError when the missing module is the requested one or one of its parents."""
    missing = exc.name
    if missing is not None and (spec.module == missing or spec.module.startswith(missing + ".")):
        raise _not_found(spec, missing) from None


def check_app_spec(spec: str) -> None:
    """Check that ``spec`` parses and its module can be found, without importing that module."""
    parsed = parse_app_spec(spec)
    try:
        found = importlib.util.find_spec(parsed.module)
    except ModuleNotFoundError as exc:
        _raise_if_requested(parsed, exc)
        raise
    except ValueError:  # already imported, with __spec__ None (e.g. __main__)
        return
    if found is None:
        raise _not_found(parsed, parsed.module)


def _resolve(obj: Any, attrs: tuple[str, ...], spec: AppSpec) -> Any:
    for index, name in enumerate(attrs):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            path = ".".join(attrs[: index + 1])
            raise AppLoadError(f"Failed to find attribute {path!r} in {spec.module!r}.") from None
    return obj


def _call_factory(factory: Any, spec: AppSpec) -> Any:
    name = ".".join(spec.attrs or ())
    if not callable(factory):
        raise AppLoadError(f"{name!r} in {spec.module!r} is not callable, so it is no factory.")
    args = spec.args or ()
    try:
        inspect.signature(factory).bind(*args, **spec.kwargs)
    except TypeError as exc:
        raise AppLoadError(
            f"Failed to call factory {spec.target!r} in {spec.module!r}: {exc}."
        ) from None
    except ValueError:  # no signature available: just call it
        pass
    app = factory(*args, **spec.kwargs)
    if app is None:
        raise AppLoadError(
            f"Factory {spec.target!r} in {spec.module!r} returned None, not an application."
        )
    return app


def load_app(spec: str) -> Callable[..., Any]:
    """Import and return the application named by ``spec``; raise AppLoadError if impossible.

    An exception raised by the application's own code (an ImportError inside the module, an
    error inside a factory) propagates unchanged, so its traceback reaches the user.
    """
    parsed = parse_app_spec(spec)
    try:
        module = importlib.import_module(parsed.module)
    except ModuleNotFoundError as exc:
        _raise_if_requested(parsed, exc)
        raise
    if parsed.attrs is None:
        for name in DEFAULT_NAMES:
            if hasattr(module, name):
                app = getattr(module, name)
                break
        else:
            names = " or ".join(repr(name) for name in DEFAULT_NAMES)
            raise AppLoadError(f"Failed to find attribute {names} in {parsed.module!r}.")
    else:
        app = _resolve(module, parsed.attrs, parsed)
        if parsed.is_factory:
            app = _call_factory(app, parsed)
    if not callable(app):
        raise AppLoadError(
            f"Application object {parsed.target or parsed.module!r} in {parsed.module!r} "
            f"must be callable, got {type(app).__name__}."
        )
    return app


def current_dir() -> str:
    """The working directory as the shell named it.

    ``$PWD`` keeps a release symlink (``/srv/app/current``) that ``os.getcwd()`` resolves, so HUP
    and USR2 pick up a new release once the symlink is switched.
    """
    cwd = os.getcwd()
    pwd = os.environ.get("PWD")
    with contextlib.suppress(OSError):
        if pwd and os.path.samefile(pwd, cwd):
            return pwd
    return cwd


def apply_paths(cfg: Config) -> None:
    """Apply ``chdir``, ``pythonpath`` (plus the cwd) to ``sys.path`` and ``raw_env``."""
    if cfg.chdir:
        os.chdir(cfg.chdir)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    if cfg.pythonpath:
        entries = [part.strip() for part in cfg.pythonpath.split(",") if part.strip()]
        for entry in reversed(entries):
            path = os.path.abspath(entry)
            if path not in sys.path:
                sys.path.insert(0, path)
    os.environ.update(cfg.env)
