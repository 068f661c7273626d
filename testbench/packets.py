"""Builders for the packets the offload engines and their tests work on: what a driver
hands its device for transmit offload — an Ethernet frame with IPv4 or IPv6 (optionally
with extension headers and a VLAN tag), TCP (with options and any flags) or UDP, and the
virtio_net_hdr describing the offload it wants (§5.1.6.2).

The L4 checksum field holds the pseudo-header sum the driver seeds it with: with the full
L4 length (the Linux convention), with length 0 (the Windows/Intel convention), or a
completed checksum when no offload is asked for. Packet formats and checksums come from
``stack.wire``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from stack.wire.checksum import internet_checksum, pseudo_header_sum_v4, pseudo_header_sum_v6
from stack.wire.ethernet import EthernetHeader, EtherType
from stack.wire.ipv4 import FLAG_DF, IpProtocol, Ipv4Header
from stack.wire.ipv6 import ExtHeader, Ipv6Header
from stack.wire.tcp import TcpFlags, TcpHeader, TcpOption
from stack.wire.udp import UdpHeader
from virtio.constants import GSO_ECN, GsoType, NetHdrFlag
from virtio.net_hdr import NetHdr

SRC_MAC = bytes.fromhex("525400000001")
DST_MAC = bytes.fromhex("525400000002")
SRC_V4, DST_V4 = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
SRC_V6 = bytes.fromhex("fd00000000000000000000000000000a")
DST_V6 = bytes.fromhex("fd00000000000000000000000000000b")


class Seed(Enum):
    """What the driver leaves in the L4 checksum field for the device to complete."""

    FULL = "full"
    """Pseudo-header sum with the L4 length (Linux, the virtio spec's example)."""
    ZERO = "zero"
    """Pseudo-header sum with length 0 (Windows NDIS / Intel convention for LSO)."""
    COMPLETE = "complete"
    """A finished checksum (no NEEDS_CSUM)."""


@dataclass(frozen=True)
class OffloadPacket:
    """A frame, the header its driver sends it with, and a label for reports."""

    hdr: NetHdr
    frame: bytes
    label: str

    def __repr__(self) -> str:
        return f"OffloadPacket({self.label!r}, {len(self.frame)} bytes, {self.hdr})"


def payload_bytes(n: int, salt: int = 0) -> bytes:
    """``n`` deterministic, non-repeating-looking bytes."""
    return bytes(((i * 131 + salt * 17 + (i >> 8) * 7) & 0xFF) for i in range(n))


def hop_by_hop(next_header: int) -> bytes:
    """A hop-by-hop options header with one PadN option (8 bytes, RFC 8200 §4.3)."""
    return bytes([next_header, 0, 1, 4, 0, 0, 0, 0])


def destination_options(next_header: int) -> bytes:
    """A destination options header with one PadN option (8 bytes, RFC 8200 §4.6)."""
    return bytes([next_header, 0, 1, 4, 0, 0, 0, 0])


def routing_srh(next_header: int, segment: bytes = DST_V6) -> bytes:
    """A segment routing header (type 4, RFC 8754) with segments left 0: the final
    destination is the packet's destination, so pseudo headers do not change."""
    return bytes([next_header, 2, 4, 0, 0, 0, 0, 0]) + segment


EXT_BUILDERS = {
    int(ExtHeader.HOP_BY_HOP): hop_by_hop,
    int(ExtHeader.DEST_OPTS): destination_options,
    int(ExtHeader.ROUTING): routing_srh,
}


def _l3(ipv6: bool, protocol: int, l4_len: int, ext: tuple[int, ...], *, ip_id: int,
        df: bool, tos: int) -> tuple[bytes, int]:
    """The IP header (with extension headers) and its ethertype."""
    if not ipv6:
        if ext:
            raise ValueError("extension headers are IPv6 only")
        total = 20 + l4_len
        hdr = Ipv4Header(SRC_V4, DST_V4, protocol, total if total <= 0xFFFF else 0,
                         ident=ip_id, flags=FLAG_DF if df else 0, tos=tos)
        return hdr.emit(), EtherType.IPV4
    exts = b""
    kinds = list(ext)
    for i, kind in enumerate(kinds):
        nxt = kinds[i + 1] if i + 1 < len(kinds) else protocol
        exts += EXT_BUILDERS[kind](nxt)
    plen = len(exts) + l4_len
    first = kinds[0] if kinds else protocol
    fixed = Ipv6Header(SRC_V6, DST_V6, first, plen if plen <= 0xFFFF else 0, traffic_class=tos)
    return fixed.emit() + exts, EtherType.IPV6


def _seed(ipv6: bool, protocol: int, l4_len: int, seed: Seed) -> int:
    length = l4_len if seed is Seed.FULL else 0
    if ipv6:
        return pseudo_header_sum_v6(SRC_V6, DST_V6, protocol, length)
    return pseudo_header_sum_v4(SRC_V4, DST_V4, protocol, length & 0xFFFF)


def tcp_packet(
    payload: int | bytes,
    *,
    mss: int | None = 1448,
    ipv6: bool = False,
    flags: TcpFlags = TcpFlags.PSH | TcpFlags.ACK,
    options: tuple[TcpOption, ...] = (),
    ext: tuple[int, ...] = (),
    seed: Seed = Seed.FULL,
    ecn: bool = False,
    ip_id: int = 0x1234,
    seq: int = 1_000_000,
    vlan: int | None = None,
    tos: int = 0,
    label: str = "",
    sport: int = 40000,
    dport: int = 5201,
) -> OffloadPacket:
    """A TCP packet with the header a driver sends for TSO (``mss`` set) or checksum
    offload only (``mss=None``)."""
    body = payload if isinstance(payload, bytes) else payload_bytes(payload, seq & 0xFF)
    tcp = TcpHeader(sport, dport, seq, 2_000_000, flags, 502, options=options)
    thl = tcp.header_len
    l4_len = thl + len(body)
    ip, ethertype = _l3(ipv6, IpProtocol.TCP, l4_len, ext, ip_id=ip_id, df=True, tos=tos)
    eth = EthernetHeader(DST_MAC, SRC_MAC, ethertype, vlan).emit()
    csum_start = len(eth) + len(ip)
    if seed is Seed.COMPLETE:
        unfinished = tcp.emit() + body
        check = internet_checksum(unfinished, _seed(ipv6, IpProtocol.TCP, l4_len, Seed.FULL))
        tcp_bytes = replace(tcp, checksum=check).emit()
        flags_field = 0
    else:
        tcp_bytes = replace(tcp, checksum=_seed(ipv6, IpProtocol.TCP, l4_len, seed)).emit()
        flags_field = int(NetHdrFlag.NEEDS_CSUM)
    frame = eth + ip + tcp_bytes + body
    gso_type, gso_size = int(GsoType.NONE), 0
    if mss is not None:
        gso_type = int(GsoType.TCPV6 if ipv6 else GsoType.TCPV4) | (GSO_ECN if ecn else 0)
        gso_size = mss
    hdr = NetHdr(
        flags=flags_field, gso_type=gso_type, hdr_len=csum_start + thl, gso_size=gso_size,
        csum_start=csum_start if flags_field else 0, csum_offset=16 if flags_field else 0,
    )
    name = label or (
        f"tcp{'6' if ipv6 else '4'} len={len(body)} mss={mss} flags={int(flags):#04x} "
        f"opts={len(options)} ext={list(ext)} seed={seed.value}{' ecn' if ecn else ''}"
    )
    return OffloadPacket(hdr, frame, name)


def udp_packet(
    payload: int | bytes,
    *,
    gso_size: int | None = 1400,
    ipv6: bool = False,
    ufo: bool = False,
    ext: tuple[int, ...] = (),
    seed: Seed = Seed.FULL,
    ip_id: int = 0x2345,
    label: str = "",
) -> OffloadPacket:
    """A UDP datagram with the header a driver sends for USO (GSO_UDP_L4), UFO (GSO_UDP,
    ``ufo=True``) or checksum offload only (``gso_size=None``)."""
    body = payload if isinstance(payload, bytes) else payload_bytes(payload, 3)
    l4_len = 8 + len(body)
    ip, ethertype = _l3(ipv6, IpProtocol.UDP, l4_len, ext, ip_id=ip_id, df=not ufo, tos=0)
    eth = EthernetHeader(DST_MAC, SRC_MAC, ethertype).emit()
    csum_start = len(eth) + len(ip)
    udp = UdpHeader(5000, 6000, l4_len if l4_len <= 0xFFFF else 0,
                    _seed(ipv6, IpProtocol.UDP, l4_len, seed))
    frame = eth + ip + udp.emit() + body
    gso_type = int(GsoType.NONE)
    if gso_size is not None:
        gso_type = int(GsoType.UDP if ufo else GsoType.UDP_L4)
    hdr = NetHdr(
        flags=NetHdrFlag.NEEDS_CSUM, gso_type=gso_type, hdr_len=csum_start + 8,
        gso_size=gso_size or 0, csum_start=csum_start, csum_offset=6,
    )
    kind = "ufo" if ufo else "uso"
    name = label or (
        f"udp{'6' if ipv6 else '4'} {kind} len={len(body)} gso_size={gso_size} "
        f"ext={list(ext)} seed={seed.value}"
    )
    return OffloadPacket(hdr, frame, name)
