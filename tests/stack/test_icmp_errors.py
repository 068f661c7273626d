"""ICMP errors about our packets (RFC 792, RFC 4443) and the path MTU cache (RFC 1191,
RFC 8201): what is read from the quoted packet, the plateau table, the minimums, aging."""

from __future__ import annotations

import pytest

from stack.icmp_errors import (
    MIN_PMTU_V4,
    MIN_PMTU_V6,
    PMTU_AGE_NS,
    PathMtuCache,
    parse_icmp_error,
)
from stack.wire import icmpv4, icmpv6
from testbench.packets import DST_V6, SRC_V6, tcp_packet, udp_packet

V4_SRC, V4_DST = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])


def ip_of(frame: bytes) -> bytes:
    return frame[14:]


def test_fragmentation_needed_quotes_our_tcp_segment() -> None:
    seg = ip_of(tcp_packet(1400, mss=None, seq=123_456_789).frame)
    msg = icmpv4.dest_unreachable(icmpv4.UnreachableCode.FRAG_NEEDED, seg, next_hop_mtu=1280)
    err = parse_icmp_error(False, msg.emit())
    assert err is not None and err.too_big and not err.hard and not err.v6
    assert (err.mtu, err.path_mtu(), err.quoted_length) == (1280, 1280, len(seg))
    assert (err.src, err.dst, err.protocol) == (V4_SRC, V4_DST, 6)
    assert (err.sport, err.dport, err.seq) == (40000, 5201, 123_456_789)


def test_packet_too_big_quotes_our_ipv6_segment() -> None:
    seg = ip_of(tcp_packet(1400, mss=None, ipv6=True, seq=7).frame)
    err = parse_icmp_error(True, icmpv6.packet_too_big(1280, seg).emit(DST_V6, SRC_V6))
    assert err is not None and err.too_big and err.v6
    assert (err.mtu, err.path_mtu(), err.src, err.dst, err.seq) == (1280, 1280, SRC_V6, DST_V6, 7)
    assert err.quoted_length == len(seg)


@pytest.mark.parametrize(("reported", "expected"), [
    (0, 1006),  # an old router: the RFC 1191 plateau below the 1440-byte packet
    (100, MIN_PMTU_V4),  # never below the minimum (a forged tiny MTU, RFC 5927 §7)
    (1440, 1006),  # not below the packet it dropped: the plateau instead
    (1300, 1300),
])
def test_the_path_mtu_an_ipv4_error_implies(reported: int, expected: int) -> None:
    seg = ip_of(tcp_packet(1400, mss=None).frame)
    msg = icmpv4.dest_unreachable(icmpv4.UnreachableCode.FRAG_NEEDED, seg,
                                  next_hop_mtu=reported)
    err = parse_icmp_error(False, msg.emit())
    assert err is not None and err.quoted_length == 1440
    assert err.path_mtu() == expected


def test_ipv6_never_below_1280() -> None:
    seg = ip_of(tcp_packet(1400, mss=None, ipv6=True).frame)
    err = parse_icmp_error(True, icmpv6.packet_too_big(1000, seg).emit(DST_V6, SRC_V6))
    assert err is not None and err.path_mtu() == MIN_PMTU_V6


@pytest.mark.parametrize(("code", "hard"), [
    (icmpv4.UnreachableCode.PORT, True), (icmpv4.UnreachableCode.PROTOCOL, True),
    (icmpv4.UnreachableCode.HOST, False), (icmpv4.UnreachableCode.NET, False),
])
def test_hard_and_soft_unreachables(code: int, hard: bool) -> None:
    seg = ip_of(tcp_packet(100, mss=None).frame)
    err = parse_icmp_error(False, icmpv4.dest_unreachable(code, seg).emit())
    assert err is not None and err.hard is hard and not err.too_big and err.mtu == 0


def test_ipv6_port_unreachable_is_hard_and_time_exceeded_soft() -> None:
    seg = ip_of(tcp_packet(100, mss=None, ipv6=True).frame)
    port = icmpv6.dest_unreachable(icmpv6.DestUnreachableCode.PORT_UNREACHABLE, seg)
    err = parse_icmp_error(True, port.emit(DST_V6, SRC_V6))
    assert err is not None and err.hard
    err = parse_icmp_error(True, icmpv6.time_exceeded(0, seg).emit(DST_V6, SRC_V6))
    assert err is not None and not err.hard and not err.too_big


def test_udp_is_read_with_no_sequence_number() -> None:
    seg = ip_of(udp_packet(100).frame)
    err = parse_icmp_error(False, icmpv4.dest_unreachable(3, seg).emit())
    assert err is not None and err.protocol == 17 and err.seq == 0 and err.hard


def test_what_is_not_an_error_about_tcp_or_udp_is_none() -> None:
    seg = ip_of(tcp_packet(100, mss=None).frame)
    msg = icmpv4.dest_unreachable(3, seg).emit()
    assert parse_icmp_error(False, icmpv4.echo_request(1, 1, b"x").emit()) is None
    assert parse_icmp_error(False, msg[:8 + 27]) is None  # quote too short for ports+seq
    assert parse_icmp_error(False, msg[:7]) is None
    icmp_in_icmp = bytearray(msg)
    icmp_in_icmp[8 + 9] = 1  # the quoted packet claims to be ICMP
    assert parse_icmp_error(False, bytes(icmp_in_icmp)) is None
    assert parse_icmp_error(True, msg) is None  # an IPv4 quote in an "ICMPv6" message


def test_the_cache_only_lowers_and_ages_out() -> None:
    cache = PathMtuCache(limit=2)
    a, b, c = b"\x0a\0\0\x02", b"\x0a\0\0\x03", b"\x0a\0\0\x04"
    assert cache.learn(a, 1500, 1500, 0) is None  # not below the link MTU
    assert cache.learn(a, 1400, 1500, 0) == 1400
    assert cache.learn(a, 1450, 1500, 10) is None  # a larger report changes nothing
    assert cache.learn(a, 1280, 1500, 20) == 1280
    assert cache.get(a, PMTU_AGE_NS + 19) == 1280
    assert cache.get(a, PMTU_AGE_NS + 20) is None and len(cache) == 0
    cache.learn(a, 1400, 1500, 0)
    cache.learn(b, 1400, 1500, 0)
    cache.learn(c, 1400, 1500, 0)  # bounded: the oldest goes
    assert len(cache) == 2 and cache.get(a, 1) is None and cache.get(c, 1) == 1400
