"""gunicorn's logging settings in the Logger: logconfig_dict / logconfig_json / logconfig (which
wins, the merge over gunicorn's defaults, what a config replaces and what stays), the logger
names gunicorn.error and gunicorn.access, and syslog's handler."""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_logs import ENVIRON, make_cfg

from monoceros.log_config import CONFIG_DEFAULTS, LogConfigError, prepare
from monoceros.logs import ACCESS_LOGGER, ERROR_LOGGER, Logger

HERE = logging.getLogger(__name__)


@pytest.fixture(autouse=True)
def logging_state() -> Iterator[None]:
    """Put every logger (and the root) back as it was: a logging config changes them all."""
    manager = logging.Logger.manager
    saved = {
        name: (log, list(log.handlers), log.level, log.propagate, log.disabled, log.name)
        for name, log in [("", logging.getLogger()), *manager.loggerDict.items()]
        if isinstance(log, logging.Logger)
    }
    yield
    for name in [n for n in manager.loggerDict if n and n not in saved]:
        del manager.loggerDict[name]
    for name, (log, handlers, level, propagate, disabled, logname) in saved.items():
        if name:
            manager.loggerDict[name] = log
        log.handlers[:] = handlers
        log.setLevel(level)
        log.propagate, log.disabled, log.name = propagate, disabled, logname


@pytest.fixture
def make_logger() -> Iterator[Callable[..., Logger]]:
    made: list[Logger] = []

    def make(**overrides: Any) -> Logger:
        for name in (ERROR_LOGGER, ACCESS_LOGGER):
            # pytest puts its capture handlers on every logger that does not propagate: here
            # they would be handlers a logging config left, so the tests take them off
            log = logging.getLogger(name)
            for handler in [h for h in log.handlers if not getattr(h, "_monoceros", False)]:
                log.removeHandler(handler)
        logger = Logger(make_cfg(**overrides))
        made.append(logger)
        return logger

    yield make
    for logger in made:
        logger.close()


def gunicorn_style(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """The shape gunicorn's users write: gunicorn.error and gunicorn.access to files."""
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": "INFO", "handlers": []},
        "loggers": {
            "gunicorn.error": {
                "level": "INFO",
                "handlers": ["error_file"],
                "propagate": False,
                "qualname": "gunicorn.error",
            },
            "gunicorn.access": {
                "level": "INFO",
                "handlers": ["access_file"],
                "propagate": False,
                "qualname": "gunicorn.access",
            },
        },
        "handlers": {
            "error_file": {
                "class": "logging.FileHandler",
                "formatter": "named",
                "filename": str(tmp_path / "error.log"),
            },
            "access_file": {
                "class": "logging.FileHandler",
                "formatter": "named",
                "filename": str(tmp_path / "access.log"),
            },
        },
        "formatters": {"named": {"format": "%(name)s %(levelname)s %(message)s"}},
    }
    config.update(extra)
    return config


def read(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# -- which config, merged how ------------------------------------------------------------------


def test_no_config_settings_no_config() -> None:
    assert prepare(make_cfg()) is None


def test_dict_is_merged_over_gunicorns_defaults_key_by_key() -> None:
    prepared = prepare(make_cfg(logconfig_dict={"loggers": {"app": {"level": "DEBUG"}}}))
    assert prepared is not None and prepared.config is not None
    assert prepared.config["loggers"] == {"app": {"level": "DEBUG"}}  # replaced, not merged
    assert prepared.config["handlers"] == CONFIG_DEFAULTS["handlers"]
    assert prepared.config["root"] == {"level": "INFO", "handlers": ["console"]}
    assert prepared.loggers == {"app", ""}


def test_dict_wins_over_json_which_wins_over_ini(tmp_path: Path) -> None:
    js = tmp_path / "log.json"
    js.write_text(json.dumps({"loggers": {"from.json": {}}}))
    ini = tmp_path / "log.ini"
    ini.write_text("[loggers]\nkeys=root\n[logger_root]\nhandlers=\n")
    both = {"logconfig_json": str(js), "logconfig": str(ini)}
    one = prepare(make_cfg(logconfig_dict={"loggers": {"from.dict": {}}}, **both))
    assert one is not None and one.origin == "logconfig_dict"
    two = prepare(make_cfg(**both))
    assert two is not None and two.origin == f"logconfig_json {js}"
    assert two.loggers == {"from.json", ""}
    three = prepare(make_cfg(logconfig=str(ini)))
    assert three is not None and three.origin == f"logconfig {ini}" and three.loggers == {""}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "logconfig_json: cannot open {path}: No such file or directory"),
        ('{"version": 1,', "logconfig_json: {path} is not valid JSON: Expecting"),
        ("[1, 2]", "logconfig_json: {path} must hold a JSON object (a dict)"),
    ],
)
def test_json_file_errors_are_one_line(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "log.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(LogConfigError) as info:
        prepare(make_cfg(logconfig_json=str(path)))
    assert str(info.value).startswith(message.format(path=path)), info.value
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "logconfig: cannot open {path}: No such file or directory"),
        ("loggers keys=root", "logconfig: {path} is not a valid ini file"),
        ("[handlers]\nkeys=\n", "logconfig: {path}: missing section or key 'loggers'"),
    ],
)
def test_ini_file_errors_are_one_line(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "log.ini"
    if content is not None:
        path.write_text(content)
    with pytest.raises(LogConfigError) as info:
        prepare(make_cfg(logconfig=str(path)))
    assert str(info.value).startswith(message.format(path=path)), info.value


def test_replacing_gunicorns_handlers_without_a_root_fails_as_in_gunicorn_with_a_hint(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    config = gunicorn_style(tmp_path)
    del config["root"]  # gunicorn's default root writes to 'console', which is gone
    with pytest.raises(LogConfigError) as info:
        make_logger(logconfig_dict=config)
    text = str(info.value)
    assert text.startswith("logconfig_dict: Unable to configure root logger"), text
    assert "give a 'root' entry" in text


def test_a_handler_that_does_not_import_names_the_setting(
    make_logger: Callable[..., Logger],
) -> None:
    config = {"handlers": {"h": {"class": "no.such.Handler"}}, "root": {"handlers": ["h"]}}
    with pytest.raises(LogConfigError, match=r"^logconfig_dict: Unable to configure handler 'h'"):
        make_logger(logconfig_dict=config)


# -- what a config replaces, what stays ---------------------------------------------------------


def test_gunicorn_names_configure_monoceros_logs(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    log = make_logger(logconfig_dict=gunicorn_style(tmp_path), accesslog=str(tmp_path / "a.log"))
    assert logging.getLogger("gunicorn.error") is log.error is logging.getLogger(ERROR_LOGGER)
    assert logging.getLogger("gunicorn.access") is logging.getLogger(ACCESS_LOGGER)
    assert log.access_enabled
    log.info("hello")
    log.access(ENVIRON, "200 OK", [], 5, 0.01)
    assert read(tmp_path / "error.log") == [
        "gunicorn.error WARNING logconfig_dict sets the handlers of the access log: "
        f"accesslog {tmp_path / 'a.log'} not used for it",
        "gunicorn.error INFO hello",
    ]
    (line,) = read(tmp_path / "access.log")
    assert line.startswith("gunicorn.access INFO 192.0.2.7 - alice [")  # access_log_format stays
    assert read(tmp_path / "a.log") == []


def test_monoceros_names_keep_monoceros_record_names(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    config = gunicorn_style(tmp_path)
    config["loggers"] = {
        "monoceros.error": config["loggers"]["gunicorn.error"],
        "monoceros.access": config["loggers"]["gunicorn.access"],
    }
    log = make_logger(logconfig_dict=config, access_log_json=True)
    log.warning("careful")
    log.access(ENVIRON, 201, [], 0, 0.0)
    assert read(tmp_path / "error.log") == ["monoceros.error WARNING careful"]
    name, level, line = read(tmp_path / "access.log")[0].split(" ", 2)
    assert (name, level, json.loads(line)["status"]) == ("monoceros.access", "INFO", 201)


def test_a_config_that_leaves_a_logger_alone_keeps_its_settings(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    config = gunicorn_style(tmp_path)
    del config["loggers"]["gunicorn.access"]
    access = tmp_path / "a.log"
    log = make_logger(logconfig_dict=config, accesslog=str(access), access_log_format="%(m)s")
    log.access(ENVIRON, "200 OK", [], 5, 0.01)
    assert read(access) == ["POST"]
    log.setup(make_cfg(logconfig_dict=config))  # and no accesslog: nobody would read it
    assert log.access_enabled is False


def test_loglevel_stays_unless_the_config_gives_one(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    config = gunicorn_style(tmp_path)
    del config["loggers"]["gunicorn.error"]["level"]
    log = make_logger(logconfig_dict=config, loglevel="warning")
    assert log.error.level == logging.WARNING
    config["loggers"]["gunicorn.error"]["level"] = "DEBUG"
    log.setup(make_cfg(logconfig_dict=config, loglevel="warning"))
    assert log.error.level == logging.DEBUG


def test_disable_existing_loggers_does_not_silence_ours(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    config = gunicorn_style(tmp_path, disable_existing_loggers=True)
    del config["loggers"]["gunicorn.access"]
    log = make_logger(logconfig_dict=config, accesslog=str(tmp_path / "a.log"))
    assert not log.error.disabled and not logging.getLogger(ACCESS_LOGGER).disabled
    assert HERE.disabled  # the application's loggers: as the config says
    log.access(ENVIRON, "200 OK", [], 5, 0.01)
    assert len(read(tmp_path / "a.log")) == 1


def test_a_gunicorn_parent_logger_receives_what_propagates(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    config = gunicorn_style(tmp_path)
    config["loggers"] = {"gunicorn": {"level": "INFO", "handlers": ["error_file"]}}
    log = make_logger(logconfig_dict=config)
    log.info("up")
    assert read(tmp_path / "error.log") == ["gunicorn.error INFO up"]
    assert log.access_enabled  # gunicorn.access propagates to gunicorn's handler too


def test_level_counts_for_statsd_keep_working(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    log = make_logger(logconfig_dict=gunicorn_style(tmp_path))
    log.warning("w")
    log.error("e")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("x")
    assert log.levels.counts() == {"error": 1, "warning": 1, "exception": 1}


def test_reopen_reopens_the_configs_files(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    log = make_logger(logconfig_dict=gunicorn_style(tmp_path))
    log.info("before")
    (tmp_path / "error.log").rename(tmp_path / "error.log.1")
    log.reopen_files()
    log.info("after")
    assert read(tmp_path / "error.log") == ["gunicorn.error INFO after"]
    assert read(tmp_path / "error.log.1") == ["gunicorn.error INFO before"]
    files = {Path(h.baseFilename).name for h in log.log_files()}
    assert files == {"error.log", "access.log"}


def test_capture_output_still_writes_to_errorlog(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    sys_err = tmp_path / "stdio.log"
    saved = (os.dup(1), os.dup(2))
    try:
        log = make_logger(
            logconfig_dict=gunicorn_style(tmp_path), errorlog=str(sys_err), capture_output=True
        )
        os.write(2, b"from fd 2\n")
        log.info("logged")
        assert read(sys_err) == ["from fd 2"]
        assert read(tmp_path / "error.log") == ["gunicorn.error INFO logged"]
        sys_err.rename(tmp_path / "stdio.log.1")
        log.reopen_files()
        os.write(1, b"from fd 1\n")
        assert read(sys_err) == ["from fd 1"]
        log.close()
    finally:
        for target, fd in zip((1, 2), saved, strict=True):
            os.dup2(fd, target)
            os.close(fd)


def test_ini_file_with_here(make_logger: Callable[..., Logger], tmp_path: Path) -> None:
    ini = tmp_path / "log.ini"
    ini.write_text(
        "[loggers]\nkeys=root,gerror\n"
        "[handlers]\nkeys=file\n"
        "[formatters]\nkeys=plain\n"
        "[logger_root]\nlevel=WARNING\nhandlers=\n"
        "[logger_gerror]\nlevel=INFO\nhandlers=file\npropagate=0\nqualname=gunicorn.error\n"
        "[handler_file]\nclass=FileHandler\nformatter=plain\n"
        "args=('%(here)s/ini-error.log', 'a')\n"
        "[formatter_plain]\nformat=%(name)s|%(message)s\n"
    )
    log = make_logger(logconfig=str(ini))
    log.info("from ini")
    assert read(tmp_path / "ini-error.log") == ["gunicorn.error|from ini"]


# -- syslog ------------------------------------------------------------------------------------


def test_syslog_prefix_from_proc_name_and_facility(
    make_logger: Callable[..., Logger],
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        addr = f"udp://127.0.0.1:{sock.getsockname()[1]}"
        log = make_logger(syslog=True, syslog_addr=addr, syslog_facility="daemon",
                          proc_name="shop:app 100%")  # fmt: skip
        log.error("disk %s", "full")
        assert (
            sock.recv(4096)
            == f"<27>gunicorn.shop.app 100%.error: [{os.getpid()}] disk full\x00".encode()
        )
        assert log.access_enabled  # the access log goes to syslog too
        log.access(ENVIRON, "200 OK", [], 5, 0.01)
        assert sock.recv(4096).startswith(b"<30>gunicorn.shop.app 100%.access: [")


def test_syslog_access_can_be_left_out(make_logger: Callable[..., Logger]) -> None:
    log = make_logger(syslog=True, disable_redirect_access_to_syslog=True)
    assert log.access_enabled is False
    kinds = [type(h).__name__ for h in log.error.handlers if getattr(h, "_monoceros", False)]
    assert kinds == ["StreamHandler", "_SysLog"]


def test_syslog_not_there_yet_is_one_warning_and_one_line_a_minute(
    make_logger: Callable[..., Logger], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "log.sock"
    errors = tmp_path / "error.log"
    log = make_logger(syslog=True, syslog_addr=f"unix://{path}", errorlog=str(errors))
    assert read(errors)[0].endswith(
        f"[WARNING] syslog at unix://{path} cannot be reached now; its lines are sent once it can be"
    )
    log.info("lost")
    log.info("lost too")
    err = capfd.readouterr().err
    assert err == (
        f"[{os.getpid()}] cannot send the error log to syslog at unix://{path}: "
        "No such file or directory (1 line(s) lost so far)\n"
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        log.warning("found")  # Python connects again at each record
        assert sock.recv(4096).endswith(b"] found\x00")
    assert capfd.readouterr().err == ""


def test_syslog_over_tcp_that_refuses_is_one_line(make_logger: Callable[..., Logger]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(OSError) as info:
            make_logger(syslog=True, syslog_addr=f"tcp://127.0.0.1:{port}")
    assert str(info.value) == f"cannot reach syslog at tcp://127.0.0.1:{port}: Connection refused"


def test_syslog_and_files_survive_a_config_that_names_other_loggers(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    """The standard library closes every handler when it applies a config; ours come back."""
    config = gunicorn_style(tmp_path)
    config["loggers"] = {"app": {"level": "DEBUG", "handlers": ["error_file"]}}
    access = tmp_path / "a.log"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        log = make_logger(
            logconfig_dict=config,
            syslog=True,
            syslog_addr=f"udp://127.0.0.1:{sock.getsockname()[1]}",
            accesslog=str(access),
            access_log_format="%(m)s",
        )
        log.info("still here")
        assert sock.recv(4096).endswith(b"] still here\x00")
        log.access(ENVIRON, "200 OK", [], 5, 0.01)
        assert sock.recv(4096).endswith(b"] POST\x00")
    assert read(access) == ["POST"]


def test_stacks_go_where_the_configs_error_log_goes(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    log = make_logger(logconfig_dict=gunicorn_style(tmp_path))
    fd = log.error_fileno()
    assert os.fstat(fd).st_ino == (tmp_path / "error.log").stat().st_ino
