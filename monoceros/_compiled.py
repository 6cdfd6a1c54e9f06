"""Which modules have a compiled twin, and the switch that loads their Python source instead.

setup.py compiles :data:`COMPILED_MODULES` with mypyc where it can (the same source: one set of
tests pins both), and builds the C extensions of :data:`NATIVE_MODULES` (their own source, a
``.c`` beside them, each pinned by tests to the Python function it stands in for). Python's
import system prefers an extension module to the ``.py`` beside it; with ``MONOCEROS_PURE=1`` in
the environment, or when a module's source is newer than its compiled file (an editable install
whose source was edited since the build), :func:`install` puts a finder first that loads the
``.py`` source instead, and makes a C extension's import fail (its importer then uses the
Python it stands in for). :func:`compiled` says which modules run compiled.

This module imports nothing of monoceros: setup.py reads it before the package exists.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType

__all__ = ["COMPILED_MODULES", "NATIVE_MODULES", "compiled", "install"]

COMPILED_MODULES: tuple[str, ...] = (
    "monoceros.protocols.uwsgi",
    "monoceros.protocols.response",
    "monoceros.wsgi.environ",
    "monoceros.wsgi.response",
    "monoceros.asgi.scope",
    "monoceros.protocols.http",
    "monoceros.asgi.response",
    "monoceros.asgi.cycle",
    "monoceros.asgi.uwsgi_fast",
    "monoceros.asgi.context",
    "monoceros.asgi.acceptor",
    "monoceros.worker_metrics",
    "monoceros.wsgi.body",
    "monoceros.asgi.flow",
    "monoceros.asgi.connection",
    "monoceros.asgi.http_protocol",
    "monoceros.asgi.uwsgi_protocol",
    "monoceros.workers.request_path",
)
"""The modules setup.py compiles (hot on every request, typed, pure code)."""

NATIVE_MODULES: tuple[str, ...] = (
    "monoceros.protocols._uwsgi_vars",
    "monoceros.protocols._response_head",
    "monoceros._counting",
)
"""Hand-written C extensions, each the twin of one Python function its importer falls back to."""

_PURE_ENV = "MONOCEROS_PURE"


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Finds the compiled modules' ``.py`` source, ahead of their extension modules."""

    def __init__(
        self, names: frozenset[str], everyone: bool, natives: frozenset[str] = frozenset()
    ) -> None:
        self._names = names
        self._natives = natives
        self._everyone = everyone  # MONOCEROS_PURE: all of them; else only a stale build

    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in self._natives and path:
            self._refuse_native(fullname, path)
            return None
        if fullname not in self._names or not path:
            return None
        leaf = fullname.rpartition(".")[2]
        for folder in path:  # type: ignore[attr-defined]
            source = os.path.join(folder, leaf + ".py")
            if not os.path.exists(source):
                continue
            if not self._everyone and not _stale(folder, leaf, source):
                return None  # the compiled module is current: the usual import takes it
            loader = importlib.machinery.SourceFileLoader(fullname, source)
            return importlib.util.spec_from_file_location(fullname, source, loader=loader)
        return None

    def _refuse_native(self, fullname: str, path: object) -> None:
        """Raise ModuleNotFoundError for a C extension that must not load: with
        ``MONOCEROS_PURE``, or built before its ``.c`` was last edited."""
        leaf = fullname.rpartition(".")[2]
        for folder in path:  # type: ignore[attr-defined]
            source = os.path.join(folder, leaf + ".c")
            if self._everyone or (os.path.exists(source) and _stale(folder, leaf, source)):
                why = "MONOCEROS_PURE is set" if self._everyone else "built before its source"
                raise ModuleNotFoundError(f"{fullname} is not loaded: {why}", name=fullname)


def _extension_of(folder: str, leaf: str) -> str | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = os.path.join(folder, leaf + suffix)
        if os.path.exists(candidate):
            return candidate
    return None


def _stale(folder: str, leaf: str, source: str) -> bool:
    built = _extension_of(folder, leaf)
    return built is not None and os.path.getmtime(source) > os.path.getmtime(built)


def install() -> None:
    """Put the source-first finder in place (once), before any compiled module is imported."""
    if any(isinstance(f, _SourceFirst) for f in sys.meta_path):
        return
    everyone = os.environ.get(_PURE_ENV, "") not in ("", "0")
    finder = _SourceFirst(frozenset(COMPILED_MODULES), everyone, frozenset(NATIVE_MODULES))
    sys.meta_path.insert(0, finder)


def compiled() -> list[str]:
    """The modules of :data:`COMPILED_MODULES` and :data:`NATIVE_MODULES` that run compiled in
    this process."""
    out = []
    for name in COMPILED_MODULES + NATIVE_MODULES:
        module = sys.modules.get(name)
        if module is None:
            try:
                module = importlib.import_module(name)
            except ImportError:  # not built, or refused (MONOCEROS_PURE, a stale build)
                continue
        if not (getattr(module, "__file__", "") or "").endswith(".py"):
            out.append(name)
    return out
