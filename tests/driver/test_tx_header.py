"""The header the driver builds from the stack's transmit metadata (§5.1.6.2)."""

from __future__ import annotations

import pytest

from driver.tx_header import PLAIN, build_tx_header
from stack.device import TxMeta
from stack.wire.ipv6 import ExtHeader
from stack.wire.tcp import NopOption, TcpFlags, TimestampsOption
from testbench.packets import tcp_packet, udp_packet
from virtio.constants import GSO_ECN, GsoType, NetHdrFlag
from virtio.constants import FeatureBit as F
from virtio.features import FeatureSet
from virtio.net_hdr import NetHdr

ALL = FeatureSet.of(F.VERSION_1, F.CSUM, F.HOST_TSO4, F.HOST_TSO6, F.HOST_ECN, F.HOST_USO)
NEEDS = int(NetHdrFlag.NEEDS_CSUM)


def test_no_meta_gives_the_plain_header() -> None:
    frame = tcp_packet(100, mss=None).frame
    assert build_tx_header(frame, None, ALL) is PLAIN
    assert build_tx_header(frame, TxMeta(), ALL) is PLAIN
    assert PLAIN.emit(12) == bytes(12)


def test_checksum_only() -> None:
    frame = tcp_packet(100, mss=None).frame
    hdr = build_tx_header(frame, TxMeta(csum_start=34, csum_offset=16), ALL)
    assert hdr == NetHdr(flags=NEEDS, csum_start=34, csum_offset=16)


@pytest.mark.parametrize(
    ("pkt", "gso", "hdr_len", "csum_start", "csum_offset"),
    [
        # Ethernet 14 + IPv4 20 + TCP 20 (+12 of options)
        (tcp_packet(5000), GsoType.TCPV4, 54, 34, 16),
        (tcp_packet(5000, options=(NopOption(), NopOption(), TimestampsOption(1, 2))),
         GsoType.TCPV4, 66, 34, 16),
        # IPv6 40 + hop-by-hop 8 + destination options 8
        (tcp_packet(5000, ipv6=True, ext=(int(ExtHeader.HOP_BY_HOP), int(ExtHeader.DEST_OPTS))),
         GsoType.TCPV6, 90, 70, 16),
        (tcp_packet(5000, flags=TcpFlags.CWR | TcpFlags.ACK), GsoType.TCPV4 | GSO_ECN, 54, 34, 16),
        (udp_packet(5000), GsoType.UDP_L4, 42, 34, 6),
        (tcp_packet(5000, vlan=5), GsoType.TCPV4, 58, 38, 16),
    ],
)
def test_segmentation_headers(pkt: object, gso: int, hdr_len: int, csum_start: int,
                              csum_offset: int) -> None:
    frame = pkt.frame  # type: ignore[attr-defined]
    hdr = build_tx_header(frame, TxMeta(1448, csum_start, csum_offset), ALL)
    assert hdr == NetHdr(flags=NEEDS, gso_type=gso, hdr_len=hdr_len, gso_size=1448,
                         csum_start=csum_start, csum_offset=csum_offset)


@pytest.mark.parametrize(
    ("frame", "meta", "negotiated", "message"),
    [
        (tcp_packet(5000).frame, TxMeta(1448, 34, 16), ALL.without(F.HOST_TSO4),
         "HOST_TSO4 was not negotiated"),
        (tcp_packet(5000, ipv6=True).frame, TxMeta(1448, 54, 16), ALL.without(F.HOST_TSO6),
         "HOST_TSO6 was not negotiated"),
        (udp_packet(5000).frame, TxMeta(1448, 34, 6), ALL.without(F.HOST_USO),
         "HOST_USO was not negotiated"),
        (tcp_packet(5000, flags=TcpFlags.CWR | TcpFlags.ACK).frame, TxMeta(1448, 34, 16),
         ALL.without(F.HOST_ECN), "HOST_ECN was not negotiated"),
        (tcp_packet(100).frame, TxMeta(None, 34, 16), ALL.without(F.CSUM),
         "CSUM was not negotiated"),
        (tcp_packet(100).frame, TxMeta(1448), ALL, "needs a partial checksum"),
        (tcp_packet(100).frame, TxMeta(1448, 34, None), ALL, "go together"),
        (tcp_packet(100).frame, TxMeta(None, 150, 16), ALL, "outside the"),
        (tcp_packet(100).frame, TxMeta(0, 34, 16), ALL, "must be positive"),
        (b"\xff" * 12 + b"\x08\x06" + bytes(28), TxMeta(1448, 20, 6), ALL, "cannot segment"),
    ],
)
def test_offloads_that_may_not_be_asked_for(
    frame: bytes, meta: TxMeta, negotiated: FeatureSet, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_tx_header(frame, meta, negotiated)
