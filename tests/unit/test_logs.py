"""Error log and access log: line formats, every access log atom, setup twice, rotation, capture."""

from __future__ import annotations

import base64
import gc
import logging
import logging.handlers
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from monoceros.access_log import (
    DEFAULT_ACCESS_LOG_FORMAT,
    AccessFormat,
    basic_auth_user,
    clf_time,
    escape,
    log_safe,
)
from monoceros.logs import ACCESS_LOGGER, ERROR_LOGGER, Logger
from monoceros.workers.blocking import request_line

ERROR_LINE = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4})\] \[(\d+)\] \[([A-Z]+)\] (.*)$"
)
CLF_TIME = re.compile(r"^\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]$")


def make_cfg(**overrides: Any) -> SimpleNamespace:
    """A stand-in for monoceros.config with the logging settings and their defaults."""
    values: dict[str, Any] = {
        "errorlog": "-",
        "loglevel": "info",
        "accesslog": None,
        "access_log_format": DEFAULT_ACCESS_LOG_FORMAT,
        "capture_output": False,
        "proc_name": "monoceros-test",
        "access_log_json": False,
        "logconfig": None,
        "logconfig_dict": {},
        "logconfig_json": None,
        "syslog": False,
        "syslog_addr": "udp://localhost:514",
        "syslog_prefix": None,
        "syslog_facility": "user",
        "disable_redirect_access_to_syslog": False,
    }
    values.update(overrides)
    return SimpleNamespace(**values)


@pytest.fixture
def make_logger() -> Iterator[Callable[..., Logger]]:
    made: list[Logger] = []

    def make(**overrides: Any) -> Logger:
        logger = Logger(make_cfg(**overrides))
        made.append(logger)
        return logger

    yield make
    for logger in made:
        logger.close()


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def ours(name: str) -> list[logging.Handler]:
    return [h for h in logging.getLogger(name).handlers if getattr(h, "_monoceros", False)]


ENVIRON: dict[str, Any] = {
    "REQUEST_METHOD": "POST",
    "RAW_URI": "/a%20b/c?x=1&y=2",
    "PATH_INFO": "/a b/c",
    "QUERY_STRING": "x=1&y=2",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "192.0.2.7",
    "HTTP_REFERER": "https://example.org/from",
    "HTTP_USER_AGENT": "curl/8.5.0",
    "HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"alice:s3cret:x").decode(),
    "HTTP_X_FORWARDED_FOR": "203.0.113.9",
    "CONTENT_TYPE": "application/json",
    "CONTENT_LENGTH": "17",
    "wsgi.url_scheme": "https",
    "REMOTE_PORT": "54321",
}
RESPONSE_HEADERS = [("Content-Type", "text/html"), ("X-Request-Id", "abc123")]


def render(
    fmt: str,
    environ: Mapping[str, Any] = ENVIRON,
    status: str | int = "201 Created",
    headers: Any = RESPONSE_HEADERS,
    length: int | None = 1234,
    request_time: float = 2.0345678,
) -> str:
    return AccessFormat(fmt).render(environ, status, headers, length, request_time)


# -- error log ---------------------------------------------------------------------------------


def test_error_line_format(make_logger: Callable[..., Logger], tmp_path: Path) -> None:
    path = tmp_path / "error.log"
    log = make_logger(errorlog=str(path))
    log.info("Listening at: %s (%d)", "http://127.0.0.1:8000", 4)
    log.warning("100% plain text")
    (first, second) = lines(path)
    match = ERROR_LINE.match(first)
    assert match is not None, first
    stamp, pid, level, message = match.groups()
    assert int(pid) == os.getpid()
    assert level == "INFO"
    assert message == "Listening at: http://127.0.0.1:8000 (4)"
    parsed = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S %z"))
    assert abs(parsed - time.time()) < 120
    assert second.endswith("] [WARNING] 100% plain text")


@pytest.mark.parametrize(
    ("loglevel", "written"),
    [
        ("debug", ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]),
        ("info", ["INFO", "WARNING", "ERROR", "CRITICAL"]),
        ("WARNING", ["WARNING", "ERROR", "CRITICAL"]),
        ("error", ["ERROR", "CRITICAL"]),
        ("critical", ["CRITICAL"]),
    ],
)
def test_levels(
    make_logger: Callable[..., Logger], tmp_path: Path, loglevel: str, written: list[str]
) -> None:
    path = tmp_path / "error.log"
    log = make_logger(errorlog=str(path), loglevel=loglevel)
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    log.critical("c")
    assert [ERROR_LINE.match(line).group(3) for line in lines(path)] == written  # type: ignore[union-attr]
    assert log.is_enabled_for(logging.DEBUG) is ("DEBUG" in written)
    assert log.is_enabled_for(logging.CRITICAL) is True


def test_unknown_level_is_refused(make_logger: Callable[..., Logger]) -> None:
    with pytest.raises(ValueError, match="loglevel"):
        make_logger(loglevel="verbose")


def test_exception_appends_traceback(make_logger: Callable[..., Logger], tmp_path: Path) -> None:
    path = tmp_path / "error.log"
    log = make_logger(errorlog=str(path))
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("Error handling request %s", "/x")
    text = path.read_text()
    assert ERROR_LINE.match(text.splitlines()[0]).group(3, 4) == (  # type: ignore[union-attr]
        "ERROR",
        "Error handling request /x",
    )
    assert "Traceback (most recent call last):" in text
    assert text.rstrip().endswith("RuntimeError: boom")


def test_error_attribute_is_the_logger_and_callable(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    path = tmp_path / "error.log"
    log = make_logger(errorlog=str(path))
    assert log.error is logging.getLogger(ERROR_LOGGER)
    assert isinstance(log.error, logging.Logger)
    log.error("as a method: %s", 1)
    log.error.warning("as the logger: %s", 2)
    assert [line.split("] ", 2)[2] for line in lines(path)] == [
        "[ERROR] as a method: 1",
        "[WARNING] as the logger: 2",
    ]


@pytest.mark.parametrize("errorlog", ["-", None])
def test_error_log_dash_is_stderr(
    make_logger: Callable[..., Logger], capsys: pytest.CaptureFixture[str], errorlog: str | None
) -> None:
    log = make_logger(errorlog=errorlog)
    log.info("to stderr")
    out, err = capsys.readouterr()
    assert out == ""
    assert ERROR_LINE.match(err.rstrip("\n")) is not None
    assert err.endswith("[INFO] to stderr\n")


def test_error_fileno_is_the_error_log_file_then_the_reopened_one(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    """The descriptor faulthandler writes worker stacks to follows the error log file."""
    path = tmp_path / "error.log"
    log = make_logger(errorlog=str(path))
    fd = log.error_fileno()
    assert os.fstat(fd).st_ino == path.stat().st_ino
    path.rename(tmp_path / "error.log.1")
    log.reopen_files()
    assert os.fstat(log.error_fileno()).st_ino == path.stat().st_ino


def test_error_fileno_of_a_stderr_error_log(make_logger: Callable[..., Logger]) -> None:
    log = make_logger(errorlog="-")
    assert log.error_fileno() == sys.stderr.fileno()


class ListHandler(logging.Handler):
    """Keeps the records it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_logs_do_not_propagate_to_root(make_logger: Callable[..., Logger], tmp_path: Path) -> None:
    root = logging.getLogger()
    spy = ListHandler()
    root.addHandler(spy)
    try:
        log = make_logger(errorlog=str(tmp_path / "e.log"), accesslog=str(tmp_path / "a.log"))
        log.warning("only in the file")
        log.access(ENVIRON, "200 OK", [], 1, 0.1)
    finally:
        root.removeHandler(spy)
    assert spy.records == []
    assert len(lines(tmp_path / "e.log")) == len(lines(tmp_path / "a.log")) == 1


# -- access log: plumbing ----------------------------------------------------------------------


def test_access_log_off_by_default(
    make_logger: Callable[..., Logger], capsys: pytest.CaptureFixture[str]
) -> None:
    log = make_logger()
    assert log.access_enabled is False
    log.access(ENVIRON, "200 OK", [], 10, 0.1)
    assert capsys.readouterr() == ("", "")
    assert ours(ACCESS_LOGGER) == []


def test_access_log_dash_is_stdout(
    make_logger: Callable[..., Logger], capsys: pytest.CaptureFixture[str]
) -> None:
    log = make_logger(accesslog="-", access_log_format="%(m)s %(s)s")
    assert log.access_enabled is True
    log.access(ENVIRON, "404 Not Found", [], None, 0.1)
    assert capsys.readouterr() == ("POST 404\n", "")


def test_access_lines_reach_handlers_and_filters_added_by_the_user(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    """Lines go straight to monoceros's own access handler; a handler or filter a config file
    added to the access logger still sees (or drops) every line."""
    path = tmp_path / "access.log"
    log = make_logger(accesslog=str(path), access_log_format="%(m)s %(s)s")
    log.access(ENVIRON, "200 OK", [], 10, 0.1)
    extra = logging.handlers.BufferingHandler(100)
    access_logger = logging.getLogger(ACCESS_LOGGER)
    access_logger.addHandler(extra)
    try:
        log.access(ENVIRON, "201 Created", [], 10, 0.1)
        access_logger.addFilter(lambda record: "404" not in record.getMessage())
        log.access(ENVIRON, "404 Not Found", [], 10, 0.1)
    finally:
        access_logger.removeHandler(extra)
        access_logger.filters.clear()
    log.access(ENVIRON, "204 No Content", [], 10, 0.1)
    assert lines(path) == ["POST 200", "POST 201", "POST 204"]
    assert [r.getMessage() for r in extra.buffer] == ["POST 201"]


def test_access_log_follows_a_reopened_file(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    path = tmp_path / "access.log"
    log = make_logger(accesslog=str(path), access_log_format="%(s)s")
    log.access(ENVIRON, "200 OK", [], 10, 0.1)
    path.rename(tmp_path / "access.log.1")
    log.reopen_files()
    log.access(ENVIRON, "201 Created", [], 10, 0.1)
    assert lines(tmp_path / "access.log.1") == ["200"]
    assert lines(path) == ["201"]


def test_default_format_line(make_logger: Callable[..., Logger], tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = make_logger(accesslog=str(path))
    before = clf_time()
    log.access(ENVIRON, "201 Created", RESPONSE_HEADERS, 1234, 0.5)
    after = clf_time()
    (line,) = lines(path)
    stamp = line.split(" ", 3)[3].split("]", 1)[0] + "]"
    assert stamp in (before, after)
    assert line == (
        f'192.0.2.7 - alice {stamp} "POST /a%20b/c?x=1&y=2 HTTP/1.1" 201 1234 '
        '"https://example.org/from" "curl/8.5.0"'
    )


class Unprintable:
    """An environ value whose str() fails."""

    def __str__(self) -> str:
        raise ValueError("no text for this one")


def test_bad_line_is_reported_not_raised(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    error, access = tmp_path / "e.log", tmp_path / "a.log"
    log = make_logger(errorlog=str(error), accesslog=str(access), access_log_format="%({x_n}e)s")
    log.access({"X_N": 5}, "200 OK", [], 0, 0.0)
    log.access({"X_N": Unprintable()}, "200 OK", [], 0, 0.0)
    assert lines(access) == ["5"]
    text = error.read_text()
    assert "cannot format access log line with '%({x_n}e)s'" in text
    assert "ValueError: no text for this one" in text


def test_invalid_format_is_refused_at_setup(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="access_log_format"):
        make_logger(accesslog="-", access_log_format="%(h)d")
    with pytest.raises(ValueError, match="access_log_format"):
        make_logger(accesslog="-", access_log_format="%(h)s 100%")
    with pytest.raises(ValueError, match="access_log_format"):
        make_logger(accesslog="-", access_log_format="%({x-n}e)d")


# -- access log: every atom --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("atom", "expected"),
    [
        ("h", "192.0.2.7"),
        ("l", "-"),
        ("u", "alice"),
        ("r", "POST /a%20b/c?x=1&y=2 HTTP/1.1"),
        ("m", "POST"),
        ("U", "/a b/c"),
        ("q", "x=1&y=2"),
        ("H", "HTTP/1.1"),
        ("s", "201"),
        ("B", "1234"),
        ("b", "1234"),
        ("f", "https://example.org/from"),
        ("a", "curl/8.5.0"),
        ("T", "2"),
        ("M", "2034"),
        ("D", "2034567"),
        ("L", "2.034567"),
        ("{x-forwarded-for}i", "203.0.113.9"),
        ("{X-Forwarded-For}i", "203.0.113.9"),
        ("{content-type}i", "application/json"),
        ("{Content-Length}i", "17"),
        ("{x-request-id}o", "abc123"),
        ("{CONTENT-TYPE}o", "text/html"),
        ("{remote_port}e", "54321"),
        ("{wsgi.url_scheme}e", "https"),
        ("{WSGI.URL_SCHEME}e", "https"),
    ],
)
def test_atom(atom: str, expected: str) -> None:
    assert render(f"<%({atom})s>") == f"<{expected}>"


def test_atom_t_is_clf_local_time() -> None:
    value = render("%(t)s")
    assert CLF_TIME.match(value), value
    assert value in (clf_time(time.time() - 1), clf_time())


def test_atom_p_is_pid() -> None:
    assert render("%(p)s") == f"<{os.getpid()}>"


@pytest.mark.parametrize(
    "atom",
    [
        "h",
        "u",
        "m",
        "U",
        "q",
        "H",
        "f",
        "a",
        "{x-forwarded-for}i",
        "{x-request-id}o",
        "{no-such-variable-hopefully}e",
    ],
)
def test_missing_values_are_dash(atom: str) -> None:
    assert render(f"%({atom})s", environ={}, headers=[]) == "-"


def test_remote_addr_of_unix_socket_peer_is_dash() -> None:
    assert render("%(h)s", environ={"REMOTE_ADDR": ""}) == "-"


def test_missing_request_line_parts_and_length() -> None:
    assert render("%(r)s|%(s)s|%(B)s|%(b)s", environ={}, status="", length=None) == "- - -|-|0|-"


@pytest.mark.parametrize("atom", ["x", "Z", "hh", "{x}", "{x}z", "{}i", ""])
def test_unknown_atoms_are_dash(atom: str) -> None:
    assert render(f"[%({atom})s]") == "[-]"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"RAW_URI": "/raw?q", "REQUEST_URI": "/uwsgi", "PATH_INFO": "/p"}, "/raw?q"),
        ({"REQUEST_URI": "/uwsgi?a=1", "PATH_INFO": "/p"}, "/uwsgi?a=1"),
        ({"PATH_INFO": "/p", "QUERY_STRING": "a=1"}, "/p?a=1"),
        ({"PATH_INFO": "/p", "QUERY_STRING": ""}, "/p"),
        ({"SCRIPT_NAME": "/app", "PATH_INFO": "/p"}, "/app/p"),
        ({}, "-"),
    ],
)
def test_request_line_target(environ: dict[str, str], expected: str) -> None:
    environ = {"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.0", **environ}
    assert render("%(r)s", environ=environ) == f"GET {expected} HTTP/1.0"


@pytest.mark.parametrize(
    ("status", "expected"),
    [("200 OK", "200"), ("404 Not Found", "404"), (204, "204"), ("599", "599")],
)
def test_status(status: str | int, expected: str) -> None:
    assert render("%(s)s", status=status) == expected


@pytest.mark.parametrize(
    ("seconds", "T", "M", "D", "L"),
    [
        (0.0, 0, 0, 0, "0.000000"),
        (0.000123, 0, 0, 123, "0.000123"),
        (1.5, 1, 1500, 1500000, "1.500000"),
        (61.25, 61, 61250, 61250000, "61.250000"),
        (10.0, 10, 10000, 10000000, "10.000000"),
        (3599.9995, 3599, 3599999, 3599999500, "3599.999500"),
        (-0.5, 0, 0, 0, "0.000000"),
    ],
)
def test_request_time_atoms(seconds: float, T: int, M: int, D: int, L: str) -> None:
    assert render("%(T)d %(M)d %(D)d %(L)s", request_time=seconds) == f"{T} {M} {D} {L}"


def test_zero_length_response() -> None:
    assert render("%(B)s %(b)s", length=0) == "0 0"


def test_response_header_last_value_wins() -> None:
    headers = [("Set-Cookie", "a=1"), ("set-cookie", "b=2")]
    assert render("%({set-cookie}o)s", headers=headers) == "b=2"


def test_environ_variable_falls_back_to_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MONOCEROS_TEST_DEPLOY", "blue")
    assert render("%({MONOCEROS_TEST_DEPLOY}e)s", environ={}) == "blue"
    environ = {"MONOCEROS_TEST_DEPLOY": "green"}
    assert render("%({monoceros_test_deploy}e)s", environ=environ) == "green"


@pytest.mark.parametrize(
    ("header", "user"),
    [
        ("Basic " + base64.b64encode(b"bob:pw").decode(), "bob"),
        ("basic " + base64.b64encode(b"bob:").decode(), "bob"),
        ("Basic " + base64.b64encode("zoë:pw".encode()).decode(), "zoë"),
        ("Basic " + base64.b64encode(b":pw").decode(), None),
        ("Basic " + base64.b64encode(b"no-colon").decode(), None),
        ("Basic !!!not base64", None),
        ("Basic " + base64.b64encode(b"\xff\xfe:pw").decode(), None),
        ("Bearer abc.def", None),
        ("", None),
    ],
)
def test_basic_auth_user(header: str, user: str | None) -> None:
    assert basic_auth_user({"HTTP_AUTHORIZATION": header}) == user
    assert render("%(u)s", environ={"HTTP_AUTHORIZATION": header}) == (user or "-")


def test_values_are_escaped() -> None:
    environ = {
        "HTTP_USER_AGENT": 'evil" agent',
        "REQUEST_METHOD": "GET",
        "RAW_URI": '/x"y',
        "SERVER_PROTOCOL": "HTTP/1.1",
        "PATH_INFO": "/line\nbreak\x1b[31m\x7f",
        "HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b'm"al:pw').decode(),
    }
    assert render('"%(a)s" "%(r)s" %(U)s %(u)s', environ=environ) == (
        '"evil\\" agent" "GET /x\\"y HTTP/1.1" /line\\x0abreak\\x1b[31m\\x7f m\\"al'
    )
    assert escape("café ünïcode") == "café ünïcode"


@pytest.mark.parametrize(
    ("value", "access", "error"),
    [
        ("café ünïcode 日本", "café ünïcode 日本", "café ünïcode 日本"),  # printable: kept
        (
            "a\nb\r\x00\x1b[31m\x7f",
            "a\\x0ab\\x0d\\x00\\x1b[31m\\x7f",
            "a\\x0ab\\x0d\\x00\\x1b[31m\\x7f",
        ),
        # C1 controls (NEL ends a line for some readers, CSI starts a terminal sequence), NBSP
        ("\x85\x9b\xa0", "\\x85\\x9b\\xa0", "\\x85\\x9b\\xa0"),
        # a client's literal backslash sequence cannot pass for an escaped character
        ("\\x0a", "\\\\x0a", "\\\\x0a"),
        ('say "hi"', 'say \\"hi\\"', 'say "hi"'),  # the quote only where values are quoted
        # line/paragraph separators, a bidi override, a tag character
        (
            "\u2028\u2029\u202e\U000e0001",
            "\\u2028\\u2029\\u202e\\U000e0001",
            "\\u2028\\u2029\\u202e\\U000e0001",
        ),
    ],
)
def test_one_escaping_rule_for_access_and_error_log(value: str, access: str, error: str) -> None:
    assert escape(value) == access
    assert log_safe(value) == error
    assert log_safe(value.encode("utf-8")) == log_safe(repr(value.encode("utf-8")))  # str() first
    for escaped in (escape(value), log_safe(value)):
        assert escaped.isprintable() and "\n" not in escaped


def test_request_line_of_the_error_log_is_escaped() -> None:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/a\n[x] [CRITICAL] b\\", "QUERY_STRING": ""}
    assert request_line(environ) == "GET /a\\x0a[x] [CRITICAL] b\\\\"


def test_format_keeps_literals_and_percent_escapes() -> None:
    assert render("%%(h)s %(h)s 100%%") == "%(h)s 192.0.2.7 100%"
    assert render("no atoms") == "no atoms"
    assert render("%(h)-12s|%(s)5s") == "192.0.2.7   |  201"


class RecordingEnviron(dict[str, Any]):
    """An environ that remembers which keys were read."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)


class NotIterable:
    """Response headers that fail if anyone looks at them."""

    def __iter__(self) -> Iterator[tuple[str, str]]:
        raise AssertionError("response headers were read")


def test_only_used_atoms_are_built() -> None:
    fmt = AccessFormat("%(h)s %(s)s %(h)s")
    assert fmt.keys == ("h", "s")
    environ = RecordingEnviron(ENVIRON)
    assert fmt.render(environ, "200 OK", NotIterable(), None, 0.0) == "192.0.2.7 200 192.0.2.7"  # type: ignore[arg-type]
    assert environ.read == {"REMOTE_ADDR"}


def test_clf_time_matches_strftime_in_c_locale() -> None:
    for stamp in (0.0, 951782400.5, 1_700_000_000.0, time.time()):
        expected = time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(int(stamp)))
        assert clf_time(stamp) == expected
    assert clf_time(1_700_000_000.0) != clf_time(1_700_000_001.0)


# -- setup twice, reopen, errors ---------------------------------------------------------------


def test_setup_twice_installs_no_duplicate_handlers(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    error, access = tmp_path / "e.log", tmp_path / "a.log"
    log = make_logger(errorlog=str(error), accesslog=str(access), access_log_format="%(m)s")
    cfg = make_cfg(errorlog=str(error), accesslog=str(access), access_log_format="%(m)s")
    log.setup(cfg)
    log.setup(cfg)
    assert len(ours(ERROR_LOGGER)) == 1
    assert len(ours(ACCESS_LOGGER)) == 1
    log.info("once")
    log.access(ENVIRON, "200 OK", [], 0, 0.0)
    assert [line.split("] ")[-1] for line in lines(error)] == ["once"]
    assert lines(access) == ["POST"]


def test_second_logger_instance_replaces_the_first(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    make_logger(errorlog=str(tmp_path / "one.log"))
    log = make_logger(errorlog=str(tmp_path / "two.log"))
    log.info("hello")
    assert len(ours(ERROR_LOGGER)) == 1
    assert (tmp_path / "one.log").read_text() == ""
    assert len(lines(tmp_path / "two.log")) == 1


def test_setup_again_turns_access_log_off(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    access = tmp_path / "a.log"
    log = make_logger(accesslog=str(access), access_log_format="%(m)s")
    log.setup(make_cfg(accesslog=None))
    assert log.access_enabled is False
    assert ours(ACCESS_LOGGER) == []
    log.access(ENVIRON, "200 OK", [], 0, 0.0)
    assert access.read_text() == ""


def test_reopen_after_rename(make_logger: Callable[..., Logger], tmp_path: Path) -> None:
    error, access = tmp_path / "error.log", tmp_path / "access.log"
    log = make_logger(errorlog=str(error), accesslog=str(access), access_log_format="%(U)s")
    log.info("before")
    log.access({"PATH_INFO": "/before"}, "200 OK", [], 0, 0.0)
    error.rename(tmp_path / "error.log.1")
    access.rename(tmp_path / "access.log.1")
    log.info("between")  # still goes to the renamed file, as on a real system
    log.reopen_files()
    log.info("after")
    log.access({"PATH_INFO": "/after"}, "200 OK", [], 0, 0.0)
    assert [line.split("] ")[-1] for line in lines(tmp_path / "error.log.1")] == [
        "before",
        "between",
    ]
    assert [line.split("] ")[-1] for line in lines(error)] == ["after"]
    assert lines(tmp_path / "access.log.1") == ["/before"]
    assert lines(access) == ["/after"]


def test_reopen_also_reopens_application_file_handlers(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    app_path = tmp_path / "app.log"
    app_log = logging.getLogger("monoceros_test_app")
    app_log.propagate = False
    handler = logging.FileHandler(app_path)
    app_log.addHandler(handler)
    try:
        log = make_logger(errorlog=str(tmp_path / "e.log"))
        app_path.rename(tmp_path / "app.log.1")
        log.reopen_files()
        app_log.warning("rotated")
        assert lines(app_path) == ["rotated"]
    finally:
        app_log.removeHandler(handler)
        handler.close()


def test_reopen_failure_names_the_path_and_keeps_logging(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    error = logdir / "error.log"
    log = make_logger(errorlog=str(error))
    logdir.rename(tmp_path / "moved")
    with pytest.raises(OSError, match=re.escape(str(error))):
        log.reopen_files()
    log.info("still written")
    assert lines(tmp_path / "moved" / "error.log")[-1].endswith("[INFO] still written")


@pytest.mark.parametrize("setting", ["errorlog", "accesslog"])
def test_unwritable_path_names_the_path(
    make_logger: Callable[..., Logger], tmp_path: Path, setting: str
) -> None:
    missing = tmp_path / "no-such-dir" / "x.log"
    with pytest.raises(OSError, match=re.escape(str(missing))) as info:
        make_logger(**{setting: str(missing)})
    assert isinstance(info.value, FileNotFoundError)
    assert "\n" not in str(info.value)
    with pytest.raises(IsADirectoryError, match=re.escape(str(tmp_path))):
        make_logger(**{setting: str(tmp_path)})


def test_failed_setup_keeps_previous_configuration(
    make_logger: Callable[..., Logger], tmp_path: Path
) -> None:
    error = tmp_path / "e.log"
    log = make_logger(errorlog=str(error))
    with pytest.raises(OSError):
        log.setup(make_cfg(errorlog=str(tmp_path), loglevel="debug"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(OSError):
            log.setup(
                make_cfg(
                    errorlog=str(tmp_path / "new.log"), accesslog=str(tmp_path / "nope" / "a.log")
                )
            )
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    log.debug("not written: the level stayed at info")
    log.info("kept")
    assert [line.split("] ")[-1] for line in lines(error)] == ["kept"]
    assert len(ours(ERROR_LOGGER)) == 1
    assert (tmp_path / "new.log").read_text() == ""  # opened, then closed again


def test_close_on_exec(make_logger: Callable[..., Logger], tmp_path: Path) -> None:
    log = make_logger(errorlog=str(tmp_path / "e.log"), accesslog=str(tmp_path / "a.log"))
    fds = [
        h.stream.fileno()
        for name in (ERROR_LOGGER, ACCESS_LOGGER)  # type: ignore[attr-defined]
        for h in ours(name)
    ]
    assert len(fds) == 2
    for fd in fds:
        os.set_inheritable(fd, True)
    log.close_on_exec()
    assert [os.get_inheritable(fd) for fd in fds] == [False, False]


# -- capture_output ----------------------------------------------------------------------------


@pytest.fixture
def saved_stdio() -> Iterator[None]:
    """Put fds 1 and 2 back whatever the test does to them."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    try:
        yield
    finally:
        for target, fd in zip((1, 2), saved, strict=True):
            os.dup2(fd, target)
            os.close(fd)


def test_capture_output_redirects_fds(saved_stdio: None, tmp_path: Path) -> None:
    error = tmp_path / "error.log"
    marker = tmp_path / "marker"
    marker.write_text("")
    before = (os.fstat(1).st_ino, os.fstat(2).st_ino)
    log = Logger(make_cfg(errorlog=str(error), capture_output=True))
    try:
        os.write(1, b"fd one\n")
        os.write(2, b"fd two\n")
        print("printed", file=sys.__stdout__, flush=True)
        log.info("logged")
        assert error.read_text().splitlines()[:3] == ["fd one", "fd two", "printed"]
        assert lines(error)[3].endswith("[INFO] logged")

        error.rename(tmp_path / "error.log.1")
        log.reopen_files()
        os.write(1, b"after reopen\n")
        os.write(2, b"stderr after reopen\n")
        assert lines(error) == ["after reopen", "stderr after reopen"]
        assert "after reopen" not in (tmp_path / "error.log.1").read_text()
    finally:
        log.close()
    assert (os.fstat(1).st_ino, os.fstat(2).st_ino) == before


def test_capture_output_ignored_for_stderr_error_log(saved_stdio: None) -> None:
    before = (os.fstat(1).st_ino, os.fstat(2).st_ino)
    log = Logger(make_cfg(errorlog="-", capture_output=True))
    try:
        assert (os.fstat(1).st_ino, os.fstat(2).st_ino) == before
    finally:
        log.close()


def test_setup_without_capture_gives_fds_back(saved_stdio: None, tmp_path: Path) -> None:
    before = (os.fstat(1).st_ino, os.fstat(2).st_ino)
    error = tmp_path / "error.log"
    log = Logger(make_cfg(errorlog=str(error), capture_output=True))
    try:
        assert os.fstat(1).st_ino == os.fstat(2).st_ino == error.stat().st_ino
        log.setup(make_cfg(errorlog=str(error), capture_output=False))
        assert (os.fstat(1).st_ino, os.fstat(2).st_ino) == before
    finally:
        log.close()


def test_docs_list_every_atom() -> None:
    from monoceros import access_log

    docs = Path(__file__).resolve().parents[2] / "docs" / "logging.md"
    documented = set(re.findall(r"^\| `([^`]+)` \|", docs.read_text(encoding="utf-8"), re.M))
    atoms = set(access_log._ATOMS) | {"{header}i", "{header}o", "{variable}e"}
    assert atoms <= documented
