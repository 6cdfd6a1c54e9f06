"""A response's header lines in C: the twin of
:func:`monoceros.protocols.response._header_block`."""

from collections.abc import Iterable
from typing import Any

def header_block(
    headers: Iterable[Any], kinds: dict[Any, int], text: bool, /
) -> tuple[bytes, int | None, bool] | None:
    """The joined header lines, the Content-Length and whether to close; or None."""
