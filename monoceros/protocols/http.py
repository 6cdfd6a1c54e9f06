"""Sans-IO HTTP/1.1 request parsing over httptools (llhttp): bytes in, events out.

The parser enforces gunicorn's request limits (``limit_request_line``, ``limit_request_fields``,
``limit_request_field_size``) and the rules llhttp leaves to the server: one Host header, required
on HTTP/1.1 (RFC 9112 §3.2); no Transfer-Encoding on HTTP/1.0; HTTP/1.0 and HTTP/1.1 only (505 for
another HTTP version, 400 for HTTP/0.9 and for other protocols such as RTSP); asterisk-form for
OPTIONS only; CONNECT answered 501. Every refusal is a :class:`ProtocolError` subclass carrying
the status to answer with.

Around llhttp it adds what llhttp cannot be told to do, each only when the rare case is there:

- any token is a method (RFC 9110 §9.1): llhttp knows a fixed list, so a request it refuses for
  its method is parsed again from the bytes kept of its head, with a stand-in method;
- an Upgrade offer with a body is an ordinary request (RFC 9110 §7.8 lets a server ignore an
  Upgrade; llhttp would skip the body): the body is read by a parser started on a stand-in head;
- after an Upgrade offer without a body the parser holds what follows: a worker that takes the
  upgrade reads :attr:`HttpParser.upgraded_data`, one that does not simply asks for the next
  event and the connection goes on as HTTP/1.1.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any, Final, Literal
from urllib.parse import unquote_to_bytes

import httptools

from .chunked import ChunkedDecoder
from .errors import (
    HeadersTooLarge,
    InvalidHTTPRequest,
    MethodNotImplemented,
    ProtocolError,
    RequestLineTooLong,
    VersionNotSupported,
)
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

#: the methods llhttp takes on an HTTP/1.x request line; another token is parsed with a stand-in
_LLHTTP_METHODS: Final = frozenset(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH "
    b"SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY "
    b"SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE QUERY".split()
)
_STAND_IN_METHOD: Final = b"GET"
_PERCENT: Final = 0x25  # b"%"
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: llhttp's reasons for a method it does not take on an HTTP/1.x request line
_METHOD_REASONS: Final = frozenset(("Invalid method for HTTP/x.x request",))
#: llhttp's reasons for an HTTP version it does not parse (the second: HTTP/2's preface)
_VERSION_REASONS: Final = frozenset(("Invalid HTTP version", "Pause on PRI/Upgrade"))
#: llhttp reports RTSP/1.0 and ICE/1.0 request lines as version 1.0: an HTTP/1.0 head holds this
_HTTP10_LINE_END: Final = b" HTTP/1.0\r\n"
#: stand-in heads that start a parser on the body of an Upgrade offer with a body
_CHUNKED_HEAD: Final = b"PUT / HTTP/1.1\r\nHost: -\r\nTransfer-Encoding: chunked\r\n\r\n"
_LENGTH_HEAD: Final = b"PUT / HTTP/1.1\r\nHost: -\r\nContent-Length: %d\r\n\r\n"


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


class _MethodWait:
    """Stands in for llhttp while an extension method is still arriving: every piece is refused
    as llhttp would, so the parser looks at the kept head bytes again."""

    __slots__ = ()

    def feed_data(self, data: bytes) -> None:
        raise httptools.HttpParserInvalidMethodError("extension method not complete yet")


#: the parser's state after an Upgrade offer without a body (see the module docstring)
_HELD: Final = InvalidHTTPRequest("the bytes after an Upgrade request are held")


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
        "_head",
        "_head_clean",
        "_headers",
        "_in_head",
        "_in_message",
        "_limits",
        "_method",
        "_parser",
        "_read",
        "_upgrade_body",
        "_url",
        "_url_len",
        "upgraded_data",
    )

    def __init__(self, limits: HttpLimits | None = None) -> None:
        self._limits = limits or _DEFAULT_LIMITS
        self._parser: Any = _llhttp(self)
        self._events: deque[Event] = deque()
        self._read = 0
        self._error: ProtocolError | None = None
        self._eof = False
        self._in_message = False
        #: the bytes that hold the head being parsed: the last piece fed, or every piece since
        #: the one the head began in (kept only for the rare cases that need them again)
        self._head: bytes | bytearray = b""
        self._in_head = False
        #: True when ``_head`` begins between two messages (not inside a body)
        self._head_clean = True
        #: the real method of a request parsed with a stand-in one
        self._method: str | None = None
        #: the stand-in head for the body of an Upgrade offer that has one
        self._upgrade_body: bytes | None = None
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
            if self._error is _HELD:
                self._hold(data)
            return
        if not data:
            self._eof = True
            return
        while data:
            if self._in_head:  # the head began in an earlier piece: keep all of it
                head = self._head
                if not isinstance(head, bytearray):
                    head = self._head = bytearray(head)
                head += data
            else:
                self._head = data
                self._head_clean = not self._in_message
            try:
                self._parser.feed_data(data)
                return
            except httptools.HttpParserUpgrade as exc:
                data = self._upgraded(data[exc.args[0] if exc.args else len(data) :])
            except httptools.HttpParserCallbackError as exc:
                ctx = exc.__context__
                self._error = (
                    ctx if isinstance(ctx, ProtocolError) else InvalidHTTPRequest(str(ctx or exc))
                )
                return
            except httptools.HttpParserInvalidURLError as exc:
                self._error = InvalidHTTPRequest(f"invalid request target: {exc}")
                return
            except httptools.HttpParserError as exc:
                data = self._refused(exc)

    def next_event(self) -> Event | Literal[_Sentinel.NEED_DATA]:
        """Return the next event, or :data:`NEED_DATA`; raise the peer's :class:`ProtocolError`.

        Asked for after an Upgrade offer, it means the offer was not taken: the bytes held since
        are parsed as HTTP/1.1.
        """
        if self._events:
            return self._events.popleft()
        if self._error is not None:
            if self._error is _HELD:
                return self._resume()
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

    # ------------------------------------------------------------------ the rare cases

    def _refused(self, exc: Exception) -> bytes:
        """llhttp refused the bytes: the error to raise, or the bytes to parse again."""
        reason = str(exc) or "malformed request"
        try:
            if isinstance(exc, httptools.HttpParserInvalidMethodError) or (
                reason in _METHOD_REASONS
            ):
                return self._extension_method()
            if reason in _VERSION_REASONS:
                raise VersionNotSupported("only HTTP/1.0 and HTTP/1.1 are served")
            raise InvalidHTTPRequest(reason)
        except ProtocolError as error:
            self._error = error
            return b""

    def _extension_method(self) -> bytes:
        """The head llhttp refused for its method, with a stand-in method, to parse again.

        The request starts in the bytes kept of its head, after the requests parsed before it
        there. Returns b"" while the method is still arriving.
        """
        if not self._head_clean:
            raise InvalidHTTPRequest(
                "an extension method pipelined in the same read as a request body's end"
            )
        head = bytes(self._head)
        start = _request_start(head)
        limit = self._limits.line or _DEFAULT_LIMITS.line
        sp = head.find(b" ", start, start + limit + 1)
        method = head[start:] if sp < 0 else head[start:sp]
        if (method or sp >= 0) and not _TOKEN.fullmatch(method):
            raise InvalidHTTPRequest(f"invalid method {method[:40]!r}")
        if sp < 0:  # still arriving
            if len(method) > limit:
                raise RequestLineTooLong(
                    f"request line is longer than limit_request_line ({limit} bytes)"
                )
            self._parser = _MethodWait()
            return b""
        self._method = method.decode("ascii")
        self._parser = _llhttp(self)
        self._in_message = self._in_head = False
        self._reset_head()
        return _STAND_IN_METHOD + head[sp:]

    def _upgrade(self, method: str) -> bool:
        """True for an Upgrade offer a worker may take: one without a body (CONNECT is 501).

        An offer with a body stays an ordinary request (RFC 9110 §7.8): its body will be read
        by a parser started on a stand-in head with the same framing.
        """
        if method == "CONNECT":
            raise MethodNotImplemented("CONNECT is not served: this server is no proxy")
        if self._has_te:
            self._upgrade_body = _CHUNKED_HEAD
        elif self._content_length:
            self._upgrade_body = _LENGTH_HEAD % self._content_length
        else:
            return True
        return False

    def _upgraded(self, rest: bytes) -> bytes:
        """llhttp stopped after an Upgrade request: hold what follows, or go on to its body."""
        stand_in = self._upgrade_body
        if stand_in is None:
            self.upgraded_data = rest
            self._error = _HELD
            return b""
        self._upgrade_body = None
        events = self._events
        events.pop()  # llhttp skipped the body and ended the message: the body is still to come
        parser = self._parser = _llhttp(self)
        parser.feed_data(stand_in)
        events.pop()  # the stand-in head's request
        return rest

    def _hold(self, data: bytes) -> None:
        if data:
            self.upgraded_data += data
        else:
            self._eof = True

    def _resume(self) -> Event | Literal[_Sentinel.NEED_DATA]:
        """The Upgrade offer was not taken: parse the held bytes as HTTP/1.1."""
        self._error = None
        data, self.upgraded_data = self.upgraded_data, b""
        if data:
            self.receive_data(data)
        return self.next_event()

    # ------------------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        """httptools callback."""
        self._in_message = self._in_head = True

    def on_url(self, url: bytes) -> None:
        """httptools callback (may come in pieces)."""
        self._url_len += len(url)
        if self._limits.line and self._url_len > self._limits.line:
            raise RequestLineTooLong(
                f"request line is longer than limit_request_line ({self._limits.line} bytes)"
            )
        self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """httptools callback: one complete header field (llhttp keeps trailing OWS: dropped)."""
        value = value.rstrip(b" \t")
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
            if self._has_host:
                raise InvalidHTTPRequest("more than one Host header field")
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
        self._in_head = False
        parser = self._parser
        url = self._url[0] if len(self._url) == 1 else b"".join(self._url)
        method = self._method
        if method is None:
            method = parser.get_method().decode("ascii")
        else:
            self._method = None
        version = parser.get_http_version()
        if version == "1.1":
            if not self._has_host:
                raise InvalidHTTPRequest("HTTP/1.1 request without a Host header")
        elif version == "1.0":
            # llhttp reports RTSP/1.0 and ICE/1.0 as 1.0: where the head starts the kept bytes
            # (the usual case), one byte there tells "HTTP/" from "RTSP/" and "ICE/"
            at = len(method) + len(url) + 2
            head = self._head
            if self._has_te or len(head) <= at or head[at] != 0x48:
                self._check_http10()
        else:
            _refuse_version(version)
        if url == b"*" and method != "OPTIONS":
            raise InvalidHTTPRequest(f"asterisk-form target with {method}: only OPTIONS takes *")
        if self._has_te:  # BWS before a chunk extension's ";" (RFC 9112 7.1.1), set when needed
            parser.set_dangerous_leniencies(lenient_spaces_after_chunk_size=True)
        upgrade = parser.should_upgrade()
        if upgrade:
            upgrade = self._upgrade(method)
        self._events.append(
            HttpRequest(
                method,
                url,
                version,
                self._headers,
                parser.should_keep_alive(),
                upgrade,
                None if self._has_te else (self._content_length or 0),
                self._has_te,
                self._expect and version == "1.1",
            )
        )
        self._reset_head()

    def _check_http10(self) -> None:
        """An HTTP/1.0 head the quick test did not clear: no Transfer-Encoding, and an HTTP
        request line somewhere in the kept bytes."""
        if self._has_te:
            raise InvalidHTTPRequest("Transfer-Encoding in an HTTP/1.0 request")
        if self._head.find(_HTTP10_LINE_END) < 0:
            raise InvalidHTTPRequest("not an HTTP request line (RTSP or ICE)")

    def on_body(self, body: bytes) -> None:
        """httptools callback: a piece of the de-chunked body."""
        self._events.append(Data(bytes(body)))

    def on_message_complete(self) -> None:
        """httptools callback."""
        self._in_message = False
        if self._headers:  # trailer fields: not the next request's
            self._reset_head()
        self._events.append(END_OF_MESSAGE)


def _llhttp(protocol: HttpParser) -> Any:
    """An llhttp request parser calling back ``protocol``."""
    return httptools.HttpRequestParser(protocol)


def _refuse_version(version: str) -> None:
    if version == "0.9":
        raise InvalidHTTPRequest("request line without an HTTP version (HTTP/0.9 is not served)")
    raise VersionNotSupported(f"HTTP/{version} is not served: only HTTP/1.0 and HTTP/1.1")


def _request_start(head: bytes) -> int:
    """Where the first request with a method llhttp does not know starts in ``head``, which
    begins between two messages: the requests before it (parsed already) are skipped."""
    pos = 0
    size = len(head)
    while True:
        while pos < size and head[pos] in b"\r\n":
            pos += 1
        sp = head.find(b" ", pos)
        end = head.find(b"\r\n\r\n", pos)
        if sp < 0 or end < 0 or head[pos:sp] not in _LLHTTP_METHODS:
            return pos
        lines = head[pos:end].split(b"\r\n")[1:]
        pos = end + 4
        pos += _body_length(head, lines, pos)


def _body_length(head: bytes, lines: list[bytes], start: int) -> int:
    """The length on the wire of the body at ``start`` of a head with these field lines."""
    for line in lines:
        name, _, value = line.partition(b":")
        name = name.lower()
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:  # llhttp took it, so it cannot be: stay on the safe side
                raise InvalidHTTPRequest("invalid Content-Length") from None
        if name == b"transfer-encoding":
            buf = bytearray(head[start:])
            decoder = ChunkedDecoder(error=InvalidHTTPRequest)
            while decoder.read(buf) is not None:
                pass
            return len(head) - start - len(buf)
    return 0


def split_target(target: bytes) -> tuple[bytes, bytes, bytes]:
    """``(raw path, raw query, authority)`` of a request target: origin form (``/p?q``),
    ``*``, or absolute form (``http://host:port/p?q``, whose ``host:port`` is the authority,
    an IPv6 literal in its brackets; empty otherwise). A ``#fragment`` is dropped. Raises
    :class:`InvalidHTTPRequest` for a target that does not parse."""
    if 0x23 in target:  # "#": a fragment is the client's own business, never passed on
        target = target.partition(b"#")[0]
    if target[:1] == b"/":
        path, _, query = target.partition(b"?")
        return path, query, b""
    if target == b"*":
        return b"*", b"", b""
    try:  # Any: the stubs say int for a port that is None when absent (the compiled core checks)
        url: Any = httptools.parse_url(target)
    except httptools.HttpParserInvalidURLError:
        raise InvalidHTTPRequest(f"invalid request target {target[:100]!r}") from None
    authority = b""
    if url.host:
        host = b"[" + url.host + b"]" if b":" in url.host else url.host  # an IPv6 literal
        authority = host + (b":%d" % url.port if url.port else b"")
    return url.path or b"/", url.query or b"", authority


def decoded_path(raw_path: bytes) -> bytes:
    """The path percent-decoded once (the only decoding a server may do)."""
    # an int, not b"%": CPython's bytes.__contains__ tries its argument as an int first, and a
    # bytes argument costs it a raised and cleared TypeError (about 2k instructions)
    return unquote_to_bytes(raw_path) if _PERCENT in raw_path else raw_path
