"""Building ASGI ``http`` and ``websocket`` scopes straight from a parsed request head.

HTTP/1.1 heads come from :class:`~monoceros.protocols.http.HttpRequest`; uWSGI heads are the
front end's CGI vars (:class:`~monoceros.protocols.uwsgi.UwsgiRequest`), used as the front end
sent them: ``path`` is PATH_INFO as the front end decoded it, turned into text as UTF-8 (its
latin-1 ``str`` is encoded back to the wire bytes first), never percent-decoded a second time.
Bytes that are not UTF-8 become U+FFFD ('replace'), as in an HTTP path. ``path`` includes
``root_path`` (ASGI 2.4), so frameworks that strip the mount point find it there.

Over HTTP, ``root_path`` is the ``root_path`` setting (else the ``SCRIPT_NAME`` environment
variable), and ``path`` gets it prepended when the front end already stripped it (one rule with
the WSGI environ: :func:`~monoceros.protocols.forwarded.mount`). Header names with ``_`` are
dropped as in the WSGI environ, except the ``forwarder_headers`` of a proxy in
``forwarded_allow_ips``; such a ``SCRIPT_NAME`` header sets ``root_path`` instead. Contradictory
``secure_scheme_headers`` of a trusted proxy are refused (see :mod:`monoceros.protocols.forwarded`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from ..addresses import AddressMatcher, PeerAddress
from ..protocols.errors import ProtocolError
from ..protocols.forwarded import (
    forwarded_client,
    forwarded_scheme,
    forwarder_names,
    is_forwarder,
    mount,
    secure_scheme_table,
)
from ..protocols.http import HttpRequest, decoded_path, split_target
from ..protocols.uwsgi import (
    header_fields,
    port_number,
    request_head,
    url_scheme,
    well_formed_vars,
)

__all__ = [
    "ASGI_VERSION",
    "ForwardedForScopeBuilder",
    "HttpScopeBuilder",
    "UwsgiScopeBuilder",
    "is_websocket_upgrade",
]

ASGI_VERSION: Final = {"version": "3.0", "spec_version": "2.4"}
"""The ``asgi`` key of every scope."""

_WS_SCHEMES: Final = {"http": "ws", "https": "wss"}
#: SERVER_PROTOCOL -> http_version for the usual ones (others are cut after "HTTP/")
#: an http scope, its keys in order: each request's is a copy with its own values
_HTTP_SCOPE: Final[dict[str, Any]] = {
    "type": "http",
    "asgi": ASGI_VERSION,
    "http_version": "1.1",
    "server": None,
    "client": None,
    "scheme": "http",
    "method": "GET",
    "root_path": "",
    "path": "",
    "raw_path": b"",
    "query_string": b"",
    "headers": [],
}
_VERSIONS: Final = {"HTTP/1.1": "1.1", "HTTP/1.0": "1.0", "HTTP/2.0": "2.0", "HTTP/2": "2"}
#: the most vars :meth:`UwsgiScopeBuilder.from_packet` takes (more: the general path)
_PACKET_MAX_PAIRS: Final = 256
#: vars that change a request's kind or framing: with one, the general path builds the scope
_PACKET_DECLINED: Final = ("HTTP_UPGRADE", "HTTP_TRANSFER_ENCODING")
#: (scope, bytes of the head, Content-Length) of a packet, or None
PacketScope = tuple[dict[str, Any], int, int] | None
_NativeScope = Callable[[bytes, int, dict[str, Any], Any, dict[str, Any] | None], PacketScope]
_native_scope: _NativeScope | None
try:  # the C twin of UwsgiScopeBuilder._packet_scope, where built (and MONOCEROS_PURE unset)
    from ..protocols import _uwsgi_vars

    _native_scope = _uwsgi_vars.http_scope
except (ImportError, AttributeError):  # not built, refused, or an older build without it
    _native_scope = None
#: header name as sent -> lower-case name (bounded: clients use a small set); names with ``_``
#: are never cached, so that :func:`_lower` sees each of them
_LOWER: dict[bytes, bytes] = {}


#: set by :func:`_lower` when the head being turned into a scope has a name with ``_``; the
#: builder checks and clears it, so a request without one pays a single flag test
_UNDERSCORED: list[bool] = [False]


def _lower(name: bytes) -> bytes:
    low = _LOWER.get(name)
    if low is None:
        low = name.lower()
        if b"_" in low:
            _UNDERSCORED[0] = True
        elif len(_LOWER) < 2048:
            _LOWER[name] = low
    return low


def _text(raw: bytes) -> str:
    """Wire bytes of a (decoded) path as text: UTF-8, undecodable bytes as U+FFFD."""
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace")


def is_websocket_upgrade(method: str, headers: list[tuple[bytes, bytes]]) -> bool:
    """True for a GET whose ``Upgrade`` header names websocket (lower-case header names)."""
    if method != "GET":
        return False
    return any(name == b"upgrade" and b"websocket" in value.lower() for name, value in headers)


class HttpScopeBuilder:
    """Builds the scopes of HTTP/1.x requests arriving on one listener."""

    __slots__ = ("_forwarders", "_mount", "_root", "_scheme", "_secure", "_server", "_trusted")

    def __init__(
        self,
        sockname: PeerAddress,
        forwarded_allow_ips: AddressMatcher,
        secure_scheme_headers: Mapping[str, str],
        forwarder_headers: list[str] | None = None,
        root_path: str = "",
        scheme: str = "http",
    ) -> None:
        """``scheme``: the listener's own, ``https`` on a TLS listener (``wss`` for WebSockets)."""
        self._scheme = scheme
        #: where the application is mounted (root_path, else the SCRIPT_NAME variable)
        self._root = root_path.encode("utf-8")
        self._forwarders = forwarder_names(forwarder_headers or [])
        #: a trusted proxy's SCRIPT_NAME header sets root_path (gunicorn's forwarder_headers)
        self._mount = is_forwarder(b"SCRIPT_NAME", self._forwarders)
        self._server = _server_of(sockname)
        self._trusted = forwarded_allow_ips
        #: lower-case header name -> (its name in the setting, the value that means https)
        self._secure = {
            name.lower().encode("latin-1"): (name, https_value)
            for name, https_value in secure_scheme_table(secure_scheme_headers)
        }

    def build(self, req: HttpRequest, peer: Any, state: dict[str, Any] | None) -> dict[str, Any]:
        """The scope of ``req`` from ``peer``; ``type`` is "websocket" for a WebSocket upgrade."""
        raw_path, query, _ = split_target(req.target)
        path = _text(decoded_path(raw_path))
        headers = [(_lower(name), value) for name, value in req.headers]
        client = (peer[0], peer[1]) if isinstance(peer, tuple) else None
        trusted = client is None or client[0] in self._trusted
        root = self._root
        if _UNDERSCORED[0]:
            _UNDERSCORED[0] = False
            headers, sent = self._forwarded(headers, trusted)
            if sent is not None:
                root = sent
        root_path = ""
        if root:  # path holds root_path (ASGI 2.4), whether the front end stripped it or not
            root, rest = mount(root, raw_path)
            raw_path = root + rest
            root_path = _text(root)
            path = _text(decoded_path(raw_path))
        scheme = self._scheme
        if self._secure and trusted:
            scheme = self._forwarded_scheme(headers, scheme)
        scope = _HTTP_SCOPE.copy()  # a copy of a dict of the same keys: no table to grow
        scope["http_version"] = req.version
        scope["server"] = self._server
        scope["client"] = client
        scope["scheme"] = scheme
        scope["method"] = req.method
        scope["root_path"] = root_path
        scope["path"] = path
        scope["raw_path"] = raw_path
        scope["query_string"] = query
        scope["headers"] = headers
        if state is not None:
            scope["state"] = state.copy()
        if req.upgrade and is_websocket_upgrade(req.method, headers):
            _to_websocket(scope)
        return scope

    def _forwarded(
        self, headers: list[tuple[bytes, bytes]], trusted: bool
    ) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
        """``headers`` without the names with ``_``, but for the forwarder headers of a trusted
        peer; and the value of the last ``SCRIPT_NAME`` among those when it mounts the app."""
        forwarders = self._forwarders if trusted else None
        kept = []
        root = None
        for name, value in headers:
            if b"_" not in name:
                kept.append((name, value))
            elif is_forwarder(name, forwarders):
                kept.append((name, value))
                if name == b"script_name" and self._mount:
                    root = value
        return kept, root

    def _forwarded_scheme(self, headers: list[tuple[bytes, bytes]], default: str) -> str:
        secure = self._secure
        sent = None
        for name, value in headers:  # a loop, not a comprehension: no call when none is sent
            if name in secure:
                item = (*secure[name], value.decode("latin-1"))
                if sent is None:
                    sent = [item]
                else:
                    sent.append(item)
        return forwarded_scheme(sent, default) if sent else default


class ForwardedForScopeBuilder(HttpScopeBuilder):
    """An :class:`HttpScopeBuilder` for ``--proxy-headers``: from a peer in
    ``forwarded_allow_ips`` (or on a UNIX socket), ``client`` is ``(host, 0)`` for the host its
    ``X-Forwarded-For`` names (:func:`~monoceros.protocols.forwarded.forwarded_client`), as
    uvicorn's middleware sets it."""

    __slots__ = ()

    def build(self, req: HttpRequest, peer: Any, state: dict[str, Any] | None) -> dict[str, Any]:
        """The scope, with the forwarded client when a trusted peer names one."""
        scope = HttpScopeBuilder.build(self, req, peer, state)
        client = scope["client"]
        if client is None or client[0] in self._trusted:
            values = [value for name, value in scope["headers"] if name == b"x-forwarded-for"]
            if values:
                host = forwarded_client(b",".join(values).decode("latin-1"), self._trusted)
                if host is not None:
                    scope["client"] = (host, 0)
        return scope


class UwsgiScopeBuilder:
    """Builds scopes from the vars of uWSGI requests arriving on one listener."""

    __slots__ = ("_server",)

    def __init__(self, sockname: PeerAddress) -> None:
        self._server = _server_of(sockname)

    def from_packet(
        self, packet: bytes, max_vars: int, state: dict[str, Any] | None
    ) -> PacketScope:
        """``(scope, bytes of the head, Content-Length)`` of a ``packet`` that starts with a
        well-formed http request head, in one pass over its vars block (C where built: no
        environ dict is made); None for anything else, which the caller takes through
        :func:`~monoceros.protocols.uwsgi.parse_head` and :meth:`build` (which answer, refuse
        or report it as before): a head not whole yet, a ping or an unsupported modifier1, a
        vars block :func:`~monoceros.protocols.uwsgi.well_formed_vars` declines, a key that is
        not ASCII, more than 256 vars, a request ``parse_head`` refuses, a ``CONTENT_LENGTH``
        of more than 18 digits, and the vars that change the request's kind or framing
        (``HTTP_UPGRADE``, ``HTTP_TRANSFER_ENCODING``). ``HTTP_CONTENT_LENGTH`` and
        ``HTTP_CONTENT_TYPE`` (nginx's copies of the body's headers) are dropped, as
        ``parse_head`` drops them. The scope is the one :meth:`build` makes of the same vars."""
        if _native_scope is not None:
            return _native_scope(packet, max_vars, _HTTP_SCOPE, self._server, state)
        return self._packet_scope(packet, max_vars, state)

    def _packet_scope(
        self, packet: bytes, max_vars: int, state: dict[str, Any] | None
    ) -> PacketScope:
        """:meth:`from_packet` in Python (where the C extension is built, its ``http_scope``
        stands in for this: the same contract, pinned by tests/unit/test_uwsgi_scope_native.py)."""
        n = len(packet)
        if n < 4:
            return None
        size = packet[1] | packet[2] << 8
        if (packet[0] != 0 and packet[0] != 30) or not size or size > max_vars or n < 4 + size:
            return None
        env = well_formed_vars(packet[4 : 4 + size])
        if env is None or len(env) > _PACKET_MAX_PAIRS:
            return None
        for key in env:
            if not key.isascii():
                return None
        for key in _PACKET_DECLINED:
            if key in env:
                return None
        length = env.get("CONTENT_LENGTH")
        if length is not None and len(length) > 18:
            return None
        try:
            head = request_head(packet[0], packet[3], env)
        except ProtocolError:
            return None
        return self.build(env, state), 4 + size, head.content_length

    def build(self, env: dict[str, str], state: dict[str, Any] | None) -> dict[str, Any]:
        """The scope of one request from its vars; ``type`` "websocket" for an upgrade."""
        headers = header_fields(env)
        script = env.get("SCRIPT_NAME", "")
        root_path = _path_text(script) if script else ""
        path_info = env.get("PATH_INFO", "")
        path = root_path + _path_text(path_info)
        uri = env.get("REQUEST_URI")
        if uri:
            query_at = uri.find("?")
            raw = uri if query_at < 0 else uri[:query_at]
            if not raw.startswith("/") and "://" in raw:  # absolute-form target passed through
                raw = "/" + raw.split("://", 1)[1].partition("/")[2]
            raw_path = raw.encode("latin-1")
        else:
            raw_path = (script + path_info).encode("latin-1")
        protocol = env.get("SERVER_PROTOCOL", "")
        version = _VERSIONS.get(protocol)
        if version is None:
            version = protocol[5:] if protocol.startswith("HTTP/") and protocol[5:] else "1.1"
        remote = env.get("REMOTE_ADDR")
        client = (remote, port_number(env.get("REMOTE_PORT"))) if remote else None
        server_name = env.get("SERVER_NAME")
        server = (server_name, port_number(env.get("SERVER_PORT"))) if server_name else self._server
        method = env.get("REQUEST_METHOD", "GET")
        scope = _HTTP_SCOPE.copy()  # a copy of a dict of the same keys: no table to grow
        scope["http_version"] = version
        scope["server"] = server
        scope["client"] = client
        scope["scheme"] = url_scheme(env)
        scope["method"] = method
        scope["root_path"] = root_path
        scope["path"] = path
        scope["raw_path"] = raw_path
        scope["query_string"] = env.get("QUERY_STRING", "").encode("latin-1")
        scope["headers"] = headers
        if state is not None:
            scope["state"] = state.copy()
        upgrade = env.get("HTTP_UPGRADE")
        if upgrade is not None and "websocket" in upgrade.lower() and method == "GET":
            _to_websocket(scope)
        return scope


def _server_of(sockname: PeerAddress) -> tuple[str, int | None]:
    """The ``server`` of a listening address: (host, port), or (path, None) on a UNIX socket."""
    if isinstance(sockname, tuple):
        return str(sockname[0]), int(sockname[1])
    return (sockname.decode("latin-1") if isinstance(sockname, bytes) else sockname), None


def _path_text(latin1: str) -> str:
    """A path var (the wire bytes as latin-1 text) as text: itself when ASCII, else UTF-8."""
    return latin1 if latin1.isascii() else _text(latin1.encode("latin-1"))


def _to_websocket(scope: dict[str, Any]) -> None:
    """Turn an http scope into the websocket scope of the same request."""
    scope["type"] = "websocket"
    scope["scheme"] = _WS_SCHEMES[scope["scheme"]]
    del scope["method"]
    subprotocols: list[str] = []
    for name, value in scope["headers"]:
        if name == b"sec-websocket-protocol":
            subprotocols += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
    scope["subprotocols"] = subprotocols
