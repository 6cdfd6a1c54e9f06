"""The uwsgi vars block parsed in C: the twin of :func:`monoceros.protocols.uwsgi._vars_fast`."""

def parse_vars(block: bytes, /) -> dict[str, str] | None:
    """The dict of a well-formed vars block (latin-1), or None when anything is unusual."""
