"""Building the PEP 3333 environ of a request, straight from the parsed head.

Per worker, :func:`base_environ` is built once; per request it is copied and the request's own
keys are set. Header names map to ``HTTP_*`` keys through a cache, so the usual headers cost one
dict lookup each.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Final

from .. import SERVER_SOFTWARE
from ..addresses import AddressMatcher
from ..protocols.http import HttpRequest, decoded_path, split_target
from ..protocols.uwsgi import url_scheme
from .response import FileWrapper

__all__ = ["HttpEnvironBuilder", "UwsgiEnvironBuilder", "base_environ", "split_host"]

_PROTOCOLS: Final = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0", "0.9": "HTTP/0.9"}

#: header name (as sent) -> environ key, or None for names that are dropped
_HEADER_KEYS: dict[bytes, str | None] = {}


def _header_key(name: bytes) -> str | None:
    """The environ key of a request header, or None when the header must be dropped.

    Names with ``_`` are dropped, as gunicorn and nginx do by default: ``X_Forwarded_For`` and
    ``X-Forwarded-For`` would otherwise land on the same key and let a client shadow a proxy's
    header.
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


def base_environ(multiprocess: bool, multithread: bool, errors: Any = None) -> dict[str, Any]:
    """The keys every request of this worker shares."""
    return {
        "wsgi.version": (1, 0),
        "wsgi.errors": errors if errors is not None else sys.stderr,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        "wsgi.input_terminated": True,
        "SERVER_SOFTWARE": SERVER_SOFTWARE,
        "SCRIPT_NAME": os.environ.get("SCRIPT_NAME", ""),
    }


class HttpEnvironBuilder:
    """Builds the environ of HTTP/1.x requests arriving on one listener."""

    __slots__ = ("_base", "_secure_headers", "_server_name", "_server_port", "_trusted")

    def __init__(
        self,
        base: dict[str, Any],
        sockname: Any,
        forwarded_allow_ips: AddressMatcher,
        secure_scheme_headers: dict[str, str],
    ) -> None:
        self._base = base
        if isinstance(sockname, tuple):
            self._server_name = str(sockname[0])
            self._server_port = str(sockname[1])
        else:
            self._server_name = "localhost"
            self._server_port = "80"
        self._trusted = forwarded_allow_ips
        self._secure_headers = {
            "HTTP_" + k.upper().replace("-", "_"): v.lower()
            for k, v in secure_scheme_headers.items()
        }

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
        if script_name and path_info.startswith(script_name):
            path_info = path_info[len(script_name) :]
        env["REQUEST_METHOD"] = req.method
        env["PATH_INFO"] = path_info
        env["QUERY_STRING"] = query.decode("latin-1")
        raw_uri = target.decode("latin-1")
        env["RAW_URI"] = raw_uri
        env["REQUEST_URI"] = raw_uri
        env["SERVER_PROTOCOL"] = _PROTOCOLS.get(req.version) or f"HTTP/{req.version}"
        for name, value in req.headers:
            key = _HEADER_KEYS.get(name, "")
            if key == "":
                key = _header_key(name)
            if key is None:
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
        scheme = "http"
        if self._secure_headers and (ip is None or ip in self._trusted):
            for secure_key, secure_value in self._secure_headers.items():
                sent = env.get(secure_key)
                if sent is not None and sent.lower() == secure_value:
                    scheme = "https"
                    break
        env["wsgi.url_scheme"] = scheme
        return env


class UwsgiEnvironBuilder:
    """Builds the environ of uWSGI requests: the front end's vars, with PEP 3333 defaults.

    The vars already hold CGI names and values (PATH_INFO decoded once by the front end,
    SCRIPT_NAME stripped from it, repeated headers joined): they are used as they are.
    """

    __slots__ = ("_base",)

    def __init__(self, base: dict[str, Any], sockname: Any) -> None:
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
        self._base = defaults

    def build(self, vars_environ: dict[str, str]) -> dict[str, Any]:
        """The environ for one request (wsgi.input is set by the caller)."""
        env = self._base.copy()
        env.update(vars_environ)
        env["wsgi.url_scheme"] = url_scheme(vars_environ)
        return env
