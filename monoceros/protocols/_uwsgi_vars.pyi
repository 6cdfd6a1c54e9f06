"""The uwsgi vars in C: the twins of :func:`monoceros.protocols.uwsgi._vars_fast`,
:func:`monoceros.protocols.uwsgi._header_fields`,
:func:`monoceros.protocols.uwsgi._port_number` and
:meth:`monoceros.asgi.scope.UwsgiScopeBuilder._packet_scope`."""

from typing import Any

def parse_vars(block: bytes, /) -> dict[str, str] | None:
    """The dict of a well-formed vars block (latin-1), or None when anything is unusual."""

def header_fields(environ: dict[str, str], /) -> list[tuple[bytes, bytes]] | None:
    """A vars dict's header fields, or None for a dict left to the Python twin."""

def port_number(value: str | None, /) -> int | None:
    """A port var as an int; None when empty, absent or not all ASCII digits."""

def http_scope(
    packet: bytes,
    max_vars: int,
    template: dict[str, Any],
    server: Any,
    state: dict[str, Any] | None,
    /,
) -> tuple[dict[str, Any], int, int] | None:
    """(scope, bytes of the head, Content-Length) of a packet starting with a well-formed
    request head; None for anything the general path takes."""
