"""ICMP errors about packets we sent, and the path MTU they teach.

An ICMPv4 (RFC 792) or ICMPv6 (RFC 4443) error quotes the start of the packet that
caused it: its IP header and at least the first 8 octets of the transport header — for
TCP the ports and the sequence number (RFC 5927 §4.1 checks that number before the
error is believed). :func:`parse_icmp_error` reads the message bytes the interface hands
up; :class:`PathMtuCache` keeps what "fragmentation needed" (RFC 1191) and "packet too
big" (RFC 8201) said about a destination, for ``PMTU_AGE_NS`` (RFC 1191 §6.3: ten
minutes), never below the protocol minimum (576 would be RFC 791's floor; Linux's
``min_pmtu`` of 552 is kept, as a forged tiny MTU is an attack, RFC 5927 §7; IPv6:
1280, RFC 8201 §4).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from stack.wire.icmpv4 import Icmpv4Type, UnreachableCode
from stack.wire.icmpv6 import DestUnreachableCode, Icmpv6Type
from stack.wire.ipv4 import IpProtocol

PMTU_AGE_NS = 600 * 1_000_000_000
"""How long a learned path MTU holds before the link MTU is tried again."""
MIN_PMTU_V4 = 552
MIN_PMTU_V6 = 1280
PLATEAUS = (65535, 32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68)
"""RFC 1191 §7 Table 7-1: the MTU to assume below a quoted total length when an old
router sends "fragmentation needed" without the next-hop MTU."""

_QUOTE = 8
"""The quoted packet starts after type, code, checksum and the 4-octet field."""


@dataclass(frozen=True, slots=True)
class IcmpError:
    """What an ICMP error says about a packet we sent."""

    too_big: bool
    """Fragmentation needed (IPv4 type 3 code 4) or packet too big (IPv6 type 2)."""
    hard: bool
    """Protocol or port unreachable: the peer has no such endpoint (RFC 1122
    §4.2.3.9); TCP gives up a connection still in its handshake."""
    mtu: int
    """The MTU the error reports (0 when an old IPv4 router left it out)."""
    src: bytes
    """The quoted packet's source: our address."""
    dst: bytes
    """The quoted packet's destination: the peer."""
    protocol: int
    sport: int
    dport: int
    seq: int
    """The quoted TCP sequence number (0 for other protocols)."""
    quoted_length: int
    """The quoted packet's IPv4 total length / IPv6 length (header included)."""

    @property
    def v6(self) -> bool:
        return len(self.dst) == 16

    def path_mtu(self) -> int:
        """The MTU to use toward :attr:`dst`: the reported one, or the RFC 1191
        plateau below the quoted length; clamped to the protocol minimum."""
        floor = MIN_PMTU_V6 if self.v6 else MIN_PMTU_V4
        mtu = self.mtu
        if not mtu or mtu >= self.quoted_length > 0:
            mtu = next((p for p in PLATEAUS if p < self.quoted_length), PLATEAUS[-1])
        return max(mtu, floor)


def parse_icmp_error(v6: bool, message: bytes) -> IcmpError | None:
    """The error in an ICMP message (the interface verified it), or None when it is no
    error about a TCP or UDP packet we could have sent, or is too short to tell."""
    if len(message) < _QUOTE:
        return None
    kind, code = message[0], message[1]
    if v6:
        if kind == Icmpv6Type.PACKET_TOO_BIG:
            too_big, hard, mtu = True, False, struct.unpack_from("!I", message, 4)[0]
        elif kind in (Icmpv6Type.DEST_UNREACHABLE, Icmpv6Type.TIME_EXCEEDED,
                      Icmpv6Type.PARAMETER_PROBLEM):
            too_big, mtu = False, 0
            hard = kind == Icmpv6Type.DEST_UNREACHABLE and code == DestUnreachableCode.PORT_UNREACHABLE
        else:
            return None
        quoted = message[_QUOTE:]
        if len(quoted) < 48 or quoted[0] >> 4 != 6:
            return None
        protocol, l4 = quoted[6], 40  # a transport header right after the fixed header
        src, dst = bytes(quoted[8:24]), bytes(quoted[24:40])
        length = 40 + int.from_bytes(quoted[4:6], "big")
    else:
        if kind == Icmpv4Type.DEST_UNREACHABLE:
            too_big = code == UnreachableCode.FRAG_NEEDED
            hard = code in (UnreachableCode.PROTOCOL, UnreachableCode.PORT)
            mtu = int.from_bytes(message[6:8], "big") if too_big else 0
        elif kind in (Icmpv4Type.TIME_EXCEEDED, Icmpv4Type.PARAMETER_PROBLEM):
            too_big = hard = False
            mtu = 0
        else:
            return None
        quoted = message[_QUOTE:]
        if len(quoted) < 28 or quoted[0] >> 4 != 4:
            return None
        l4 = (quoted[0] & 0x0F) * 4
        if l4 < 20 or len(quoted) < l4 + 8:
            return None
        protocol = quoted[9]
        src, dst = bytes(quoted[12:16]), bytes(quoted[16:20])
        length = int.from_bytes(quoted[2:4], "big")
    if protocol not in (IpProtocol.TCP, IpProtocol.UDP):
        return None
    sport, dport = struct.unpack_from("!HH", quoted, l4)
    seq = struct.unpack_from("!I", quoted, l4 + 4)[0] if protocol == IpProtocol.TCP else 0
    return IcmpError(too_big, hard, mtu, src, dst, protocol, sport, dport, seq, length)


class PathMtuCache:
    """Per destination, the smallest MTU an ICMP error reported, until it ages out."""

    def __init__(self, limit: int = 1024) -> None:
        self._entries: dict[bytes, tuple[int, int]] = {}
        self._limit = limit

    def get(self, dst: bytes, now: int) -> int | None:
        entry = self._entries.get(dst)
        if entry is None:
            return None
        mtu, expires = entry
        if now >= expires:
            del self._entries[dst]
            return None
        return mtu

    def learn(self, dst: bytes, mtu: int, link_mtu: int, now: int) -> int | None:
        """Record ``mtu`` toward ``dst`` when it lowers the current path MTU (an error
        reporting a larger one changes nothing: RFC 1191 §6.1, RFC 8201 §4); returns the
        new path MTU, or None when nothing changed."""
        current = min(self.get(dst, now) or link_mtu, link_mtu)
        if mtu >= current:
            return None
        if dst not in self._entries and len(self._entries) >= self._limit:
            self._entries.pop(next(iter(self._entries)))  # the oldest entry
        self._entries[dst] = (mtu, now + PMTU_AGE_NS)
        return mtu

    def __len__(self) -> int:
        return len(self._entries)
