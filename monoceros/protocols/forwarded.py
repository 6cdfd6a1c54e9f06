"""What a proxy's request headers mean, one policy for every worker and both application
interfaces (gunicorn's ``forwarder_headers`` and ``secure_scheme_headers``).

- A header name with ``_`` is dropped unless it is a forwarder header (``forwarder_headers``,
  ``*`` for all) sent by a trusted peer: in a WSGI environ and in Django's ASGI ``META``
  ``X_Forwarded_For`` and ``X-Forwarded-For`` would land on the same key, letting a client
  shadow a proxy's header.
- The scheme a trusted proxy announces with ``secure_scheme_headers`` must be one: headers that
  say ``https`` and ``http`` at once are refused (400), as gunicorn refuses them. Each header is
  read as a list (RFC 9110 5.3: ``a, b`` in one field line means what two field lines say), so
  a repeated header and its combined form get the same answer.

Only HTTP listeners apply this: over uwsgi the front end turned every header name into an
``HTTP_*`` var already, and the scheme is the front end's own ``HTTPS``/``*_SCHEME`` vars. On a
TLS listener the scheme is ``https`` unless a trusted proxy's headers say otherwise (gunicorn's
rule: the proxy knows what the client spoke to it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .errors import InvalidHTTPRequest

__all__ = [
    "ContradictorySchemeHeaders",
    "forwarded_scheme",
    "forwarder_names",
    "is_forwarder",
    "secure_scheme_table",
]


class ContradictorySchemeHeaders(InvalidHTTPRequest):
    """A trusted proxy's ``secure_scheme_headers`` say both ``https`` and ``http`` (400)."""


def forwarder_names(names: Iterable[str]) -> frozenset[bytes] | None:
    """The ``forwarder_headers`` setting as upper-case bytes; None when it is empty."""
    return frozenset(name.strip().upper().encode("latin-1") for name in names) or None


def is_forwarder(name: bytes, forwarders: frozenset[bytes] | None) -> bool:
    """True when a header name with ``_`` (any case) is one of ``forwarders`` (or ``*`` is).

    The caller checks the peer is trusted: only such a peer may send these headers.
    """
    return forwarders is not None and (b"*" in forwarders or name.upper() in forwarders)


def secure_scheme_table(secure_scheme_headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """The ``secure_scheme_headers`` setting as ``(NAME, value that means https)`` pairs,
    names upper-case, values lower-case (a sent value is compared in any case)."""
    return [(name.upper(), value.lower()) for name, value in secure_scheme_headers.items()]


def forwarded_scheme(sent: Iterable[tuple[str, str, str]], default: str = "http") -> str:
    """``"https"`` or ``"http"``: what a trusted proxy's secure scheme headers say.

    ``sent`` holds ``(NAME, value that means https, value sent)`` for each of those headers
    present (repeated ones as separate items or combined with ``,``, alike). Every list element
    says ``https`` when it equals the value that means https (any case) and ``http`` otherwise;
    empty elements are ignored (RFC 9110 5.6.1). No element: ``default`` (the connection's own
    scheme). Raises :class:`ContradictorySchemeHeaders` when elements disagree.
    """
    scheme = ""
    first = ""
    for name, https_value, value in sent:
        value = value.lower()
        for item in value.split(",") if "," in value else (value,):
            if item != https_value:  # the usual value needs no stripping
                item = item.strip(" \t")
                if not item:
                    continue
            said = "https" if item == https_value else "http"
            if not scheme:
                scheme, first = said, name
            elif said != scheme:
                raise ContradictorySchemeHeaders(
                    f"Contradictory scheme headers: {first} says {scheme}, {name} says {said}"
                )
    return scheme or default
