"""The uwsgi vars in C: the twins of :func:`monoceros.protocols.uwsgi._vars_fast`,
:func:`monoceros.protocols.uwsgi._header_fields` and
:func:`monoceros.protocols.uwsgi._port_number`."""

def parse_vars(block: bytes, /) -> dict[str, str] | None:
    """The dict of a well-formed vars block (latin-1), or None when anything is unusual."""

def header_fields(environ: dict[str, str], /) -> list[tuple[bytes, bytes]] | None:
    """A vars dict's header fields, or None for a dict left to the Python twin."""

def port_number(value: str | None, /) -> int | None:
    """A port var as an int; None when empty, absent or not all ASCII digits."""
