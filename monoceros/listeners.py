"""Listening sockets: parse ``--bind`` addresses, bind them, or inherit them.

Accepted forms (gunicorn's): ``HOST:PORT``, ``[IPV6]:PORT``, ``HOST`` (port 8000), ``:PORT``
(all IPv4 interfaces), ``unix:/path``, ``unix:@abstract`` (Linux), ``fd://N``; and systemd
socket activation (``LISTEN_FDS``/``LISTEN_PID``). A stale UNIX socket file left by a crashed
server is removed; a live one (something answers on it) is an error.

A scheme in front sets the listener's protocol, and whether it serves TLS: ``http://`` and
``uwsgi://`` plain, ``https://`` and ``suwsgi://`` (nginx's ``uwsgi_pass suwsgi://``) TLS; an
address without one speaks the ``protocol`` setting, with TLS when ``certfile`` is set.
"""

from __future__ import annotations

import _socket
import contextlib
import errno
import functools
import os
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ssl import SSLContext

__all__ = [
    "BARE_SOCKET",
    "BIND_ATTEMPTS",
    "BIND_RETRY_DELAY",
    "BindError",
    "BindRetry",
    "BindSpec",
    "Listener",
    "INHERIT_ENV",
    "SCHEMES",
    "Inherited",
    "accept_nowait",
    "bind_all",
    "connection_maker",
    "inherit_env",
    "inherited_sockets",
    "open_to_every_user",
    "parse_bind",
    "set_defer_accept",
    "systemd_sockets",
]

SD_LISTEN_FDS_START = 3


class BindError(Exception):
    """An address cannot be parsed or bound; the message is one readable line, ``errno`` the
    system's reason when there is one (``EADDRINUSE``: someone else listens there)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.errno = code


#: how many times a bind that finds its address in use is tried at start, a second apart
#: (gunicorn's patience: a restart right after a stop waits for the old processes to let go)
BIND_ATTEMPTS = 5
BIND_RETRY_DELAY = 1.0

BindRetry = Callable[[BindError, int], None]
"""Called before each new attempt with the error and the number of the attempt to come; it
logs, and may raise to give up."""


@dataclass(frozen=True)
class BindSpec:
    """A parsed ``--bind`` value."""

    kind: str  # "tcp" | "unix" | "fd"
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1
    protocol: str | None = None  # None: the global protocol setting decides
    tls: bool | None = None  # None: TLS when certfile is set (no scheme was given)

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


#: bind schemes: the protocol each one speaks, and whether over TLS
SCHEMES: dict[str, tuple[str, bool]] = {
    "http": ("http", False),
    "uwsgi": ("uwsgi", False),
    "https": ("http", True),
    "suwsgi": ("uwsgi", True),
}

#: the scheme of a listener, by protocol and TLS
_SCHEME_OF = {value: scheme for scheme, value in SCHEMES.items()}


def parse_bind(value: str, default_port: int = 8000) -> BindSpec:
    """Parse one ``--bind`` value into a :class:`BindSpec`."""
    text = value.strip()
    protocol = None
    tls = None
    scheme, sep, rest = text.partition("://")
    if sep and scheme in SCHEMES:
        (protocol, tls), text = SCHEMES[scheme], rest
    if not text:
        raise BindError(f"bind: empty address in {value!r}")
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise BindError(f"bind: {value!r} has no socket path")
        return BindSpec("unix", path=path, protocol=protocol, tls=tls)
    if text.startswith("fd://"):
        num = text[5:]
        if not num.isdigit():
            raise BindError(f"bind: {value!r}: fd:// needs a file descriptor number")
        return BindSpec("fd", fd=int(num), protocol=protocol, tls=tls)
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise BindError(f"bind: {value!r}: missing ']' after the IPv6 address")
        host = text[1:end]
        rest = text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise BindError(f"bind: {value!r}: expected ':PORT' after ']'")
        port_text = rest[1:]
    elif text.count(":") > 1:
        raise BindError(f"bind: {value!r}: write IPv6 addresses in brackets, e.g. [::1]:8000")
    else:
        host, _, port_text = text.partition(":")
        if not host:
            host = "0.0.0.0"
    if port_text == "":
        port = default_port
    elif port_text.isdigit() and int(port_text) < 65536:
        port = int(port_text)
    else:
        raise BindError(f"bind: {value!r}: {port_text!r} is not a port number")
    return BindSpec("tcp", host=host, port=port, protocol=protocol, tls=tls)


class Listener:
    """A bound, listening socket, the protocol spoken on it, and its TLS context if any."""

    __slots__ = (
        "is_unix",
        "name",
        "protocol",
        "scheme_tls",
        "sock",
        "spec",
        "tls",
        "unlink_on_close",
    )

    def __init__(
        self, sock: socket.socket, spec: BindSpec, protocol: str, scheme_tls: bool | None = None
    ) -> None:
        self.sock = sock
        self.spec = spec
        self.protocol = protocol
        #: what the bind's scheme said about TLS (None: no scheme; certfile decides)
        self.scheme_tls = scheme_tls
        #: the context its connections are served with (set by :meth:`use_tls`), or None: plain
        self.tls: SSLContext | None = None
        self.is_unix = sock.family == socket.AF_UNIX
        self.unlink_on_close = False
        self.name = self._describe()

    def use_tls(self, context: SSLContext | None) -> None:
        """Serve TLS with ``context`` when the bind asks for it, or gave no scheme and there
        is a context (``certfile`` is set); BindError for a TLS bind without a context."""
        wanted = context is not None if self.scheme_tls is None else self.scheme_tls
        if wanted and context is None:
            raise BindError(
                f"bind: {self.scheme}://{self.name}: a TLS listener needs certfile "
                "(the server's certificate)"
            )
        self.tls = context if wanted else None

    @property
    def scheme(self) -> str:
        """``http``, ``uwsgi``, or with TLS ``https``, ``suwsgi`` (TLS as asked, once set)."""
        tls = self.tls is not None if self.scheme_tls is None else self.scheme_tls
        return _SCHEME_OF.get((self.protocol, tls), self.protocol)

    def _describe(self) -> str:
        if self.is_unix:
            name = self.sock.getsockname()
            if isinstance(name, bytes):
                name = "@" + name[1:].decode("latin-1", "replace")
            return f"unix:{name}"
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def fileno(self) -> int:
        """The socket's file descriptor."""
        return self.sock.fileno()

    def close(self, unlink: bool = False) -> None:
        """Close the socket; remove the UNIX socket file when asked and when we created it."""
        path = self.spec.path if self.is_unix else ""
        self.sock.close()
        if unlink and self.unlink_on_close and path and not path.startswith("@"):
            with contextlib.suppress(OSError):
                os.unlink(path)

    def __repr__(self) -> str:
        return f"<Listener {self.scheme} {self.name}>"

    def __str__(self) -> str:
        """The address as gunicorn prints a listener: ``http://HOST:PORT`` (``https://`` with
        TLS) or ``unix:PATH``."""
        return self.name if self.is_unix else f"{self.scheme}://{self.name}"


#: the C socket class under socket.socket: a connection made of it skips socket.socket's Python
#: __init__ and close() (about 4.7k instructions a connection), which nothing a request does uses
BARE_SOCKET: Callable[..., socket.socket] = _socket.socket  # type: ignore[assignment]


def accept_nowait(sock: socket.socket) -> tuple[int, Any] | None:
    """``(descriptor, peer)`` of the next connection in a non-blocking listener's queue (the
    raw ``sock._accept()``), or None when the queue is empty; other errors are raised.

    Python on purpose, for the compiled acceptor (:mod:`monoceros.asgi.acceptor`): an empty
    queue ends every batch of accepts, and an exception a compiled function catches costs it a
    traceback entry with a frame built for it (about 3.5k instructions), the interpreter's
    about 0.6k.
    """
    try:
        return sock._accept()  # type: ignore[attr-defined]  # CPython, all versions
    except BlockingIOError:
        return None


def connection_maker(listener: Listener, bare: bool = True) -> Callable[[int], socket.socket]:
    """What makes the socket object of a connection accepted on ``listener`` (by the raw
    ``sock._accept()``) from its descriptor: family, type and protocol are plain ints read once
    (``socket.accept()`` turns them into enums for every connection); the class is
    :data:`BARE_SOCKET` for a plain connection when ``bare``, else ``socket.socket`` (a TLS
    connection's: the ssl module wraps it)."""
    sock = listener.sock
    kind = BARE_SOCKET if bare and listener.tls is None else socket.socket
    return functools.partial(kind, int(sock.family), int(sock.type), sock.proto)


def open_to_every_user(listener: Listener) -> bool:
    """Whether every local user can connect to this UNIX listener: an abstract socket (no
    permissions at all), or a socket file others may write to in directories they may enter.
    False for TCP listeners and when in doubt (the file cannot be examined)."""
    if not listener.is_unix:
        return False
    name = listener.sock.getsockname()
    if isinstance(name, bytes) or name.startswith("\0"):
        return True  # abstract: anyone in the network namespace
    if not name:
        return False  # unnamed
    try:
        if not os.stat(name).st_mode & stat.S_IWOTH:
            return False
        folder = os.path.dirname(os.path.abspath(name))
        while True:
            if not os.stat(folder).st_mode & stat.S_IXOTH:
                return False  # a directory others cannot enter keeps them out
            parent = os.path.dirname(folder)
            if parent == folder:
                return True
            folder = parent
    except OSError:
        return False


def _remove_stale_unix_socket(path: str) -> None:
    """Remove a socket file nobody listens on; BindError (one line) for anything else."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:  # a parent is not a directory, or not searchable
        raise BindError(f"bind: unix:{path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise BindError(f"bind: unix:{path}: exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise BindError(f"bind: unix:{path}: cannot check it: {exc.strerror}") from None
        try:
            os.unlink(path)  # nobody listens: a leftover of a crashed server
        except FileNotFoundError:
            pass
        except OSError as err:
            raise BindError(
                f"bind: unix:{path}: cannot remove the stale socket file: {err.strerror}"
            ) from None
        return
    finally:
        probe.close()
    raise BindError(f"bind: unix:{path}: in use by another server", errno.EADDRINUSE)


def set_defer_accept(sock: socket.socket, seconds: int) -> None:
    """Hold new connections in the kernel until their first bytes arrive (0: accept at once).

    With ``TCP_DEFER_ACCEPT`` a worker's ``accept()`` returns a connection whose request can be
    read without waiting, and a client that connects and stays silent never reaches a worker
    before its data or the kernel's give-up. Linux only; elsewhere nothing is done.
    """
    option = getattr(socket, "TCP_DEFER_ACCEPT", None)
    if option is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, option, max(0, seconds))


def _bind_one(
    spec: BindSpec, backlog: int, reuse_port: bool, umask: int, defer_accept: int = 0
) -> socket.socket:
    if spec.kind == "fd":
        try:
            sock = socket.socket(fileno=spec.fd)
        except OSError as exc:
            raise BindError(f"bind: fd://{spec.fd}: {exc.strerror}") from None
        sock.listen(backlog)
        return sock
    if spec.kind == "unix":
        path = spec.path
        if not path.startswith("@"):
            _remove_stale_unix_socket(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(umask)
        try:
            sock.bind("\0" + path[1:] if path.startswith("@") else path)
        except OSError as exc:
            sock.close()
            raise BindError(f"bind: unix:{path}: {exc.strerror}", exc.errno) from None
        finally:
            os.umask(old)
        sock.listen(backlog)
        return sock
    try:
        infos = socket.getaddrinfo(
            spec.host, spec.port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise BindError(f"bind: cannot resolve {spec.host!r}: {exc.strerror}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and spec.host in ("::", ""):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        set_defer_accept(sock, defer_accept)
        sock.bind(addr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"bind: {spec}: {exc.strerror}", exc.errno) from None
    return sock


def _bind_patiently(
    spec: BindSpec,
    backlog: int,
    reuse_port: bool,
    umask: int,
    defer_accept: int,
    retry: BindRetry | None,
) -> socket.socket:
    """:func:`_bind_one`, tried :data:`BIND_ATTEMPTS` times while the address is in use (only
    when ``retry`` is given)."""
    attempt = 1
    while True:
        try:
            return _bind_one(spec, backlog, reuse_port, umask, defer_accept)
        except BindError as exc:
            if retry is None or exc.errno != errno.EADDRINUSE or attempt >= BIND_ATTEMPTS:
                raise
            attempt += 1
            retry(exc, attempt)
            time.sleep(BIND_RETRY_DELAY)


def systemd_sockets(environ: dict[str, str] | None = None) -> list[socket.socket]:
    """Sockets passed by systemd socket activation to this process (and unset its variables)."""
    env = os.environ if environ is None else environ
    if env.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(key, None)
    socks = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        os.set_inheritable(fd, False)
        socks.append(socket.socket(fileno=fd))
    return socks


#: environment variable carrying listeners across a USR2 re-exec: "FD:PROTOCOL:OWNED:BOUND,..."
#: OWNED (1/0): monoceros created the socket file; BOUND (1/0): it came from a --bind address
#: (0: from systemd or fd://, which the bind setting does not override)
INHERIT_ENV = "MONOCEROS_FD"


@dataclass(slots=True, eq=False)
class Inherited:
    """A listening socket handed over by the master that re-executed us (USR2)."""

    sock: socket.socket
    protocol: str
    owned: bool
    bound: bool


def inherited_sockets(environ: dict[str, str] | None = None) -> list[Inherited]:
    """Listeners handed over by the master that re-executed us (USR2)."""
    env = os.environ if environ is None else environ
    value = env.pop(INHERIT_ENV, "")
    out = []
    for item in filter(None, value.split(",")):
        fd_text, protocol, owned, bound = [*item.split(":"), "", "", ""][:4]
        if not fd_text.isdigit():
            continue
        fd = int(fd_text)
        os.set_inheritable(fd, False)
        out.append(
            Inherited(socket.socket(fileno=fd), protocol or "http", owned == "1", bound == "1")
        )
    return out


def inherit_env(listeners: list[Listener]) -> str:
    """The :data:`INHERIT_ENV` value for ``listeners`` (made inheritable for the exec)."""
    for listener in listeners:
        os.set_inheritable(listener.fileno(), True)
    return ",".join(
        f"{lst.fileno()}:{lst.protocol}:{int(lst.unlink_on_close)}:{int(lst.spec.kind != 'fd')}"
        for lst in listeners
    )


def same_address(listener: Listener, spec: BindSpec) -> bool:
    """Whether ``listener`` already listens where ``spec`` asks (so it need not be bound)."""
    if spec.kind == "unix":
        return listener.is_unix and listener.spec.path == spec.path
    if spec.kind == "fd" or listener.is_unix:
        return False
    host, port = listener.sock.getsockname()[:2]
    if port != spec.port:
        return False
    try:
        infos = socket.getaddrinfo(spec.host, spec.port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    return any(info[4][0] == host for info in infos)


def bind_all(
    binds: list[str],
    default_protocol: str,
    backlog: int = 2048,
    reuse_port: bool = False,
    umask: int = 0,
    inherited: list[socket.socket] | None = None,
    upgraded: list[Inherited] | None = None,
    defer_accept: int = 0,
    retry: BindRetry | None = None,
    tls: SSLContext | None = None,
) -> list[Listener]:
    """Bind every address, or adopt sockets from systemd (``inherited``) or from the master that
    re-executed us (``upgraded``: those still in ``binds`` are kept, new addresses are bound,
    the others are closed); close what was opened on failure. With ``retry``, an address in
    use is tried again, a second apart, :data:`BIND_ATTEMPTS` times in all. ``tls`` is the
    context of the listeners that serve TLS (see :meth:`Listener.use_tls`)."""
    for value in binds:  # before anything is bound: a TLS bind without certfile
        spec = parse_bind(value)
        if spec.tls and tls is None:
            raise BindError(
                f"bind: {value!r}: a TLS listener needs certfile (the server's certificate)"
            )
    listeners = _bind_all(
        binds,
        default_protocol,
        backlog,
        reuse_port,
        umask,
        inherited,
        upgraded,
        defer_accept,
        retry,
    )
    for listener in listeners:
        listener.use_tls(tls)
    return listeners


def _bind_all(
    binds: list[str],
    default_protocol: str,
    backlog: int,
    reuse_port: bool,
    umask: int,
    inherited: list[socket.socket] | None,
    upgraded: list[Inherited] | None,
    defer_accept: int,
    retry: BindRetry | None,
) -> list[Listener]:
    listeners: list[Listener] = []
    adopted: list[Listener] = []
    try:
        for item in upgraded or ():
            sock = item.sock
            name = sock.getsockname() if sock.family == socket.AF_UNIX else None
            if isinstance(name, str) and name:
                listener = Listener(sock, BindSpec("unix", path=name), item.protocol)
                listener.unlink_on_close = item.owned
            else:
                listener = Listener(sock, BindSpec("fd", fd=sock.fileno()), item.protocol)
            adopted.append(listener)
        if adopted and (not binds or not all(item.bound for item in upgraded or ())):
            return adopted  # systemd or fd:// sockets: the bind setting does not apply
        if inherited and not adopted:
            for sock in inherited:
                spec = BindSpec("fd", fd=sock.fileno())
                listeners.append(Listener(sock, spec, default_protocol))
            return listeners
        for value in binds:
            spec = parse_bind(value)
            match = next((lst for lst in adopted if same_address(lst, spec)), None)
            if match is not None:
                adopted.remove(match)
                if spec.protocol:
                    match.protocol = spec.protocol
                match.scheme_tls = spec.tls
                listeners.append(match)
                continue
            sock = _bind_patiently(spec, backlog, reuse_port, umask, defer_accept, retry)
            listener = Listener(sock, spec, spec.protocol or default_protocol, spec.tls)
            listener.unlink_on_close = spec.kind == "unix"
            listeners.append(listener)
        for leftover in adopted:  # no longer configured: the old master may still use it
            leftover.close(unlink=False)
    except BaseException:
        for listener in listeners:
            listener.close(unlink=True)
        raise
    return listeners
