"""The settings table and the Config object: defaults, validation, hooks."""

from __future__ import annotations

import grp
import os
import pwd
import socket
from pathlib import Path
from typing import Any

import pytest

from monoceros.config import (
    GUNICORN_ONLY,
    HOOK_NAMES,
    SETTINGS,
    SETTINGS_BY_NAME,
    SYSLOG_FACILITIES,
    WORKER_CLASSES,
    Config,
    ConfigError,
    Setting,
    SyslogAddress,
    _default_syslog_addr,
    syslog_address,
)

# gunicorn's defaults (gunicorn/config.py), with an empty environment.
GUNICORN_DEFAULTS: dict[str, Any] = {
    "config": None,
    "wsgi_app": None,
    "bind": ["127.0.0.1:8000"],
    "backlog": 2048,
    "workers": 1,
    "worker_class": "sync",
    "threads": 1,
    "worker_connections": 1000,
    "max_requests": 0,
    "max_requests_jitter": 0,
    "timeout": 30,
    "graceful_timeout": 30,
    "keepalive": 2,
    "limit_request_line": 4094,
    "limit_request_fields": 100,
    "limit_request_field_size": 8190,
    "check_config": False,
    "print_config": False,
    "preload_app": False,
    "sendfile": None,
    "reuse_port": False,
    "daemon": False,
    "raw_env": [],
    "pidfile": None,
    "umask": 0,
    "secure_scheme_headers": {
        "X-FORWARDED-PROTOCOL": "ssl",
        "X-FORWARDED-PROTO": "https",
        "X-FORWARDED-SSL": "on",
    },
    "forwarded_allow_ips": ["127.0.0.1", "::1"],
    "forwarder_headers": ["SCRIPT_NAME", "PATH_INFO"],
    "proxy_protocol": "off",
    "proxy_allow_ips": ["127.0.0.1", "::1"],
    "root_path": "",
    "pythonpath": None,
    "accesslog": None,
    "access_log_format": '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',
    "errorlog": "-",
    "loglevel": "info",
    "capture_output": False,
    "logconfig": None,
    "logconfig_dict": {},
    "logconfig_json": None,
    "syslog": False,
    "syslog_addr": "udp://localhost:514",  # on Linux; gunicorn's default depends on the platform
    "syslog_prefix": None,
    "syslog_facility": "user",
    "disable_redirect_access_to_syslog": False,
    "access_log_json": False,  # ours: the JSON access line
    "statsd_host": None,
    "statsd_prefix": "",
    "dogstatsd_tags": "",
    "stats_bind": None,
}

# gunicorn's command-line flags (gunicorn/config.py), plus our own header_timeout and the
# dash spelling of --limit-request-field_size.
GUNICORN_FLAGS: dict[str, tuple[str, ...]] = {
    "config": ("-c", "--config"),
    "bind": ("-b", "--bind"),
    "backlog": ("--backlog",),
    "defer_accept": ("--defer-accept",),  # ours: uWSGI's deferred accept, on by default
    "stats_bind": ("--stats-bind",),  # ours: the master's stats listener
    "workers": ("-w", "--workers"),
    "worker_class": ("-k", "--worker-class"),
    "threads": ("--threads",),
    "worker_connections": ("--worker-connections",),
    "max_requests": ("--max-requests",),
    "max_requests_jitter": ("--max-requests-jitter",),
    "max_worker_memory": ("--max-worker-memory",),  # ours: recycling (uWSGI's reload-on-rss)
    "max_worker_lifetime": ("--max-worker-lifetime",),  # ours: uWSGI's max-worker-lifetime
    "timeout": ("-t", "--timeout"),
    "graceful_timeout": ("--graceful-timeout",),
    "keepalive": ("--keep-alive",),
    "limit_request_line": ("--limit-request-line",),
    "limit_request_fields": ("--limit-request-fields",),
    "limit_request_field_size": ("--limit-request-field_size", "--limit-request-field-size"),
    "header_timeout": ("--header-timeout",),
    # gunicorn 27's uWSGI protocol flags, and our own vars-block limit
    "protocol": ("--protocol",),
    "uwsgi_allow_ips": ("--uwsgi-allow-from",),
    "uwsgi_max_vars_size": ("--uwsgi-max-vars-size",),
    # gunicorn's SSL section
    "keyfile": ("--keyfile",),
    "certfile": ("--certfile",),
    "ssl_version": ("--ssl-version",),
    "cert_reqs": ("--cert-reqs",),
    "ca_certs": ("--ca-certs",),
    "suppress_ragged_eofs": ("--suppress-ragged-eofs",),
    "do_handshake_on_connect": ("--do-handshake-on-connect",),
    "ciphers": ("--ciphers",),
    # gunicorn 27's ASGI worker flags, and our own WebSocket message limit
    "asgi_loop": ("--asgi-loop",),
    "asgi_lifespan": ("--asgi-lifespan",),
    "ws_max_message_size": ("--ws-max-message-size", "--websocket-max-message-size"),
    # uvicorn's WebSocket keepalive and compression flags, and our ASGI request deadline
    "ws_ping_interval": ("--ws-ping-interval",),
    "ws_ping_timeout": ("--ws-ping-timeout",),
    "ws_per_message_deflate": ("--ws-per-message-deflate",),
    "request_timeout": ("--request-timeout",),
    "reload": ("--reload",),
    "reload_engine": ("--reload-engine",),
    "reload_extra_files": ("--reload-extra-file",),
    "check_config": ("--check-config",),
    "print_config": ("--print-config",),
    "preload_app": ("--preload",),
    "sendfile": ("--no-sendfile",),
    "reuse_port": ("--reuse-port",),
    "chdir": ("--chdir",),
    "daemon": ("-D", "--daemon"),
    "raw_env": ("-e", "--env"),
    "pidfile": ("-p", "--pid"),
    "user": ("-u", "--user"),
    "group": ("-g", "--group"),
    "umask": ("-m", "--umask"),
    "forwarded_allow_ips": ("--forwarded-allow-ips",),
    "forwarder_headers": ("--forwarder-headers",),
    "proxy_headers": ("--proxy-headers",),  # uvicorn's
    "root_path": ("--root-path",),
    "proxy_protocol": ("--proxy-protocol",),
    "proxy_allow_ips": ("--proxy-allow-from",),
    "pythonpath": ("--pythonpath",),
    "accesslog": ("--access-logfile",),
    "access_log_format": ("--access-logformat",),
    "errorlog": ("--error-logfile", "--log-file"),
    "loglevel": ("--log-level",),
    "capture_output": ("--capture-output",),
    "disable_redirect_access_to_syslog": ("--disable-redirect-access-to-syslog",),
    "access_log_json": ("--access-log-json",),  # ours: the JSON access line
    "logconfig": ("--log-config",),
    "logconfig_json": ("--log-config-json",),
    "syslog_addr": ("--log-syslog-to",),
    "syslog": ("--log-syslog",),
    "syslog_prefix": ("--log-syslog-prefix",),
    "syslog_facility": ("--log-syslog-facility",),
    "statsd_host": ("--statsd-host",),
    "statsd_prefix": ("--statsd-prefix",),
    "dogstatsd_tags": ("--dogstatsd-tags",),
    "proc_name": ("-n", "--name"),
}

HOOK_ARITIES = {
    "on_starting": 1,
    "on_reload": 1,
    "when_ready": 1,
    "pre_fork": 2,
    "post_fork": 2,
    "post_worker_init": 1,
    "worker_int": 1,
    "worker_abort": 1,
    "pre_exec": 1,
    "pre_request": 2,
    "post_request": 4,
    "child_exit": 2,
    "worker_exit": 2,
    "nworkers_changed": 3,
    "on_exit": 1,
    "ssl_context": 2,
}


@pytest.fixture
def cfg() -> Config:
    return Config({})


def error_of(cfg: Config, name: str, value: Any) -> str:
    with pytest.raises(ConfigError) as info:
        cfg.set(name, value)
    assert info.value.setting == name
    return str(info.value)


# --- the table ------------------------------------------------------------------------------


def test_defaults_are_gunicorns(cfg: Config) -> None:
    for name, expected in GUNICORN_DEFAULTS.items():
        assert getattr(cfg, name) == expected, name


def test_environment_independent_defaults(cfg: Config) -> None:
    assert cfg.header_timeout == 10.0
    assert cfg.defer_accept == 1
    assert cfg.chdir == os.getcwd()
    assert cfg.user == os.geteuid()
    assert cfg.group == os.getegid()
    assert cfg.proc_name == "monoceros"


def test_flags_are_gunicorns() -> None:
    with_flags = {s.name: s.flags for s in SETTINGS if s.flags}
    assert with_flags == GUNICORN_FLAGS


def test_no_flag_is_used_twice() -> None:
    flags = [flag for setting in SETTINGS for flag in setting.flags]
    assert len(flags) == len(set(flags))


def test_table_rows_are_complete() -> None:
    assert len(SETTINGS_BY_NAME) == len(SETTINGS)
    for setting in SETTINGS:
        assert isinstance(setting, Setting)
        assert SETTINGS_BY_NAME[setting.name] is setting
        assert setting.doc and "\n" not in setting.doc, setting.name
        assert setting.section, setting.name
        if setting.default_factory is not None:
            assert setting.default_doc, f"{setting.name}: dynamic default needs default_doc"
        if setting.action in ("store", "append") and setting.flags:
            assert setting.metavar, setting.name


def test_every_setting_is_typed_on_config() -> None:
    annotated = set(Config.__annotations__) - {"warnings", "notices", "argv"}
    assert annotated == set(SETTINGS_BY_NAME)


def test_hooks_have_gunicorns_arities() -> None:
    assert {name: len(SETTINGS_BY_NAME[name].params or ()) for name in HOOK_NAMES} == (HOOK_ARITIES)


def test_gunicorn_only_names_are_not_settings() -> None:
    assert not GUNICORN_ONLY.keys() & set(SETTINGS_BY_NAME)


# --- environment-dependent defaults -------------------------------------------------------


def test_port_changes_default_bind() -> None:
    assert Config({"PORT": "5000"}).bind == ["0.0.0.0:5000"]


def test_web_concurrency_sets_default_workers() -> None:
    assert Config({"WEB_CONCURRENCY": "4"}).workers == 4


def test_bad_web_concurrency_is_a_readable_error() -> None:
    with pytest.raises(ConfigError) as info:
        Config({"WEB_CONCURRENCY": "lots"})
    assert str(info.value) == (
        "workers: expected a positive integer, got 'lots' (from $WEB_CONCURRENCY)"
    )


def test_forwarded_allow_ips_from_environment() -> None:
    assert Config({"FORWARDED_ALLOW_IPS": "*"}).forwarded_allow_ips == ["*"]
    assert Config({"FORWARDED_ALLOW_IPS": "10.0.0.1, 10.0.0.2"}).forwarded_allow_ips == [
        "10.0.0.1",
        "10.0.0.2",
    ]


def test_config_without_environ_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert Config().workers == 3


def test_mutable_defaults_are_not_shared() -> None:
    first, second = Config({}), Config({})
    first.bind.append("0.0.0.0:1")
    first.secure_scheme_headers["X"] = "y"
    assert second.bind == ["127.0.0.1:8000"]
    assert "X" not in second.secure_scheme_headers
    assert SETTINGS_BY_NAME["bind"].default == ["127.0.0.1:8000"]


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [("4", 4), (4, 4), (" 7 ", 7), ("0x10", 16)])
def test_integers_accept_ints_and_strings(cfg: Config, value: Any, expected: int) -> None:
    cfg.set("workers", value)
    assert cfg.workers == expected


def test_readable_integer_errors(cfg: Config) -> None:
    assert error_of(cfg, "workers", "abc") == "workers: expected a positive integer, got 'abc'"
    assert error_of(cfg, "workers", 0) == "workers: expected a positive integer, got 0"
    assert error_of(cfg, "workers", True) == "workers: expected a positive integer, got True"
    assert error_of(cfg, "workers", 2.5) == "workers: expected a positive integer, got 2.5"
    assert error_of(cfg, "timeout", -1) == "timeout: expected a non-negative integer, got -1"


@pytest.mark.parametrize("name", ["timeout", "max_requests", "keepalive", "limit_request_line"])
def test_zero_is_allowed_where_it_disables(cfg: Config, name: str) -> None:
    cfg.set(name, "0")
    assert getattr(cfg, name) == 0


@pytest.mark.parametrize("name", ["workers", "threads", "worker_connections", "backlog"])
def test_zero_is_refused_where_it_makes_no_sense(cfg: Config, name: str) -> None:
    assert error_of(cfg, name, 0).startswith(f"{name}: expected a positive integer")


def test_asgi_settings(cfg: Config) -> None:
    assert (cfg.asgi_loop, cfg.asgi_lifespan, cfg.ws_max_message_size) == (
        "auto",
        "auto",
        16 * 1024 * 1024,
    )
    cfg.set("asgi_loop", " UVLOOP ")
    cfg.set("asgi_lifespan", "off")
    cfg.set("ws_max_message_size", "1024")
    assert (cfg.asgi_loop, cfg.asgi_lifespan, cfg.ws_max_message_size) == ("uvloop", "off", 1024)


def test_websocket_keepalive_compression_and_request_timeout_settings(cfg: Config) -> None:
    # uvicorn's defaults: pings every 20 s of silence, 20 s to answer, compression on
    assert (cfg.ws_ping_interval, cfg.ws_ping_timeout) == (20.0, 20.0)
    assert cfg.ws_per_message_deflate is True
    assert cfg.request_timeout == 0.0
    cfg.set("ws_ping_interval", "0.5")
    cfg.set("ws_ping_timeout", None)  # uvicorn's "off" from a config file
    cfg.set("ws_per_message_deflate", "false")  # uvicorn's --ws-per-message-deflate false
    cfg.set("request_timeout", "30")
    assert (cfg.ws_ping_interval, cfg.ws_ping_timeout) == (0.5, 0.0)
    assert cfg.ws_per_message_deflate is False
    assert cfg.request_timeout == 30.0
    assert "non-negative number of seconds" in error_of(cfg, "request_timeout", "-1")
    assert "non-negative number of seconds" in error_of(cfg, "ws_ping_interval", "soon")
    assert "true or false" in error_of(cfg, "ws_per_message_deflate", "maybe")
    assert error_of(cfg, "asgi_loop", "trio") == (
        "asgi_loop: expected one of auto, asyncio, uvloop, got 'trio'"
    )
    assert error_of(cfg, "asgi_lifespan", True) == (
        "asgi_lifespan: expected one of auto, on, off, got True"
    )
    assert error_of(cfg, "ws_max_message_size", 0) == (
        "ws_max_message_size: expected a positive integer, got 0"
    )


def test_protocol_and_uwsgi_settings(cfg: Config) -> None:
    assert (cfg.protocol, cfg.uwsgi_allow_ips, cfg.uwsgi_max_vars_size) == (
        "http",
        ["127.0.0.1", "::1"],
        65535,
    )
    cfg.set("protocol", "UWSGI")
    assert cfg.protocol == "uwsgi"
    assert error_of(cfg, "protocol", "fastcgi") == (
        "protocol: expected one of http, uwsgi, got 'fastcgi'"
    )
    cfg.set("uwsgi_allow_ips", "10.0.0.0/8,192.168.1.5")
    assert cfg.uwsgi_allow_ips == ["10.0.0.0/8", "192.168.1.5"]
    assert error_of(cfg, "uwsgi_max_vars_size", 70000).startswith(
        "uwsgi_max_vars_size: expected an integer from 1 to 65535"
    )


def test_header_timeout_is_float_seconds(cfg: Config) -> None:
    cfg.set("header_timeout", "2.5")
    assert cfg.header_timeout == 2.5
    cfg.set("header_timeout", 0)
    assert cfg.header_timeout == 0.0
    assert error_of(cfg, "header_timeout", "-1") == (
        "header_timeout: expected a non-negative number of seconds, got '-1'"
    )
    assert error_of(cfg, "header_timeout", "nan").startswith("header_timeout: expected")


def test_recycling_settings(cfg: Config) -> None:
    assert (cfg.max_worker_memory, cfg.max_worker_lifetime) == (0, 0.0)  # off by default
    cfg.set("max_worker_memory", "512")
    cfg.set("max_worker_lifetime", "3600")
    assert (cfg.max_worker_memory, cfg.max_worker_lifetime) == (512, 3600.0)
    cfg.set("max_worker_lifetime", 2.5)
    assert cfg.max_worker_lifetime == 2.5
    assert error_of(cfg, "max_worker_memory", "-1") == (
        "max_worker_memory: expected a non-negative integer, got '-1'"
    )
    assert error_of(cfg, "max_worker_memory", "1G") == (
        "max_worker_memory: expected a non-negative integer, got '1G'"
    )
    assert error_of(cfg, "max_worker_lifetime", "-5") == (
        "max_worker_lifetime: expected a non-negative number of seconds, got '-5'"
    )
    assert error_of(cfg, "max_worker_lifetime", "1h") == (
        "max_worker_lifetime: expected a non-negative number of seconds, got '1h'"
    )
    assert error_of(cfg, "max_worker_lifetime", "inf").startswith("max_worker_lifetime: expected")


@pytest.mark.parametrize(
    "value, expected",
    [(True, True), ("true", True), ("False", False), ("yes", True), ("0", False)],
)
def test_booleans(cfg: Config, value: Any, expected: bool) -> None:
    cfg.set("preload_app", value)
    assert cfg.preload_app is expected


def test_bad_boolean(cfg: Config) -> None:
    assert error_of(cfg, "daemon", "maybe") == "daemon: expected true or false, got 'maybe'"


def test_sendfile_is_tristate(cfg: Config) -> None:
    cfg.set("sendfile", False)
    assert cfg.sendfile is False
    cfg.set("sendfile", None)
    assert cfg.sendfile is None


@pytest.mark.parametrize(
    "value, expected",
    [("0o22", 0o22), ("022", 0o22), ("18", 18), (0o27, 0o27), ("0", 0), ("0x12", 0o22)],
)
def test_umask_spellings(cfg: Config, value: Any, expected: int) -> None:
    cfg.set("umask", value)
    assert cfg.umask == expected


@pytest.mark.parametrize("value", ["abc", "08", "0o1000", -1, None])
def test_bad_umask(cfg: Config, value: Any) -> None:
    assert error_of(cfg, "umask", value).startswith("umask: expected a file mode mask")


def test_worker_class_kinds(cfg: Config) -> None:
    assert WORKER_CLASSES["sync"] == "monoceros.workers.sync:SyncWorker"
    cfg.set("worker_class", "gunicorn.workers.sync.SyncWorker")
    assert cfg.worker_class == "sync"
    assert cfg.worker_class_path == "monoceros.workers.sync:SyncWorker"
    cfg.set("worker_class", "SYNC")
    assert cfg.worker_class == "sync"


def test_unknown_worker_class_lists_the_available_ones(cfg: Config) -> None:
    available = ", ".join(sorted(WORKER_CLASSES))
    assert error_of(cfg, "worker_class", "nonsense") == (
        f"worker_class: worker class 'nonsense' is unknown (available: {available})"
    )


@pytest.mark.parametrize(
    "kind", ["gevent", "eventlet", "tornado", "gunicorn.workers.ggevent.GeventWorker"]
)
def test_gunicorns_other_workers_are_named_unsupported(cfg: Config, kind: str) -> None:
    available = ", ".join(sorted(WORKER_CLASSES))
    assert error_of(cfg, "worker_class", kind) == (
        f"worker_class: worker class {kind!r} is not supported by monoceros "
        f"(available: {available})"
    )


def test_loglevel(cfg: Config) -> None:
    cfg.set("loglevel", "DEBUG")
    assert cfg.loglevel == "debug"
    assert error_of(cfg, "loglevel", "verbose") == (
        "loglevel: expected one of debug, info, warning, error, critical, got 'verbose'"
    )


def test_bind_accepts_a_string_or_a_list(cfg: Config) -> None:
    cfg.set("bind", "0.0.0.0:80")
    assert cfg.bind == ["0.0.0.0:80"]
    cfg.set("bind", ("unix:/tmp/s", "[::1]:8000"))
    assert cfg.bind == ["unix:/tmp/s", "[::1]:8000"]
    assert error_of(cfg, "bind", 8000).startswith("bind: expected an address")
    assert error_of(cfg, "bind", ["ok:1", ""]).startswith("bind: expected an address")


def test_raw_env_and_env(cfg: Config) -> None:
    cfg.set("raw_env", ["A=1", "B=x=y", "C="])
    assert cfg.env == {"A": "1", "B": "x=y", "C": ""}
    assert error_of(cfg, "raw_env", ["NOEQUALS"]) == "raw_env: expected KEY=VALUE, got 'NOEQUALS'"


def test_secure_scheme_headers_keys_are_upper_cased(cfg: Config) -> None:
    cfg.set("secure_scheme_headers", {"X-Forwarded-Proto": "https"})
    assert cfg.secure_scheme_headers == {"X-FORWARDED-PROTO": "https"}
    assert error_of(cfg, "secure_scheme_headers", "X-Proto").startswith(
        "secure_scheme_headers: expected a dict"
    )


def test_forwarded_allow_ips(cfg: Config) -> None:
    cfg.set("forwarded_allow_ips", ["10.0.0.1", "::1"])
    assert cfg.forwarded_allow_ips == ["10.0.0.1", "::1"]
    cfg.set("forwarded_allow_ips", "*")
    assert cfg.forwarded_allow_ips == ["*"]
    cfg.set("forwarded_allow_ips", "10.0.0.0/8, fd00::/8")
    assert cfg.forwarded_allow_ips == ["10.0.0.0/8", "fd00::/8"]
    assert error_of(cfg, "forwarded_allow_ips", "10.0.0.1,proxy.local") == (
        "forwarded_allow_ips: expected '*' or comma-separated IP addresses or CIDR networks, "
        "got 'proxy.local'"
    )


def test_proxy_protocol_modes_and_gunicorn_23s_boolean(cfg: Config) -> None:
    for given, mode in [("V2", "v2"), (" auto ", "auto"), (True, "auto"), (False, "off")]:
        cfg.set("proxy_protocol", given)
        assert cfg.proxy_protocol == mode
    assert error_of(cfg, "proxy_protocol", "v3") == (
        "proxy_protocol: expected one of off, v1, v2, auto, got 'v3'"
    )
    cfg.set("proxy_allow_ips", "*")
    assert cfg.proxy_allow_ips == ["*"]
    assert error_of(cfg, "proxy_allow_ips", "haproxy.local").startswith("proxy_allow_ips: expected")


def test_root_path_is_a_path_without_a_trailing_slash(cfg: Config) -> None:
    cfg.set("root_path", "/api/v1/")
    assert cfg.root_path == "/api/v1"
    cfg.set("root_path", "/")
    assert cfg.root_path == ""
    assert error_of(cfg, "root_path", "api") == (
        "root_path: expected a path starting with '/', such as '/api', got 'api'"
    )


def test_user_and_group_by_name_or_id(cfg: Config) -> None:
    me = pwd.getpwuid(os.geteuid())
    cfg.set("user", me.pw_name)
    assert cfg.user == me.pw_uid
    cfg.set("user", "12345")
    assert cfg.user == 12345
    my_group = grp.getgrgid(os.getegid())
    cfg.set("group", my_group.gr_name)
    assert cfg.group == my_group.gr_gid
    cfg.set("group", 4321)
    assert cfg.group == 4321


def test_unknown_user_and_group(cfg: Config) -> None:
    assert error_of(cfg, "user", "no-such-user-x9") == "user: no such user 'no-such-user-x9'"
    assert error_of(cfg, "group", "no-such-group-x9") == "group: no such group 'no-such-group-x9'"


def test_chdir_is_made_absolute_and_must_exist(
    cfg: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "site").mkdir()
    monkeypatch.chdir(tmp_path)
    cfg.set("chdir", "site")
    assert cfg.chdir == str(tmp_path / "site")
    cfg.set("chdir", tmp_path)
    assert cfg.chdir == str(tmp_path)
    assert error_of(cfg, "chdir", "missing") == "chdir: no such directory 'missing'"


def test_paths_accept_path_objects(cfg: Config, tmp_path: Path) -> None:
    cfg.set("pidfile", tmp_path / "x.pid")
    assert cfg.pidfile == str(tmp_path / "x.pid")


def test_proc_name_defaults_to_the_app(cfg: Config) -> None:
    cfg.set("wsgi_app", "myapp:app")
    assert cfg.proc_name == "myapp:app"
    cfg.set("proc_name", "web")
    assert cfg.proc_name == "web"
    cfg.set("wsgi_app", "other:app")
    assert cfg.proc_name == "web"


def test_unknown_setting(cfg: Config) -> None:
    with pytest.raises(ConfigError, match="unknown setting 'wrokers'"):
        cfg.set("wrokers", 2)


def test_settings_cannot_be_assigned_directly(cfg: Config) -> None:
    with pytest.raises(AttributeError, match=r"cfg\.set"):
        cfg.workers = 3
    assert cfg.workers == 1


# --- hooks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [name for name in HOOK_NAMES if name != "ssl_context"])
def test_default_hooks_are_callable_no_ops(cfg: Config, name: str) -> None:
    hook = getattr(cfg, name)
    assert hook(*range(HOOK_ARITIES[name])) is None
    assert cfg.hook_is_set(name) is False


def test_default_ssl_context_hook_is_gunicorns(cfg: Config) -> None:
    """It returns what the factory builds, and --print-config does not call it a no-op."""
    made = object()
    assert cfg.ssl_context(cfg, lambda: made) is made
    assert cfg.hook_is_set("ssl_context") is False
    assert "ssl_context = <default>" in cfg.describe()


@pytest.mark.parametrize(
    ("value", "expected"),
    [(2, 2), ("TLS", 2), ("SSLv23", 2), ("TLSv1_2", 5), ("TLS_SERVER", 17), ("17", 17)],
)
def test_ssl_version_takes_gunicorns_names_and_values(
    cfg: Config, value: object, expected: int
) -> None:
    cfg.set("ssl_version", value)
    assert cfg.ssl_version == expected


@pytest.mark.parametrize("value", ["TLSv9", 99, True, None])
def test_ssl_version_refuses_what_is_no_protocol(cfg: Config, value: object) -> None:
    with pytest.raises(ConfigError, match=r"^ssl_version: expected an ssl\.PROTOCOL_\* value"):
        cfg.set("ssl_version", value)


def test_cert_reqs_is_0_1_or_2(cfg: Config) -> None:
    cfg.set("cert_reqs", "2")
    assert cfg.cert_reqs == 2
    for bad in (3, -1, "required"):
        with pytest.raises(ConfigError, match=r"^cert_reqs: expected 0 \(no client"):
            cfg.set("cert_reqs", bad)


def test_setting_a_hook(cfg: Config) -> None:
    calls = []

    def post_fork(server: object, worker: object) -> None:
        calls.append((server, worker))

    cfg.set("post_fork", post_fork)
    assert cfg.hook_is_set("post_fork")
    assert not cfg.hook_is_set("pre_fork")
    cfg.post_fork("s", "w")
    assert calls == [("s", "w")]


def test_hooks_with_defaults_or_varargs_are_accepted(cfg: Config) -> None:
    def flexible(*args: object) -> None:
        pass

    def with_default(server: object, worker: object, extra: object = None) -> None:
        pass

    cfg.set("nworkers_changed", flexible)
    cfg.set("pre_fork", with_default)
    assert cfg.hook_is_set("nworkers_changed") and cfg.hook_is_set("pre_fork")


def test_hook_with_wrong_arity(cfg: Config) -> None:
    def post_fork(server: object) -> None:
        pass

    message = error_of(cfg, "post_fork", post_fork)
    assert message.startswith("post_fork: expected a function taking (server, worker), got ")
    assert "<locals>.post_fork(server" in message


def test_hook_that_is_not_callable(cfg: Config) -> None:
    assert error_of(cfg, "on_exit", "mymod.on_exit") == (
        "on_exit: expected a function taking (server), got 'mymod.on_exit'"
    )


@pytest.mark.parametrize("count", [2, 3, 4])
def test_post_request_accepts_gunicorns_short_forms(cfg: Config, count: int) -> None:
    seen: list[tuple[object, ...]] = []
    params = ", ".join(f"a{i}" for i in range(count))
    namespace: dict[str, Any] = {"seen": seen}
    exec(f"def post_request({params}):\n    seen.append(({params},))", namespace)
    cfg.set("post_request", namespace["post_request"])
    assert cfg.hook_is_set("post_request")
    cfg.post_request("worker", "req", "environ", "resp")
    assert seen == [("worker", "req", "environ", "resp")[:count]]


def test_post_request_with_one_argument_is_refused(cfg: Config) -> None:
    assert error_of(cfg, "post_request", lambda worker: None).startswith(
        "post_request: expected a function taking (worker, req, environ, resp), got "
    )


def test_hook_is_set_refuses_non_hooks(cfg: Config) -> None:
    with pytest.raises(ConfigError, match="'workers' is not a server hook"):
        cfg.hook_is_set("workers")


# --- describe (--print-config) ------------------------------------------------------------


def test_describe_lists_every_setting_sorted(cfg: Config) -> None:
    def when_ready(server: object) -> None:
        pass

    cfg.set("workers", 3)
    cfg.set("when_ready", when_ready)
    lines = cfg.describe()
    names = [line.split(" = ", 1)[0] for line in lines]
    assert names == sorted(SETTINGS_BY_NAME)
    assert "workers = 3" in lines
    assert "bind = ['127.0.0.1:8000']" in lines
    assert "on_exit = <no-op>" in lines
    assert any(line.startswith("when_ready = <") and "when_ready()>" in line for line in lines)


# --- the logging settings (gunicorn's) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "socktype", "address"),
    [
        ("udp://localhost:514", socket.SOCK_DGRAM, ("localhost", 514)),
        ("udp://", socket.SOCK_DGRAM, ("localhost", 514)),
        ("udp://LogHost", socket.SOCK_DGRAM, ("loghost", 514)),
        ("tcp://10.0.0.5:6514", socket.SOCK_STREAM, ("10.0.0.5", 6514)),
        ("udp://[::1]:5140", socket.SOCK_DGRAM, ("::1", 5140)),
        ("udp://[::1]", socket.SOCK_DGRAM, ("::1", 514)),
        ("unix:///dev/log", None, "/dev/log"),
        ("unix:///dev/log#dgram", socket.SOCK_DGRAM, "/dev/log"),
        ("unix:///run/log.sock#stream", socket.SOCK_STREAM, "/run/log.sock"),
    ],
)
def test_syslog_addresses_as_gunicorn_reads_them(
    value: str, socktype: socket.SocketKind | None, address: object
) -> None:
    assert syslog_address(value) == SyslogAddress(socktype, address)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", ["localhost:514", "udp://h:x", "udp://h:0", "udp://[::1", "unix://", "unix:///x#raw"]
)
def test_bad_syslog_address_is_refused(cfg: Config, value: str) -> None:
    assert error_of(cfg, "syslog_addr", value).startswith(
        "syslog_addr: expected unix://PATH, udp://HOST:PORT or tcp://HOST:PORT"
    )


@pytest.mark.parametrize(
    ("platform", "default"),
    [
        ("linux", "udp://localhost:514"),
        ("darwin", "unix:///var/run/syslog"),
        ("freebsd14", "unix:///var/run/log"),
        ("dragonfly6", "unix:///var/run/log"),
        ("openbsd7", "unix:///dev/log"),
    ],
)
def test_default_syslog_address_per_platform(platform: str, default: str) -> None:
    assert _default_syslog_addr(platform) == default


def test_syslog_facility_names(cfg: Config) -> None:
    cfg.set("syslog_facility", "LOCAL7")
    assert cfg.syslog_facility == "local7"
    assert SYSLOG_FACILITIES["local7"] == 23 and SYSLOG_FACILITIES["user"] == 1
    assert error_of(cfg, "syslog_facility", "local8").startswith(
        "syslog_facility: expected one of auth, authpriv, cron, daemon"
    )


def test_logconfig_dict_must_be_a_dict(cfg: Config) -> None:
    cfg.set("logconfig_dict", {"version": 1})
    assert cfg.logconfig_dict == {"version": 1}
    assert error_of(cfg, "logconfig_dict", "log.ini").startswith(
        "logconfig_dict: expected a dict in logging.config.dictConfig's format"
    )
