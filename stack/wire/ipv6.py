"""IPv6 headers (RFC 8200) and the walk over extension headers.

:func:`walk_extension_headers` follows the chain of hop-by-hop options, routing,
fragment and destination options headers (and AH, RFC 4302) to the upper-layer protocol
and its offset, recording each header it crossed. :class:`FragmentHeader` is the value
type of the fragment header (RFC 8200 §4.5). Field offsets are module constants used by
the device's offload engines.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from virtio.errors import WireError

VERSION = 6
HEADER_LEN = 40
MAX_PAYLOAD_LEN = 0xFFFF

# Field offsets from the start of the fixed header
OFF_VERSION_TC_FLOW = 0
OFF_PAYLOAD_LEN = 4
OFF_NEXT_HEADER = 6
OFF_HOP_LIMIT = 7
OFF_SRC = 8
OFF_DST = 24

_FIXED = struct.Struct("!IHBB16s16s")


class ExtHeader(IntEnum):
    """IPv6 extension header types (next-header values, RFC 8200 §4)."""

    HOP_BY_HOP = 0
    ROUTING = 43
    FRAGMENT = 44
    ESP = 50
    AH = 51
    NO_NEXT = 59
    DEST_OPTS = 60


EXTENSION_TYPES = frozenset({ExtHeader.HOP_BY_HOP, ExtHeader.ROUTING, ExtHeader.FRAGMENT,
                             ExtHeader.AH, ExtHeader.DEST_OPTS})
"""Headers :func:`walk_extension_headers` crosses (ESP and No Next Header end the walk)."""

# Fragment header (RFC 8200 §4.5)
FRAGMENT_HEADER_LEN = 8
FRAG_OFF_NEXT_HEADER = 0
FRAG_OFF_OFFSET_FLAGS = 2
FRAG_OFF_IDENT = 4
FRAG_MF = 0x0001
FRAG_OFFSET_MASK = 0xFFF8
"""The fragment offset in 8-octet units occupies the top 13 bits: as a byte count it is
the field value with the three low bits cleared."""

# Hop-by-hop / destination options (RFC 8200 §4.2)
OPT_PAD1 = 0
OPT_PADN = 1
OPT_JUMBO = 0xC2
"""Jumbo Payload option (RFC 2675)."""

_FRAG = struct.Struct("!BBHI")


@dataclass(frozen=True, slots=True)
class Ipv6Header:
    src: bytes
    dst: bytes
    next_header: int
    payload_length: int
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0

    @classmethod
    def parse(
        cls, data: bytes | bytearray | memoryview, *, allow_zero_length: bool = False
    ) -> Ipv6Header:
        """Parse the fixed header; :class:`WireError` when truncated, not version 6, or
        with a payload length beyond ``data`` (0 accepted with ``allow_zero_length``:
        jumbograms, RFC 2675, and the Linux BIG TCP convention)."""
        if len(data) < HEADER_LEN:
            raise WireError(f"IPv6 header truncated: {len(data)} bytes")
        vtf, plen, nxt, hops, src, dst = _FIXED.unpack_from(data, 0)
        if vtf >> 28 != VERSION:
            raise WireError(f"IP version {vtf >> 28} in an IPv6 header")
        if plen == 0 and allow_zero_length:
            pass
        elif HEADER_LEN + plen > len(data):
            raise WireError(f"IPv6 payload length {plen} exceeds the {len(data) - 40} bytes present")
        return cls(
            src=bytes(src),
            dst=bytes(dst),
            next_header=nxt,
            payload_length=plen,
            hop_limit=hops,
            traffic_class=(vtf >> 20) & 0xFF,
            flow_label=vtf & 0xFFFFF,
        )

    def emit(self) -> bytes:
        if len(self.src) != 16 or len(self.dst) != 16:
            raise ValueError("IPv6 addresses are 16 bytes")
        if not 0 <= self.traffic_class <= 0xFF or not 0 <= self.flow_label <= 0xFFFFF:
            raise ValueError("traffic class is 8 bits and flow label 20 bits")
        vtf = (VERSION << 28) | (self.traffic_class << 20) | self.flow_label
        try:
            return _FIXED.pack(vtf, self.payload_length, self.next_header, self.hop_limit,
                               self.src, self.dst)
        except struct.error as exc:
            raise ValueError(f"IPv6 field out of range: {exc}") from exc


@dataclass(frozen=True, slots=True)
class FragmentHeader:
    """The IPv6 fragment header. ``offset`` counts bytes (a multiple of 8)."""

    next_header: int
    offset: int
    more: bool
    ident: int
    reserved: int = 0
    res2: int = 0
    """The two reserved bits between the offset and M (kept for exact round trips)."""

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> FragmentHeader:
        if len(data) < FRAGMENT_HEADER_LEN:
            raise WireError(f"IPv6 fragment header truncated: {len(data)} bytes")
        nxt, reserved, off_flags, ident = _FRAG.unpack_from(data, 0)
        return cls(nxt, off_flags & FRAG_OFFSET_MASK, bool(off_flags & FRAG_MF), ident,
                   reserved, (off_flags >> 1) & 0x3)

    def emit(self) -> bytes:
        if self.offset % 8 or not 0 <= self.offset <= FRAG_OFFSET_MASK:
            raise ValueError("fragment offset is a multiple of 8 below 65536")
        field = self.offset | (self.res2 << 1) | (FRAG_MF if self.more else 0)
        try:
            return _FRAG.pack(self.next_header, self.reserved, field, self.ident)
        except struct.error as exc:
            raise ValueError(f"fragment header field out of range: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ExtensionHeaderRef:
    """One extension header crossed by :func:`walk_extension_headers`: its type, offset
    (from the start of the buffer given to the walk) and length."""

    kind: int
    offset: int
    length: int
    next_header: int


@dataclass(frozen=True, slots=True)
class ExtensionChain:
    headers: tuple[ExtensionHeaderRef, ...]
    upper_protocol: int
    """The next-header value after the last extension header (TCP, UDP, ESP, 59...)."""
    upper_offset: int
    """Offset of the upper-layer header in the buffer given to the walk."""

    def has(self, kind: int) -> bool:
        return any(h.kind == kind for h in self.headers)

    def find(self, kind: int) -> ExtensionHeaderRef | None:
        for h in self.headers:
            if h.kind == kind:
                return h
        return None


def extension_header_length(kind: int, data: bytes | bytearray | memoryview, offset: int) -> int:
    """Length of the extension header of type ``kind`` at ``offset``."""
    if offset + 2 > len(data):
        raise WireError("IPv6 extension header truncated")
    if kind == ExtHeader.FRAGMENT:
        return FRAGMENT_HEADER_LEN
    if kind == ExtHeader.AH:
        return (data[offset + 1] + 2) * 4  # RFC 4302 §2.2: 32-bit words minus 2
    return (data[offset + 1] + 1) * 8  # RFC 8200 §4.3-4.6: 8-octet units, not the first


def walk_extension_headers(
    data: bytes | bytearray | memoryview,
    first: int,
    offset: int = HEADER_LEN,
    *,
    kinds: frozenset[int] = EXTENSION_TYPES,
) -> ExtensionChain:
    """Walk the extension headers starting at ``offset`` whose type is ``first`` (the
    fixed header's next header), crossing those in ``kinds``.

    Raises :class:`WireError` when a header is truncated or the chain loops past the
    buffer. A hop-by-hop header anywhere but first is accepted here (RFC 8200 §4.3 says
    it must be first; callers that care check ``headers[0]``).
    """
    headers: list[ExtensionHeaderRef] = []
    kind = first
    pos = offset
    while kind in kinds:
        length = extension_header_length(kind, data, pos)
        if pos + length > len(data):
            raise WireError(f"IPv6 extension header {kind} of {length} bytes truncated")
        nxt = data[pos]
        headers.append(ExtensionHeaderRef(kind, pos, length, nxt))
        pos += length
        kind = nxt
    return ExtensionChain(tuple(headers), kind, pos)


def routing_final_destination(
    data: bytes | bytearray | memoryview, ref: ExtensionHeaderRef
) -> bytes | None:
    """The final destination named by a Routing header with segments left, for the
    pseudo header (RFC 8200 §8.1): the last address of a type 0 (RFC 2460) or type 2
    (RFC 6275) header, Segment List[0] of a Segment Routing Header (type 4, RFC 8754).
    None when segments left is 0 (the destination field is already final) or the type
    is not one of these."""
    if ref.length < 8:
        return None
    base = ref.offset
    rtype, segs_left = data[base + 2], data[base + 3]
    if segs_left == 0:
        return None
    if rtype in (0, 2):
        n = (ref.length - 8) // 16
        if n == 0:
            return None
        start = base + 8 + 16 * (n - 1)
        return bytes(data[start : start + 16])
    if rtype == 4 and ref.length >= 24:
        return bytes(data[base + 8 : base + 24])
    return None


def find_jumbo_payload(data: bytes | bytearray | memoryview, ref: ExtensionHeaderRef) -> int | None:
    """The Jumbo Payload length (RFC 2675) in a hop-by-hop header, if present."""
    pos = ref.offset + 2
    end = ref.offset + ref.length
    while pos < end:
        opt = data[pos]
        if opt == OPT_PAD1:
            pos += 1
            continue
        if pos + 2 > end:
            raise WireError("IPv6 option truncated")
        olen = data[pos + 1]
        if pos + 2 + olen > end:
            raise WireError("IPv6 option runs past its header")
        if opt == OPT_JUMBO:
            if olen != 4:
                raise WireError("Jumbo Payload option of the wrong length")
            return int.from_bytes(data[pos + 2 : pos + 6], "big")
        pos += 2 + olen
    return None
