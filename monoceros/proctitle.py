"""Process titles, as ``ps`` and ``top`` show them: ``monoceros: master [NAME]`` and
``monoceros: worker [NAME]``, NAME being ``proc_name``.

They are set with the setproctitle library (a dependency of monoceros), once per process: the
master at start and when its name changes (a ``HUP`` that changes ``proc_name``, the end of a
``USR2`` upgrade), a worker right after it is forked. When setproctitle cannot be imported the
titles are left alone and monoceros runs as usual, as gunicorn does; :data:`AVAILABLE` says so.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["AVAILABLE", "TITLE_PREFIX", "set_title", "title"]

_setproctitle: Callable[[str], None] | None
try:
    from setproctitle import setproctitle as _setproctitle
except ImportError:  # pragma: no cover - setproctitle is a dependency; a broken install
    _setproctitle = None

AVAILABLE: bool = _setproctitle is not None
"""Whether process titles can be set (setproctitle imported)."""

TITLE_PREFIX = "monoceros: "
"""What every title starts with."""


def title(role: str, name: str) -> str:
    """The title of a ``role`` ("master" or "worker") process: ``monoceros: ROLE [NAME]``."""
    return f"{TITLE_PREFIX}{role} [{name}]"


def set_title(role: str, name: str) -> str:
    """Set this process's title to :func:`title` (when setproctitle is there); return it."""
    text = title(role, name)
    if _setproctitle is not None:
        _setproctitle(text)
    return text
