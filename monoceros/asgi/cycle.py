"""One HTTP request/response cycle: the ASGI ``receive``/``send`` pair over a connection.

The connection (HTTP/1.1 or uWSGI, over a transport or a bare socket) feeds the request body in
with :meth:`feed` and :meth:`end`, and says when the peer went away with :meth:`lost`. The
application pulls the body with ``receive()`` (reading is paused while the buffer is full and
resumed when it empties) and writes the response with ``send()`` (the head goes out with the
first body piece; writes wait for the connection to drain). ``Expect: 100-continue`` is answered
when the application first asks for the body. The cycle knows its connection only as a
:class:`~.channel.Channel`.

With ``request_timeout`` on, a cycle keeps its task, and the worker's periodic sweep
(:meth:`~.context.ServerContext.expire_requests`) cancels one running longer: the client gets
``504`` when no response had started, else the connection closes; the traceback of the
cancelled application is logged with the request. Off, that costs one attribute test per request.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Final

from ..access_log import log_safe
from ..protocols.errors import ProtocolError
from ..protocols.response import LAST_CHUNK, Framing, ResponseError, chunk, error_response
from ..worker_metrics import Recorder
from .access import access_environ, access_headers
from .response import build_head

if TYPE_CHECKING:
    from .channel import Channel

__all__ = ["HttpCycle"]

_DISCONNECT: Final = {"type": "http.disconnect"}
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


class HttpCycle:
    """ASGI ``receive``/``send`` for one request."""

    __slots__ = (
        "_body",
        "_buffered",
        "_end_sent",
        "_framing",
        "_headers",
        "_rec",
        "_start",
        "_status",
        "_task",
        "_timed_out",
        "_told_gone",
        "_waiter",
        "body_done",
        "conn",
        "disconnected",
        "discard",
        "expect_100",
        "head_only",
        "http11",
        "keep_alive",
        "keeps_task",
        "response_complete",
        "response_started",
        "scope",
        "sent",
        "uwsgi",
    )

    def __init__(
        self,
        conn: Channel,
        scope: dict[str, Any],
        *,
        keep_alive: bool,
        expect_100: bool,
        http11: bool,
        uwsgi: bool,
        body_done: bool = False,
    ) -> None:
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_100 = expect_100
        self.head_only = scope["method"] == "HEAD"
        self.http11 = http11
        self.uwsgi = uwsgi
        self.body_done = body_done
        self.disconnected = False
        self.discard = False
        self.response_started = False
        self.response_complete = False
        self.sent = 0
        self._body: list[bytes] = []
        self._buffered = 0
        self._end_sent = False
        self._told_gone = False
        self._waiter: asyncio.Future[None] | None = None
        self._status = 0
        self._headers: Any = ()
        self._framing: Framing | None = None
        self._start = 0.0
        self._rec: Recorder | None = None
        self._task: asyncio.Task[Any] | None = None
        """The task running the application (kept only when ``request_timeout`` is on)."""
        self.keeps_task = False
        self._timed_out = 0.0
        """The ``request_timeout`` it ran past (0: it did not)."""

    # ------------------------------------------------------------------ fed by the protocol

    def feed(self, data: bytes) -> None:
        """A piece of the request body arrived."""
        if self.discard:
            return
        self._body.append(data)
        self._buffered += len(data)
        self.expect_100 = False  # the client sent the body without waiting
        self.conn.buffered(self._buffered)
        self._wake()

    def end(self) -> None:
        """The request body is complete."""
        self.body_done = True
        self._wake()

    def lost(self) -> None:
        """The peer went away: the app's next ``receive()`` says ``http.disconnect``."""
        self.disconnected = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:  # (flow.wake's rule, inline: the compiled cycle calls no Python)
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------------ the application

    # ------------------------------------------------------------------ the application's task
    # (run by :func:`~.request_task.run_request`, a Python coroutine: the worker's timeout
    # report finds a request by its frame, which compiled code does not have)

    def begin(self) -> Any:
        """The request starts: its clock and metrics slot; returns the application to call.
        :attr:`keeps_task` says whether the caller must hand its task to :meth:`keep_task`."""
        ctx = self.conn.ctx
        self._start = start = time.monotonic()
        self._rec = rec = ctx.metrics.take()
        scope = self.scope
        query = scope.get("query_string")
        path = scope.get("raw_path") or b""
        rec.begin(scope["method"], path + b"?" + query if query else path, start)
        self.keeps_task = bool(ctx.request_timeout)
        return ctx.app

    def keep_task(self, task: asyncio.Task[Any] | None) -> None:
        """The task running the application, for ``request_timeout`` to cancel."""
        self._task = task

    def app_raised(self, exc: BaseException) -> None:
        """The application raised ``exc`` (not KeyboardInterrupt or SystemExit): log it as
        what it was, and answer or close as far as the response got."""
        if self._timed_out:
            self._deadline_passed(exc)
        elif isinstance(exc, asyncio.CancelledError) and self.disconnected:
            pass
        elif self._told_gone:  # e.g. Starlette's ClientDisconnect: the client's doing
            self.conn.ctx.log.info(
                "Client %s left during %s; the application then stopped with %s",
                self.conn.peer_label(),
                self._where(),
                f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__,
            )
            if not self.response_complete:
                self._abort()
        else:
            self._app_failed(exc)

    def app_returned(self) -> None:
        """The application returned: make sure a response (or a closed connection) results."""
        if self._timed_out and not self.response_complete:  # it swallowed the cancellation
            self._deadline_passed(None)
        elif not self.response_started:
            if not self.disconnected:
                self.conn.ctx.log.error(
                    "ASGI application returned without sending a response to %s",
                    self._where(),
                )
                self._send_500()
        elif not self.response_complete:
            if not self.disconnected:
                self.conn.ctx.log.error(
                    "ASGI application returned without completing the response to %s",
                    self._where(),
                )
            self._abort()

    def ended(self) -> None:
        """The application's task ends: give back a metrics slot no response took."""
        self._task = None
        rec = self._rec
        if rec is not None:  # no response: the peer left before one started
            self._rec = None
            rec.abandon()
            self.conn.ctx.metrics.give(rec)

    def _where(self) -> str:
        scope = self.scope
        query = scope.get("query_string")
        path = scope.get("path", "")
        return log_safe(
            f"{scope.get('method', '')} {path}?{query.decode('latin-1')}"
            if query
            else (f"{scope.get('method', '')} {path}")
        )

    def describe(self) -> str:
        """The request, for the log line of a timed-out worker."""
        return f"{self._where()} from {self.conn.peer_label()}"

    # ------------------------------------------------------------------ request_timeout

    def overdue(self, started_before: float) -> bool:
        """True while the application runs, if it started before ``started_before``."""
        return (
            self._task is not None
            and not self._timed_out
            and not self.response_complete
            and self._start < started_before
        )

    def time_out(self, seconds: float) -> None:
        """The request ran past ``request_timeout`` (``seconds``): cancel its task; the task
        logs it and answers (:meth:`_deadline_passed`)."""
        task = self._task
        if task is None or task.done() or self._timed_out:
            return
        self._timed_out = seconds
        task.cancel()

    def _deadline_passed(self, exc: BaseException | None) -> None:
        """The cancelled application ended: log it with its traceback, then answer ``504`` if
        no response had started, else close the connection (the response is cut short)."""
        log = self.conn.ctx.log
        message = "Request cancelled after request_timeout (%gs): %s"
        if exc is None:
            log.error(
                message + "; the application caught the cancellation and returned",
                self._timed_out,
                self.describe(),
            )
        else:
            log.exception(message, self._timed_out, self.describe())
        if not self.response_started or self._framing is None:
            self._send_error(504)
        elif not self.response_complete:
            self._abort()

    def _app_failed(self, exc: BaseException) -> None:
        log = self.conn.ctx.log
        if isinstance(exc, ResponseError):
            log.error("Bad response from the ASGI application to %s: %s", self._where(), exc)
        else:
            log.exception("Exception in ASGI application handling %s", self._where())
        if not self.response_started or self._framing is None:
            self._send_500()
        elif not self.response_complete:
            self._abort()

    def _send_500(self) -> None:
        self._send_error(500)

    def _send_error(self, status: int) -> None:
        """Answer ``status`` instead of the application's response, and close after it."""
        self._status = status
        self._headers = ()
        self.response_started = True
        if not self.disconnected and not self.conn.is_closing():
            self.conn.write(error_response(status))
        self.keep_alive = False
        self._finish()

    def _abort(self) -> None:
        """The response was cut short: closing the connection tells the client."""
        self.keep_alive = False
        self.response_complete = True
        self.conn.close()
        self._log_access()

    async def receive(self) -> dict[str, Any]:
        """ASGI ``receive``: the next piece of the body, then ``http.disconnect`` when gone."""
        if self.disconnected or self.response_complete:
            self._told_gone = self.disconnected
            return _DISCONNECT
        if self.expect_100:
            self.expect_100 = False
            if not self.conn.is_closing():
                self.conn.write(_CONTINUE)
        body = self._body
        while not body:
            if self.body_done:
                if not self._end_sent:
                    self._end_sent = True
                    return {"type": "http.request", "body": b"", "more_body": False}
                if not self.disconnected and not self.response_complete:
                    self.conn.watch_peer()
                while not self.disconnected and not self.response_complete:
                    await self._wait()
                self._told_gone = self.disconnected
                return _DISCONNECT
            if self.disconnected:
                self._told_gone = True
                return _DISCONNECT
            self.conn.resume_reading()  # never wait on a paused reader
            await self._wait()
        data = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        self._buffered = 0
        self.conn.resume_reading()
        if self.body_done:
            self._end_sent = True
        return {"type": "http.request", "body": data, "more_body": not self.body_done}

    def _wait(self) -> asyncio.Future[None]:
        waiter = self._waiter = self.conn.ctx.loop.create_future()
        return waiter

    async def send(self, message: Any) -> None:
        """ASGI ``send``: ``http.response.start`` then ``http.response.body`` messages."""
        # a dict's get is a C call, any other mapping's a method lookup; type(), not __class__:
        # compiled, the one reads the object's type, the other is an attribute lookup
        msg: dict[str, Any] = message if type(message) is dict else dict(message)
        kind = msg["type"]
        if kind == "http.response.body":
            if not self.response_started:
                raise RuntimeError("http.response.body sent before http.response.start")
            if self.response_complete:
                if self.disconnected:
                    return
                raise RuntimeError("http.response.body sent after the response was complete")
            body = msg.get("body", b"")
            more = msg.get("more_body", False)
            framing = self._framing
            transport = self.conn
            if transport.is_closing():
                self.disconnected = True
            if framing is None:
                head, framing = build_head(
                    self._status,
                    self._headers,
                    first_body=None if more else body,
                    head_only=self.head_only,
                    keep_alive=self.keep_alive,
                    http11=self.http11,
                    uwsgi=self.uwsgi,
                )
                self._framing = framing
                self.keep_alive = framing.keep_alive
                if self.disconnected:
                    pass
                elif framing.has_body and body:
                    body = self._clip(body, framing)
                    if framing.chunked:
                        transport.write(head + chunk(body))
                    elif more:
                        transport.write(head + body)
                    else:  # the whole response: on a bare uwsgi socket it leaves with the FIN
                        transport.write_last(head + body)
                elif more:
                    transport.write(head)
                else:
                    transport.write_last(head)
            elif framing.has_body and body and not self.disconnected:
                body = self._clip(body, framing)
                if framing.chunked:
                    transport.write(chunk(body))
                elif body:
                    transport.write(body)
            if not more:
                if framing.chunked and not self.disconnected:
                    transport.write(LAST_CHUNK)
                if (
                    framing.length is not None
                    and framing.has_body
                    and self.sent < framing.length
                    and not self.disconnected
                ):
                    self.conn.ctx.log.error(
                        "ASGI application sent %d of the %d bytes its Content-Length announced "
                        "to %s",
                        self.sent,
                        framing.length,
                        self._where(),
                    )
                    self._abort()
                    return
                self._finish()
                return
            if transport.write_paused:
                await transport.drain()
            return
        if kind == "http.response.start":
            if self.response_started:
                if self.response_complete and self.disconnected:
                    return  # the server answered (a bad body) or the client left: not the app's bug
                raise RuntimeError("http.response.start sent twice")
            self.response_started = True
            status = msg["status"]
            if type(status) is not int or not 100 <= status <= 999:
                raise ResponseError(f"invalid status {status!r}: expected an int from 100 to 999")
            self._status = status
            self._headers = msg.get("headers", ())
            return
        if kind == "http.response.trailers":
            return  # trailers are not sent (none was announced)
        raise RuntimeError(f"unexpected ASGI message {kind!r} on an http connection")

    def _clip(self, body: Any, framing: Framing) -> bytes:
        """``body`` (bytes-like, from the application) as bytes, cut to what Content-Length
        leaves room for; counts what is sent."""
        if type(body) is not bytes:
            body = bytes(body)
        length = framing.length
        if length is not None:
            room = length - self.sent
            if len(body) > room:
                self.conn.ctx.log.error(
                    "ASGI application sent more than its Content-Length (%d) to %s; cut",
                    length,
                    self._where(),
                )
                body = body[: max(room, 0)]
        self.sent += len(body)
        return body

    def _finish(self) -> None:
        self.response_complete = True
        self._wake()
        self._log_access()
        self.conn.response_done(self)

    def _log_access(self) -> None:
        """The response is over (sent, cut short or refused): count it, log it."""
        ctx = self.conn.ctx
        rec = self._rec
        duration = None
        if rec is not None:
            self._rec = None
            duration = rec.end(self._start, self._status or 500, self.uwsgi)
            ctx.metrics.give(rec)
        if ctx.access_log:
            ctx.log.access(
                access_environ(self.scope),
                self._status or 500,
                access_headers(self._headers),
                self.sent,
                time.monotonic() - self._start if duration is None else duration,
                self.uwsgi,
            )

    def fail(self, status: int, reason: str) -> None:
        """The request broke its framing while the app ran: answer ``status`` if still possible.

        The application then sees ``http.disconnect``; a response it still sends is dropped.
        """
        if not self.response_started:
            self.response_started = True
            self._status = status
            self._headers = ()
            if not self.conn.is_closing():
                self.conn.write(error_response(status, reason))
            self.response_complete = True
            self._log_access()
        self.keep_alive = False
        self.lost()

    def body_error(self, exc: ProtocolError) -> None:
        """The request body broke its framing: one log line (the WSGI workers' line), then
        :meth:`fail` with the error's status."""
        client = self.scope.get("client")
        query = self.scope.get("query_string")
        target = self.scope.get("raw_path", b"").decode("latin-1")
        if query:
            target += "?" + query.decode("latin-1")
        self.conn.ctx.log.info(
            "Invalid request body from %s for %s: %s",
            log_safe(client[0] if client else "a local peer"),
            log_safe(target),
            log_safe(exc.reason),
        )
        self.fail(exc.status, exc.reason)
