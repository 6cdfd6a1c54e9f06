"""The PROXY protocol, versions 1 and 2 (HAProxy's ``proxy-protocol.txt``): the header a TCP proxy
(HAProxy's ``send-proxy`` and ``send-proxy-v2``, a cloud load balancer, stunnel) puts before the
first byte of a connection to say whose connection it relays.

Sans-IO: :meth:`ProxyHeaderReader.parse` takes the bytes received so far and answers
:data:`~.events.NEED_DATA`, a :class:`ProxyHeader` (its ``size`` says where the protocol's own
bytes begin), or :data:`NO_HEADER` (``auto`` only: the connection starts without a header and is
served as it is); anything else raises :class:`~.errors.InvalidProxyHeader`. What is checked:

- version 1: ``PROXY TCP4|TCP6 SRC DST SPORT DPORT`` with single spaces, canonical addresses of
  the family named (IPv4 without leading zeros), ports 0-65535 without leading zeros, the line
  ended by CRLF within 107 bytes; a lone CR or LF is refused. ``PROXY UNKNOWN`` and anything up
  to the CRLF keeps the connection's own addresses.
- version 2: the 12-byte signature, version 2, command LOCAL or PROXY, family UNSPEC, INET, INET6
  or UNIX, transport UNSPEC, STREAM or DGRAM; other values are refused. The length field is
  always skipped whole (TLVs are ignored); an address block shorter than its family needs is
  refused. LOCAL (a proxy's own health check), UNSPEC, UNIX and DGRAM keep the connection's own
  addresses (the spec's fallback): only TCP over IPv4 or IPv6 names a client to serve.

A byte that can never become a valid header is refused as soon as it arrives, so a wrong peer
costs no wait for the rest.
"""

from __future__ import annotations

import enum
import re
import socket
import struct
from collections.abc import Container
from typing import Final, Literal, NamedTuple

from .errors import InvalidProxyHeader
from .events import NEED_DATA, _Sentinel

__all__ = [
    "MODES",
    "NO_HEADER",
    "V1_MAX",
    "V2_SIGNATURE",
    "InvalidProxyHeader",
    "ProxyHeader",
    "ProxyHeaderReader",
]

MODES: Final = ("off", "v1", "v2", "auto")
"""The values of the ``proxy_protocol`` setting."""

V1_MAX: Final = 107
"""The longest version 1 line, CRLF included (``PROXY UNKNOWN`` with two IPv6 addresses)."""

V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
"""The 12 bytes every version 2 header starts with."""

_V1_PREFIX: Final = b"PROXY "
_V1_PROTOCOLS: Final = (b"TCP4", b"TCP6", b"UNKNOWN")
#: the bytes of a TCP4/TCP6 line after the protocol: addresses, ports, single spaces
_V1_TCP_BYTES: Final = frozenset(b"0123456789abcdefABCDEF.: ")
_IPV4: Final = re.compile(rb"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                          rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")  # fmt: skip
_PORT: Final = re.compile(rb"0|[1-9][0-9]{0,4}")
#: bytes of the address block each version 2 family needs: UNSPEC, INET, INET6, UNIX
_V2_BLOCK: Final = (0, 12, 36, 216)
_AF_INET: Final = int(socket.AF_INET)
_AF_INET6: Final = int(socket.AF_INET6)
_PORTS: Final = struct.Struct("!HH")


def _shown(data: bytes) -> str:
    """Bytes of a header for a reason: quoted, as latin-1 text (the log escapes the rest)."""
    return "'" + data.decode("latin-1") + "'"


class _NoHeader(enum.Enum):
    """Type of :data:`NO_HEADER` (an enum member, so type checkers narrow ``is`` tests)."""

    NO_HEADER = "NO_HEADER"

    def __repr__(self) -> str:
        """Show the bare name."""
        return self.value


NO_HEADER: Final = _NoHeader.NO_HEADER
"""``auto`` mode: the connection does not start with a PROXY header; serve it as it is."""


class ProxyHeader(NamedTuple):
    """A valid PROXY header."""

    version: int
    """1 (text) or 2 (binary)."""
    family: str
    """``TCP4`` or ``TCP6``; else what the connection's own addresses stand for: ``UNKNOWN``
    (version 1), ``LOCAL``, ``UNSPEC``, ``UNIX``, ``UDP4`` or ``UDP6`` (version 2)."""
    source: tuple[str, int] | None
    """The client's address and port; None: keep the connection's own peer."""
    destination: tuple[str, int] | None
    """The address and port the client connected to at the proxy (None with ``source``)."""
    size: int
    """Bytes the header takes: the protocol's own bytes start after them."""


_Need = Literal[_Sentinel.NEED_DATA]
Parsed = ProxyHeader | _Need | Literal[_NoHeader.NO_HEADER]
"""What :meth:`ProxyHeaderReader.parse` answers."""


class ProxyHeaderReader:
    """One listener's PROXY protocol policy: which versions it reads, whether a header is
    required, and who may send one (``proxy_allow_ips``).

    ``v1`` and ``v2`` require a header of that version on every connection (the spec's rule:
    never guess). ``auto`` reads either version and serves a connection without a header as it
    is, as gunicorn does; a header is still refused from a peer outside the allow-list, so a
    client cannot claim another address. A peer given as None (a UNIX socket's) is allowed.
    """

    __slots__ = ("_allowed", "_v1", "_v2", "mode", "required")

    def __init__(self, mode: str, allowed: Container[str]) -> None:
        if mode not in MODES[1:]:
            raise ValueError(f"PROXY protocol mode {mode!r} is not one of v1, v2, auto")
        self.mode = mode
        self.required = mode != "auto"
        self._v1 = mode != "v2"
        self._v2 = mode != "v1"
        self._allowed = allowed

    def allows(self, ip: str | None) -> bool:
        """Whether a peer at ``ip`` may send a PROXY header (None: a UNIX socket peer)."""
        return ip is None or ip in self._allowed

    def refused(self, ip: str | None) -> str | None:
        """Why a new connection from ``ip`` can never be served, or None: in ``v1`` and ``v2``
        mode every connection needs a header, and only an allowed peer may send one."""
        if self.required and not self.allows(ip):
            return f"{ip} is not in proxy_allow_ips (--proxy-protocol {self.mode})"
        return None

    def parse(self, data: bytes, ip: str | None) -> Parsed:
        """Read the header at the start of ``data`` (all bytes received so far) from ``ip``."""
        version = self._version(data)
        if version is NEED_DATA:
            return NEED_DATA
        if version == 0:
            if self.required:
                raise InvalidProxyHeader(
                    f"no PROXY {self.mode} header: the connection starts with {_shown(data[:16])}"
                )
            return NO_HEADER
        if not self.allows(ip):
            raise InvalidProxyHeader(f"a PROXY header from {ip}, which is not in proxy_allow_ips")
        return _parse_v1(data) if version == 1 else _parse_v2(data)

    def parse_peeked(self, held: bytes, peeked: bytes, ip: str | None) -> tuple[Parsed, int]:
        """:meth:`parse` for a header that must be read to its last byte and no further (a TLS
        handshake follows it, and its bytes are not ours to read): ``held`` is what was taken
        from the socket so far (all of it header), ``peeked`` what is there now, looked at
        without taking it. Answers what :meth:`parse` answers for the two together, and how
        many of the peeked bytes to take: all of them while the header is incomplete, up to its
        end once it is whole, none when there is no header (``auto``). A connection that began
        like a header and turned out not to be one is refused: the bytes taken are gone."""
        data = held + peeked if held else peeked
        header = self.parse(data, ip)
        if header is NEED_DATA:
            return header, len(peeked)
        if header is NO_HEADER:
            if held:
                raise InvalidProxyHeader(
                    f"the connection starts like a PROXY header but is not one: {_shown(data[:16])}"
                )
            return header, 0
        return header, header.size - len(held)

    def _version(self, data: bytes) -> int | _Need:
        """1 or 2 for the start of a header this reader reads, 0 for none, NEED_DATA for a
        beginning too short to tell."""
        if self._v2 and data[:12] == V2_SIGNATURE[: len(data)]:
            return 2 if len(data) >= 12 else NEED_DATA
        if self._v1 and data[:6] == _V1_PREFIX[: len(data)]:
            return 1 if len(data) >= 6 else NEED_DATA
        return 0


# --- version 1 ----------------------------------------------------------------------------------


def _parse_v1(data: bytes) -> ProxyHeader | _Need:
    end = data.find(b"\r\n", 6, V1_MAX)
    if end < 0 and data.endswith(b"\r") and len(data) < V1_MAX:
        _parse_v1(data + b"\n")  # refuse now what the line cannot be even once its LF comes
        return NEED_DATA
    line = data[6:end] if end >= 0 else data[6:V1_MAX]
    if 0x0D in line or 0x0A in line:  # CR, LF (ints: see http.decoded_path)
        raise InvalidProxyHeader("a PROXY v1 line with a lone CR or LF (it must end with CRLF)")
    protocol, space, rest = line.partition(b" ")
    if space or end >= 0:  # the protocol is complete
        if protocol == b"UNKNOWN":
            if end >= 0:  # anything up to the CRLF is ignored: the connection's own addresses
                return ProxyHeader(1, "UNKNOWN", None, None, end + 2)
        elif protocol not in _V1_PROTOCOLS:
            raise InvalidProxyHeader(
                f"PROXY v1 protocol {_shown(protocol[:8])} is not TCP4, TCP6 or UNKNOWN"
            )
        elif end < 0 and not _V1_TCP_BYTES.issuperset(rest):  # (a whole line: checked below)
            family = protocol.decode()
            raise InvalidProxyHeader(f"PROXY v1 {family} line with {_shown(rest[:48])}")
    elif not any(name.startswith(protocol) for name in _V1_PROTOCOLS):
        raise InvalidProxyHeader(
            f"PROXY v1 protocol {_shown(protocol[:8])} is not TCP4, TCP6 or UNKNOWN"
        )
    if end < 0:
        if len(data) >= V1_MAX:
            raise InvalidProxyHeader(f"a PROXY v1 line without CRLF in its first {V1_MAX} bytes")
        return NEED_DATA
    fields = rest.split(b" ")
    if len(fields) != 4:
        raise InvalidProxyHeader(
            f"a PROXY v1 {protocol.decode()} line needs SRC DST SPORT DPORT after the protocol, "
            f"separated by single spaces: {_shown(rest)}"
        )
    family = protocol.decode()
    source = (_v1_address(family, fields[0]), _v1_port(fields[2]))
    destination = (_v1_address(family, fields[1]), _v1_port(fields[3]))
    return ProxyHeader(1, family, source, destination, end + 2)


def _v1_address(family: str, text: bytes) -> str:
    if family == "TCP4":
        if _IPV4.fullmatch(text):
            return text.decode()
    else:
        try:
            return socket.inet_ntop(
                socket.AF_INET6, socket.inet_pton(socket.AF_INET6, text.decode())
            )
        except (OSError, ValueError):
            pass
    raise InvalidProxyHeader(f"PROXY v1 {family} line with the address {_shown(text)}")


def _v1_port(text: bytes) -> int:
    if _PORT.fullmatch(text) and int(text) <= 65535:
        return int(text)
    raise InvalidProxyHeader(f"PROXY v1 line with the port {_shown(text)}")


# --- version 2 ----------------------------------------------------------------------------------


def _parse_v2(data: bytes) -> ProxyHeader | _Need:
    if len(data) > 12:
        version, command = data[12] >> 4, data[12] & 0x0F
        if version != 2:
            raise InvalidProxyHeader(f"PROXY v2 signature with version {version}")
        if command > 1:
            raise InvalidProxyHeader(f"PROXY v2 command {command} (0 LOCAL and 1 PROXY exist)")
    if len(data) > 13:
        family, transport = data[13] >> 4, data[13] & 0x0F
        if family > 3:
            raise InvalidProxyHeader(f"PROXY v2 address family {family} (0 to 3 exist)")
        if transport > 2:
            raise InvalidProxyHeader(f"PROXY v2 transport protocol {transport} (0 to 2 exist)")
    if len(data) < 16:
        return NEED_DATA
    command, family, transport = data[12] & 0x0F, data[13] >> 4, data[13] & 0x0F
    length = int.from_bytes(data[14:16], "big")
    size = 16 + length
    if len(data) < size:
        return NEED_DATA
    if command == 0:  # LOCAL: the proxy's own connection, addresses ignored whatever they say
        return ProxyHeader(2, "LOCAL", None, None, size)
    if family == 0 or transport == 0:
        return ProxyHeader(2, "UNSPEC", None, None, size)
    need = _V2_BLOCK[family]
    if length < need:
        name = ("", "INET", "INET6", "UNIX")[family]
        raise InvalidProxyHeader(f"PROXY v2 {name} address block of {length} bytes, {need} needed")
    if family == 3:
        return ProxyHeader(2, "UNIX", None, None, size)
    if transport == 2:
        return ProxyHeader(2, "UDP4" if family == 1 else "UDP6", None, None, size)
    af, width = (_AF_INET, 4) if family == 1 else (_AF_INET6, 16)
    source = socket.inet_ntop(af, data[16 : 16 + width])
    destination = socket.inet_ntop(af, data[16 + width : 16 + 2 * width])
    sport, dport = _PORTS.unpack_from(data, 16 + 2 * width)
    family_name = "TCP4" if family == 1 else "TCP6"
    return ProxyHeader(2, family_name, (source, sport), (destination, dport), size)
