"""Received packets with offload work left undone (§5.1.6.4.1): a backend such as a tap
with a vnet header hands the device a frame with a partial checksum (NEEDS_CSUM) or a
whole GSO packet from a local sender. The ``linux`` and ``qemu`` profiles pass that on
to a driver that accepted it (Linux ``virtio_net_hdr_from_skb``); the ``strict`` profile,
and every profile facing a driver that did not accept it, finish the work in the device
(complete the checksum, segment) and deliver plain, verified frames."""

from __future__ import annotations

import pytest

from driver.net import DEFAULT_WANTED, DriverConfig
from emulator.net.device import NetDeviceConfig
from emulator.offload import complete_checksum, segment
from emulator.profiles import get_profile
from stack.device import RxFrame
from testbench.host import Host, HostConfig
from testbench.loop import EventLoop
from testbench.packets import DST_MAC, tcp_packet, udp_packet
from virtio.constants import FeatureBit as F
from virtio.features import FeatureSet
from virtio.net_hdr import NetHdr

CSUM = DEFAULT_WANTED.with_(F.GUEST_CSUM)
GRO = CSUM.with_(F.GUEST_TSO4, F.GUEST_TSO6)


def host(profile: str, wanted: FeatureSet) -> tuple[Host, list[RxFrame]]:
    h = Host(EventLoop(), HostConfig("b", DST_MAC, 16 << 20, NetDeviceConfig(profile=profile),
                                     DriverConfig(wanted=wanted, queue_size=64)))
    h.start()
    got: list[RxFrame] = []
    h.on_frames = got.extend
    return h, got


def receive(h: Host, frame: bytes, hdr: NetHdr) -> bool:
    taken = h.device.receive_offloaded(frame, hdr)
    h.loop.run_until_idle(max_steps=100_000)
    return taken


@pytest.mark.parametrize("profile", ["linux", "qemu"])
def test_partial_checksum_passes_to_a_guest_csum_driver(profile: str) -> None:
    pkt = tcp_packet(1000, mss=None)
    h, got = host(profile, CSUM)
    assert receive(h, pkt.frame, pkt.hdr)
    (rx,) = got
    assert rx.data == pkt.frame  # the seed is still in the checksum field
    assert (rx.csum_partial, rx.csum_start, rx.csum_offset, rx.csum_verified) == (
        True, pkt.hdr.csum_start, 16, False)
    assert h.device.counters.rx_offloads_passed == 1


@pytest.mark.parametrize(("profile", "wanted"), [
    ("strict", CSUM), ("linux", DEFAULT_WANTED), ("qemu", DEFAULT_WANTED)])
def test_partial_checksum_is_completed_otherwise(profile: str, wanted: FeatureSet) -> None:
    """strict, or a driver without GUEST_CSUM (which must never see NEEDS_CSUM):
    the device writes the checksum; DATA_VALID only with GUEST_CSUM."""
    pkt = tcp_packet(1000, mss=None)
    h, got = host(profile, wanted)
    assert receive(h, pkt.frame, pkt.hdr)
    (rx,) = got
    assert rx.data == complete_checksum(pkt.frame, pkt.hdr) != pkt.frame
    assert (rx.csum_partial, rx.csum_verified) == (False, F.GUEST_CSUM in wanted)
    assert h.device.counters.rx_offloads_finished == 1


@pytest.mark.parametrize("v6", [False, True])
def test_gso_packet_passes_whole_to_a_guest_tso_driver(v6: bool) -> None:
    pkt = tcp_packet(64000, mss=1448, ipv6=v6)
    h, got = host("linux", GRO)
    assert receive(h, pkt.frame, pkt.hdr)
    (rx,) = got
    assert rx.data == pkt.frame and rx.segment_size == 1448 and rx.csum_partial
    assert h.device.counters.rx_frames == 1


@pytest.mark.parametrize(("profile", "wanted"), [
    ("linux", CSUM), ("linux", DEFAULT_WANTED), ("strict", CSUM)])
def test_gso_packet_is_segmented_for_a_driver_without_guest_tso(
    profile: str, wanted: FeatureSet,
) -> None:
    """A driver without GUEST_TSO4 never sees a packet over its MTU (§5.1.6.3): the
    device cuts the GSO packet (with its profile's engine) into wire-sized segments."""
    pkt = tcp_packet(64000, mss=1448)
    h, got = host(profile, wanted)
    assert receive(h, pkt.frame, pkt.hdr)
    expected = segment(pkt.frame, pkt.hdr, get_profile(profile))
    assert len(expected) == 45
    assert [rx.data for rx in got] == expected
    assert all(rx.segment_size is None and not rx.csum_partial for rx in got)
    assert all(rx.csum_verified == (F.GUEST_CSUM in wanted) for rx in got)


def test_strict_device_segments_then_coalesces_for_a_guest_tso_driver() -> None:
    """The strict device does not forward the sender's unfinished work: it segments the
    GSO packet as the wire would carry it, and its own receive coalescing (GUEST_TSO4)
    builds the packet the driver gets — which cut again gives the same segments."""
    pkt = tcp_packet(64000, mss=1448)
    h, got = host("strict", GRO)
    assert receive(h, pkt.frame, pkt.hdr)
    (rx,) = got
    assert rx.segment_size == 1448 and rx.csum_partial and not rx.csum_verified
    hdr = NetHdr(flags=1, gso_type=pkt.hdr.gso_type, hdr_len=pkt.hdr.hdr_len,
                 gso_size=1448, csum_start=pkt.hdr.csum_start, csum_offset=16)
    strict = get_profile("strict")
    assert segment(rx.data, hdr, strict) == segment(pkt.frame, pkt.hdr, strict)
    counters = h.device.counters
    assert (counters.rx_offloads_finished, counters.rx_coalesced_segments) == (1, 45)


def test_uso_packet_for_a_driver_with_and_without_guest_uso() -> None:
    pkt = udp_packet(8000, gso_size=1400)
    h, got = host("linux", CSUM.with_(F.GUEST_USO4))
    assert receive(h, pkt.frame, pkt.hdr)
    assert [rx.segment_size for rx in got] == [1400]
    h, got = host("linux", GRO)
    assert receive(h, pkt.frame, pkt.hdr)
    assert [rx.data for rx in got] == segment(pkt.frame, pkt.hdr, get_profile("linux"))


def test_offload_packet_the_profile_refuses_is_dropped_and_counted() -> None:
    pkt = tcp_packet(64000, mss=1448)
    bad = pkt.hdr.with_(gso_size=0)  # gso-size-zero: refused by every profile
    h, got = host("linux", CSUM)
    assert not receive(h, pkt.frame, bad)
    assert got == [] and h.device.counters.drops == {"rx-gso-size-zero": 1}


def test_gso_packet_larger_than_64k_is_oversize() -> None:
    pkt = tcp_packet(0xFFFF - 40 + 1, mss=1448)  # IP packet of 65536 bytes
    h, got = host("linux", GRO)
    assert not receive(h, pkt.frame, pkt.hdr)
    assert got == [] and h.device.counters.drops == {"rx-oversize": 1}
