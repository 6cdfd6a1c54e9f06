"""HTTP/1.1 to the letter (issue 13), as a client sees it through the real ``monoceros`` CLI of
every worker kind: an Upgrade offer the server does not take (``curl --http2``'s h2c on a POST)
keeps the request body and the connection; extension methods reach the application; a fragment
never does; an IPv6 absolute-form target keeps its brackets. One server per worker kind.
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import Server, module_server, read_response

KINDS = {
    "sync": ["app:app", "--worker-class", "sync"],
    "gthread": ["app:app", "--worker-class", "gthread", "--threads", "4"],
    "asgi": ["asgi_app:app", "--worker-class", "asgi"],
}
#: what curl --http2 sends on a plain-text POST
H2C = (
    "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
)
BODY = b'{"name": "monoceros", "kind": "h2c"}'  # 36 bytes


@pytest.fixture(scope="module", params=list(KINDS))
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, Server]]:
    with module_server(KINDS[request.param], "monoceros-letter-") as srv:
        yield request.param, srv


def send(sock: socket.socket, raw: bytes, method: str = "POST") -> tuple[int, dict[str, Any]]:
    """Write ``raw`` and read one response: its status and its JSON body."""
    sock.sendall(raw)
    status, _, body = read_response(sock, method)
    return status, json.loads(body) if body[:1] == b"{" else {}


def echoed(body: bytes) -> dict[str, Any]:
    return {"len": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_h2c_offer_on_a_post_keeps_its_body(server: tuple[str, Server]) -> None:
    kind, srv = server
    assert len(BODY) == 36
    head = f"POST /echo HTTP/1.1\r\nHost: test\r\n{H2C}Content-Length: 36\r\n\r\n".encode()
    with srv.connect() as s:
        assert send(s, head + BODY) == (200, echoed(BODY))
        if kind != "sync":  # the offer was ignored: the connection is still HTTP/1.1
            assert send(s, head + BODY) == (200, echoed(BODY))
    assert "Traceback" not in srv.log()


def test_h2c_offer_on_a_chunked_post_keeps_its_body(server: tuple[str, Server]) -> None:
    _, srv = server
    head = f"POST /echo HTTP/1.1\r\nHost: test\r\n{H2C}Transfer-Encoding: chunked\r\n\r\n"
    chunked = b"10\r\n" + BODY[:16] + b"\r\n14\r\n" + BODY[16:] + b"\r\n0\r\n\r\n"
    with srv.connect() as s:
        assert send(s, head.encode() + chunked) == (200, echoed(BODY))


@pytest.mark.parametrize("server", ["gthread", "asgi"], indirect=True)  # sync: one per connection
def test_h2c_offer_on_a_get_then_more_requests(server: tuple[str, Server]) -> None:
    _, srv = server
    with srv.connect() as s:
        raw = f"GET /pid HTTP/1.1\r\nHost: test\r\n{H2C}\r\n".encode()
        s.sendall(raw)
        assert read_response(s)[0] == 200
        raw = b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 36\r\n\r\n" + BODY
        assert send(s, raw) == (200, echoed(BODY))


def app_view(kind: str, srv: Server, line: str, extra: str = "") -> dict[str, Any]:
    """What the application saw of a request: the WSGI environ or the ASGI scope (JSON)."""
    with srv.connect() as s:
        status, seen = send(s, f"{line}\r\nHost: test\r\n{extra}\r\n".encode(), "GET")
    assert status == 200, seen
    return seen


def test_an_extension_method_reaches_the_application(server: tuple[str, Server]) -> None:
    kind, srv = server
    seen = app_view(kind, srv, "FOO /env/x HTTP/1.1")
    assert (seen["REQUEST_METHOD"] if kind != "asgi" else seen["method"]) == "FOO"


def test_a_fragment_never_reaches_the_application(server: tuple[str, Server]) -> None:
    kind, srv = server
    seen = app_view(kind, srv, "GET /env/p?a=1#frag HTTP/1.1")
    if kind == "asgi":
        assert (seen["path"], seen["query_string"]) == ("/env/p", "a=1")
    else:
        assert (seen["PATH_INFO"], seen["QUERY_STRING"]) == ("/env/p", "a=1")


# an ASGI scope has no host of its own: the Host header is in its headers as sent
@pytest.mark.parametrize("server", ["sync", "gthread"], indirect=True)
def test_ipv6_absolute_form_keeps_its_brackets(server: tuple[str, Server]) -> None:
    kind, srv = server
    seen = app_view(kind, srv, "GET http://[::1]:8080/env HTTP/1.1")
    assert seen["HTTP_HOST"] == "[::1]:8080"
    assert (seen["SERVER_NAME"], seen["SERVER_PORT"]) == ("::1", "8080")
