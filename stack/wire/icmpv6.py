"""ICMP for IPv6 (RFC 4443): checked parsing and emitting, echo and error messages.

A message is type, code and checksum followed by the ``body`` (RFC 4443 §2.1): for echo
the identifier, sequence number and data (§4.1, §4.2); for an error four bytes (unused,
the MTU of "packet too big", the pointer of a parameter problem) and then as much of the
invoking packet as fits without the error exceeding the IPv6 minimum MTU, 1280 bytes
(§2.4(c); :data:`MAX_QUOTE`). The checksum covers the IPv6 pseudo header (RFC 8200 §8.1,
next header 58) and the whole message (RFC 4443 §2.3), so :meth:`Icmpv6Message.parse` and
:meth:`Icmpv6Message.emit` take the source and destination addresses.

Neighbor Discovery messages (types 133-137) are :class:`Icmpv6Message` values too; their
bodies are read and written by :mod:`stack.wire.ndp`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from stack.wire.checksum import internet_checksum, pseudo_header_sum_v6
from stack.wire.ipv6 import FragmentHeader, walk_extension_headers
from virtio.errors import WireError

NEXT_HEADER = 58
"""IPv6 next header value of ICMPv6."""
HEADER_LEN = 4
"""Type, code and checksum; everything after is the body."""
OFF_CHECKSUM = 2
MIN_MTU = 1280
"""RFC 8200 §5: the IPv6 minimum link MTU."""
MAX_QUOTE = MIN_MTU - 40 - HEADER_LEN - 4
"""Invoking-packet bytes an error we build quotes (RFC 4443 §2.4(c)): 1280 minus our IPv6
header, the ICMPv6 header and the four-byte field before the quote."""

_HEADER = struct.Struct("!BBH")
_ECHO = struct.Struct("!HH")
_WORD = struct.Struct("!I")


class Icmpv6Type(IntEnum):
    DEST_UNREACHABLE = 1
    PACKET_TOO_BIG = 2
    TIME_EXCEEDED = 3
    PARAMETER_PROBLEM = 4
    ECHO_REQUEST = 128
    ECHO_REPLY = 129
    ROUTER_SOLICITATION = 133
    ROUTER_ADVERTISEMENT = 134
    NEIGHBOR_SOLICITATION = 135
    NEIGHBOR_ADVERTISEMENT = 136
    REDIRECT = 137


class DestUnreachableCode(IntEnum):
    """RFC 4443 §3.1."""

    NO_ROUTE = 0
    ADMIN_PROHIBITED = 1
    BEYOND_SCOPE = 2
    ADDRESS_UNREACHABLE = 3
    PORT_UNREACHABLE = 4
    SOURCE_POLICY_FAILED = 5
    REJECT_ROUTE = 6


class TimeExceededCode(IntEnum):
    """RFC 4443 §3.3."""

    HOP_LIMIT = 0
    REASSEMBLY = 1
    """Fragment reassembly time exceeded (RFC 8200 §4.5: only when fragment zero arrived)."""


class ParameterProblemCode(IntEnum):
    """RFC 4443 §3.4; code 3 from RFC 7112 §5."""

    ERRONEOUS_HEADER = 0
    UNRECOGNIZED_NEXT_HEADER = 1
    UNRECOGNIZED_OPTION = 2
    INCOMPLETE_HEADER_CHAIN = 3


_FIXED_WORD_TYPES = frozenset({Icmpv6Type.DEST_UNREACHABLE, Icmpv6Type.PACKET_TOO_BIG,
                               Icmpv6Type.TIME_EXCEEDED, Icmpv6Type.PARAMETER_PROBLEM,
                               Icmpv6Type.ECHO_REQUEST, Icmpv6Type.ECHO_REPLY})
"""Types whose body starts with a four-byte field: shorter bodies are malformed."""


@dataclass(frozen=True, slots=True)
class Icmpv6Message:
    type: int
    code: int
    body: bytes
    """Everything after the checksum."""

    @classmethod
    def parse(
        cls, data: bytes | bytearray | memoryview, src: bytes, dst: bytes
    ) -> Icmpv6Message:
        """Parse a whole ICMPv6 message (the upper-layer payload, trimmed to its length)
        sent from ``src`` to ``dst`` (the final destination when a Routing header is
        present) and verify its checksum (RFC 4443 §2.3, RFC 8200 §8.1)."""
        if len(data) < HEADER_LEN:
            raise WireError(f"ICMPv6 message truncated: {len(data)} bytes")
        kind, code, _csum = _HEADER.unpack_from(data, 0)
        if kind in _FIXED_WORD_TYPES and len(data) < HEADER_LEN + 4:
            raise WireError(f"ICMPv6 type {kind} message truncated: {len(data)} bytes, needs 8")
        if internet_checksum(data, pseudo_header_sum_v6(src, dst, NEXT_HEADER, len(data))) != 0:
            raise WireError("bad ICMPv6 checksum")
        return cls(kind, code, bytes(data[HEADER_LEN:]))

    def emit(self, src: bytes, dst: bytes) -> bytes:
        """The message with its checksum computed over the pseudo header of ``src`` →
        ``dst``."""
        if not 0 <= self.type <= 0xFF or not 0 <= self.code <= 0xFF:
            raise ValueError("ICMPv6 type and code are 8 bits")
        raw = bytearray(_HEADER.pack(self.type, self.code, 0))
        raw += self.body
        seed = pseudo_header_sum_v6(src, dst, NEXT_HEADER, len(raw))
        struct.pack_into("!H", raw, OFF_CHECKSUM, internet_checksum(raw, seed))
        return bytes(raw)

    @property
    def is_error(self) -> bool:
        """Types 0-127 are error messages (RFC 4443 §2.1)."""
        return self.type < 128

    @property
    def is_echo_request(self) -> bool:
        return self.type == Icmpv6Type.ECHO_REQUEST and self.code == 0

    def _word(self, *kinds: int) -> bytes:
        if self.type not in kinds:
            raise ValueError(f"ICMPv6 type {self.type} has no such field")
        if len(self.body) < 4:
            raise ValueError(f"ICMPv6 type {self.type} body shorter than 4 bytes")
        return self.body[:4]

    @property
    def ident(self) -> int:
        """Identifier of an echo request or reply (RFC 4443 §4.1)."""
        ident: int = _ECHO.unpack(self._word(Icmpv6Type.ECHO_REQUEST, Icmpv6Type.ECHO_REPLY))[0]
        return ident

    @property
    def seq(self) -> int:
        """Sequence number of an echo request or reply (RFC 4443 §4.1)."""
        seq: int = _ECHO.unpack(self._word(Icmpv6Type.ECHO_REQUEST, Icmpv6Type.ECHO_REPLY))[1]
        return seq

    @property
    def data(self) -> bytes:
        """The data of an echo request or reply."""
        self._word(Icmpv6Type.ECHO_REQUEST, Icmpv6Type.ECHO_REPLY)
        return self.body[4:]

    @property
    def mtu(self) -> int:
        """The MTU of "packet too big" (RFC 4443 §3.2)."""
        mtu: int = _WORD.unpack(self._word(Icmpv6Type.PACKET_TOO_BIG))[0]
        return mtu

    @property
    def pointer(self) -> int:
        """The offset in the invoking packet a parameter problem points at (§3.4)."""
        pointer: int = _WORD.unpack(self._word(Icmpv6Type.PARAMETER_PROBLEM))[0]
        return pointer

    def quoted(self) -> bytes:
        """The quoted start of the invoking packet (IPv6 header first) of an error."""
        if not self.is_error:
            raise ValueError(f"ICMPv6 type {self.type} is not an error message")
        return self.body[4:]


def echo_request(ident: int, seq: int, data: bytes = b"") -> Icmpv6Message:
    if not 0 <= ident <= 0xFFFF or not 0 <= seq <= 0xFFFF:
        raise ValueError("echo identifier and sequence number are 16 bits")
    return Icmpv6Message(Icmpv6Type.ECHO_REQUEST, 0, _ECHO.pack(ident, seq) + data)


def echo_reply(request: Icmpv6Message) -> Icmpv6Message:
    """The reply to an echo request: identifier, sequence number and data copied (RFC 4443
    §4.2)."""
    if request.type != Icmpv6Type.ECHO_REQUEST:
        raise ValueError(f"ICMPv6 type {request.type} is not an echo request")
    return Icmpv6Message(Icmpv6Type.ECHO_REPLY, 0, request.body)


def _quote(original_packet: bytes | bytearray | memoryview) -> bytes:
    """At most :data:`MAX_QUOTE` bytes of the invoking packet, nothing past its IPv6
    payload length (Ethernet padding) when that length is non-zero and present."""
    data = bytes(original_packet)
    if len(data) >= 40 and data[0] >> 4 == 6:
        plen = int.from_bytes(data[4:6], "big")
        if plen and 40 + plen <= len(data):
            data = data[:40 + plen]
    return data[:MAX_QUOTE]


def _error(kind: int, code: int, word: int, original_packet: bytes | bytearray | memoryview
           ) -> Icmpv6Message:
    if not 0 <= code <= 0xFF or not 0 <= word <= 0xFFFFFFFF:
        raise ValueError("ICMPv6 code is 8 bits and the error's first field 32")
    return Icmpv6Message(kind, code, _WORD.pack(word) + _quote(original_packet))


def dest_unreachable(code: int, original_packet: bytes | bytearray | memoryview) -> Icmpv6Message:
    """Destination unreachable (RFC 4443 §3.1) quoting the invoking packet."""
    return _error(Icmpv6Type.DEST_UNREACHABLE, code, 0, original_packet)


def packet_too_big(mtu: int, original_packet: bytes | bytearray | memoryview) -> Icmpv6Message:
    """Packet too big (RFC 4443 §3.2) with the next-hop link's MTU."""
    return _error(Icmpv6Type.PACKET_TOO_BIG, 0, mtu, original_packet)


def time_exceeded(code: int, original_packet: bytes | bytearray | memoryview) -> Icmpv6Message:
    """Time exceeded (RFC 4443 §3.3): hop limit (code 0) or reassembly (code 1)."""
    return _error(Icmpv6Type.TIME_EXCEEDED, code, 0, original_packet)


def parameter_problem(
    code: int, pointer: int, original_packet: bytes | bytearray | memoryview
) -> Icmpv6Message:
    """Parameter problem (RFC 4443 §3.4) pointing at octet ``pointer`` of the invoking
    packet."""
    return _error(Icmpv6Type.PARAMETER_PROBLEM, code, pointer, original_packet)


def may_send_error(original_packet: bytes | bytearray | memoryview, kind: int, code: int) -> bool:
    """Whether RFC 4443 §2.4(e) allows an error of type ``kind``/``code`` about
    ``original_packet``, as far as the packet tells: not about an ICMPv6 error or a
    Redirect (e.1, e.2), not about a packet to a multicast address except "packet too big"
    and parameter problem code 2 (e.3), not about a packet whose source is the
    unspecified or a multicast address (e.6). A packet too short to have an IPv6 header
    is not answered.

    Left to the caller: frames received as link-layer multicast or broadcast (e.4, e.5),
    anycast sources, and rate limiting (§2.4(f)). An extension header chain too broken
    to walk does not prevent an error (parameter problem code 3, RFC 7112, is about
    exactly such packets).
    """
    data = bytes(original_packet)
    if len(data) < 40 or data[0] >> 4 != 6:
        return False
    src, dst = data[8:24], data[24:40]
    if src == bytes(16) or src[0] == 0xFF:
        return False
    if dst[0] == 0xFF and not (
            kind == Icmpv6Type.PACKET_TOO_BIG
            or (kind == Icmpv6Type.PARAMETER_PROBLEM
                and code == ParameterProblemCode.UNRECOGNIZED_OPTION)):
        return False
    try:
        chain = walk_extension_headers(data, data[6])
        frag = chain.find(44)
        if frag is not None and FragmentHeader.parse(data[frag.offset:]).offset != 0:
            return True  # a non-initial fragment: its upper-layer header is elsewhere
    except WireError:
        return True
    if chain.upper_protocol == NEXT_HEADER and chain.upper_offset < len(data):
        inner = data[chain.upper_offset]
        return inner >= 128 and inner != Icmpv6Type.REDIRECT
    return True
