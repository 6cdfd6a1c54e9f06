"""Worker kinds. The settings table maps each kind name to a "module:Class" path."""

from __future__ import annotations

import importlib

__all__ = ["load_worker_class"]


def load_worker_class(path: str) -> type:
    """Import the worker class named by a ``"module:Class"`` path."""
    module_name, _, class_name = path.partition(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name)
    if not isinstance(cls, type):
        raise TypeError(f"{path} is not a class")
    return cls
