"""ASGI response heads: bytes headers through the shared writer, spelled in lower case.

The rules (validation, hop-by-hop fields, framing) are :mod:`monoceros.protocols.response`'s;
this module gives the ASGI side its entry point.
"""

from __future__ import annotations

from collections.abc import Iterable, Sized
from typing import Any, Final

from .. import SERVER
from ..protocols.response import Framing, Spelling, response_head, status_line

__all__ = ["build_head"]

_SPELLING: Final = Spelling(SERVER, title_case=False, announce_keep_alive=False)


def build_head(
    status: int,
    headers: Iterable[Any],
    *,
    first_body: Sized | None,
    head_only: bool,
    keep_alive: bool,
    http11: bool,
    uwsgi: bool,
) -> tuple[bytes, Framing]:
    """The response head and its framing; ``first_body`` is the whole body (bytes-like, as the
    application sent it) when it came in one message, None when more body follows."""
    return response_head(
        status_line(status),
        status,
        headers,
        _SPELLING,
        text=False,
        whole_body=None if first_body is None else len(first_body),
        head_only=head_only,
        keep_alive=keep_alive,
        http11=http11,
        uwsgi=uwsgi,
    )
