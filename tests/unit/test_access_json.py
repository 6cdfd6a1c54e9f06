"""The JSON access line (access_log_json): its fields and their types, escaping by the json
module's encoder (a forged User-Agent stays one string), request bytes read as UTF-8."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from monoceros.access_log import JsonAccess, iso_time
from monoceros.logs import Logger

FIELDS = [
    "time",
    "remote_addr",
    "method",
    "path",
    "query",
    "status",
    "bytes",
    "duration_ms",
    "referer",
    "user_agent",
    "request_id",
    "pid",
    "protocol",
]
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$")
ENVIRON: dict[str, Any] = {
    "REQUEST_METHOD": "GET",
    "RAW_URI": "/search/caf%C3%A9?q=unicorn&page=2",
    "PATH_INFO": "/search/cafÃ©",
    "QUERY_STRING": "q=unicorn&page=2",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "192.0.2.7",
    "HTTP_REFERER": "https://example.org/",
    "HTTP_USER_AGENT": "curl/8.5.0",
    "HTTP_X_REQUEST_ID": "7f3c-42",
}


def render(environ: dict[str, Any] = ENVIRON, **kw: Any) -> str:
    args: dict[str, Any] = {
        "status": "200 OK",
        "response_headers": [],
        "response_length": 5120,
        "request_time": 0.0123456,
        "uwsgi": False,
    }
    args.update(kw)
    return JsonAccess().render(environ, **args)


def test_fields_types_and_order() -> None:
    line = render()
    assert "\n" not in line and line.isascii()
    data = json.loads(line)
    assert list(data) == FIELDS
    assert ISO.match(data["time"]), data["time"]
    assert data == {
        "time": data["time"],
        "remote_addr": "192.0.2.7",
        "method": "GET",
        "path": "/search/caf%C3%A9",  # as sent, percent-escapes kept
        "query": "q=unicorn&page=2",
        "status": 200,
        "bytes": 5120,
        "duration_ms": 12.346,
        "referer": "https://example.org/",
        "user_agent": "curl/8.5.0",
        "request_id": "7f3c-42",
        "pid": os.getpid(),
        "protocol": "http",
    }


def test_absent_values_are_null_and_the_protocol_is_said() -> None:
    environ = {"REQUEST_METHOD": "POST", "REQUEST_URI": "/upload", "REMOTE_ADDR": ""}
    data = json.loads(
        render(environ, status=201, response_length=None, request_time=0.0, uwsgi=True)
    )
    assert data["remote_addr"] is None  # a UNIX socket peer
    assert (data["path"], data["query"]) == ("/upload", "")
    assert (data["status"], data["bytes"], data["duration_ms"]) == (201, 0, 0.0)
    assert data["referer"] is data["user_agent"] is data["request_id"] is None
    assert data["protocol"] == "uwsgi"


def test_target_rebuilt_from_the_environ_when_none_was_sent() -> None:
    environ = {"SCRIPT_NAME": "/app", "PATH_INFO": "/x", "QUERY_STRING": "a=1"}
    data = json.loads(render(environ))
    assert (data["path"], data["query"], data["method"]) == ("/app/x", "a=1", None)


@pytest.mark.parametrize(
    ("status", "expected"), [("404 Not Found", 404), (101, 101), ("200", 200), ("2x0 Odd", None)]
)
def test_status_is_an_int(status: str | int, expected: int | None) -> None:
    assert json.loads(render(status=status))["status"] == expected


FORGED_UA = 'evil", "status": 500, "user_agent": "x\\"}\n{"forged": true, "path": "/admin'


def test_a_forged_user_agent_stays_one_string() -> None:
    line = render(dict(ENVIRON, HTTP_USER_AGENT=FORGED_UA))
    assert "\n" not in line
    data = json.loads(line)
    assert list(data) == FIELDS
    assert data["user_agent"] == FORGED_UA
    assert (data["status"], data["path"]) == (200, "/search/caf%C3%A9")


def gunicorn_printf_json(agent: str) -> str:
    """What gunicorn writes for the JSON access_log_format its users copy from blog posts
    (``json.dumps`` of a dict of atoms): its atoms escape ``"`` and nothing else."""
    fmt = '{"user_agent": "%(a)s", "status": %(s)s, "path": "%(U)s"}'
    return fmt % {"a": agent.replace('"', '\\"'), "s": "200", "U": "/pay"}


# gunicorn's printf JSON, and what a client's User-Agent does to it
FORGERIES = [
    "curl\\",  # a trailing backslash escapes the format's closing quote: the line is not JSON
    'curl\\"}',  # closes the object early: a streaming JSON reader sees no status, no path
    "curl\x07",  # a control character: not JSON
]


@pytest.mark.parametrize("agent", FORGERIES)
def test_gunicorns_printf_json_breaks_ours_does_not(agent: str) -> None:
    theirs = gunicorn_printf_json(agent)
    with pytest.raises(json.JSONDecodeError):
        json.loads(theirs)
    if agent.endswith("}"):
        record, _ = json.JSONDecoder().raw_decode(theirs)  # what a streaming reader keeps
        assert record == {"user_agent": "curl\\"}  # the request's status and path are gone
    ours = json.loads(render(dict(ENVIRON, HTTP_USER_AGENT=agent)))
    assert list(ours) == FIELDS
    assert ours["user_agent"] == agent
    assert (ours["status"], ours["path"]) == (200, "/search/caf%C3%A9")


def test_request_bytes_are_read_as_utf8_and_written_as_ascii() -> None:
    # a WSGI environ holds the request's bytes as Latin-1 characters
    agent = "Mozilla/5.0 ünïcode \u2028 \x1b[31m".encode().decode("latin-1")
    referer = b"https://example.org/\xff".decode("latin-1")
    line = render(dict(ENVIRON, HTTP_USER_AGENT=agent, HTTP_REFERER=referer))
    assert line.isascii() and "\x1b" not in line and "\\u2028" in line
    data = json.loads(line)
    assert data["user_agent"] == "Mozilla/5.0 ünïcode \u2028 \x1b[31m"
    assert data["referer"] == "https://example.org/\\xff"  # not UTF-8: written \xff


def test_text_the_application_put_in_the_environ_is_kept() -> None:
    data = json.loads(render(dict(ENVIRON, REMOTE_ADDR="ūnicode-proxy", HTTP_X_REQUEST_ID=42)))
    assert data["remote_addr"] == "ūnicode-proxy"
    assert data["request_id"] == "42"


def test_iso_time_has_milliseconds_and_the_offset() -> None:
    now = 1_790_000_000.25
    text = iso_time(now)
    assert ISO.match(text), text
    tm = time.localtime(now)
    offset = tm.tm_gmtoff or 0
    sign = "-" if offset < 0 else "+"
    expected = time.strftime("%Y-%m-%dT%H:%M:%S", tm) + ".250"
    assert text == f"{expected}{sign}{abs(offset) // 3600:02d}:{abs(offset) % 3600 // 60:02d}"
    assert iso_time(now + 0.5).endswith(".750" + text[-6:])  # same second, cached part
    assert iso_time(now + 1).startswith(time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now + 1)))


@pytest.fixture
def json_logger(tmp_path: Path) -> Iterator[tuple[Logger, Path]]:
    path = tmp_path / "access.log"
    cfg = SimpleNamespace(
        errorlog="-",
        loglevel="info",
        accesslog=str(path),
        access_log_format="%(h)s",
        access_log_json=True,
        capture_output=False,
        proc_name="t",
        logconfig=None,
        logconfig_dict={},
        logconfig_json=None,
        syslog=False,
        syslog_addr="udp://localhost:514",
        syslog_prefix=None,
        syslog_facility="user",
        disable_redirect_access_to_syslog=False,
    )
    log = Logger(cfg)  # type: ignore[arg-type]
    yield log, path
    log.close()


def test_logger_writes_one_json_line_per_request(json_logger: tuple[Logger, Path]) -> None:
    log, path = json_logger
    assert log.access_enabled
    log.access(ENVIRON, "200 OK", [], 10, 0.002)
    log.access(ENVIRON, "503 Busy", [], 0, 0.001, True)
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert (first["status"], first["protocol"]) == (200, "http")
    assert (second["status"], second["protocol"]) == (503, "uwsgi")
