"""Receive offloads end to end (§5.1.6.4): the peer device verifies checksums
(GUEST_CSUM → DATA_VALID) and coalesces a TSO burst back into one large packet for a
driver that accepted GUEST_TSO4/6 — and never for one that did not."""

from __future__ import annotations

import pytest

from driver.net import DEFAULT_WANTED, DriverConfig
from emulator.backends.recorder import Recorder
from emulator.net.device import NetDeviceConfig
from emulator.offload import segment
from emulator.profiles import STRICT
from stack.device import RxFrame, TxMeta
from testbench.host import HostConfig, Pair, make_pair
from testbench.loop import EventLoop
from testbench.packets import DST_MAC, SRC_MAC, Seed, tcp_packet, udp_packet
from virtio.constants import FeatureBit as F
from virtio.constants import GsoType, NetHdrFlag
from virtio.features import FeatureSet
from virtio.net_hdr import NetHdr

MIB = 1 << 20


def pair(receiver_wants: FeatureSet) -> tuple[Pair, list[RxFrame], list[bytes]]:
    dev = NetDeviceConfig()
    p = make_pair(
        EventLoop(),
        a=HostConfig("a", SRC_MAC, 16 * MIB, dev, DriverConfig()),
        b=HostConfig("b", DST_MAC, 32 * MIB, dev,
                     DriverConfig(wanted=receiver_wants, queue_size=64)),
    )
    got: list[RxFrame] = []
    p.b.on_frames = got.extend
    tap = Recorder(p.wire.a)
    p.a.attach(tap)
    return p, got, tap.frames




def send_tso(p: Pair, payload: int) -> None:
    pkt = tcp_packet(payload)
    assert p.a.driver.transmit(pkt.frame, TxMeta(1448, pkt.hdr.csum_start, pkt.hdr.csum_offset))
    p.a.driver.flush()
    p.loop.run_until_idle(max_steps=100_000)


GRO = DEFAULT_WANTED.with_(F.GUEST_CSUM, F.GUEST_TSO4, F.GUEST_TSO6)


def test_a_tso_burst_arrives_as_one_coalesced_packet() -> None:
    p, got, wire = pair(GRO)
    assert F.GUEST_TSO4 in p.b.driver.negotiated
    send_tso(p, 64000)
    assert len(wire) == 45
    (rx,) = got
    assert (rx.segment_size, rx.csum_partial, rx.csum_start, rx.csum_offset) == (
        1448, True, 34, 16)
    dev = p.b.device.counters
    assert (dev.rx_frames, dev.rx_coalesced, dev.rx_coalesced_segments) == (1, 1, 45)
    # the coalesced packet is the inverse of the segmentation: cut again, it gives back
    # exactly the frames that were on the wire
    hdr = NetHdr(flags=NetHdrFlag.NEEDS_CSUM, gso_type=GsoType.TCPV4, gso_size=1448,
                 hdr_len=54, csum_start=34, csum_offset=16)
    assert segment(rx.data, hdr, STRICT) == wire


def test_checksum_only_driver_gets_every_segment_with_data_valid() -> None:
    p, got, wire = pair(DEFAULT_WANTED.with_(F.GUEST_CSUM))
    send_tso(p, 10 * 1448)
    assert [r.data for r in got] == wire and len(got) == 10
    assert all(r.csum_verified and r.segment_size is None for r in got)
    assert p.b.device.counters.rx_coalesced == 0


def test_driver_without_guest_offloads_never_sees_a_coalesced_or_flagged_packet() -> None:
    p, got, wire = pair(DEFAULT_WANTED)
    send_tso(p, 10 * 1448)
    assert [r.data for r in got] == wire
    assert not any(r.csum_verified or r.csum_partial or r.segment_size for r in got)


def test_a_bad_checksum_is_not_marked_valid() -> None:
    p, got, _ = pair(DEFAULT_WANTED.with_(F.GUEST_CSUM))
    frame = bytearray(tcp_packet(500, mss=None, seed=Seed.COMPLETE).frame)
    frame[60] ^= 0xFF  # a payload byte: the TCP checksum no longer verifies
    assert p.a.driver.transmit(bytes(frame))
    p.a.driver.flush()
    p.loop.run_until_idle(max_steps=10_000)
    (rx,) = got
    assert rx.data == bytes(frame)
    assert not rx.csum_verified and not rx.csum_partial


def test_mergeable_buffers_carry_a_coalesced_packet_in_many_small_buffers() -> None:
    """§5.1.6.4: with MRG_RXBUF the 64 KB packet spans num_buffers small buffers, every
    one but the last full; the driver joins them."""
    p, got, wire = pair(GRO.with_(F.MRG_RXBUF))
    size = p.b.driver.rx_buffer_size
    assert size == 12 + 1500 + 18  # small buffers despite GUEST_TSO
    send_tso(p, 64000)
    (rx,) = got
    assert rx.segment_size == 1448 and len(rx.data) == 64054
    used = -(-(12 + 64054) // size)  # buffers the packet needs
    dev = p.b.device.counters
    assert (dev.rx_frames, dev.rx_chains, dev.rx_coalesced_segments) == (1, used, 45)
    hdr = NetHdr(flags=NetHdrFlag.NEEDS_CSUM, gso_type=GsoType.TCPV4, gso_size=1448,
                 hdr_len=54, csum_start=34, csum_offset=16)
    assert segment(rx.data, hdr, STRICT) == wire
    assert p.b.driver.errors == [] and p.b.driver.counters.rx_refills == used


def test_mergeable_packet_larger_than_the_posted_buffers_is_dropped_and_counted() -> None:
    # 8 buffers of 1530 bytes cannot take a 64 KB packet: the device gives them back
    # (unpop) and counts the drop; the next packets still get through.
    dev = NetDeviceConfig()
    p = make_pair(EventLoop(), a=HostConfig("a", SRC_MAC, 16 * MIB, dev, DriverConfig()),
                  b=HostConfig("b", DST_MAC, 16 * MIB, dev,
                               DriverConfig(wanted=GRO.with_(F.MRG_RXBUF), queue_size=8)))
    got: list[RxFrame] = []
    p.b.on_frames = got.extend
    send_tso(p, 64000)
    assert got == []
    assert p.b.device.counters.drops == {"rx-no-buffer": 1}
    send_tso(p, 5000)  # 4 segments, coalesced into one packet of 4 buffers
    assert len(got) == 1 and len(got[0].data) == 5054


def test_rsc_ext_reports_segments_and_the_driver_finds_the_tcp_header() -> None:
    """RSC_EXT (§5.1.6.4.1): a coalesced packet carries RSC_INFO with the number of
    coalesced segments in csum_start and duplicate ACKs in csum_offset; the driver passes
    the counts up and locates the TCP header itself for the partial checksum."""
    p, got, wire = pair(GRO.with_(F.RSC_EXT))
    assert F.RSC_EXT in p.b.driver.negotiated
    send_tso(p, 64000)
    (rx,) = got
    assert len(wire) == 45
    assert (rx.segments, rx.dup_acks, rx.segment_size) == (45, 0, 1448)
    assert (rx.csum_partial, rx.csum_start, rx.csum_offset) == (True, 34, 16)
    assert p.b.driver.errors == []


@pytest.mark.parametrize("v6", [False, True])
def test_uso_datagrams_coalesce_for_a_driver_with_guest_uso(v6: bool) -> None:
    """GUEST_USO4 / GUEST_USO6 (§5.1.6.4.1): UDP segments of one datagram burst come up
    as one UDP_L4 packet, and cut again they are what was on the wire."""
    wants = GRO.with_(F.GUEST_USO6 if v6 else F.GUEST_USO4)
    p, got, wire = pair(wants)
    pkt = udp_packet(8000, gso_size=1400, ipv6=v6)
    assert p.a.driver.transmit(pkt.frame, TxMeta(1400, pkt.hdr.csum_start, pkt.hdr.csum_offset))
    p.a.driver.flush()
    p.loop.run_until_idle(max_steps=100_000)
    assert len(wire) == 6  # 5 x 1400 + 1000
    (rx,) = got
    assert rx.segment_size == 1400 and rx.csum_partial
    hdr = NetHdr(flags=NetHdrFlag.NEEDS_CSUM, gso_type=GsoType.UDP_L4, gso_size=1400,
                 hdr_len=pkt.hdr.hdr_len, csum_start=pkt.hdr.csum_start, csum_offset=6)
    assert segment(rx.data, hdr, STRICT) == wire
    assert p.b.device.counters.rx_coalesced_segments == 6


def test_uso_not_accepted_means_datagrams_one_by_one() -> None:
    p, got, wire = pair(GRO)  # GUEST_TSO4/6 but no GUEST_USO
    pkt = udp_packet(8000, gso_size=1400)
    assert p.a.driver.transmit(pkt.frame, TxMeta(1400, pkt.hdr.csum_start, pkt.hdr.csum_offset))
    p.a.driver.flush()
    p.loop.run_until_idle(max_steps=100_000)
    assert [rx.data for rx in got] == wire and len(wire) == 6
    assert all(rx.segment_size is None for rx in got)
