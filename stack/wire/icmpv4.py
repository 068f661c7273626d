"""ICMP for IPv4 (RFC 792, RFC 1122 §3.2.2): checked parsing and emitting, echo and error
messages.

Every message is type, code, checksum and four more bytes (``rest``: identifier and
sequence number of an echo, the next-hop MTU of "fragmentation needed" (RFC 1191 §4), the
pointer of a parameter problem, zero otherwise) followed by the ``payload``: the echo data,
or the quoted start of the datagram that caused an error. The checksum covers the whole
ICMP message (RFC 792, no pseudo header).

How much of the original datagram an error quotes: RFC 792 asks for its IP header and the
first 64 bits of its data (RFC 1122 §3.2.2: "more than 8 octets MAY be sent"); RFC 1812
§4.3.2.3 asks for as much as fits without the ICMP datagram exceeding 576 bytes.
The builders here quote that much, assuming our own IP header carries no options
(:data:`MAX_QUOTE`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from stack.wire.checksum import internet_checksum
from virtio.errors import WireError

HEADER_LEN = 8
"""Type, code, checksum and the four bytes of ``rest``."""
MAX_ERROR_DATAGRAM = 576
"""RFC 1812 §4.3.2.3: an ICMP error datagram (IP header included) is at most 576 bytes."""
MAX_QUOTE = MAX_ERROR_DATAGRAM - 20 - HEADER_LEN
"""Quoted bytes of the original datagram in an error we build (an option-less IP header)."""
OFF_CHECKSUM = 2

_HEADER = struct.Struct("!BBH4s")
_ECHO = struct.Struct("!HH")


class Icmpv4Type(IntEnum):
    ECHO_REPLY = 0
    DEST_UNREACHABLE = 3
    SOURCE_QUENCH = 4
    """Deprecated by RFC 6633; still an error message for the "never answer an error" rule."""
    REDIRECT = 5
    ECHO_REQUEST = 8
    TIME_EXCEEDED = 11
    PARAMETER_PROBLEM = 12
    TIMESTAMP = 13
    TIMESTAMP_REPLY = 14


ERROR_TYPES = frozenset({Icmpv4Type.DEST_UNREACHABLE, Icmpv4Type.SOURCE_QUENCH,
                         Icmpv4Type.REDIRECT, Icmpv4Type.TIME_EXCEEDED,
                         Icmpv4Type.PARAMETER_PROBLEM})
"""The ICMP error messages (RFC 1122 §3.2.2): they quote a datagram, and no ICMP error is
ever sent about one of them."""


class UnreachableCode(IntEnum):
    """Destination unreachable codes: RFC 792 (0-5), RFC 1122 §3.2.2.1 (6-12), RFC 1812
    §5.2.7.1 (13-15)."""

    NET = 0
    HOST = 1
    PROTOCOL = 2
    PORT = 3
    FRAG_NEEDED = 4
    """Fragmentation needed and DF set; ``rest`` carries the next-hop MTU (RFC 1191 §4)."""
    SOURCE_ROUTE_FAILED = 5
    NET_UNKNOWN = 6
    HOST_UNKNOWN = 7
    HOST_ISOLATED = 8
    NET_PROHIBITED = 9
    HOST_PROHIBITED = 10
    NET_TOS = 11
    HOST_TOS = 12
    ADMIN_PROHIBITED = 13
    HOST_PRECEDENCE = 14
    PRECEDENCE_CUTOFF = 15


class TimeExceededCode(IntEnum):
    """RFC 792, "Time Exceeded Message"."""

    TTL = 0
    REASSEMBLY = 1
    """Fragment reassembly time exceeded (sent only when fragment zero arrived)."""


@dataclass(frozen=True, slots=True)
class Icmpv4Message:
    type: int
    code: int
    rest: bytes
    """The four bytes after the checksum."""
    payload: bytes

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> Icmpv4Message:
        """Parse a whole ICMP message (the IP payload, trimmed to the IP total length) and
        verify its checksum (RFC 792). Unknown types and codes are parsed: RFC 1122
        §3.2.2 has the receiver ignore them, which is the caller's decision."""
        if len(data) < HEADER_LEN:
            raise WireError(f"ICMP message truncated: {len(data)} bytes, needs {HEADER_LEN}")
        if internet_checksum(data) != 0:
            raise WireError("bad ICMP checksum")
        kind, code, _csum, rest = _HEADER.unpack_from(data, 0)
        return cls(kind, code, bytes(rest), bytes(data[HEADER_LEN:]))

    def emit(self) -> bytes:
        """The message with its checksum computed."""
        if len(self.rest) != 4:
            raise ValueError("the ICMP header's rest is 4 bytes")
        if not 0 <= self.type <= 0xFF or not 0 <= self.code <= 0xFF:
            raise ValueError("ICMP type and code are 8 bits")
        raw = bytearray(_HEADER.pack(self.type, self.code, 0, self.rest))
        raw += self.payload
        struct.pack_into("!H", raw, OFF_CHECKSUM, internet_checksum(raw))
        return bytes(raw)

    @property
    def is_echo_request(self) -> bool:
        return self.type == Icmpv4Type.ECHO_REQUEST and self.code == 0

    @property
    def is_echo(self) -> bool:
        return self.type in (Icmpv4Type.ECHO_REQUEST, Icmpv4Type.ECHO_REPLY)

    @property
    def is_error(self) -> bool:
        return self.type in ERROR_TYPES

    @property
    def ident(self) -> int:
        """The identifier of an echo request or reply (RFC 792)."""
        if not self.is_echo:
            raise ValueError(f"ICMP type {self.type} is not an echo message")
        ident: int = _ECHO.unpack(self.rest)[0]
        return ident

    @property
    def seq(self) -> int:
        """The sequence number of an echo request or reply (RFC 792)."""
        if not self.is_echo:
            raise ValueError(f"ICMP type {self.type} is not an echo message")
        seq: int = _ECHO.unpack(self.rest)[1]
        return seq

    @property
    def next_hop_mtu(self) -> int:
        """The next-hop MTU of "fragmentation needed" (RFC 1191 §4); 0 from an old router
        that does not send it, and for any other message."""
        if self.type != Icmpv4Type.DEST_UNREACHABLE or self.code != UnreachableCode.FRAG_NEEDED:
            return 0
        return int.from_bytes(self.rest[2:4], "big")

    @property
    def pointer(self) -> int:
        """The octet a parameter problem points at (RFC 792)."""
        if self.type != Icmpv4Type.PARAMETER_PROBLEM:
            raise ValueError(f"ICMP type {self.type} is not a parameter problem")
        return self.rest[0]

    def quoted(self) -> bytes:
        """The quoted start of the offending datagram (its IP header first) of an error
        message."""
        if not self.is_error:
            raise ValueError(f"ICMP type {self.type} is not an error message")
        return self.payload


def echo_request(ident: int, seq: int, data: bytes = b"") -> Icmpv4Message:
    if not 0 <= ident <= 0xFFFF or not 0 <= seq <= 0xFFFF:
        raise ValueError("echo identifier and sequence number are 16 bits")
    return Icmpv4Message(Icmpv4Type.ECHO_REQUEST, 0, _ECHO.pack(ident, seq), data)


def echo_reply(request: Icmpv4Message) -> Icmpv4Message:
    """The reply to an echo request: same identifier, sequence number and data (RFC 792;
    RFC 1122 §3.2.2.6)."""
    if request.type != Icmpv4Type.ECHO_REQUEST:
        raise ValueError(f"ICMP type {request.type} is not an echo request")
    return Icmpv4Message(Icmpv4Type.ECHO_REPLY, 0, request.rest, request.payload)


def _quote(original_ip_packet: bytes | bytearray | memoryview) -> bytes:
    """The part of the original datagram an error quotes: at most :data:`MAX_QUOTE` bytes,
    and nothing past its IP total length (Ethernet padding) when that length is sane."""
    data = bytes(original_ip_packet)
    if len(data) >= 20 and data[0] >> 4 == 4:
        total = int.from_bytes(data[2:4], "big")
        if (data[0] & 0xF) * 4 <= total <= len(data):
            data = data[:total]
    return data[:MAX_QUOTE]


def dest_unreachable(
    code: int, original_ip_packet: bytes | bytearray | memoryview, next_hop_mtu: int = 0
) -> Icmpv4Message:
    """Destination unreachable quoting ``original_ip_packet`` (RFC 792, RFC 1812
    §4.3.2.3). ``next_hop_mtu`` goes into the low 16 bits of ``rest`` for
    :attr:`UnreachableCode.FRAG_NEEDED` (RFC 1191 §4)."""
    if not 0 <= next_hop_mtu <= 0xFFFF:
        raise ValueError("the next-hop MTU is 16 bits")
    if next_hop_mtu and code != UnreachableCode.FRAG_NEEDED:
        raise ValueError("only 'fragmentation needed' carries a next-hop MTU")
    rest = b"\0\0" + next_hop_mtu.to_bytes(2, "big")
    return Icmpv4Message(Icmpv4Type.DEST_UNREACHABLE, code, rest, _quote(original_ip_packet))


def time_exceeded(code: int, original_ip_packet: bytes | bytearray | memoryview) -> Icmpv4Message:
    """Time exceeded (RFC 792): TTL exceeded in transit (code 0), or reassembly time
    exceeded (code 1, quoting fragment zero, RFC 1122 §3.3.2)."""
    return Icmpv4Message(Icmpv4Type.TIME_EXCEEDED, code, bytes(4), _quote(original_ip_packet))


def parameter_problem(
    pointer: int, original_ip_packet: bytes | bytearray | memoryview
) -> Icmpv4Message:
    """Parameter problem pointing at octet ``pointer`` of the original datagram (RFC 792)."""
    if not 0 <= pointer <= 0xFF:
        raise ValueError("the parameter problem pointer is 8 bits")
    return Icmpv4Message(Icmpv4Type.PARAMETER_PROBLEM, 0, bytes([pointer, 0, 0, 0]),
                         _quote(original_ip_packet))


def _single_host(addr: bytes) -> bool:
    """RFC 1122 §3.2.1.3 / §3.2.2: not 0.0.0.0, not loopback, not a broadcast, not
    multicast (class D) or class E."""
    return addr[0] not in (0, 127) and addr[0] < 224


def may_send_error(original_ip_packet: bytes | bytearray | memoryview) -> bool:
    """Whether RFC 1122 §3.2.2 allows an ICMP error about ``original_ip_packet``, as far
    as the packet itself tells: not about an ICMP error message, a datagram to the limited
    broadcast or a multicast address, a non-initial fragment, or a datagram whose source
    is not a single host (zero, loopback, broadcast, multicast, class E). A packet too
    short to tell is not answered either.

    What the packet cannot tell is the caller's: a directed (subnet) broadcast
    destination and a frame received as a link-layer broadcast are not answered either.
    """
    data = bytes(original_ip_packet)
    if len(data) < 20 or data[0] >> 4 != 4:
        return False
    hlen = (data[0] & 0xF) * 4
    if hlen < 20:
        return False
    src, dst = data[12:16], data[16:20]
    if not _single_host(src) or dst == b"\xff" * 4 or 224 <= dst[0] < 240:
        return False
    frag_offset = int.from_bytes(data[6:8], "big") & 0x1FFF
    if frag_offset:
        return False
    if data[9] == 1:  # ICMP: never about an error message
        if len(data) < hlen + 1:
            return False
        return data[hlen] not in ERROR_TYPES
    return True
