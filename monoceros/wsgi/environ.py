"""Building the PEP 3333 environ of a request, straight from the parsed head.

Per worker, :func:`base_environ` is built once; per request it is copied and the request's own
keys are set. Header names map to ``HTTP_*`` keys through a cache, so the usual headers cost one
dict lookup each.
"""

from __future__ import annotations

import sys
from typing import Any, Final

from .. import SERVER_SOFTWARE
from ..addresses import AddressMatcher, PeerAddress
from ..protocols.forwarded import (
    forwarded_client,
    forwarded_scheme,
    forwarder_names,
    is_forwarder,
    mount,
    secure_scheme_table,
)
from ..protocols.http import HttpRequest, decoded_path, split_target
from ..protocols.uwsgi import url_scheme
from .response import FileWrapper

__all__ = [
    "ForwardedForEnvironBuilder",
    "HttpEnvironBuilder",
    "UwsgiEnvironBuilder",
    "base_environ",
    "split_host",
]

_PROTOCOLS: Final = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0", "0.9": "HTTP/0.9"}

#: header name (as sent) -> environ key, or None for names that are dropped
_HEADER_KEYS: dict[bytes, str | None] = {}


def _header_key(name: bytes) -> str | None:
    """The environ key of a request header, or None when the header must be dropped.

    Names with ``_`` are dropped, as gunicorn and nginx do by default: ``X_Forwarded_For`` and
    ``X-Forwarded-For`` would otherwise land on the same key and let a client shadow a proxy's
    header (the forwarder headers of a trusted proxy are kept by the caller; see
    :mod:`monoceros.protocols.forwarded`).
    """
    key = _HEADER_KEYS.get(name, "")
    if key != "":
        return key
    if b"_" in name:
        result: str | None = None
    else:
        upper = name.decode("latin-1").upper().replace("-", "_")
        result = upper if upper in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + upper
    if len(_HEADER_KEYS) < 2048:
        _HEADER_KEYS[name] = result
    return result


def split_host(host: str, default_port: str) -> tuple[str, str]:
    """``("example.com", "8080")`` from a Host value; IPv6 literals keep their brackets off."""
    if host.startswith("["):
        end = host.find("]")
        if end > 0:
            name = host[1:end]
            rest = host[end + 1 :]
            return name, rest[1:] if rest.startswith(":") and rest[1:] else default_port
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name, port
    return host, default_port


def base_environ(
    multiprocess: bool, multithread: bool, errors: Any = None, script_name: str = ""
) -> dict[str, Any]:
    """The keys every request of this worker shares; ``script_name``: where HTTP listeners
    mount the application (``root_path``, else the ``SCRIPT_NAME`` environment variable)."""
    return {
        "wsgi.version": (1, 0),
        "wsgi.errors": errors if errors is not None else sys.stderr,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        "wsgi.input_terminated": True,
        "SERVER_SOFTWARE": SERVER_SOFTWARE,
        "SCRIPT_NAME": script_name.rstrip("/"),
    }


class HttpEnvironBuilder:
    """Builds the environ of HTTP/1.x requests arriving on one listener."""

    __slots__ = (
        "_base",
        "_forwarders",
        "_scheme",
        "_secure_headers",
        "_server_name",
        "_server_port",
        "_trusted",
    )

    def __init__(
        self,
        base: dict[str, Any],
        sockname: PeerAddress,
        forwarded_allow_ips: AddressMatcher,
        secure_scheme_headers: dict[str, str],
        forwarder_headers: list[str] | None = None,
        scheme: str = "http",
    ) -> None:
        """``scheme``: the listener's own, ``https`` on a TLS listener."""
        self._base = base
        self._scheme = scheme
        self._forwarders = forwarder_names(forwarder_headers or [])
        if isinstance(sockname, tuple):
            self._server_name = str(sockname[0])
            self._server_port = str(sockname[1])
        else:
            self._server_name = "localhost"
            self._server_port = "80"
        self._trusted = forwarded_allow_ips
        #: (environ key, header name, the value that means https) per secure scheme header
        self._secure_headers = [
            ("HTTP_" + name.replace("-", "_"), name, https_value)
            for name, https_value in secure_scheme_table(secure_scheme_headers)
        ]

    def build(self, req: HttpRequest, peer: Any) -> dict[str, Any]:
        """The environ for ``req`` from ``peer`` (wsgi.input is set by the caller)."""
        env = self._base.copy()
        target = req.target
        raw_path, query, authority = split_target(target)
        if authority:
            env["HTTP_HOST"] = authority.decode("latin-1")
        path = decoded_path(raw_path)
        path_info = path.decode("latin-1")
        script_name = env["SCRIPT_NAME"]
        if script_name:  # root_path, or the SCRIPT_NAME environment variable (base_environ)
            path_info = mount(script_name, path_info)[1]
        env["REQUEST_METHOD"] = req.method
        env["PATH_INFO"] = path_info
        env["QUERY_STRING"] = query.decode("latin-1")
        raw_uri = target.decode("latin-1")
        env["RAW_URI"] = raw_uri
        env["REQUEST_URI"] = raw_uri
        env["SERVER_PROTOCOL"] = _PROTOCOLS.get(req.version) or f"HTTP/{req.version}"
        mounted: str | None = None
        for name, value in req.headers:
            key = _HEADER_KEYS.get(name, "")
            if key == "":
                key = _header_key(name)
            if key is None:
                if self._forwarders is not None and self._forwarded(env, name, value, peer):
                    mounted = value.decode("latin-1")
                continue
            text = value.decode("latin-1")
            if key in env:
                if key == "HTTP_HOST" and "HTTP_HOST" not in self._base:
                    continue  # the absolute-form target's host wins (RFC 9112 3.2.2)
                text = env[key] + ("; " if key == "HTTP_COOKIE" else ", ") + text
            env[key] = text
        host = env.get("HTTP_HOST")
        if host:
            env["SERVER_NAME"], env["SERVER_PORT"] = split_host(host, self._server_port)
        else:
            env["SERVER_NAME"] = self._server_name
            env["SERVER_PORT"] = self._server_port
        if isinstance(peer, tuple):
            ip = peer[0]
            env["REMOTE_ADDR"] = ip
            env["REMOTE_PORT"] = str(peer[1])
        else:
            ip = None
            env["REMOTE_ADDR"] = ""
        scheme = self._scheme
        if self._secure_headers and (ip is None or ip in self._trusted):
            sent = None
            for secure_key, secure_name, https in self._secure_headers:  # cheaper than a listcomp
                if secure_key in env:
                    item = (secure_name, https, env[secure_key])
                    if sent is None:
                        sent = [item]
                    else:
                        sent.append(item)
            if sent is not None:  # a repeated header is joined in env: read back as a list
                scheme = forwarded_scheme(sent, scheme)
        env["wsgi.url_scheme"] = scheme
        if mounted is not None:
            env["SCRIPT_NAME"], env["PATH_INFO"] = mount(mounted, path.decode("latin-1"))
        return env

    def _forwarded(self, env: dict[str, Any], name: bytes, value: bytes, peer: Any) -> bool:
        """Keep a header with ``_`` that a trusted proxy may send (``forwarder_headers``).

        Returns True when it is a SCRIPT_NAME the caller must apply as the mount point. As in
        gunicorn, the header also stays in the environ as ``HTTP_<NAME>``.
        """
        if not is_forwarder(name, self._forwarders):
            return False
        if isinstance(peer, tuple) and peer[0] not in self._trusted:
            return False
        upper = name.upper()
        key = "HTTP_" + upper.decode("latin-1")
        text = value.decode("latin-1")
        env[key] = env[key] + ", " + text if key in env else text
        return upper == b"SCRIPT_NAME"


class ForwardedForEnvironBuilder(HttpEnvironBuilder):
    """An :class:`HttpEnvironBuilder` for ``--proxy-headers``: from a peer in
    ``forwarded_allow_ips`` (or on a UNIX socket), ``REMOTE_ADDR`` is the client its
    ``X-Forwarded-For`` names (:func:`~monoceros.protocols.forwarded.forwarded_client`) and
    ``REMOTE_PORT`` is ``0``, as uvicorn's client port; the access log's ``%(h)s`` follows."""

    __slots__ = ()

    def build(self, req: HttpRequest, peer: Any) -> dict[str, Any]:
        """The environ, with the forwarded client when a trusted peer names one."""
        env = HttpEnvironBuilder.build(self, req, peer)
        forwarded = env.get("HTTP_X_FORWARDED_FOR")
        if forwarded is not None and (not isinstance(peer, tuple) or peer[0] in self._trusted):
            client = forwarded_client(forwarded, self._trusted)
            if client is not None:
                env["REMOTE_ADDR"] = client
                env["REMOTE_PORT"] = "0"
        return env


class UwsgiEnvironBuilder:
    """Builds the environ of uWSGI requests: the front end's vars, with PEP 3333 defaults.

    The vars already hold CGI names and values (PATH_INFO decoded once by the front end,
    SCRIPT_NAME stripped from it, repeated headers joined): they are used as they are, and the
    dict :func:`~monoceros.protocols.uwsgi.parse_head` made for them becomes the environ (the
    defaults fill in what the front end did not send: one lookup per default key instead of a
    copy of the defaults and an update with every var).
    """

    __slots__ = ("_defaults",)

    def __init__(self, base: dict[str, Any], sockname: PeerAddress) -> None:
        defaults = dict(base)
        if isinstance(sockname, tuple):
            name, port = str(sockname[0]), str(sockname[1])
        else:
            name, port = "localhost", "80"
        defaults.update(
            {
                "PATH_INFO": "",
                "QUERY_STRING": "",
                "SERVER_NAME": name,
                "SERVER_PORT": port,
                "SERVER_PROTOCOL": "HTTP/1.0",
                "REMOTE_ADDR": "",
            }
        )
        if defaults.get("SCRIPT_NAME"):
            defaults["SCRIPT_NAME"] = ""  # the front end says where the app is mounted
        self._defaults: tuple[tuple[str, Any], ...] = tuple(defaults.items())

    def build(self, vars_environ: dict[str, str]) -> dict[str, Any]:
        """The environ for one request, made of ``vars_environ`` itself (the request's own
        dict, which it changes); wsgi.input is set by the caller."""
        env: dict[str, Any] = vars_environ
        for key, value in self._defaults:  # a var the front end sent wins over a default
            env.setdefault(key, value)
        env["wsgi.url_scheme"] = url_scheme(vars_environ)
        return env
