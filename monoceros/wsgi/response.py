"""WSGI responses on a blocking socket: ``start_response``, the head, the body, sendfile.

One :class:`Response` per request. The head is built once by the shared writer
(:mod:`monoceros.protocols.response`: validation and framing rules, str headers encoded once)
and sent together with the first body piece in one ``sendall``. By default the connection
closes after the response; with ``keep_alive`` set it stays open when the writer can frame the
body, unless the client still waits for ``100 Continue`` or the worker is stopping. A TLS
connection's response is a :class:`TlsResponse`: the same, sent without the plain socket's
tricks (send flags, kernel timeouts, sendfile).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Final

from .. import SERVER
from ..protocols.response import (
    LAST_CHUNK,
    STATUS_LINES_BY_TEXT,
    ResponseError,
    Spelling,
    carries_body,
    chunk,
    response_head,
    status_line_of,
)
from ..socket_waits import SEND_THEN_CLOSE, wait_in_kernel

__all__ = ["FileWrapper", "Response", "ResponseError", "TlsResponse"]

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

_DONTWAIT: Final = getattr(socket, "MSG_DONTWAIT", 0)

#: the most a single sendall() is given once the client is slower than us (io_timeout bounds it)
_SLICE: Final = 1 << 20

_SPELLING: Final = Spelling(SERVER, title_case=True, announce_keep_alive=True)


class FileWrapper:
    """``wsgi.file_wrapper``: iterable over a file; served with sendfile when possible."""

    __slots__ = ("blksize", "filelike")

    def __init__(self, filelike: Any, blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> FileWrapper:
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if data:
            return bytes(data)
        raise StopIteration

    def close(self) -> None:
        """Close the wrapped file if it can be closed."""
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


class Response:
    """The response to one request on a blocking socket (closed afterwards unless kept alive)."""

    __slots__ = (
        "_beat",
        "_waiting",
        "_io_timeout",
        "_line",
        "_sock",
        "body",
        "chunked",
        "ended",
        "has_body",
        "headers_sent",
        "head_only",
        "headers",
        "http10",
        "keep_alive",
        "length",
        "sent",
        "should_close",
        "status",
        "status_code",
        "uwsgi",
    )

    def __init__(
        self,
        sock: socket.socket,
        head_only: bool,
        uwsgi: bool,
        beat: Callable[[], object] | None = None,
        io_timeout: float | None = None,
    ) -> None:
        self._sock = sock
        self._beat = beat
        #: the client has been slower than us once: stop trying sends that do not wait
        self._waiting = False
        #: bounds each wait for the client once a send would block (None: wait for ever)
        self._io_timeout = io_timeout
        self.head_only = head_only
        self.uwsgi = uwsgi
        self.status: str | None = None
        self.status_code = 0
        #: False for HEAD requests and statuses that never carry one (set by start_response)
        self.has_body = False
        self._line = b""
        self.headers: list[tuple[str, str]] = []
        self.headers_sent = False
        self.length: int | None = None
        self.sent = 0
        #: keep the connection open after this response if it can be framed (set before the
        #: head is sent; cleared when it cannot be kept)
        self.keep_alive = False
        #: the request was HTTP/1.0 (no chunked framing)
        self.http10 = False
        #: the request's ``wsgi.input``, looked at when the head is built for keep-alive
        self.body: Any = None
        #: asked when the head is built for keep-alive: True turns it into a closing response
        #: (a worker that started stopping while the application ran)
        self.should_close: Callable[[], bool] | None = None
        self.chunked = False
        self.ended = False

    def _send(self, data: bytes, flags: int = _DONTWAIT) -> None:
        """Send all of ``data``.

        The first try never waits, so nothing has to be set up when the socket buffer takes it
        all (the usual case for a small response). Once the client has been slower than us,
        the rest of the response goes out with blocking ``sendall`` calls in slices of at most
        :data:`_SLICE`: the kernel does the waiting, ``io_timeout`` bounds each wait (see
        :mod:`monoceros.socket_waits`), and the heartbeat is beaten between slices (a slow but
        moving client is progress, not a hung worker).
        """
        sock = self._sock
        if self._waiting:
            sent = 0
        else:
            try:
                sent = sock.send(data, flags)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return
            self._waiting = True
            wait_in_kernel(sock, self._io_timeout)
        beat = self._beat
        try:
            if sent == 0 and len(data) <= _SLICE:
                if beat is not None:
                    beat()
                sock.sendall(data)
                return
            view = memoryview(data)
            end = len(view)
            while sent < end:
                if beat is not None:
                    beat()
                sock.sendall(view[sent : sent + _SLICE])
                sent += _SLICE
        except BlockingIOError:
            raise TimeoutError(
                f"the client read nothing of the response for {self._io_timeout}s"
            ) from None

    def _will_wait(self) -> None:
        """Python-level socket timeout, for ``socket.sendfile`` (which handles only that kind)."""
        if self._sock.gettimeout() != self._io_timeout:
            self._sock.settimeout(self._io_timeout)

    # ------------------------------------------------------------------ the WSGI callable

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | None = None,
    ) -> Callable[[bytes], None]:
        """PEP 3333 ``start_response``."""
        if exc_info is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # break the reference cycle
        elif self.status is not None:
            raise ResponseError("start_response() called a second time without exc_info")
        known = STATUS_LINES_BY_TEXT.get(status)  # status_line_of's cache, without a call
        self.status_code, self._line = known if known is not None else status_line_of(status)
        self.has_body = carries_body(self.status_code, self.head_only)
        self.status = status
        self.headers = headers
        return self.write

    # ------------------------------------------------------------------ head

    def _build_head(self, body_length: int | None = None) -> bytes:
        """The validated head; ``body_length`` adds a Content-Length when the app gave none."""
        if self.status is None:
            raise ResponseError("the application returned without calling start_response()")
        keep_alive = self.keep_alive
        if keep_alive:
            body = self.body
            if body is not None and body.awaiting_continue:
                keep_alive = False  # the client may still send the body it was not asked for
            elif self.should_close is not None and self.should_close():
                keep_alive = False
        head, framing = response_head(
            self._line,
            self.status_code,
            self.headers,
            _SPELLING,
            text=True,
            whole_body=body_length,
            head_only=self.head_only,
            keep_alive=keep_alive,
            http11=not self.http10,
            uwsgi=self.uwsgi,
        )
        self.length = framing.length
        self.chunked = framing.chunked
        self.keep_alive = framing.keep_alive
        return head

    # ------------------------------------------------------------------ body

    def write(self, data: bytes) -> None:
        """Send a piece of the body (the head first, in the same call, if not yet sent)."""
        if not self.headers_sent:
            head = self._build_head()
            self.headers_sent = True
            if not self.has_body:
                self._send(head)
                return
            if self.length is not None and len(data) > self.length:
                data = data[: self.length]
            self.sent = len(data)
            if self.chunked:
                self._send(head + chunk(data) if data else head)
            else:
                self._send(head + data if data else head)
            return
        if not data or not self.has_body:
            return
        if self.length is not None:
            room = self.length - self.sent
            if len(data) > room:
                data = data[:room]
                if not data:
                    return
        self.sent += len(data)
        self._send(chunk(data) if self.chunked else data)

    def write_single(self, data: bytes, then_close: bool = False) -> None:
        """The whole body in one piece: add a Content-Length when the app gave none.

        ``then_close``: the caller closes the connection as soon as this returns (nothing is
        sent, read or waited for in between), so the kernel may hold the bytes until the
        close and send them with the FIN.
        """
        if self.headers_sent:
            self.write(data)
            return
        head = self._build_head(len(data))
        self.headers_sent = True
        flags = SEND_THEN_CLOSE if then_close else _DONTWAIT
        if not self.has_body:
            self._send(head, flags)
            return
        if self.length is not None and len(data) > self.length:
            data = data[: self.length]
        self.sent = len(data)
        self._send(head + data, flags)

    def finish(self) -> None:
        """Send the head if the body was empty; end a chunked body."""
        if not self.headers_sent:
            head = self._build_head(0)
            self.headers_sent = True
            self._send(head)
        if self.chunked and not self.ended:
            self.ended = True
            self._send(LAST_CHUNK)

    def send_file(self, wrapper: FileWrapper, use_sendfile: bool) -> None:
        """Serve a ``wsgi.file_wrapper`` result: sendfile when the file has a descriptor."""
        filelike = wrapper.filelike
        fileno = getattr(filelike, "fileno", None)
        if not use_sendfile or fileno is None or not self.has_body:
            self.send_iterable(wrapper)
            return
        try:
            fd = fileno()
            offset = filelike.tell() if hasattr(filelike, "tell") else 0
            size = os.fstat(fd).st_size
        except (OSError, ValueError):
            self.send_iterable(wrapper)
            return
        count = size - offset
        if not self.headers_sent:
            head = self._build_head()
            self.headers_sent = True
            self._send(head)
            if self.chunked:  # kept alive without a length: chunks, not sendfile
                self.send_iterable(wrapper)
                return
        if self.length is not None:
            count = min(count, self.length - self.sent)
        if count > 0:
            self._will_wait()
            with os.fdopen(os.dup(fd), "rb") as f:
                sock = self._sock
                if isinstance(sock, socket.socket):
                    sock.sendfile(f, offset, count)
                else:  # the sync worker's bare C socket: socket.socket has the sendfile loop
                    with socket.socket(
                        sock.family, sock.type, sock.proto, os.dup(sock.fileno())
                    ) as whole:
                        whole.settimeout(sock.gettimeout())
                        whole.sendfile(f, offset, count)
            self.sent += count

    def send_iterable(self, result: Iterable[bytes]) -> None:
        """Send every piece of an application's iterable."""
        write = self.write
        for data in result:
            if data:
                write(data)
        self.finish()

    @property
    def complete(self) -> bool:
        """True when the body carried all its bytes: its Content-Length, or its last chunk."""
        if self.chunked:
            return self.ended
        return self.length is None or self.sent >= self.length or not self.has_body


class TlsResponse(Response):
    """The response on a TLS connection (:class:`monoceros.tls.TlsSocket`).

    OpenSSL takes no send flags, must be given the same bytes again after a write that would
    have waited, and encrypts in user space, so: every send is a ``sendall`` under a Python
    timeout of ``io_timeout`` (set once per response), in slices of at most :data:`_SLICE`
    with a heartbeat between them; and a ``wsgi.file_wrapper`` is read and sent block by block
    instead of with ``sendfile``.
    """

    __slots__ = ()

    def _send(self, data: bytes, flags: int = 0) -> None:
        """Send all of ``data``, waiting for the client at most ``io_timeout`` at a time."""
        sock = self._sock
        if not self._waiting:
            self._waiting = True
            sock.settimeout(self._io_timeout)
        if len(data) <= _SLICE:
            sock.sendall(data)
            return
        beat = self._beat
        view = memoryview(data)
        for start in range(0, len(view), _SLICE):
            if beat is not None:
                beat()
            sock.sendall(view[start : start + _SLICE])

    def send_file(self, wrapper: FileWrapper, use_sendfile: bool) -> None:
        """Serve a ``wsgi.file_wrapper`` result block by block (no sendfile through TLS)."""
        self.send_iterable(wrapper)
