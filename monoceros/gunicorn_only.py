"""gunicorn's settings that monoceros does not implement, with gunicorn's defaults and flags.

One table answers every question the loader asks about such a setting, from a config file or
the command line: is this value gunicorn's default (then it is ignored silently), does the
option take a value (so the parser can skip it), and does leaving it out fail *open* (then
monoceros refuses to start instead of warning). Defaults are gunicorn 27's
(``gunicorn/config.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = ["GUNICORN_ONLY", "VARIES", "GunicornOnly"]


class _Varies:
    """gunicorn's default depends on the platform or the environment: any value given differs."""

    def __repr__(self) -> str:
        return "<varies>"


VARIES: Final = _Varies()
"""The default of a setting whose gunicorn default cannot be compared (a path, a hook)."""

_NO_TLS = (
    "TLS is not served by monoceros yet, so this port would answer plain HTTP; terminate "
    "TLS in a proxy in front of monoceros and remove the setting"
)


@dataclass(frozen=True)
class GunicornOnly:
    """One gunicorn setting monoceros lacks: its default, its flags, and whether to refuse it."""

    name: str
    default: Any
    flags: tuple[str, ...] = ()
    kind: str = "value"
    """How the flag is given: "value", "append" or "flag" (no value)."""
    refuse: str | None = None
    """Why a non-default value stops monoceros (its absence would fail open), or None to warn."""

    def is_default(self, value: Any) -> bool:
        """Whether ``value`` means what gunicorn's default means (ignoring it changes nothing)."""
        default = self.default
        if default is VARIES:
            return False
        if value == default:
            return True
        if isinstance(value, str) and value.strip().lower() == str(default).lower():
            return True  # "DROP" for "drop", and "0" or "false" from the command line
        # an "off" default: False, None, "" or an empty list given for it mean the same
        return default in ("off", False, None, "", 0) and not value and value is not True


_row = GunicornOnly


_ROWS: tuple[GunicornOnly, ...] = (
    # Control (gunicorn 25)
    _row("control_socket", VARIES, ("--control-socket",)),
    _row("control_socket_mode", 0o600, ("--control-socket-mode",)),
    _row("control_socket_disable", False, ("--no-control-socket",), "flag"),
    # Debugging
    _row("spew", False, ("--spew",), "flag"),
    # Dirty arbiters (gunicorn 25)
    _row("dirty_apps", [], ("--dirty-app",), "append"),
    _row("dirty_workers", 0, ("--dirty-workers",)),
    _row("dirty_timeout", 300, ("--dirty-timeout",)),
    _row("dirty_threads", 1, ("--dirty-threads",)),
    _row("dirty_graceful_timeout", 30, ("--dirty-graceful-timeout",)),
    _row("on_dirty_starting", VARIES),
    _row("dirty_post_fork", VARIES),
    _row("dirty_worker_init", VARIES),
    _row("dirty_worker_exit", VARIES),
    # HTTP/2 (gunicorn 25)
    _row("http_protocols", "h1", ("--http-protocols",)),
    _row("http2_max_concurrent_streams", 100, ("--http2-max-concurrent-streams",)),
    _row("http2_initial_window_size", 65535, ("--http2-initial-window-size",)),
    _row("http2_max_frame_size", 16384, ("--http2-max-frame-size",)),
    _row("http2_max_header_list_size", 65536, ("--http2-max-header-list-size",)),
    # Logging
    _row("logger_class", "gunicorn.glogging.Logger", ("--logger-class",)),
    _row("enable_stdio_inheritance", False, ("-R", "--enable-stdio-inheritance"), "flag"),
    _row("enable_backlog_metric", False, ("--enable-backlog-metric",), "flag"),
    # Process naming
    _row("default_proc_name", "gunicorn"),
    # SSL: without TLS, each of these would serve plain text where TLS is expected
    _row("keyfile", None, ("--keyfile",), refuse=_NO_TLS),
    _row("certfile", None, ("--certfile",), refuse=_NO_TLS),
    _row("ssl_context", VARIES, refuse=_NO_TLS),
    _row("ca_certs", None, ("--ca-certs",), refuse=_NO_TLS),
    _row("cert_reqs", 0, ("--cert-reqs",), refuse=_NO_TLS),
    _row("ssl_version", 2, ("--ssl-version",)),  # ssl.PROTOCOL_TLS; ignored by gunicorn 21+
    _row("suppress_ragged_eofs", True, ("--suppress-ragged-eofs",), "flag"),
    _row("do_handshake_on_connect", False, ("--do-handshake-on-connect",), "flag"),
    _row("ciphers", None, ("--ciphers",)),
    # Server mechanics
    _row("worker_tmp_dir", None, ("--worker-tmp-dir",)),
    _row("initgroups", False, ("--initgroups",), "flag"),
    _row("tmp_upload_dir", None),
    _row("paste", None, ("--paste", "--paster")),
    _row("raw_paste_global_conf", [], ("--paste-global",), "append"),
    _row("strip_header_spaces", False, ("--strip-header-spaces",), "flag"),
    _row("permit_obsolete_folding", False, ("--permit-obsolete-folding",), "flag"),
    _row(
        "permit_unconventional_http_method", False, ("--permit-unconventional-http-method",), "flag"
    ),
    _row(
        "permit_unconventional_http_version",
        False,
        ("--permit-unconventional-http-version",),
        "flag",
    ),
    _row("casefold_http_method", False, ("--casefold-http-method",), "flag"),
    _row("header_map", "drop", ("--header-map",)),
    # Worker processes (gunicorn 25)
    _row("asgi_disconnect_grace_period", 3, ("--asgi-disconnect-grace-period",)),
    _row("http_parser", "auto", ("--http-parser",)),
)

GUNICORN_ONLY: Final[dict[str, GunicornOnly]] = {row.name: row for row in _ROWS}
"""gunicorn settings monoceros does not implement, by name."""
