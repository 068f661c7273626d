"""The device's hash engine (emulator/net/rss.py): the Toeplitz hash, hash type selection
(virtio-v1.2 §5.1.6.4.3 and its subsections §5.1.6.4.3.2 IPv4, §5.1.6.4.3.3 IPv6
without and §5.1.6.4.3.4 IPv6 with extension headers), the report values (§5.1.6.4.4)
and the RSS queue choice (§5.1.6.5.7.3).

Golden values: Microsoft's RSS verification suite, "Verifying the RSS Hash Calculation"
(https://learn.microsoft.com/windows-hardware/drivers/network/verifying-the-rss-hash-calculation),
the same table as the Intel 82599 datasheet §7.1.2.8.3 "RSS Verification Suite"; the
numbers were read from DPDK's copy of it, app/test/test_thash.c (``v4_tbl``/``v6_tbl``,
"From 82599 Datasheet 7.1.2.8.3 RSS Verification Suite"), with the 40-byte key
6d5a56da...01fa. Every row is checked on real Ethernet frames built with ``stack.wire``.
Where no published value exists (a hash over a constructed extension-header layout), the
expected bytes hashed are asserted exactly and the value is checked against
:func:`ref_toeplitz`, a bit-by-bit transcription of Microsoft's pseudo code ("RSS Hashing
Functions") that shares nothing with the engine's table-driven code.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.net.rss import (
    DEFAULT_KEY,
    RSS_KEY_SIZE_MAX,
    RSS_TABLE_LENGTH_MAX,
    SUPPORTED_HASH_TYPES,
    HashInput,
    hash_input,
    packet_hash,
    select_queue,
    toeplitz,
)
from stack.wire.ethernet import EtherType
from stack.wire.ipv4 import FLAG_DF, FLAG_MF, IpProtocol, Ipv4Header
from stack.wire.ipv6 import Ipv6Header
from stack.wire.tcp import TcpFlags, TcpHeader
from stack.wire.udp import UdpHeader
from tests.rss_vectors import V4_ROWS, V6_ROWS, Row, ip, ref_toeplitz
from virtio import spec
from virtio.constants import HashReport, HashType

R = HashReport
T = HashType
ALL = SUPPORTED_HASH_TYPES
NONE_ENABLED = HashType(0)
MACS = bytes.fromhex("525400000002525400000001")
TCP, UDP = int(IpProtocol.TCP), int(IpProtocol.UDP)
HOP_BY_HOP, ROUTING, FRAGMENT, ESP, DEST_OPTS, NO_NEXT = 0, 43, 44, 50, 60, 59
PAYLOAD = b"vnetbench rss"




# --- The verification suite: (src, sport, dst, dport, IP-only hash, IP+TCP hash) --------





# --- Frame builders (stack.wire emitters) --------------------------------------------


def eth(ethertype: int, payload: bytes, *, tags: tuple[int, ...] = ()) -> bytes:
    """An Ethernet frame; ``tags`` are tag protocol identifiers (0x8100, 0x88a8), each
    followed by a TCI of VLAN 5."""
    head = MACS
    for tpid in tags:
        head += struct.pack("!HH", tpid, 5)
    return head + struct.pack("!H", ethertype) + payload


def tcp_seg(sport: int, dport: int, payload: bytes = PAYLOAD) -> bytes:
    return TcpHeader(sport, dport, 1000, 0, TcpFlags.ACK, 512).emit() + payload


def udp_dgram(sport: int, dport: int, payload: bytes = PAYLOAD) -> bytes:
    return UdpHeader(sport, dport, 8 + len(payload)).emit() + payload


def v4(src: bytes, dst: bytes, proto: int, l4: bytes, *, flags: int = FLAG_DF,
       frag_offset: int = 0, options: bytes = b"", total: int | None = None) -> bytes:
    hdr = Ipv4Header(src, dst, proto, 20 + len(options) + len(l4) if total is None else total,
                     flags=flags, frag_offset=frag_offset, options=options)
    return hdr.emit() + l4


def v6(src: bytes, dst: bytes, nxt: int, rest: bytes, *, plen: int | None = None) -> bytes:
    return Ipv6Header(src, dst, nxt, len(rest) if plen is None else plen).emit() + rest


def v4_frame(row: Row, proto: int = TCP, *, flags: int = FLAG_DF, frag_offset: int = 0,
             options: bytes = b"") -> bytes:
    src, sport, dst, dport = ip(row[0]), row[1], ip(row[2]), row[3]
    l4 = tcp_seg(sport, dport) if proto == TCP else udp_dgram(sport, dport)
    return eth(EtherType.IPV4, v4(src, dst, proto, l4, flags=flags, frag_offset=frag_offset,
                                  options=options))


def v6_frame(row: Row, proto: int = TCP) -> bytes:
    src, sport, dst, dport = ip(row[0]), row[1], ip(row[2]), row[3]
    l4 = tcp_seg(sport, dport) if proto == TCP else udp_dgram(sport, dport)
    return eth(EtherType.IPV6, v6(src, dst, proto, l4))


def dest_opts(nxt: int, home: bytes | None = None, *, opt_len: int = 16) -> bytes:
    """A destination options header; with ``home``, holding the Home Address option
    (RFC 6275 §6.3, type 0xC9, 8n+6 aligned after a 4-byte PadN); without, PadN only."""
    if home is None:
        body = bytes([1, 4, 0, 0, 0, 0])
    else:
        opt = bytes([0xC9, opt_len]) + home[:opt_len].ljust(opt_len, b"\0")
        body = bytes([1, 2, 0, 0]) + opt
        body += bytes((-(2 + len(body))) % 8)
    return bytes([nxt, (2 + len(body)) // 8 - 1]) + body


def routing(nxt: int, addr: bytes, *, rtype: int = 2, segments_left: int = 1) -> bytes:
    """A routing header with one address (RFC 6275 §6.4.1 for type 2)."""
    return bytes([nxt, 2, rtype, segments_left]) + bytes(4) + addr


def hop_by_hop(nxt: int) -> bytes:
    return bytes([nxt, 0, 1, 4, 0, 0, 0, 0])


def fragment_hdr(nxt: int, offset: int = 0, *, more: bool = True) -> bytes:
    return struct.pack("!BBHI", nxt, 0, offset | int(more), 0x1234)


def v6_ext_frame(src: str, dst: str, chain: list[tuple[str, bytes | None]], proto: int,
                 l4: bytes) -> bytes:
    """An IPv6 frame whose extension headers are ``chain``: ("dst", home-or-None),
    ("rt2", address), ("hbh", None), ("frag", None)."""
    kinds = [{"dst": DEST_OPTS, "rt2": ROUTING, "hbh": HOP_BY_HOP, "frag": FRAGMENT}[k]
             for k, _ in chain]
    nexts = [*kinds[1:], proto]
    rest = b""
    for (kind, arg), nxt in zip(chain, nexts, strict=True):
        if kind == "dst":
            rest += dest_opts(nxt, arg)
        elif kind == "rt2":
            assert arg is not None
            rest += routing(nxt, arg)
        elif kind == "hbh":
            rest += hop_by_hop(nxt)
        else:
            rest += fragment_hdr(nxt)
    return eth(EtherType.IPV6, v6(ip(src), ip(dst), kinds[0], rest + l4))


# --- Constants ---------------------------------------------------------------------------


def test_device_limits_and_supported_types() -> None:
    # §5.1.4: rss_max_key_size at least 40 when RSS is offered; all nine §5.1.6.4.3.1 types.
    assert (RSS_KEY_SIZE_MAX, RSS_TABLE_LENGTH_MAX) == (40, 128)
    assert int(SUPPORTED_HASH_TYPES) == 0x1FF
    assert DEFAULT_KEY.hex() == (
        "6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa")


# --- Toeplitz ------------------------------------------------------------------------------


@pytest.mark.parametrize("row", V4_ROWS + V6_ROWS, ids=lambda r: f"{r[0]}:{r[1]}")
def test_toeplitz_matches_the_verification_suite(row: Row) -> None:
    src, sport, dst, dport, l3, l3l4 = row
    addrs = ip(src) + ip(dst)
    ports = struct.pack("!HH", sport, dport)
    assert toeplitz(DEFAULT_KEY, addrs) == l3
    assert toeplitz(DEFAULT_KEY, addrs + ports) == l3l4
    assert ref_toeplitz(DEFAULT_KEY, addrs + ports) == l3l4


def test_toeplitz_rejects_a_key_shorter_than_input_plus_four() -> None:
    with pytest.raises(ValueError, match="too short"):
        toeplitz(DEFAULT_KEY[:11], bytes(8))
    with pytest.raises(ValueError, match="too short"):
        toeplitz(DEFAULT_KEY, bytes(37))
    with pytest.raises(ValueError, match="too short"):
        toeplitz(b"", b"")
    assert toeplitz(DEFAULT_KEY[:12], ip("66.9.149.187") + ip("161.142.100.80")) == 0x323E8FC2
    assert toeplitz(DEFAULT_KEY[:4], b"") == 0


def test_toeplitz_accepts_bytearray_and_memoryview() -> None:
    data = ip("66.9.149.187") + ip("161.142.100.80") + struct.pack("!HH", 2794, 1766)
    assert toeplitz(bytes(bytearray(DEFAULT_KEY)), data) == 0x51CCC178
    assert toeplitz(bytearray(DEFAULT_KEY), data) == 0x51CCC178  # type: ignore[arg-type]
    assert toeplitz(DEFAULT_KEY, memoryview(data)) == 0x51CCC178  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(key=st.binary(min_size=4, max_size=60), data=st.binary(max_size=56))
def test_toeplitz_agrees_with_the_bitwise_reference(key: bytes, data: bytes) -> None:
    if len(key) < len(data) + 4:
        with pytest.raises(ValueError):
            toeplitz(key, data)
    else:
        assert toeplitz(key, data) == ref_toeplitz(key, data)


# --- §5.1.6.4.3.2 IPv4 on the verification suite's frames -------------------------------


@pytest.mark.parametrize("row", V4_ROWS, ids=lambda r: f"{r[0]}:{r[1]}")
def test_ipv4_tcp_frames_hash_to_the_published_values(row: Row) -> None:
    frame = v4_frame(row)
    l3, l3l4 = row[4], row[5]
    assert packet_hash(frame, ALL, DEFAULT_KEY) == (l3l4, R.TCPV4)
    assert packet_hash(frame, T.TCPV4, DEFAULT_KEY) == (l3l4, R.TCPV4)
    assert packet_hash(frame, T.TCPV4 | T.IPV4, DEFAULT_KEY) == (l3l4, R.TCPV4)
    # TCPv4 disabled: "Else if ... IPv4 is set", the addresses only.
    assert packet_hash(frame, T.IPV4, DEFAULT_KEY) == (l3, R.IPV4)
    assert packet_hash(frame, T.IPV4 | T.UDPV4, DEFAULT_KEY) == (l3, R.IPV4)
    # "Else the device does not calculate the hash".
    assert packet_hash(frame, T.UDPV4, DEFAULT_KEY) == (0, R.NONE)
    assert packet_hash(frame, T.IPV6 | T.TCPV6 | T.UDPV6 | T.IP_EX | T.TCP_EX | T.UDP_EX,
                       DEFAULT_KEY) == (0, R.NONE)


@pytest.mark.parametrize("row", V4_ROWS, ids=lambda r: f"{r[0]}:{r[1]}")
def test_ipv4_udp_frames_hash_like_the_tcp_row(row: Row) -> None:
    """The same 4-tuple hashed under UDPv4 gives the TCP column's value (the input bytes
    are the same: §5.1.6.4.3.2 lists the same fields for both)."""
    frame = v4_frame(row, UDP)
    l3, l3l4 = row[4], row[5]
    assert packet_hash(frame, T.UDPV4, DEFAULT_KEY) == (l3l4, R.UDPV4)
    assert packet_hash(frame, ALL, DEFAULT_KEY) == (l3l4, R.UDPV4)
    assert packet_hash(frame, T.TCPV4 | T.IPV4, DEFAULT_KEY) == (l3, R.IPV4)
    assert packet_hash(frame, T.TCPV4, DEFAULT_KEY) == (0, R.NONE)


def test_hash_input_names_the_bytes_hashed() -> None:
    row = V4_ROWS[0]
    addrs = ip("66.9.149.187") + ip("161.142.100.80")
    ports = struct.pack("!HH", 2794, 1766)
    assert hash_input(v4_frame(row), ALL) == HashInput(R.TCPV4, addrs + ports)
    assert hash_input(v4_frame(row, UDP), ALL) == HashInput(R.UDPV4, addrs + ports)
    assert hash_input(v4_frame(row), T.IPV4) == HashInput(R.IPV4, addrs)
    assert hash_input(v4_frame(row), NONE_ENABLED) is None


def test_nothing_enabled_means_no_hash() -> None:
    # §5.1.6.5.6.4: "Initially the device has all hash types disabled and reports only
    # VIRTIO_NET_HASH_REPORT_NONE".
    for frame in (v4_frame(V4_ROWS[0]), v4_frame(V4_ROWS[0], UDP), v6_frame(V6_ROWS[0])):
        assert hash_input(frame, NONE_ENABLED) is None
        assert packet_hash(frame, NONE_ENABLED, DEFAULT_KEY) == (0, R.NONE)


def test_unsupported_type_bits_are_ignored() -> None:
    frame = v4_frame(V4_ROWS[0])
    assert packet_hash(frame, HashType(1 << 9 | 1 << 31), DEFAULT_KEY) == (0, R.NONE)
    assert packet_hash(frame, HashType(1 << 9) | T.IPV4, DEFAULT_KEY) == (0x323E8FC2, R.IPV4)


@pytest.mark.parametrize(
    ("flags", "frag_offset"),
    [(FLAG_MF, 0), (FLAG_MF, 185), (0, 185)],
    ids=["first-fragment", "middle-fragment", "last-fragment"],
)
def test_ipv4_fragments_never_get_a_transport_type(flags: int, frag_offset: int) -> None:
    """A fragment is hashed on its addresses only, the first fragment too although it
    carries the TCP header (rss.py docstring: Microsoft "RSS Hashing Types", QEMU
    eth_get_protocols), so every fragment of a datagram lands on one queue."""
    row = V4_ROWS[0]
    for proto in (TCP, UDP):
        frame = v4_frame(row, proto, flags=flags, frag_offset=frag_offset)
        assert packet_hash(frame, ALL, DEFAULT_KEY) == (0x323E8FC2, R.IPV4)
        assert packet_hash(frame, T.TCPV4 | T.UDPV4, DEFAULT_KEY) == (0, R.NONE)


def test_ipv4_dont_fragment_and_no_flags_are_not_fragments() -> None:
    for flags in (FLAG_DF, 0):
        frame = v4_frame(V4_ROWS[0], flags=flags)
        assert packet_hash(frame, ALL, DEFAULT_KEY) == (0x51CCC178, R.TCPV4)


def test_ipv4_options_are_skipped() -> None:
    # NOP, NOP, NOP, End of options: IHL 6. The hash is over the same fields.
    frame = v4_frame(V4_ROWS[1], options=bytes([1, 1, 1, 0]))
    assert frame[14] == 0x46
    assert packet_hash(frame, ALL, DEFAULT_KEY) == (0xC626B0EA, R.TCPV4)


def test_truncated_transport_headers_fall_back_to_the_ipv4_type() -> None:
    """§5.1.6.4.3.2 "has a TCP header": 19 bytes of one is not a TCP header."""
    src, dst = ip("66.9.149.187"), ip("161.142.100.80")
    seg = tcp_seg(2794, 1766, b"")
    frame = eth(EtherType.IPV4, v4(src, dst, TCP, seg[:19]))
    assert packet_hash(frame, ALL, DEFAULT_KEY) == (0x323E8FC2, R.IPV4)
    frame = eth(EtherType.IPV4, v4(src, dst, TCP, seg))
    assert packet_hash(frame, ALL, DEFAULT_KEY) == (0x51CCC178, R.TCPV4)
    dgram = udp_dgram(2794, 1766, b"")
    frame = eth(EtherType.IPV4, v4(src, dst, UDP, dgram[:7]))
    assert packet_hash(frame, ALL, DEFAULT_KEY) == (0x323E8FC2, R.IPV4)
    frame = eth(EtherType.IPV4, v4(src, dst, UDP, dgram))
    assert packet_hash(frame, ALL, DEFAULT_KEY) == (0x51CCC178, R.UDPV4)


def test_transport_header_must_lie_inside_the_ip_total_length() -> None:
    """Ethernet padding after a short IP packet is not part of it: an IP total length that
    leaves 10 bytes for TCP means no TCP header even when the frame is padded to 60."""
    src, dst = ip("66.9.149.187"), ip("161.142.100.80")
    seg = tcp_seg(2794, 1766, b"")
    frame = eth(EtherType.IPV4, v4(src, dst, TCP, seg, total=30)) + bytes(20)
    assert packet_hash(frame, ALL, DEFAULT_KEY) == (0x323E8FC2, R.IPV4)
    # A minimum-size UDP frame with padding hashes normally.
    frame = eth(EtherType.IPV4, v4(src, dst, UDP, udp_dgram(2794, 1766, b"")))
    frame = frame.ljust(60, b"\0")
    assert packet_hash(frame, ALL, DEFAULT_KEY) == (0x51CCC178, R.UDPV4)
    # Total length 0 (Linux BIG TCP): the packet runs to the end of the frame.
    frame = eth(EtherType.IPV4, v4(src, dst, TCP, seg, total=0))
    assert packet_hash(frame, ALL, DEFAULT_KEY) == (0x51CCC178, R.TCPV4)


def test_tcp_data_offset_below_five_is_not_a_tcp_header() -> None:
    seg = bytearray(tcp_seg(2794, 1766))
    seg[12] = 4 << 4
    frame = eth(EtherType.IPV4, v4(ip("66.9.149.187"), ip("161.142.100.80"), TCP, bytes(seg)))
    assert packet_hash(frame, ALL, DEFAULT_KEY) == (0x323E8FC2, R.IPV4)


def test_malformed_ipv4_headers_get_no_hash() -> None:
    good = bytearray(v4_frame(V4_ROWS[0]))
    for offset, value in ((14, 0x65), (14, 0x44), (14, 0x4F)):  # version 6, IHL 4, IHL 15
        frame = bytearray(good)
        frame[offset] = value
        if value == 0x4F:
            frame = frame[: 14 + 56]  # a 60-byte header cut short
        assert hash_input(bytes(frame), ALL) is None
    assert hash_input(bytes(good[: 14 + 19]), ALL) is None


# --- §5.1.6.4.3.3 IPv6 without extension headers ----------------------------------------


@pytest.mark.parametrize("row", V6_ROWS, ids=lambda r: f"{r[0]}:{r[1]}")
def test_ipv6_frames_hash_to_the_published_values(row: Row) -> None:
    tcp_frame, udp_frame = v6_frame(row), v6_frame(row, UDP)
    l3, l3l4 = row[4], row[5]
    assert packet_hash(tcp_frame, ALL, DEFAULT_KEY) == (l3l4, R.TCPV6)
    assert packet_hash(tcp_frame, T.TCPV6, DEFAULT_KEY) == (l3l4, R.TCPV6)
    assert packet_hash(tcp_frame, T.IPV6 | T.UDPV6, DEFAULT_KEY) == (l3, R.IPV6)
    assert packet_hash(tcp_frame, T.UDPV6, DEFAULT_KEY) == (0, R.NONE)
    assert packet_hash(udp_frame, T.UDPV6, DEFAULT_KEY) == (l3l4, R.UDPV6)
    assert packet_hash(udp_frame, ALL, DEFAULT_KEY) == (l3l4, R.UDPV6)
    assert packet_hash(udp_frame, T.IPV6 | T.TCPV6, DEFAULT_KEY) == (l3, R.IPV6)
    # The IPv4 types never apply to IPv6 packets.
    assert packet_hash(tcp_frame, T.IPV4 | T.TCPV4 | T.UDPV4, DEFAULT_KEY) == (0, R.NONE)


def test_ex_types_do_not_apply_without_extension_headers() -> None:
    """§5.1.6.4.3.4 covers "IPv6 packets with extension headers"; a packet without any
    is hashed by §5.1.6.4.3.3 alone (QEMU also uses the _EX types there; see rss.py)."""
    frame = v6_frame(V6_ROWS[0])
    assert packet_hash(frame, T.TCP_EX | T.IP_EX | T.UDP_EX, DEFAULT_KEY) == (0, R.NONE)
    assert packet_hash(frame, T.TCP_EX | T.TCPV6, DEFAULT_KEY) == (0x40207D3D, R.TCPV6)
    assert packet_hash(frame, T.IP_EX | T.IPV6, DEFAULT_KEY) == (0x2CC18CD5, R.IPV6)


def test_ipv6_truncated_and_malformed() -> None:
    row = V6_ROWS[0]
    frame = v6_frame(row)
    seg_start = 14 + 40
    # A TCP header cut to 19 bytes: the IPv6 type.
    short = frame[: seg_start + 19]
    assert packet_hash(short, ALL, DEFAULT_KEY) == (0x2CC18CD5, R.IPV6)
    # The payload length says 10 bytes, so the TCP header is not inside the packet.
    cut = bytearray(frame)
    struct.pack_into("!H", cut, 14 + 4, 10)
    assert packet_hash(bytes(cut), ALL, DEFAULT_KEY) == (0x2CC18CD5, R.IPV6)
    # Payload length 0 (jumbogram / BIG TCP): up to the end of the frame.
    struct.pack_into("!H", cut, 14 + 4, 0)
    assert packet_hash(bytes(cut), ALL, DEFAULT_KEY) == (0x40207D3D, R.TCPV6)
    # Not version 6, or a fixed header cut short: no hash.
    bad = bytearray(frame)
    bad[14] = 0x45
    assert hash_input(bytes(bad), ALL) is None
    assert hash_input(frame[: 14 + 39], ALL) is None


# --- §5.1.6.4.3.4 IPv6 with extension headers --------------------------------------------

# Addresses for the Mobile IPv6 cases: the fixed header carries row 2's addresses, the
# Home Address option row 1's source and the type 2 routing header row 1's destination,
# so the _EX hashes are row 1's published values and the plain ones row 2's.
R1_SRC, R1_DST = V6_ROWS[0][0], V6_ROWS[0][2]
R2_SRC, R2_DST = V6_ROWS[1][0], V6_ROWS[1][2]
R1_PORTS = (2794, 1766)
R2_PORTS = (14230, 4739)


def mobile_frame(proto: int, ports: tuple[int, int], *, home: bool = True, rt2: bool = True,
                 src: str = R2_SRC, dst: str = R2_DST) -> bytes:
    l4 = tcp_seg(*ports) if proto == TCP else udp_dgram(*ports)
    chain: list[tuple[str, bytes | None]] = []
    if rt2:
        chain.append(("rt2", ip(R1_DST)))
    chain.append(("dst", ip(R1_SRC) if home else None))
    return v6_ext_frame(src, dst, chain, proto, l4)


def test_tcp_ex_uses_the_home_address_and_the_type2_routing_address() -> None:
    frame = mobile_frame(TCP, R1_PORTS)
    expected = ip(R1_SRC) + ip(R1_DST) + struct.pack("!HH", *R1_PORTS)
    assert hash_input(frame, T.TCP_EX) == HashInput(R.TCPV6_EX, expected)
    assert packet_hash(frame, T.TCP_EX, DEFAULT_KEY) == (0x40207D3D, R.TCPV6_EX)
    assert packet_hash(frame, ALL, DEFAULT_KEY) == (0x40207D3D, R.TCPV6_EX)
    # "Else if VIRTIO_NET_HASH_TYPE_IP_EX is set": the two addresses.
    assert packet_hash(frame, T.IP_EX, DEFAULT_KEY) == (0x2CC18CD5, R.IPV6_EX)
    assert packet_hash(frame, T.UDP_EX | T.IP_EX, DEFAULT_KEY) == (0x2CC18CD5, R.IPV6_EX)
    # No _EX type: "skip IPv6 extension headers" and use §5.1.6.4.3.3 (fixed header).
    assert packet_hash(frame, T.IPV6, DEFAULT_KEY) == (0x0F0C461C, R.IPV6)
    assert packet_hash(frame, T.UDP_EX | T.IPV6, DEFAULT_KEY) == (0x0F0C461C, R.IPV6)


def test_without_ex_types_the_fixed_header_and_real_ports_are_hashed() -> None:
    frame = mobile_frame(TCP, R2_PORTS)
    assert packet_hash(frame, T.TCPV6, DEFAULT_KEY) == (0xDDE51BBF, R.TCPV6)
    assert packet_hash(frame, T.TCPV6 | T.UDP_EX, DEFAULT_KEY) == (0xDDE51BBF, R.TCPV6)
    assert packet_hash(frame, T.IPV6 | T.TCPV6 | T.UDPV6, DEFAULT_KEY) == (0xDDE51BBF, R.TCPV6)


def test_ip_ex_comes_before_the_plain_transport_types() -> None:
    """§5.1.6.4.3.4 order: TCP_EX, UDP_EX, IP_EX, and only then the §5.1.6.4.3.3 rules,
    so a TCP packet with extension headers under TCPv6 | IP_EX reports IPv6_EX (QEMU's
    virtio_net_get_hash_type would pick TCPv6 here)."""
    frame = mobile_frame(TCP, R2_PORTS)
    assert packet_hash(frame, T.TCPV6 | T.IP_EX, DEFAULT_KEY) == (0x2CC18CD5, R.IPV6_EX)


def test_udp_ex() -> None:
    frame = mobile_frame(UDP, R1_PORTS)
    assert packet_hash(frame, T.UDP_EX, DEFAULT_KEY) == (0x40207D3D, R.UDPV6_EX)
    assert packet_hash(frame, T.TCP_EX | T.IP_EX, DEFAULT_KEY) == (0x2CC18CD5, R.IPV6_EX)
    assert packet_hash(frame, T.TCP_EX, DEFAULT_KEY) == (0, R.NONE)
    frame = mobile_frame(UDP, R2_PORTS)
    assert packet_hash(frame, T.UDPV6, DEFAULT_KEY) == (0xDDE51BBF, R.UDPV6)


def test_ex_falls_back_to_each_fixed_address_when_its_header_is_absent() -> None:
    # Home Address option only: source from it, destination from the fixed header.
    frame = mobile_frame(TCP, R1_PORTS, rt2=False, dst=R1_DST)
    assert packet_hash(frame, T.TCP_EX, DEFAULT_KEY) == (0x40207D3D, R.TCPV6_EX)
    # Type 2 routing header only.
    frame = mobile_frame(TCP, R1_PORTS, home=False, src=R1_SRC)
    assert packet_hash(frame, T.IP_EX, DEFAULT_KEY) == (0x2CC18CD5, R.IPV6_EX)
    # Extension headers without either: the fixed header's addresses, still an _EX type.
    frame = v6_ext_frame(R1_SRC, R1_DST, [("hbh", None)], TCP, tcp_seg(*R1_PORTS))
    assert packet_hash(frame, T.TCP_EX, DEFAULT_KEY) == (0x40207D3D, R.TCPV6_EX)
    assert packet_hash(frame, T.TCPV6, DEFAULT_KEY) == (0x40207D3D, R.TCPV6)


def test_only_a_proper_type2_routing_header_names_the_destination() -> None:
    """RFC 6275 §6.4.1: Routing Type 2, Hdr Ext Len 2, Segments Left 1."""
    l4 = tcp_seg(*R1_PORTS)
    for rtype, left in ((0, 1), (2, 0)):
        rest = routing(DEST_OPTS, ip(R2_DST), rtype=rtype, segments_left=left)
        rest += dest_opts(TCP, ip(R1_SRC))
        frame = eth(EtherType.IPV6, v6(ip(R2_SRC), ip(R1_DST), ROUTING, rest + l4))
        assert packet_hash(frame, T.TCP_EX, DEFAULT_KEY) == (0x40207D3D, R.TCPV6_EX)


def test_a_home_address_option_of_the_wrong_length_is_ignored() -> None:
    rest = dest_opts(TCP, ip(R2_SRC), opt_len=8)
    frame = eth(EtherType.IPV6, v6(ip(R1_SRC), ip(R1_DST), DEST_OPTS, rest + tcp_seg(*R1_PORTS)))
    assert packet_hash(frame, T.TCP_EX, DEFAULT_KEY) == (0x40207D3D, R.TCPV6_EX)


def test_ipv6_fragments_never_get_a_transport_type() -> None:
    l4 = tcp_seg(*R1_PORTS)
    # First fragment (offset 0, M=1): the TCP header is there but not used.
    frame = v6_ext_frame(R1_SRC, R1_DST, [("frag", None)], TCP, l4)
    assert packet_hash(frame, ALL, DEFAULT_KEY) == (0x2CC18CD5, R.IPV6_EX)
    assert packet_hash(frame, T.TCPV6 | T.IPV6, DEFAULT_KEY) == (0x2CC18CD5, R.IPV6)
    assert packet_hash(frame, T.TCPV6 | T.TCP_EX, DEFAULT_KEY) == (0, R.NONE)
    # A later fragment: what follows the fragment header is payload.
    rest = fragment_hdr(TCP, 1480, more=False) + l4
    frame = eth(EtherType.IPV6, v6(ip(R1_SRC), ip(R1_DST), FRAGMENT, rest))
    assert packet_hash(frame, T.TCPV6 | T.IPV6, DEFAULT_KEY) == (0x2CC18CD5, R.IPV6)
    # A Home Address option before the fragment header still counts.
    rest = dest_opts(FRAGMENT, ip(R1_SRC)) + fragment_hdr(TCP) + l4
    frame = eth(EtherType.IPV6, v6(ip(R2_SRC), ip(R1_DST), DEST_OPTS, rest))
    assert packet_hash(frame, T.IP_EX | T.TCP_EX, DEFAULT_KEY) == (0x2CC18CD5, R.IPV6_EX)


def test_esp_and_no_next_header() -> None:
    # ESP is an extension header (RFC 8200 §4) after which nothing can be read.
    frame = eth(EtherType.IPV6, v6(ip(R1_SRC), ip(R1_DST), ESP, bytes(24)))
    assert packet_hash(frame, ALL, DEFAULT_KEY) == (0x2CC18CD5, R.IPV6_EX)
    assert packet_hash(frame, T.IPV6 | T.TCPV6, DEFAULT_KEY) == (0x2CC18CD5, R.IPV6)
    # No Next Header is not an extension header.
    frame = eth(EtherType.IPV6, v6(ip(R1_SRC), ip(R1_DST), NO_NEXT, b""))
    assert packet_hash(frame, ALL, DEFAULT_KEY) == (0x2CC18CD5, R.IPV6)


def test_a_truncated_extension_header_chain_gives_the_address_types() -> None:
    frame = mobile_frame(TCP, R1_PORTS)
    first_ext = 14 + 40
    cut = frame[: first_ext + 30]  # inside the destination options header
    # The routing header was complete: its address counts; the home address does not.
    assert packet_hash(cut, ALL, DEFAULT_KEY) == (ref_toeplitz(
        DEFAULT_KEY, ip(R2_SRC) + ip(R1_DST)), R.IPV6_EX)
    assert hash_input(cut, ALL) == HashInput(R.IPV6_EX, ip(R2_SRC) + ip(R1_DST))
    assert packet_hash(cut, T.TCPV6 | T.IPV6, DEFAULT_KEY) == (0x0F0C461C, R.IPV6)
    assert packet_hash(cut, T.TCPV6, DEFAULT_KEY) == (0, R.NONE)


# --- L2: VLAN tags and non-IP frames --------------------------------------------------------


@pytest.mark.parametrize("tags", [(0x8100,), (0x88A8, 0x8100)], ids=["802.1Q", "802.1ad"])
def test_tagged_frames_hash_like_untagged(tags: tuple[int, ...]) -> None:
    src, dst = ip("66.9.149.187"), ip("161.142.100.80")
    frame = eth(EtherType.IPV4, v4(src, dst, TCP, tcp_seg(2794, 1766)), tags=tags)
    assert packet_hash(frame, ALL, DEFAULT_KEY) == (0x51CCC178, R.TCPV4)
    row = V6_ROWS[0]
    frame = eth(EtherType.IPV6, v6(ip(row[0]), ip(row[2]), UDP, udp_dgram(2794, 1766)),
                tags=tags)
    assert packet_hash(frame, ALL, DEFAULT_KEY) == (0x40207D3D, R.UDPV6)


def test_three_tags_or_a_truncated_tag_get_no_hash() -> None:
    payload = v4(ip("66.9.149.187"), ip("161.142.100.80"), TCP, tcp_seg(2794, 1766))
    frame = eth(EtherType.IPV4, payload, tags=(0x88A8, 0x8100, 0x8100))
    assert packet_hash(frame, ALL, DEFAULT_KEY) == (0, R.NONE)
    assert hash_input(MACS + b"\x81\x00\x00\x05", ALL) is None


def test_non_ip_frames_get_no_hash() -> None:
    arp = bytes.fromhex("0001080006040001") + MACS[6:] + bytes(4) + bytes(6) + bytes(4)
    for frame in (eth(EtherType.ARP, arp), eth(EtherType.LOCAL_EXPERIMENTAL_1, bytes(46)),
                  eth(EtherType.ARP, arp, tags=(0x8100,)), b"", MACS, MACS + b"\x08"):
        assert hash_input(frame, ALL) is None
        assert packet_hash(frame, ALL, DEFAULT_KEY) == (0, R.NONE)


# --- Keys -----------------------------------------------------------------------------------


def test_a_short_key_is_extended_with_zeros() -> None:
    """A key covering the input is used as is; a shorter one as if zero-padded to 40
    bytes (a device holding the key in a zeroed array: QEMU VirtioNetRssData.key)."""
    v4tcp = v4_frame(V4_ROWS[0])
    assert packet_hash(v4tcp, T.IPV4, DEFAULT_KEY[:12]) == (0x323E8FC2, R.IPV4)
    assert packet_hash(v4tcp, T.TCPV4, DEFAULT_KEY[:16]) == (0x51CCC178, R.TCPV4)
    padded = DEFAULT_KEY[:20] + bytes(20)
    v6tcp = v6_frame(V6_ROWS[0])
    data = ip(R1_SRC) + ip(R1_DST) + struct.pack("!HH", *R1_PORTS)
    assert packet_hash(v6tcp, ALL, DEFAULT_KEY[:20]) == (ref_toeplitz(padded, data), R.TCPV6)
    assert packet_hash(v6tcp, ALL, b"") == (0, R.TCPV6)


# --- §5.1.6.5.7.3 RSS processing ---------------------------------------------------------------


def test_select_queue_masks_the_hash_into_the_table() -> None:
    table = [3, 1, 4, 1, 5, 9, 2, 6]
    assert select_queue(0x51CCC178, R.TCPV4, table, 7) == 3  # 0x78 & 7 = 0
    assert select_queue(0x323E8FC2, R.IPV4, table, 7) == 4  # 0xC2 & 7 = 2
    assert select_queue(0xD718262A, R.IPV4, table, 7) == 4  # 0x2A & 7 = 2
    assert select_queue(0x5C2B394A, R.TCPV4, table, 7) == 4  # 0x4A & 7 = 2
    assert select_queue(0xAFC7327F, R.UDPV6_EX, table, 7) == 6  # 0x7F & 7 = 7
    assert select_queue(0x10E828A2, R.TCPV6, table, 7) == 4  # 0xA2 & 7 = 2
    assert select_queue(0x5D1809C5, R.IPV6, table, 7) == 9  # 0xC5 & 7 = 5
    assert select_queue(0x00000001, R.IPV4, table, 7) == 1
    assert select_queue(0xFFFFFFFF, R.IPV4, [8], 7) == 8


def test_unclassified_packets_go_to_the_unclassified_queue() -> None:
    """§5.1.6.5.7.3: "If the device did not calculate the hash for the specific packet,
    the device directs the packet to the receiveq specified by unclassified_queue"."""
    assert select_queue(0, R.NONE, [3, 1, 4, 1], 7) == 7
    assert select_queue(0x51CCC178, R.NONE, [3, 1, 4, 1], 0) == 0


def test_rss_end_to_end_on_a_full_table() -> None:
    table = [i % 4 for i in range(RSS_TABLE_LENGTH_MAX)]
    value, report = packet_hash(v4_frame(V4_ROWS[0]), ALL, DEFAULT_KEY)
    assert select_queue(value, report, table, 3) == 0  # 0x51ccc178 & 127 = 120
    value, report = packet_hash(v4_frame(V4_ROWS[3]), ALL, DEFAULT_KEY)
    assert select_queue(value, report, table, 3) == 3  # 0xafc7327f & 127 = 127
    value, report = packet_hash(v6_frame(V6_ROWS[1]), ALL, DEFAULT_KEY)
    assert select_queue(value, report, table, 3) == 3  # 0xdde51bbf & 127 = 63
    value, report = packet_hash(eth(EtherType.ARP, bytes(28)), ALL, DEFAULT_KEY)
    assert select_queue(value, report, table, 2) == 2


@pytest.mark.parametrize("size", [0, 3, 6, 127])
def test_select_queue_rejects_a_table_that_is_not_a_power_of_two(size: int) -> None:
    # §5.1.6.5.7.2: indirection_table_mask + 1 entries, a power of two.
    with pytest.raises(ValueError, match="power of two"):
        select_queue(1, R.IPV4, [0] * size, 0)


# --- Robustness: any bytes, any mask -------------------------------------------------------------

ADDR_LEN = {R.IPV4: 8, R.TCPV4: 12, R.UDPV4: 12, R.IPV6: 32, R.TCPV6: 36, R.UDPV6: 36,
            R.IPV6_EX: 32, R.TCPV6_EX: 36, R.UDPV6_EX: 36}


def check_consistent(frame: bytes, types: HashType) -> None:
    """hash_input and packet_hash agree, never raise, and report only an enabled type
    (§5.1.6.4.4: VIRTIO_NET_HASH_TYPE_XXX = 1 << (VIRTIO_NET_HASH_REPORT_XXX - 1))."""
    found = hash_input(frame, types)
    value, report = packet_hash(frame, types, DEFAULT_KEY)
    if found is None:
        assert (value, report) == (0, R.NONE)
        return
    assert found.report != R.NONE
    assert types & (1 << (found.report - 1))
    assert len(found.data) == ADDR_LEN[found.report]
    assert (value, report) == (ref_toeplitz(DEFAULT_KEY, found.data), found.report)


VALID_FRAMES = [
    v4_frame(V4_ROWS[0]),
    v4_frame(V4_ROWS[1], UDP, options=bytes([1, 1, 1, 0])),
    v4_frame(V4_ROWS[2], flags=FLAG_MF),
    v6_frame(V6_ROWS[0]),
    v6_frame(V6_ROWS[2], UDP),
    mobile_frame(TCP, R1_PORTS),
    mobile_frame(UDP, R2_PORTS),
    v6_ext_frame(R1_SRC, R1_DST, [("hbh", None), ("frag", None), ("dst", ip(R2_SRC))], TCP,
                 tcp_seg(*R1_PORTS)),
    eth(EtherType.IPV4, v4(ip("10.0.0.1"), ip("10.0.0.2"), TCP, tcp_seg(1, 2)), tags=(0x8100,)),
]
TYPE_MASKS = [ALL, NONE_ENABLED, T.IPV4, T.TCPV4 | T.UDPV4, T.IPV6, T.TCPV6 | T.UDPV6,
              T.IP_EX, T.TCP_EX | T.UDP_EX, T.TCP_EX | T.IPV6, T.TCPV6 | T.IP_EX]


@pytest.mark.parametrize("index", range(len(VALID_FRAMES)))
def test_every_truncation_of_a_valid_frame_is_handled(index: int) -> None:
    frame = VALID_FRAMES[index]
    for end in range(len(frame) + 1):
        for types in TYPE_MASKS:
            check_consistent(frame[:end], types)


@settings(max_examples=300, deadline=None)
@given(frame=st.binary(max_size=200), mask=st.integers(0, 2**32 - 1))
def test_arbitrary_bytes_and_masks_never_raise(frame: bytes, mask: int) -> None:
    check_consistent(frame, HashType(mask))


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, len(VALID_FRAMES) - 1), mask=st.integers(0, 0x1FF),
       flips=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4))
def test_mutated_valid_frames_never_raise(index: int, mask: int,
                                          flips: list[tuple[int, int]]) -> None:
    frame = bytearray(VALID_FRAMES[index])
    for pos, value in flips:
        frame[pos % len(frame)] = value
    check_consistent(bytes(frame), HashType(mask))


def test_spec_sections_cited_exist() -> None:
    assert (spec.NET_HASH.number, spec.NET_HASH_IPV4.number, spec.NET_HASH_IPV6.number,
            spec.NET_HASH_IPV6_EX.number, spec.NET_HASH_REPORT.number,
            spec.NET_RSS_DEVICE.number) == (
        "5.1.6.4.3", "5.1.6.4.3.2", "5.1.6.4.3.3", "5.1.6.4.3.4", "5.1.6.4.4", "5.1.6.5.7.3")
