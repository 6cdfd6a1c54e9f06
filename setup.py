"""Builds monoceros's compiled core where it can: mypyc over the same typed modules, and the
small hand-written C extensions (the uwsgi vars block, the response's header lines, the
request counting).

Everything is in pyproject.toml; this file only adds the extension modules. They are
*optional*: without mypyc, without a C compiler, or with ``MONOCEROS_PURE_BUILD=1`` in the
environment, the package installs as pure Python and behaves the same (the compiled modules
are the same source; each C extension's twin is pinned to it by tests). At run time
``MONOCEROS_PURE=1`` loads the Python source even where the compiled modules are installed
(see :mod:`monoceros._compiled`).
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from monoceros._compiled import COMPILED_MODULES, NATIVE_MODULES


def _extensions() -> list:
    if os.environ.get("MONOCEROS_PURE_BUILD") or sys.implementation.name != "cpython":
        return []
    # no C compiler, or it fails: build_ext skips an optional extension, the Python twin runs
    natives = [
        Extension(name, [name.replace(".", "/") + ".c"], optional=True) for name in NATIVE_MODULES
    ]
    return natives + _mypyc_extensions()


def _mypyc_extensions() -> list:
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("monoceros: mypyc not found; installing the pure-Python modules", file=sys.stderr)
        return []
    paths = [name.replace(".", "/") + ".py" for name in COMPILED_MODULES]
    try:
        # one shared library inside the package (monoceros/_core__mypyc*.so), named, not hashed
        extensions = mypycify(paths, opt_level="3", debug_level="0", group_name="monoceros._core")
    except (Exception, SystemExit) as exc:  # the C is generated here (mypyc exits on a type
        # error it finds); a failure means: pure Python
        print(f"monoceros: no compiled core ({exc!r}); pure Python", file=sys.stderr)
        return []
    for ext in extensions:
        ext.optional = True  # no C compiler, or it fails: build_ext skips it, pure Python
    return extensions


setup(ext_modules=_extensions())
