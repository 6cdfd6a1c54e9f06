"""Why a worker leaves, and what it does on the way out, through the real command.

A worker that reached ``max_requests`` hands new connections to its replacement; a worker the
master aborts for its timeout says which request it was stuck in and answers it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from conftest import Server

KINDS = {
    "sync": (["-k", "sync"], "app:app", 0),
    # one request of slack: a thread may be serving when another reaches the limit
    "gthread": (["-k", "gthread", "--threads", "4"], "app:app", 1),
    "asgi": (["-k", "asgi"], "asgi_app:app", 0),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_max_requests_recycles_under_sequential_traffic(server: Callable[..., Server],
                                                        kind: str) -> None:
    """One new connection per request, one after the other: every request is answered, and
    no worker serves more than max_requests (+ the slack) of them."""
    args, app, slack = KINDS[kind]
    srv = server([*args, "--workers", "1", "--max-requests", "5"], app=app)
    pids = []
    for _ in range(14):
        status, _, body = srv.request("/pid", timeout=20)
        assert status == 200, (status, body, srv.log())
        pids.append(body)
    runs = [(pid, len(list(group))) for pid, group in itertools.groupby(pids)]
    assert len(runs) >= 2, (runs, srv.log())
    assert all(n <= 5 + slack for _, n in runs), (runs, srv.log())
    assert len({pid for pid, _ in runs}) == len(runs), runs  # a retired worker never returns
    assert "Autorestarting worker after current request." in srv.log()
