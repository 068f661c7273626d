"""Transmit offloads end to end: the driver builds the header from the stack's metadata,
the device checks it against the negotiated features and its profile, segments or
completes the checksum, and the peer receives MTU-sized frames (§5.1.6.2)."""

from __future__ import annotations

import pytest

from driver.net import DriverConfig
from emulator.net.device import NetDeviceConfig
from emulator.offload import segment
from emulator.profiles import get_profile
from stack.device import TxMeta
from stack.wire.checksum import verify
from testbench.host import HostConfig, Pair, make_pair
from testbench.loop import EventLoop
from testbench.packets import DST_MAC, SRC_MAC, OffloadPacket, Seed, tcp_packet, udp_packet
from virtio.constants import FeatureBit as F
from virtio.features import FeatureSet

MIB = 1 << 20


def pair(profile: str = "strict", offered: FeatureSet | None = None,
         wanted: FeatureSet | None = None) -> tuple[Pair, list[bytes]]:
    dev = NetDeviceConfig(offered=offered, profile=profile)
    drv = DriverConfig() if wanted is None else DriverConfig(wanted=wanted)
    p = make_pair(EventLoop(), a=HostConfig("a", SRC_MAC, 16 * MIB, dev, drv),
                  b=HostConfig("b", DST_MAC, 16 * MIB, dev, drv))
    got: list[bytes] = []
    p.b.on_frames = lambda rx: got.extend(r.data for r in rx)
    return p, got


def send(p: Pair, pkt: OffloadPacket) -> None:
    meta = TxMeta(segment_size=pkt.hdr.gso_size if pkt.hdr.gso_type else None,
                  csum_start=pkt.hdr.csum_start, csum_offset=pkt.hdr.csum_offset)
    assert p.a.driver.transmit(pkt.frame, meta)
    p.a.driver.flush()
    p.loop.run_until_idle(max_steps=100_000)


@pytest.mark.parametrize("profile", ["strict", "linux", "qemu"])
@pytest.mark.parametrize(
    "pkt",
    [tcp_packet(64000), tcp_packet(30000, ipv6=True, mss=1440), tcp_packet(1000, mss=None)],
    ids=["tso4-64k", "tso6", "csum-only"],
)
def test_peer_receives_the_engines_segments(profile: str, pkt: OffloadPacket) -> None:
    p, got = pair(profile)
    send(p, pkt)
    expected = segment(pkt.frame, pkt.hdr, get_profile(profile))
    assert got == expected
    dev = p.a.device.counters
    gso = 1 if pkt.hdr.gso_type else 0
    assert (dev.tx_chains, dev.tx_packets, dev.tx_gso_packets, dev.tx_csum_offloads) == (
        1, 1, gso, 1)
    assert dev.tx_frames == len(expected) == p.b.device.counters.rx_frames
    assert dev.tx_seeds == {"full-length": 1}
    assert p.a.driver.counters.tx_gso_packets == gso
    # every frame on the wire fits the MTU and carries a valid TCP checksum
    for frame in got:
        assert len(frame) <= 1514
        l4 = 34 if frame[12:14] == b"\x08\x00" else 54
        assert verify(frame[l4:], _pseudo(frame, l4))
    assert p.a.monitor.records == []


def _pseudo(frame: bytes, l4: int) -> int:
    from stack.wire.checksum import pseudo_header_sum_v4, pseudo_header_sum_v6  # noqa: PLC0415

    if l4 == 34:
        return pseudo_header_sum_v4(frame[26:30], frame[30:34], frame[23], len(frame) - l4)
    return pseudo_header_sum_v6(frame[22:38], frame[38:54], frame[20], len(frame) - l4)


def test_uso_segments_are_udp_datagrams() -> None:
    p, got = pair()
    pkt = udp_packet(10000, gso_size=1400)
    send(p, pkt)
    assert got == segment(pkt.frame, pkt.hdr, get_profile("strict"))
    assert len(got) == 8  # ceil(10000 / 1400)
    assert all(int.from_bytes(f[38:40], "big") == len(f) - 34 for f in got)  # UDP length


def test_zero_length_seed_linux_sends_bad_checksums_strict_fixes_and_records() -> None:
    pkt = tcp_packet(10 * 1448, seed=Seed.ZERO)
    linux, got_linux = pair("linux")
    send(linux, pkt)
    strict, got_strict = pair("strict")
    send(strict, pkt)
    assert len(got_linux) == len(got_strict) == 10
    assert not any(verify(f[34:], _pseudo(f, 34)) for f in got_linux)
    assert all(verify(f[34:], _pseudo(f, 34)) for f in got_strict)
    assert linux.a.device.counters.tx_seeds == {"zero-length": 1}
    assert strict.a.device.counters.tx_notes == {"csum-seed-zero-length": 1}
    assert [r.rule for r in strict.a.monitor.records] == ["csum-seed-zero-length"]


def test_segments_over_the_mtu_are_dropped_and_recorded_by_strict() -> None:
    # IPv6 + TCP at MSS 1448 makes 1522-byte frames: the driver broke §5.1.4.2.
    p, got = pair("strict")
    send(p, tcp_packet(30000, ipv6=True, mss=1448))
    assert got == []
    assert p.a.device.counters.drops == {"tx-segment-exceeds-mtu": 1}
    (rec,) = p.a.monitor.records
    assert (rec.rule, rec.action) == ("tx-segment-exceeds-mtu", "dropped")
    assert "1522-byte segments" in rec.detail


def test_driver_that_did_not_negotiate_tso_segments_nothing() -> None:
    # The driver declines HOST_TSO4: asking for segmentation is refused before the ring.
    wanted = FeatureSet.of(F.VERSION_1, F.MAC, F.MTU, F.CSUM)
    p, got = pair(wanted=wanted)
    pkt = tcp_packet(5000)
    with pytest.raises(ValueError, match="HOST_TSO4 was not negotiated"):
        p.a.driver.transmit(pkt.frame, TxMeta(1448, 34, 16))
    assert got == [] and p.a.device.counters.tx_chains == 0


@pytest.mark.parametrize(("profile", "sent"), [("strict", 0), ("linux", 21), ("qemu", 21)])
def test_profiles_differ_on_segments_over_the_mtu(profile: str, sent: int) -> None:
    """The driver breaks §5.1.4.2; every profile records it, only strict drops it (a Linux
    tap or QEMU segment at gso_size whatever the MTU)."""
    p, got = pair(profile)
    send(p, tcp_packet(30000, ipv6=True, mss=1448))
    assert p.a.device.counters.tx_frames == sent
    # the peer's device takes nothing over its MTU either: only the short last segment
    # gets through (§5.1.4.1)
    assert len(got) == min(sent, 1)
    assert p.b.device.counters.drops == ({"rx-oversize": sent - 1} if sent else {})
    (rec,) = [r for r in p.a.monitor.records if r.rule == "tx-segment-exceeds-mtu"]
    assert rec.action == ("dropped" if profile == "strict" else "allowed")
