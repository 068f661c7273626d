"""Checksum offload (§5.1.6.2, VIRTIO_NET_F_CSUM): complete the 16-bit ones' complement
checksum at ``csum_start + csum_offset`` over ``csum_start`` .. the end of the frame,
starting from the seed the driver left in that field; and recognise which pseudo-header
seed convention the driver used.

Seed conventions (§5.1.6.2.1 says the field holds "the TCP/UDP pseudo header"):

``full-length``
    the pseudo-header sum with the transport length of the packet as sent (Linux,
    FreeBSD, the spec's reading; required for a correct result without segmentation);
``zero-length``
    the pseudo-header sum with length 0 (the Windows/Intel LSO convention: the device
    adds each segment's length);
``other``
    anything else (a bug; or a complemented value).
"""

from __future__ import annotations

import struct

from emulator.offload.parse import L3_IPV4, L3_IPV6, L3_NONE, Layout, locate
from emulator.offload.rules import OffloadError, rule
from stack.wire import tcp, udp
from stack.wire.checksum import (
    ZERO_CHECKSUM_REPLACEMENT,
    finish,
    fold,
    pseudo_header_sum_v4,
    pseudo_header_sum_v6,
    raw_sum,
)
from stack.wire.ipv4 import IpProtocol
from virtio.constants import NetHdrFlag
from virtio.net_hdr import NetHdr

_TCP, _UDP = int(IpProtocol.TCP), int(IpProtocol.UDP)
_TCP_CSUM, _UDP_CSUM = tcp.OFF_CHECKSUM, udp.OFF_CHECKSUM

FULL_LENGTH = "full-length"
ZERO_LENGTH = "zero-length"
OTHER = "other"

_U16 = struct.Struct("!H")


def l4_csum_offset(protocol: int) -> int | None:
    """Where the checksum sits in a TCP or UDP header (what csum_offset must hold)."""
    if protocol == IpProtocol.TCP:
        return tcp.OFF_CHECKSUM
    if protocol == IpProtocol.UDP:
        return udp.OFF_CHECKSUM
    return None


def pseudo_sum(lay: Layout, length: int, *, final_destination: bool = True,
               protocol: int | None = None) -> int:
    """The pseudo-header sum of the packet's transport protocol for ``length`` bytes.

    For IPv6 the destination is the final one of a Routing header (RFC 8200 §8.1) unless
    ``final_destination`` is False (Linux's ``tcp_v6_check`` / QEMU use the header's)."""
    proto = lay.l4_proto if protocol is None else protocol
    if lay.l3 == L3_IPV4:
        return pseudo_header_sum_v4(lay.src, lay.dst, proto, length)
    if lay.l3 == L3_IPV6:
        dst = lay.final_dst if final_destination else lay.dst
        return pseudo_header_sum_v6(lay.src, dst, proto, length & 0xFFFFFFFF)
    raise ValueError("no IP header to build a pseudo header from")


def seed_candidates(lay: Layout, length: int) -> tuple[set[int], set[int]]:
    """Pseudo-header sums for the full transport length and for length 0 (each with the
    header's and the final destination for IPv6), reduced modulo 0xFFFF so that the two
    ones' complement zeros compare equal."""
    # Sums only matter modulo 0xFFFF: add the length to one address-and-protocol sum.
    src = int.from_bytes(lay.src, "big") + lay.l4_proto
    dsts = {lay.dst, lay.final_dst}
    zero = {(src + int.from_bytes(d, "big")) % 0xFFFF for d in dsts}
    full = {(z + length) % 0xFFFF for z in zero}
    return full, zero


def classify_seed_at(frame: bytes | bytearray | memoryview, lay: Layout, csum_start: int,
                     csum_offset: int) -> str | None:
    """The seed convention, or None when the checksum position is not the TCP/UDP
    checksum of an IP packet (nothing to compare against)."""
    if lay.problem is not None or lay.l3 == L3_NONE or csum_start != lay.l4_off:
        return None
    proto = lay.l4_proto
    if not ((proto == _TCP and csum_offset == _TCP_CSUM)
            or (proto == _UDP and csum_offset == _UDP_CSUM)):
        return None
    pos = csum_start + csum_offset
    n = lay.frame_len
    if pos + 2 > n:
        return None
    seed = _U16.unpack_from(frame, pos)[0] % 0xFFFF
    length = n - csum_start  # lay.l4_len
    src = int.from_bytes(lay.src, "big") + proto
    zero = (src + int.from_bytes(lay.dst, "big")) % 0xFFFF
    if seed == (zero + length) % 0xFFFF:
        return FULL_LENGTH
    if seed == zero:
        return ZERO_LENGTH
    if lay.final_dst != lay.dst:
        full, zeros = seed_candidates(lay, length)
        if seed in full:
            return FULL_LENGTH
        if seed in zeros:
            return ZERO_LENGTH
    return OTHER


def classify_seed(frame: bytes | bytearray | memoryview, hdr: NetHdr) -> str | None:
    """Which pseudo-header seed convention ``hdr`` and ``frame`` follow (None without
    NEEDS_CSUM or when csum_start/csum_offset do not point at a TCP/UDP checksum)."""
    if not hdr.flags & NetHdrFlag.NEEDS_CSUM:
        return None
    return classify_seed_at(frame, locate(frame), hdr.csum_start, hdr.csum_offset)


def complete_at(frame: bytes | bytearray | memoryview, csum_start: int, csum_offset: int,
                *, seed: int | None = None) -> bytes:
    """The frame with the checksum over ``csum_start``.. its end stored at
    ``csum_start + csum_offset``, summing the seed found in that field (or ``seed``
    instead). A result of 0 is stored as 0xFFFF, as Linux ``skb_checksum_help`` does
    (``csum_fold(csum) ?: CSUM_MANGLED_0``): the two are the same ones' complement value,
    and 0 would mean "no checksum" for UDP (RFC 768)."""
    out = bytearray(frame)
    pos = csum_start + csum_offset
    if seed is not None:
        _U16.pack_into(out, pos, seed & 0xFFFF)
    csum = finish(raw_sum(memoryview(out)[csum_start:])) or ZERO_CHECKSUM_REPLACEMENT
    _U16.pack_into(out, pos, csum)
    return bytes(out)


def complete_checksum(frame: bytes | bytearray | memoryview, hdr: NetHdr) -> bytes:
    """Checksum offload as the spec describes it: with NEEDS_CSUM, the frame with the
    16-bit ones' complement checksum of ``csum_start``..end (starting from the seed in the
    field) stored at ``csum_start + csum_offset``; without it, the frame unchanged
    (§5.1.6.2.2: the device must not use csum_start and csum_offset).

    Raises :class:`OffloadError` ("csum-outside-frame", stage "reject") when the checksum
    field does not lie inside the frame.
    """
    if not isinstance(frame, bytes | bytearray | memoryview):
        raise ValueError(f"frame must be bytes-like, not {type(frame).__name__}")
    if not isinstance(hdr, NetHdr):
        raise ValueError(f"hdr must be a NetHdr, not {type(hdr).__name__}")
    if not hdr.flags & NetHdrFlag.NEEDS_CSUM:
        return bytes(frame)
    start, offset = hdr.csum_start, hdr.csum_offset
    if start < 0 or offset < 0 or start + offset + 2 > len(frame):
        r = rule("csum-outside-frame")
        raise OffloadError(
            f"checksum field at {start}+{offset} is outside the {len(frame)}-byte frame",
            rule=r.name, section=r.ref, stage="reject",
        )
    return complete_at(frame, start, offset)


def qemu_sw_csum(out: bytearray, lay: Layout, csum_start: int, csum_offset: int) -> None:
    """QEMU ``net_tx_pkt_do_sw_csum`` on a whole (unsegmented) frame, in place: zero the
    field, sum the pseudo header QEMU builds from its own parse (length = bytes after the
    L2+L3 headers, IPv4 protocol or the IPv6 upper-layer protocol) and that many bytes
    from ``csum_start`` (clamped to the frame), store with ``net_checksum_finish_nozero``.
    Bytes of the field beyond the frame are not written (``iov_from_buf`` clamps)."""
    n = len(out)
    hdr_len = lay.l4_off if lay.l3 in (L3_IPV4, L3_IPV6) and lay.problem is None else lay.l2_len
    csl = n - hdr_len
    pos = csum_start + csum_offset
    field = bytearray(b"\0\0")
    _write_clamped(out, pos, field)
    total = 0
    if lay.l3 == L3_IPV4 and lay.problem is None:
        total = pseudo_header_sum_v4(lay.src, lay.dst, lay.l4_proto, csl)
    elif lay.l3 == L3_IPV6 and lay.problem is None:
        total = pseudo_header_sum_v6(lay.src, lay.dst, lay.l4_proto, csl)
    end = min(csum_start + csl, n)
    if csum_start < end:
        total += raw_sum(memoryview(out)[csum_start:end])
    csum = finish(fold(total)) or 0xFFFF
    _write_clamped(out, pos, bytearray(_U16.pack(csum)))


def _write_clamped(out: bytearray, pos: int, data: bytearray) -> None:
    for i, b in enumerate(data):
        if 0 <= pos + i < len(out):
            out[pos + i] = b
