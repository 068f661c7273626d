"""The emulated pair end to end: bring-up through the registers, plain frames both ways
with exact counters, every valid offered feature set, queue sizes down to 1, the wire's
faults accounted for frame by frame, and errors on either side turned into state."""

from __future__ import annotations

import itertools

import pytest

from driver.net import DriverConfig
from emulator.backends.wire import FaultConfig
from emulator.net.device import IMPLEMENTED, NetDeviceConfig
from testbench.host import HostConfig, Pair, make_pair
from testbench.loop import EventLoop
from testbench.traffic import Checker, Sender, Stream, frame_sizes
from virtio import spec
from virtio.constants import FeatureBit as F
from virtio.constants import MmioReg, Status
from virtio.features import FeatureSet
from virtio.ring import U16_MASK

MAC_A = bytes.fromhex("525400000001")
MAC_B = bytes.fromhex("525400000002")


def pair_with(
    *,
    offered: FeatureSet | None = None,
    driver: DriverConfig | None = None,
    faults: FaultConfig | None = None,
    seed: int = 0,
) -> Pair:
    dev = NetDeviceConfig(offered=offered)
    drv = driver or DriverConfig()
    return make_pair(
        EventLoop(),
        a=HostConfig("a", MAC_A, device=dev, driver=drv),
        b=HostConfig("b", MAC_B, device=dev, driver=drv),
        faults=faults,
        seed=seed,
    )


def run_streams(pair: Pair, frames: int, seed: int = 5) -> tuple[Checker, Checker]:
    a, b = pair.a, pair.b
    ab = Stream(1, MAC_A, MAC_B, frame_sizes(frames, seed), seed)
    ba = Stream(2, MAC_B, MAC_A, frame_sizes(frames, seed + 1), seed)
    check_ab, check_ba = Checker(ab), Checker(ba)
    b.on_frames = check_ab.check
    a.on_frames = check_ba.check
    for s in (Sender(ab, a.driver), Sender(ba, b.driver)):
        pair.loop.add_idle_hook(s.pump)
    pair.loop.run_until_idle(max_steps=500_000)
    return check_ab, check_ba


def test_bring_up_negotiates_through_the_registers() -> None:
    pair = pair_with()
    # the driver asks for everything the device implements but UFO (as Linux, which
    # stopped accepting HOST_UFO), the receive offloads, mergeable buffers, RSC_EXT,
    # CTRL_RX_EXTRA, CTRL_VLAN, RSS, HASH_REPORT, VQ_NOTF_COAL and GUEST_HDRLEN (a driver
    # opts in with DriverConfig.wanted)
    expected = IMPLEMENTED.without(
        F.HOST_UFO, F.GUEST_CSUM, F.GUEST_TSO4, F.GUEST_TSO6, F.GUEST_ECN, F.GUEST_USO4,
        F.GUEST_USO6, F.MRG_RXBUF, F.RSC_EXT, F.CTRL_RX_EXTRA, F.CTRL_VLAN, F.RSS,
        F.HASH_REPORT, F.VQ_NOTF_COAL, F.GUEST_HDRLEN)
    for host in (pair.a, pair.b):
        assert host.driver.negotiated == expected
        assert host.core.driver_features == expected
        assert host.mmio.read(MmioReg.STATUS) == (
            Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK
        )
        assert host.driver.header_size == 12
        assert host.monitor.records == []
    assert pair.a.driver.mac == MAC_A and pair.b.driver.mac == MAC_B


def test_exact_counters_for_one_batch() -> None:
    pair = pair_with()
    a, b = pair.a, pair.b
    stream = Stream(1, MAC_A, MAC_B, [60, 100, 1514, 61, 1000], seed=9)
    frames = [stream.frame(i) for i in range(len(stream))]
    for f in frames:
        assert a.driver.transmit(f)
    a.driver.flush()
    received: list[bytes] = []
    b.on_frames = lambda rx: received.extend(r.data for r in rx)
    pair.loop.run_until_idle(max_steps=10_000)
    assert received == frames
    size = sum(len(f) for f in frames)
    dev_a, dev_b = a.device.counters, b.device.counters
    assert (dev_a.tx_notifications, dev_a.tx_chains, dev_a.tx_descriptors) == (1, 5, 5)
    assert (dev_a.tx_frames, dev_a.tx_bytes) == (5, size)
    assert (dev_b.rx_chains, dev_b.rx_frames, dev_b.rx_bytes) == (5, 5, size)
    assert a.driver.counters.tx_kicks == 1
    assert (b.driver.counters.rx_frames, b.driver.counters.rx_bytes) == (5, size)
    wire = pair.wire.a.counters
    assert (wire.sent, wire.delivered, wire.bytes_delivered) == (5, 5, size)
    assert dev_a.drops == {} and dev_b.drops == {}


@pytest.mark.parametrize(
    ("indirect", "separate", "per_frame"),
    [(False, False, 1), (False, True, 2), (True, False, 2), (True, True, 3)],
)
def test_descriptor_cost_of_tx_layouts(indirect: bool, separate: bool, per_frame: int) -> None:
    """Descriptors per frame: header and frame in one buffer (1), split (2), through an
    indirect table (+1 for the descriptor that points to the table, §2.7.5.3)."""
    pair = pair_with(driver=DriverConfig(use_indirect=indirect, tx_header_separate=separate))
    ab, ba = run_streams(pair, 300)
    assert ab.mismatches == ba.mismatches == 0
    assert pair.a.device.counters.tx_chains == 300
    assert pair.a.device.counters.tx_descriptors == 300 * per_frame


# Every offered set the device may offer: VERSION_1 plus any subset of the rest.
OPTIONAL = [F.MAC, F.MTU, F.STATUS, F.EVENT_IDX, F.INDIRECT_DESC]
OFFERED_SETS = [
    FeatureSet.of(F.VERSION_1, *combo)
    for n in range(len(OPTIONAL) + 1)
    for combo in itertools.combinations(OPTIONAL, n)
]


@pytest.mark.parametrize("offered", OFFERED_SETS, ids=lambda fs: "+".join(fs.names()))
def test_every_offered_set_carries_frames_exactly(offered: FeatureSet) -> None:
    pair = pair_with(offered=offered, driver=DriverConfig(use_indirect=True))
    assert pair.a.driver.negotiated == offered
    ab, ba = run_streams(pair, 60)
    assert (ab.exact, ba.exact, ab.mismatches, ba.mismatches) == (60, 60, 0, 0)
    assert pair.a.monitor.records == [] and pair.b.monitor.records == []
    indirect = F.INDIRECT_DESC in offered
    assert pair.a.device.counters.tx_descriptors == 60 * (2 if indirect else 1)
    if F.MAC not in offered:
        # the driver made up a locally administered unicast MAC (§5.1.5)
        assert pair.a.driver.mac[0] & 0b11 == 0b10


@pytest.mark.parametrize("queue_size", [1, 2, 8, 64, 256])
def test_small_rings_still_carry_every_frame(queue_size: int) -> None:
    pair = pair_with(driver=DriverConfig(queue_size=queue_size))
    assert pair.a.driver.tx_queue.size == queue_size
    ab, ba = run_streams(pair, 200)
    assert ab.mismatches == ba.mismatches == 0
    assert pair.a.device.counters.drops == {} and pair.b.device.counters.drops == {}


def test_indices_wrap_past_65535() -> None:
    # 70,000 frames through an 8-entry ring: both rings' u16 indices wrap (§2.7.6).
    pair = pair_with(driver=DriverConfig(queue_size=8))
    frame = Stream(1, MAC_A, MAC_B, [60], 0).frame(0)
    got = 0

    def count(rx: list[object]) -> None:
        nonlocal got
        got += len(rx)

    pair.b.on_frames = count  # type: ignore[assignment]
    total = 70_000
    sent = 0
    while sent < total:
        while sent < total and pair.a.driver.transmit(frame):
            sent += 1
        pair.a.driver.flush()
        pair.loop.run_until_idle(max_steps=100_000)
    assert got == total
    assert pair.a.device.counters.tx_chains == total
    assert pair.a.driver.tx_queue.avail_idx == total & U16_MASK


@pytest.mark.parametrize(
    ("fault", "counter"),
    [("loss", "lost"), ("duplicate", "duplicated"), ("corrupt", "corrupted"), ("reorder", "reordered")],
)
def test_wire_faults_are_accounted_frame_by_frame(fault: str, counter: str) -> None:
    pair = pair_with(faults=FaultConfig(**{fault: 0.1}), seed=11)  # type: ignore[arg-type]
    ab, ba = run_streams(pair, 400)
    for check, port in ((ab, pair.wire.a), (ba, pair.wire.b)):
        injected = getattr(port.counters, counter)
        assert injected > 0
        if fault == "loss":
            assert (check.missing, check.corrupt, check.duplicates) == (injected, 0, 0)
        elif fault == "duplicate":
            assert (check.missing, check.corrupt, check.duplicates) == (0, 0, injected)
        elif fault == "corrupt":
            # a corrupted frame may have become unrecognisable (its sequence number hit)
            assert check.corrupt + check.foreign == injected
            assert check.missing == check.corrupt + check.foreign
        else:  # reordering delays frames but loses nothing
            assert check.mismatches == 0


def test_driver_bug_puts_the_device_in_needs_reset_and_the_driver_notices() -> None:
    pair = pair_with()
    a = pair.a
    mem_end = a.memory.regions[-1].end
    # A descriptor whose buffer lies beyond guest memory (§2.7.5: the device must never
    # follow it).
    a.driver.tx_queue.add([(mem_end - 8, 64)], [], token=999)
    a.mmio.write(MmioReg.QUEUE_NOTIFY, 1)
    assert a.core.status & Status.DEVICE_NEEDS_RESET
    (rec,) = a.monitor.records
    assert (rec.who, rec.rule, rec.queue, rec.action) == (
        "driver", "desc-addr-out-of-memory", 1, "needs-reset"
    )
    assert rec.reference == str(spec.DESC_TABLE)
    pair.loop.run_until_idle(max_steps=1000)
    assert a.driver.needs_reset and a.driver.broken
    assert a.device.counters.config_interrupts == 1
    # a reset and a new probe bring it back
    a.driver.probe()
    assert not a.driver.broken
    ab, _ = run_streams(pair, 20)
    assert ab.mismatches == 0


def test_device_bug_is_recorded_by_the_driver() -> None:
    pair = pair_with()
    b = pair.b
    rx = b.driver.rx_queue
    # The device returns a head the driver never made available... write a used entry
    # naming descriptor id = queue size (out of range) and bump used.idx (§2.7.8).
    used_idx = b.memory.read_u16(rx.used_addr + 2)
    b.memory.write_u32(rx.used_addr + 4 + 8 * (used_idx % rx.size), rx.size)
    b.memory.write_u32(rx.used_addr + 8 + 8 * (used_idx % rx.size), 100)
    b.memory.write_u16(rx.used_addr + 2, used_idx + 1)
    b.driver.poll()  # as if the interrupt came
    assert b.driver.broken
    (err,) = b.driver.errors
    assert err.rule == "used-id-out-of-range"
    assert str(err.section).startswith("virtio-v1.2 §2.7.8")
    # it stops touching the rings: nothing more is reaped or refilled
    refills = b.driver.counters.rx_refills
    b.driver.poll()
    assert b.driver.counters.rx_refills == refills
