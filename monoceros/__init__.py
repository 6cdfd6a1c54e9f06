"""monoceros: a pre-fork WSGI/ASGI server speaking HTTP/1.1 and the uWSGI protocol."""

__version__ = "0.1.0.dev0"
SERVER_SOFTWARE = f"monoceros/{__version__}"
