"""The packet corpus of the kernel differential test: what drivers hand a device for
transmit offload, well-formed and not.

Well-formed: IPv4 and IPv6 (bare, with hop-by-hop / destination options / routing
headers), TCP without and with options, payload sizes around the segment size (1, mss-1,
mss, mss+1, multiples, 64 KiB), PSH/FIN/CWR, the ECN gso bit, both pseudo-header seed
conventions, a VLAN tag; UDP USO over IPv4 and IPv6; UFO. Malformed: each header rule of
SPEC-NOTES.md ("Known real bugs") broken once.
"""

from __future__ import annotations

from dataclasses import replace

from stack.wire.ipv6 import ExtHeader
from stack.wire.tcp import (
    MssOption,
    NopOption,
    SackPermittedOption,
    TcpFlags,
    TimestampsOption,
    WindowScaleOption,
)
from testbench.packets import OffloadPacket, Seed, tcp_packet, udp_packet
from virtio.constants import GsoType, NetHdrFlag

MSS = 1448
ACK, PSH, FIN, CWR, ECE = TcpFlags.ACK, TcpFlags.PSH, TcpFlags.FIN, TcpFlags.CWR, TcpFlags.ECE

OPTION_SETS = {
    "none": (),
    "ts": (NopOption(), NopOption(), TimestampsOption(123456, 654321)),
    "syn-like": (MssOption(1460), SackPermittedOption(), TimestampsOption(1, 2), NopOption(),
                 WindowScaleOption(7)),
}
EXT_SETS: dict[str, tuple[int, ...]] = {
    "none": (),
    "hbh": (int(ExtHeader.HOP_BY_HOP),),
    "hbh+dst+rt": (int(ExtHeader.HOP_BY_HOP), int(ExtHeader.DEST_OPTS), int(ExtHeader.ROUTING)),
}


def payload_sizes(mss: int) -> list[int]:
    return [1, mss - 1, mss, mss + 1, 2 * mss, 3 * mss + 17, 10 * mss, 64000]


def well_formed(mss: int = MSS) -> list[OffloadPacket]:
    out: list[OffloadPacket] = []
    for ipv6 in (False, True):
        for size in payload_sizes(mss):
            for flags in (ACK, PSH | ACK, FIN | PSH | ACK):
                out.append(tcp_packet(size, mss=mss, ipv6=ipv6, flags=flags))
            for name, opts in OPTION_SETS.items():
                if name != "none":
                    out.append(tcp_packet(size, mss=mss, ipv6=ipv6, options=opts))
            out.append(tcp_packet(size, mss=mss, ipv6=ipv6, seed=Seed.ZERO))
            out.append(tcp_packet(size, mss=mss, ipv6=ipv6, flags=CWR | ECE | ACK, ecn=True))
            out.append(tcp_packet(size, mss=None, ipv6=ipv6) if size <= mss else
                       tcp_packet(size, mss=mss, ipv6=ipv6, flags=ACK | ECE))
            out.append(udp_packet(size, gso_size=mss, ipv6=ipv6))
        for name, ext in EXT_SETS.items():
            if ipv6 and name != "none":
                out.append(tcp_packet(20000, mss=mss, ipv6=True, ext=ext))
                out.append(udp_packet(20000, gso_size=mss, ipv6=True, ext=ext))
    out.append(tcp_packet(30000, mss=mss, vlan=0x0064))
    out.append(tcp_packet(64000, mss=mss, seed=Seed.ZERO, options=OPTION_SETS["ts"]))
    for size in (100, 3000, 30000):
        out.append(udp_packet(size, gso_size=1400, ufo=True))
    out.append(udp_packet(1000, gso_size=None))
    return out


def malformed(mss: int = MSS) -> list[OffloadPacket]:
    base = tcp_packet(5000, mss=mss)
    base6 = tcp_packet(5000, mss=mss, ipv6=True)
    udp = udp_packet(5000, gso_size=1400)

    def bad(pkt: OffloadPacket, label: str, **changes: int) -> OffloadPacket:
        return OffloadPacket(replace(pkt.hdr, **changes), pkt.frame, label)

    out = [
        bad(base, "gso_size 0", gso_size=0),
        bad(base, "gso without NEEDS_CSUM", flags=0),
        bad(base, "TSO csum_offset 6", csum_offset=6),
        bad(base, "csum_start beyond the frame", csum_start=len(base.frame) + 10),
        bad(base, "csum_start inside the IP header", csum_start=20),
        bad(base, "csum field past the end", csum_start=len(base.frame) - 1),
        bad(base, "TSO6 on IPv4", gso_type=GsoType.TCPV6),
        bad(base6, "TSO4 on IPv6", gso_type=GsoType.TCPV4),
        bad(base, "USO on TCP", gso_type=GsoType.UDP_L4, csum_offset=16),
        bad(udp, "TSO4 on UDP", gso_type=GsoType.TCPV4, csum_offset=6),
        bad(udp, "USO with csum_offset 16", csum_offset=16),
        bad(udp, "USO with the ECN bit", gso_type=GsoType.UDP_L4 | 0x80),
        bad(base, "unknown gso_type 2", gso_type=2),
        bad(base, "unknown gso_type 6", gso_type=6),
        bad(base, "hdr_len 0", hdr_len=0),
        bad(base, "hdr_len beyond the frame", hdr_len=9000),
        bad(base, "DATA_VALID on TX", flags=int(NetHdrFlag.NEEDS_CSUM | NetHdrFlag.DATA_VALID)),
        bad(base, "gso_size larger than the payload", gso_size=6000),
        bad(base, "gso_size 1", gso_size=1),
        bad(udp_packet(64000, gso_size=100), "USO with 640 segments"),
        bad(base, "NEEDS_CSUM without gso, offset 0", gso_type=0, gso_size=0, csum_offset=0),
    ]
    truncated = base.frame[:40]
    out.append(OffloadPacket(base.hdr, truncated, "frame cut inside the TCP header"))
    long_ip = bytearray(base.frame)
    long_ip[16:18] = (len(base.frame) - 14 + 100).to_bytes(2, "big")
    out.append(OffloadPacket(base.hdr, bytes(long_ip), "IPv4 total length beyond the frame"))
    short_ip = bytearray(base.frame)
    short_ip[16:18] = (len(base.frame) - 14 - 100).to_bytes(2, "big")
    out.append(OffloadPacket(base.hdr, bytes(short_ip), "IPv4 total length short of the frame"))
    return out
