"""Sans-IO decoder for an HTTP/1.1 chunked body (RFC 9112 §7.1): framed bytes in, data out."""

from __future__ import annotations

import re
from typing import Final

from .errors import ProtocolError

__all__ = ["DEFAULT_MAX_LINE", "DEFAULT_MAX_TRAILERS", "ChunkedDecoder", "take"]

DEFAULT_MAX_LINE: Final = 4096
"""Longest chunk-size line (size plus extensions plus CRLF) accepted, in bytes."""

DEFAULT_MAX_TRAILERS: Final = 65536
"""Largest trailer section accepted, in bytes (trailers are read and discarded)."""

# chunk-size = 1*HEXDIG; then optional BWS and ";" chunk extensions, which are tolerated unread.
# At most 16 hex digits: int(x, 16) alone would also take "0x", "_", "+" and whitespace.
_SIZE_LINE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n\x00]*)?\r\n")

_SIZE, _DATA, _DATA_CRLF, _TRAILERS, _DONE = range(5)


def take(buf: bytearray, n: int) -> bytes:
    """Remove and return at most ``n`` bytes from the front of ``buf``."""
    if len(buf) <= n:
        data = bytes(buf)
        buf.clear()
    else:
        data = bytes(buf[:n])
        del buf[:n]
    return data


class ChunkedDecoder:
    """Decode one chunked body from the front of a caller-owned ``bytearray``.

    The decoder never owns a socket or a buffer: :meth:`read` consumes framing and data from
    the front of the buffer it is given and leaves any byte after the final CRLF untouched.
    Chunk extensions and trailer fields are tolerated and discarded. Line endings must be CRLF.
    Malformed framing raises ``error`` (a :class:`ProtocolError` subclass chosen by the caller).
    """

    __slots__ = (
        "_error",
        "_max_line",
        "_max_trailers",
        "_remaining",
        "_state",
        "_trailer_bytes",
        "decoded",
    )

    def __init__(
        self,
        *,
        error: type[ProtocolError] = ProtocolError,
        max_line: int = DEFAULT_MAX_LINE,
        max_trailers: int = DEFAULT_MAX_TRAILERS,
    ) -> None:
        self._error = error
        self._max_line = max_line
        self._max_trailers = max_trailers
        self._state = _SIZE
        self._remaining = 0
        self._trailer_bytes = 0
        self.decoded = 0
        """Data bytes handed out so far."""

    @property
    def done(self) -> bool:
        """True once the last chunk and the trailer section have been consumed."""
        return self._state == _DONE

    def describe_position(self) -> str:
        """Say where in the framing the decoder stands (for a 'truncated' reason)."""
        if self._state == _DATA:
            return f"inside a chunk, {self._remaining} data bytes missing"
        if self._state == _DATA_CRLF:
            return "before the CRLF that ends a chunk"
        if self._state == _TRAILERS:
            return "inside the trailer section"
        if self._state == _DONE:
            return "after the end"
        return "before a chunk-size line"

    def read(self, buf: bytearray) -> bytes | None:
        """Consume from the front of ``buf``; return the next non-empty piece of data.

        ``None`` means no data can be produced now: either ``buf`` needs more bytes or the body
        is complete (see :attr:`done`).
        """
        while True:
            state = self._state
            if state == _DATA:
                if not buf:
                    return None
                data = take(buf, self._remaining)
                n = len(data)
                self._remaining -= n
                self.decoded += n
                if not self._remaining:
                    self._state = _DATA_CRLF
                return data
            if state == _SIZE:
                if not self._size_line(buf):
                    return None
            elif state == _DATA_CRLF:
                if len(buf) < 2:
                    if buf and buf[0] != 0x0D:
                        raise self._error(f"chunk data not followed by CRLF: {bytes(buf[:2])!r}")
                    return None
                if buf[0] != 0x0D or buf[1] != 0x0A:
                    raise self._error(f"chunk data not followed by CRLF: {bytes(buf[:2])!r}")
                del buf[:2]
                self._state = _SIZE
            elif state == _TRAILERS:
                if not self._trailer_line(buf):
                    return None
            else:
                return None

    def _size_line(self, buf: bytearray) -> bool:
        """Consume one chunk-size line; False when ``buf`` does not hold all of it yet."""
        end = buf.find(b"\n", 0, self._max_line)
        if end < 0:
            if len(buf) >= self._max_line:
                raise self._error(f"chunk-size line longer than {self._max_line} bytes")
            return False
        m = _SIZE_LINE.fullmatch(buf, 0, end + 1)
        if m is None:
            raise self._error(f"invalid chunk-size line {bytes(buf[: min(end + 1, 40)])!r}")
        size = int(m.group(1), 16)
        del buf[: end + 1]
        if size:
            self._remaining = size
            self._state = _DATA
        else:
            self._state = _TRAILERS
        return True

    def _trailer_line(self, buf: bytearray) -> bool:
        """Consume one trailer line (discarded); False when ``buf`` does not hold all of it yet."""
        room = self._max_trailers - self._trailer_bytes
        end = buf.find(b"\n", 0, room)
        if end < 0:
            if len(buf) >= room:
                raise self._error(f"chunked trailer section larger than {self._max_trailers} bytes")
            return False
        if end == 0 or buf[end - 1] != 0x0D:
            raise self._error("trailer line not terminated by CRLF")
        line = bytes(buf[: end - 1])
        if 0x0D in line or 0x00 in line:  # CR, NUL (ints: see http.decoded_path)
            raise self._error(f"invalid trailer line {line[:40]!r}")
        if line and 0x3A not in line:  # b":"
            raise self._error(f"trailer line without a colon: {line[:40]!r}")
        del buf[: end + 1]
        self._trailer_bytes += end + 1
        if not line:
            self._state = _DONE
        return True
