"""``wsgi.input``: a streaming request-body reader over a *pull* function.

A pull function returns the next piece of the body, or ``b""`` once the body is complete; it raises
:class:`ClientDisconnected` when the peer goes away or stalls. The body is never held whole in
memory unless the application asks for all of it with ``read()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final

from .disconnect import ClientDisconnected

__all__ = ["EMPTY_INPUT", "ClientDisconnected", "EmptyInput", "Input"]

Pull = Callable[[], bytes]


class Input:
    """A file-like, read-only, forward-only view of a request body (PEP 3333 ``wsgi.input``)."""

    __slots__ = ("_buf", "_done", "_pull")

    def __init__(self, pull: Pull) -> None:
        self._pull = pull
        self._buf = b""
        self._done = False

    @classmethod
    def whole(cls, data: bytes) -> Input:
        """A body that is all here already (it came with the head): reads never pull."""
        body = cls(bytes)  # a pull that would say "the end": never called
        body._buf = data
        body._done = True
        return body

    def _more(self) -> bool:
        """Pull one more piece into the buffer; False once the body is exhausted."""
        if self._done:
            return False
        chunk = self._pull()
        if not chunk:
            self._done = True
            return False
        self._buf = self._buf + chunk if self._buf else chunk
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Read ``size`` bytes, fewer only at the end of the body (all that is left when size
        is negative or None): as a file does, and as gunicorn's ``wsgi.input`` does, since
        frameworks read ``CONTENT_LENGTH`` bytes with one call (Django's ``request.body``)."""
        buf = self._buf
        if size is not None and 0 <= size <= len(buf):  # in hand already
            self._buf = buf[size:]
            return buf[:size] if size < len(buf) else buf
        # each byte is copied at most once: a piece that is the whole answer is returned as it
        # is, and only the piece that goes past ``size`` is cut (not the joined result)
        parts = [buf] if buf else []
        have = len(buf)
        self._buf = b""
        while (size is None or size < 0 or have < size) and self._more():
            parts.append(self._buf)
            have += len(self._buf)
            self._buf = b""
        if size is not None and 0 <= size < have:  # the last piece went past: keep the rest
            last = parts[-1]
            cut = len(last) - (have - size)
            self._buf = last[cut:]
            parts[-1] = last[:cut]
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    def readline(self, size: int | None = -1) -> bytes:
        """Read one line, up to and including ``\\n`` (at most ``size`` bytes when given)."""
        limit = -1 if size is None else size
        start = 0
        while True:
            buf = self._buf
            idx = buf.find(b"\n", start)
            if idx >= 0:
                end = idx + 1
                if 0 <= limit < end:
                    end = limit
                break
            if 0 <= limit <= len(buf):
                end = limit
                break
            start = len(buf)
            if not self._more():
                end = len(self._buf)
                break
        buf = self._buf
        self._buf = buf[end:]
        return buf[:end]

    def readlines(self, hint: int = -1) -> list[bytes]:
        """Read lines until the end (or until ``hint`` bytes have been read)."""
        lines: list[bytes] = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def drain(self, max_bytes: int) -> bool:
        """Read and discard what is left, up to ``max_bytes``; True when the body is exhausted."""
        seen = len(self._buf)
        self._buf = b""
        while seen <= max_bytes and self._more():
            seen += len(self._buf)
            self._buf = b""
        return self._done and seen <= max_bytes

    @property
    def exhausted(self) -> bool:
        """True when the whole body has been read (or there was none).

        A pull function may say ahead of time that it has nothing left (a ``finished``
        attribute): a body read exactly to its length is then exhausted without one more pull.
        """
        if self._buf:
            return False
        if not self._done and getattr(self._pull, "finished", False):
            self._done = True
        return self._done

    @property
    def awaiting_continue(self) -> bool:
        """True when the client still waits for ``100 Continue`` (so sent no body at all)."""
        return bool(getattr(self._pull, "awaiting_continue", False))


class EmptyInput:
    """``wsgi.input`` for a request without a body: shared, stateless, always at EOF."""

    __slots__ = ()
    exhausted = True
    awaiting_continue = False

    def read(self, size: int | None = -1) -> bytes:
        """Always ``b""``."""
        return b""

    def readline(self, size: int | None = -1) -> bytes:
        """Always ``b""``."""
        return b""

    def readlines(self, hint: int = -1) -> list[bytes]:
        """Always ``[]``."""
        return []

    def __iter__(self) -> Iterator[bytes]:
        return iter(())

    def drain(self, max_bytes: int) -> bool:
        """Nothing to drain."""
        return True


EMPTY_INPUT: Final = EmptyInput()
