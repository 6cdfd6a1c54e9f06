"""``wsgi.input.read(CONTENT_LENGTH)`` returns the whole body in one call, as frameworks expect.

Django's ``request.body`` (and many hand-written apps) read ``CONTENT_LENGTH`` bytes with a
single ``read(n)``; a body that arrives in many pieces must still come back whole, as it does
under gunicorn. Driven through nginx ``uwsgi_pass`` and straight over HTTP, for both WSGI
kinds, with a 1 MiB body (many socket reads).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import pytest

from conftest import Nginx, Server, wait_for
from uwsgi_support import exchange, good_env, nginx_uwsgi_params, packet, status_of

UWSGI_LOCATION = """
location / {{
    include {params};
    uwsgi_pass backend;
    client_max_body_size 4m;
}}"""

BODY = os.urandom(1024 * 1024)


@pytest.mark.parametrize("kind", ["sync", "gthread"])
def test_read_of_content_length_through_nginx_uwsgi_pass(
    server: Callable[..., Server], nginx: Callable[..., Nginx], kind: str
) -> None:
    srv = server(["--worker-class", kind, "--protocol", "uwsgi", "--workers", "1"], wait=False)
    addr = ("127.0.0.1", srv.port)
    assert wait_for(lambda: status_of(exchange(addr, packet(good_env()), timeout=2)) == 200, 20)
    ngx = nginx(UWSGI_LOCATION.format(params=nginx_uwsgi_params()), f"127.0.0.1:{srv.port}")
    status, _, body = ngx.request("/echo-exact", method="POST", body=BODY)
    assert status == 200, srv.log()
    assert len(body) == len(BODY) and hashlib.sha256(body).digest() == hashlib.sha256(BODY).digest()


@pytest.mark.parametrize("kind", ["sync", "gthread"])
def test_read_of_content_length_over_http(server: Callable[..., Server], kind: str) -> None:
    srv = server(["--worker-class", kind, "--workers", "1"])
    status, _, body = srv.request("/echo-exact", method="POST", body=BODY, timeout=30)
    assert status == 200, srv.log()
    assert len(body) == len(BODY) and hashlib.sha256(body).digest() == hashlib.sha256(BODY).digest()
