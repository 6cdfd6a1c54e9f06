"""Sans-IO parser for the uWSGI binary protocol: bytes in, events out, no sockets.

Wire format: a 4-byte header (modifier1 u8, datasize u16 little-endian, modifier2 u8), a vars
block of exactly datasize bytes made of ``[u16le len][key][u16le len][value]`` pairs, then the
request body, whose length only ``CONTENT_LENGTH`` gives (or chunk framing, when the uWSGI router
forwards a chunked upload with ``--http-chunked-input``).

One request per connection: front ends (nginx, Apache, the uWSGI router) never reuse a uwsgi
connection, so bytes after the end of the body are left unread in the buffer and nothing here
ever reads "until EOF".

Every worker takes the body as events of :class:`UwsgiParser` (:class:`Data`, then
:class:`EndOfMessage`). The asgi protocol feeds the parser from the first byte, as it would
h11; the sync and gthread workers parse the head with :func:`parse_head` on their own buffer
(no parser object for a request without a body), then continue with
:meth:`UwsgiParser.after_head`, or raise :func:`truncated_head` at EOF (the asgi fast path
serves with :func:`parse_head` alone a request that arrived whole). Errors are classes of
:mod:`.errors` (:class:`TruncatedPacket`, :class:`VarsTooLarge`, ...), not reasons to search.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from .chunked import ChunkedDecoder
from .errors import (
    InvalidChunkedBody,
    InvalidVars,
    TruncatedPacket,
    UnsupportedModifier,
    VarsTooLarge,
)
from .events import END_OF_MESSAGE, NEED_DATA, Data, EndOfMessage, _Sentinel

__all__ = [
    "MAX_VARS_SIZE",
    "NEED_DATA",
    "PONG",
    "Data",
    "EndOfMessage",
    "Event",
    "Ping",
    "UwsgiParser",
    "UwsgiRequest",
    "header_fields",
    "parse_head",
    "port_number",
    "request_head",
    "truncated_head",
    "url_scheme",
    "well_formed_vars",
]

MAX_VARS_SIZE: Final = 65535
"""The largest vars block the wire can carry (datasize is a u16); the default limit."""

PONG: Final = b"\x64\x00\x00\x01"
"""The whole reply to a :class:`Ping`: modifier1 100, datasize 0, modifier2 1."""


class UwsgiRequest:
    """The head of one uWSGI request: modifiers, the CGI environ and the body framing.

    ``environ`` holds every var as ``str`` decoded latin-1 (PEP 3333), with the mapping rules of
    :func:`parse_head` applied; absent vars stay absent (defaults are the WSGI/ASGI layer's job).
    ``content_length`` is the body length from CONTENT_LENGTH (0 when absent or empty;
    meaningless if chunked); ``chunked`` is True when the body is chunk-framed (no
    CONTENT_LENGTH, the TE var says chunked). Treat instances as read-only.

    A plain class rather than a dataclass: the compiled core makes one per request, and a
    dataclass's generated ``__init__`` would run as Python there (2k instructions, not 0.1k).
    """

    __slots__ = ("chunked", "content_length", "environ", "modifier1", "modifier2")

    def __init__(
        self,
        modifier1: int,
        modifier2: int,
        environ: dict[str, str],
        content_length: int,
        chunked: bool,
    ) -> None:
        self.modifier1 = modifier1
        self.modifier2 = modifier2
        self.environ = environ
        self.content_length = content_length
        self.chunked = chunked

    def _fields(self) -> tuple[int, int, dict[str, str], int, bool]:
        return (self.modifier1, self.modifier2, self.environ, self.content_length, self.chunked)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UwsgiRequest):
            return NotImplemented
        return self._fields() == other._fields()

    def __repr__(self) -> str:
        return (
            f"UwsgiRequest(modifier1={self.modifier1!r}, modifier2={self.modifier2!r}, "
            f"environ={self.environ!r}, content_length={self.content_length!r}, "
            f"chunked={self.chunked!r})"
        )


@dataclass(frozen=True, slots=True)
class Ping:
    """A uWSGI ping (modifier1 100, modifier2 0, no vars): answer :data:`PONG` and close."""


Event: TypeAlias = UwsgiRequest | Ping | Data | EndOfMessage
"""Every event :meth:`UwsgiParser.next_event` can return besides :data:`NEED_DATA`."""

_PING: Final = Ping()
_END: Final = END_OF_MESSAGE

# RFC 9110 token: 1*tchar.
_TOKEN: Final = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_COMMON_METHODS: Final = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"))
_BAD_CHAR: Final = re.compile("[\r\n\x00]")

# What a wrong modifier1 most likely means, for the log line.
_MODIFIER_HINTS: Final = {
    71: "'G': this looks like HTTP sent to a uwsgi port",
    72: "'H': this looks like HTTP sent to a uwsgi port",
    80: "'P': this looks like HTTP sent to a uwsgi port",
    22: "0x16: this looks like TLS sent to a uwsgi port",
}

_DROPPED: Final = ("HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE")


def _show(text: str, limit: int = 40) -> str:
    """Quote a peer-supplied string for a log line: escaped, and cut to ``limit`` characters."""
    if len(text) > limit:
        return repr(text[:limit]) + "..."
    return repr(text)


def _check_header(m1: int, size: int, m2: int, max_vars_size: int) -> bool:
    """Validate the 4-byte header; True for a ping, False for a request, else raise."""
    if m1 == 100:
        if m2:
            raise UnsupportedModifier(
                f"modifier1 100 with modifier2 {m2} is not a ping (only modifier2 0 is served)"
            )
        if size:
            raise InvalidVars(f"ping (modifier1 100) with a {size}-byte vars block")
        return True
    if m1 != 0 and m1 != 30:
        hint = _MODIFIER_HINTS.get(m1)
        if hint is not None:
            raise UnsupportedModifier(f"unsupported modifier1 {m1} ({hint})")
        raise UnsupportedModifier(
            f"unsupported modifier1 {m1} (only 0 and 30 requests and 100 pings are served)"
        )
    if not size:
        raise InvalidVars("zero-length vars block")
    if size > max_vars_size:
        raise VarsTooLarge(f"vars block of {size} bytes exceeds the limit of {max_vars_size} bytes")
    return False


def _vars_fast(blk: bytes) -> dict[str, str] | None:
    """Parse a well-formed vars block in one pass; None when anything is unusual.

    "Unusual" means an overrun, an empty key, a repeated key or a CR/LF/NUL inside a key or
    value: the careful :func:`_vars_slow` then either merges the repeats or raises the precise
    error. Where the C extension is built, its ``parse_vars`` stands in for this function (the
    same contract, pinned by tests/unit/test_uwsgi_vars_native.py).
    """
    text = blk.decode("latin-1")  # byte offsets index it directly
    size = len(blk)
    environ: dict[str, str] = {}
    parts: list[str] = []  # every key and value, for one search of the whole lot below
    i = 0
    try:
        while i < size:
            ke = i + 2 + (blk[i] | blk[i + 1] << 8)
            ve = ke + 2 + (blk[ke] | blk[ke + 1] << 8)
            key = text[i + 2 : ke]
            value = text[ke + 2 : ve]
            environ[key] = value
            parts.append(key)
            parts.append(value)
            i = ve
    except IndexError:
        return None
    # a repeated key: fewer entries than pairs (the dict kept the last value)
    if i != size or 2 * len(environ) != len(parts) or "" in environ:
        return None
    joined = "".join(parts)
    if "\r" in joined or "\n" in joined or "\x00" in joined:
        return None
    return environ


def _vars_slow(blk: bytes) -> dict[str, str]:
    """Parse a vars block var by var: raise the precise error, or merge repeated keys."""
    text = blk.decode("latin-1")
    size = len(blk)
    environ: dict[str, str] = {}
    i = 0
    while i < size:
        if i + 2 > size:
            raise InvalidVars(f"truncated key length at offset {i} of the vars block")
        ks = i + 2
        ke = ks + (blk[i] | blk[i + 1] << 8)
        if ke > size:
            raise InvalidVars(
                f"key length {ke - ks} overruns the vars block at offset {ks} "
                f"(block is {size} bytes)"
            )
        if ke == ks:
            raise InvalidVars(f"empty key at offset {ks} of the vars block")
        if ke + 2 > size:
            raise InvalidVars(
                f"truncated value length at offset {ke} of the vars block "
                f"(key {_show(text[ks:ke])})"
            )
        vs = ke + 2
        ve = vs + (blk[ke] | blk[ke + 1] << 8)
        if ve > size:
            raise InvalidVars(
                f"value length {ve - vs} of key {_show(text[ks:ke])} overruns the vars block "
                f"at offset {vs} (block is {size} bytes)"
            )
        key = text[ks:ke]
        value = text[vs:ve]
        bad = _BAD_CHAR.search(key)
        if bad is not None:
            raise InvalidVars(
                f"key {_show(key)} contains {_char_name(bad.group())} at offset {ks + bad.start()}"
            )
        bad = _BAD_CHAR.search(value)
        if bad is not None:
            raise InvalidVars(
                f"value of {_show(key)} contains {_char_name(bad.group())} "
                f"at offset {vs + bad.start()}"
            )
        old = environ.get(key)
        if old is not None and key.startswith("HTTP_"):
            # One var per header line (nginx 1.22): join as HTTP does, never last-wins.
            value = old + ("; " if key == "HTTP_COOKIE" else ", ") + value
        environ[key] = value  # a repeated non-HTTP key: the last one wins
        i = ve
    return environ


def _port_number(value: str | None) -> int | None:
    """A port var as an int; None when absent, empty or not all ASCII digits."""
    if not value:
        return None
    number = 0
    for char in value:  # not int(): it takes signs, spaces, underscores and non-ASCII digits
        digit = ord(char) - 48
        if digit < 0 or digit > 9:
            return None
        number = number * 10 + digit
    return number


_parse_vars: Callable[[bytes], dict[str, str] | None]
_native_fields: Callable[[dict[str, str]], list[tuple[bytes, bytes]] | None] | None
_port_of: Callable[[str | None], int | None]
try:  # the C twins of _vars_fast, _header_fields and _port_number, where built (and
    # MONOCEROS_PURE is not set)
    from . import _uwsgi_vars

    _parse_vars = _uwsgi_vars.parse_vars
    _native_fields = _uwsgi_vars.header_fields
    _port_of = _uwsgi_vars.port_number
except (ImportError, AttributeError):  # not built, refused, or an older build without all
    _parse_vars = _vars_fast
    _native_fields = None
    _port_of = _port_number


def well_formed_vars(blk: bytes) -> dict[str, str] | None:
    """The environ of a vars block whose every pair is well formed (keys and values decoded
    latin-1, in the block's order); None for anything unusual: an overrun, an empty key, a
    repeated key, a CR, LF or NUL in a key or value (:func:`parse_head` then parses it var by
    var, to raise the precise error or merge the repeats)."""
    return _parse_vars(blk)


def _char_name(char: str) -> str:
    """Name a forbidden character for an error reason."""
    return {"\r": "CR", "\n": "LF"}.get(char, "NUL")


def request_head(m1: int, m2: int, environ: dict[str, str]) -> UwsgiRequest:
    """The request head of a parsed vars block: applies the CGI mapping rules shared by WSGI
    and ASGI to ``environ`` (see :func:`parse_head`); raises :class:`InvalidVars` for a request
    it refuses."""
    method = environ.get("REQUEST_METHOD")
    if method is None:
        raise InvalidVars("missing REQUEST_METHOD")
    if method not in _COMMON_METHODS and _TOKEN.fullmatch(method) is None:
        raise InvalidVars(f"REQUEST_METHOD {_show(method)} is not an HTTP token")
    if "HTTP_CONTENT_LENGTH" in environ or "HTTP_CONTENT_TYPE" in environ:
        for key in _DROPPED:
            environ.pop(key, None)
    cl = environ.get("CONTENT_LENGTH")
    chunked = False
    if cl:
        if not (cl.isascii() and cl.isdigit()):
            raise InvalidVars(f"CONTENT_LENGTH {_show(cl)} is not a decimal number")
        try:
            content_length = int(cl)
        except ValueError:  # more digits than int() accepts: no real body is that large
            raise InvalidVars(f"CONTENT_LENGTH {_show(cl)} is too large") from None
    else:
        content_length = 0
        if cl is None:
            te = environ.get("HTTP_TRANSFER_ENCODING")
            chunked = te is not None and "chunked" in te.lower()
    script_name = environ.get("SCRIPT_NAME")
    if script_name:
        script_name = script_name.rstrip("/")
        environ["SCRIPT_NAME"] = script_name
        path = environ.get("PATH_INFO")
        if script_name and path is not None and path.startswith(script_name):
            cut = len(script_name)
            if len(path) == cut or path[cut] == "/":
                environ["PATH_INFO"] = path[cut:]
    return UwsgiRequest(m1, m2, environ, content_length, chunked)


def parse_head(
    buf: bytes | bytearray, max_vars_size: int = MAX_VARS_SIZE
) -> tuple[UwsgiRequest | Ping, int] | None:
    """Parse the head at the start of ``buf``: ``(head, bytes used)``, or None if incomplete.

    Raises :class:`UnsupportedModifier` for a modifier1 other than 0, 30 (requests) and 100
    (ping) as soon as the 4-byte header is there, :class:`VarsTooLarge` for a vars block over
    ``max_vars_size`` and :class:`InvalidVars` for a malformed one. Mapping rules applied to
    the environ:

    - repeated ``HTTP_*`` keys are joined with ``", "`` (``"; "`` for ``HTTP_COOKIE``); a
      repeated non-HTTP key keeps the last value;
    - ``HTTP_CONTENT_LENGTH`` and ``HTTP_CONTENT_TYPE`` are dropped (PEP 3333);
    - a non-empty SCRIPT_NAME loses any trailing ``/`` and is removed from the front of
      PATH_INFO when PATH_INFO starts with it at a ``/`` boundary, whatever modifier1 says;
    - PATH_INFO, QUERY_STRING and REQUEST_URI are otherwise kept exactly as sent (PATH_INFO was
      already decoded once by the front end and is never decoded again);
    - code-loading magic vars (``UWSGI_FILE``, ``UWSGI_SCRIPT``, ``UWSGI_MODULE``,
      ``UWSGI_SETENV``, ...) are passed through as plain strings: nothing here acts on them.

    Body framing: a CONTENT_LENGTH var decides (empty means 0); only without one, and when
    HTTP_TRANSFER_ENCODING contains ``chunked``, is the body chunk-framed. The body itself is
    not looked at. Bytes after the head are not touched.
    """
    n = len(buf)
    if n < 4:
        return None
    m1 = buf[0]
    size = buf[1] | buf[2] << 8
    if ((m1 != 0 and m1 != 30) or not size or size > max_vars_size) and _check_header(
        m1, size, buf[3], max_vars_size
    ):
        return _PING, 4
    end = 4 + size
    if n < end:
        return None
    # typed bytes, the compiled core indexes it directly (a bytearray's slice is copied once)
    blk: bytes = buf[4:end] if isinstance(buf, bytes) else bytes(buf[4:end])
    environ = _parse_vars(blk)
    if environ is None:
        environ = _vars_slow(blk)
    return request_head(m1, buf[3], environ), end


#: var name -> its header field name, or b"" for a var that is not a header (bounded)
_FIELD_NAMES: dict[str, bytes] = {
    "CONTENT_TYPE": b"content-type",
    "CONTENT_LENGTH": b"content-length",
}


def _field_name(key: str) -> bytes:
    name = key[5:].lower().replace("_", "-").encode("latin-1") if key.startswith("HTTP_") else b""
    if len(_FIELD_NAMES) < 2048:
        _FIELD_NAMES[key] = name
    return name


def _header_fields(environ: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """:func:`header_fields` var by var (where the C twin is built, it stands in for this)."""
    fields: list[tuple[bytes, bytes]] = []
    names = _FIELD_NAMES  # a module global is a dict lookup per use in the loop
    for key in environ:
        name = names.get(key)
        if name is None:
            name = _field_name(key)
        if name:
            value = environ[key]
            if value or key.startswith("HTTP_"):
                fields.append((name, value.encode("latin-1")))
    return fields


def header_fields(environ: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """The HTTP header fields of a request's vars, as (name, value) bytes, in the vars' order:
    every ``HTTP_*`` var (``HTTP_USER_AGENT`` -> ``b"user-agent"``), and ``CONTENT_TYPE`` and
    ``CONTENT_LENGTH`` unless empty (for an ASGI scope's ``headers``)."""
    if _native_fields is not None:
        fields = _native_fields(environ)
        if fields is not None:
            return fields
    return _header_fields(environ)


def port_number(value: str | None) -> int | None:
    """A port var (``REMOTE_PORT``, ``SERVER_PORT``) as an int; None when absent, empty or
    not all ASCII digits (C where built: ~100 instructions, where the loop takes ~700)."""
    return _port_of(value)


def url_scheme(environ: dict[str, str]) -> str:
    """``"https"`` when the front end says so, else ``"http"``.

    The first of these vars that is present and non-empty decides: ``HTTPS`` (https when
    on/1/yes, any case), then ``UWSGI_SCHEME``, then ``REQUEST_SCHEME`` (https when it says so).
    Client ``X-Forwarded-*`` headers are not trusted here.
    """
    https = environ.get("HTTPS")
    if https:
        return "https" if https.lower() in ("on", "1", "yes") else "http"
    scheme = environ.get("UWSGI_SCHEME") or environ.get("REQUEST_SCHEME")
    if not scheme or scheme == "http":  # what nginx's uwsgi_params send on a plain listener
        return "http"
    return "https" if scheme.lower() == "https" else "http"


def truncated_head(buf: bytes | bytearray) -> TruncatedPacket:
    """The error for a head cut short: the peer closed after sending only ``buf``.

    For a worker that reads heads with :func:`parse_head` and meets EOF while it returns None;
    :class:`UwsgiParser` raises the same at EOF.
    """
    n = len(buf)
    if n < 4:
        return TruncatedPacket(f"truncated header after {n} of 4 bytes")
    size = buf[1] | buf[2] << 8
    return TruncatedPacket(f"truncated vars block after {n - 4} of {size} bytes")


_HEAD, _BODY, _CHUNKED, _END_PENDING, _DONE = range(5)


class UwsgiParser:
    """h11-style driver around :func:`parse_head`: feed bytes, pull events.

    Events come in this order: one :class:`UwsgiRequest`, any number of :class:`Data`, one
    :class:`EndOfMessage`; or a single :class:`Ping`. :data:`NEED_DATA` means "receive more".
    A worker that parsed the head itself with :func:`parse_head` (the fast path) continues
    with :meth:`after_head`, whose events start at the body. ``receive_data(b"")`` signals EOF;
    an incomplete head or body then raises :class:`TruncatedPacket`. A chunked body may never
    come (the uWSGI router without ``--http-chunked-input`` sends none): the worker applies a
    read timeout (:class:`MissingChunkedBody`), the parser just waits for bytes. Bytes after the
    body are left unread.
    """

    __slots__ = (
        "_body",
        "_buf",
        "_chunks",
        "_eof",
        "_max_vars_size",
        "_remaining",
        "_state",
        "head",
    )

    def __init__(self, *, max_vars_size: int = MAX_VARS_SIZE) -> None:
        if max_vars_size < 1:
            raise ValueError(f"max_vars_size must be at least 1, got {max_vars_size}")
        self._max_vars_size = max_vars_size
        self._buf = bytearray()
        self._body = b""  # CONTENT_LENGTH body bytes received and not handed out yet
        self._eof = False
        self._state = _HEAD
        self._remaining = 0
        self._chunks: ChunkedDecoder | None = None
        self.head: UwsgiRequest | Ping | None = None
        """The head once parsed, else None."""

    @classmethod
    def after_head(
        cls, head: UwsgiRequest, rest: bytes | bytearray | memoryview = b""
    ) -> UwsgiParser:
        """A parser past ``head`` (parsed by :func:`parse_head`), given ``rest``: the bytes
        that followed the head. Its first event is the body's first :class:`Data` (or the
        :class:`EndOfMessage`)."""
        parser = cls()
        parser._begin_body(head, rest)
        return parser

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes received from the peer; ``b""`` means the peer closed (EOF)."""
        if self._eof:
            if data:
                raise RuntimeError("received data after EOF")
            return
        if not data:
            self._eof = True
        elif self._state == _BODY:  # kept as received: a piece is handed out without a copy
            body = self._body
            self._body = body + data if body else bytes(data)
        else:
            self._buf += data

    @property
    def body_remaining(self) -> int | None:
        """Body bytes still to come; None while the head is unknown or when chunked."""
        if self._state == _BODY:
            return self._remaining
        if self._state in (_END_PENDING, _DONE):
            return 0
        return None

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the end of the message (never read as a request); b"" before."""
        if self._state in (_END_PENDING, _DONE):
            return bytes(self._buf)
        return b""

    def next_event(self) -> Event | Literal[_Sentinel.NEED_DATA]:
        """Return the next event, or :data:`NEED_DATA` if more bytes must be received."""
        state = self._state
        if state == _BODY:
            return self._body_event()
        if state == _HEAD:
            return self._head_event()
        if state == _CHUNKED:
            return self._chunked_event()
        if state == _END_PENDING:
            self._state = _DONE
            return _END
        raise RuntimeError("the request is complete: one request per connection")

    def _head_event(self) -> UwsgiRequest | Ping | Literal[_Sentinel.NEED_DATA]:
        """Parse the head once the buffer holds all of it."""
        buf = self._buf
        result = parse_head(buf, self._max_vars_size)
        if result is None:
            if not self._eof:
                return NEED_DATA
            raise truncated_head(buf)
        head, used = result
        if isinstance(head, Ping):
            del buf[:used]
            self.head = head
            self._state = _DONE
        else:
            rest = buf[used:]
            buf.clear()
            self._begin_body(head, rest)
        return head

    def _begin_body(self, head: UwsgiRequest, rest: bytes | bytearray | memoryview) -> None:
        """Take up the body framing ``head`` announces; ``rest`` (what followed the head)
        starts the body."""
        self.head = head
        length = head.content_length
        if length and not head.chunked:
            self._remaining = length
            self._state = _BODY
            if rest:
                self._body = bytes(rest)
            return
        if head.chunked:
            self._chunks = ChunkedDecoder(error=InvalidChunkedBody)
            self._state = _CHUNKED
        else:
            self._state = _END_PENDING
        if rest:
            self._buf += rest

    def _body_event(self) -> Data | Literal[_Sentinel.NEED_DATA]:
        """Hand out the buffered bytes of a CONTENT_LENGTH body (up to its end)."""
        data = self._body
        if not data:
            if self._eof:
                assert isinstance(self.head, UwsgiRequest)
                total = self.head.content_length
                got = total - self._remaining
                raise TruncatedPacket(f"truncated body after {got} of {total} bytes")
            return NEED_DATA
        self._body = b""
        remaining = self._remaining - len(data)
        if remaining > 0:
            self._remaining = remaining
            return Data(data)
        if remaining:  # bytes after the body: never read as a request
            self._buf += data[remaining:]
            data = data[:remaining]
        self._remaining = 0
        self._state = _END_PENDING
        return Data(data)

    def _chunked_event(self) -> Data | EndOfMessage | Literal[_Sentinel.NEED_DATA]:
        """Hand out de-chunked data, then the end of the message."""
        chunks = self._chunks
        assert chunks is not None
        data = chunks.read(self._buf)
        if data is not None:
            return Data(data)
        if chunks.done:
            self._state = _DONE
            return _END
        if self._eof:
            raise TruncatedPacket(
                f"truncated chunked body after {chunks.decoded} data bytes "
                f"({chunks.describe_position()})"
            )
        return NEED_DATA
