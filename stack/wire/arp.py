"""ARP for IPv4 over Ethernet (RFC 826): checked parsing and emitting.

Only the one combination this stack speaks is accepted: hardware type 1 (Ethernet),
protocol type 0x0800 (IPv4), hardware length 6, protocol length 4 — RFC 826, "Packet
format". Any other is a :class:`WireError`, as are operations other than request and reply
(RARP runs on its own ethertype, RFC 903; InARP, RFC 2390, is not spoken here).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from virtio.errors import WireError

LENGTH = 28
"""An ARP packet for IPv4 over Ethernet; frames carrying it are padded to the Ethernet
minimum, so :meth:`ArpPacket.parse` accepts trailing bytes."""
HTYPE_ETHERNET = 1
PTYPE_IPV4 = 0x0800
HLEN_ETHERNET = 6
PLEN_IPV4 = 4

_PACKET = struct.Struct("!HHBBH6s4s6s4s")

UNKNOWN_MAC = bytes(6)
"""The target hardware address of a request: RFC 826 leaves it unspecified, RFC 5227
§2.1.1 says zero."""


class ArpOp(IntEnum):
    """``ar$op`` (RFC 826)."""

    REQUEST = 1
    REPLY = 2


@dataclass(frozen=True, slots=True)
class ArpPacket:
    op: ArpOp
    sender_mac: bytes
    sender_ip: bytes
    target_mac: bytes
    target_ip: bytes

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> ArpPacket:
        """Parse the packet at the start of ``data`` (an Ethernet payload: bytes past the
        28 of the packet are padding and ignored)."""
        if len(data) < LENGTH:
            raise WireError(f"ARP packet truncated: {len(data)} bytes, needs {LENGTH}")
        htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _PACKET.unpack_from(data, 0)
        if htype != HTYPE_ETHERNET:
            raise WireError(f"ARP hardware type {htype} is not Ethernet (1)")
        if ptype != PTYPE_IPV4:
            raise WireError(f"ARP protocol type {ptype:#06x} is not IPv4 (0x0800)")
        if hlen != HLEN_ETHERNET or plen != PLEN_IPV4:
            raise WireError(f"ARP address lengths {hlen}/{plen}, Ethernet/IPv4 needs 6/4")
        if op not in (ArpOp.REQUEST, ArpOp.REPLY):
            raise WireError(f"ARP operation {op} is neither request (1) nor reply (2)")
        return cls(ArpOp(op), bytes(sha), bytes(spa), bytes(tha), bytes(tpa))

    def emit(self) -> bytes:
        """The 28 bytes of the packet (no Ethernet padding)."""
        if len(self.sender_mac) != 6 or len(self.target_mac) != 6:
            raise ValueError("ARP hardware addresses are 6 bytes")
        if len(self.sender_ip) != 4 or len(self.target_ip) != 4:
            raise ValueError("ARP protocol addresses are 4 bytes")
        if self.op not in (ArpOp.REQUEST, ArpOp.REPLY):
            raise ValueError(f"ARP operation {self.op} is neither request nor reply")
        return _PACKET.pack(HTYPE_ETHERNET, PTYPE_IPV4, HLEN_ETHERNET, PLEN_IPV4, self.op,
                            self.sender_mac, self.sender_ip, self.target_mac, self.target_ip)

    @property
    def is_probe(self) -> bool:
        """An ARP probe (RFC 5227 §2.1.1): a request with sender IP 0.0.0.0. It must not
        update a neighbour cache."""
        return self.op == ArpOp.REQUEST and self.sender_ip == bytes(4)

    @property
    def is_gratuitous(self) -> bool:
        """A gratuitous ARP / announcement (RFC 5227 §2.3, RFC 5944 §4.6): sender and
        target IP are the same address."""
        return self.sender_ip == self.target_ip and self.sender_ip != bytes(4)


def request(sender_mac: bytes, sender_ip: bytes, target_ip: bytes) -> ArpPacket:
    """A request for ``target_ip`` (RFC 826; target hardware address zero, RFC 5227)."""
    return ArpPacket(ArpOp.REQUEST, sender_mac, sender_ip, UNKNOWN_MAC, target_ip)


def reply_to(request: ArpPacket, our_mac: bytes) -> ArpPacket:
    """The reply to ``request`` (RFC 826, "Packet reception": swap sender and target, put our
    hardware address in the sender field, set the opcode to reply). The caller has
    checked that ``request.target_ip`` is ours."""
    if request.op != ArpOp.REQUEST:
        raise ValueError("only an ARP request is answered")
    return ArpPacket(ArpOp.REPLY, our_mac, request.target_ip, request.sender_mac,
                     request.sender_ip)
