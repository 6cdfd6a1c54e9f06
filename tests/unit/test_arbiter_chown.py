"""The master hands the files it created as root to the workers' user without trusting their
paths again: log files through their open descriptors, UNIX socket files by path without
following a symlink, and only while they are still its sockets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monoceros.arbiter import Arbiter
from monoceros.config import Config
from monoceros.listeners import bind_all

UID = GID = 65534  # nobody


@pytest.fixture
def arbiter(tmp_path: Path) -> Iterator[Arbiter]:
    cfg = Config()
    cfg.set("errorlog", str(tmp_path / "error.log"))
    cfg.set("accesslog", str(tmp_path / "access.log"))
    cfg.set("user", UID)
    cfg.set("group", GID)
    arb = Arbiter(cfg)
    arb.listeners = bind_all([f"unix:{tmp_path / 'app.sock'}"], "uwsgi")
    warnings: list[str] = []
    arb.log.warning = lambda msg, *args: warnings.append(msg % args)  # type: ignore[method-assign]
    arb.warnings = warnings  # type: ignore[attr-defined]
    yield arb
    for listener in arb.listeners:
        listener.close(unlink=True)
    arb.log.setup(Config())  # back to stderr: the log files are closed


class Calls:
    """Stands in for os.chown and os.fchown, recording what they were asked."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.chown: list[tuple[Any, ...]] = []
        self.fchown: list[tuple[int, int, int]] = []
        monkeypatch.setattr(os, "chown", lambda *a, **kw: self.chown.append((*a, kw)))
        monkeypatch.setattr(os, "fchown", lambda *a: self.fchown.append(a))


def log_fds(tmp_path: Path) -> set[int]:
    """The master's descriptors open on the two log files (from /proc/self/fd)."""
    wanted = {str(tmp_path / "error.log"), str(tmp_path / "access.log")}
    return {int(fd) for fd in os.listdir("/proc/self/fd") if _link(fd) in wanted}


def _link(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def test_logs_by_descriptor_sockets_by_path_without_following(
    arbiter: Arbiter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = Calls(monkeypatch)
    arbiter._give_files_to_worker_user()
    assert {fd for fd, _, _ in calls.fchown} == log_fds(tmp_path) and len(calls.fchown) == 2
    assert all((uid, gid) == (UID, GID) for _, uid, gid in calls.fchown)
    sock = str(tmp_path / "app.sock")
    assert calls.chown == [(sock, UID, GID, {"follow_symlinks": False})]
    assert arbiter.warnings == []  # type: ignore[attr-defined]


def test_a_symlink_put_where_the_socket_was_is_left_alone(
    arbiter: Arbiter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("not the workers' to own")
    sock = tmp_path / "app.sock"
    sock.unlink()
    sock.symlink_to(victim)
    calls = Calls(monkeypatch)
    arbiter._give_files_to_worker_user()
    assert calls.chown == []
    assert arbiter.warnings == [  # type: ignore[attr-defined]
        f"Could not give {sock} to uid {UID}: no longer the socket this master created"
    ]


def test_as_root_the_files_change_owner_and_a_link_target_does_not(
    arbiter: Arbiter, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    arbiter._give_files_to_worker_user()
    for name in ("error.log", "access.log", "app.sock"):
        st = os.lstat(tmp_path / name)
        assert (st.st_uid, st.st_gid) == (UID, GID), name
    victim = tmp_path / "victim"
    victim.write_text("root's")
    (tmp_path / "error.log").unlink()
    (tmp_path / "error.log").symlink_to(victim)  # the path now leads elsewhere
    arbiter._give_files_to_worker_user()  # the descriptor still names the file it opened
    assert os.stat(victim).st_uid == 0
