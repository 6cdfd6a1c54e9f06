"""``--root-path`` through the real CLI, every worker kind: behind an nginx that strips the
prefix, a request for ``/api/x/y`` reaches a WSGI application as ``SCRIPT_NAME /api`` and
``PATH_INFO /x/y`` and an ASGI one as ``root_path /api``, ``path /api/x/y``; a uwsgi listener
keeps the front end's SCRIPT_NAME; the SCRIPT_NAME environment variable is the same rule."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conftest import Nginx, Server, free_port
from uwsgi_support import (
    APP_OF,
    WORKER_KINDS,
    body_of,
    exchange,
    good_env,
    packet,
    request_facts,
    status_of,
)

STRIPPING = """
        location /api/ {
            proxy_pass http://backend/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }
"""


def facts(srv: Server | Nginx, path: str) -> dict[str, str]:
    status, _, body = srv.request(path)
    assert status == 200, body
    return request_facts(body)


@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_root_path_behind_a_front_end_that_strips_the_prefix(
    server: Callable[..., Server], nginx: Callable[..., Nginx], kind: str
) -> None:
    http, uwsgi = f"127.0.0.1:{free_port()}", free_port()
    args = ["-k", kind, "--workers", "1", "--root-path", "/api/", "--bind", http]
    args += ["--bind", f"uwsgi://127.0.0.1:{uwsgi}"]
    srv = server(args, app=APP_OF[kind], bind=http)
    ngx = nginx(STRIPPING, srv.bind)
    seen = facts(ngx, "/api/env/x/y?q=1")  # nginx passes /env/x/y
    assert (seen["script"], seen["path"], seen["query"]) == ("/api", "/env/x/y", "q=1")
    seen = facts(srv, "/api/env/x")  # straight, with the prefix: not doubled
    assert (seen["script"], seen["path"]) == ("/api", "/env/x")
    raw = exchange(("127.0.0.1", uwsgi), packet(good_env("/env/u")))  # uwsgi: the front end's
    assert status_of(raw) == 200 and request_facts(body_of(raw))["script"] == ""


@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_the_script_name_environment_variable_is_the_same_rule(
    server: Callable[..., Server], kind: str
) -> None:
    srv = server(["-k", kind, "--workers", "1"], app=APP_OF[kind], env={"SCRIPT_NAME": "/m/"})
    seen = facts(srv, "/env/x")
    assert (seen["script"], seen["path"]) == ("/m", "/env/x")
    over = server(
        ["-k", kind, "--workers", "1", "--root-path", "/api"],
        app=APP_OF[kind],
        env={"SCRIPT_NAME": "/m"},
    )
    assert facts(over, "/env/x")["script"] == "/api"  # root_path wins
