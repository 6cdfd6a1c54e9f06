"""Pure helpers for ASGI responses: the head (validated, framed) and complete error responses.

The server owns framing and connection management: an application's ``Connection``,
``Keep-Alive``, ``Transfer-Encoding`` and ``Upgrade`` headers are dropped, and the head gets the
framing chosen here. A header name that is not a token, or a name or value holding CR, LF or NUL,
is refused (:class:`ResponseError`), so an application cannot split the response.
"""

from __future__ import annotations

import http
import re
from collections.abc import Iterable
from typing import Any, Final

from .. import SERVER_SOFTWARE
from ..protocols.http import error_response
from ..wsgi.response import http_date

__all__ = ["Framing", "ResponseError", "build_head", "error_response", "status_line"]

_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE: Final = re.compile(rb"[\r\n\x00]")
_GOOD_NAMES: set[bytes] = set()
_HOP_BY_HOP: Final = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)
_STATUS_LINES: dict[int, bytes] = {}
_SERVER: Final = SERVER_SOFTWARE.encode("latin-1")


class ResponseError(Exception):
    """The application sent a response the server refuses to put on the wire."""


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def status_line(status: int) -> bytes:
    """``b"HTTP/1.1 200 OK\\r\\n"`` for a status code (cached)."""
    line = _STATUS_LINES.get(status)
    if line is None:
        if status.__class__ is not int or not 100 <= status <= 999:
            raise ResponseError(f"invalid status {status!r}: expected an int from 100 to 999")
        line = f"HTTP/1.1 {status} {_phrase(status)}\r\n".encode("latin-1")
        _STATUS_LINES[status] = line
    return line


def _injection(headers: Iterable[Any]) -> str:
    """Name the header whose value holds CR, LF or NUL, for the error message."""
    for name, value in headers:
        if _BAD_VALUE.search(bytes(value)) is not None:
            return f"response header {bytes(name)!r} holds CR, LF or NUL (header injection refused)"
    return "a response header holds CR, LF or NUL (header injection refused)"


class Framing:
    """How a response body is delimited, decided from its head: the result of :func:`build_head`."""

    __slots__ = ("chunked", "has_body", "keep_alive", "length")

    def __init__(self, has_body: bool, length: int | None, chunked: bool, keep_alive: bool) -> None:
        self.has_body = has_body
        self.length = length
        """The Content-Length sent, or None (chunked or close-delimited)."""
        self.chunked = chunked
        self.keep_alive = keep_alive


def build_head(
    status: int,
    headers: Iterable[Any],
    *,
    first_body: bytes | None,
    head_only: bool,
    keep_alive: bool,
    http11: bool,
    uwsgi: bool,
) -> tuple[bytes, Framing]:
    """The response head and its framing.

    ``first_body`` is the whole body when the application sent it in one message (a
    Content-Length is then added if missing), None when more body follows. Without a length, an
    HTTP/1.1 response is chunked; an HTTP/1.0 or uwsgi one ends when the connection closes.
    """
    parts = [status_line(status)]
    written = 0  # header lines from the application (4 parts each)
    length: int | None = None
    for item in headers:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise ResponseError(f"response header {item!r} is not a (name, value) pair") from None
        if name.__class__ is not bytes or value.__class__ is not bytes:
            if isinstance(name, (bytearray, memoryview)) and isinstance(
                value, (bytes, bytearray, memoryview)
            ):
                name, value = bytes(name), bytes(value)
            elif name.__class__ is bytes and isinstance(value, (bytearray, memoryview)):
                value = bytes(value)
            else:
                raise ResponseError(f"response header {item!r}: name and value must be bytes")
        if name not in _GOOD_NAMES:
            if not _TOKEN.match(name):
                raise ResponseError(f"invalid response header name {name!r}")
            if len(_GOOD_NAMES) < 1024:
                _GOOD_NAMES.add(name)
        lname = name.lower()
        if lname == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise ResponseError(f"invalid Content-Length {value!r}") from None
            if length < 0:
                raise ResponseError(f"invalid Content-Length {value!r}")
            continue
        if lname in _HOP_BY_HOP:
            if lname == b"connection" and b"close" in value.lower():
                keep_alive = False
            continue
        parts += (name, b": ", value, b"\r\n")
        written += 1
    has_body = not (head_only or status in (204, 304) or status < 200)
    chunked = False
    if length is None and status not in (204, 304) and status >= 200:
        if first_body is not None and (first_body or not head_only):
            length = len(first_body)
        elif not has_body:
            pass  # HEAD with a streamed body: no length is known, none is sent
        elif http11 and not uwsgi:
            chunked = True
        else:
            keep_alive = False  # close-delimited
    if length is not None and status not in (204, 304) and status >= 200:
        parts.append(b"content-length: %d\r\n" % length)
    if chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
    if not uwsgi:
        parts += (b"date: ", http_date().encode("latin-1"), b"\r\nserver: ", _SERVER, b"\r\n")
        if not keep_alive:
            parts.append(b"connection: close\r\n")
        elif not http11:
            parts.append(b"connection: keep-alive\r\n")
    parts.append(b"\r\n")
    head = b"".join(parts)
    # One scan instead of one per value: every legitimate CR and LF ends a line we wrote.
    lines = len(parts) - 3 * written - (3 if not uwsgi else 0)
    if head.count(b"\n") != lines or head.count(b"\r") != lines or b"\x00" in head:
        raise ResponseError(_injection(headers))
    return head, Framing(has_body, length, chunked, keep_alive and not uwsgi)
