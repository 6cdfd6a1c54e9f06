"""--check-config's hook check: attribute reads on ``server``/``worker`` found in the bytecode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from monoceros.arbiter import Arbiter
from monoceros.config import Config
from monoceros.hook_check import attribute_uses, check_hooks, hook_attributes
from monoceros.workers.base import Worker
from monoceros.workers.sync import SyncWorker

OWNERS: dict[str, type] = {"server": Arbiter, "worker": SyncWorker}


def _reads(func: Any, params: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(u.param, u.name) for u in attribute_uses(func, params) if not u.store]


def test_reads_on_each_parameter_are_found_by_position() -> None:
    def post_fork(arbiter: Any, w: Any) -> None:  # gunicorn passes them by position
        arbiter.log.info("%s %s", arbiter.address, w.pid)
        w.tmp.notify()

    assert _reads(post_fork, ("server", "worker")) == [
        ("server", "log"),
        ("server", "address"),
        ("worker", "pid"),
        ("worker", "tmp"),
    ]


def test_line_numbers_point_at_the_read() -> None:
    def when_ready(server: Any) -> None:
        x = 1
        server.nope  # noqa: B018
        del x

    [use] = attribute_uses(when_ready, ("server",))
    assert use.line == when_ready.__code__.co_firstlineno + 2


def test_other_parameters_and_locals_are_not_checked() -> None:
    def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
        other = worker
        req.anything, environ.anything, resp.anything, other.anything  # noqa: B018

    assert _reads(post_request, ("worker", "req", "environ", "resp")) == []


def test_guarded_reads_are_left_alone() -> None:
    def by_hasattr(server: Any) -> None:
        if hasattr(server, "maybe"):
            server.maybe  # noqa: B018

    def by_except(server: Any) -> None:
        try:
            server.maybe  # noqa: B018
        except AttributeError:
            pass

    def reassigned(server: Any) -> None:
        server = object()
        server.maybe  # noqa: B018

    def in_a_loop(server: Any, worker: Any) -> None:
        for worker in server.WORKERS.values():
            worker.maybe  # noqa: B018

    assert _reads(by_hasattr, ("server",)) == []
    assert _reads(by_except, ("server",)) == []
    assert _reads(reassigned, ("server",)) == []
    assert _reads(in_a_loop, ("server", "worker")) == [("server", "WORKERS")]


def test_callables_that_are_not_functions_are_skipped() -> None:
    class Hook:
        def __call__(self, server: Any) -> None:
            server.nope  # noqa: B018

    assert attribute_uses(Hook(), ("server",)) == []
    assert attribute_uses(print, ("server",)) == []


def _config(**hooks: Any) -> Config:
    cfg = Config(environ={})
    for name, func in hooks.items():
        cfg.set(name, func)
    return cfg


def test_check_hooks_reports_only_missing_attributes() -> None:
    def when_ready(server: Any) -> None:
        server.log.info("Listening on: %s", server.address)
        server.no_such_thing  # noqa: B018

    def post_worker_init(worker: Any) -> None:
        worker.tmp.notify()
        worker.log.info("%s %s %s", worker.timeout, worker.nr, worker.missing_too)

    findings = check_hooks(
        _config(when_ready=when_ready, post_worker_init=post_worker_init), OWNERS
    )
    assert [(f.hook, f.use.param, f.use.name) for f in findings] == [
        ("when_ready", "server", "no_such_thing"),
        ("post_worker_init", "worker", "missing_too"),
    ]
    assert str(findings[0]).startswith(f"{Path(__file__)}:")
    assert (
        "the when_ready hook reads server.no_such_thing, which monoceros's Arbiter does "
        "not have" in str(findings[0])
    )


def test_an_attribute_one_hook_sets_is_allowed_in_the_others() -> None:
    def on_starting(server: Any) -> None:
        server.started_at = 1.0

    def when_ready(server: Any) -> None:
        server.log.info("%s", server.started_at)

    assert check_hooks(_config(on_starting=on_starting, when_ready=when_ready), OWNERS) == []


def test_the_short_post_request_form_is_checked_through_its_adapter() -> None:
    def post_request(worker: Any, req: Any) -> None:
        worker.nope  # noqa: B018

    [finding] = check_hooks(_config(post_request=post_request), OWNERS)
    assert (finding.hook, finding.use.name) == ("post_request", "nope")


def test_check_hooks_calls_no_hook() -> None:
    def on_starting(server: Any) -> None:
        raise AssertionError("called")

    assert check_hooks(_config(on_starting=on_starting), OWNERS) == []


#: what hooks in gunicorn config files read on ``server`` (the Arbiter) and ``worker``
GUNICORN_SERVER = (
    "address",
    "LISTENERS",
    "WORKERS",
    "timeout",
    "master_pid",
    "pid",
    "proc_name",
    "cfg",
    "log",
    "app",
    "num_workers",
    "worker_age",
    "reexec_pid",
    "master_name",
    "pidfile",
    "systemd",
    "worker_class",
    "kill_worker",
    "WORKER_BOOT_ERROR",
    "APP_LOAD_ERROR",
)
GUNICORN_WORKER = (
    "age",
    "pid",
    "ppid",
    "sockets",
    "app",
    "timeout",
    "cfg",
    "booted",
    "aborted",
    "reloader",
    "nr",
    "max_requests",
    "alive",
    "log",
    "tmp",
    "wsgi",
    "notify",
)


def test_gunicorns_attributes_exist() -> None:
    assert set(GUNICORN_SERVER) <= hook_attributes(Arbiter)
    assert set(GUNICORN_WORKER) <= hook_attributes(Worker)


def _public_instance_names(obj: object) -> set[str]:
    return {name for name in vars(obj) if not name.startswith("_")}


def test_every_attribute_init_sets_is_known_to_the_check() -> None:
    """Drift: a public attribute added in __init__ without a class annotation fails here."""
    from monoceros.config import WORKER_CLASSES
    from monoceros.heartbeat import Heartbeat
    from monoceros.logs import Logger
    from monoceros.workers import load_worker_class

    cfg = Config(environ={})
    arbiter = Arbiter(cfg)
    assert _public_instance_names(arbiter) <= hook_attributes(Arbiter)
    for path in WORKER_CLASSES.values():
        cls = load_worker_class(path)
        heartbeat = Heartbeat()
        worker = cls(1, 1, [], cfg, Logger(cfg), heartbeat)
        assert _public_instance_names(worker) <= hook_attributes(cls), cls
        heartbeat.close()


DOCS = Path(__file__).resolve().parents[2] / "docs" / "hooks.md"


@pytest.mark.parametrize(("cls", "prefix"), [(Arbiter, "server"), (Worker, "worker")])
def test_docs_list_every_attribute(cls: type, prefix: str) -> None:
    """Drift: every annotated attribute and property is documented in docs/hooks.md."""
    import inspect

    text = DOCS.read_text()
    names = set(inspect.get_annotations(cls))
    names |= {n for n, v in vars(cls).items() if isinstance(v, property) or n.isupper()}
    missing = sorted(n for n in names if not n.startswith("_") and f"`{prefix}.{n}`" not in text)
    assert not missing, missing
