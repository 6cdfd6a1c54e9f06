"""Allow-lists: exact IPs, CIDR networks, '*', IPv4-mapped IPv6."""

from __future__ import annotations

import pytest

from monoceros.addresses import AddressMatcher


def test_exact_and_networks() -> None:
    m = AddressMatcher(["127.0.0.1", "::1", "10.0.0.0/8", "fd00::/8"])
    assert "127.0.0.1" in m and "::1" in m and "10.20.30.40" in m and "fd12::1" in m
    assert "127.0.0.2" not in m and "11.0.0.1" not in m and "fe80::1" not in m


def test_ipv4_mapped_ipv6_matches_ipv4_entries() -> None:
    m = AddressMatcher(["127.0.0.1", "192.168.0.0/16"])
    assert "::ffff:127.0.0.1" in m and "::ffff:192.168.1.1" in m
    assert "::ffff:127.0.0.2" not in m


def test_star_and_garbage() -> None:
    assert "1.2.3.4" in AddressMatcher(["*"])
    assert "not-an-ip" not in AddressMatcher(["127.0.0.1"])
    with pytest.raises(ValueError, match="not an IP"):
        AddressMatcher(["10.0.0.300"])
