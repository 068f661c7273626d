"""IPv4 headers (RFC 791): checked parsing and emitting, with the header checksum.

The field offsets are module constants: the device's offload engines write per-segment
fields (total length, identification, flags/fragment offset, header checksum) at these
offsets in numpy arrays rather than restating them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from stack.wire.checksum import internet_checksum
from virtio.errors import WireError

VERSION = 4
HEADER_LEN = 20
"""A header without options (IHL 5)."""
MAX_HEADER_LEN = 60
MAX_PACKET_LEN = 0xFFFF

# Field offsets from the start of the header
OFF_VERSION_IHL = 0
OFF_TOS = 1
OFF_TOTAL_LEN = 2
OFF_IDENT = 4
OFF_FLAGS_FRAG = 6
OFF_TTL = 8
OFF_PROTOCOL = 9
OFF_CHECKSUM = 10
OFF_SRC = 12
OFF_DST = 16

# Flags and fragment offset (one 16-bit field)
FLAG_RESERVED = 0x8000
FLAG_DF = 0x4000
FLAG_MF = 0x2000
FRAG_OFFSET_MASK = 0x1FFF
FRAG_UNIT = 8
"""The fragment offset counts 8-octet units (RFC 791 §3.1)."""

_FIXED = struct.Struct("!BBHHHBBH4s4s")


class IpProtocol(IntEnum):
    """IP protocol numbers (IANA), also the IPv6 next-header values."""

    HOPOPT = 0
    ICMP = 1
    TCP = 6
    UDP = 17
    IPV6_ROUTE = 43
    IPV6_FRAG = 44
    ESP = 50
    AH = 51
    ICMPV6 = 58
    IPV6_NONXT = 59
    IPV6_OPTS = 60


def header_checksum(header: bytes | bytearray | memoryview) -> int:
    """The checksum to store in a header whose checksum field holds zero (RFC 791 §3.1)."""
    return internet_checksum(header)


@dataclass(frozen=True, slots=True)
class Ipv4Header:
    """An IPv4 header. ``checksum=None`` on emit means "compute it"."""

    src: bytes
    dst: bytes
    protocol: int
    total_length: int
    ident: int = 0
    ttl: int = 64
    tos: int = 0
    flags: int = 0
    """FLAG_DF / FLAG_MF / FLAG_RESERVED bits, in their field position."""
    frag_offset: int = 0
    """In 8-octet units."""
    options: bytes = b""
    checksum: int | None = None

    @property
    def header_len(self) -> int:
        return HEADER_LEN + len(self.options)

    @property
    def ihl(self) -> int:
        return self.header_len // 4

    @property
    def payload_len(self) -> int:
        return self.total_length - self.header_len

    @property
    def dont_fragment(self) -> bool:
        return bool(self.flags & FLAG_DF)

    @property
    def more_fragments(self) -> bool:
        return bool(self.flags & FLAG_MF)

    @property
    def is_fragment(self) -> bool:
        return self.more_fragments or self.frag_offset != 0

    @classmethod
    def parse(
        cls,
        data: bytes | bytearray | memoryview,
        *,
        verify_checksum: bool = False,
        allow_zero_length: bool = False,
    ) -> Ipv4Header:
        """Parse the header at the start of ``data``.

        Raises :class:`WireError` on a truncated header, a version other than 4, an IHL
        below 5, a total length shorter than the header or longer than ``data`` and
        (with ``verify_checksum``) a bad header checksum. ``allow_zero_length`` accepts
        total length 0 (the convention for packets over 65535 bytes, Linux BIG TCP).
        """
        if len(data) < HEADER_LEN:
            raise WireError(f"IPv4 header truncated: {len(data)} bytes")
        (ver_ihl, tos, total, ident, flags_frag, ttl, proto, csum, src, dst) = _FIXED.unpack_from(
            data, 0
        )
        version, ihl = ver_ihl >> 4, ver_ihl & 0xF
        if version != VERSION:
            raise WireError(f"IP version {version} in an IPv4 header")
        if ihl < 5:
            raise WireError(f"IPv4 IHL {ihl} is below 5")
        hlen = ihl * 4
        if len(data) < hlen:
            raise WireError(f"IPv4 header of {hlen} bytes truncated to {len(data)}")
        if total == 0 and allow_zero_length:
            pass
        elif total < hlen:
            raise WireError(f"IPv4 total length {total} is shorter than the {hlen}-byte header")
        elif total > len(data):
            raise WireError(f"IPv4 total length {total} exceeds the {len(data)} bytes present")
        if verify_checksum and internet_checksum(data[:hlen]) != 0:
            raise WireError("IPv4 header checksum mismatch")
        return cls(
            src=bytes(src),
            dst=bytes(dst),
            protocol=proto,
            total_length=total,
            ident=ident,
            ttl=ttl,
            tos=tos,
            flags=flags_frag & ~FRAG_OFFSET_MASK,
            frag_offset=flags_frag & FRAG_OFFSET_MASK,
            options=bytes(data[HEADER_LEN:hlen]),
            checksum=csum,
        )

    def emit(self) -> bytes:
        """The header bytes, with the checksum computed when ``checksum`` is None."""
        if len(self.src) != 4 or len(self.dst) != 4:
            raise ValueError("IPv4 addresses are 4 bytes")
        if len(self.options) % 4 or len(self.options) > MAX_HEADER_LEN - HEADER_LEN:
            raise ValueError("IPv4 options are a multiple of 4 bytes, at most 40")
        if self.flags & FRAG_OFFSET_MASK or not 0 <= self.frag_offset <= FRAG_OFFSET_MASK:
            raise ValueError("flags and fragment offset out of range")
        fields = (
            (VERSION << 4) | self.ihl,
            self.tos,
            self.total_length,
            self.ident,
            self.flags | self.frag_offset,
            self.ttl,
            self.protocol,
            0,
            self.src,
            self.dst,
        )
        try:
            raw = bytearray(_FIXED.pack(*fields))
        except struct.error as exc:
            raise ValueError(f"IPv4 field out of range: {exc}") from exc
        raw += self.options
        csum = header_checksum(raw) if self.checksum is None else self.checksum
        struct.pack_into("!H", raw, OFF_CHECKSUM, csum)
        return bytes(raw)
