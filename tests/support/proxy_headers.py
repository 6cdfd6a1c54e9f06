"""PROXY protocol headers as a balancer writes them, and what the server has not read yet of a
loopback connection: for the integration tests of the PROXY protocol (plain and before TLS)."""

from __future__ import annotations

import socket
import struct

__all__ = ["V2_SIGNATURE", "unread", "v1", "v2"]

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src: str, dst: str, sport: int, dport: int) -> bytes:
    """A version 1 line (HAProxy's ``send-proxy``), TCP4 or TCP6 by the source's family."""
    family = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src: str, dst: str, sport: int, dport: int, command: int = 1, tlvs: bytes = b"") -> bytes:
    """A version 2 header (``send-proxy-v2``): PROXY (``command`` 0: LOCAL), TCP over IPv4
    or IPv6 by the source's family, then ``tlvs``."""
    af, fam = (socket.AF_INET6, 0x21) if ":" in src else (socket.AF_INET, 0x11)
    block = socket.inet_pton(af, src) + socket.inet_pton(af, dst) + struct.pack("!HH", sport, dport)
    block += tlvs
    return V2_SIGNATURE + bytes([0x20 | command, fam]) + struct.pack("!H", len(block)) + block


def unread(server_port: int, client_port: int) -> int | None:
    """Bytes the server has not read yet on its side of the loopback connection from
    ``client_port`` (the receive queue in /proc/net/tcp), None when it is not listed."""
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                return int(fields[4].split(":")[1], 16)
    return None
