"""The PROXY protocol header parser, against the facts of HAProxy's proxy-protocol.txt: valid
headers of both versions whole and cut at every byte, every way the spec says to refuse one, the
modes and the allow-list; and with hypothesis, generated headers round-trip in any cut and random
bytes only ever give NEED_DATA, a header, NO_HEADER or InvalidProxyHeader."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monoceros.protocols.errors import InvalidProxyHeader, ProtocolError
from monoceros.protocols.events import NEED_DATA
from monoceros.protocols.proxy_protocol import (
    NO_HEADER,
    V1_MAX,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderReader,
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ANYONE = ProxyHeaderReader("auto", {"127.0.0.1", "::1"})
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def v2(command: int, family: int, transport: int, block: bytes, version: int = 2) -> bytes:
    """A version 2 header: signature, version/command, family/transport, length, block."""
    head = bytes([version << 4 | command, family << 4 | transport])
    return V2_SIGNATURE + head + struct.pack("!H", len(block)) + block


def inet(src: str, dst: str, sport: int, dport: int) -> bytes:
    """The address block of TCP/UDP over IPv4 or IPv6."""
    af = socket.AF_INET6 if ":" in src else socket.AF_INET
    return socket.inet_pton(af, src) + socket.inet_pton(af, dst) + struct.pack("!HH", sport, dport)


def parse_all_cuts(reader: ProxyHeaderReader, wire: bytes, ip: str | None) -> object:
    """Parse ``wire`` cut after every byte: every cut before the header's end needs more data;
    return what the whole gives (the same for every longer cut)."""
    whole = reader.parse(wire, ip)
    end = whole.size if isinstance(whole, ProxyHeader) else len(wire)
    for cut in range(end):
        assert reader.parse(wire[:cut], ip) is NEED_DATA, (wire, cut)
    for cut in range(end, len(wire) + 1):
        assert reader.parse(wire[:cut], ip) == whole
    return whole


# --- version 1 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "family", "source", "destination"),
    [
        (b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443", "TCP4", ("192.168.0.1", 56324),
         ("192.168.0.11", 443)),
        (b"PROXY TCP4 255.255.255.255 0.0.0.0 65535 0", "TCP4", ("255.255.255.255", 65535),
         ("0.0.0.0", 0)),
        (b"PROXY TCP6 2001:db8::1 ::1 1 80", "TCP6", ("2001:db8::1", 1), ("::1", 80)),
        (b"PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::ffff:10.0.0.1 1 80", "TCP6", ("2001:db8::1", 1),
         ("::ffff:10.0.0.1", 80)),
    ],
)  # fmt: skip
def test_v1_tcp(
    line: bytes, family: str, source: tuple[str, int], destination: tuple[str, int]
) -> None:
    wire = line + b"\r\n" + REQUEST
    header = parse_all_cuts(ANYONE, wire, "127.0.0.1")
    assert header == ProxyHeader(1, family, source, destination, len(line) + 2)


def test_v1_longest_lines_are_read() -> None:
    ffff = ":".join(["ffff"] * 8)
    tcp6 = f"PROXY TCP6 {ffff} {ffff} 65535 65535\r\n".encode()
    unknown = f"PROXY UNKNOWN {ffff} {ffff} 65535 65535\r\n".encode()
    assert (len(tcp6), len(unknown)) == (104, V1_MAX)
    assert parse_all_cuts(ANYONE, tcp6 + REQUEST, None).source == (
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        65535,
    )
    assert parse_all_cuts(ANYONE, unknown + REQUEST, None) == ProxyHeader(
        1, "UNKNOWN", None, None, V1_MAX
    )


def test_v1_unknown_keeps_the_peer_whatever_follows_it() -> None:
    for line in (b"PROXY UNKNOWN", b"PROXY UNKNOWN \xff\x00 anything at all"):
        header = parse_all_cuts(ANYONE, line + b"\r\n" + REQUEST, "127.0.0.1")
        assert header == ProxyHeader(1, "UNKNOWN", None, None, len(line) + 2)


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n",  # leading zero (octal confusion)
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
        b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",  # two spaces
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        b"PROXY TCP4 ::1 ::1 1 2\r\n",  # the family and the addresses disagree
        b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP6 fe80::1%1 ::1 1 2\r\n",
        b"PROXY TCP6 1::2::3 ::1 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",  # a lone LF
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\r\n",  # a lone CR
        b"PROXY UNKNOWN\n",
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY \r\n",
        b"PROXY UNKNOWN " + b"x" * 93 + b"\r\n",  # 108 bytes: one too many
    ],
)
def test_v1_refused(line: bytes) -> None:
    with pytest.raises(InvalidProxyHeader) as info:
        ANYONE.parse(line + REQUEST, "127.0.0.1")
    assert info.value.reason and isinstance(info.value, ProtocolError)


@pytest.mark.parametrize(
    "start",
    [
        b"PROXY X",
        b"PROXY TCP4 1.2.3.4 x",
        b"PROXY TCP4 1.2.3.4\n",
        b"PROXY UNKNOWN\rX",
        b"PROXY T\r",
    ],
)
def test_v1_refused_as_soon_as_it_cannot_become_a_header(start: bytes) -> None:
    with pytest.raises(InvalidProxyHeader):
        ANYONE.parse(start, None)


def test_v1_without_crlf_in_107_bytes() -> None:
    start = b"PROXY UNKNOWN " + b"x" * 80
    assert ANYONE.parse(start, None) is NEED_DATA
    with pytest.raises(InvalidProxyHeader, match="without CRLF in its first 107 bytes"):
        ANYONE.parse(start + b"x" * 20, None)


# --- version 2 ----------------------------------------------------------------------------------


def test_v2_tcp4() -> None:
    wire = v2(1, 1, 1, inet("192.0.2.1", "198.51.100.7", 40000, 443)) + REQUEST
    header = parse_all_cuts(ANYONE, wire, "::1")
    assert header == ProxyHeader(2, "TCP4", ("192.0.2.1", 40000), ("198.51.100.7", 443), 28)


def test_v2_tcp6_with_tlvs_skipped() -> None:
    tlvs = b"\x01\x00\x02h2" + b"\x04\x00\x00" + b"\x20\x00\x05\x01\x00\x00\x00\x00"
    wire = v2(1, 2, 1, inet("2001:db8::7", "2001:db8::1", 1, 8443) + tlvs) + REQUEST
    header = parse_all_cuts(ANYONE, wire, "127.0.0.1")
    assert header == ProxyHeader(2, "TCP6", ("2001:db8::7", 1), ("2001:db8::1", 8443), 52 + 16)
    assert wire[header.size :] == REQUEST


@pytest.mark.parametrize(
    ("command", "family", "transport", "block", "label"),
    [
        (0, 0, 0, b"", "LOCAL"),
        (0, 1, 1, inet("1.2.3.4", "5.6.7.8", 1, 2), "LOCAL"),  # LOCAL ignores the block
        (0, 1, 1, b"\x00", "LOCAL"),  # ...even one too short for its family
        (1, 0, 0, b"", "UNSPEC"),
        (1, 0, 1, b"\x00" * 3, "UNSPEC"),
        (1, 1, 0, inet("1.2.3.4", "5.6.7.8", 1, 2), "UNSPEC"),
        (1, 3, 1, b"/run/client.sock".ljust(108, b"\x00") + b"\x00" * 108, "UNIX"),
        (1, 1, 2, inet("1.2.3.4", "5.6.7.8", 1, 2), "UDP4"),
        (1, 2, 2, inet("::1", "::2", 1, 2), "UDP6"),
    ],
)
def test_v2_headers_that_keep_the_peer(
    command: int, family: int, transport: int, block: bytes, label: str
) -> None:
    wire = v2(command, family, transport, block)
    header = parse_all_cuts(ANYONE, wire + REQUEST, None)
    assert header == ProxyHeader(2, label, None, None, len(wire))


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (v2(1, 1, 1, inet("1.2.3.4", "5.6.7.8", 1, 2), version=1), "version 1"),
        (v2(1, 1, 1, inet("1.2.3.4", "5.6.7.8", 1, 2), version=3), "version 3"),
        (v2(2, 1, 1, inet("1.2.3.4", "5.6.7.8", 1, 2)), "command 2"),
        (v2(15, 1, 1, inet("1.2.3.4", "5.6.7.8", 1, 2)), "command 15"),
        (v2(1, 4, 1, b"\x00" * 12), "family 4"),
        (v2(1, 1, 3, b"\x00" * 12), "protocol 3"),
        (v2(1, 1, 1, b"\x00" * 11), "INET address block of 11 bytes, 12 needed"),
        (v2(1, 2, 1, b"\x00" * 35), "INET6 address block of 35 bytes, 36 needed"),
        (v2(1, 3, 1, b"\x00" * 215), "UNIX address block of 215 bytes, 216 needed"),
    ],
)
def test_v2_refused(wire: bytes, reason: str) -> None:
    with pytest.raises(InvalidProxyHeader, match=reason):
        ANYONE.parse(wire + REQUEST, "127.0.0.1")


def test_v2_refused_at_the_first_byte_that_is_wrong() -> None:
    for wire, reason in [
        (v2(7, 1, 1, inet("1.2.3.4", "5.6.7.8", 1, 2)), "command 7"),
        (v2(1, 1, 1, b"", version=1), "version 1"),
        (v2(1, 5, 1, b""), "family 5"),
        (v2(1, 1, 9, b""), "protocol 9"),
    ]:
        cut = 13 if "command" in reason or "version" in reason else 14
        assert ANYONE.parse(wire[: cut - 1], None) is NEED_DATA
        with pytest.raises(InvalidProxyHeader, match=reason):
            ANYONE.parse(wire[:cut], None)


def test_v2_longest_length_is_waited_for() -> None:
    wire = v2(1, 1, 1, inet("1.2.3.4", "5.6.7.8", 1, 2) + b"\x04" + b"\xff\xff" + b"\x00" * 65520)
    assert len(wire) == 16 + 65535
    assert ANYONE.parse(wire[:-1], None) is NEED_DATA
    assert ANYONE.parse(wire, None).source == ("1.2.3.4", 1)


# --- modes and the allow-list -------------------------------------------------------------------

V1_WIRE = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n" + REQUEST
V2_WIRE = v2(1, 1, 1, inet("1.2.3.4", "5.6.7.8", 1, 2)) + REQUEST


def test_modes_read_their_versions() -> None:
    v1, v2_only, auto = (ProxyHeaderReader(m, {"127.0.0.1"}) for m in ("v1", "v2", "auto"))
    assert v1.parse(V1_WIRE, None).version == 1
    assert v2_only.parse(V2_WIRE, None).version == 2
    assert auto.parse(V1_WIRE, None).version == 1
    assert auto.parse(V2_WIRE, None).version == 2
    with pytest.raises(
        InvalidProxyHeader,
        match="no PROXY v1 header: the connection starts with '\r\n\r\n\x00\r\nQUIT\n",
    ):
        v1.parse(V2_WIRE, None)
    with pytest.raises(
        InvalidProxyHeader,
        match=r"no PROXY v2 header: the connection starts with 'PROXY TCP4 1\.2\.3",
    ):
        v2_only.parse(V1_WIRE, None)


@pytest.mark.parametrize(
    "start", [b"G", b"GET / HTTP/1.1\r\n", b"\x00\x10", b"\r\n\r\n\x01", b"PROXYX"]
)
def test_a_connection_without_a_header(start: bytes) -> None:
    assert ProxyHeaderReader("auto", {"127.0.0.1"}).parse(start, "10.0.0.1") is NO_HEADER
    for mode in ("v1", "v2"):
        with pytest.raises(InvalidProxyHeader, match=f"no PROXY {mode} header"):
            ProxyHeaderReader(mode, {"127.0.0.1"}).parse(start, "127.0.0.1")


def test_nothing_yet_needs_data() -> None:
    for mode in ("v1", "v2", "auto"):
        assert ProxyHeaderReader(mode, ()).parse(b"", None) is NEED_DATA
    assert ANYONE.parse(b"\r\n\r\n\x00\r\nQUI", None) is NEED_DATA
    assert ANYONE.parse(b"PROXY", None) is NEED_DATA


def test_allow_list() -> None:
    strict = ProxyHeaderReader("v2", {"10.0.0.0/8"} | {"127.0.0.1"})
    assert strict.refused("127.0.0.1") is None and strict.refused(None) is None
    assert (
        strict.refused("192.0.2.9") == "192.0.2.9 is not in proxy_allow_ips (--proxy-protocol v2)"
    )
    auto = ProxyHeaderReader("auto", {"127.0.0.1"})
    assert auto.refused("192.0.2.9") is None  # it may come without a header
    assert auto.parse(REQUEST, "192.0.2.9") is NO_HEADER
    for wire in (V1_WIRE, V2_WIRE, b"PROXY ", V2_SIGNATURE):  # refused once it is recognized
        with pytest.raises(InvalidProxyHeader, match=r"from 192\.0\.2\.9, which is not in"):
            auto.parse(wire, "192.0.2.9")
    assert auto.parse(V1_WIRE, None).source == ("1.2.3.4", 1)


def test_unknown_mode() -> None:
    for mode in ("off", "v3", "AUTO"):
        with pytest.raises(ValueError, match="not one of v1, v2, auto"):
            ProxyHeaderReader(mode, ())


# --- hypothesis ---------------------------------------------------------------------------------

IPV4 = st.ip_addresses(v=4).map(str)
IPV6 = st.ip_addresses(v=6).map(lambda a: socket.inet_ntop(socket.AF_INET6, a.packed))
PORTS = st.integers(0, 65535)


@st.composite
def headers(draw: st.DrawFn) -> tuple[bytes, ProxyHeader]:
    """A valid header of either version, TCP over IPv4 or IPv6, and what it must parse to."""
    six = draw(st.booleans())
    src, dst = draw(IPV6 if six else IPV4), draw(IPV6 if six else IPV4)
    sport, dport = draw(PORTS), draw(PORTS)
    family = "TCP6" if six else "TCP4"
    if draw(st.booleans()):
        text = draw(st.sampled_from([src, ipaddress.ip_address(src).exploded]))
        wire = f"PROXY {family} {text} {dst} {sport} {dport}\r\n".encode()
        return wire, ProxyHeader(1, family, (src, sport), (dst, dport), len(wire))
    tlvs = draw(st.binary(max_size=64))
    wire = v2(1, 2 if six else 1, 1, inet(src, dst, sport, dport) + tlvs)
    return wire, ProxyHeader(2, family, (src, sport), (dst, dport), len(wire))


@SETTINGS
@given(headers(), st.binary(max_size=64), st.data())
def test_generated_headers_round_trip_in_any_cut(
    case: tuple[bytes, ProxyHeader], rest: bytes, data: st.DataObject
) -> None:
    wire, expected = case
    cut = data.draw(st.integers(0, len(wire)))
    reader = ProxyHeaderReader(data.draw(st.sampled_from(["auto", f"v{expected.version}"])), ())
    got = reader.parse(wire[:cut], None)
    assert got == expected if cut == len(wire) else got is NEED_DATA
    assert reader.parse(wire + rest, None) == expected


@SETTINGS
@given(
    st.sampled_from(["v1", "v2", "auto"]),
    st.one_of(
        st.binary(max_size=200),
        st.binary(max_size=120).map(lambda b: b"PROXY " + b),
        st.binary(max_size=120).map(lambda b: V2_SIGNATURE + b),
        st.binary(max_size=60).map(lambda b: b"PROXY TCP4 " + b),
        st.binary(max_size=60).map(lambda b: b"PROXY TCP6 " + b),
    ),
    st.sampled_from([None, "127.0.0.1", "10.1.2.3"]),
)
def test_random_bytes_never_crash(mode: str, data: bytes, ip: str | None) -> None:
    reader = ProxyHeaderReader(mode, {"127.0.0.1"})
    try:
        result = reader.parse(data, ip)
    except InvalidProxyHeader as exc:
        assert exc.reason
        return
    assert result is NEED_DATA or result is NO_HEADER or isinstance(result, ProxyHeader)
    if isinstance(result, ProxyHeader):
        assert 15 <= result.size <= len(data)
        assert (result.source is None) == (result.destination is None)
