"""Building a Config from defaults, the config file, MONOCEROS_CMD_ARGS and argv."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from monoceros import __version__
from monoceros.config import SETTINGS, ConfigError
from monoceros.config_loader import (
    DEFAULT_CONFIG_FILE,
    ENV_ARGS_VAR,
    UsageError,
    build_parser,
    load_config,
)
from monoceros.gunicorn_only import GUNICORN_ONLY, GunicornOnly

DATA = Path(__file__).parent / "data" / "config"


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test from an empty directory (no monoceros.conf.py around)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_no_arguments_gives_the_defaults(in_tmp: Path) -> None:
    cfg = load_config([], {})
    assert cfg.workers == 1
    assert cfg.bind == ["127.0.0.1:8000"]
    assert cfg.config is None
    assert cfg.wsgi_app is None
    assert cfg.warnings == []
    assert cfg.argv == []


FLAG_CASES: list[tuple[list[str], str, Any]] = [
    (["-w", "3"], "workers", 3),
    (["--workers=5"], "workers", 5),
    (["-b", "0.0.0.0:80", "--bind", "unix:/tmp/s"], "bind", ["0.0.0.0:80", "unix:/tmp/s"]),
    (["--backlog", "64"], "backlog", 64),
    (["--defer-accept", "0"], "defer_accept", 0),
    (["--stats-bind", "127.0.0.1:9100"], "stats_bind", "127.0.0.1:9100"),
    (["-k", "sync"], "worker_class", "sync"),
    (["--threads", "4"], "threads", 4),
    (["--worker-connections", "10"], "worker_connections", 10),
    (["--max-requests", "100"], "max_requests", 100),
    (["--max-requests-jitter", "7"], "max_requests_jitter", 7),
    (["--max-worker-memory", "512"], "max_worker_memory", 512),
    (["--max-worker-lifetime", "3600"], "max_worker_lifetime", 3600.0),
    (["-t", "0"], "timeout", 0),
    (["--graceful-timeout", "3"], "graceful_timeout", 3),
    (["--keep-alive", "9"], "keepalive", 9),
    (["--limit-request-line", "100"], "limit_request_line", 100),
    (["--limit-request-fields", "10"], "limit_request_fields", 10),
    (["--limit-request-field_size", "11"], "limit_request_field_size", 11),
    (["--limit-request-field-size", "12"], "limit_request_field_size", 12),
    (["--header-timeout", "2.5"], "header_timeout", 2.5),
    (["--protocol", "uwsgi"], "protocol", "uwsgi"),
    (["--uwsgi-allow-from", "10.0.0.0/8,*"], "uwsgi_allow_ips", ["10.0.0.0/8", "*"]),
    (["--uwsgi-max-vars-size", "4096"], "uwsgi_max_vars_size", 4096),
    (["--asgi-loop", "asyncio"], "asgi_loop", "asyncio"),
    (["--asgi-lifespan", "on"], "asgi_lifespan", "on"),
    (["--ws-max-message-size", "65536"], "ws_max_message_size", 65536),
    (["--websocket-max-message-size", "4096"], "ws_max_message_size", 4096),
    (["--ws-ping-interval", "0.5"], "ws_ping_interval", 0.5),
    (["--ws-ping-timeout", "0"], "ws_ping_timeout", 0.0),
    (["--ws-per-message-deflate", "false"], "ws_per_message_deflate", False),
    (["--request-timeout", "30"], "request_timeout", 30.0),
    (["--reload"], "reload", True),
    (["--reload-engine", "poll"], "reload_engine", "poll"),
    (
        ["--reload-extra-file", "a.html", "--reload-extra-file", "b.txt"],
        "reload_extra_files",
        ["a.html", "b.txt"],
    ),
    (["--certfile", "site.pem"], "certfile", "site.pem"),
    (["--keyfile=site.key"], "keyfile", "site.key"),
    (["--ssl-version", "TLSv1_2"], "ssl_version", 5),
    (["--cert-reqs", "2"], "cert_reqs", 2),
    (["--ca-certs", "ca.pem"], "ca_certs", "ca.pem"),
    (["--suppress-ragged-eofs"], "suppress_ragged_eofs", True),
    (["--do-handshake-on-connect"], "do_handshake_on_connect", True),
    (["--ciphers", "ECDHE+AESGCM"], "ciphers", "ECDHE+AESGCM"),
    (["--check-config"], "check_config", True),
    (["--print-config"], "print_config", True),
    (["--preload"], "preload_app", True),
    (["--no-sendfile"], "sendfile", False),
    (["--reuse-port"], "reuse_port", True),
    (["-D"], "daemon", True),
    (["-e", "A=1", "--env", "B=2"], "raw_env", ["A=1", "B=2"]),
    (["-p", "x.pid"], "pidfile", "x.pid"),
    (["-u", "123"], "user", 123),
    (["-g", "456"], "group", 456),
    (["-m", "022"], "umask", 0o22),
    (
        ["--forwarded-allow-ips", "10.0.0.1,10.0.0.2"],
        "forwarded_allow_ips",
        ["10.0.0.1", "10.0.0.2"],
    ),
    (
        ["--forwarder-headers", "script_name,REMOTE_USER"],
        "forwarder_headers",
        ["SCRIPT_NAME", "REMOTE_USER"],
    ),
    (["--proxy-headers"], "proxy_headers", True),
    (["--root-path", "/api/"], "root_path", "/api"),
    (["--proxy-protocol"], "proxy_protocol", "auto"),
    (["--proxy-protocol", "v2"], "proxy_protocol", "v2"),
    (["--proxy-protocol=V1"], "proxy_protocol", "v1"),
    (["--proxy-allow-from", "10.0.0.0/8, ::1"], "proxy_allow_ips", ["10.0.0.0/8", "::1"]),
    (["--pythonpath", "a,b"], "pythonpath", "a,b"),
    (["--access-logfile", "-"], "accesslog", "-"),
    (["--access-logformat", "%(h)s"], "access_log_format", "%(h)s"),
    (["--error-logfile", "err.log"], "errorlog", "err.log"),
    (["--log-file", "other.log"], "errorlog", "other.log"),
    (["--log-level", "debug"], "loglevel", "debug"),
    (["--capture-output"], "capture_output", True),
    (["--access-log-json"], "access_log_json", True),
    (["--disable-redirect-access-to-syslog"], "disable_redirect_access_to_syslog", True),
    (["--log-config", "log.ini"], "logconfig", "log.ini"),
    (["--log-config-json", "log.json"], "logconfig_json", "log.json"),
    (["--log-syslog"], "syslog", True),
    (["--log-syslog-to", "udp://[::1]:5140"], "syslog_addr", "udp://[::1]:5140"),
    (["--log-syslog-to=unix:///dev/log#dgram"], "syslog_addr", "unix:///dev/log#dgram"),
    (["--log-syslog-prefix", "shop"], "syslog_prefix", "shop"),
    (["--log-syslog-facility", "LOCAL7"], "syslog_facility", "local7"),
    (["--statsd-host", "localhost:9125"], "statsd_host", "localhost:9125"),
    (["--statsd-prefix=app"], "statsd_prefix", "app"),
    (["--dogstatsd-tags", "env:prod,team:web"], "dogstatsd_tags", "env:prod,team:web"),
    (["-n", "web"], "proc_name", "web"),
    (["--worker-class", "gunicorn.workers.sync.SyncWorker"], "worker_class", "sync"),
    (["-k", "uvicorn.workers.UvicornWorker"], "worker_class", "asgi"),
    (["-k", "uvicorn.workers.UvicornH11Worker"], "worker_class", "asgi"),
    (["-k", "uvicorn_worker.UvicornWorker"], "worker_class", "asgi"),
    (["--timeout", "5"], "timeout", 5),
    (["--daemon"], "daemon", True),
    (["--pid", "y.pid"], "pidfile", "y.pid"),
    (["--user", "7"], "user", 7),
    (["--group", "8"], "group", 8),
    (["--umask", "0o7"], "umask", 7),
    (["--name", "n"], "proc_name", "n"),
]


@pytest.mark.parametrize("argv, name, expected", FLAG_CASES)
def test_command_line_flags(in_tmp: Path, argv: list[str], name: str, expected: Any) -> None:
    cfg = load_config(argv, {})
    assert getattr(cfg, name) == expected
    assert cfg.argv == argv


def test_every_flag_in_the_table_is_tested() -> None:
    used = {token.split("=", 1)[0] for argv, _, _ in FLAG_CASES for token in argv}
    used |= {"-c", "--config", "--chdir"}  # tested below
    flags = {flag for setting in SETTINGS for flag in setting.flags}
    assert flags <= used


def test_help_lists_every_flag() -> None:
    text = build_parser().format_help()
    for setting in SETTINGS:
        for flag in setting.flags:
            assert flag in text, flag


def test_chdir_flag_does_not_change_directory(in_tmp: Path) -> None:
    (in_tmp / "site").mkdir()
    path_before = list(sys.path)
    cfg = load_config(["--chdir", "site"], {})
    assert cfg.chdir == str(in_tmp / "site")
    assert os.getcwd() == str(in_tmp)
    assert sys.path == path_before


def test_positional_app_module_sets_wsgi_app(in_tmp: Path) -> None:
    cfg = load_config(["-w", "2", "myapp:app", "--preload"], {})
    assert cfg.wsgi_app == "myapp:app"
    assert cfg.proc_name == "myapp:app"


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        load_config(["--version"], {})
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"monoceros (version {__version__})"


# --- command-line errors ---------------------------------------------------------------------


def test_unknown_option_suggests_the_closest(in_tmp: Path) -> None:
    with pytest.raises(UsageError) as info:
        load_config(["--wokers=3"], {})
    assert str(info.value) == ("unrecognized arguments: --wokers=3 (did you mean '--workers'?)")
    with pytest.raises(UsageError) as info:
        load_config(["--zzz", "app:app"], {})
    assert str(info.value) == "unrecognized arguments: --zzz"


def test_gunicorn_only_option_is_warned_about_and_ignored(in_tmp: Path) -> None:
    cfg = load_config(
        ["--spew", "--logger-class", "my.Logger", "app:app", "--worker-tmp-dir=/tmp", "-R"], {}
    )
    assert cfg.wsgi_app == "app:app"  # the option's value was not taken for APP_MODULE
    assert cfg.warnings == [
        f"gunicorn option {flag} on the command line is not supported by monoceros; ignored"
        for flag in ("--spew", "--logger-class", "--worker-tmp-dir", "--enable-stdio-inheritance")
    ]


def test_gunicorn_only_option_at_gunicorns_default_is_silent(in_tmp: Path) -> None:
    argv = [
        "--logger-class",
        "gunicorn.glogging.Logger",
        "--header-map",
        "DROP",
        "--http-protocols",
        "h1",
        "--cert-reqs",
        "0",
        "--suppress-ragged-eofs",
    ]
    assert load_config(argv, {}).warnings == []


@pytest.fixture
def fail_open_row(monkeypatch: pytest.MonkeyPatch) -> GunicornOnly:
    """A gunicorn-only setting whose absence would fail open (none is left today: TLS and the
    PROXY protocol are served), so the refusal keeps being tested."""
    row = GunicornOnly("tls_like", None, ("--tls-like",), refuse="not served; remove it")
    monkeypatch.setitem(GUNICORN_ONLY, row.name, row)
    return row


@pytest.mark.parametrize("argv", [["--tls-like", "c.pem"], ["--tls-like=c.pem"]])
def test_gunicorn_options_that_would_fail_open_are_refused(
    in_tmp: Path, fail_open_row: GunicornOnly, argv: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config([*argv, "app:app"], {})
    assert str(info.value) == "option --tls-like (on the command line): not served; remove it"
    assert load_config(["--tls-like", "", "app:app"], {}).warnings == []  # the default: silent


def test_gunicorn_option_from_the_environment_names_the_variable(
    in_tmp: Path, fail_open_row: GunicornOnly
) -> None:
    cfg = load_config([], {"GUNICORN_CMD_ARGS": "--logger-class=my.Logger"})
    assert cfg.warnings == [
        "gunicorn option --logger-class from GUNICORN_CMD_ARGS is not supported by monoceros; "
        "ignored"
    ]
    with pytest.raises(ConfigError, match=r"^option --tls-like \(from MONOCEROS_CMD_ARGS\): not"):
        load_config([], {ENV_ARGS_VAR: "--tls-like c.pem"})


def test_missing_option_argument(in_tmp: Path) -> None:
    with pytest.raises(UsageError, match="argument -w/--workers: expected one argument"):
        load_config(["-w"], {})


def test_bad_value_on_the_command_line_names_the_setting(in_tmp: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(["-w", "abc"], {})
    assert str(info.value) == "workers: expected a positive integer, got 'abc'"
    assert not isinstance(info.value, UsageError)


def test_two_app_modules_are_a_usage_error(in_tmp: Path) -> None:
    with pytest.raises(UsageError, match="unrecognized arguments: b:app"):
        load_config(["a:app", "b:app"], {})


# --- MONOCEROS_CMD_ARGS ---------------------------------------------------------------------


def test_env_args_are_shlex_split(in_tmp: Path) -> None:
    cfg = load_config([], {ENV_ARGS_VAR: "-w 3 --access-logformat '%(h)s %(r)s'"})
    assert cfg.workers == 3
    assert cfg.access_log_format == "%(h)s %(r)s"


def test_env_args_errors_name_the_variable(in_tmp: Path) -> None:
    with pytest.raises(UsageError, match=f"^{ENV_ARGS_VAR}: unrecognized arguments: --nope"):
        load_config([], {ENV_ARGS_VAR: "--nope"})
    with pytest.raises(UsageError, match=f"^{ENV_ARGS_VAR}: No closing quotation"):
        load_config([], {ENV_ARGS_VAR: "-n 'open"})
    with pytest.raises(ConfigError) as info:
        load_config([], {ENV_ARGS_VAR: "-t soon"})
    assert str(info.value) == (
        f"timeout: expected a non-negative integer, got 'soon' (from {ENV_ARGS_VAR})"
    )


def test_env_args_can_name_the_app(in_tmp: Path) -> None:
    assert load_config([], {ENV_ARGS_VAR: "envapp:app"}).wsgi_app == "envapp:app"
    assert load_config(["cli:app"], {ENV_ARGS_VAR: "envapp:app"}).wsgi_app == "cli:app"


def test_environment_defaults_flow_through(in_tmp: Path) -> None:
    cfg = load_config([], {"PORT": "9999", "WEB_CONCURRENCY": "6"})
    assert cfg.bind == ["0.0.0.0:9999"]
    assert cfg.workers == 6


# --- precedence -----------------------------------------------------------------------------


def test_precedence_defaults_file_env_cli(in_tmp: Path) -> None:
    conf = write(
        in_tmp / "prec.conf.py", "workers = 2\ntimeout = 11\nkeepalive = 7\nbacklog = 99\n"
    )
    env = {ENV_ARGS_VAR: "-t 12 --keep-alive 8", "WEB_CONCURRENCY": "5"}
    cfg = load_config(["-c", conf, "--keep-alive", "9"], env)
    assert cfg.graceful_timeout == 30  # default
    assert cfg.backlog == 99  # file
    assert cfg.workers == 2  # file beats the WEB_CONCURRENCY default
    assert cfg.timeout == 12  # env beats file
    assert cfg.keepalive == 9  # cli beats env


def test_cli_list_replaces_file_list(in_tmp: Path) -> None:
    conf = write(in_tmp / "b.conf.py", "bind = ['a:1', 'b:2']\n")
    assert load_config(["-c", conf, "-b", "c:3"], {}).bind == ["c:3"]


def test_config_file_named_in_env_args(in_tmp: Path) -> None:
    from_env = write(in_tmp / "env.conf.py", "workers = 3\n")
    from_cli = write(in_tmp / "cli.conf.py", "workers = 4\n")
    assert load_config([], {ENV_ARGS_VAR: f"-c {from_env}"}).workers == 3
    cfg = load_config(["-c", from_cli], {ENV_ARGS_VAR: f"-c {from_env}"})
    assert cfg.workers == 4
    assert cfg.config == from_cli


def test_default_config_file_is_used_when_present(in_tmp: Path) -> None:
    write(in_tmp / DEFAULT_CONFIG_FILE, "workers = 7\n")
    cfg = load_config([], {})
    assert cfg.workers == 7
    assert cfg.config == str(in_tmp / DEFAULT_CONFIG_FILE)


def test_explicit_config_file_replaces_the_default(in_tmp: Path) -> None:
    write(in_tmp / DEFAULT_CONFIG_FILE, "workers = 7\n")
    other = write(in_tmp / "other.py", "timeout = 3\n")
    cfg = load_config(["-c", other], {})
    assert (cfg.workers, cfg.timeout) == (1, 3)


def test_file_prefix(in_tmp: Path) -> None:
    write(in_tmp / "prefixed.py", "workers = 6\n")
    assert load_config(["-c", "file:prefixed.py"], {}).workers == 6


def test_python_module_config(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(in_tmp / "monoceros_test_conf_module.py", "workers = 8\n")
    monkeypatch.syspath_prepend(str(in_tmp))
    cfg = load_config(["-c", "python:monoceros_test_conf_module"], {})
    assert cfg.workers == 8
    assert "monoceros_test_conf_module" not in sys.modules


def test_wsgi_app_from_file_and_cli_override(in_tmp: Path) -> None:
    conf = write(in_tmp / "app.conf.py", "wsgi_app = 'fromfile:app'\n")
    assert load_config(["--config", conf], {}).wsgi_app == "fromfile:app"
    assert load_config(["-c", conf, "cli:app"], {}).wsgi_app == "cli:app"


# --- config files ---------------------------------------------------------------------------


def test_a_gunicorn_config_file_loads_unchanged(in_tmp: Path) -> None:
    path = str(DATA / "gunicorn.conf.py")
    cfg = load_config(["-c", path], {})
    assert cfg.warnings == []
    assert cfg.config == path
    assert cfg.bind == ["127.0.0.1:9001", "unix:/tmp/monoceros-test.sock"]
    assert cfg.workers == (os.cpu_count() or 1) * 2 + 1
    assert cfg.worker_class == "sync"
    assert (cfg.timeout, cfg.graceful_timeout, cfg.keepalive) == (60, 20, 5)
    assert cfg.limit_request_field_size == 16380
    assert cfg.preload_app is True
    assert cfg.loglevel == "warning"
    assert cfg.proc_name == "legacy-site"
    assert cfg.forwarded_allow_ips == ["*"]
    assert cfg.secure_scheme_headers == {"X-FORWARDED-PROTO": "https"}
    assert cfg.pidfile == str(DATA / "legacy.pid")  # __file__ is set
    for hook in (
        "when_ready",
        "post_fork",
        "pre_request",
        "post_request",
        "worker_int",
        "worker_abort",
    ):
        assert cfg.hook_is_set(hook), hook
    assert not cfg.hook_is_set("on_starting")


def test_the_example_from_the_issue(in_tmp: Path) -> None:
    write(in_tmp / "gunicorn.conf.py", "worker = 4\n")
    cfg = load_config(["-c", "gunicorn.conf.py"], {})
    assert cfg.warnings == [
        "unknown setting 'worker' in gunicorn.conf.py (did you mean 'workers'?)"
    ]
    assert cfg.workers == 1


def test_which_unknown_names_are_warned_about(in_tmp: Path) -> None:
    path = str(DATA / "typos.conf.py")
    cfg = load_config(["-c", path], {})
    assert cfg.warnings == [
        f"unknown setting 'worker' in {path} (did you mean 'workers'?)",
        f"gunicorn setting 'spew' in {path} is not supported by monoceros; ignored",
        f"unknown setting 'post_frok' in {path} (did you mean 'post_fork'?)",
    ]
    assert cfg.timeout == 5


def test_setting_config_inside_a_config_file_is_warned_about(in_tmp: Path) -> None:
    conf = write(in_tmp / "c.py", "config = 'other.py'\n")
    cfg = load_config(["-c", conf], {})
    assert cfg.config == conf
    assert cfg.warnings == [f"setting 'config' in {conf} has no effect; use -c"]


def test_missing_config_file_is_an_error(in_tmp: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(["-c", "nope.conf.py"], {})
    assert str(info.value) == "config: no such file 'nope.conf.py'"
    with pytest.raises(ConfigError, match="config: no such config module 'no_such_conf_mod'"):
        load_config(["-c", "python:no_such_conf_mod"], {})


def test_config_file_that_raises(in_tmp: Path) -> None:
    path = str(DATA / "raises.conf.py")
    with pytest.raises(ConfigError) as info:
        load_config(["-c", path], {})
    assert str(info.value) == (f"config file {path!r}, line 4: ZeroDivisionError: division by zero")


def test_config_file_with_a_syntax_error(in_tmp: Path) -> None:
    path = str(DATA / "syntax_error.conf")
    with pytest.raises(ConfigError) as info:
        load_config(["-c", path], {})
    message = str(info.value)
    assert message.startswith(f"config file {path!r}, line 2: SyntaxError: ")
    assert "\n" not in message


def test_error_raised_in_a_function_called_by_the_config_file(in_tmp: Path) -> None:
    conf = write(in_tmp / "deep.py", "def f():\n    raise KeyError('x')\n\nworkers = f()\n")
    with pytest.raises(ConfigError) as info:
        load_config(["-c", conf], {})
    assert str(info.value) == f"config file {conf!r}, line 2: KeyError: 'x'"


def test_bad_value_in_a_config_file_names_setting_and_file(in_tmp: Path) -> None:
    path = str(DATA / "bad_value.conf.py")
    with pytest.raises(ConfigError) as info:
        load_config(["-c", path], {})
    assert str(info.value) == f"workers: expected a positive integer, got 'abc' (in {path})"
    assert info.value.setting == "workers"


def test_bad_hook_in_a_config_file(in_tmp: Path) -> None:
    conf = write(in_tmp / "hook.py", "def post_fork(server):\n    pass\n")
    with pytest.raises(ConfigError, match=r"^post_fork: expected a function taking \(server, "):
        load_config(["-c", conf], {})


def test_config_file_namespace_is_fresh_each_time(in_tmp: Path) -> None:
    conf = write(
        in_tmp / "fresh.py",
        "try:\n    seen\nexcept NameError:\n    seen = 1\n"
        "else:\n    raise RuntimeError('namespace reused')\n",
    )
    load_config(["-c", conf], {})
    load_config(["-c", conf], {})


# --- a renamed gunicorn deployment ---------------------------------------------------------


def test_gunicorn_conf_py_is_loaded_without_c(in_tmp: Path) -> None:
    write(in_tmp / "gunicorn.conf.py", "workers = 2\n")
    cfg = load_config([], {})
    assert (cfg.workers, cfg.config) == (2, str(in_tmp / "gunicorn.conf.py"))
    assert cfg.notices == [f"Using config file {in_tmp / 'gunicorn.conf.py'}"]


def test_monoceros_conf_py_wins_over_gunicorn_conf_py(in_tmp: Path) -> None:
    write(in_tmp / "gunicorn.conf.py", "workers = 2\n")
    write(in_tmp / DEFAULT_CONFIG_FILE, "workers = 3\n")
    assert load_config([], {}).workers == 3
    assert load_config(["-c", "gunicorn.conf.py"], {}).workers == 2


def test_gunicorn_cmd_args_is_read_without_monoceros_cmd_args(in_tmp: Path) -> None:
    cfg = load_config([], {"GUNICORN_CMD_ARGS": "--workers 4 -b 127.0.0.1:9"})
    assert (cfg.workers, cfg.bind) == (4, ["127.0.0.1:9"])
    assert cfg.notices == ["Using arguments from $GUNICORN_CMD_ARGS"]
    both = {ENV_ARGS_VAR: "--workers 5", "GUNICORN_CMD_ARGS": "--workers 4"}
    assert load_config([], both).workers == 5
    assert load_config([], {**both, ENV_ARGS_VAR: ""}).workers == 1  # set, even empty: ours
    with pytest.raises(UsageError, match=r"^GUNICORN_CMD_ARGS: No closing quotation"):
        load_config([], {"GUNICORN_CMD_ARGS": "-n 'open"})


def test_one_notice_names_the_file_and_the_variable(in_tmp: Path) -> None:
    write(in_tmp / "gunicorn.conf.py", "workers = 2\n")
    cfg = load_config([], {"GUNICORN_CMD_ARGS": "--workers 3"})
    assert cfg.workers == 3
    assert cfg.notices == [
        f"Using config file {in_tmp / 'gunicorn.conf.py'} and arguments from $GUNICORN_CMD_ARGS"
    ]
    assert load_config([], {"GUNICORN_CMD_ARGS": " "}).notices == [
        f"Using config file {in_tmp / 'gunicorn.conf.py'}"
    ]


def test_uvicorn_worker_classes_run_the_asgi_worker_with_a_notice(in_tmp: Path) -> None:
    cfg = load_config(["-k", "uvicorn.workers.UvicornWorker"], {})
    assert cfg.worker_class == "asgi"
    assert cfg.notices == [
        "Worker class 'uvicorn.workers.UvicornWorker': served by monoceros's own asgi worker"
    ]
    conf = write(in_tmp / "u.py", "worker_class = 'uvicorn_worker.UvicornWorker'\n")
    assert load_config(["-c", conf], {}).notices[1:] == [
        "Worker class 'uvicorn_worker.UvicornWorker': served by monoceros's own asgi worker"
    ]
    assert load_config(["-c", conf, "-k", "asgi"], {}).notices[1:] == []


def test_a_flag_wins_over_an_invalid_value_in_the_file(in_tmp: Path) -> None:
    conf = write(in_tmp / "c.py", "worker_class = 'nonsense'\nworkers = 'many'\n")
    with pytest.raises(ConfigError, match="nonsense"):
        load_config(["-c", conf], {})
    cfg = load_config(["-c", conf, "-k", "asgi"], {ENV_ARGS_VAR: "-w 2"})
    assert (cfg.worker_class, cfg.workers) == ("asgi", 2)
    assert load_config(["-w", "3"], {ENV_ARGS_VAR: "-w many"}).workers == 3


def test_websocket_max_message_size_is_gunicorns_name(in_tmp: Path) -> None:
    conf = write(in_tmp / "c.py", "websocket_max_message_size = 1024\n")
    cfg = load_config(["-c", conf], {})
    assert (cfg.ws_max_message_size, cfg.warnings) == (1024, [])
    assert load_config(["-c", conf, "--ws-max-message-size", "9"], {}).ws_max_message_size == 9


GUNICORN_27_DEFAULTS = """
keyfile = None
certfile = None
ca_certs = None
cert_reqs = 0
proxy_protocol = False
http_protocols = "h1"
http2_max_concurrent_streams = 100
root_path = ""
dirty_workers = 0
dirty_apps = []
asgi_disconnect_grace_period = 3
http_parser = "auto"
enable_backlog_metric = False
control_socket_mode = 0o600
header_map = "drop"
statsd_host = None
logconfig_dict = {}
"""


def test_gunicorn_settings_at_gunicorns_defaults_are_silent(in_tmp: Path) -> None:
    conf = write(in_tmp / "g.py", GUNICORN_27_DEFAULTS)
    assert load_config(["-c", conf], {}).warnings == []


def test_gunicorn_settings_at_other_values_are_warned_about(in_tmp: Path) -> None:
    conf = write(
        in_tmp / "g.py",
        "http_protocols = 'h2,h1'\ndirty_workers = 2\n"
        "control_socket = '/run/g.ctl'\n"
        "def on_dirty_starting(arbiter):\n    pass\n",
    )
    assert load_config(["-c", conf], {}).warnings == [
        f"gunicorn setting {name!r} in {conf} is not supported by monoceros; ignored"
        for name in (
            "http_protocols",
            "dirty_workers",
            "control_socket",
            "on_dirty_starting",
        )
    ]


def test_gunicorn_settings_that_would_fail_open_are_refused(
    in_tmp: Path, fail_open_row: GunicornOnly
) -> None:
    conf = write(in_tmp / "g.py", "tls_like = 'c.pem'\n")
    with pytest.raises(ConfigError) as info:
        load_config(["-c", conf], {})
    assert str(info.value) == f"setting 'tls_like' (in {conf}): not served; remove it"
