"""The server and worker objects hooks receive: gunicorn's attributes with gunicorn's values."""

from __future__ import annotations

import io
import socket
import time
from pathlib import Path

import pytest

from monoceros.arbiter import Arbiter
from monoceros.config import Config
from monoceros.heartbeat import Heartbeat
from monoceros.listeners import BindSpec, Listener
from monoceros.logs import Logger
from monoceros.workers.base import WorkerTmp
from monoceros.workers.sync import SyncWorker


def test_server_address_is_parsed_as_gunicorn_does() -> None:
    cfg = Config(environ={})
    cfg.set(
        "bind", ["127.0.0.1:8001", "uwsgi://[::1]:9000", "unix:/run/app.sock", "fd://3", ":7000"]
    )
    assert Arbiter(cfg).address == [
        ("127.0.0.1", 8001),
        ("::1", 9000),
        "/run/app.sock",
        3,
        ("0.0.0.0", 7000),
    ]


def test_server_settings_views() -> None:
    cfg = Config(environ={})
    cfg.set("timeout", 12)
    cfg.set("proc_name", "shop")
    server = Arbiter(cfg)
    assert (server.timeout, server.proc_name, server.master_pid, server.master_name) == (
        12,
        "shop",
        0,
        "Master",
    )
    assert server.WORKERS == {} and server.LISTENERS is server.listeners
    assert server.worker_class is SyncWorker


def test_worker_before_fork() -> None:
    cfg = Config(environ={})
    cfg.set("timeout", 30)
    heartbeat = Heartbeat()
    worker = SyncWorker(3, 1, [], cfg, Logger(cfg), heartbeat)
    assert worker.pid == "[booting]"  # what gunicorn's pre_fork hook sees
    assert (worker.age, worker.timeout, worker.aborted, worker.nr) == (3, 15.0, False, 0)
    assert worker.sockets is worker.listeners and worker.reloader is None
    heartbeat.close()


def test_worker_tmp_maps_onto_the_heartbeat() -> None:
    heartbeat = Heartbeat()
    tmp = WorkerTmp(heartbeat)
    before = tmp.last_update()
    time.sleep(0.01)  # the clock moves on: the next beat is later than ``before``
    tmp.notify()
    assert before < tmp.last_update() == heartbeat.last_beat() <= time.monotonic()
    with pytest.raises(io.UnsupportedOperation):
        tmp.fileno()
    tmp.close()
    with pytest.raises((ValueError, TypeError)):  # the mapping is gone
        tmp.notify()


def test_listener_str_is_gunicorns(tmp_path: Path) -> None:
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    port = tcp.getsockname()[1]
    unix = socket.socket(socket.AF_UNIX)
    path = str(tmp_path / "s.sock")
    unix.bind(path)
    try:
        assert (
            str(Listener(tcp, BindSpec("tcp", "127.0.0.1", port), "http"))
            == f"http://127.0.0.1:{port}"
        )
        assert (
            str(Listener(tcp, BindSpec("tcp", "127.0.0.1", port), "uwsgi"))
            == f"uwsgi://127.0.0.1:{port}"
        )
        assert str(Listener(unix, BindSpec("unix", path=path), "http")) == f"unix:{path}"
    finally:
        tcp.close()
        unix.close()
