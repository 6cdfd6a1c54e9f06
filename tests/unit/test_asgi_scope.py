"""ASGI scopes built from HTTP/1.1 heads and from real uWSGI captures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from monoceros.addresses import AddressMatcher
from monoceros.asgi.access import access_environ
from monoceros.asgi.scope import ForwardedForScopeBuilder, HttpScopeBuilder, UwsgiScopeBuilder
from monoceros.protocols.errors import InvalidHTTPRequest, ProtocolError
from monoceros.protocols.forwarded import ContradictorySchemeHeaders
from monoceros.protocols.http import HttpParser, HttpRequest
from monoceros.protocols.uwsgi import UwsgiRequest, parse_head
from monoceros.wsgi.environ import (
    ForwardedForEnvironBuilder,
    HttpEnvironBuilder,
    UwsgiEnvironBuilder,
    base_environ,
)

CAPTURES = Path(__file__).resolve().parents[1] / "fixtures" / "uwsgi-packets"
SECURE = {"X-FORWARDED-PROTO": "https"}


def http_head(raw: bytes) -> HttpRequest:
    parser = HttpParser()
    parser.receive_data(raw)
    event = parser.next_event()
    assert isinstance(event, HttpRequest)
    return event


def http_scope(
    raw: bytes,
    peer: object = ("10.0.0.1", 5555),
    trusted: str = "10.0.0.1",
    state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    builder = HttpScopeBuilder(("127.0.0.1", 8000), AddressMatcher([trusted]), SECURE)
    return builder.build(http_head(raw), peer, state)


def uwsgi_scope(name: str) -> dict[str, Any]:
    parsed = parse_head((CAPTURES / f"{name}.bin").read_bytes())
    assert parsed is not None and isinstance(parsed[0], UwsgiRequest)
    return UwsgiScopeBuilder(("127.0.0.1", 9000)).build(parsed[0].environ, None)


def test_http_scope_basics() -> None:
    scope = http_scope(
        b"GET /p%20q/caf%C3%A9?x=1%202 HTTP/1.1\r\nHost: h\r\nX-Up: A\r\n\r\n", state={"db": 1}
    )
    assert scope["type"] == "http" and scope["method"] == "GET"
    assert scope["path"] == "/p q/caf\u00e9" and scope["raw_path"] == b"/p%20q/caf%C3%A9"
    assert scope["query_string"] == b"x=1%202" and scope["root_path"] == ""
    assert scope["headers"] == [(b"host", b"h"), (b"x-up", b"A")]
    assert scope["client"] == ("10.0.0.1", 5555) and scope["server"] == ("127.0.0.1", 8000)
    assert scope["http_version"] == "1.1" and scope["scheme"] == "http"
    assert scope["state"] == {"db": 1}
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}


def test_http_state_is_a_shallow_copy() -> None:
    state = {"n": 1}
    scope = http_scope(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", state=state)
    scope["state"]["n"] = 2
    assert state == {"n": 1}


def test_http_undecodable_path_bytes_become_replacement_characters() -> None:
    scope = http_scope(b"GET /a%FFb HTTP/1.1\r\nHost: h\r\n\r\n")
    assert scope["path"] == "/a\ufffdb" and scope["raw_path"] == b"/a%FFb"


def test_http_absolute_form_target() -> None:
    scope = http_scope(b"GET http://example.com/x/y?z=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == ("/x/y", b"/x/y", b"z=1")


@pytest.mark.parametrize(
    "peer,trusted,scheme",
    [
        (("10.0.0.1", 1), "10.0.0.1", "https"),
        (("10.0.0.2", 1), "10.0.0.1", "http"),  # an untrusted client cannot claim https
        ("", "10.0.0.1", "https"),  # a UNIX socket peer is the local proxy
    ],
)
def test_http_scheme_from_trusted_proxies(peer: object, trusted: str, scheme: str) -> None:
    scope = http_scope(
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\n\r\n", peer=peer, trusted=trusted
    )
    assert scope["scheme"] == scheme


def test_http_websocket_upgrade_scope() -> None:
    scope = http_scope(
        b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Protocol: a, b\r\n\r\n"
    )
    assert scope["type"] == "websocket" and scope["scheme"] == "ws"
    assert "method" not in scope and scope["subprotocols"] == ["a", "b"]


def test_http_unix_listener_server() -> None:
    builder = HttpScopeBuilder("/run/app.sock", AddressMatcher([]), {})
    scope = builder.build(http_head(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"), "", None)
    assert scope["server"] == ("/run/app.sock", None) and scope["client"] is None
    assert "state" not in scope


def test_http_invalid_absolute_target() -> None:
    with pytest.raises(InvalidHTTPRequest):
        http_scope(b"GET http://[bad/ HTTP/1.1\r\nHost: h\r\n\r\n")


# ----------------------------------------------------------------------------- uWSGI captures


def test_uwsgi_path_is_what_nginx_decoded_as_utf8_text() -> None:
    scope = uwsgi_scope("nginx-get-percent-utf8")
    assert scope["path"] == "/caf\u00e9/a/b/~user/x y"  # decoded once, by nginx; %2F is a /
    assert scope["raw_path"] == b"/caf%C3%A9/a%2Fb/%7Euser/x%20y"
    assert scope["query_string"] == b"q=caf%C3%A9&x=%20"
    assert scope["client"] == ("127.0.0.1", 34370) and scope["server"] == ("localhost", 18730)
    assert scope["method"] == "GET" and scope["http_version"] == "1.1"


def test_uwsgi_raw_utf8_from_nginx_and_apache() -> None:
    for name in ("nginx-get-raw-utf8", "apache-get-raw-utf8-socket"):
        scope = uwsgi_scope(name)
        assert scope["path"] == "/caf\u00e9/\u65e5\u672c", name
        assert scope["query_string"] == b"q=\xc3\xa9", name


def test_uwsgi_script_name_is_root_path_and_path_includes_it() -> None:
    scope = uwsgi_scope("nginx-prefix-scriptname-modifier30")
    assert (scope["root_path"], scope["path"]) == ("/prefix", "/prefix/app/path")
    assert scope["raw_path"] == b"/prefix/app/path" and scope["query_string"] == b"z=9"


def test_uwsgi_scheme_and_headers() -> None:
    assert uwsgi_scope("nginx-https-on")["scheme"] == "https"
    headers = uwsgi_scope("nginx-header-repeated")["headers"]
    assert (b"x-a", b"one, two") in headers and (b"cookie", b"c1=1; c2=2") in headers
    form = uwsgi_scope("nginx-post-form100")
    names = [name for name, _ in form["headers"]]
    assert names.count(b"content-type") == 1 and names.count(b"content-length") == 1
    assert all(name == name.lower() for name in names)
    empty = uwsgi_scope("nginx-get-query")  # empty CONTENT_TYPE/LENGTH vars are no headers
    assert not any(n.startswith(b"content-") for n, _ in empty["headers"])


def test_uwsgi_absolute_form_request_uri() -> None:
    scope = uwsgi_scope("nginx-get-absolute-form")
    assert scope["raw_path"] == b"/abs" and scope["path"] == "/abs"


def test_uwsgi_websocket_upgrade_scope() -> None:
    scope = uwsgi_scope("nginx-websocket-upgrade")
    assert scope["type"] == "websocket" and scope["scheme"] == "ws"
    assert scope["path"] == "/ws/chat" and "method" not in scope


def test_uwsgi_defaults_without_optional_vars() -> None:
    scope = UwsgiScopeBuilder(("0.0.0.0", 9000)).build({"REQUEST_METHOD": "GET"}, {"a": 1})
    assert scope["path"] == "" and scope["raw_path"] == b"" and scope["client"] is None
    assert scope["server"] == ("0.0.0.0", 9000) and scope["state"] == {"a": 1}


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        ("8080", 8080),
        ("0", 0),
        ("00443", 443),
        ("65535", 65535),
        ("9" * 30, int("9" * 30)),  # what int() makes of it: no overflow
        ("", None),
        ("80a", None),
        ("+80", None),
        (" 80", None),
        ("8_0", None),
        ("\u0663", None),  # a digit, not an ASCII one
        ("\uff18\uff10", None),
    ],
)
def test_uwsgi_port_vars(port: str, expected: int | None) -> None:
    env = {"REMOTE_ADDR": "10.1.2.3", "REMOTE_PORT": port, "SERVER_NAME": "h", "SERVER_PORT": port}
    scope = UwsgiScopeBuilder(("0.0.0.0", 9000)).build(env, None)
    assert scope["client"] == ("10.1.2.3", expected) and scope["server"] == ("h", expected)


def test_access_environ_from_a_scope() -> None:
    env = access_environ(uwsgi_scope("nginx-get-percent-utf8"))
    assert env["REQUEST_METHOD"] == "GET" and env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["RAW_URI"] == "/caf%C3%A9/a%2Fb/%7Euser/x%20y?q=caf%C3%A9&x=%20"
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["HTTP_HOST"] == "127.0.0.1"


# --- gunicorn's forwarder_headers: a trusted proxy's SCRIPT_NAME header -------------------


def mounted_scope(
    raw: bytes, peer: object = ("10.0.0.1", 5555), forwarders: list[str] | None = None
) -> dict[str, Any]:
    names = ["SCRIPT_NAME", "PATH_INFO"] if forwarders is None else forwarders
    builder = HttpScopeBuilder(("127.0.0.1", 8000), AddressMatcher(["10.0.0.1"]), SECURE, names)
    return builder.build(http_head(raw), peer, None)


def test_http_script_name_header_from_a_trusted_proxy_is_root_path() -> None:
    scope = mounted_scope(
        b"GET /prefix/a%20b?q=1 HTTP/1.1\r\nHost: h\r\nSCRIPT_NAME: /prefix/\r\n\r\n"
    )
    assert (scope["root_path"], scope["path"], scope["raw_path"]) == (
        "/prefix",
        "/prefix/a b",
        b"/prefix/a%20b",
    )
    # the proxy stripped the prefix: path still includes root_path (ASGI 2.4)
    scope = mounted_scope(b"GET /a HTTP/1.1\r\nHost: h\r\nscript_name: /prefix\r\n\r\n")
    assert (scope["root_path"], scope["path"], scope["raw_path"]) == (
        "/prefix",
        "/prefix/a",
        b"/prefix/a",
    )


@pytest.mark.parametrize(
    ("target", "root_path", "path"),
    [
        (b"/app", "/app", "/app"),
        (b"/app/", "/app", "/app/"),
        (b"/app/x", "/app", "/app/x"),
        # not inside the mount (no "/" after the prefix): the proxy stripped it, as for "/a"
        (b"/application", "/app", "/app/application"),
        (b"/app-x/y", "/app", "/app/app-x/y"),
    ],
)
def test_http_script_name_header_mount_ends_at_a_slash(
    target: bytes, root_path: str, path: str
) -> None:
    """``/application`` is not under root_path ``/app``: a framework stripping root_path from
    path must not find ``lication`` (issue 18)."""
    scope = mounted_scope(b"GET %s HTTP/1.1\r\nHost: h\r\nSCRIPT_NAME: /app\r\n\r\n" % target)
    assert (scope["root_path"], scope["path"]) == (root_path, path)
    assert scope["raw_path"] == path.encode()


def test_http_script_name_header_is_ignored_from_others_and_when_not_listed() -> None:
    raw = b"GET /prefix/a HTTP/1.1\r\nHost: h\r\nSCRIPT_NAME: /prefix\r\n\r\n"
    for scope in (mounted_scope(raw, peer=("10.9.9.9", 1)), mounted_scope(raw, forwarders=[])):
        assert (scope["root_path"], scope["path"]) == ("", "/prefix/a")


# --- header names with "_": one policy with the WSGI environ (issue 13) -------------------


def test_http_underscore_headers_are_dropped() -> None:
    """Django's ASGI handler makes ``X_Forwarded_For`` and ``X-Forwarded-For`` one META key:
    the name with ``_`` is dropped, as the WSGI workers (and gunicorn, and nginx) drop it."""
    scope = mounted_scope(
        b"GET / HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 1.1.1.1\r\n"
        b"X_Other: 1\r\n\r\n"
    )
    assert scope["headers"] == [(b"host", b"h"), (b"x-forwarded-for", b"1.1.1.1")]
    # the next request, without such a name, is built the usual way
    assert http_scope(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n")["headers"] == [
        (b"host", b"h"),
        (b"x-a", b"1"),
    ]


def test_http_forwarder_headers_of_a_trusted_proxy_are_kept() -> None:
    raw = b"GET /a HTTP/1.1\r\nHost: h\r\nPATH_INFO: /z\r\nSCRIPT_NAME: /p\r\nX_Other: 1\r\n\r\n"
    assert mounted_scope(raw)["headers"] == [
        (b"host", b"h"),
        (b"path_info", b"/z"),
        (b"script_name", b"/p"),
    ]
    assert mounted_scope(raw, forwarders=["*"])["headers"][-1] == (b"x_other", b"1")
    # from an untrusted peer, or not listed: dropped like any other
    for scope in (mounted_scope(raw, peer=("10.9.9.9", 1)), mounted_scope(raw, forwarders=[])):
        assert scope["headers"] == [(b"host", b"h")] and scope["root_path"] == ""
    # listed but SCRIPT_NAME is not: kept as a header, no mount point
    scope = mounted_scope(raw, forwarders=["SCRIPT_NAME_X", "script_name_y", "PATH_INFO"])
    assert scope["headers"] == [(b"host", b"h"), (b"path_info", b"/z")]


def test_http_underscore_headers_agree_with_the_wsgi_environ() -> None:
    """The scope's headers are the environ's HTTP_* keys, whatever the trust and the setting."""
    raw = (
        b"GET /p/a HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 1.1.1.1\r\n"
        b"SCRIPT_NAME: /p\r\nPath_Info: /z\r\nX-Up: A\r\n\r\n"
    )
    req = http_head(raw)
    for peer in (("10.0.0.1", 1), ("10.9.9.9", 1), ""):
        for names in (["SCRIPT_NAME", "PATH_INFO"], [], ["*"], ["Path_Info"]):
            trusted = AddressMatcher(["10.0.0.1"])
            scope = HttpScopeBuilder(("127.0.0.1", 8000), trusted, SECURE, names).build(
                req, peer, None
            )
            env = HttpEnvironBuilder(
                base_environ(True, False), ("127.0.0.1", 8000), trusted, SECURE, names
            ).build(req, peer)
            from_scope: dict[str, str] = {}
            for n, v in scope["headers"]:  # joined as the environ joins a repeated header
                key = "HTTP_" + n.decode().upper().replace("-", "_")
                from_scope[key] = (
                    from_scope[key] + ", " + v.decode() if key in from_scope else v.decode()
                )
            from_env = {k: v for k, v in env.items() if k.startswith("HTTP_")}
            assert from_scope == from_env, (peer, names)
            assert scope["root_path"] == env["SCRIPT_NAME"], (peer, names)


def test_uwsgi_headers_are_the_environ_http_vars() -> None:
    """Over uwsgi the front end already made every name an ``HTTP_*`` var (nginx drops names
    with ``_`` unless ``underscores_in_headers on``): both interfaces pass them all on."""
    for capture in sorted(CAPTURES.glob("*.bin")):
        try:
            parsed = parse_head(capture.read_bytes())
        except ProtocolError:
            continue  # the captures of broken packets
        if parsed is None or not isinstance(parsed[0], UwsgiRequest):
            continue
        vars_environ = parsed[0].environ
        scope = UwsgiScopeBuilder(("127.0.0.1", 9000)).build(vars_environ, None)
        env = UwsgiEnvironBuilder(base_environ(True, False), ("127.0.0.1", 9000)).build(
            vars_environ
        )
        from_scope = {
            "HTTP_" + n.decode().upper().replace("-", "_"): v.decode("latin-1")
            for n, v in scope["headers"]
            if n not in (b"content-type", b"content-length")
        }
        # uwsgi_curl sends HTTP_X-CUSTOM-HEADER: the environ keeps the var as sent
        from_env = {k.replace("-", "_"): v for k, v in env.items() if k.startswith("HTTP_")}
        assert from_scope == from_env, capture.name


# --- contradictory secure scheme headers (gunicorn: 400 "Contradictory scheme headers") ----


def test_http_contradictory_scheme_headers_from_a_trusted_proxy_are_refused() -> None:
    raw = (
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Proto: http\r\n\r\n"
    )
    with pytest.raises(ContradictorySchemeHeaders):
        http_scope(raw)
    # from an untrusted client they mean nothing: no error, scheme http
    assert http_scope(raw, peer=("10.0.0.2", 1))["scheme"] == "http"


# --- --proxy-headers: the client from a trusted proxy's X-Forwarded-For --------------------------


def forwarded_for(raw: bytes, peer: Any) -> tuple[tuple[str, int] | None, tuple[str, str]]:
    """The ASGI client and the WSGI (REMOTE_ADDR, REMOTE_PORT) the --proxy-headers builders
    give ``raw`` from ``peer``, with 127.0.0.1 and 10.0.0.2 trusted."""
    trusted = AddressMatcher(["127.0.0.1", "10.0.0.2"])
    scope = ForwardedForScopeBuilder(("127.0.0.1", 8000), trusted, SECURE).build(
        http_head(raw), peer, None
    )
    env = ForwardedForEnvironBuilder(
        base_environ(True, False), ("127.0.0.1", 8000), trusted, SECURE
    ).build(http_head(raw), peer)
    return scope["client"], (env["REMOTE_ADDR"], env.get("REMOTE_PORT", ""))


@pytest.mark.parametrize(
    ("headers", "peer", "client"),
    [
        (b"X-Forwarded-For: 203.0.113.9\r\n", ("127.0.0.1", 4000), ("203.0.113.9", 0)),
        (b"X-Forwarded-For: 1.1.1.1, 203.0.113.9, 10.0.0.2\r\n", ("127.0.0.1", 4000),
         ("203.0.113.9", 0)),
        (b"X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 203.0.113.9\r\n", ("127.0.0.1", 4000),
         ("203.0.113.9", 0)),  # repeated headers are one list, in order
        (b"X-Forwarded-For: 203.0.113.9\r\n", ("192.0.2.1", 4000), ("192.0.2.1", 4000)),
        (b"X-Forwarded-For: 203.0.113.9\r\n", "", ("203.0.113.9", 0)),  # a UNIX socket peer
        (b"X-Forwarded-For: , \r\n", ("127.0.0.1", 4000), ("127.0.0.1", 4000)),
        (b"", ("127.0.0.1", 4000), ("127.0.0.1", 4000)),
        (b"X_Forwarded_For: 203.0.113.9\r\n", ("127.0.0.1", 4000), ("127.0.0.1", 4000)),
    ],
)  # fmt: skip
def test_proxy_headers_client_for_asgi_and_wsgi_alike(
    headers: bytes, peer: Any, client: tuple[str, int]
) -> None:
    raw = b"GET / HTTP/1.1\r\nHost: h\r\n" + headers + b"\r\n"
    assert forwarded_for(raw, peer) == (client, (client[0], str(client[1])))


# --- root_path: where a front end that strips a prefix mounts the application ------------------


@pytest.mark.parametrize(
    ("target", "root_path", "path", "script_name", "path_info"),
    [
        (b"/x/y?q=1", "/api", "/api/x/y", "/api", "/x/y"),  # the front end stripped /api
        (b"/api/x/y", "/api", "/api/x/y", "/api", "/x/y"),  # ...or passed the whole path
        (b"/api", "/api", "/api", "/api", ""),
        (b"/apis/x", "/api", "/api/apis/x", "/api", "/apis/x"),  # not under /api
        (b"/caf%C3%A9", "/api", "/api/café", "/api", "/caf\xc3\xa9"),
    ],
)
def test_root_path_for_asgi_and_wsgi_alike(
    target: bytes, root_path: str, path: str, script_name: str, path_info: str
) -> None:
    raw = b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n"
    trusted = AddressMatcher(["127.0.0.1"])
    scope = HttpScopeBuilder(("127.0.0.1", 8000), trusted, SECURE, None, root_path + "/").build(
        http_head(raw), ("10.0.0.9", 1), None
    )
    assert (scope["root_path"], scope["path"]) == (root_path, path)
    bare = target.partition(b"?")[0]
    assert scope["raw_path"] in (bare, root_path.encode() + bare)  # the wire's bytes, mounted
    env = HttpEnvironBuilder(
        base_environ(True, False, script_name=root_path + "/"), ("127.0.0.1", 8000), trusted, SECURE
    ).build(http_head(raw), ("10.0.0.9", 1))
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == (script_name, path_info)


def test_a_trusted_script_name_header_overrides_root_path() -> None:
    raw = b"GET /x HTTP/1.1\r\nHost: h\r\nSCRIPT_NAME: /other\r\n\r\n"
    names = ["SCRIPT_NAME"]
    trusted = AddressMatcher(["127.0.0.1"])
    builder = HttpScopeBuilder(("127.0.0.1", 8000), trusted, SECURE, names, "/api")
    scope = builder.build(http_head(raw), ("127.0.0.1", 1), None)
    assert (scope["root_path"], scope["path"]) == ("/other", "/other/x")
    scope = builder.build(http_head(raw), ("10.0.0.9", 1), None)  # untrusted: root_path stays
    assert (scope["root_path"], scope["path"]) == ("/api", "/api/x")
