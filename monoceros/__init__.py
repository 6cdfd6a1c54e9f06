"""monoceros: a pre-fork WSGI/ASGI server speaking HTTP/1.1 and the uWSGI protocol."""

from ._compiled import install as _install_source_switch

_install_source_switch()  # before any module with a compiled twin is imported

__version__ = "0.1.0.dev0"
SERVER = "monoceros"
"""The ``Server`` response header: the name only, as gunicorn sends ``Server: gunicorn``."""
SERVER_SOFTWARE = f"{SERVER}/{__version__}"
"""The environ's ``SERVER_SOFTWARE``: name and version, as gunicorn's ``gunicorn/23.0.0``."""
