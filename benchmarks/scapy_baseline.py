"""A straightforward per-segment TCP segmentation written with scapy: the baseline the
segmentation benchmark compares against (what one would write first, in a test)."""

from __future__ import annotations

from typing import Any

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

_FIN, _PSH, _CWR = 0x01, 0x08, 0x80


def scapy_segment(frame: bytes, gso_size: int) -> list[bytes]:
    """Segment an Ethernet/IPv4/TCP super-packet into ``gso_size`` payload pieces, each
    segment rebuilt and checksummed by scapy."""
    pkt: Any = Ether(frame)
    ip, tcp = pkt[IP], pkt[TCP]
    payload = bytes(tcp.payload)
    count = max(1, -(-len(payload) // gso_size))
    flags = int(tcp.flags)
    out = []
    for i in range(count):
        chunk = payload[i * gso_size : (i + 1) * gso_size]
        seg_flags = flags
        if i < count - 1:
            seg_flags &= ~(_FIN | _PSH)
        if i > 0:
            seg_flags &= ~_CWR
        seg = (
            Ether(src=pkt.src, dst=pkt.dst)
            / IP(src=ip.src, dst=ip.dst, id=(ip.id + i) & 0xFFFF, ttl=ip.ttl, tos=ip.tos,
                 flags=ip.flags)
            / TCP(sport=tcp.sport, dport=tcp.dport, seq=(tcp.seq + i * gso_size) & 0xFFFFFFFF,
                  ack=tcp.ack, flags=seg_flags, window=tcp.window, options=tcp.options)
            / Raw(chunk)
        )
        out.append(bytes(seg))
    return out
