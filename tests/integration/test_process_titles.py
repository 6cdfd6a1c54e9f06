"""Process titles (proc_name, -n), read the way ps reads them: /proc/PID/cmdline of the master
and of its workers, at start and after a HUP that changes proc_name."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from conftest import Server, children_of, exited, wait_for


def title(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\x00", b" ").decode().strip()


def test_process_titles_default_to_the_app(server: Callable[..., Server]) -> None:
    srv = server(["-w", "2"])
    workers = srv.wait_workers(2)
    assert title(srv.pid) == "monoceros: master [app:app]"
    assert [title(pid) for pid in workers] == ["monoceros: worker [app:app]"] * 2


def test_proc_name_and_a_hup_that_changes_it(server: Callable[..., Server], workdir: Path) -> None:
    conf = workdir / "titles.conf.py"
    conf.write_text('proc_name = "shop"\nworkers = 1\n')
    srv = server(["-c", str(conf)])
    (worker,) = srv.wait_workers(1)
    assert (title(srv.pid), title(worker)) == (
        "monoceros: master [shop]",
        "monoceros: worker [shop]",
    )
    conf.write_text('proc_name = "shop-v2"\nworkers = 1\n')
    srv.signal(signal.SIGHUP)

    def retitled() -> bool:
        workers = children_of(srv.pid)
        return (
            title(srv.pid) == "monoceros: master [shop-v2]"
            and len(workers) == 1
            and workers[0] != worker
            and title(workers[0]) == "monoceros: worker [shop-v2]"
        )

    assert wait_for(retitled, 20), (title(srv.pid), srv.log())


def test_usr2_new_master_is_name_dot_2_until_the_old_one_exits(
    server: Callable[..., Server],
) -> None:
    srv = server(["-w", "1", "-n", "shop"])
    (old_worker,) = srv.wait_workers(1)
    srv.signal(signal.SIGUSR2)

    def new_master() -> int:
        kids = [p for p in srv.workers() if p != old_worker]
        return kids[0] if kids and len(children_of(kids[0])) == 1 else 0

    assert wait_for(lambda: new_master() != 0, 20), srv.log()
    master2 = new_master()
    try:
        (worker2,) = children_of(master2)
        assert title(master2) == "monoceros: master [shop.2]"
        assert title(worker2) == "monoceros: worker [shop.2]"
        assert title(srv.pid) == "monoceros: master [shop]"
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(20) == 0, srv.log()
        # the new master's loop sees its parent gone and takes the name back, as gunicorn's does
        assert wait_for(lambda: title(master2) == "monoceros: master [shop]", 10), title(master2)
    finally:
        os.kill(master2, signal.SIGTERM)
    assert wait_for(lambda: exited(master2), 20)
