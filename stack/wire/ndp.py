"""Neighbor Discovery for IPv6 (RFC 4861): neighbor solicitations and advertisements, their
link-layer address options, the receive validation rules, and the address mappings NDP
over Ethernet needs.

The messages are :class:`~stack.wire.icmpv6.Icmpv6Message` values (types 135 and 136):
:meth:`NeighborSolicitation.to_message` / :meth:`NeighborSolicitation.from_message` convert
(the ICMPv6 checksum is the ICMPv6 layer's). Options (RFC 4861 §4.6) are type, length in
units of 8 octets and data; the source (type 1) and target (type 2) link-layer address
options over Ethernet are exactly 8 octets with a 6-byte address (RFC 2464 §6).
Unrecognized options are skipped (§4.4, §4.6); an option of length 0 is an error (§4.6).

Address mappings: solicited-node multicast (RFC 4291 §2.7.1), IPv6 multicast over
Ethernet (RFC 2464 §7), link-local address from the MAC by modified EUI-64 (RFC 4291
§2.5.1 and Appendix A, RFC 2464 §4-5).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from stack.wire.icmpv6 import Icmpv6Message, Icmpv6Type
from virtio.errors import WireError

HOP_LIMIT = 255
"""Hop limit of every ND message, checked on receipt (§7.1.1, §7.1.2): proof that the
sender is on-link."""
UNSPECIFIED = bytes(16)
ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")
ALL_ROUTERS = bytes.fromhex("ff020000000000000000000000000002")
SOLICITED_NODE_PREFIX = bytes.fromhex("ff0200000000000000000001ff")
"""ff02::1:ff00:0/104 (RFC 4291 §2.7.1)."""
LINK_LOCAL_PREFIX = bytes.fromhex("fe80000000000000")
"""fe80::/64 (RFC 4291 §2.5.6)."""
MIN_LENGTH = 24
"""ICMP length of an NS or NA: header, reserved/flags and target (§7.1.1, §7.1.2)."""
_FIXED_BODY = MIN_LENGTH - 4
"""Body bytes (after the ICMPv6 checksum) before the options."""
LLADDR_OPTION_LEN = 8

FLAG_ROUTER = 0x80
FLAG_SOLICITED = 0x40
FLAG_OVERRIDE = 0x20
"""NA flags in the first byte after the checksum (§4.4)."""


class OptionType(IntEnum):
    """ND option types (RFC 4861 §4.6; nonce RFC 3971 §5.3.2)."""

    SOURCE_LLADDR = 1
    TARGET_LLADDR = 2
    PREFIX_INFORMATION = 3
    REDIRECTED_HEADER = 4
    MTU = 5
    NONCE = 14


def is_multicast(addr: bytes) -> bool:
    """ff00::/8 (RFC 4291 §2.7)."""
    return addr[:1] == b"\xff"


def is_solicited_node(addr: bytes) -> bool:
    return len(addr) == 16 and addr.startswith(SOLICITED_NODE_PREFIX)


def _check_addr(addr: bytes) -> None:
    if len(addr) != 16:
        raise ValueError("IPv6 addresses are 16 bytes")


def _check_mac(mac: bytes) -> None:
    if len(mac) != 6:
        raise ValueError("Ethernet addresses are 6 bytes")


def solicited_node_multicast(addr: bytes) -> bytes:
    """ff02::1:ffXX:XXXX from the low 24 bits of ``addr`` (RFC 4291 §2.7.1)."""
    _check_addr(addr)
    return SOLICITED_NODE_PREFIX + addr[13:]


def multicast_mac(ipv6_multicast: bytes) -> bytes:
    """33:33 and the last 32 bits of an IPv6 multicast address (RFC 2464 §7)."""
    _check_addr(ipv6_multicast)
    if not is_multicast(ipv6_multicast):
        raise ValueError("not an IPv6 multicast address")
    return b"\x33\x33" + ipv6_multicast[12:]


def interface_id_from_mac(mac: bytes) -> bytes:
    """The modified EUI-64 interface identifier of a 48-bit MAC: ff:fe inserted in the
    middle and the universal/local bit inverted (RFC 4291 Appendix A, RFC 2464 §4)."""
    _check_mac(mac)
    return bytes([mac[0] ^ 0x02]) + mac[1:3] + b"\xff\xfe" + mac[3:]


def link_local_from_mac(mac: bytes) -> bytes:
    """fe80::/64 plus the modified EUI-64 of ``mac`` (RFC 2464 §5, RFC 4291 §2.5.6)."""
    return LINK_LOCAL_PREFIX + interface_id_from_mac(mac)


def parse_options(data: bytes) -> list[tuple[int, bytes]]:
    """The options of an ND message as ``(type, bytes after type and length)``, in order
    (RFC 4861 §4.6). :class:`WireError` on a length of 0 or an option past the end."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise WireError(f"ND option truncated at offset {pos}")
        kind, units = data[pos], data[pos + 1]
        if units == 0:
            raise WireError(f"ND option type {kind} has length 0 (RFC 4861 §4.6)")
        end = pos + units * 8
        if end > len(data):
            raise WireError(f"ND option type {kind} of {units * 8} bytes runs past the message")
        out.append((kind, data[pos + 2:end]))
        pos = end
    return out


def _lladdr(options: list[tuple[int, bytes]], kind: OptionType) -> bytes | None:
    """The first link-layer address option of ``kind`` (later duplicates are ignored, as
    Linux's ndisc_parse_options does)."""
    for okind, value in options:
        if okind == kind:
            if len(value) != LLADDR_OPTION_LEN - 2:
                raise WireError(f"link-layer address option of {len(value) + 2} bytes; "
                                "Ethernet's is 8 (RFC 2464 §6)")
            return value
    return None


def _lladdr_option(kind: OptionType, mac: bytes | None) -> bytes:
    if mac is None:
        return b""
    _check_mac(mac)
    return bytes([kind, 1]) + mac


def _body(msg: Icmpv6Message, kind: Icmpv6Type, name: str) -> bytes:
    if msg.type != kind:
        raise WireError(f"ICMPv6 type {msg.type} is not a {name} ({int(kind)})")
    if len(msg.body) < _FIXED_BODY:
        raise WireError(f"{name} of {len(msg.body) + 4} bytes is shorter than {MIN_LENGTH}")
    return msg.body


@dataclass(frozen=True, slots=True)
class NeighborSolicitation:
    """RFC 4861 §4.3."""

    target: bytes
    source_lladdr: bytes | None = None

    def to_message(self) -> Icmpv6Message:
        _check_addr(self.target)
        body = bytes(4) + self.target + _lladdr_option(OptionType.SOURCE_LLADDR,
                                                        self.source_lladdr)
        return Icmpv6Message(Icmpv6Type.NEIGHBOR_SOLICITATION, 0, body)

    @classmethod
    def from_message(cls, msg: Icmpv6Message) -> NeighborSolicitation:
        """Read an NS (the reserved field is ignored, §4.3). Only the format is checked
        here; :func:`validate_ns` applies the rest of §7.1.1."""
        body = _body(msg, Icmpv6Type.NEIGHBOR_SOLICITATION, "neighbor solicitation")
        options = parse_options(body[_FIXED_BODY:])
        return cls(body[4:20], _lladdr(options, OptionType.SOURCE_LLADDR))


@dataclass(frozen=True, slots=True)
class NeighborAdvertisement:
    """RFC 4861 §4.4."""

    target: bytes
    router: bool
    solicited: bool
    override: bool
    target_lladdr: bytes | None = None

    def to_message(self) -> Icmpv6Message:
        _check_addr(self.target)
        flags = ((FLAG_ROUTER if self.router else 0) | (FLAG_SOLICITED if self.solicited else 0)
                 | (FLAG_OVERRIDE if self.override else 0))
        body = bytes([flags, 0, 0, 0]) + self.target + _lladdr_option(
            OptionType.TARGET_LLADDR, self.target_lladdr)
        return Icmpv6Message(Icmpv6Type.NEIGHBOR_ADVERTISEMENT, 0, body)

    @classmethod
    def from_message(cls, msg: Icmpv6Message) -> NeighborAdvertisement:
        """Read an NA (reserved bits ignored, §4.4). Only the format is checked here;
        :func:`validate_na` applies the rest of §7.1.2."""
        body = _body(msg, Icmpv6Type.NEIGHBOR_ADVERTISEMENT, "neighbor advertisement")
        options = parse_options(body[_FIXED_BODY:])
        flags = body[0]
        return cls(body[4:20], bool(flags & FLAG_ROUTER), bool(flags & FLAG_SOLICITED),
                   bool(flags & FLAG_OVERRIDE), _lladdr(options, OptionType.TARGET_LLADDR))


def _common_checks(msg: Icmpv6Message, hop_limit: int, name: str) -> None:
    if hop_limit != HOP_LIMIT:
        raise WireError(f"{name} with hop limit {hop_limit}, not 255 (RFC 4861 §7.1)")
    if msg.code != 0:
        raise WireError(f"{name} with ICMP code {msg.code}, not 0 (RFC 4861 §7.1)")


def validate_ns(msg: Icmpv6Message, src: bytes, dst: bytes, hop_limit: int
                ) -> NeighborSolicitation:
    """Apply the receive checks of RFC 4861 §7.1.1 to a neighbor solicitation whose
    checksum :meth:`Icmpv6Message.parse` already verified; return it, or raise
    :class:`WireError` naming the broken rule: hop limit 255, code 0, ICMP length at least
    24, every option of non-zero length, target not multicast, and from the unspecified
    source (duplicate address detection) a solicited-node multicast destination and no
    source link-layer address option."""
    _check_addr(src)
    _check_addr(dst)
    if msg.type != Icmpv6Type.NEIGHBOR_SOLICITATION:
        raise WireError(f"ICMPv6 type {msg.type} is not a neighbor solicitation")
    _common_checks(msg, hop_limit, "neighbor solicitation")
    ns = NeighborSolicitation.from_message(msg)
    if is_multicast(ns.target):
        raise WireError("neighbor solicitation for a multicast target (RFC 4861 §7.1.1)")
    if src == UNSPECIFIED:
        if not is_solicited_node(dst):
            raise WireError("neighbor solicitation from :: not sent to a solicited-node "
                            "multicast address (RFC 4861 §7.1.1)")
        if ns.source_lladdr is not None:
            raise WireError("neighbor solicitation from :: with a source link-layer "
                            "address option (RFC 4861 §7.1.1)")
    return ns


def validate_na(msg: Icmpv6Message, src: bytes, dst: bytes, hop_limit: int
                ) -> NeighborAdvertisement:
    """Apply the receive checks of RFC 4861 §7.1.2 to a neighbor advertisement whose
    checksum was verified; return it, or raise :class:`WireError` naming the broken rule:
    hop limit 255, code 0, ICMP length at least 24, target not multicast, Solicited flag
    clear when sent to a multicast destination, every option of non-zero length."""
    _check_addr(src)
    _check_addr(dst)
    if msg.type != Icmpv6Type.NEIGHBOR_ADVERTISEMENT:
        raise WireError(f"ICMPv6 type {msg.type} is not a neighbor advertisement")
    _common_checks(msg, hop_limit, "neighbor advertisement")
    na = NeighborAdvertisement.from_message(msg)
    if is_multicast(na.target):
        raise WireError("neighbor advertisement for a multicast target (RFC 4861 §7.1.2)")
    if is_multicast(dst) and na.solicited:
        raise WireError("solicited neighbor advertisement sent to a multicast destination "
                        "(RFC 4861 §7.1.2)")
    return na
