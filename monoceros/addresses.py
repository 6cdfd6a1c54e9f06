"""Matching peer addresses against lists of IPs and CIDR networks (allow-lists)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TypeAlias

__all__ = ["AddressMatcher", "PeerAddress", "peer_label"]

PeerAddress: TypeAlias = "tuple[str, int] | tuple[str, int, int, int] | str | bytes"
"""A socket address as ``accept()`` and ``getsockname()`` give it: ``(host, port)`` for IPv4,
``(host, port, flowinfo, scope_id)`` for IPv6, a path for a UNIX socket (``""`` for an unnamed
peer, bytes for an abstract-namespace name)."""


def peer_label(peer: PeerAddress | None) -> str:
    """A connection's peer for log lines: its IP address, or "a local peer" (a UNIX socket's,
    or one that reset before its address was read)."""
    if isinstance(peer, tuple):
        return str(peer[0])
    return "a local peer"


class AddressMatcher:
    """``ip in matcher``: exact IPs, CIDR networks, or ``*`` for everything.

    IPv4-mapped IPv6 peers (``::ffff:127.0.0.1``, what a ``[::]`` listener reports for an IPv4
    client) match their IPv4 entries. Exact addresses are a set lookup; networks are tried only
    when the exact lookup misses, and every answer is cached.
    """

    __slots__ = ("_cache", "_exact", "_networks", "allow_all", "entries")

    def __init__(self, entries: Iterable[str]) -> None:
        self.entries = [e.strip() for e in entries if e and e.strip()]
        self.allow_all = "*" in self.entries
        self._exact: set[str] = set()
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self._cache: dict[str, bool] = {}
        for entry in self.entries:
            if entry == "*":
                continue
            try:
                if "/" in entry:
                    self._networks.append(ipaddress.ip_network(entry, strict=False))
                else:
                    self._exact.add(ipaddress.ip_address(entry).compressed)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None

    def __contains__(self, ip: object) -> bool:
        if self.allow_all:
            return True
        if not isinstance(ip, str):
            return False
        if ip in self._exact:
            return True
        cached = self._cache.get(ip)
        if cached is None:
            cached = self._match(ip)
            if len(self._cache) < 4096:
                self._cache[ip] = cached
        return cached

    def _match(self, ip: str) -> bool:
        try:
            addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
                ip.split("%", 1)[0]
            )
        except ValueError:
            return False
        candidates = [addr]
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            candidates.append(addr.ipv4_mapped)
        for a in candidates:
            if a.compressed in self._exact:
                return True
            for net in self._networks:
                if a.version == net.version and a in net:
                    return True
        return False

    def __repr__(self) -> str:
        return f"AddressMatcher({self.entries!r})"
