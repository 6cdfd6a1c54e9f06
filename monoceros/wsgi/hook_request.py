"""The ``req`` object that ``pre_request`` / ``post_request`` hooks receive.

gunicorn config files use ``req.method``, ``req.path``, ``req.uri``, ``req.query``,
``req.version``, ``req.headers`` and friends; this view offers the same names, read from the
environ, and is built only when such a hook is configured.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..access_log import request_target

__all__ = ["HookRequest"]


class HookRequest:
    """A read-only, gunicorn-shaped view of the request being served."""

    __slots__ = ("environ",)

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self.environ = environ

    @property
    def method(self) -> str:
        """The request method, e.g. ``GET``."""
        return str(self.environ.get("REQUEST_METHOD", ""))

    @property
    def uri(self) -> str:
        """The raw request target as the client (or front end) sent it."""
        return request_target(self.environ)

    @property
    def path(self) -> str:
        """The path part of :attr:`uri` (not percent-decoded, as in gunicorn)."""
        return self.uri.split("?", 1)[0].split("#", 1)[0]

    @property
    def query(self) -> str:
        """The raw query string."""
        return str(self.environ.get("QUERY_STRING", ""))

    @property
    def fragment(self) -> str:
        """Always empty: clients do not send fragments."""
        return ""

    @property
    def version(self) -> tuple[int, int]:
        """The HTTP version as a tuple, e.g. ``(1, 1)``."""
        proto = str(self.environ.get("SERVER_PROTOCOL", "HTTP/1.0"))
        try:
            major, minor = proto.split("/", 1)[1].split(".", 1)
            return int(major), int(minor)
        except (IndexError, ValueError):
            return (1, 0)

    @property
    def scheme(self) -> str:
        """``http`` or ``https``."""
        return str(self.environ.get("wsgi.url_scheme", "http"))

    @property
    def headers(self) -> list[tuple[str, str]]:
        """Request headers as upper-case ``(NAME, value)`` pairs, gunicorn's shape."""
        out = []
        for key, value in self.environ.items():
            if key.startswith("HTTP_"):
                out.append((key[5:].replace("_", "-"), str(value)))
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
                out.append((key.replace("_", "-"), str(value)))
        return out

    @property
    def remote_addr(self) -> str:
        """The client address."""
        return str(self.environ.get("REMOTE_ADDR", ""))

    def __repr__(self) -> str:
        return f"<HookRequest {self.method} {self.uri}>"
