"""Explicit Congestion Notification in the IP header (RFC 3168 §5).

The ECN field is the two low bits of the IPv4 TOS octet and of the IPv6 Traffic Class.
A router under congestion turns ECT(0)/ECT(1) into CE instead of dropping the packet;
Not-ECT packets it would drop (RFC 3168 §5: never mark a Not-ECT packet).
"""

from __future__ import annotations

from enum import IntEnum

from stack.wire.checksum import internet_checksum
from stack.wire.ethernet import EtherType, link_header_len


class Ecn(IntEnum):
    """The ECN codepoints (RFC 3168 §5)."""

    NOT_ECT = 0b00
    ECT1 = 0b01
    ECT0 = 0b10
    CE = 0b11


def frame_ecn(frame: bytes | bytearray | memoryview) -> int | None:
    """The ECN codepoint of an Ethernet frame's IPv4 or IPv6 packet (None: no IP header)."""
    l3 = link_header_len(frame)
    if len(frame) < l3 + 2:
        return None
    ethertype = frame[l3 - 2] << 8 | frame[l3 - 1]
    if ethertype == EtherType.IPV4 and frame[l3] >> 4 == 4:
        return frame[l3 + 1] & 0b11
    if ethertype == EtherType.IPV6 and frame[l3] >> 4 == 6:
        return (frame[l3 + 1] >> 4) & 0b11
    return None


def mark_ce(frame: bytes) -> bytes | None:
    """``frame`` with its ECT(0)/ECT(1) packet marked CE, as a congested router does
    (RFC 3168 §5), the IPv4 header checksum updated; None when the frame carries no
    ECN-capable IPv4/IPv6 packet (Not-ECT, already CE, not IP, or truncated)."""
    ecn = frame_ecn(frame)
    if ecn not in (Ecn.ECT0, Ecn.ECT1):
        return None
    l3 = link_header_len(frame)
    out = bytearray(frame)
    if out[l3] >> 4 == 4:
        ihl = (out[l3] & 0x0F) * 4
        if ihl < 20 or len(out) < l3 + ihl:
            return None
        out[l3 + 1] |= Ecn.CE
        out[l3 + 10:l3 + 12] = b"\0\0"
        out[l3 + 10:l3 + 12] = internet_checksum(out[l3:l3 + ihl]).to_bytes(2, "big")
    else:
        out[l3 + 1] |= Ecn.CE << 4
    return bytes(out)
