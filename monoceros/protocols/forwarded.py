"""What a proxy's request headers mean, one policy for every worker and both application
interfaces (gunicorn's ``forwarder_headers`` and ``secure_scheme_headers``).

- A header name with ``_`` is dropped unless it is a forwarder header (``forwarder_headers``,
  ``*`` for all) sent by a trusted peer: in a WSGI environ and in Django's ASGI ``META``
  ``X_Forwarded_For`` and ``X-Forwarded-For`` would land on the same key, letting a client
  shadow a proxy's header.
- With ``--proxy-headers`` (uvicorn's), the client a trusted proxy names in
  ``X-Forwarded-For`` is the request's client: the right-most entry that is not itself a
  trusted proxy (:func:`forwarded_client`).
- The scheme a trusted proxy announces with ``secure_scheme_headers`` must be one: headers that
  say ``https`` and ``http`` at once are refused (400), as gunicorn refuses them. Each header is
  read as a list (RFC 9110 5.3: ``a, b`` in one field line means what two field lines say), so
  a repeated header and its combined form get the same answer.

- Where the application is mounted (:func:`mount`): one rule for the ``root_path`` setting, the
  ``SCRIPT_NAME`` environment variable and a trusted proxy's ``SCRIPT_NAME`` header, for the
  WSGI ``SCRIPT_NAME``/``PATH_INFO`` and the ASGI ``root_path``/``path`` alike.

Only HTTP listeners apply this: over uwsgi the front end turned every header name into an
``HTTP_*`` var already, and the scheme is the front end's own ``HTTPS``/``*_SCHEME`` vars.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from typing import AnyStr

from .errors import InvalidHTTPRequest

__all__ = [
    "ContradictorySchemeHeaders",
    "forwarded_client",
    "forwarded_scheme",
    "forwarder_names",
    "is_forwarder",
    "mount",
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


def forwarded_scheme(sent: Iterable[tuple[str, str, str]]) -> str:
    """``"https"`` or ``"http"``: what a trusted proxy's secure scheme headers say.

    ``sent`` holds ``(NAME, value that means https, value sent)`` for each of those headers
    present (repeated ones as separate items or combined with ``,``, alike). Every list element
    says ``https`` when it equals the value that means https (any case) and ``http`` otherwise;
    empty elements are ignored (RFC 9110 5.6.1). No element: ``"http"``. Raises
    :class:`ContradictorySchemeHeaders` when elements disagree.
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
    return scheme or "http"


def forwarded_client(value: str, trusted: Container[str]) -> str | None:
    """The client an ``X-Forwarded-For`` value names (uvicorn's ``--proxy-headers`` rule).

    ``value`` is the header's list, repeated headers joined with ``,`` in order. Each proxy
    appends the address it got the request from, so the list is read from the right: the first
    entry that is not ``in trusted`` (the proxies of ``forwarded_allow_ips``) is the client;
    anything to its left was written by the client itself and is not believed. When every
    entry is trusted, the left-most is the client. None when the list has no entry.
    """
    hosts = [host.strip() for host in value.split(",")]
    hosts = [host for host in hosts if host]
    if not hosts:
        return None
    for host in reversed(hosts):
        if host not in trusted:
            return host
    return hosts[0]


def mount(root: AnyStr, path: AnyStr) -> tuple[AnyStr, AnyStr]:
    """Where an application mounted at ``root`` finds ``path``: ``root`` without its trailing
    ``/``, and the path under it (WSGI's SCRIPT_NAME and PATH_INFO; ASGI's ``path`` is the two
    joined, ASGI 2.4).

    A path that starts with the root followed by ``/`` or nothing came from a front end that
    passed it whole: the root is cut off. Any other path is taken as already stripped by the
    front end (what ``--root-path`` is for) and kept whole: ``/application`` is not under
    ``/app``.
    """
    slash = "/" if isinstance(root, str) else b"/"
    root = root.rstrip(slash)
    cut = len(root)
    if root and path.startswith(root) and path[cut : cut + 1] in (root[:0], slash):
        return root, path[cut:]
    return root, path
