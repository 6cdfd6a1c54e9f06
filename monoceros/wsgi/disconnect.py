"""The error a ``wsgi.input`` pull function raises when the peer goes away.

Its own small module, not :mod:`.body`'s: ``body`` is compiled (``monoceros/_compiled.py``), and
mypyc does not compile a subclass of ``OSError``.
"""

from __future__ import annotations

__all__ = ["ClientDisconnected"]


class ClientDisconnected(OSError):
    """The client closed the connection or stalled while the body was being read."""
