"""``http_scope`` in monoceros/protocols/_uwsgi_vars.c against the Python method it stands in for.

:meth:`UwsgiScopeBuilder.from_packet` is the asgi fast path's one pass from a uwsgi packet to an
http scope. Its Python twin, :meth:`UwsgiScopeBuilder._packet_scope`, is the general path
restricted to the packets the C function takes (``parse_head`` then :meth:`build`); where the C
extension is built, every case here runs through both, which must give the same result: the same
``(scope, bytes used, Content-Length)`` with the scope's keys in the same order, or None for
both. The twin's own tests (it declines what it says, it agrees with the general path) also run
without the C extension (the ``MONOCEROS_PURE=1`` pass).
"""

from __future__ import annotations

import os
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monoceros.asgi import scope as scope_module
from monoceros.asgi.scope import UwsgiScopeBuilder
from monoceros.protocols.errors import ProtocolError
from monoceros.protocols.uwsgi import UwsgiRequest, parse_head

from unit_support import encode

http_scope: Any
try:
    from monoceros.protocols._uwsgi_vars import http_scope
except ImportError:  # not built (no C compiler), or MONOCEROS_PURE: the twin's tests only
    if os.environ.get("MONOCEROS_EXPECT_COMPILED") == "1" and not os.environ.get("MONOCEROS_PURE"):
        raise
    http_scope = None

native = pytest.mark.skipif(http_scope is None, reason="the C extension is not loaded")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "uwsgi-packets"
SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TCP = UwsgiScopeBuilder(("10.0.0.1", 8000))
UNIX = UwsgiScopeBuilder("/run/app.sock")
STATE = {"db": "pool"}

LATIN1 = st.characters(min_codepoint=0, max_codepoint=255)
#: the vars the scope reads, headers front ends send, the declined ones, and anything
KEYS = st.one_of(
    st.sampled_from(
        [
            "REQUEST_METHOD",
            "PATH_INFO",
            "SCRIPT_NAME",
            "REQUEST_URI",
            "QUERY_STRING",
            "SERVER_PROTOCOL",
            "REMOTE_ADDR",
            "REMOTE_PORT",
            "SERVER_NAME",
            "SERVER_PORT",
            "HTTPS",
            "UWSGI_SCHEME",
            "REQUEST_SCHEME",
            "CONTENT_LENGTH",
            "CONTENT_TYPE",
            "HTTP_HOST",
            "HTTP_USER_AGENT",
            "HTTP_X_FORWARDED_FOR",
            "HTTP_",
            "HTTP_UPGRADE",
            "HTTP_TRANSFER_ENCODING",
            "HTTP_CONTENT_LENGTH",
            "HTTP_CONTENT_TYPE",
            "DOCUMENT_ROOT",
        ]
    ),
    st.text(LATIN1, max_size=30),
)
VALUES = st.one_of(
    st.sampled_from(
        [
            "",
            "GET",
            "POST",
            "G\u00e9T",
            "HTTP/1.1",
            "HTTP/1.0",
            "HTTP/2",
            "HTTP/",
            "HTTP/3",
            "SPDY/3",
            "/",
            "/app",
            "/app/",
            "/app/x",
            "/apple",
            "/caf\u00c3\u00a9",
            "/\u00ff\u00fe",
            "http://h/p?q",
            "https://host",
            "x://y/z",
            "/a?b=c",
            "on",
            "ON",
            "yes",
            "0",
            "https",
            "HTTPS",
            "http",
            "12",
            "0012",
            "1234567890123456789",
            "-1",
            "\u00d9\u00a0",  # U+0660 (a digit to str.isdigit) as UTF-8 bytes
            "localhost",
            "a\r\nb",
        ]
    ),
    st.text(LATIN1, max_size=40),
)


def packet(pairs: list[tuple[str, str]], modifier1: int = 0, body: bytes = b"") -> bytes:
    """The uwsgi packet of ``pairs`` (latin-1) and ``body``."""
    return encode(
        [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs], modifier1, body=body
    )


def general(
    builder: UwsgiScopeBuilder, data: bytes, state: dict[str, Any] | None
) -> tuple[dict[str, Any], int, int] | None:
    """What the general path makes of ``data``: parse_head, then build."""
    try:
        result = parse_head(data)
    except ProtocolError:
        return None
    if result is None:
        return None
    head, used = result
    if not isinstance(head, UwsgiRequest):
        return None
    return builder.build(head.environ, state), used, head.content_length


def both(
    data: bytes,
    builder: UwsgiScopeBuilder = TCP,
    state: dict[str, Any] | None = STATE,
    max_vars: int = 65535,
) -> tuple[dict[str, Any], int, int] | None:
    """``data`` through the twin and, where built, the C function: they must agree; a scope
    the twin makes is the general path's."""
    python = builder._packet_scope(data, max_vars, state)
    if python is not None:
        assert python == general(builder, data, state)
        if state is not None:
            assert python[0]["state"] == state and python[0]["state"] is not state
    if http_scope is not None:
        c = http_scope(data, max_vars, scope_module._HTTP_SCOPE, builder._server, state)
        assert c == python, (data, c, python)
        if c is not None and python is not None:
            assert list(c[0]) == list(python[0]), "the same keys in the same order"
            assert [type(v) for v in c[0].values()] == [type(v) for v in python[0].values()]
            assert c[0]["state"] is not state if state is not None else "state" not in c[0]
    return python


@SETTINGS
@given(st.lists(st.tuples(KEYS, VALUES), max_size=20), st.sampled_from([TCP, UNIX]))
def test_generated_packets_alike(pairs: list[tuple[str, str]], builder: UwsgiScopeBuilder) -> None:
    both(packet(pairs), builder)
    both(packet(pairs), builder, None)  # again: from the caches, and without a state


@SETTINGS
@given(
    st.lists(st.tuples(KEYS, VALUES), max_size=12),
    st.sampled_from([0, 30, 1, 5, 100]),
    st.binary(max_size=8),
    st.integers(1, 300),
)
def test_modifiers_bodies_and_limits_alike(
    pairs: list[tuple[str, str]], modifier1: int, body: bytes, max_vars: int
) -> None:
    data = packet([("REQUEST_METHOD", "GET"), *pairs], modifier1, body)
    both(data)
    both(data, max_vars=max_vars)


@SETTINGS
@given(st.binary(max_size=300))
def test_garbage_alike(data: bytes) -> None:
    both(data)
    both(b"\x00" + data)


def captures() -> list[tuple[str, bytes]]:
    found = [(path.name, path.read_bytes()) for path in sorted(FIXTURES.glob("*.bin"))]
    assert found, f"no uwsgi captures in {FIXTURES}"
    return found


@pytest.mark.parametrize(("name", "data"), captures())
def test_captures_cut_at_every_byte_alike(name: str, data: bytes) -> None:
    both(data)
    both(data, UNIX, None)
    size = 4 + (data[1] | data[2] << 8)
    for cut in range(min(len(data), size + 2)):
        both(data[:cut])


def test_most_captures_are_taken() -> None:
    """The fast path is the usual path: nginx's and Apache's plain requests are taken."""
    taken = {name for name, data in captures() if both(data) is not None}
    assert {
        "nginx-get-query.bin",
        "nginx-head.bin",
        "nginx-post-form100.bin",
        "apache-get-query.bin",
    } <= taken
    assert not any("websocket" in name or "chunked" in name for name in taken)
    assert len(taken) >= len(captures()) // 2


def test_a_usual_request() -> None:
    data = packet(
        [
            ("QUERY_STRING", "a=1"),
            ("REQUEST_METHOD", "POST"),
            ("CONTENT_TYPE", "text/plain"),
            ("CONTENT_LENGTH", "5"),
            ("REQUEST_URI", "/app/p%20q?a=1"),
            ("PATH_INFO", "/app/p q"),
            ("SCRIPT_NAME", "/app/"),
            ("SERVER_PROTOCOL", "HTTP/1.0"),
            ("REQUEST_SCHEME", "https"),
            ("REMOTE_ADDR", "192.0.2.7"),
            ("REMOTE_PORT", "40312"),
            ("SERVER_PORT", "443"),
            ("SERVER_NAME", "example.org"),
            ("HTTP_HOST", "example.org"),
            ("HTTP_X_REQUEST_ID", "abc"),
        ],
        body=b"hello",
    )
    result = both(data)
    assert result is not None
    scope, used, length = result
    assert (used, length) == (len(data) - 5, 5)
    assert scope == {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.0",
        "server": ("example.org", 443),
        "client": ("192.0.2.7", 40312),
        "scheme": "https",
        "method": "POST",
        "root_path": "/app",
        "path": "/app/p q",
        "raw_path": b"/app/p%20q",
        "query_string": b"a=1",
        "headers": [
            (b"content-type", b"text/plain"),
            (b"content-length", b"5"),
            (b"host", b"example.org"),
            (b"x-request-id", b"abc"),
        ],
        "state": STATE,
    }


@pytest.mark.parametrize(
    "pairs",
    [
        [("REQUEST_METHOD", "GET"), ("HTTP_UPGRADE", "websocket")],
        [("REQUEST_METHOD", "POST"), ("HTTP_TRANSFER_ENCODING", "chunked")],
        [("REQUEST_METHOD", "GET"), ("HTTP_A", "1"), ("HTTP_A", "2")],
        [("REQUEST_METHOD", "GET"), ("HTTP_\u00c9", "1")],
        [("REQUEST_METHOD", "GET"), ("X", "a\r\nb")],
        [("PATH_INFO", "/")],
        [("REQUEST_METHOD", "")],
        [("REQUEST_METHOD", "GE T")],
        [("REQUEST_METHOD", "GET"), ("CONTENT_LENGTH", "x1")],
        [("REQUEST_METHOD", "GET"), ("CONTENT_LENGTH", "1" * 19)],
        [("REQUEST_METHOD", "GET")] + [(f"HTTP_X_{i}", "v") for i in range(256)],
    ],
    ids=lambda pairs: pairs[-1][0][:24],
)
def test_declined_to_the_general_path(pairs: list[tuple[str, str]]) -> None:
    assert both(packet(pairs)) is None


def test_nginx_copies_of_the_body_headers_are_dropped() -> None:
    """nginx sends a body's Content-Type and Content-Length twice (CONTENT_* and HTTP_CONTENT_*):
    a POST is taken, with the header list of the CONTENT_* vars alone, as parse_head has it."""
    data = packet(
        [
            ("REQUEST_METHOD", "POST"),
            ("CONTENT_TYPE", "application/json"),
            ("CONTENT_LENGTH", "2"),
            ("PATH_INFO", "/"),
            ("HTTP_HOST", "h"),
            ("HTTP_CONTENT_TYPE", "text/other"),
            ("HTTP_CONTENT_LENGTH", "99"),
        ],
        body=b"{}",
    )
    result = both(data)
    assert result is not None
    scope, used, length = result
    assert (used, length) == (len(data) - 2, 2)
    assert scope["headers"] == [
        (b"content-type", b"application/json"),
        (b"content-length", b"2"),
        (b"host", b"h"),
    ]
    alone = packet([("REQUEST_METHOD", "GET"), ("HTTP_CONTENT_LENGTH", "1")])
    result = both(alone)
    assert result is not None and result[0]["headers"] == [] and result[2] == 0


def test_declined_heads() -> None:
    whole = packet([("REQUEST_METHOD", "GET")])
    assert both(whole[:-1]) is None  # not whole yet
    assert both(packet([("REQUEST_METHOD", "GET")], modifier1=100)) is None  # a ping
    assert both(packet([("REQUEST_METHOD", "GET")], modifier1=5)) is None  # unsupported
    assert both(encode([])) is None  # no vars
    assert both(whole, max_vars=len(whole) - 5) is None  # over uwsgi_max_vars
    assert both(packet([("REQUEST_METHOD", "GET")], modifier1=30)) is not None
    assert both(packet([("REQUEST_METHOD", "GET")] + [(f"HTTP_X_{i}", "v") for i in range(255)]))


def test_paths_mounts_and_targets() -> None:
    def scope_of(*pairs: tuple[str, str]) -> dict[str, Any]:
        result = both(packet([("REQUEST_METHOD", "GET"), *pairs]))
        assert result is not None
        return result[0]

    s = scope_of(("SCRIPT_NAME", "/app//"), ("PATH_INFO", "/app/x"))
    assert (s["root_path"], s["path"], s["raw_path"]) == ("/app", "/app/x", b"/app/x")
    s = scope_of(("SCRIPT_NAME", "/app"), ("PATH_INFO", "/apple"))
    assert (s["root_path"], s["path"], s["raw_path"]) == ("/app", "/app/apple", b"/app/apple")
    s = scope_of(("SCRIPT_NAME", "/"), ("PATH_INFO", "/x"))
    assert (s["root_path"], s["path"], s["raw_path"]) == ("", "/x", b"/x")
    s = scope_of(("PATH_INFO", "/caf\u00c3\u00a9/\u00ff"), ("REQUEST_URI", "/caf%C3%A9/%FF?x"))
    assert (s["path"], s["raw_path"]) == ("/caf\u00e9/\ufffd", b"/caf%C3%A9/%FF")
    assert scope_of(("REQUEST_URI", "http://h:1/p/q?x"))["raw_path"] == b"/p/q"
    assert scope_of(("REQUEST_URI", "https://host"))["raw_path"] == b"/"
    assert scope_of(("SERVER_PROTOCOL", "HTTP/3"))["http_version"] == "3"
    assert scope_of(("SERVER_PROTOCOL", "SPDY/3"))["http_version"] == "1.1"
    assert scope_of(("HTTPS", "Yes"), ("REQUEST_SCHEME", "http"))["scheme"] == "https"
    assert scope_of(("UWSGI_SCHEME", "HTTPS"))["scheme"] == "https"
    s = scope_of(("REMOTE_ADDR", "::1"), ("REMOTE_PORT", "x"), ("SERVER_NAME", ""))
    assert (s["client"], s["server"]) == (("::1", None), ("10.0.0.1", 8000))
    s = scope_of(("REMOTE_PORT", "1"), ("SERVER_NAME", "h"), ("SERVER_PORT", "9" * 20))
    assert (s["client"], s["server"]) == (None, ("h", int("9" * 20)))


def test_from_packet_takes_the_c_function_where_built() -> None:
    data = packet([("REQUEST_METHOD", "GET"), ("PATH_INFO", "/")])
    assert TCP.from_packet(data, 65535, None) == TCP._packet_scope(data, 65535, None)
    assert (scope_module._native_scope is not None) == (http_scope is not None)


@native
def test_field_names_sharing_a_cache_slot_are_told_apart() -> None:
    one = "HTTP_X_A" + "1111" + "_TRAILER"
    two = "HTTP_X_A" + "2222" + "_TRAILER"
    for _ in range(3):
        for name in (one, two, "HTTP_" + "Y" * 80):
            result = both(packet([("REQUEST_METHOD", "GET"), (name, "v")]))
            assert result is not None
            expected = name[5:].lower().replace("_", "-").encode()
            assert result[0]["headers"] == [(expected, b"v")]


@native
def test_only_the_documented_arguments_are_taken() -> None:
    data = packet([("REQUEST_METHOD", "GET")])
    template = scope_module._HTTP_SCOPE
    with pytest.raises(TypeError):
        http_scope(bytearray(data), 65535, template, ("h", 1), None)
    with pytest.raises(TypeError):
        http_scope(data, 65535, template, ("h", 1), [])
    with pytest.raises(TypeError):
        http_scope(data, 65535, template, ("h", 1))


@native
def test_no_memory_kept_per_request() -> None:
    """Ports, URIs and header values change on every request: nothing of them is kept."""

    def request(i: int) -> bytes:
        return packet(
            [
                ("REQUEST_METHOD", "GET"),
                ("REMOTE_ADDR", f"10.0.{i % 250}.{i % 7}"),
                ("REMOTE_PORT", str(i)),
                ("REQUEST_URI", f"/item/{i}?q={'x' * 40}"),
                ("HTTP_X_ID", str(i)),
            ]
        )

    template = scope_module._HTTP_SCOPE
    for i in range(2000):
        http_scope(request(i), 65535, template, ("h", 1), STATE)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(2000, 22000):
            http_scope(request(i), 65535, template, ("h", 1), STATE)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"{grown} bytes kept after 20,000 packets"
    assert sys.getrefcount(template) < 1000
