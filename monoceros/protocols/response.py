"""Sans-IO HTTP/1.1 response heads: status, headers and framing in, bytes out (HTTP and uwsgi).

Every worker builds its response head with :func:`response_head`, so the rules live here once:

- **Status line**: ``HTTP/1.1 <code> <reason>``; :func:`status_line` for an int (ASGI, reason from
  the standard table), :func:`status_line_of` for a PEP 3333 status string (its own reason,
  which holds no control character but HTAB). A status of the code alone (``"200"``) gets the
  space the status-line needs before its empty reason (``HTTP/1.1 200 \\r\\n``; gunicorn
  serves it too, as ``HTTP/1.1 200\\r\\n``).
- **Header fields**: a name must be a token, a value VCHAR, obs-text, SP and HTAB only (RFC 9110
  5.5): no CR or LF (response splitting), no NUL, ESC, DEL or other control; a negative
  Content-Length is refused too. Otherwise :class:`~.errors.ResponseError`. The application's
  ``Content-Length`` is read, its ``Connection: close`` heard, and the hop-by-hop fields
  (:data:`HOP_BY_HOP`) dropped: the server owns framing and connection management.
- **Framing** (:func:`frame`): ``1xx``, ``204`` and ``304`` never carry a body or a length; a
  HEAD response carries no body but keeps a length it was given. A body sent whole gets a
  Content-Length when it has none. Without a length a body kept alive on HTTP/1.1 is chunked, and
  any other ends with the connection (HTTP/1.0, a closing response, and uwsgi, whose responses are
  never chunk-framed and always end with the connection).
- **Server lines**: Content-Length, Transfer-Encoding, then on HTTP only Date, Server and
  Connection, spelled by a :class:`Spelling` (the sync/gthread workers write ``Content-Length``,
  the asgi worker ``content-length``, as they always did); Date is recomputed once a second.

WSGI headers are str (latin-1), ASGI headers bytes: :func:`response_head` takes either (``text``
says which) and runs one loop over them, joining the application's lines in their own type and
encoding them once. Converting each WSGI name and value to bytes first would cost two encodes
per header on every request; the checks that follow (one ``translate`` of the joined block that
keeps only its control characters, the token check cached per name) then run on bytes for both.

All caches are bounded and safe to share between threads: each update is one dict insertion or
one store of an immutable tuple.
"""

from __future__ import annotations

import http
import re
import time
from collections.abc import Callable, Iterable
from email.utils import formatdate
from typing import Any, Final

from .errors import ResponseError

__all__ = [
    "HOP_BY_HOP",
    "LAST_CHUNK",
    "Framing",
    "ResponseError",
    "Spelling",
    "STATUS_LINES_BY_TEXT",
    "carries_body",
    "chunk",
    "error_response",
    "frame",
    "http_date",
    "reason_phrase",
    "response_head",
    "status_line",
    "status_line_of",
]

HOP_BY_HOP: Final = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)
"""Header fields that describe one connection; the server writes its own."""

LAST_CHUNK: Final = b"0\r\n\r\n"
"""The end of a chunked body (no trailers)."""

_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
#: the controls a field value or reason phrase may not hold: CTL but HTAB (RFC 9110 5.5)
_CTL_TEXT: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: those controls -> 0, every other byte -> 1: ``block.translate(_CTL_ZERO).count(0)`` counts
#: them (a translation without deletions: one table lookup per byte, no table set up per call)
_CTL_ZERO: Final = bytes(0 if _CTL_TEXT.match(chr(b)) else 1 for b in range(256))
_NO_BODY: Final = frozenset((204, 304))
_CACHE_MAX: Final = 1024

#: what the head does with a header: write it, read its length, hear its close, or drop it
_ORDINARY, _CONTENT_LENGTH, _CONNECTION, _HOP = 0, 1, 2, 3
#: checked names -> their kind, one table per type (apps use a small fixed set of names)
_TEXT_KINDS: dict[str, int] = {}
_BYTES_KINDS: dict[bytes, int] = {}

_STATUS_LINES: dict[int, bytes] = {}
STATUS_LINES_BY_TEXT: dict[str, tuple[int, bytes]] = {}
""":func:`status_line_of`'s cache, for a caller that looks it up before calling (per request)."""


def reason_phrase(status: int) -> str:
    """The standard reason phrase of a status code, ``Unknown`` for a code without one."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def status_line(status: int) -> bytes:
    """``b"HTTP/1.1 200 OK\\r\\n"`` for a status code (cached)."""
    line = _STATUS_LINES.get(status)
    if line is None:
        if type(status) is not int or not 100 <= status <= 999:
            raise ResponseError(f"invalid status {status!r}: expected an int from 100 to 999")
        line = f"HTTP/1.1 {status} {reason_phrase(status)}\r\n".encode("latin-1")
        if len(_STATUS_LINES) < _CACHE_MAX:
            _STATUS_LINES[status] = line
    return line


def status_line_of(status: str) -> tuple[int, bytes]:
    """The code and status line of a PEP 3333 status string (``"200 OK"``), checked (cached)."""
    known = STATUS_LINES_BY_TEXT.get(status)
    if known is not None:
        return known
    if type(status) is not str:
        raise ResponseError(f"status must be a str, got {type(status).__name__}")
    code = status[:3]
    if not (code.isascii() and code.isdigit() and len(code) == 3) or status[3:4] not in ("", " "):
        raise ResponseError(f"invalid status {status!r}: expected '<3 digits> <reason>'")
    if _CTL_TEXT.search(status):
        raise ResponseError(f"invalid status {status!r}: contains a control character")
    try:  # the code alone: the status-line still needs its SP before the (empty) reason
        text = status if len(status) > 3 else status + " "
        known = int(code), f"HTTP/1.1 {text}\r\n".encode("latin-1")
    except UnicodeEncodeError:
        raise ResponseError(f"invalid status {status!r}: not latin-1") from None
    if len(STATUS_LINES_BY_TEXT) < _CACHE_MAX:
        STATUS_LINES_BY_TEXT[status] = known
    return known


def carries_body(status: int, head_only: bool) -> bool:
    """False for HEAD requests and for statuses that never carry a body (1xx, 204, 304)."""
    return not (head_only or status in _NO_BODY or status < 200)


#: (second, its HTTP date): one tuple, replaced whole, so a thread never sees a torn pair
_date: tuple[int, str] = (0, "")


def http_date() -> str:
    """The current time as an HTTP date, recomputed at most once a second."""
    global _date
    now = int(time.time())
    cached = _date
    if now != cached[0]:
        cached = (now, formatdate(now, usegmt=True))
        _date = cached
    return cached[1]


class Spelling:
    """How a worker spells the header lines the server writes itself (case, and whether a kept
    HTTP/1.1 connection is announced with ``Connection: keep-alive``); the rules are shared."""

    __slots__ = (
        "_announce",
        "_lengths",
        "_lines",
        "_names",
        "_tails",
        "chunked",
        "content_length",
    )

    def __init__(self, server: str, *, title_case: bool, announce_keep_alive: bool) -> None:
        def spell(name: str) -> str:
            return name if title_case else name.lower()

        self.content_length = spell("Content-Length: %d\r\n").encode("latin-1")
        """The Content-Length line, a ``%d`` template."""
        self.chunked = spell("Transfer-Encoding: chunked\r\n").encode("latin-1")
        """The Transfer-Encoding line of a chunked body."""
        self._names = spell("Date: "), f"\r\n{spell('Server')}: {server}\r\n"
        self._lines = (spell("Connection: close\r\n\r\n"), spell("Connection: keep-alive\r\n\r\n"))
        self._announce = announce_keep_alive
        self._tails: tuple[int, tuple[bytes, bytes, bytes]] = (0, (b"", b"", b""))
        self._lengths: dict[int, bytes] = {}

    def length_line(self, length: int) -> bytes:
        """The Content-Length line of ``length`` (the first :data:`_CACHE_MAX` lengths seen are
        kept: a site's responses come in a few sizes, and formatting costs more than a lookup)."""
        line = self._lengths.get(length)
        if line is None:
            line = self.content_length % length
            if len(self._lengths) < _CACHE_MAX:
                self._lengths[length] = line
        return line

    def tail(self, keep_alive: bool, http11: bool) -> bytes:
        """Date, Server and Connection lines and the blank line that ends an HTTP head."""
        tails = self._tails
        if tails[0] != int(time.time()):  # once a second: the three endings for this Date
            date = http_date()
            start = f"{self._names[0]}{date}{self._names[1]}"
            close, keep = (f"{start}{line}".encode("latin-1") for line in self._lines)
            ends = (close, keep, keep if self._announce else f"{start}\r\n".encode())
            tails = self._tails = (_date[0], ends)
        return tails[1][0 if not keep_alive else 2 if http11 else 1]


class Framing:
    """How a response body is delimited, decided from its head by :func:`frame`."""

    __slots__ = ("chunked", "has_body", "keep_alive", "length")

    def __init__(self, has_body: bool, length: int | None, chunked: bool, keep_alive: bool) -> None:
        self.has_body = has_body
        self.length = length
        """The Content-Length sent, or None (chunked or close-delimited)."""
        self.chunked = chunked
        self.keep_alive = keep_alive


def frame(
    status: int,
    length: int | None,
    whole_body: int | None,
    *,
    head_only: bool,
    keep_alive: bool,
    http11: bool,
    uwsgi: bool,
) -> Framing:
    """The framing of a response: ``length`` is the application's Content-Length (or None),
    ``whole_body`` the size of the body when it is sent in one piece (None when streamed)."""
    bodiless = status < 200 or status in _NO_BODY  # carries_body's rule, inline: per request
    has_body = not (head_only or bodiless)
    if bodiless:
        length = None
    elif length is None and whole_body is not None and (has_body or whole_body):
        length = whole_body
    keep_alive = keep_alive and not uwsgi
    chunked = length is None and has_body and keep_alive and http11
    if length is None and has_body and not chunked:
        keep_alive = False  # the close ends the body
    return Framing(has_body, length, chunked, keep_alive)


def response_head(
    line: bytes,
    status: int,
    headers: Iterable[Any],
    spelling: Spelling,
    *,
    text: bool,
    whole_body: int | None,
    head_only: bool,
    keep_alive: bool,
    http11: bool,
    uwsgi: bool,
) -> tuple[bytes, Framing]:
    """The head of a response and its framing.

    ``line`` is the status line of ``status``; ``headers`` are (name, value) pairs of str when
    ``text`` (WSGI), of bytes otherwise (ASGI; bytearray and memoryview are taken too).
    """
    kinds: dict[Any, int] = _TEXT_KINDS if text else _BYTES_KINDS
    fields = None if _native_block is None else _native_block(headers, kinds, text)
    if fields is None:
        fields = _header_block(headers, kinds, text)
    block, length, closes = fields
    if closes:
        keep_alive = False  # the application asked to close: heard, written by us
    framing = frame(
        status,
        length,
        whole_body,
        head_only=head_only,
        keep_alive=keep_alive,
        http11=http11,
        uwsgi=uwsgi,
    )
    head = [line, block]
    if framing.length is not None:
        head.append(spelling.length_line(framing.length))
    if uwsgi:
        head.append(b"\r\n")
    else:
        if framing.chunked:
            head.append(spelling.chunked)
        head.append(spelling.tail(framing.keep_alive, http11))
    return b"".join(head), framing


def _header_block(
    headers: Iterable[Any], kinds: dict[Any, int], text: bool
) -> tuple[bytes, int | None, bool]:
    """The application's header lines of a response, checked: the ordinary fields joined as
    ``name: value\\r\\n`` lines, its Content-Length (None if none) and whether its Connection
    field asks to close; hop-by-hop fields are dropped. ``kinds`` is the table of checked names
    of ``headers``' type (``text``: str, else bytes), added to here. Where the C twin
    (``monoceros/protocols/_response_head.c``) is built, it answers first, and this runs only
    for the headers it leaves: names not seen before, other types, a bad value."""
    sep: Any
    eol: Any
    close: Any
    value_type: type
    if text:  # not one tuple unpacked: a conditional's tuple is unpacked by iteration
        sep, eol, close, value_type = ": ", "\r\n", "close", str
    else:
        sep, eol, close, value_type = b": ", b"\r\n", b"close", bytes
    parts: list[Any] = []
    length = None
    closes = False
    for item in headers:
        if type(item) is tuple and len(item) == 2:  # a pair, taken apart without iterating
            pair: tuple[Any, Any] = item
            name, value = pair
        else:
            try:
                name, value = item
            except (TypeError, ValueError):
                raise ResponseError(
                    f"response header {item!r} is not a (name, value) pair"
                ) from None
        try:
            kind = kinds.get(name)
        except TypeError:  # unhashable: _checked_name says what is wrong with it
            kind = None
        if kind is None:
            name, kind = _checked_name(name, item, kinds, text)
        if type(value) is not value_type:
            value = _checked_value(value, item, text)
        if kind:
            if kind == _CONTENT_LENGTH:
                try:  # inline, not a helper: once per response
                    length = int(value)
                except ValueError:
                    length = -1
                if length < 0:
                    raise ResponseError(f"invalid Content-Length {value!r}")
            elif kind == _CONNECTION and close in value.lower():
                closes = True  # the application asked to close: heard, written by the server
            continue
        parts.append(name)
        parts.append(sep)
        parts.append(value)
        parts.append(eol)
    if text:
        try:
            block = "".join(parts).encode("latin-1")
        except UnicodeEncodeError as exc:
            raise ResponseError(f"a response header is not latin-1: {exc}") from None
    else:
        block = b"".join(parts)
    # One pass instead of one per value: keep only the controls (not HTAB); names are tokens,
    # so the only ones allowed are our own CR LF ending each of the len(parts) / 4 lines.
    if block.translate(_CTL_ZERO).count(0) != len(parts) >> 1:
        raise ResponseError(_injection(headers))
    return block, length, closes


_native_block: (
    Callable[[Iterable[Any], dict[Any, int], bool], tuple[bytes, int | None, bool] | None] | None
)
try:  # the C twin of _header_block, where built (and MONOCEROS_PURE is not set)
    from ._response_head import header_block as _native_block
except ImportError:
    _native_block = None


def _checked_name(name: Any, item: Any, kinds: dict[Any, int], text: bool) -> tuple[Any, int]:
    """Check a header name not seen before and classify it (remembered when hashable)."""
    if text:
        if type(name) is not str:
            raise ResponseError(f"response header {item!r}: name and value must be str")
        raw = name.encode("latin-1", "replace")
    elif type(name) is bytes or isinstance(name, (bytearray, memoryview)):
        raw = name = bytes(name)
    else:
        raise ResponseError(f"response header {item!r}: name and value must be bytes")
    if not _TOKEN.match(raw):
        raise ResponseError(f"invalid response header name {name!r}")
    lname = raw.lower()
    if lname == b"content-length":
        kind = _CONTENT_LENGTH
    elif lname == b"connection":
        kind = _CONNECTION
    else:
        kind = _HOP if lname in HOP_BY_HOP else _ORDINARY
    if len(kinds) < _CACHE_MAX:
        kinds[name] = kind
    return name, kind


def _checked_value(value: Any, item: Any, text: bool) -> Any:
    if text and isinstance(value, str):
        return value
    if not text and isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    kind = "str" if text else "bytes"
    raise ResponseError(f"response header {item!r}: name and value must be {kind}")


def _injection(headers: Iterable[Any]) -> str:
    """Name the header whose value holds a control character, for the error message."""
    for name, value in headers:
        text = value if isinstance(value, str) else bytes(value).decode("latin-1")
        if _CTL_TEXT.search(text):
            return (
                f"response header {name!r} holds a control character (header injection "
                f"refused; RFC 9110 5.5 allows none but HTAB): {value!r}"
            )
    return "a response header holds a control character (header injection refused)"


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (``data`` must not be empty: that is :data:`LAST_CHUNK`)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def error_response(status: int, reason_text: str = "") -> bytes:
    """A complete, self-closing HTTP/1.1 error response with a short plain-text body (the
    reason phrase, then ``reason_text``); what every worker answers a bad request with."""
    phrase = reason_phrase(status)
    body = f"{phrase}\n{reason_text}\n" if reason_text else f"{phrase}\n"
    data = body.encode("latin-1", "replace")
    return (
        b"%sConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (status_line(status), len(data), data)
    )
