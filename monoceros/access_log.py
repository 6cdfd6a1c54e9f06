"""Access log lines: gunicorn's ``access_log_format`` atoms, parsed once, rendered per request;
and :class:`JsonAccess`, the one-JSON-object line of ``access_log_json``.

A format such as ``%(h)s "%(r)s" %(s)s`` is scanned once by :class:`AccessFormat`; each request
then builds only the atoms the format names and renders them with one ``%`` operation. Atoms
whose source is absent render as ``-``; unknown atoms render as ``-`` too. String values that come
from the peer or the application go through :func:`escape`.

**Escaping, for every log line** (the error log's request-derived values go through
:func:`log_safe`, the same rule without the quote): a character that is not printable
(``str.isprintable``: the C0 controls, DEL, the C1 controls U+0080-U+009F, and beyond Latin-1
the line and paragraph separators, bidirectional and zero-width format characters, unassigned
code points) is written ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``; a backslash is doubled, so
a client's literal ``\\x0a`` reads ``\\\\x0a`` and cannot pass for an escaped newline; the access
log also escapes ``"`` as ``\\"`` (as gunicorn does). Printable non-ASCII text such as ``é``
stays as it is. So a request cannot forge a log line, nor send a terminal escape sequence to
whoever reads the log. A clean value costs one ``isprintable()`` and one or two ``in`` tests.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from json.encoder import encode_basestring_ascii as _json_str
from typing import Any

__all__ = [
    "DEFAULT_ACCESS_LOG_FORMAT",
    "AccessFormat",
    "JsonAccess",
    "basic_auth_user",
    "clf_time",
    "escape",
    "iso_time",
    "log_safe",
    "request_target",
]

DEFAULT_ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

Env = Mapping[str, Any]
Status = str | int
Headers = Sequence[tuple[str, str]]
Length = int | None
Getter = Callable[[Env, Status, Headers, Length, float], object]

_KEY = re.compile(r"%(?:%|\(([^)]*)\))")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_clf_cache: tuple[int, str] = (-1, "")
_iso_cache: tuple[int, str, str] = (-1, "", "")


def _escaped(text: str, quote: bool) -> str:
    """``text`` with each unprintable character, backslash (and ``"`` when ``quote``) escaped."""
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char == '"' and quote:
            out.append('\\"')
        elif char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            if code < 0x100:
                out.append(f"\\x{code:02x}")
            elif code < 0x10000:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
    return "".join(out)


def escape(value: str) -> str:
    """An access log value: unprintable characters as ``\\xNN``, ``\\`` and ``"`` escaped."""
    if value.isprintable() and '"' not in value and "\\" not in value:  # the common case
        return value
    return _escaped(value, True)


def log_safe(value: object) -> str:
    """A request-derived value for an error log line: ``str(value)`` with unprintable
    characters as ``\\xNN`` (``\\uNNNN``) and ``\\`` doubled (see the module's docstring)."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable() and "\\" not in text:
        return text
    return _escaped(text, False)


def clf_time(now: float | None = None) -> str:
    """Local time in Common Log Format, ``[10/Oct/2000:13:55:36 -0700]`` (cached per second)."""
    global _clf_cache
    second = int(time.time() if now is None else now)
    cached = _clf_cache
    if cached[0] == second:
        return cached[1]
    tm = time.localtime(second)
    offset = (tm.tm_gmtoff or 0) // 60
    sign = "-" if offset < 0 else "+"
    offset = abs(offset)
    text = (
        f"[{tm.tm_mday:02d}/{_MONTHS[tm.tm_mon - 1]}/{tm.tm_year:04d}:"
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} "
        f"{sign}{offset // 60:02d}{offset % 60:02d}]"
    )
    _clf_cache = (second, text)
    return text


def iso_time(now: float | None = None) -> str:
    """Local time in ISO 8601 with milliseconds and the UTC offset,
    ``2026-11-24T10:00:00.123+01:00`` (the part down to the second is cached)."""
    global _iso_cache
    stamp = time.time() if now is None else now
    second = int(stamp)
    cached = _iso_cache
    if cached[0] != second:
        tm = time.localtime(second)
        offset = (tm.tm_gmtoff or 0) // 60
        sign = "-" if offset < 0 else "+"
        offset = abs(offset)
        cached = _iso_cache = (
            second,
            f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T"
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}",
            f"{sign}{offset // 60:02d}:{offset % 60:02d}",
        )
    return f"{cached[1]}.{int((stamp - second) * 1000):03d}{cached[2]}"


def basic_auth_user(environ: Mapping[str, Any]) -> str | None:
    """The user name of a ``Basic`` Authorization header, or None when there is none to read."""
    header = environ.get("HTTP_AUTHORIZATION")
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip()).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, _password = decoded.partition(":")
    return user if sep and user else None


# -- the atoms: each takes (environ, status, response_headers, response_length, request_time) --


def _remote_addr(env: Env, s: Status, h: Headers, n: Length, t: float) -> str:
    return escape(env.get("REMOTE_ADDR") or "-")  # "" (a Unix socket peer) is "-" too


def _dash(env: Env, s: Status, h: Headers, n: Length, t: float) -> str:
    return "-"


def _user(env: Env, s: Status, h: Headers, n: Length, t: float) -> str:
    user = basic_auth_user(env)
    return "-" if user is None else escape(user)


def _time(env: Env, s: Status, h: Headers, n: Length, t: float) -> str:
    return clf_time()


def request_target(env: Mapping[str, Any]) -> str:
    """The request target as the client (or front end) sent it, else rebuilt from the environ."""
    target = env.get("RAW_URI") or env.get("REQUEST_URI")
    if target:
        return str(target)
    path = env.get("SCRIPT_NAME", "") + env.get("PATH_INFO", "")
    query = env.get("QUERY_STRING")
    if query:
        return f"{path}?{query}"
    return path


def _request_line(env: Env, s: Status, h: Headers, n: Length, t: float) -> str:
    method = env.get("REQUEST_METHOD") or "-"
    protocol = env.get("SERVER_PROTOCOL") or "-"
    return escape(f"{method} {request_target(env) or '-'} {protocol}")


def _status(env: Env, s: Status, h: Headers, n: Length, t: float) -> str:
    if isinstance(s, int):
        return str(s)
    code, _, _reason = s.partition(" ")
    return escape(code) if code else "-"


def _environ_key(key: str) -> Getter:
    def get(env: Env, s: Status, h: Headers, n: Length, t: float) -> str:
        value = env.get(key)
        return "-" if value is None else escape(str(value))

    return get


def _bytes_or_zero(env: Env, s: Status, h: Headers, n: Length, t: float) -> int:
    return 0 if n is None else n


def _bytes_or_dash(env: Env, s: Status, h: Headers, n: Length, t: float) -> str:
    return "-" if n is None else str(n)


def _micros(seconds: float) -> int:
    return int(seconds * 1_000_000) if seconds > 0 else 0


def _duration(unit: int) -> Getter:
    """The request time in whole units of ``unit`` microseconds (1_000: milliseconds)."""

    def get(env: Env, s: Status, h: Headers, n: Length, t: float) -> int:
        return _micros(t) // unit

    return get


def _decimal(env: Env, s: Status, h: Headers, n: Length, t: float) -> str:
    us = _micros(t)
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


def _pid(env: Env, s: Status, h: Headers, n: Length, t: float) -> str:
    return f"<{os.getpid()}>"


_ATOMS: dict[str, Getter] = {
    "h": _remote_addr,
    "l": _dash,
    "u": _user,
    "t": _time,
    "r": _request_line,
    "m": _environ_key("REQUEST_METHOD"),
    "U": _environ_key("PATH_INFO"),
    "q": _environ_key("QUERY_STRING"),
    "H": _environ_key("SERVER_PROTOCOL"),
    "s": _status,
    "B": _bytes_or_zero,
    "b": _bytes_or_dash,
    "f": _environ_key("HTTP_REFERER"),
    "a": _environ_key("HTTP_USER_AGENT"),
    "T": _duration(1_000_000),
    "M": _duration(1_000),
    "D": _duration(1),
    "L": _decimal,
    "p": _pid,
}


def _request_header(name: str) -> Getter:
    upper = name.upper().replace("-", "_")
    key = upper if upper in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + upper
    return _environ_key(key)


def _response_header(name: str) -> Getter:
    def get(env: Env, s: Status, h: Headers, n: Length, t: float) -> str:
        found = [value for header, value in h if header.lower() == name]
        return escape(found[-1]) if found else "-"  # the last one wins, as in gunicorn

    return get


def _environ_variable(raw: str) -> Getter:
    name = raw.lower()
    candidates = tuple(dict.fromkeys((raw, raw.upper(), name)))

    def get(env: Env, s: Status, h: Headers, n: Length, t: float) -> str:
        for key in candidates:
            value = env.get(key)
            if value is not None:
                return escape(str(value))
        for key, value in env.items():
            if key.lower() == name:
                return escape(str(value))
        for key in candidates:
            value = os.environ.get(key)
            if value is not None:
                return escape(value)
        return "-"

    return get


def _getter(key: str) -> Getter:
    atom = _ATOMS.get(key)
    if atom is not None:
        return atom
    if len(key) > 3 and key[0] == "{" and key[-2] == "}":
        raw, kind = key[1:-2], key[-1]
        if kind == "i":
            return _request_header(raw)
        if kind == "o":
            return _response_header(raw.lower())
        if kind == "e":
            return _environ_variable(raw)
    return _dash


_SAMPLE_ENVIRON = {
    "REQUEST_METHOD": "GET",
    "RAW_URI": "/",
    "PATH_INFO": "/",
    "QUERY_STRING": "",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
}


class AccessFormat:
    """A parsed ``access_log_format``: renders one access log line from a request's facts."""

    __slots__ = ("_getters", "keys", "source")

    def __init__(self, fmt: str) -> None:
        self.source = fmt
        keys = [m.group(1) for m in _KEY.finditer(fmt) if m.group(1) is not None]
        self.keys: tuple[str, ...] = tuple(dict.fromkeys(keys))
        self._getters = tuple((key, _getter(key)) for key in self.keys)
        try:
            self.render(_SAMPLE_ENVIRON, "200 OK", (), 0, 0.0)
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"invalid access_log_format {fmt!r}: {exc}") from None

    def render(
        self,
        environ: Mapping[str, Any],
        status: str | int,
        response_headers: Headers,
        response_length: int | None,
        request_time: float,
        uwsgi: bool = False,
    ) -> str:
        """The access log line (without newline) for one finished request (``uwsgi``: it came
        over the uwsgi protocol; no atom shows it)."""
        values = {
            key: get(environ, status, response_headers, response_length, request_time)
            for key, get in self._getters
        }
        return self.source % values


# -- the JSON access line (access_log_json) ----------------------------------------------------


def _text(value: object) -> str:
    """An environ value as text: the request's bytes (a WSGI environ holds them as Latin-1
    characters) read as UTF-8, a byte that is not UTF-8 written ``\\xNN``."""
    text = value if isinstance(value, str) else str(value)
    if text.isascii():
        return text
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        return text  # not bytes in disguise: text the application put there
    return raw.decode("utf-8", "backslashreplace")


def _json_text(value: object) -> str:
    """``value`` as a JSON string (escaped by the json module's encoder), null when absent."""
    if value is None or value == "":
        return "null"
    return _json_str(_text(value))


_pid_text = [str(os.getpid())]
"""This process's pid, as text (a getpid() call per line costs 0.2 µs); set again in a child."""


def _new_pid() -> None:
    _pid_text[0] = str(os.getpid())


os.register_at_fork(after_in_child=_new_pid)


def _status_code(status: str | int) -> str:
    if isinstance(status, int):
        return str(status)
    code = status[:3]
    return code if len(code) == 3 and code.isdigit() else "null"


class JsonAccess:
    """The ``access_log_json`` line: one JSON object per request, every string escaped by the
    json module's own encoder (ASCII only: a quote, a newline or any control or line-breaking
    character in a header is a ``\\`` escape inside its string, so it cannot end the value,
    the object or the line). Fields, in this order::

        time         ISO 8601 local time with offset and milliseconds, when the line is written
        remote_addr  REMOTE_ADDR (null for a UNIX socket peer)
        method       the request method
        path         the path of the request target as sent (percent-escapes kept)
        query        its query string as sent ("" when there is none)
        status       the status code (int)
        bytes        the response body bytes sent (int)
        duration_ms  from the request's head to the end of its response (number, µs precision)
        referer      the Referer header, or null
        user_agent   the User-Agent header, or null
        request_id   the X-Request-ID header, or null
        pid          the worker's process id (int)
        protocol     "http" or "uwsgi": how the request reached monoceros

    Request bytes are read as UTF-8 (a byte that is not: ``\\xNN``).
    """

    __slots__ = ()

    #: what error lines about this renderer call it
    source = "access_log_json"

    def render(
        self,
        environ: Mapping[str, Any],
        status: str | int,
        response_headers: Headers,
        response_length: int | None,
        request_time: float,
        uwsgi: bool = False,
    ) -> str:
        """The JSON object (one line, without newline) for one finished request."""
        get = environ.get
        target = request_target(environ)
        path, _, query = target.partition("?")
        millis = request_time * 1000 if request_time > 0 else 0.0
        return (
            '{"time":"'
            + iso_time()
            + '","remote_addr":'
            + _json_text(get("REMOTE_ADDR"))
            + ',"method":'
            + _json_text(get("REQUEST_METHOD"))
            + ',"path":'
            + _json_text(path)
            + ',"query":'
            + (_json_str(_text(query)) if query else '""')
            + ',"status":'
            + _status_code(status)
            + ',"bytes":'
            + str(response_length or 0)
            + ',"duration_ms":'
            + f"{millis:.3f}"
            + ',"referer":'
            + _json_text(get("HTTP_REFERER"))
            + ',"user_agent":'
            + _json_text(get("HTTP_USER_AGENT"))
            + ',"request_id":'
            + _json_text(get("HTTP_X_REQUEST_ID"))
            + ',"pid":'
            + _pid_text[0]
            + (',"protocol":"uwsgi"}' if uwsgi else ',"protocol":"http"}')
        )
