"""The virtio-net driver against the small fake device (§3.1.1, §5.1)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from driver.net import (
    CONTROL_FEATURES,
    DEFAULT_WANTED,
    NOT_IMPLEMENTED,
    DriverConfig,
    VirtioNetDriver,
)
from stack.device import RxFrame, TxMeta
from tests.driver.fake_device import FakeDevice, FakeRing, net_config
from virtio import spec
from virtio.constants import (
    DescFlag,
    FeatureBit,
    GsoType,
    InterruptStatus,
    MmioReg,
    NetHdrFlag,
    Status,
    UsedFlag,
)
from virtio.errors import DeviceConfigError, NegotiationFailed
from virtio.features import FeatureSet
from virtio.layouts import DESC
from virtio.memory import GuestMemory
from virtio.net_hdr import NetHdr

F = FeatureBit
USED = InterruptStatus.USED_BUFFER
CONFIG = InterruptStatus.CONFIG_CHANGE
DATA_PLANE = DEFAULT_WANTED - CONTROL_FEATURES
"""What the driver wants by default minus the control plane: the fake device has the
data queues only (tests/driver/fake_device.py)."""
NO_EVENT_IDX = DATA_PLANE - FeatureSet.of(F.EVENT_IDX)
FRAME = bytes.fromhex("ffffffffffff525400123456" "0806") + bytes(range(46))


def make(
    offered: FeatureSet = DATA_PLANE, config: DriverConfig | None = None, *,
    probe: bool = True, **kw: Any,
) -> tuple[FakeDevice, VirtioNetDriver, GuestMemory]:
    mem = GuestMemory.anonymous(4 << 20)
    dev = FakeDevice(mem, offered, **kw)
    drv = VirtioNetDriver(dev, mem, config or DriverConfig(queue_size=8))
    if probe:
        drv.probe()
    return dev, drv, mem


def desc(mem: GuestMemory, table: int, i: int) -> tuple[int, int, int, int]:
    addr, length, flags, nxt = DESC.fmt.unpack(mem.read(table + DESC.size * i, DESC.size))
    return addr, length, flags, nxt


# initialization, §3.1.1


def test_init_status_sequence_is_exact() -> None:
    """§3.1.1: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK (re-read), queues,
    DRIVER_OK; identity is read before any write (§4.2.3.1)."""
    dev, drv, _ = make()
    assert dev.status_writes == [0, 1, 1 | 2, 1 | 2 | 8, 1 | 2 | 8 | 4]
    assert [off for _, off, _ in dev.log[:3]] == [MmioReg.MAGIC_VALUE, MmioReg.VERSION,
                                                   MmioReg.DEVICE_ID]
    assert dev.log[3] == ("w", MmioReg.STATUS, 0)
    # FEATURES_OK is read back before any queue register is touched.
    i_fok = dev.log.index(("w", MmioReg.STATUS, 11))
    assert dev.log[i_fok + 1] == ("r", MmioReg.STATUS, 11)
    first_queue = min(i for i, (_, off, _) in enumerate(dev.log) if off == MmioReg.QUEUE_SEL)
    assert first_queue > i_fok
    assert not drv.broken and drv.errors == []


@pytest.mark.parametrize(
    ("offered", "wanted", "written"),
    [
        (DATA_PLANE | FeatureSet.of(F.CSUM, F.HOST_TSO4, F.MRG_RXBUF), DATA_PLANE,
         DATA_PLANE),
        (FeatureSet.of(F.VERSION_1), DATA_PLANE, FeatureSet.of(F.VERSION_1)),
        (FeatureSet.of(F.VERSION_1, F.MAC, F.EVENT_IDX, F.RING_PACKED), DATA_PLANE,
         FeatureSet.of(F.VERSION_1, F.MAC, F.EVENT_IDX)),
        (DATA_PLANE | FeatureSet.of(F.CSUM, F.HOST_TSO4, F.HOST_TSO6),
         DATA_PLANE | FeatureSet.of(F.CSUM, F.HOST_TSO4, F.HOST_TSO6),
         DATA_PLANE | FeatureSet.of(F.CSUM, F.HOST_TSO4, F.HOST_TSO6)),
    ],
)
def test_features_written(offered: FeatureSet, wanted: FeatureSet, written: FeatureSet) -> None:
    """§2.2.1: a subset of what is offered, as three 32-bit words."""
    dev, drv, _ = make(offered, DriverConfig(wanted=wanted, queue_size=8))
    assert dev.driver_feature_set == written == drv.negotiated
    assert drv.offered == offered
    assert set(dev.driver_features) == {0, 1, 2}


def test_guest_ecn_without_guest_tso4_is_dropped_with_its_rule() -> None:
    """§5.1.3.1: GUEST_ECN requires GUEST_TSO4 or GUEST_TSO6; a device offering it alone
    gets it refused, the reason recorded."""
    offered = DATA_PLANE | FeatureSet.of(F.GUEST_CSUM, F.GUEST_ECN)
    wanted = DATA_PLANE | FeatureSet.of(F.GUEST_CSUM, F.GUEST_TSO4, F.GUEST_ECN)
    dev, drv, _ = make(offered, DriverConfig(wanted=wanted, queue_size=8))
    assert dev.driver_feature_set == DATA_PLANE | FeatureSet.of(F.GUEST_CSUM)
    by_feature = {v.feature: v for v in drv.dropped}
    assert set(by_feature) == {F.GUEST_TSO4, F.GUEST_ECN}
    ecn = by_feature[F.GUEST_ECN]
    assert ecn.rule is not None and ecn.rule.feature is F.GUEST_ECN
    assert ecn.section == spec.NET_FEATURE_REQUIREMENTS
    assert by_feature[F.GUEST_TSO4].section == spec.FEATURE_BITS_DRIVER


def test_features_the_driver_does_not_implement_are_dropped_with_a_reason() -> None:
    offered = DATA_PLANE | FeatureSet.of(F.MRG_RXBUF, F.RING_PACKED, F.IN_ORDER)
    dev, drv, _ = make(offered, DriverConfig(wanted=offered, queue_size=8))
    assert dev.driver_feature_set == DATA_PLANE.with_(F.MRG_RXBUF)
    reasons = {v.feature: v.section for v in drv.dropped}
    assert reasons == {F.RING_PACKED: NOT_IMPLEMENTED, F.IN_ORDER: NOT_IMPLEMENTED}


def test_features_ok_refused_sets_failed() -> None:
    """§3.1.1 step 6: FEATURES_OK did not stick → the device is unusable; FAILED."""
    dev, drv, _ = make(probe=False)
    dev.refuse_features_ok = True
    with pytest.raises(NegotiationFailed, match="cleared FEATURES_OK") as info:
        drv.probe()
    assert "VERSION_1" in str(info.value) and "EVENT_IDX" in str(info.value)
    assert dev.status_writes == [0, 1, 3, 11, 3 | Status.FAILED]
    assert dev.status & Status.FAILED
    assert not any(off == MmioReg.QUEUE_SEL for _, off, _ in dev.log)


def test_device_without_version_1_is_refused() -> None:
    """§6.2: a (non-legacy) device MUST offer VERSION_1; this driver needs it."""
    dev, drv, _ = make(FeatureSet.of(F.MAC), probe=False)
    with pytest.raises(NegotiationFailed, match="VERSION_1"):
        drv.probe()
    assert dev.status & Status.FAILED and MmioReg.DRIVER_FEATURES not in {o for _, o, _ in dev.log}


@pytest.mark.parametrize(
    ("kw", "rule"),
    [({"magic": 0}, "mmio-bad-magic"), ({"version": 1}, "mmio-bad-version"),
     ({"device_id": 2}, "mmio-wrong-device-id"), ({"device_id": 0}, "mmio-no-device")],
)
def test_bad_identity_aborts_probe_without_writes(kw: dict[str, Any], rule: str) -> None:
    dev, drv, _ = make(probe=False, **kw)
    with pytest.raises(DeviceConfigError) as info:
        drv.probe()
    assert info.value.rule == rule
    assert [e for e in dev.log if e[0] == "w"] == []


def test_config_mac_mtu_link() -> None:
    """§5.1.4 / §5.1.5: MAC from config with MAC, link from status with STATUS, MTU with
    MTU; RX buffers hold header + MTU + Ethernet header + a VLAN tag."""
    dev, drv, _ = make(config=None, probe=False)
    dev.config = bytearray(net_config(bytes.fromhex("02aabbccddee"), status=0, mtu=9000))
    drv.probe()
    assert (drv.mac, drv.link_up, drv.mtu, drv.header_size) == (
        bytes.fromhex("02aabbccddee"), False, 9000, 12)
    assert drv.rx_buffer_size == 12 + 9000 + 18
    assert drv.capabilities().mtu == 9000 and drv.capabilities().max_burst == 8


def test_defaults_without_mac_mtu_status() -> None:
    """§5.1.4.2: without MAC a locally administered address, without STATUS the link is
    up; default RX buffer ≥ 1526 bytes (§5.1.6.3.1)."""
    _, drv, _ = make(FeatureSet.of(F.VERSION_1))
    assert drv.mac[0] & 0x03 == 0x02 and len(drv.mac) == 6
    mac = drv.mac
    drv.probe()
    assert drv.mac == mac
    assert (drv.link_up, drv.mtu) == (True, 1500)
    assert drv.rx_buffer_size == 1530
    assert drv.rx_buffer_size >= 1526


def test_mtu_below_68_is_a_device_config_error() -> None:
    dev, drv, _ = make(probe=False)
    dev.config = bytearray(net_config(mtu=60))
    with pytest.raises(DeviceConfigError) as info:
        drv.probe()
    assert (info.value.rule, info.value.section) == ("mtu-out-of-range", spec.NET_CONFIG_DEVICE)
    assert dev.status & Status.FAILED


def test_big_rx_buffers_with_guest_tso() -> None:
    """§5.1.6.3.1: GUEST_TSO4 without MRG_RXBUF → buffers of at least 65601 bytes."""
    offered = DATA_PLANE | FeatureSet.of(F.GUEST_CSUM, F.GUEST_TSO4)
    _, drv, _ = make(offered, DriverConfig(wanted=offered, queue_size=4))
    assert drv.rx_buffer_size == 65601


@pytest.mark.parametrize(("queue_max", "size"), [(4, 4), (6, 4), (256, 8)])
def test_queue_size_is_capped_by_queue_num_max(queue_max: int, size: int) -> None:
    _, drv, _ = make(queue_max=queue_max)
    assert drv.rx_queue.size == drv.tx_queue.size == size


def test_rx_ring_is_filled_and_kicked_after_driver_ok() -> None:
    dev, drv, _ = make()
    rx = dev.rings[0]
    assert rx.avail_idx == 8 and dev.notifications == [0]
    i_ok = dev.log.index(("w", MmioReg.STATUS, 15))
    assert dev.log.index(("w", MmioReg.QUEUE_NOTIFY, 0)) > i_ok
    chains = [rx.pop() for _ in range(8)]
    assert all(c is not None and c.readable == [] for c in chains)
    addrs = {c.writable[0] for c in chains if c is not None}
    assert len(addrs) == 8 and all(n == drv.rx_buffer_size for _, n in addrs)


# transmit, §5.1.6.2


def test_transmit_writes_header_and_frame_exactly() -> None:
    """§5.1.6.2.1: flags 0, gso_type NONE, num_buffers 0; header then frame in one
    device-readable buffer. Followed through avail ring → descriptor → memory."""
    dev, drv, mem = make()
    assert drv.transmit(FRAME) is True
    tx = drv.tx_queue
    head = mem.read_u16(tx.avail_addr + 4)
    addr, length, flags, _ = desc(mem, tx.desc_addr, head)
    assert (length, flags) == (12 + len(FRAME), 0)
    assert mem.read(addr, length) == bytes(12) + FRAME
    assert NetHdr.parse(mem.read(addr, 12), 12) == NetHdr(gso_type=GsoType.NONE, num_buffers=0)
    drv.flush()
    assert dev.notifications == [0, 1]
    assert dev.transmitted() == [bytes(12) + FRAME]
    assert (drv.counters.tx_frames, drv.counters.tx_bytes, drv.counters.tx_kicks) == (
        1, len(FRAME), 1)


def test_tx_header_separate_uses_two_descriptors() -> None:
    _, drv, mem = make(config=DriverConfig(queue_size=8, tx_header_separate=True))
    drv.transmit(FRAME)
    tx = drv.tx_queue
    head = mem.read_u16(tx.avail_addr + 4)
    a0, l0, f0, n0 = desc(mem, tx.desc_addr, head)
    a1, l1, f1, _ = desc(mem, tx.desc_addr, n0)
    assert (l0, f0, l1, f1) == (12, DescFlag.NEXT, len(FRAME), 0)
    assert mem.read(a0, 12) == bytes(12) and mem.read(a1, l1) == FRAME
    assert tx.num_free == 6


@pytest.mark.parametrize("separate", [False, True])
def test_tx_through_indirect_table(separate: bool) -> None:
    dev, drv, mem = make(config=DriverConfig(queue_size=8, use_indirect=True,
                                             tx_header_separate=separate))
    drv.transmit(FRAME)
    tx = drv.tx_queue
    table, length, flags, _ = desc(mem, tx.desc_addr, mem.read_u16(tx.avail_addr + 4))
    n = 2 if separate else 1
    assert (length, flags) == (16 * n, DescFlag.INDIRECT)
    data = b"".join(mem.read(a, ln) for a, ln, _, _ in (desc(mem, table, i) for i in range(n)))
    assert data == bytes(12) + FRAME
    drv.flush()
    assert dev.transmitted() == [bytes(12) + FRAME]
    assert drv.transmit(FRAME) and tx.num_free == 7  # reaped, table freed, 1 in flight


def test_ring_full_returns_false_and_counts() -> None:
    dev, drv, _ = make(config=DriverConfig(queue_size=4, tx_header_separate=True))
    assert [drv.transmit(FRAME) for _ in range(3)] == [True, True, False]
    assert drv.counters.tx_ring_full == 1
    drv.flush()
    assert len(dev.transmitted()) == 2
    assert drv.transmit(FRAME) is True  # completed chains reaped on transmit
    assert drv.counters.used_reaped == 2


def test_ring_full_recovers_after_used_interrupt() -> None:
    dev, drv, _ = make(config=DriverConfig(queue_size=4))
    assert all(drv.transmit(FRAME) for _ in range(4))
    assert drv.transmit(FRAME) is False
    drv.flush()
    dev.transmitted()
    dev.interrupt(USED)
    drv.handle_interrupt()
    assert drv.tx_queue.num_free == 4
    assert drv.transmit(FRAME) is True


def test_flush_kicks_once_per_batch_without_event_idx() -> None:
    """§2.7.10: one notification for a batch; none while the device sets NO_NOTIFY."""
    dev, drv, _ = make(NO_EVENT_IDX)
    for _ in range(3):
        drv.transmit(FRAME)
    drv.flush()
    drv.flush()  # nothing new: no kick, nothing counted
    assert dev.notifications == [0, 1]
    dev.rings[1].set_used_flags(UsedFlag.NO_NOTIFY)
    drv.transmit(FRAME)
    drv.flush()
    assert dev.notifications == [0, 1]
    c = drv.counters
    assert (c.tx_kicks, c.tx_kicks_suppressed, c.tx_frames) == (1, 1, 4)


def test_flush_follows_avail_event_with_event_idx() -> None:
    dev, drv, _ = make()
    ring = dev.rings[1]
    drv.transmit(FRAME)
    drv.flush()  # avail idx 0 -> 1 crosses avail_event 0
    ring.set_avail_event(3)
    drv.transmit(FRAME)
    drv.flush()  # 1 -> 2: event 3 not reached
    drv.transmit(FRAME)
    drv.transmit(FRAME)
    drv.flush()  # 2 -> 4 crosses 3
    assert dev.notifications == [0, 1, 1]
    assert (drv.counters.tx_kicks, drv.counters.tx_kicks_suppressed) == (2, 1)


def test_transmit_misuse_is_a_value_error() -> None:
    _, drv, _ = make(FeatureSet.of(F.VERSION_1, F.MAC, F.MTU), probe=False)
    with pytest.raises(ValueError, match="before probe"):
        _ = drv.tx_queue
    with pytest.raises(ValueError, match="before probe"):
        drv.transmit(FRAME)
    drv.probe()
    with pytest.raises(ValueError, match="needs a partial checksum"):
        drv.transmit(FRAME, TxMeta(segment_size=1448))
    with pytest.raises(ValueError, match="CSUM was not negotiated"):
        drv.transmit(FRAME, TxMeta(csum_start=34, csum_offset=16))
    with pytest.raises(ValueError, match=r"1\.\.1518"):
        drv.transmit(bytes(1519))
    assert drv.transmit(bytes(1518), TxMeta()) is True


# receive, §5.1.6.4


def test_rx_frames_come_up_byte_exact_and_buffers_are_refilled() -> None:
    dev, drv, _ = make(NO_EVENT_IDX)
    frames = [FRAME, bytes(range(256)) * 5, b"\x01" * 1514]
    for f in frames:
        dev.receive(f)
    dev.interrupt(USED)
    drv.handle_interrupt()
    assert drv.receive() == [RxFrame(data=f) for f in frames]
    assert drv.receive() == []
    assert dev.acks == [USED]
    assert dev.rings[0].avail_idx == 8 + 3
    c = drv.counters
    assert (c.rx_frames, c.rx_bytes, c.rx_refills, c.interrupts) == (
        3, sum(map(len, frames)), 3, 1)
    assert dev.notifications == [0, 0] and c.rx_kicks == 2


def test_rx_race_device_writes_after_the_last_check() -> None:
    """§2.7.14: entries the device adds while notifications are off are picked up by the
    re-check after re-enabling, without another interrupt."""
    dev, drv, _ = make(NO_EVENT_IDX)
    late = [b"late" * 20]
    original_write = dev.write

    def write(offset: int, value: int, size: int = 4) -> None:
        original_write(offset, value, size)
        if offset == MmioReg.QUEUE_NOTIFY and value == 0 and late:
            dev.receive(late.pop())  # answers the refill kick at once, no interrupt

    dev.write = write  # type: ignore[method-assign]
    dev.receive(FRAME)
    dev.interrupt(USED)
    drv.handle_interrupt()
    assert [f.data for f in drv.receive()] == [FRAME, b"late" * 20]


def test_poll_reaps_without_reading_the_isr() -> None:
    dev, drv, _ = make()
    dev.receive(FRAME)
    dev.log.clear()
    drv.poll()
    assert [f.data for f in drv.receive()] == [FRAME]
    assert MmioReg.INTERRUPT_STATUS not in {off for _, off, _ in dev.log}
    assert drv.counters.interrupts == 0


def test_rx_len_beyond_buffer_is_recorded_and_breaks_the_driver() -> None:
    """§2.7.8: used len larger than the buffer (a real bug: drivers that trusted it)."""
    dev, drv, _ = make()
    dev.receive(FRAME, used_len=drv.rx_buffer_size + 1)
    dev.interrupt(USED)
    drv.handle_interrupt()  # must not raise
    assert drv.broken
    assert [e.rule for e in drv.errors] == ["used-len-too-large"]
    assert drv.receive() == []
    assert drv.transmit(FRAME) is False and drv.counters.drops["device-broken"] == 1
    dev.receive(FRAME)
    drv.handle_interrupt()
    drv.poll()
    assert len(drv.errors) == 1


@pytest.mark.parametrize(
    ("hdr", "used_len", "rule"),
    [
        (None, 5, "rx-shorter-than-header"),
        (NetHdr(num_buffers=2), None, "rx-num-buffers-not-one"),
        (NetHdr(num_buffers=0), None, "rx-num-buffers-not-one"),
        (NetHdr(flags=NetHdrFlag.DATA_VALID, num_buffers=1), None, "rx-flags-without-guest-csum"),
        (NetHdr(gso_type=GsoType.TCPV4, gso_size=1448, num_buffers=1), None,
         "rx-gso-not-negotiated"),
        (NetHdr(gso_type=2, num_buffers=1), None, "rx-gso-type-unknown"),
    ],
)
def test_bad_rx_frame_is_recorded_dropped_and_recycled(
    hdr: NetHdr | None, used_len: int | None, rule: str
) -> None:
    """§5.1.6.3 / §5.1.6.4.1: a frame the device must not have written is dropped and
    counted under its rule, its buffer goes back; the driver keeps working."""
    dev, drv, _ = make(NO_EVENT_IDX)
    dev.receive(FRAME, hdr, used_len=used_len)
    dev.receive(FRAME)
    dev.interrupt(USED)
    drv.handle_interrupt()
    assert [e.rule for e in drv.errors] == [rule]
    assert drv.errors[0].section in (spec.NET_RX, spec.NET_RX_DEVICE)
    assert drv.counters.drops == {rule: 1}
    assert [f.data for f in drv.receive()] == [FRAME]
    assert not drv.broken and dev.rings[0].avail_idx == 8 + 2


def test_rx_checksum_flags_pass_up_with_guest_csum() -> None:
    offered = DATA_PLANE | FeatureSet.of(F.GUEST_CSUM)
    dev, drv, _ = make(offered, DriverConfig(wanted=offered, queue_size=8))
    dev.receive(FRAME, NetHdr(flags=NetHdrFlag.DATA_VALID, num_buffers=1))
    dev.receive(FRAME, NetHdr(flags=NetHdrFlag.NEEDS_CSUM, csum_start=34, csum_offset=16,
                              num_buffers=1))
    drv.poll()
    assert drv.receive() == [
        RxFrame(data=FRAME, csum_verified=True),
        RxFrame(data=FRAME, csum_partial=True, csum_start=34, csum_offset=16),
    ]


def test_tx_used_entry_not_in_flight_breaks_the_driver() -> None:
    dev, drv, _ = make()
    dev.rings[1].push_used(5, 0)
    dev.interrupt(USED)
    drv.handle_interrupt()
    assert drv.broken and [e.rule for e in drv.errors] == ["used-id-not-in-flight"]


def test_tx_used_len_must_be_zero() -> None:
    """§2.7.8: len counts bytes written to device-writable descriptors; TX has none."""
    dev, drv, _ = make()
    drv.transmit(FRAME)
    chain = dev.rings[1].pop()
    assert chain is not None
    dev.rings[1].push_used(chain.head, 60)
    drv.poll()
    assert drv.broken and [e.rule for e in drv.errors] == ["used-len-too-large"]


# configuration changes, §2.1.2 / §5.1.4


def test_device_needs_reset_via_config_interrupt_sets_broken() -> None:
    dev, drv, _ = make()
    dev.status |= Status.DEVICE_NEEDS_RESET
    dev.interrupt(CONFIG)
    drv.handle_interrupt()
    assert drv.broken and drv.needs_reset
    assert drv.errors == []  # the device said so itself: not a protocol violation
    assert dev.acks == [CONFIG] and drv.counters.config_interrupts == 1


def test_link_status_change_via_config_interrupt() -> None:
    dev, drv, _ = make()
    assert drv.link_up
    dev.set_config(6, b"\x00\x00")
    dev.interrupt(CONFIG)
    drv.handle_interrupt()
    assert not drv.link_up and not drv.broken
    dev.set_config(6, b"\x01\x00")
    dev.interrupt(CONFIG | USED)
    drv.handle_interrupt()
    assert drv.link_up and dev.acks == [CONFIG, CONFIG | USED]


def test_spurious_interrupt_is_harmless() -> None:
    dev, drv, _ = make()
    drv.handle_interrupt()
    assert dev.acks == [] and drv.counters.interrupts == 1 and not drv.broken


# lifecycle and reporting


def test_reprobe_and_remove_do_not_leak_guest_memory() -> None:
    dev, drv, mem = make()
    alloc = mem.allocator
    assert alloc is not None
    used = alloc.in_use
    drv.transmit(FRAME)
    drv.probe()
    assert alloc.in_use == used
    assert dev.status_writes[-5:] == [0, 1, 3, 11, 15]
    drv.remove()
    assert alloc.in_use == 0 and dev.status == 0


def test_counters_are_json_ready() -> None:
    dev, drv, _ = make()
    drv.transmit(FRAME)
    drv.flush()
    dev.receive(FRAME, used_len=3)
    drv.poll()
    data = json.loads(json.dumps(drv.counters.as_dict()))
    assert data["tx_frames"] == 1 and data["drops"] == {"rx-shorter-than-header": 1}
    assert set(data) >= {"tx_kicks", "tx_kicks_suppressed", "tx_ring_full", "rx_refills",
                         "rx_kicks", "interrupts", "config_interrupts", "used_reaped"}


def test_fake_ring_sees_what_the_driver_queue_wrote() -> None:
    """Sanity of the helper itself: FakeRing.of agrees with the registers path."""
    dev, drv, _ = make()
    ring = FakeRing.of(drv.tx_queue)
    assert (ring.desc, ring.avail, ring.used) == (dev.rings[1].desc, dev.rings[1].avail,
                                                  dev.rings[1].used)


@pytest.mark.parametrize(("offered", "csum", "tso4", "tso6", "verified"), [
    (DATA_PLANE, True, True, True, False),
    (DATA_PLANE - FeatureSet.of(F.HOST_TSO6), True, True, False, False),
    (DATA_PLANE - FeatureSet.of(F.CSUM, F.HOST_TSO4, F.HOST_TSO6, F.HOST_ECN, F.HOST_USO),
     False, False, False, False),
    (DATA_PLANE | FeatureSet.of(F.GUEST_CSUM), True, True, True, True),
])
def test_capabilities_follow_the_negotiated_features(
    offered: FeatureSet, csum: bool, tso4: bool, tso6: bool, verified: bool,
) -> None:
    """The stack's view (smoltcp-style capabilities): CSUM → partial checksums completed,
    HOST_TSO4/6 → 64 KiB IP packets segmented, GUEST_CSUM → DATA_VALID trusted."""
    _, drv, _ = make(offered, DriverConfig(wanted=DATA_PLANE | FeatureSet.of(F.GUEST_CSUM),
                                           queue_size=8))
    caps = drv.capabilities()
    assert (caps.checksum.tx_partial, caps.checksum.rx_verified) == (csum, verified)
    assert caps.segmentation.tcp_ipv4_max == (0xFFFF if tso4 else None)
    assert caps.segmentation.tcp_ipv6_max == (0xFFFF if tso6 else None)
