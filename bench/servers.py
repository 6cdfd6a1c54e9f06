"""The servers under test and the command line each one runs, one worker each.

A command is a list of tokens. ``{tool}`` expands to the executable (several words for monoceros,
``python -m monoceros``), ``{listen}`` to the server's own listen flags; every other token is
formatted with ``app`` (``wsgi_apps:hello``), ``apps`` (the apps folder), ``bind`` (gunicorn style:
``unix:PATH`` or ``127.0.0.1:PORT``), ``addr`` (``PATH`` or ``127.0.0.1:PORT``), ``path``, ``port``,
``protocol`` and ``threads``.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path

APPS = Path(__file__).resolve().parent / "apps"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Address:
    """Where the server listens: a UNIX socket path, or a loopback TCP port."""

    path: str = ""
    port: int = 0

    @property
    def nginx_target(self) -> str:
        """The address in nginx's ``server`` syntax (the same as gunicorn's)."""
        return self.bind

    @property
    def bind(self) -> str:
        """The address in gunicorn's ``--bind`` syntax."""
        return f"unix:{self.path}" if self.path else f"{HOST}:{self.port}"

    @property
    def addr(self) -> str:
        """The address in uWSGI's ``--socket`` syntax."""
        return self.path or f"{HOST}:{self.port}"


@dataclass(frozen=True)
class Server:
    """One server definition."""

    name: str
    tool: str  # executable name looked up in the peers folder, then PATH; "monoceros" is special
    iface: str  # "wsgi" or "asgi": which apps module it serves
    commands: dict[str, tuple[str, ...]]  # protocol -> tokens
    listen: dict[str, tuple[str, ...]] = field(default_factory=dict)  # "unix"/"tcp" -> tokens
    stop: signal.Signals = signal.SIGTERM

    @property
    def kind(self) -> str:
        """The worker kind after the dash (``sync``, ``gthread``, ``asgi``), or the name."""
        return self.name.partition("-")[2] or self.name

    def command(
        self, protocol: str, app: str, where: Address, tool: list[str], threads: int
    ) -> list[str]:
        """The argv that starts this server for protocol, serving app at where."""
        values = {
            "app": app,
            "apps": str(APPS),
            "bind": where.bind,
            "addr": where.addr,
            "path": where.path,
            "port": str(where.port),
            "protocol": protocol,
            "threads": str(threads),
        }
        argv: list[str] = []
        for token in self.commands[protocol]:
            if token == "{tool}":
                argv += tool
            elif token == "{listen}":
                argv += [t.format(**values) for t in self.listen["unix" if where.path else "tcp"]]
            else:
                argv.append(token.format(**values))
        return argv


def _gunicorn_style(kind: str, extra: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """gunicorn's (and monoceros's) command line for both protocols."""
    base = ("{tool}", "{app}", "--bind", "{bind}", "--workers", "1", "--protocol", "{protocol}")
    threads = ("--threads", "{threads}") if kind == "gthread" else ()
    tokens = (*base, "--worker-class", kind, *threads, *extra)
    return {"uwsgi": tokens, "http": tokens}


_UWSGI_COMMON = (
    "--master",
    "--processes",
    "1",
    "--disable-logging",
    "--need-app",
    "--die-on-term",
    "--chmod-socket=666",
    "--chdir",
    "{apps}",
    "--module",
    "{app}",
)
# gunicorn 27 opens a control socket under ~/.gunicorn unless told not to: a run writes only to /tmp
_NO_CONTROL = ("--no-control-socket",)

SERVERS: dict[str, Server] = {
    s.name: s
    for s in (
        Server(
            "uwsgi",
            "uwsgi",
            "wsgi",
            {
                "uwsgi": ("{tool}", "--socket", "{addr}", *_UWSGI_COMMON),
                # --http-socket closes after each answer without saying so; the header tells nginx
                # not to put the connection back into its keep-alive pool.
                "http": (
                    "{tool}",
                    "--http-socket",
                    "{addr}",
                    "--add-header",
                    "Connection: close",
                    *_UWSGI_COMMON,
                ),
            },
            stop=signal.SIGINT,
        ),
        Server("gunicorn-sync", "gunicorn", "wsgi", _gunicorn_style("sync", _NO_CONTROL)),
        Server("gunicorn-gthread", "gunicorn", "wsgi", _gunicorn_style("gthread", _NO_CONTROL)),
        Server("gunicorn-asgi", "gunicorn", "asgi", _gunicorn_style("asgi", _NO_CONTROL)),
        Server(
            "uvicorn",
            "uvicorn",
            "asgi",
            {
                "http": (
                    "{tool}",
                    "{app}",
                    "{listen}",
                    "--loop",
                    "uvloop",
                    "--http",
                    "httptools",
                    "--lifespan",
                    "on",
                    "--no-access-log",
                    "--log-level",
                    "warning",
                )
            },
            listen={"unix": ("--uds", "{path}"), "tcp": ("--host", HOST, "--port", "{port}")},
        ),
        Server(
            "granian",
            "granian",
            "asgi",
            {
                "http": (
                    "{tool}",
                    "--interface",
                    "asgi",
                    "{listen}",
                    "--workers",
                    "1",
                    "--no-ws",
                    "--log-level",
                    "warning",
                    "{app}",
                )
            },
            listen={"unix": ("--uds", "{path}"), "tcp": ("--host", HOST, "--port", "{port}")},
        ),
        Server("monoceros-sync", "monoceros", "wsgi", _gunicorn_style("sync")),
        Server("monoceros-gthread", "monoceros", "wsgi", _gunicorn_style("gthread")),
        Server("monoceros-asgi", "monoceros", "asgi", _gunicorn_style("asgi")),
    )
}
