"""The environ of HTTP requests: PEP 3333 keys, headers, host, scheme from trusted proxies."""

from __future__ import annotations

from typing import Any

import pytest

from monoceros import __version__
from monoceros.addresses import AddressMatcher
from monoceros.protocols.forwarded import ContradictorySchemeHeaders
from monoceros.protocols.http import NEED_DATA, HttpParser, HttpRequest
from monoceros.wsgi.environ import HttpEnvironBuilder, base_environ, split_host

SECURE = {"X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https", "X-FORWARDED-SSL": "on"}


def head(raw: bytes) -> HttpRequest:
    p = HttpParser()
    p.receive_data(raw)
    ev = p.next_event()
    assert ev is not NEED_DATA and isinstance(ev, HttpRequest)
    return ev


def build(
    raw: bytes, peer: Any = ("10.1.2.3", 5555), trusted: str = "127.0.0.1", script_name: str = ""
) -> dict[str, Any]:
    b = HttpEnvironBuilder(
        base_environ(True, False, script_name=script_name),
        ("127.0.0.1", 8000),
        AddressMatcher(trusted.split(",")),
        SECURE,
    )
    return b.build(head(raw), peer)


def test_pep3333_keys() -> None:
    env = build(
        b"GET /p%20q/caf%C3%A9?x=1%202 HTTP/1.1\r\nHost: example.com:8080\r\n"
        b"X-Custom: v\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
    )
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == b"/p q/caf\xc3\xa9".decode("latin-1")
    assert env["QUERY_STRING"] == "x=1%202"
    assert env["RAW_URI"] == "/p%20q/caf%C3%A9?x=1%202"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.com", "8080")
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("10.1.2.3", "5555")
    assert env["HTTP_X_CUSTOM"] == "v"
    assert env["CONTENT_TYPE"] == "text/plain" and env["CONTENT_LENGTH"] == "0"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["wsgi.url_scheme"] == "http" and env["wsgi.version"] == (1, 0)
    assert env["SCRIPT_NAME"] == ""
    assert env["SERVER_SOFTWARE"] == f"monoceros/{__version__}"  # as gunicorn: the version here,
    # the name only in the Server header


def test_percent_decoded_once_only() -> None:
    assert build(b"GET /%2561dmin HTTP/1.1\r\nHost: x\r\n\r\n")["PATH_INFO"] == "/%61dmin"


def test_repeated_headers_are_joined() -> None:
    env = build(
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: one\r\nX-A: two\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n"
    )
    assert env["HTTP_X_A"] == "one, two"
    assert env["HTTP_COOKIE"] == "a=1; b=2"


def test_underscore_headers_are_dropped() -> None:
    env = build(
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.1.1.1\r\nX_Forwarded_For: 6.6.6.6\r\n\r\n"
    )
    assert env["HTTP_X_FORWARDED_FOR"] == "1.1.1.1"


def test_host_fallback_and_ipv6_host() -> None:
    env = build(b"GET / HTTP/1.0\r\n\r\n")
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", "8000")
    assert split_host("[::1]:9000", "80") == ("::1", "9000")
    assert split_host("[::1]", "80") == ("::1", "80")
    assert split_host("h", "80") == ("h", "80")


def test_absolute_form_target() -> None:
    env = build(b"GET http://absolute.example/abs?x=1 HTTP/1.1\r\nHost: other\r\n\r\n")
    assert env["PATH_INFO"] == "/abs" and env["QUERY_STRING"] == "x=1"
    assert env["HTTP_HOST"] == "absolute.example"


def test_secure_scheme_only_from_trusted_peers() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\n\r\n"
    assert build(raw)["wsgi.url_scheme"] == "http"
    assert build(raw, peer=("127.0.0.1", 1))["wsgi.url_scheme"] == "https"
    assert build(raw, trusted="10.0.0.0/8")["wsgi.url_scheme"] == "https"
    assert build(raw, peer="")["wsgi.url_scheme"] == "https"  # UNIX socket peers are local


def test_contradictory_scheme_headers_from_a_trusted_proxy_are_refused() -> None:
    """gunicorn's 400 "Contradictory scheme headers" (its tests/requests/invalid/019)."""
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Ssl: off\r\n\r\n"
    with pytest.raises(ContradictorySchemeHeaders) as info:
        build(raw, peer=("127.0.0.1", 1))
    assert info.value.status == 400
    assert build(raw)["wsgi.url_scheme"] == "http"  # an untrusted client's headers mean nothing
    # a repeated header is joined in the environ, and read back as a list
    raw = (
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Proto: http\r\n\r\n"
    )
    with pytest.raises(ContradictorySchemeHeaders):
        build(raw, peer=("127.0.0.1", 1))
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Ssl: on\r\n\r\n"
    assert build(raw, peer=("127.0.0.1", 1))["wsgi.url_scheme"] == "https"


@pytest.mark.parametrize(
    ("script_name", "target", "expected"),
    [
        ("/app", "/app/x", ("/app", "/x")),
        ("/app", "/app", ("/app", "")),
        ("/app/", "/app/x", ("/app", "/x")),  # a trailing "/" of the mount point is dropped
        # not inside the mount: the path is kept whole (issue 18: it was "lication")
        ("/app", "/application", ("/app", "/application")),
        ("/app", "/app-x/y", ("/app", "/app-x/y")),
        ("/app", "/other", ("/app", "/other")),
        ("/", "/x", ("", "/x")),
    ],
)
def test_the_mount_point_root_path_or_script_name_ends_at_a_slash(
    script_name: str, target: str, expected: tuple[str, str]
) -> None:
    env = build(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target.encode(), script_name=script_name)
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == expected


# --- gunicorn's forwarder_headers: a trusted proxy's SCRIPT_NAME header -------------------

FORWARDERS = ["SCRIPT_NAME", "PATH_INFO"]


def forwarded(
    raw: bytes, peer: Any = ("127.0.0.1", 5555), forwarders: list[str] | None = FORWARDERS
) -> dict[str, Any]:
    b = HttpEnvironBuilder(
        base_environ(True, False),
        ("127.0.0.1", 8000),
        AddressMatcher(["127.0.0.1"]),
        SECURE,
        forwarders,
    )
    return b.build(head(raw), peer)


def test_script_name_header_from_a_trusted_proxy_mounts_the_app() -> None:
    env = forwarded(b"GET /prefix/env/x?q=1 HTTP/1.1\r\nHost: h\r\nSCRIPT_NAME: /prefix/\r\n\r\n")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/prefix", "/env/x")
    assert env["HTTP_SCRIPT_NAME"] == "/prefix/"  # kept as gunicorn keeps it
    # a proxy that already stripped the prefix: PATH_INFO stays whole
    env = forwarded(b"GET /env HTTP/1.1\r\nHost: h\r\nScript_Name: /prefix\r\n\r\n")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/prefix", "/env")
    # UNIX socket peers are trusted, as for secure_scheme_headers
    env = forwarded(b"GET /p/x HTTP/1.1\r\nHost: h\r\nSCRIPT_NAME: /p\r\n\r\n", peer="")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/p", "/x")
    # "/prefixed" is not under "/prefix": kept whole (issue 18)
    env = forwarded(b"GET /prefixed HTTP/1.1\r\nHost: h\r\nSCRIPT_NAME: /prefix\r\n\r\n")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/prefix", "/prefixed")


def test_script_name_header_is_dropped_from_others_and_when_not_listed() -> None:
    raw = b"GET /prefix/env HTTP/1.1\r\nHost: h\r\nSCRIPT_NAME: /prefix\r\nPATH_INFO: /z\r\n\r\n"
    for env in (forwarded(raw, peer=("10.9.9.9", 1)), forwarded(raw, forwarders=[])):
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", "/prefix/env")
        assert "HTTP_SCRIPT_NAME" not in env and "HTTP_PATH_INFO" not in env


def test_other_forwarder_headers_reach_the_environ_as_http_keys() -> None:
    raw = b"GET /x HTTP/1.1\r\nHost: h\r\nPATH_INFO: /z\r\nREMOTE_USER: ann\r\nX_Other: 1\r\n\r\n"
    env = forwarded(raw)
    assert env["HTTP_PATH_INFO"] == "/z" and env["PATH_INFO"] == "/x"
    assert "HTTP_REMOTE_USER" not in env and "HTTP_X_OTHER" not in env
    env = forwarded(raw, forwarders=["*"])
    assert (env["HTTP_REMOTE_USER"], env["HTTP_X_OTHER"]) == ("ann", "1")
