"""Sans-IO HTTP/1.1 request parsing over httptools (llhttp): bytes in, events out.

The parser enforces gunicorn's request limits (``limit_request_line``, ``limit_request_fields``,
``limit_request_field_size``) and the framing rules llhttp leaves to the server (a Host header on
HTTP/1.1, no Transfer-Encoding on HTTP/1.0). Every refusal is a :class:`ProtocolError` subclass
carrying the status to answer with.
"""

from __future__ import annotations

from collections import deque
from typing import Final, Literal
from urllib.parse import unquote_to_bytes

import httptools

from .errors import HeadersTooLarge, InvalidHTTPRequest, ProtocolError, RequestLineTooLong
from .events import END_OF_MESSAGE, NEED_DATA, Data, EndOfMessage, _Sentinel
from .response import error_response

__all__ = [
    "NEED_DATA",
    "decoded_path",
    "error_response",
    "split_target",
    "Data",
    "EndOfMessage",
    "HttpLimits",
    "HttpParser",
    "HttpRequest",
]


class HttpRequest:
    """A complete request head."""

    __slots__ = (
        "chunked",
        "content_length",
        "expect_continue",
        "headers",
        "keep_alive",
        "method",
        "target",
        "upgrade",
        "version",
    )

    def __init__(
        self,
        method: str,
        target: bytes,
        version: str,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        upgrade: bool,
        content_length: int | None,
        chunked: bool,
        expect_continue: bool,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.content_length = content_length
        self.chunked = chunked
        self.expect_continue = expect_continue

    def __repr__(self) -> str:
        return f"<HttpRequest {self.method} {self.target!r} HTTP/{self.version}>"


Event = HttpRequest | Data | EndOfMessage


class HttpLimits:
    """Request limits, gunicorn's names and defaults (0 means unlimited for the first three)."""

    __slots__ = ("field_size", "fields", "line")

    def __init__(self, line: int = 4094, fields: int = 100, field_size: int = 8190) -> None:
        self.line = line
        self.fields = fields
        self.field_size = field_size


_DEFAULT_LIMITS: Final = HttpLimits()


class HttpParser:
    """Feed bytes with :meth:`receive_data`, take events with :meth:`next_event`.

    Events, per request: one :class:`HttpRequest`, zero or more :class:`Data`, one
    :class:`EndOfMessage`. Pipelined requests follow in order. ``receive_data(b"")`` signals EOF;
    an incomplete request at EOF raises :class:`InvalidHTTPRequest` from :meth:`next_event`.
    """

    __slots__ = (
        "_content_length",
        "_error",
        "_events",
        "_eof",
        "_expect",
        "_has_host",
        "_has_te",
        "_headers",
        "_in_message",
        "_limits",
        "_parser",
        "_read",
        "_url",
        "_url_len",
        "upgraded_data",
    )

    def __init__(self, limits: HttpLimits | None = None) -> None:
        self._limits = limits or _DEFAULT_LIMITS
        self._parser = httptools.HttpRequestParser(self)
        self._events: deque[Event] = deque()
        self._read = 0
        self._error: ProtocolError | None = None
        self._eof = False
        self._in_message = False
        self._reset_head()
        #: bytes that followed an Upgrade request head (the new protocol's first bytes)
        self.upgraded_data = b""

    def _reset_head(self) -> None:
        self._url: list[bytes] = []
        self._url_len = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._has_host = False
        self._has_te = False
        self._expect = False
        self._content_length: int | None = None

    # ------------------------------------------------------------------ public surface

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; ``b""`` means the peer closed its side."""
        if self._error is not None:
            return
        if not data:
            self._eof = True
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0] if exc.args else len(data)
            self.upgraded_data = data[offset:]
        except httptools.HttpParserCallbackError as exc:
            ctx = exc.__context__
            self._error = (
                ctx if isinstance(ctx, ProtocolError) else InvalidHTTPRequest(str(ctx or exc))
            )
        except httptools.HttpParserInvalidURLError as exc:
            self._error = InvalidHTTPRequest(f"invalid request target: {exc}")
        except httptools.HttpParserError as exc:
            self._error = InvalidHTTPRequest(str(exc) or "malformed request")

    def next_event(self) -> Event | Literal[_Sentinel.NEED_DATA]:
        """Return the next event, or :data:`NEED_DATA`; raise the peer's :class:`ProtocolError`."""
        if self._events:
            return self._events.popleft()
        if self._error is not None:
            raise self._error
        if self._eof and self._in_message:
            raise InvalidHTTPRequest("connection closed before the request was complete")
        return NEED_DATA

    @property
    def at_message_end(self) -> bool:
        """True when the next event is the current message's :class:`EndOfMessage`."""
        events = self._events
        return bool(events) and events[0] is END_OF_MESSAGE

    @property
    def in_message(self) -> bool:
        """True between the first byte of a request and its end."""
        return self._in_message

    # ------------------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        """httptools callback."""
        self._in_message = True

    def on_url(self, url: bytes) -> None:
        """httptools callback (may come in pieces)."""
        self._url_len += len(url)
        if self._limits.line and self._url_len > self._limits.line:
            raise RequestLineTooLong(
                f"request line is longer than limit_request_line ({self._limits.line} bytes)"
            )
        self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """httptools callback: one complete header field."""
        limits = self._limits
        if limits.field_size and len(name) + len(value) > limits.field_size:
            raise HeadersTooLarge(
                f"header field {name[:64].decode('latin-1')!r} is larger than "
                f"limit_request_field_size ({limits.field_size} bytes)"
            )
        headers = self._headers
        if limits.fields and len(headers) >= limits.fields:
            raise HeadersTooLarge(f"more than limit_request_fields ({limits.fields}) header fields")
        lname = name.lower()
        if lname == b"host":
            self._has_host = True
        elif lname == b"content-length":
            try:
                self._content_length = int(value)
            except ValueError:
                raise InvalidHTTPRequest("invalid Content-Length") from None
        elif lname == b"transfer-encoding":
            self._has_te = True
        elif lname == b"expect":
            self._expect = value.lower() == b"100-continue"
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        """httptools callback: the head is complete."""
        parser = self._parser
        version = parser.get_http_version()
        if version == "1.1" and not self._has_host:
            raise InvalidHTTPRequest("HTTP/1.1 request without a Host header")
        if self._has_te and version == "1.0":
            raise InvalidHTTPRequest("Transfer-Encoding in an HTTP/1.0 request")
        url = self._url[0] if len(self._url) == 1 else b"".join(self._url)
        self._events.append(
            HttpRequest(
                parser.get_method().decode("ascii"),
                url,
                version,
                self._headers,
                parser.should_keep_alive(),
                parser.should_upgrade(),
                None if self._has_te else (self._content_length or 0),
                self._has_te,
                self._expect and version == "1.1",
            )
        )
        self._reset_head()

    def on_body(self, body: bytes) -> None:
        """httptools callback: a piece of the de-chunked body."""
        self._events.append(Data(bytes(body)))

    def on_message_complete(self) -> None:
        """httptools callback."""
        self._in_message = False
        self._events.append(END_OF_MESSAGE)


def split_target(target: bytes) -> tuple[bytes, bytes, bytes]:
    """``(raw path, raw query, authority)`` of a request target: origin form (``/p?q``),
    ``*``, or absolute form (``http://host:port/p?q``, whose ``host:port`` is the authority;
    empty otherwise). Raises :class:`InvalidHTTPRequest` for a target that does not parse."""
    if target[:1] == b"/":
        path, _, query = target.partition(b"?")
        return path, query, b""
    if target == b"*":
        return b"*", b"", b""
    try:
        url = httptools.parse_url(target)
    except httptools.HttpParserInvalidURLError:
        raise InvalidHTTPRequest(f"invalid request target {target[:100]!r}") from None
    authority = b""
    if url.host:
        authority = url.host + (b":%d" % url.port if url.port else b"")
    return url.path or b"/", url.query or b"", authority


def decoded_path(raw_path: bytes) -> bytes:
    """The path percent-decoded once (the only decoding a server may do)."""
    return unquote_to_bytes(raw_path) if b"%" in raw_path else raw_path
