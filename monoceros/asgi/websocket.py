"""One WebSocket connection as ASGI ``websocket.*`` messages, over HTTP/1.1 or a uwsgi tunnel.

The handshake answer (``101``) is written when the application accepts; before that, closing
denies the upgrade with ``403``, and frames the client already sent wait unread (nothing may go
out before the answer). Frames are parsed by the sans-IO
:class:`~monoceros.protocols.websocket.FrameParser`: pings are answered here, a Close is echoed,
violations close with their code (1002, 1007, 1009 for a message over ``ws_max_message_size`` or
in too many fragments) — after the application has taken the messages that arrived before the
bad frame. Received messages wait in a queue; past :data:`QUEUE_HIGH` bytes reading
pauses until the application catches up. While the client does not take what is written (the
connection's writes are paused) reading pauses too, and only the latest ping is answered, once
writes resume (RFC 6455 §5.5.3). permessage-deflate (RFC 7692) is negotiated at the accept when
``ws_per_message_deflate`` is on; a connection idle for ``ws_ping_interval`` is pinged by the
worker's periodic sweep (the connection's deadline), and closed with 1011 when nothing answers
within ``ws_ping_timeout``. The session knows its connection only as a :class:`~.channel.Channel`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from ..access_log import log_safe
from ..protocols.permessage_deflate import Deflater, Inflater, negotiate
from ..protocols.response import error_response
from ..protocols.websocket import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    PING,
    TIMEOUT,
    FrameParser,
    Keepalive,
    WebSocketError,
    accept_key,
    close_payload,
    encode_frame,
    frame_head,
    parse_close,
)
from .access import access_environ, access_headers
from .flow import wake
from .response import build_head

if TYPE_CHECKING:
    from .channel import Channel
    from .context import ServerContext

__all__ = ["QUEUE_HIGH", "WebSocketSession"]

QUEUE_HIGH: Final = 1024 * 1024
"""Received bytes waiting for the application at which reading pauses."""

_CLOSE_WAIT: Final = 5.0

_LARGE: Final = 64 * 1024
"""Messages from this size on are written after their frame header, not copied behind it."""

_FAIL_GRACE: Final = 1.0
"""Seconds the application gets to take the messages that came before a bad frame (and to
answer them) before the connection is failed anyway."""


class WebSocketSession:
    """ASGI ``receive``/``send`` of one WebSocket, owned by its connection protocol."""

    def __init__(self, conn: Channel, scope: dict[str, Any], uwsgi: bool) -> None:
        self.conn = conn
        self.ctx: ServerContext = conn.ctx
        self.scope = scope
        self.uwsgi = uwsgi
        self.parser = FrameParser(self.ctx.ws_max_message_size)
        self.queue: deque[dict[str, Any]] = deque()
        self.queued = 0
        self.accepted = False
        self.close_sent = False
        self.closed = False
        self._early: bytearray | None = bytearray()
        """Bytes from the client before the application accepted (None once it did)."""
        self._pong: bytes | None = None
        """The payload of the latest ping not answered yet (writes were paused)."""
        self._waiter: asyncio.Future[None] | None = None
        self._start = self.ctx.loop.time() if self.ctx.access_log else 0.0
        self._clock = self.ctx.loop.time
        self.last_seen = 0.0
        """When bytes last came from the client (the keepalive's idle clock)."""
        self._keepalive: Keepalive | None = None
        self._deflater: Deflater | None = None
        self._failing: WebSocketError | None = None
        """A violation waiting for the application to take the messages before it."""

    # ------------------------------------------------------------------ from the protocol

    def start(self, initial: bytes) -> None:
        """Check the handshake, then run the application (``initial``: bytes already read)."""
        key = version = None
        for name, value in self.scope["headers"]:
            if name == b"sec-websocket-key":
                key = value
            elif name == b"sec-websocket-version":
                version = value.strip()
        if not key or version != b"13":
            reason = (
                "WebSocket upgrade without Sec-WebSocket-Key"
                if not key
                else ("unsupported Sec-WebSocket-Version (13 is served)")
            )
            self.ctx.log.info(
                "Invalid WebSocket handshake from %s: %s", self.conn.peer_label(), reason
            )
            self._refuse(400, reason)
            self.closed = True
            return
        self._key = key
        self.queue.append({"type": "websocket.connect"})
        if initial:
            self.data_received(initial)
        self.ctx.loop.create_task(self.run())

    def data_received(self, data: bytes) -> None:
        """Frames from the client (held until the application accepted)."""
        if self.closed or self._failing is not None:
            return
        early = self._early
        if early is not None:  # nothing but the handshake answer may go out first
            if not self.close_sent:  # (after a refusal they are never read)
                early += data
                if len(early) > QUEUE_HIGH:
                    self.conn.pause_reading()
            return
        self.last_seen = self._clock()
        error = None
        try:
            self.parser.receive_data(data)
        except WebSocketError as exc:
            error = exc  # the messages before the bad frame are still delivered
        if self._take_messages() and error is not None:
            self._violation_after_messages(error)

    def _take_messages(self) -> bool:
        """Act on the parsed messages and control frames; False once the connection closed."""
        conn = self.conn
        while (msg := self.parser.next_message()) is not None:
            op = msg.opcode
            if op == OP_TEXT:
                text = msg.text
                assert text is not None
                # counted in characters, as receive() takes it off: bytes would never balance
                self._put({"type": "websocket.receive", "text": text}, len(text))
            elif op == OP_BINARY:
                self._put({"type": "websocket.receive", "bytes": msg.data}, len(msg.data))
            elif op == OP_PING:
                if self.close_sent:
                    pass
                elif conn.write_paused:  # the client is not reading: answer its latest ping only
                    self._pong = msg.data
                else:
                    self._write(encode_frame(OP_PONG, msg.data))
            elif op == OP_CLOSE:
                try:
                    code, reason = parse_close(msg.data)
                except WebSocketError as exc:
                    self._fail(exc.code)
                    return False
                if not self.close_sent:
                    self._send_close(None if code == 1005 else code)
                self._disconnect(code, reason)
                self.conn.close()
                return False
        if self.queued > QUEUE_HIGH or conn.write_paused:
            conn.pause_reading()
        return True

    def _violation_after_messages(self, exc: WebSocketError) -> None:
        """Fail now, or once the application has taken the messages still queued (it may
        answer them first); no more is read meanwhile."""
        if not self.queue:
            self._violation(exc)
            return
        self._failing = exc
        conn = self.conn
        conn.pause_reading()
        conn.deadline = self._clock() + _FAIL_GRACE

    def _violation(self, exc: WebSocketError) -> None:
        """The client broke the protocol or a limit: one log line, then close with the code."""
        # a limit (1009) is the server's policy, worth seeing at INFO; a broken frame is not
        log = self.ctx.log.info if exc.code == 1009 else self.ctx.log.debug
        log("WebSocket from %s closed with %d: %s", self.conn.peer_label(), exc.code, exc.reason)
        self._fail(exc.code)

    def writable(self) -> None:
        """Writes are accepted again: answer the latest ping held back, read again."""
        pong, self._pong = self._pong, None
        if pong is not None and not self.close_sent:
            self._write(encode_frame(OP_PONG, pong))
        self._resume()

    def _resume(self) -> None:
        """Read again unless the application is behind or the client is not reading."""
        conn = self.conn
        if self.queued < QUEUE_HIGH // 4 and not conn.write_paused and self._early is None:
            conn.resume_reading()

    def eof_received(self) -> bool | None:
        """The peer closed without a Close frame."""
        self._disconnect(1006, "")
        return None

    def connection_lost(self) -> None:
        """The connection is gone."""
        self._disconnect(1006, "")

    def on_deadline(self) -> None:
        """The connection's deadline passed: our Close went unanswered, the application did not
        take the messages before a bad frame in time, or the keepalive is due."""
        conn = self.conn
        if self.close_sent or self.closed:
            conn.close()
            return
        failing = self._failing
        if failing is not None:
            self._failing = None
            self._violation(failing)
            return
        keepalive = self._keepalive
        if keepalive is None:
            return
        now = self._clock()
        if conn.read_paused or conn.write_paused:
            self.last_seen = now  # what the client sends is not being read: not its silence
        action, due = keepalive.check(now, self.last_seen)
        if action is PING:
            self._write(encode_frame(OP_PING))
        elif action is TIMEOUT:
            self.ctx.log.info(
                "WebSocket from %s closed with 1011: no answer to a ping within "
                "ws_ping_timeout (%gs)",
                conn.peer_label(),
                keepalive.timeout,
            )
            self._send_close(1011, "keepalive ping timeout")
            self._disconnect(1011, "keepalive ping timeout")
            conn.close()
            return
        conn.deadline = due

    def shutdown(self) -> None:
        """Graceful stop of the worker: going away (1001)."""
        if self.accepted and not self.close_sent and not self.closed:
            self._send_close(1001)
            self.conn.deadline = self.ctx.loop.time() + _CLOSE_WAIT

    def _write(self, data: bytes) -> None:
        conn = self.conn
        if not conn.is_closing():
            pong = self._pong
            if pong is not None:  # a held-back pong goes before what is written after its ping
                self._pong = None
                conn.write(encode_frame(OP_PONG, pong))
            conn.write(data)

    def _send_close(self, code: int | None, reason: str = "") -> None:
        """Send this side's Close frame (``close_sent``: once)."""
        self.close_sent = True
        self._write(encode_frame(OP_CLOSE, close_payload(code, reason)))

    # ------------------------------------------------------------------ queue

    def _put(self, message: dict[str, Any], size: int) -> None:
        self.queue.append(message)
        self.queued += size
        self._wake()

    def _disconnect(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.queue.append({"type": "websocket.disconnect", "code": code, "reason": reason})
            self._wake()

    def _fail(self, code: int) -> None:
        if not self.close_sent and self.accepted:
            self._send_close(code)
        self._disconnect(code, "")
        self.conn.close()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        wake(waiter)

    # ------------------------------------------------------------------ the application

    async def run(self) -> None:
        """Run the application for this WebSocket and close what it leaves open."""
        try:
            await self.ctx.app(self.scope, self.receive, self.send)
        except Exception:
            self.ctx.log.exception(
                "Exception in ASGI application (WebSocket %s)", log_safe(self.scope.get("path", ""))
            )
            if not self.accepted and not self.close_sent:
                self.close_sent = True
                self._refuse(500)
                return
            if not self.close_sent:
                self._send_close(1011)
            self.conn.close()
            return
        if not self.close_sent:
            self.close_sent = True
            if not self.accepted:
                self._refuse(403)
                return
            self._send_close(1000)
        if self.closed:
            self.conn.close()
        else:
            self.conn.deadline = self.ctx.loop.time() + _CLOSE_WAIT

    async def receive(self) -> dict[str, Any]:
        """ASGI ``receive``: connect, then messages, then disconnect."""
        queue = self.queue
        while not queue:
            failing = self._failing
            if failing is not None:  # the messages before the bad frame were taken
                self._failing = None
                self._violation(failing)
                continue
            if self.closed:
                return {"type": "websocket.disconnect", "code": 1006, "reason": ""}
            self._waiter = self.ctx.loop.create_future()
            await self._waiter
        message = queue.popleft()
        if message["type"] == "websocket.receive":
            data = message.get("text") or message.get("bytes") or b""
            self.queued -= len(data)
            self._resume()
        return message

    async def send(self, message: dict[str, Any]) -> None:
        """ASGI ``send``: accept, send, close."""
        kind = message["type"]
        if kind == "websocket.send":
            if not self.accepted:
                raise RuntimeError("websocket.send before websocket.accept")
            if self.close_sent or self.closed:
                return
            text = message.get("text")
            if text is not None:
                op, data = OP_TEXT, text.encode("utf-8")
            else:
                op, data = OP_BINARY, bytes(message.get("bytes") or b"")
            deflater = self._deflater
            rsv1 = deflater is not None
            if deflater is not None:
                data = deflater.compress(data)
            if len(data) < _LARGE:
                self._write(encode_frame(op, data, rsv1=rsv1))
            else:
                self._write(frame_head(op, len(data), rsv1=rsv1))
                self._write(data)
            conn = self.conn
            if conn.write_paused:
                await conn.drain()
            return
        if kind == "websocket.accept":
            if self.accepted or self.close_sent:
                raise RuntimeError("websocket.accept sent twice or after close")
            self.accepted = True
            head, headers = self._handshake(message)
            if not self.closed:
                self._write(head)
            self._log_handshake(101, headers)
            early, self._early = self._early, None
            if self.ctx.ws_ping_interval and not self.closed:
                self._keepalive = Keepalive(self.ctx.ws_ping_interval, self.ctx.ws_ping_timeout)
                self.last_seen = self._clock()
                self.conn.deadline = self.last_seen + self.ctx.ws_ping_interval
            if early:  # frames that came with or after the handshake: their turn now
                self.data_received(bytes(early))
            self._resume()
            return
        if kind == "websocket.close":
            if self.close_sent:
                return
            self.close_sent = True
            if not self.accepted:
                self._refuse(403)
                return
            if not self.closed:
                self._send_close(message.get("code") or 1000, message.get("reason") or "")
                self.conn.deadline = self.ctx.loop.time() + _CLOSE_WAIT
            return
        raise RuntimeError(f"unexpected ASGI message {kind!r} on a WebSocket")

    def _refuse(self, status: int, reason: str = "") -> None:
        """Answer the handshake with an HTTP error instead of accepting it, log it, close
        (the frames the client sent meanwhile are dropped unread)."""
        self._early = bytearray()
        self._write(error_response(status, reason))
        self._log_handshake(status)
        self.conn.close()

    def _log_handshake(self, status: int, headers: Any = ()) -> None:
        """The access log line of the handshake: 101 once accepted, else how it was refused
        (the time is until that answer; the WebSocket itself may live on for hours)."""
        ctx = self.ctx
        if ctx.access_log:
            ctx.log.access(
                access_environ(self.scope),
                status,
                access_headers(headers),
                None,
                ctx.loop.time() - self._start,
                self.uwsgi,
            )

    def _handshake(self, message: dict[str, Any]) -> tuple[bytes, list[Any]]:
        """The 101 answer to send, and its headers (for the access log)."""
        headers: list[Any] = [
            (b"sec-websocket-accept", accept_key(self._key).encode("ascii")),
        ]
        sub = message.get("subprotocol")
        if sub:
            headers.append((b"sec-websocket-protocol", sub.encode("latin-1")))
        extra = list(message.get("headers") or ())
        if self.ctx.ws_per_message_deflate and not any(
            name.lower() == b"sec-websocket-extensions" for name, _ in extra
        ):
            offers = [v for n, v in self.scope["headers"] if n == b"sec-websocket-extensions"]
            params = negotiate(offers) if offers else None
            if params is not None:
                headers.append((b"sec-websocket-extensions", params.response()))
                self.parser.inflater = Inflater(params)
                self._deflater = Deflater(params)
        headers += extra
        head, _ = build_head(
            101, headers, first_body=None, head_only=True, keep_alive=True, http11=True, uwsgi=True
        )
        # the hop-by-hop Upgrade/Connection pair belongs to this response: put it back
        return head[:-2] + b"upgrade: websocket\r\nconnection: Upgrade\r\n\r\n", headers
