"""Sans-IO WebSocket (RFC 6455) for the server side: the handshake key, frames in, frames out.

:class:`FrameParser` takes the client's bytes and returns whole messages (fragments joined, text
checked to be UTF-8 fragment by fragment, control frames handed out between fragments,
compressed messages inflated when permessage-deflate was negotiated, see
:mod:`.permessage_deflate`); :func:`encode_frame` builds the server's unmasked frames.
Unmasking is a few C-level passes over the data, never a Python loop per byte: a small payload
is XORed as one big integer; a large one by the C ``apply_mask`` of the ``websockets`` package
where it is installed (at memory speed), else in place in the receive buffer, each of the four
key bytes applied to every fourth byte with ``bytes.translate``. Protocol violations raise
:class:`WebSocketError` carrying the close code to send; the messages parsed before the
violation stay available.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import importlib
import struct
from collections import deque
from collections.abc import Callable
from typing import Final

from .permessage_deflate import DeflateError, Inflater


def _c_apply_mask() -> Callable[[bytes | bytearray | memoryview, bytes], bytes] | None:
    """The C ``apply_mask`` of the ``websockets`` package (``uvicorn[standard]`` installs it),
    used where it exists as httptools and uvloop are; None without it."""
    try:
        module = importlib.import_module("websockets.speedups")
    except ImportError:
        return None
    function: Callable[[bytes | bytearray | memoryview, bytes], bytes] = module.apply_mask
    return function


_apply_mask = _c_apply_mask()

__all__ = [
    "CLOSE_CODES_RESERVED",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "MAX_FRAGMENTS",
    "PING",
    "TIMEOUT",
    "FrameParser",
    "Keepalive",
    "Message",
    "WebSocketError",
    "accept_key",
    "close_payload",
    "encode_frame",
    "frame_head",
    "parse_close",
    "unmask",
    "unmask_in_place",
]

OP_CONT: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

MAX_FRAGMENTS: Final = 1 << 17
"""Frames one message may come in: 131,072, twice what Autobahn sends at most (4 MiB in 64-byte
fragments is 65,537 frames: its fragmenter ends a message of whole fragments with an empty one);
more closes with 1009: a zero-length continuation frame costs the client 6 bytes and no limit."""

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_DATA_OPS: Final = frozenset((OP_TEXT, OP_BINARY))
_CONTROL_OPS: Final = frozenset((OP_CLOSE, OP_PING, OP_PONG))
CLOSE_CODES_RESERVED: Final = frozenset((1004, 1005, 1006, 1015))
"""Close codes an endpoint must never put on the wire."""

_U16: Final = struct.Struct("!H")
_U64: Final = struct.Struct("!Q")


class WebSocketError(Exception):
    """The peer broke RFC 6455; ``code`` is the close code to answer with (1002, 1007, 1009)."""

    def __init__(self, reason: str, code: int = 1002) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class Message:
    """One complete message or control frame: ``opcode``, its payload ``data``, and ``text``
    (the payload decoded) if it is a text message.

    A text message may be made from its ``text`` alone (``data`` None): its bytes are then
    encoded again only if someone asks for ``data``, so a large text message is not held twice.
    Messages are equal when their opcode and payload are.
    """

    __slots__ = ("_data", "opcode", "text")

    def __init__(self, opcode: int, data: bytes | None, text: str | None = None) -> None:
        if data is None and text is None:
            raise ValueError("a message needs its data or its text")
        self.opcode = opcode
        self._data = data
        self.text = text

    @property
    def data(self) -> bytes:
        """The payload (of a text message: its UTF-8)."""
        data = self._data
        if data is None:
            assert self.text is not None
            data = self._data = self.text.encode("utf-8")
        return data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self.opcode == other.opcode and self.data == other.data

    def __hash__(self) -> int:
        return hash((self.opcode, self.data))

    def __repr__(self) -> str:
        return f"Message(opcode={self.opcode}, data={self.data[:40]!r})"


def accept_key(key: bytes | str) -> str:
    """The ``Sec-WebSocket-Accept`` value answering a ``Sec-WebSocket-Key``."""
    raw = key.encode("latin-1") if isinstance(key, str) else key
    return base64.b64encode(hashlib.sha1(raw.strip() + _GUID).digest()).decode("ascii")


_SMALL: Final = 1024
"""Payloads up to this size are unmasked as one big integer (less set-up than four passes)."""

_XOR_TABLES: list[bytes | None] = [None] * 256


def _xor_table(k: int) -> bytes:
    """The ``bytes.translate`` table that XORs every byte with ``k`` (made when first used)."""
    table = _XOR_TABLES[k]
    if table is None:
        table = _XOR_TABLES[k] = bytes(i ^ k for i in range(256))
    return table


def unmask_in_place(buf: bytearray, start: int, end: int, key: bytes) -> None:
    """XOR ``buf[start:end]`` with the 4-byte ``key`` repeated, in place: each key byte is
    applied to every fourth byte by a strided slice and ``bytes.translate`` (three C loops over
    a quarter of the data each, about 1.3 ns a byte; the big-integer XOR takes three times
    that on large payloads)."""
    for i in range(4):
        if start + i < end:
            buf[start + i : end : 4] = buf[start + i : end : 4].translate(_xor_table(key[i]))


def unmask(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` repeated (masking and unmasking are the same)."""
    n = len(data)
    if not n:
        return b""
    if n > _SMALL:
        if _apply_mask is not None:
            return _apply_mask(data, key)
        buf = bytearray(data)
        unmask_in_place(buf, 0, n, key)
        return bytes(buf)
    reps = (n + 3) >> 2
    value = int.from_bytes(data, "little") ^ int.from_bytes((key * reps)[:n], "little")
    return value.to_bytes(n, "little")


def encode_frame(
    opcode: int,
    payload: bytes = b"",
    fin: bool = True,
    mask: bytes | None = None,
    rsv1: bool = False,
) -> bytes:
    """One frame; unmasked (the server's) unless a 4-byte ``mask`` is given (a client's);
    ``rsv1`` marks the first frame of a compressed message (permessage-deflate)."""
    head = frame_head(opcode, len(payload), fin, rsv1, mask is not None)
    if mask is not None:
        return head + mask + unmask(payload, mask)
    return head + payload


def frame_head(
    opcode: int, length: int, fin: bool = True, rsv1: bool = False, masked: bool = False
) -> bytes:
    """The header of a frame carrying ``length`` bytes (the mask key not included), for a
    payload written on its own: a large message is not copied to be framed."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    mbit = 0x80 if masked else 0
    if length < 126:
        return bytes((first, mbit | length))
    if length < 65536:
        return bytes((first, mbit | 126)) + _U16.pack(length)
    return bytes((first, mbit | 127)) + _U64.pack(length)


def close_payload(code: int | None, reason: str = "") -> bytes:
    """The payload of a Close frame (empty when ``code`` is None); the reason is cut to fit."""
    if code is None:
        return b""
    # cut to 123 bytes; a character cut in two loses its partial bytes
    raw = reason.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
    return _U16.pack(code) + raw


def parse_close(payload: bytes) -> tuple[int, str]:
    """``(code, reason)`` of a received Close frame; 1005 when it carries no code."""
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise WebSocketError("close frame with a 1-byte payload")
    code = _U16.unpack_from(payload)[0]
    if code < 1000 or code in CLOSE_CODES_RESERVED or 1016 <= code < 3000 or code >= 5000:
        raise WebSocketError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise WebSocketError("close reason is not UTF-8", 1007) from None
    return code, reason


class FrameParser:
    """Client frames in (:meth:`receive_data`), messages out (:meth:`next_message`).

    Client frames must be masked; reserved opcodes and bits are refused (RSV1 is allowed on the
    first frame of a data message once :attr:`inflater` is set: permessage-deflate was
    negotiated); control frames must be final and at most 125 bytes; a message larger than
    ``max_message_size`` (once inflated) or in more than ``max_fragments`` frames raises code
    1009; a text message that is not UTF-8 raises 1007 at the fragment that breaks it. A
    fragmented message is joined in one buffer as it arrives: its memory is its payload,
    however small the fragments.
    """

    __slots__ = (
        "_buf",
        "_checked",
        "_compressed",
        "_decoder",
        "_frag",
        "_frag_op",
        "_frames",
        "_max",
        "_max_frames",
        "_messages",
        "inflater",
    )

    def __init__(
        self, max_message_size: int = 16 * 1024 * 1024, max_fragments: int = MAX_FRAGMENTS
    ) -> None:
        self._buf = bytearray()
        self._max = max_message_size
        self._max_frames = max_fragments
        self._frag_op = 0
        self._frag = bytearray()
        self._frames = 0
        self._messages: deque[Message] = deque()
        self._compressed = False
        self._checked = 0
        """Bytes of the incomplete text frame at the buffer's head already unmasked (in place)
        and decoded."""
        self._decoder: codecs.IncrementalDecoder | None = None
        """Checks the text message being received, piece by piece (its output is dropped:
        the whole message is decoded once at its end)."""
        self.inflater: Inflater | None = None
        """Set once permessage-deflate is negotiated: RSV1 marks a compressed message."""

    @property
    def buffered(self) -> int:
        """Bytes received and not yet turned into a message."""
        return len(self._buf) + len(self._frag)

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the client; raise :class:`WebSocketError` on a violation."""
        self._buf += data
        while self._parse_one():
            pass

    def next_message(self) -> Message | None:
        """The next complete message or control frame, or None."""
        return self._messages.popleft() if self._messages else None

    def _parse_one(self) -> bool:
        buf = self._buf
        n = len(buf)
        if n < 2:
            return False
        b0, b1 = buf[0], buf[1]
        rsv = b0 & 0x70
        if rsv and (rsv != 0x40 or self.inflater is None):
            raise WebSocketError(
                "reserved bits set without a negotiated extension"
                if self.inflater is None
                else "RSV2 or RSV3 set (only permessage-deflate's RSV1 is negotiated)"
            )
        if not b1 & 0x80:
            raise WebSocketError("client frame is not masked")
        opcode = b0 & 0x0F
        fin = bool(b0 & 0x80)
        length = b1 & 0x7F
        pos = 2
        if length >= 126:  # the length follows: 2 bytes for 126, 8 bytes for 127
            extended = _U16 if length == 126 else _U64
            pos += extended.size
            if n < pos:
                return False
            length = extended.unpack_from(buf, 2)[0]
            if length >> 63:
                raise WebSocketError("frame length with the most significant bit set")
        self._check_frame(opcode, fin, length, bool(rsv))
        start = pos + 4
        end = start + length
        if n < end:
            if n > start + self._checked and self._plain_text(opcode, rsv):
                self._check_partial(buf, start, n, fin)
            return False
        key = bytes(buf[pos:start])
        done = self._checked
        if done:  # the start of this text frame was unmasked and checked as it came
            self._checked = 0
            _unmask_range(buf, start + done, end, _rotate(key, done))
            with memoryview(buf) as view, view[start:end] as text_view:  # no copy
                self._text_frame(fin, text_view, done)
            del buf[:end]
            return True
        if length > _SMALL and _apply_mask is not None:
            payload = _apply_mask(memoryview(buf)[start:end], key)
        elif length > _SMALL:  # unmasked where it lies: no copy but the message's own
            unmask_in_place(buf, start, end, key)
            payload = bytes(memoryview(buf)[start:end])
        else:
            payload = unmask(memoryview(buf)[start:end], key)
        del buf[:end]
        self._frame(opcode, fin, payload, bool(rsv))
        return True

    def _plain_text(self, opcode: int, rsv: int) -> bool:
        """Whether a frame carries uncompressed text (checked as it arrives)."""
        if opcode == OP_CONT:
            return self._frag_op == OP_TEXT and not self._compressed
        return opcode == OP_TEXT and not rsv

    def _check_partial(self, buf: bytearray, start: int, n: int, fin: bool) -> None:
        """Unmask and decode what arrived of an incomplete text frame, so that invalid UTF-8
        fails as soon as it is here, not when the frame is whole (Autobahn 6.4.3/6.4.4)."""
        done = self._checked
        a = start + done
        _unmask_range(buf, a, n, _rotate(bytes(buf[start - 4 : start]), done))
        self._checked = n - start
        self._decode(memoryview(buf)[a:n], False, fin)

    def _check_frame(self, opcode: int, fin: bool, length: int, rsv1: bool) -> None:
        if opcode in _CONTROL_OPS:
            if rsv1:
                raise WebSocketError("RSV1 set on a control frame")
            if not fin:
                raise WebSocketError("fragmented control frame")
            if length > 125:
                raise WebSocketError("control frame payload longer than 125 bytes")
            return
        if opcode == OP_CONT:
            if not self._frag_op:
                raise WebSocketError("continuation frame without a message to continue")
            if rsv1:
                raise WebSocketError("RSV1 set on a continuation frame")
            if self._frames >= self._max_frames:
                raise WebSocketError(
                    f"message in more than the limit of {self._max_frames} fragments", 1009
                )
        elif opcode in _DATA_OPS:
            if self._frag_op:
                raise WebSocketError("new data frame inside a fragmented message")
        else:
            raise WebSocketError(f"reserved opcode {opcode:#x}")
        limit = self._max
        if rsv1 or (opcode == OP_CONT and self._compressed):
            limit += (limit >> 7) + 64  # deflate may grow incompressible data a little
        if len(self._frag) + length > limit:
            raise WebSocketError(f"message larger than the limit of {self._max} bytes", 1009)

    def _decode(self, data: bytes | memoryview, final: bool, fin: bool) -> None:
        """Check that the next piece of the text message being received is UTF-8 (so far)."""
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = _utf8_decoder()
        try:
            decoder.decode(data, final)
        except UnicodeDecodeError:
            where = "" if fin and not self._frames else f" (in fragment {self._frames + 1})"
            raise WebSocketError(f"text message is not valid UTF-8{where}", 1007) from None

    def _frame(self, opcode: int, fin: bool, payload: bytes, rsv1: bool) -> None:
        """One whole frame, unmasked (a text frame not checked as it came)."""
        if opcode in _CONTROL_OPS:
            self._messages.append(Message(opcode, payload))
            return
        if opcode != OP_CONT:
            self._frag_op = opcode
            self._compressed = rsv1
        if self._compressed:
            payload = self._inflate(payload, fin)
        op = self._frag_op
        if fin and not self._frames:  # a message in one frame
            self._frag_op = 0
            text = None
            if op == OP_TEXT:
                try:
                    text = payload.decode("utf-8")
                except UnicodeDecodeError:
                    raise WebSocketError("text message is not valid UTF-8", 1007) from None
            self._messages.append(Message(op, payload, text))
            return
        if op == OP_TEXT:  # checked fragment by fragment: invalid text fails where it is
            self._decode(payload, fin, fin)
        self._fragment(op, fin, payload)

    def _text_frame(self, fin: bool, payload: memoryview, checked: int) -> None:
        """A whole uncompressed text frame (or continuation of a text message) whose first
        ``checked`` bytes were checked as they came; ``payload`` is a view of the buffer."""
        if self._frag_op == 0:  # its first frame (a continuation has its opcode already)
            self._frag_op = OP_TEXT
            self._compressed = False
        self._decode(payload[checked:], fin, fin)
        if fin and not self._frames:  # a message in one frame: decoded once, not copied
            self._frag_op = 0
            self._decoder = None
            self._messages.append(Message(OP_TEXT, None, str(payload, "utf-8")))
            return
        self._fragment(OP_TEXT, fin, payload)

    def _fragment(self, op: int, fin: bool, payload: bytes | memoryview) -> None:
        """Add a data frame of a message in several to the message; the last one ends it."""
        self._frag += payload
        if not fin:
            self._frames += 1
            return
        self._frag_op = 0
        self._frames = 0
        if op == OP_TEXT:  # checked as it came: decoded once, and held once
            self._decoder = None
            message = Message(op, None, self._frag.decode("utf-8"))
        else:
            message = Message(op, bytes(self._frag))
        self._frag = bytearray()
        self._messages.append(message)

    def _inflate(self, payload: bytes, fin: bool) -> bytes:
        inflater = self.inflater
        assert inflater is not None  # RSV1 is refused without it
        try:
            return inflater.feed(payload, fin, self._max - len(self._frag))
        except DeflateError as exc:
            if exc.code == 1009:
                raise WebSocketError(
                    f"message larger than the limit of {self._max} bytes once inflated", 1009
                ) from None
            raise WebSocketError(exc.reason, exc.code) from None


_utf8_decoder = codecs.getincrementaldecoder("utf-8")


def _rotate(key: bytes, offset: int) -> bytes:
    """The mask key as it applies from payload byte ``offset`` on."""
    shift = offset & 3
    return key[shift:] + key[:shift] if shift else key


def _unmask_range(buf: bytearray, a: int, b: int, key: bytes) -> None:
    """Unmask ``buf[a:b]`` in place, ``key`` aligned on ``a``."""
    if b - a > _SMALL and _apply_mask is not None:
        buf[a:b] = _apply_mask(memoryview(buf)[a:b], key)
    elif b - a > _SMALL:
        unmask_in_place(buf, a, b, key)
    else:
        buf[a:b] = unmask(memoryview(buf)[a:b], key)


PING: Final = "ping"
"""What :meth:`Keepalive.check` asks for: send a ping now."""
TIMEOUT: Final = "timeout"
"""What :meth:`Keepalive.check` asks for: the peer did not answer the ping, close with 1011."""


class Keepalive:
    """When to ping an idle WebSocket and when to give up on it (uvicorn's ``ws_ping_interval``
    and ``ws_ping_timeout``; a timeout of 0 pings on without ever giving up).

    Only a connection from which nothing arrived for ``interval`` seconds is pinged; anything
    that arrives after a ping (the pong, or any other frame) proves the peer alive. The caller
    passes the time of the last read, so a busy connection costs a timestamp per read and
    nothing else.
    """

    __slots__ = ("interval", "ping_sent", "timeout")

    def __init__(self, interval: float, timeout: float) -> None:
        self.interval = interval
        self.timeout = timeout
        self.ping_sent: float | None = None
        """When the unanswered ping went out (None: none is waiting for an answer)."""

    def check(self, now: float, last_seen: float) -> tuple[str | None, float]:
        """What to do at ``now`` (:data:`PING`, :data:`TIMEOUT` or None), and when to check
        next (0.0 after a timeout)."""
        sent = self.ping_sent
        if sent is not None and last_seen < sent:  # the ping is unanswered
            if self.timeout:
                if now >= sent + self.timeout:
                    return TIMEOUT, 0.0
                return None, sent + self.timeout
            due = sent + self.interval  # no timeout: ping again after each interval
        else:
            self.ping_sent = None
            due = last_seen + self.interval
        if now >= due:
            self.ping_sent = now
            return PING, now + (self.timeout or self.interval)
        return None, due
