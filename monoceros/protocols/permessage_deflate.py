"""Sans-IO permessage-deflate (RFC 7692) for the server side, over the standard library's zlib.

:func:`negotiate` answers the client's ``Sec-WebSocket-Extensions`` offers: the first
permessage-deflate offer this server can honour is accepted (its parameters echoed), an offer
with an unknown, repeated or invalid parameter is declined (RFC 7692 §5.1), and so is
``server_max_window_bits=8`` (zlib cannot compress with a 256-byte window). :class:`Deflater`
compresses one message at a time and :class:`Inflater` decompresses one fragment at a time,
never producing more than the room it is given (a zip bomb costs its limit, not its expansion).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "EXTENSION",
    "DeflateError",
    "DeflateParams",
    "Deflater",
    "Inflater",
    "negotiate",
    "parse_extensions",
]

EXTENSION: Final = "permessage-deflate"

_TAIL: Final = b"\x00\x00\xff\xff"
"""The end of a sync flush: stripped from each compressed message, put back to inflate it."""

_PARAMS: Final = frozenset(
    (
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    )
)
_MIN_SERVER_BITS: Final = 9
"""zlib refuses raw deflate with an 8-bit window: such an offer is declined."""

_TOKEN: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)

Offer = tuple[str, list[tuple[str, str | None]]]


class DeflateError(Exception):
    """Compressed data that cannot be inflated, or inflates past its limit; ``code`` is the
    close code (1007 for bad data, 1009 for too much)."""

    def __init__(self, reason: str, code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True, slots=True)
class DeflateParams:
    """The accepted configuration, as offered by the client."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None
    """The value the client offered (None: none or no value); echoed, never needed to inflate."""

    def response(self) -> bytes:
        """The ``Sec-WebSocket-Extensions`` value that accepts this configuration."""
        parts = [EXTENSION]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.server_max_window_bits is not None:
            parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_max_window_bits is not None:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(parts).encode("ascii")


def _split(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside quoted strings."""
    parts: list[str] = []
    start = 0
    quoted = escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append(text[start:i])
            start = i + 1
    if quoted:
        raise ValueError("unterminated quoted string")
    parts.append(text[start:])
    return parts


def _token(text: str) -> str:
    text = text.strip(" \t")
    if not text or not set(text) <= _TOKEN:
        raise ValueError(f"not a token: {text!r}")
    return text


def _value(text: str) -> str:
    text = text.strip(" \t")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        inner = text[1:-1]
        out = []
        escaped = False
        for ch in inner:
            if escaped or ch != "\\":
                out.append(ch)
                escaped = False
            else:
                escaped = True
        return _token("".join(out))  # RFC 6455 §9.1: a quoted value must be a token too
    return _token(text)


def parse_extensions(values: Iterable[bytes]) -> list[Offer]:
    """Every offer of every ``Sec-WebSocket-Extensions`` header value, in order: the name and
    its parameters (a parameter without value has None); ``ValueError`` if malformed."""
    offers: list[Offer] = []
    for raw in values:
        text = raw.decode("latin-1")
        for item in _split(text, ","):
            if not item.strip(" \t"):
                continue  # RFC 9110 list syntax: empty elements are allowed and ignored
            pieces = _split(item, ";")
            name = _token(pieces[0]).lower()
            params: list[tuple[str, str | None]] = []
            for piece in pieces[1:]:
                key, eq, value = piece.partition("=")
                params.append((_token(key).lower(), _value(value) if eq else None))
            offers.append((name, params))
    return offers


def _bits(value: str | None) -> int | None:
    """A window-bits value: 8 to 15 in decimal without leading zeros, else None."""
    if value is None or not value.isdigit() or value.startswith("0"):
        return None
    bits = int(value)
    return bits if 8 <= bits <= 15 else None


def _accept(params: list[tuple[str, str | None]]) -> DeflateParams | None:
    """The configuration answering one offer, or None to decline it (RFC 7692 §5.1, §7.1)."""
    seen: set[str] = set()
    flags = {"server_no_context_takeover": False, "client_no_context_takeover": False}
    server_bits: int | None = None
    client_bits: int | None = None
    for key, value in params:
        if key not in _PARAMS or key in seen:
            return None
        seen.add(key)
        if key in flags:
            if value is not None:
                return None
            flags[key] = True
        elif key == "server_max_window_bits":
            server_bits = _bits(value)
            if server_bits is None or server_bits < _MIN_SERVER_BITS:
                return None
        elif value is not None:  # client_max_window_bits=N
            client_bits = _bits(value)
            if client_bits is None:
                return None
    return DeflateParams(
        flags["server_no_context_takeover"],
        flags["client_no_context_takeover"],
        server_bits,
        client_bits,
    )


def negotiate(values: Iterable[bytes]) -> DeflateParams | None:
    """The first permessage-deflate offer among the header ``values`` that can be honoured,
    or None (no offer, or none acceptable, or a header that does not parse)."""
    try:
        offers = parse_extensions(values)
    except ValueError:
        return None
    for name, params in offers:
        if name == EXTENSION:
            accepted = _accept(params)
            if accepted is not None:
                return accepted
    return None


class Deflater:
    """Compresses the server's messages; the compressor is made at the first message."""

    __slots__ = ("_flush", "_obj", "_wbits")

    def __init__(self, params: DeflateParams) -> None:
        self._wbits = -(params.server_max_window_bits or 15)
        # without context takeover each message must stand alone: a full flush forgets the
        # window (no back-reference crosses it) without a new compressor per message
        self._flush = zlib.Z_FULL_FLUSH if params.server_no_context_takeover else zlib.Z_SYNC_FLUSH
        self._obj: zlib._Compress | None = None

    def compress(self, data: bytes) -> bytes:
        """The payload of the compressed message carrying ``data`` (RFC 7692 §7.2.1)."""
        obj = self._obj
        if obj is None:
            obj = self._obj = zlib.compressobj(wbits=self._wbits)
        out = obj.compress(data) + obj.flush(self._flush)
        return out[:-4] if out.endswith(_TAIL) else out


class Inflater:
    """Decompresses the client's messages fragment by fragment, within a size limit."""

    __slots__ = ("_obj", "_reset")

    def __init__(self, params: DeflateParams) -> None:
        self._reset = params.client_no_context_takeover
        self._obj: zlib._Decompress | None = None

    def feed(self, data: bytes, final: bool, room: int) -> bytes:
        """The bytes ``data`` inflates to (``final``: the message's last fragment); more than
        ``room`` bytes raises :class:`DeflateError` 1009, bad data 1007."""
        obj = self._obj
        if obj is None:
            obj = self._obj = zlib.decompressobj(-15)
        try:
            out = obj.decompress(data, room + 1) if data else b""
            self._check(out, room)
            if final:  # room + 1 - len(out) >= 1 here: never 0, which would mean no limit
                out += obj.decompress(_TAIL, room + 1 - len(out))
                self._check(out, room)
        except zlib.error as exc:
            self._obj = None
            raise DeflateError(f"compressed message does not inflate: {exc}", 1007) from None
        if final and (self._reset or obj.eof):  # a final deflate block ends the stream too
            self._obj = None
        return out

    def _check(self, out: bytes, room: int) -> None:
        obj = self._obj
        if len(out) > room or (obj is not None and obj.unconsumed_tail):
            self._obj = None
            raise DeflateError("message larger than the limit once inflated", 1009)
