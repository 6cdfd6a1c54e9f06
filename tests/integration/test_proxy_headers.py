"""``--proxy-headers`` through the real CLI and a real nginx ``proxy_pass``, every worker kind:
the client nginx appends to ``X-Forwarded-For`` is the application's client and the access
log's ``%(h)s``; what a client wrote into the header itself, or a header from a peer outside
``forwarded_allow_ips``, is not believed."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import pytest

from conftest import Nginx, Server, read_response, wait_for
from uwsgi_support import APP_OF, WORKER_KINDS

FORWARDING = """
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }
"""


def client_seen(port: int, source: str, headers: str = "") -> tuple[str, int | None]:
    """GET /env from ``source`` to 127.0.0.1:``port``: the client the application saw."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(f"GET /env HTTP/1.1\r\nHost: test\r\n{headers}Connection: close\r\n\r\n".encode())
        status, _, body = read_response(s)
    assert status == 200, body
    data = json.loads(body)
    if "client" in data:
        return data["client"][0], data["client"][1]
    return data["REMOTE_ADDR"], int(data["REMOTE_PORT"])


@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_the_client_nginx_forwards_for(
    server: Callable[..., Server], nginx: Callable[..., Nginx], kind: str
) -> None:
    args = ["-k", kind, "--workers", "1", "--access-logfile", "-", "--proxy-headers"]
    srv = server(args, app=APP_OF[kind])
    ngx = nginx(FORWARDING, srv.bind)
    spoofed = "X-Forwarded-For: 198.51.100.66\r\n"  # the client's own claim
    assert client_seen(ngx.port, "127.0.0.2", spoofed) == ("127.0.0.2", 0)
    assert client_seen(ngx.port, "127.0.0.3") == ("127.0.0.3", 0)
    assert wait_for(lambda: "127.0.0.3 - - [" in srv.log(), 10), srv.log()  # %(h)s
    assert "198.51.100.66 - - [" not in srv.log()
    # straight to monoceros from a peer outside forwarded_allow_ips: the header is ignored
    direct = client_seen(srv.port, "127.0.0.2", "X-Forwarded-For: 198.51.100.66\r\n")
    assert direct[0] == "127.0.0.2" and direct[1] != 0


@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_without_the_flag_the_peer_is_the_client(
    server: Callable[..., Server], nginx: Callable[..., Nginx], kind: str
) -> None:
    srv = server(["-k", kind, "--workers", "1"], app=APP_OF[kind])
    ngx = nginx(FORWARDING, srv.bind)
    assert client_seen(ngx.port, "127.0.0.2")[0] == "127.0.0.1"  # nginx
