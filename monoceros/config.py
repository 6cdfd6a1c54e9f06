"""Every setting declared once, in one table, and the ``Config`` object holding their values.

The argparse CLI, the config-file loader, ``MONOCEROS_CMD_ARGS``, ``--print-config`` and the
settings reference page are all generated from ``SETTINGS``. Names, flags and defaults are
gunicorn's, so an existing ``gunicorn.conf.py`` works unchanged.
"""

from __future__ import annotations

import functools
import grp
import inspect
import ipaddress
import math
import os
import pwd
import re
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from monoceros.gunicorn_only import GUNICORN_ONLY

__all__ = [
    "FOREIGN_WORKER_CLASSES",
    "GUNICORN_ONLY",
    "GUNICORN_WORKER_ALIASES",
    "HOOK_NAMES",
    "LOG_LEVELS",
    "SETTINGS",
    "SETTINGS_BY_NAME",
    "SETTING_ALIASES",
    "SSL_VERSIONS",
    "SYSLOG_FACILITIES",
    "UNSUPPORTED_WORKERS",
    "WORKER_CLASSES",
    "Config",
    "ConfigError",
    "Setting",
    "SyslogAddress",
    "syslog_address",
]

Validator = Callable[[Any], Any]
"""Turns a raw value (from argv, the environment or a config file) into a typed one.

Raises ``ValueError`` with a message such as ``expected a positive integer, got 'abc'``;
``Config.set`` prefixes it with the setting name.
"""

Hook = Callable[..., object]
"""A server hook: a callable a user puts in the config file."""

WORKER_CLASSES: dict[str, str] = {
    "sync": "monoceros.workers.sync:SyncWorker",
    "gthread": "monoceros.workers.gthread:ThreadWorker",
    "asgi": "monoceros.workers.asgi:AsgiWorker",
}
"""Worker kinds accepted by ``worker_class``, each mapped to its ``"module:Class"`` path."""

GUNICORN_WORKER_ALIASES: dict[str, str] = {
    "gunicorn.workers.sync.SyncWorker": "sync",
    "gunicorn.workers.gthread.ThreadWorker": "gthread",
    "gunicorn.workers.ggevent.GeventWorker": "gevent",
    "gunicorn.workers.geventlet.EventletWorker": "eventlet",
    "gunicorn.workers.gtornado.TornadoWorker": "tornado",
    "uvicorn.workers.UvicornWorker": "asgi",
    "uvicorn.workers.UvicornH11Worker": "asgi",
    "uvicorn_worker.UvicornWorker": "asgi",
    "uvicorn_worker.UvicornH11Worker": "asgi",
}
"""gunicorn's dotted worker-class spellings (and uvicorn's), mapped to the kind names used here."""

FOREIGN_WORKER_CLASSES: frozenset[str] = frozenset(
    name for name, kind in GUNICORN_WORKER_ALIASES.items() if name.startswith("uvicorn")
)
"""Worker classes of other packages that monoceros replaces by its own (said in an INFO line)."""

UNSUPPORTED_WORKERS: frozenset[str] = frozenset({"gevent", "eventlet", "tornado", "gaiohttp"})
"""gunicorn's worker kinds that monoceros does not have."""

SETTING_ALIASES: dict[str, str] = {"websocket_max_message_size": "ws_max_message_size"}
"""gunicorn's names for settings monoceros has under another name (accepted in config files)."""

LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error", "critical")
"""The values ``loglevel`` accepts."""


class ConfigError(Exception):
    """A setting got a value it cannot take; the message is one readable line naming it."""

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True, eq=False)
class Setting:
    """One row of the settings table."""

    name: str
    flags: tuple[str, ...]
    default: Any
    doc: str
    validator: Validator
    #: the documentation section and ``--help`` group, set by the table's ``_section``
    section: str = ""
    action: str = "store"
    metavar: str | None = None
    const: Any = None
    env: str | None = None
    default_factory: Callable[[Mapping[str, str]], Any] | None = None
    default_doc: str | None = None
    params: tuple[str, ...] | None = None
    #: ``"?"``: the flag's value may be left out, which gives ``const``
    nargs: str | None = None

    @property
    def is_hook(self) -> bool:
        """Whether this setting is a server hook (a callable from the config file)."""
        return self.params is not None

    def initial(self, environ: Mapping[str, str]) -> Any:
        """The raw default, computed from ``environ`` for environment-dependent settings."""
        if self.default_factory is not None:
            return self.default_factory(environ)
        return self.default

    def describe_default(self) -> str:
        """The default as shown in ``--help`` and on the settings reference page."""
        if self.default_doc is not None:
            return self.default_doc
        return repr(self.default)


# --- validators ------------------------------------------------------------------------------


def _fail(expected: str, value: Any) -> NoReturn:
    raise ValueError(f"expected {expected}, got {value!r}")


def _number(value: Any, expected: str, kinds: tuple[type, ...], parse: Callable[[str], Any]) -> Any:
    """``value`` itself when it is one of ``kinds`` (never a bool), a string through ``parse``."""
    if isinstance(value, kinds) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return parse(value.strip())
        except ValueError:
            pass
    _fail(expected, value)


def _int_text(text: str) -> int:
    """Decimal (leading zeros allowed), else an integer literal such as 0x1F or 0o22."""
    try:
        return int(text, 10)
    except ValueError:
        return int(text, 0)


def _parse_int(value: Any, expected: str) -> int:
    return _number(value, expected, (int,), _int_text)


def _int_at_least(minimum: int) -> Validator:
    expected = "a positive integer" if minimum >= 1 else "a non-negative integer"

    def validate(value: Any) -> int:
        number = _parse_int(value, expected)
        if number < minimum:
            _fail(expected, value)
        return number

    return validate


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _seconds(value: Any) -> float:
    expected = "a non-negative number of seconds"
    number = float(_number(value, expected, (int, float), float))
    if not math.isfinite(number) or number < 0:
        _fail(expected, value)
    return number


def _seconds_or_none(value: Any) -> float:
    """uvicorn's spelling of "off" is None: 0 here."""
    return 0.0 if value is None else _seconds(value)


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    _fail("true or false", value)


def _optional_bool(value: Any) -> bool | None:
    return None if value is None else _bool(value)


def _str(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    _fail("a string", value)


def _optional_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _optional_path(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if isinstance(path, str):
            return path.strip()
    _fail("a file path", value)


def _str_list(value: Any, expected: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        _fail(expected, value)
    for item in items:
        if not isinstance(item, str) or not item.strip():
            _fail(expected, item)
    return [item.strip() for item in items]


def _bind(value: Any) -> list[str]:
    return _str_list(value, "an address such as '127.0.0.1:8000' or 'unix:/path'")


def _raw_env(value: Any) -> list[str]:
    entries = _str_list(value, "KEY=VALUE")
    for entry in entries:
        if "=" not in entry or entry.startswith("="):
            _fail("KEY=VALUE", entry)
    return entries


def _comma_list(value: Any, expected: str) -> list[str]:
    """A comma-separated string or a list of strings, as a list of stripped items."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return _str_list(value, expected)


def _statsd_host(value: Any) -> str | None:
    """gunicorn's statsd address: ``HOST[:PORT]`` (port 8125 by default), ``[V6]:PORT`` or
    ``unix:PATH`` (also ``unix://PATH``), as ``HOST:PORT`` or ``unix:PATH``."""
    text = _optional_str(value)
    if not text:
        return None
    expected = "HOST:PORT, [V6]:PORT or unix:PATH"
    if text.startswith("unix:") and not text[5:].isdigit():  # gunicorn: unix:8125 is a host
        path = text[7:] if text.startswith("unix://") else text[5:]
        if not path:
            _fail(expected, value)
        return f"unix:{path}"
    host, port = text, "8125"
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            _fail(expected, value)
        port = rest[1:] or port
        host = f"[{host}]"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    elif ":" in text:
        _fail(expected + " (write an IPv6 address in brackets)", value)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        _fail(expected, value)
    return f"{host}:{int(port)}"


def _dogstatsd_tags(value: Any) -> str:
    tags = ",".join(_comma_list(value, "comma-separated key:value tags"))
    if not tags.isascii() or any(c in tags for c in "|#\n\r"):
        _fail("comma-separated ASCII tags without '|' or '#'", value)
    return tags


SYSLOG_FACILITIES: dict[str, int] = {
    "auth": 4,
    "authpriv": 10,
    "cron": 9,
    "daemon": 3,
    "ftp": 11,
    "kern": 0,
    "lpr": 6,
    "mail": 2,
    "news": 7,
    "security": 4,
    "syslog": 5,
    "user": 1,
    "uucp": 8,
    **{f"local{n}": 16 + n for n in range(8)},
}
"""The values ``syslog_facility`` accepts (gunicorn's names), with their syslog codes."""


@dataclass(frozen=True)
class SyslogAddress:
    """Where syslog messages go: a socket type (None: a UNIX socket, datagram first, then
    stream, as ``logging.handlers.SysLogHandler`` tries) and a path or ``(host, port)``."""

    socktype: socket.SocketKind | None
    address: str | tuple[str, int]


def syslog_address(value: str) -> SyslogAddress:
    """gunicorn's ``syslog_addr``: ``unix://PATH[#dgram|#stream]``, ``udp://HOST[:PORT]`` or
    ``tcp://HOST[:PORT]`` (port 514 if left out, an IPv6 host in brackets); ValueError else."""
    expected = "unix://PATH, udp://HOST:PORT or tcp://HOST:PORT"
    if value.startswith("unix://"):
        path, _, kind = value[7:].partition("#")
        if not path or kind not in ("", "dgram", "stream"):
            _fail(expected + " (unix://PATH#dgram or #stream)", value)
        types = {"": None, "dgram": socket.SOCK_DGRAM, "stream": socket.SOCK_STREAM}
        return SyslogAddress(types[kind], path)
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("udp", "tcp"):
        _fail(expected, value)
    host, port = rest or "localhost", "514"
    if rest.startswith("["):
        host, close, tail = rest[1:].partition("]")
        if not close or not host or (tail and not tail.startswith(":")):
            _fail(expected + " (an IPv6 host in brackets)", value)
        port = tail[1:] or port
    elif ":" in rest:
        host, _, port = rest.partition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        _fail(expected, value)
    socktype = socket.SOCK_DGRAM if scheme == "udp" else socket.SOCK_STREAM
    return SyslogAddress(socktype, (host.lower(), int(port)))


def _syslog_addr(value: Any) -> str:
    text = _str(value)
    syslog_address(text)
    return text


def _default_syslog_addr(platform: str) -> str:
    """gunicorn's default ``syslog_addr`` for ``sys.platform``."""
    if platform == "darwin":
        return "unix:///var/run/syslog"
    if platform.startswith(("freebsd", "dragonfly")):
        return "unix:///var/run/log"
    if platform.startswith("openbsd"):
        return "unix:///dev/log"
    return "udp://localhost:514"


def _log_dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        _fail("a dict in logging.config.dictConfig's format", value)
    return dict(value)


def _ip_list(value: Any) -> list[str]:
    expected = "'*' or comma-separated IP addresses or CIDR networks"
    entries = _comma_list(value, expected)
    for entry in entries:
        if entry == "*":
            continue
        try:
            if "/" in entry:
                ipaddress.ip_network(entry, strict=False)
            else:
                ipaddress.ip_address(entry)
        except ValueError:
            _fail(expected, entry)
    return entries


def _header_dict(value: Any) -> dict[str, str]:
    expected = "a dict of header name to value"
    if not isinstance(value, Mapping):
        _fail(expected, value)
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str) or not key.strip():
            _fail(expected, value)
    return {key.strip().upper(): item for key, item in value.items()}


def _worker_class(value: Any) -> str:
    if not isinstance(value, str):
        _fail("a worker class name", value)
    text = value.strip()
    kind = GUNICORN_WORKER_ALIASES.get(text, text.lower())
    if kind not in WORKER_CLASSES:
        available = ", ".join(sorted(WORKER_CLASSES))
        what = "not supported by monoceros" if kind in UNSUPPORTED_WORKERS else "unknown"
        raise ValueError(f"worker class {value!r} is {what} (available: {available})")
    return kind


def _header_names(value: Any) -> list[str]:
    expected = "comma-separated header names such as 'SCRIPT_NAME,PATH_INFO'"
    names = _comma_list(value, expected)
    for name in names:
        if name != "*" and not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
            _fail(expected, name)
    return [name.upper() for name in names]


PROTOCOLS: tuple[str, ...] = ("http", "uwsgi")


def _root_path(value: Any) -> str:
    text = _str(value)
    if text and not text.startswith("/"):
        _fail("a path starting with '/', such as '/api'", value)
    return text.rstrip("/")


PROXY_PROTOCOL_MODES: tuple[str, ...] = ("off", "v1", "v2", "auto")
"""The values ``proxy_protocol`` accepts."""


def _proxy_protocol(value: Any) -> str:
    """A mode, or gunicorn 23's boolean: True is ``auto`` (it read v1 headers when present)."""
    if value is True:
        return "auto"
    if value is False or value is None:
        return "off"
    if isinstance(value, str) and value.strip().lower() in PROXY_PROTOCOL_MODES:
        return value.strip().lower()
    _fail("one of " + ", ".join(PROXY_PROTOCOL_MODES), value)


def _choice(choices: tuple[str, ...]) -> Validator:
    expected = "one of " + ", ".join(choices)

    def validate(value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        _fail(expected, value)

    return validate


ASGI_LOOPS: tuple[str, ...] = ("auto", "asyncio", "uvloop")
"""The values ``asgi_loop`` accepts."""

ASGI_LIFESPANS: tuple[str, ...] = ("auto", "on", "off")
"""The values ``asgi_lifespan`` accepts."""


def _vars_size(value: Any) -> int:
    size = _parse_int(value, "an integer from 1 to 65535")
    if not 1 <= size <= 65535:
        _fail("an integer from 1 to 65535 (the uWSGI datasize field is 16 bits)", value)
    return size


#: gunicorn's ``ssl_version`` names (``ssl.PROTOCOL_*`` without the prefix) and their values
SSL_VERSIONS: dict[str, int] = {
    "SSLv3": 1,
    "SSLv23": 2,
    "TLS": 2,
    "TLSv1": 3,
    "TLSv1_1": 4,
    "TLSv1_2": 5,
    "TLS_CLIENT": 16,
    "TLS_SERVER": 17,
}


def _ssl_version(value: Any) -> int:
    """gunicorn's ``ssl_version``: an ``ssl.PROTOCOL_*`` value or name (accepted, not used)."""
    if isinstance(value, str) and value.strip() in SSL_VERSIONS:
        return SSL_VERSIONS[value.strip()]
    if isinstance(value, int) and not isinstance(value, bool) and value in SSL_VERSIONS.values():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return _ssl_version(int(value.strip()))
    _fail("an ssl.PROTOCOL_* value or one of " + ", ".join(SSL_VERSIONS), value)


def _cert_reqs(value: Any) -> int:
    expected = "0 (no client certificate), 1 (optional) or 2 (required)"
    number = _parse_int(value, expected)
    if number not in (0, 1, 2):
        _fail(expected, value)
    return int(number)


RELOAD_ENGINES: tuple[str, ...] = ("auto", "inotify", "poll")


def _reload_files(value: Any) -> list[str]:
    return _str_list(value, "a list of file paths")


def _umask(value: Any) -> int:
    expected = "a file mode mask such as 0o22, 022 or 18"
    number = _number(value, expected, (int,), _octal_text)
    if not 0 <= number <= 0o777:
        _fail(expected, value)
    return number


def _octal_text(text: str) -> int:
    """``022`` is octal (as chmod reads it); ``0o22``, ``0x12`` and ``18`` as Python reads them."""
    return int(text, 8) if re.fullmatch(r"0[0-7]+", text) else int(text, 0)


def _account(kind: str, lookup: Callable[[str], int], current: Callable[[], int]) -> Validator:
    expected = f"a {kind} name or numeric id"

    def validate(value: Any) -> int:
        if value is None:
            return current()
        if isinstance(value, bool):
            _fail(expected, value)
        if isinstance(value, int):
            if value < 0:
                _fail(expected, value)
            return value
        if not isinstance(value, str) or not value.strip():
            _fail(expected, value)
        text = value.strip()
        if text.isdigit():
            return int(text)
        try:
            return lookup(text)
        except KeyError:
            raise ValueError(f"no such {kind} {text!r}") from None

    return validate


_user = _account("user", lambda name: pwd.getpwnam(name).pw_uid, os.geteuid)
_group = _account("group", lambda name: grp.getgrnam(name).gr_gid, os.getegid)


def _directory(value: Any) -> str:
    path = _optional_path(value)
    if not path:
        _fail("a directory", value)
    absolute = os.path.abspath(path)
    if not os.path.isdir(absolute):
        raise ValueError(f"no such directory {path!r}")
    return absolute


def _accepts(func: Callable[..., object], count: int) -> bool:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return True
    try:
        signature.bind(*range(count))
    except TypeError:
        return False
    return True


def _describe_callable(func: Callable[..., object]) -> str:
    name = getattr(func, "__qualname__", type(func).__name__)
    try:
        return f"{name}{inspect.signature(func)}"
    except (TypeError, ValueError):
        return name


def _hook_validator(params: tuple[str, ...], *fewer: int) -> Validator:
    """A hook taking ``params``, or only the first ``fewer`` of them (post_request's older
    forms in gunicorn: 3 and 2), wrapped then to take them all."""
    expected = f"a function taking ({', '.join(params)})"

    def validate(value: Any) -> Hook:
        if not callable(value):
            _fail(expected, value)
        count = next((n for n in (len(params), *fewer) if _accepts(value, n)), None)
        if count is None:
            raise ValueError(f"expected {expected}, got {_describe_callable(value)}")
        if count == len(params):
            return value
        func: Hook = value

        @functools.wraps(func)
        def adapted(*args: Any) -> object:
            return func(*args[:count])

        return adapted

    return validate


# --- defaults that depend on the environment ------------------------------------------------


def _default_bind(environ: Mapping[str, str]) -> list[str]:
    port = environ.get("PORT")
    return [f"0.0.0.0:{port}"] if port else ["127.0.0.1:8000"]


def _noop_hook(name: str) -> Hook:
    def hook(*args: Any) -> None:
        """Default server hook: does nothing."""

    hook.__name__ = hook.__qualname__ = name
    return hook


def _default_ssl_context(config: Any, default_ssl_context_factory: Callable[[], Any]) -> Any:
    """Default ``ssl_context`` hook (gunicorn's): the context monoceros builds itself."""
    return default_ssl_context_factory()


# --- the table -------------------------------------------------------------------------------

_INT = "INT"


def _int_setting(
    name: str, flags: tuple[str, ...], default: int, doc: str, positive: bool = False
) -> Setting:
    validator = _positive_int if positive else _non_negative_int
    return Setting(name, flags, default, doc, validator, metavar=_INT)


def _flag(name: str, flags: tuple[str, ...], doc: str) -> Setting:
    return Setting(name, flags, False, doc, _bool, action="store_true")


def _hook(
    name: str,
    params: tuple[str, ...],
    doc: str,
    default: Hook | None = None,
    default_doc: str = "no-op",
) -> Setting:
    validator = _hook_validator(params, *((3, 2) if name == "post_request" else ()))
    return Setting(
        name,
        (),
        default or _noop_hook(name),
        doc,
        validator,
        params=params,
        default_doc=default_doc,
    )


def _section(section: str, *settings: Setting) -> tuple[Setting, ...]:
    """The settings of one documentation section (``--help`` group), in table order."""
    return tuple(replace(setting, section=section) for setting in settings)


_DEFAULT_ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

SETTINGS: tuple[Setting, ...] = (
    *_section(
        "Config File",
        Setting(
            "config",
            ("-c", "--config"),
            None,
            "The Python config file to load (a path, or file:PATH, or python:MODULE).",
            _optional_path,
            metavar="CONFIG",
            default_doc="`./monoceros.conf.py` when that file exists, else none",
        ),
        Setting(
            "wsgi_app",
            (),
            None,
            "The application to serve, as module:name (the positional APP_MODULE sets it).",
            _optional_str,
            metavar="STRING",
        ),
    ),
    *_section(
        "Server Socket",
        Setting(
            "bind",
            ("-b", "--bind"),
            ["127.0.0.1:8000"],
            "Address to listen on: HOST, HOST:PORT, unix:PATH or fd://FD; a scheme in front "
            "sets the listener's protocol: http://, uwsgi://, or with TLS https:// and suwsgi://.",
            _bind,
            action="append",
            metavar="ADDRESS",
            env="PORT",
            default_factory=_default_bind,
            default_doc="`['127.0.0.1:8000']`, or `['0.0.0.0:$PORT']` when `PORT` is set",
        ),
        _int_setting(
            "backlog",
            ("--backlog",),
            2048,
            "The maximum number of pending connections.",
            positive=True,
        ),
        _int_setting(
            "defer_accept",
            ("--defer-accept",),
            1,
            "Seconds the kernel holds a new TCP connection until its first bytes arrive "
            "(TCP_DEFER_ACCEPT, Linux), so a worker wakes only for a request it can read "
            "at once and a silent client does not hold a sync worker. 0 turns it off "
            "(uWSGI's --no-defer-accept). Sockets monoceros binds itself only: UNIX "
            "sockets and sockets passed in (systemd, fd://) are left as they are.",
        ),
        Setting(
            "protocol",
            ("--protocol",),
            "http",
            "Wire protocol of plain bind addresses: http, or uwsgi for nginx uwsgi_pass and "
            "Apache mod_proxy_uwsgi (a bind of uwsgi://ADDR, http://ADDR, https://ADDR or "
            "suwsgi://ADDR sets its own).",
            _choice(PROTOCOLS),
            metavar="STRING",
        ),
        Setting(
            "uwsgi_allow_ips",
            ("--uwsgi-allow-from",),
            "127.0.0.1,::1",
            "Comma-separated IPs or CIDR networks allowed to send uWSGI requests ('*' allows "
            "all; UNIX socket peers are always allowed).",
            _ip_list,
            metavar="STRING",
        ),
        Setting(
            "uwsgi_max_vars_size",
            ("--uwsgi-max-vars-size",),
            65535,
            "Largest uWSGI vars block accepted, in bytes (65535, the wire maximum, by default).",
            _vars_size,
            metavar=_INT,
        ),
    ),
    *_section(
        "SSL",
        Setting(
            "keyfile",
            ("--keyfile",),
            None,
            "The TLS private key (PEM); unset, it is read from certfile.",
            _optional_path,
            metavar="FILE",
        ),
        Setting(
            "certfile",
            ("--certfile",),
            None,
            "The TLS certificate (PEM, followed by its intermediate certificates). Set, every "
            "listener bound without a scheme serves TLS (HTTPS, or uwsgi over TLS for "
            "--protocol uwsgi); https://ADDR and suwsgi://ADDR binds serve TLS beside plain "
            "ones and need it. Read by the master at start and on HUP, before any worker "
            "forks: a file it cannot read or a key that does not match stops it.",
            _optional_path,
            metavar="FILE",
        ),
        Setting(
            "ssl_version",
            ("--ssl-version",),
            2,
            "Accepted for gunicorn's configs and not used, as in gunicorn 21 and later: TLS 1.2 "
            "and 1.3 are negotiated. Set context.minimum_version in the ssl_context hook "
            "instead.",
            _ssl_version,
            metavar="STRING",
            default_doc="`2` (`ssl.PROTOCOL_TLS`)",
        ),
        Setting(
            "cert_reqs",
            ("--cert-reqs",),
            0,
            "Client certificates: 0 not asked for; 1 verified when the client sends one "
            "(ssl.CERT_OPTIONAL); 2 required (ssl.CERT_REQUIRED: mutual TLS, the TLS "
            "handshake of any client without a certificate signed by ca_certs fails). 1 and "
            "2 need ca_certs (or an ssl_context hook that loads the CAs).",
            _cert_reqs,
            metavar=_INT,
        ),
        Setting(
            "ca_certs",
            ("--ca-certs",),
            None,
            "The CA certificates (PEM) that client certificates must be signed by (cert_reqs).",
            _optional_path,
            metavar="FILE",
        ),
        Setting(
            "suppress_ragged_eofs",
            ("--suppress-ragged-eofs",),
            True,
            "A TLS peer that closes the TCP connection without TLS's close_notify: True reads "
            "it as the end of the stream, as on a plain connection; False logs it as a TLS "
            "error (sync and gthread workers; the asgi worker's TLS transport always reads it "
            "as the end). A request body cut short is refused either way.",
            _bool,
            action="store_true",
        ),
        Setting(
            "do_handshake_on_connect",
            ("--do-handshake-on-connect",),
            False,
            "False: header_timeout bounds the TLS handshake and the first request head "
            "together, counted from the accept. True: the handshake is done first, within "
            "header_timeout, and the first request head then gets a header_timeout of its own.",
            _bool,
            action="store_true",
        ),
        Setting(
            "ciphers",
            ("--ciphers",),
            None,
            "TLS 1.2 cipher suites, as an OpenSSL cipher list (TLS 1.3 suites are not "
            "affected); unset: the ssl module's defaults.",
            _optional_str,
            metavar="STRING",
        ),
    ),
    *_section(
        "Worker Processes",
        Setting(
            "workers",
            ("-w", "--workers"),
            1,
            "The number of worker processes.",
            _positive_int,
            metavar=_INT,
            env="WEB_CONCURRENCY",
            default_factory=lambda environ: environ.get("WEB_CONCURRENCY", 1),
            default_doc="`$WEB_CONCURRENCY` when set, else `1`",
        ),
        Setting(
            "worker_class",
            ("-k", "--worker-class"),
            "sync",
            "The kind of worker: "
            + ", ".join(sorted(WORKER_CLASSES))
            + " (gunicorn's dotted class paths are accepted too).",
            _worker_class,
            metavar="STRING",
        ),
        _int_setting(
            "threads",
            ("--threads",),
            1,
            "The number of threads per worker (threaded workers only).",
            positive=True,
        ),
        _int_setting(
            "worker_connections",
            ("--worker-connections",),
            1000,
            "The maximum number of simultaneous clients per worker (non-sync workers).",
            positive=True,
        ),
        _int_setting(
            "max_requests",
            ("--max-requests",),
            0,
            "Restart a worker after this many requests (0 disables).",
        ),
        _int_setting(
            "max_requests_jitter",
            ("--max-requests-jitter",),
            0,
            "Add randint(0, this) to max_requests per worker, to stagger restarts.",
        ),
        _int_setting(
            "max_worker_memory",
            ("--max-worker-memory",),
            0,
            "Replace a worker whose resident memory (RSS) stays above this many MiB: the "
            "master reads it once a second and replaces a worker above the limit at 3 reads "
            "in a row (a spike shorter than 2 s is forgiven); the replacement boots before "
            "the old worker stops gracefully, one worker at a time (0 disables; Linux).",
        ),
        Setting(
            "max_worker_lifetime",
            ("--max-worker-lifetime",),
            0,
            "Replace a worker after it has run this many seconds plus a random 0-10 % of "
            "them drawn for each worker, so workers started together leave apart; the "
            "replacement boots before the old worker stops gracefully, one worker at a time "
            "(0 disables).",
            _seconds,
            metavar="FLOAT",
        ),
        _int_setting(
            "timeout",
            ("-t", "--timeout"),
            30,
            "Kill and restart a worker silent for this many seconds (0 disables).",
        ),
        _int_setting(
            "graceful_timeout",
            ("--graceful-timeout",),
            30,
            "Seconds a worker gets to finish its requests after a graceful stop.",
        ),
        _int_setting(
            "keepalive",
            ("--keep-alive",),
            2,
            "Seconds to wait for the next request on a keep-alive connection.",
        ),
        Setting(
            "asgi_loop",
            ("--asgi-loop",),
            "auto",
            "Event loop of the asgi worker: auto (uvloop when installed), asyncio or uvloop.",
            _choice(ASGI_LOOPS),
            metavar="STRING",
        ),
        Setting(
            "asgi_lifespan",
            ("--asgi-lifespan",),
            "auto",
            "ASGI lifespan protocol: auto (used when the app speaks it), on (required) or off.",
            _choice(ASGI_LIFESPANS),
            metavar="STRING",
        ),
        _int_setting(
            "ws_max_message_size",
            ("--ws-max-message-size", "--websocket-max-message-size"),
            16 * 1024 * 1024,
            "Largest WebSocket message the asgi worker accepts, in bytes (close 1009 above); "
            "gunicorn's websocket_max_message_size is accepted as another name.",
            positive=True,
        ),
        Setting(
            "ws_ping_interval",
            ("--ws-ping-interval",),
            20.0,
            "Seconds a WebSocket of the asgi worker may be silent before it is pinged (keeps it "
            "open through proxies and NAT; a busy one is never pinged); 0 disables (uvicorn's "
            "None too).",
            _seconds_or_none,
            metavar="FLOAT",
        ),
        Setting(
            "ws_ping_timeout",
            ("--ws-ping-timeout",),
            20.0,
            "Seconds a pinged WebSocket gets to answer before it is closed with 1011; 0 never "
            "closes it for that (uvicorn's None too).",
            _seconds_or_none,
            metavar="FLOAT",
        ),
        Setting(
            "ws_per_message_deflate",
            ("--ws-per-message-deflate",),
            True,
            "Accept a client's permessage-deflate offer (RFC 7692 WebSocket compression) in the "
            "asgi worker: true or false.",
            _bool,
            metavar="BOOL",
        ),
        Setting(
            "request_timeout",
            ("--request-timeout",),
            0.0,
            "Seconds an HTTP request of the asgi worker may run before it is cancelled (504 if "
            "no response started, else the connection closes; WebSockets are exempt). 0 "
            "disables. The sync and gthread workers are bounded by timeout instead.",
            _seconds,
            metavar="SECONDS",
        ),
    ),
    *_section(
        "Security",
        _int_setting(
            "limit_request_line",
            ("--limit-request-line",),
            4094,
            "The maximum size of the HTTP request line in bytes (0 = no limit).",
        ),
        _int_setting(
            "limit_request_fields",
            ("--limit-request-fields",),
            100,
            "The maximum number of header fields in a request.",
        ),
        _int_setting(
            "limit_request_field_size",
            ("--limit-request-field_size", "--limit-request-field-size"),
            8190,
            "The maximum size of one request header field in bytes (0 = no limit).",
        ),
        Setting(
            "header_timeout",
            ("--header-timeout",),
            10.0,
            "Seconds a client gets to send a complete request head (0 disables).",
            _seconds,
            metavar="FLOAT",
        ),
    ),
    *_section(
        "Debugging",
        _flag(
            "check_config",
            ("--check-config",),
            "Check the configuration and that the application loads, then exit.",
        ),
        _flag(
            "print_config",
            ("--print-config",),
            "Print every setting as fully resolved, then exit.",
        ),
        _flag(
            "reload",
            ("--reload",),
            "Restart workers when a source file changes (development only).",
        ),
        Setting(
            "reload_engine",
            ("--reload-engine",),
            "auto",
            "How --reload watches files: auto (inotify when available), inotify or poll.",
            _choice(RELOAD_ENGINES),
            metavar="STRING",
        ),
        Setting(
            "reload_extra_files",
            ("--reload-extra-file",),
            [],
            "More files (templates, configs) whose change triggers a --reload restart.",
            _reload_files,
            action="append",
            metavar="FILES",
        ),
    ),
    *_section(
        "Server Mechanics",
        _flag(
            "preload_app",
            ("--preload",),
            "Load the application in the master before forking workers.",
        ),
        Setting(
            "sendfile",
            ("--no-sendfile",),
            None,
            "Use sendfile() for file responses unless this is False (--no-sendfile).",
            _optional_bool,
            action="store_const",
            const=False,
        ),
        _flag(
            "reuse_port",
            ("--reuse-port",),
            "Set SO_REUSEPORT on the listening sockets.",
        ),
        Setting(
            "chdir",
            ("--chdir",),
            ".",
            "Change to this directory before loading the application.",
            _directory,
            metavar="DIR",
            default_factory=lambda environ: os.getcwd(),
            default_doc="the current directory",
        ),
        _flag(
            "daemon",
            ("-D", "--daemon"),
            "Detach from the terminal and run in the background.",
        ),
        Setting(
            "raw_env",
            ("-e", "--env"),
            [],
            "Set an environment variable in the server, as KEY=VALUE.",
            _raw_env,
            action="append",
            metavar="ENV",
        ),
        Setting(
            "pidfile",
            ("-p", "--pid"),
            None,
            "Write the master's PID to this file.",
            _optional_path,
            metavar="FILE",
        ),
        Setting(
            "user",
            ("-u", "--user"),
            None,
            "Run workers as this user (a name or a numeric uid).",
            _user,
            metavar="USER",
            default_doc="the current effective user (`os.geteuid()`)",
        ),
        Setting(
            "group",
            ("-g", "--group"),
            None,
            "Run workers as this group (a name or a numeric gid).",
            _group,
            metavar="GROUP",
            default_doc="the current effective group (`os.getegid()`)",
        ),
        Setting(
            "umask",
            ("-m", "--umask"),
            0,
            "The umask for files the server writes, e.g. 0o22, 022 or 18.",
            _umask,
            metavar=_INT,
        ),
        Setting(
            "secure_scheme_headers",
            (),
            {"X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https", "X-FORWARDED-SSL": "on"},
            "Headers (upper-case name to value) a trusted proxy sets on HTTPS requests.",
            _header_dict,
        ),
        Setting(
            "forwarded_allow_ips",
            ("--forwarded-allow-ips",),
            "127.0.0.1,::1",
            "Comma-separated proxy IPs or CIDR networks trusted for secure_scheme_headers "
            "('*' trusts all).",
            _ip_list,
            metavar="STRING",
            env="FORWARDED_ALLOW_IPS",
            default_factory=lambda environ: environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1"),
            default_doc="`$FORWARDED_ALLOW_IPS` when set, else `'127.0.0.1,::1'`",
        ),
        Setting(
            "forwarder_headers",
            ("--forwarder-headers",),
            "SCRIPT_NAME,PATH_INFO",
            "Header names with '_' (comma-separated, '*' for all) that a proxy in "
            "forwarded_allow_ips may send; other such headers are dropped. A SCRIPT_NAME "
            "header sets where the application is mounted (WSGI SCRIPT_NAME, ASGI root_path).",
            _header_names,
            metavar="STRING",
        ),
        _flag(
            "proxy_headers",
            ("--proxy-headers",),
            "On HTTP listeners, from a peer in forwarded_allow_ips, take the client address "
            "(WSGI REMOTE_ADDR, ASGI client) from X-Forwarded-For: its right-most entry that is "
            "not itself in forwarded_allow_ips (uvicorn's flag).",
        ),
        Setting(
            "root_path",
            ("--root-path",),
            "",
            "The path prefix a proxy strips before passing requests on, where the application "
            "is mounted on HTTP listeners: the WSGI SCRIPT_NAME and the ASGI root_path, e.g. "
            "'/api'. Empty: the SCRIPT_NAME environment variable, if set.",
            _root_path,
            metavar="PATH",
        ),
        Setting(
            "proxy_protocol",
            ("--proxy-protocol",),
            "off",
            "Read a PROXY protocol header (HAProxy send-proxy, send-proxy-v2) at the start of "
            "every connection, HTTP and uwsgi: v1 or v2 require a header of that version, auto "
            "reads either and serves a connection without one as is; the flag alone means auto.",
            _proxy_protocol,
            metavar="MODE",
            nargs="?",
            const="auto",
        ),
        Setting(
            "proxy_allow_ips",
            ("--proxy-allow-from",),
            "127.0.0.1,::1",
            "Comma-separated IPs or CIDR networks allowed to send a PROXY header ('*' allows "
            "all; UNIX socket peers are always allowed).",
            _ip_list,
            metavar="STRING",
        ),
        Setting(
            "pythonpath",
            ("--pythonpath",),
            None,
            "Comma-separated directories to prepend to the Python path.",
            _optional_str,
            metavar="STRING",
        ),
    ),
    *_section(
        "Logging",
        Setting(
            "accesslog",
            ("--access-logfile",),
            None,
            "The access log file ('-' for stdout); unset means no access log.",
            _optional_path,
            metavar="FILE",
        ),
        _flag(
            "disable_redirect_access_to_syslog",
            ("--disable-redirect-access-to-syslog",),
            "With syslog on, send only the error log there, not the access log.",
        ),
        Setting(
            "access_log_format",
            ("--access-logformat",),
            _DEFAULT_ACCESS_LOG_FORMAT,
            "The access log line format (gunicorn's atoms); not used with access_log_json.",
            _str,
            metavar="STRING",
        ),
        _flag(
            "access_log_json",
            ("--access-log-json",),
            "Write each access log line as one JSON object (time, remote_addr, method, path, "
            "query, status, bytes, duration_ms, referer, user_agent, request_id, pid, "
            "protocol) instead of access_log_format; it goes where the access log goes.",
        ),
        Setting(
            "errorlog",
            ("--error-logfile", "--log-file"),
            "-",
            "The error log file ('-' for stderr).",
            _optional_path,
            metavar="FILE",
        ),
        Setting(
            "loglevel",
            ("--log-level",),
            "info",
            "The error log level: " + ", ".join(LOG_LEVELS) + ".",
            _choice(LOG_LEVELS),
            metavar="LEVEL",
        ),
        _flag(
            "capture_output",
            ("--capture-output",),
            "Redirect the application's stdout and stderr to the error log.",
        ),
        Setting(
            "logconfig",
            ("--log-config",),
            None,
            "A logging config file in logging.config.fileConfig's ini format, applied after "
            "the settings above; used when neither logconfig_dict nor logconfig_json is set.",
            _optional_path,
            metavar="FILE",
        ),
        Setting(
            "logconfig_dict",
            (),
            {},
            "A logging config in logging.config.dictConfig's format, merged over gunicorn's "
            "defaults (top-level keys replace theirs) and applied after the settings above. "
            "The loggers gunicorn.error and gunicorn.access (or monoceros.error and "
            "monoceros.access) are the error and access logs. Takes precedence over "
            "logconfig_json and logconfig.",
            _log_dict,
        ),
        Setting(
            "logconfig_json",
            ("--log-config-json",),
            None,
            "A JSON file holding a logconfig_dict (the same merge); used when logconfig_dict "
            "is empty, and over logconfig.",
            _optional_path,
            metavar="FILE",
        ),
        Setting(
            "syslog_addr",
            ("--log-syslog-to",),
            _default_syslog_addr(sys.platform),
            "Where syslog messages go: unix://PATH (#dgram or #stream after it to choose the "
            "socket type), udp://HOST:PORT or tcp://HOST:PORT (port 514 if left out).",
            _syslog_addr,
            metavar="SYSLOG_ADDR",
            default_doc="`'udp://localhost:514'`; on macOS `'unix:///var/run/syslog'`, on "
            "FreeBSD and DragonFly `'unix:///var/run/log'`, on OpenBSD `'unix:///dev/log'`",
        ),
        _flag(
            "syslog",
            ("--log-syslog",),
            "Send the error log and the access log to syslog too (see syslog_addr).",
        ),
        Setting(
            "syslog_prefix",
            ("--log-syslog-prefix",),
            None,
            "The program name of syslog lines is gunicorn.PREFIX.error or "
            "gunicorn.PREFIX.access; unset, PREFIX is proc_name with ':' written '.'.",
            _optional_str,
            metavar="SYSLOG_PREFIX",
        ),
        Setting(
            "syslog_facility",
            ("--log-syslog-facility",),
            "user",
            "The syslog facility: " + ", ".join(SYSLOG_FACILITIES) + ".",
            _choice(tuple(SYSLOG_FACILITIES)),
            metavar="SYSLOG_FACILITY",
        ),
        Setting(
            "statsd_host",
            ("--statsd-host",),
            None,
            "Where the master sends statsd metrics over UDP: HOST:PORT (port 8125 if left "
            "out), [V6]:PORT, or unix:PATH for a UNIX datagram socket. Unset: no statsd.",
            _statsd_host,
            metavar="STATSD_ADDR",
        ),
        Setting(
            "statsd_prefix",
            ("--statsd-prefix",),
            "",
            "A prefix for the statsd metric names; a '.' is added between it and the name.",
            _str,
            metavar="STATSD_PREFIX",
        ),
        Setting(
            "dogstatsd_tags",
            ("--dogstatsd-tags",),
            "",
            "Comma-separated DogStatsD tags (key:value) appended to every statsd metric as "
            "|#tag1,tag2.",
            _dogstatsd_tags,
            metavar="DOGSTATSD_TAGS",
        ),
    ),
    *_section(
        "Observability",
        Setting(
            "stats_bind",
            ("--stats-bind",),
            None,
            "Address of the master's stats listener (HOST:PORT, [V6]:PORT or unix:PATH), "
            "serving /metrics (Prometheus), /stats (JSON), /healthz and /readyz. The master "
            "answers it, so it answers while every worker is busy. Unset: no listener.",
            _optional_str,
            metavar="ADDRESS",
        ),
    ),
    *_section(
        "Process Naming",
        Setting(
            "proc_name",
            ("-n", "--name"),
            None,
            "The name in the process titles (ps, top): 'monoceros: master [NAME]' and "
            "'monoceros: worker [NAME]', set with setproctitle; also syslog's default prefix.",
            _optional_str,
            metavar="STRING",
            default_doc="the application spec, else `'monoceros'`",
        ),
    ),
    *_section(
        "Server Hooks",
        _hook("on_starting", ("server",), "Called just before the master process is initialised."),
        _hook("on_reload", ("server",), "Called when workers are recycled on SIGHUP."),
        _hook("when_ready", ("server",), "Called just after the server is started."),
        _hook("pre_fork", ("server", "worker"), "Called just before a worker is forked."),
        _hook("post_fork", ("server", "worker"), "Called in the worker just after it is forked."),
        _hook(
            "post_worker_init",
            ("worker",),
            "Called just after a worker has loaded the application.",
        ),
        _hook("worker_int", ("worker",), "Called when a worker exits on SIGINT or SIGQUIT."),
        _hook(
            "worker_abort",
            ("worker",),
            "Called when a worker receives SIGABRT (generally on timeout).",
        ),
        _hook("pre_exec", ("server",), "Called just before a new master process is exec'd."),
        _hook("pre_request", ("worker", "req"), "Called just before a worker handles a request."),
        _hook(
            "post_request",
            ("worker", "req", "environ", "resp"),
            "Called after a worker has handled a request.",
        ),
        _hook(
            "child_exit",
            ("server", "worker"),
            "Called in the master just after a worker has exited.",
        ),
        _hook("worker_exit", ("server", "worker"), "Called in the worker just before it exits."),
        _hook(
            "nworkers_changed",
            ("server", "new_value", "old_value"),
            "Called when the number of workers changes (old_value is None the first time).",
        ),
        _hook("on_exit", ("server",), "Called just before the server exits."),
        _hook(
            "ssl_context",
            ("config", "default_ssl_context_factory"),
            "Returns the ssl.SSLContext of the TLS listeners; default_ssl_context_factory() "
            "builds the one monoceros would use (certfile, keyfile, ca_certs, cert_reqs, "
            "ciphers) for the hook to change or replace. Called in the master at start and on "
            "HUP (the workers inherit the context); an exception or another return value stops "
            "the start and refuses the HUP.",
            default=_default_ssl_context,
            default_doc="returns `default_ssl_context_factory()`",
        ),
    ),
)
"""The settings table, in documentation order."""

SETTINGS_BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}
"""The settings table, keyed by setting name."""

HOOK_NAMES: tuple[str, ...] = tuple(setting.name for setting in SETTINGS if setting.is_hook)
"""The names of the server hooks."""


def _show(setting: Setting, value: Any) -> str:
    if setting.is_hook and value is setting.default:
        return "<no-op>" if setting.default_doc == "no-op" else "<default>"
    if callable(value):
        return f"<{getattr(value, '__qualname__', type(value).__name__)}()>"
    return repr(value)


class Config:
    """Validated values of every setting, read as attributes (``cfg.workers``)."""

    config: str | None
    wsgi_app: str | None
    bind: list[str]
    protocol: str
    uwsgi_allow_ips: list[str]
    uwsgi_max_vars_size: int
    keyfile: str | None
    certfile: str | None
    ssl_version: int
    cert_reqs: int
    ca_certs: str | None
    suppress_ragged_eofs: bool
    do_handshake_on_connect: bool
    ciphers: str | None
    backlog: int
    defer_accept: int
    stats_bind: str | None
    workers: int
    worker_class: str
    threads: int
    worker_connections: int
    max_requests: int
    max_requests_jitter: int
    max_worker_memory: int
    max_worker_lifetime: float
    timeout: int
    graceful_timeout: int
    keepalive: int
    asgi_loop: str
    asgi_lifespan: str
    ws_max_message_size: int
    ws_ping_interval: float
    ws_ping_timeout: float
    ws_per_message_deflate: bool
    request_timeout: float
    limit_request_line: int
    limit_request_fields: int
    limit_request_field_size: int
    header_timeout: float
    check_config: bool
    print_config: bool
    preload_app: bool
    reload: bool
    reload_engine: str
    reload_extra_files: list[str]
    sendfile: bool | None
    reuse_port: bool
    chdir: str
    daemon: bool
    raw_env: list[str]
    pidfile: str | None
    user: int
    group: int
    umask: int
    secure_scheme_headers: dict[str, str]
    forwarded_allow_ips: list[str]
    forwarder_headers: list[str]
    proxy_headers: bool
    root_path: str
    proxy_protocol: str
    proxy_allow_ips: list[str]
    pythonpath: str | None
    accesslog: str | None
    disable_redirect_access_to_syslog: bool
    access_log_format: str
    access_log_json: bool
    errorlog: str | None
    loglevel: str
    capture_output: bool
    logconfig: str | None
    logconfig_dict: dict[str, Any]
    logconfig_json: str | None
    syslog_addr: str
    syslog: bool
    syslog_prefix: str | None
    syslog_facility: str
    statsd_host: str | None
    statsd_prefix: str
    dogstatsd_tags: str
    proc_name: str
    on_starting: Callable[[Any], object]
    on_reload: Callable[[Any], object]
    when_ready: Callable[[Any], object]
    pre_fork: Callable[[Any, Any], object]
    post_fork: Callable[[Any, Any], object]
    post_worker_init: Callable[[Any], object]
    worker_int: Callable[[Any], object]
    worker_abort: Callable[[Any], object]
    pre_exec: Callable[[Any], object]
    pre_request: Callable[[Any, Any], object]
    post_request: Callable[[Any, Any, Any, Any], object]
    child_exit: Callable[[Any, Any], object]
    worker_exit: Callable[[Any, Any], object]
    nworkers_changed: Callable[[Any, int, int | None], object]
    on_exit: Callable[[Any], object]
    ssl_context: Callable[[Any, Callable[[], Any]], Any]

    warnings: list[str]
    notices: list[str]
    argv: list[str]

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        object.__setattr__(self, "warnings", [])
        object.__setattr__(self, "notices", [])
        object.__setattr__(self, "argv", [])
        object.__setattr__(self, "_given_proc_name", None)
        for setting in SETTINGS:
            try:
                self.set(setting.name, setting.initial(env))
            except ConfigError as exc:
                if setting.env is not None and setting.env in env:
                    raise ConfigError(f"{exc} (from ${setting.env})", setting.name) from None
                raise

    def __setattr__(self, name: str, value: Any) -> None:
        if name in SETTINGS_BY_NAME:
            raise AttributeError(f"use cfg.set({name!r}, value) to change a setting")
        object.__setattr__(self, name, value)

    def set(self, name: str, value: Any) -> None:
        """Validate ``value`` and store it as setting ``name``; raise ConfigError if invalid."""
        setting = SETTINGS_BY_NAME.get(name)
        if setting is None:
            raise ConfigError(f"unknown setting {name!r}")
        try:
            validated = setting.validator(value)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{name}: {exc}", name) from None
        if name == "proc_name":
            object.__setattr__(self, "_given_proc_name", validated)
        object.__setattr__(self, name, validated)
        if name in ("proc_name", "wsgi_app"):
            given = self.__dict__.get("_given_proc_name")
            object.__setattr__(
                self, "proc_name", given or self.__dict__.get("wsgi_app") or "monoceros"
            )

    def hook_is_set(self, name: str) -> bool:
        """Whether the user replaced server hook ``name`` (so callers can skip no-op calls)."""
        setting = SETTINGS_BY_NAME.get(name)
        if setting is None or not setting.is_hook:
            raise ConfigError(f"{name!r} is not a server hook")
        return bool(self.__dict__[name] is not setting.default)

    @property
    def worker_class_path(self) -> str:
        """The ``"module:Class"`` path of the configured worker class."""
        return WORKER_CLASSES[self.worker_class]

    @property
    def env(self) -> dict[str, str]:
        """``raw_env`` as a dict."""
        return {key: value for key, _, value in (entry.partition("=") for entry in self.raw_env)}

    def describe(self) -> list[str]:
        """Every setting as a ``name = value`` line, sorted by name (for ``--print-config``)."""
        return [
            f"{name} = {_show(setting, self.__dict__[name])}"
            for name, setting in sorted(SETTINGS_BY_NAME.items())
        ]

    def __repr__(self) -> str:
        return f"<Config wsgi_app={self.__dict__.get('wsgi_app')!r}>"
