"""Events every sans-IO parser here produces, so a worker handles bodies the same on any wire."""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["END_OF_MESSAGE", "NEED_DATA", "Data", "EndOfMessage"]


class _Sentinel(enum.Enum):
    """Type of :data:`NEED_DATA` (an enum member, so type checkers narrow ``is`` tests)."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        """Show the bare name."""
        return self.value


NEED_DATA: Final = _Sentinel.NEED_DATA
"""Returned by ``next_event()`` when more bytes must be received first."""


class Data:
    """A piece of the request body (de-chunked when the body was chunk-framed)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Data) and other.data == self.data

    def __hash__(self) -> int:
        return hash(self.data)

    def __repr__(self) -> str:
        return f"Data({self.data[:40]!r}{'...' if len(self.data) > 40 else ''})"


class EndOfMessage:
    """The request body is complete; later bytes on the connection belong to no request."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EndOfMessage)

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "EndOfMessage()"


END_OF_MESSAGE: Final = EndOfMessage()
