"""Initialization over the virtio-mmio registers (§3.1.1, §4.2.2, §4.2.3)."""

from __future__ import annotations

from typing import Any

import pytest

from driver.transport import CONFIG_RETRY_LIMIT, MmioDriverTransport
from driver.virtqueue import DriverQueue
from tests.driver.fake_device import FakeDevice
from virtio import spec
from virtio.constants import MMIO_MAGIC, FeatureBit, InterruptStatus, MmioReg, Status
from virtio.errors import DeviceConfigError
from virtio.features import FeatureSet
from virtio.memory import GuestMemory

F = FeatureBit


def make(**kw: Any) -> tuple[FakeDevice, MmioDriverTransport, GuestMemory]:
    mem = GuestMemory.anonymous(1 << 20)
    dev = FakeDevice(mem, FeatureSet.of(F.VERSION_1, F.MAC), **kw)
    return dev, MmioDriverTransport(dev), mem


def test_identity_accepts_a_net_device_reading_only_the_identity_registers() -> None:
    dev, t, _ = make()
    t.check_identity(1)
    assert dev.log == [("r", MmioReg.MAGIC_VALUE, MMIO_MAGIC), ("r", MmioReg.VERSION, 2),
                       ("r", MmioReg.DEVICE_ID, 1)]


@pytest.mark.parametrize(
    ("kw", "rule", "section"),
    [
        ({"magic": 0x12345678}, "mmio-bad-magic", spec.MMIO_REGISTERS_DEVICE),
        ({"version": 1}, "mmio-bad-version", spec.MMIO_REGISTERS_DEVICE),
        ({"version": 3}, "mmio-bad-version", spec.MMIO_REGISTERS_DEVICE),
        ({"device_id": 0}, "mmio-no-device", spec.MMIO_INIT),
        ({"device_id": 2}, "mmio-wrong-device-id", spec.MMIO_INIT),
    ],
)
def test_identity_errors(kw: dict[str, Any], rule: str, section: spec.Section) -> None:
    """§4.2.2.2 / §4.2.3.1: magic, then version, then device id; DeviceID 0 means no
    device, and no other register may be touched."""
    dev, t, _ = make(**kw)
    with pytest.raises(DeviceConfigError) as info:
        t.check_identity(1)
    assert (info.value.rule, info.value.section) == (rule, section)
    assert all(op == "r" for op, _, _ in dev.log)
    assert {off for _, off, _ in dev.log} <= {MmioReg.MAGIC_VALUE, MmioReg.VERSION,
                                               MmioReg.DEVICE_ID}


def test_reset_writes_zero_and_waits_for_zero() -> None:
    dev, t, _ = make()
    dev.status = 0x0F
    t.reset()
    assert dev.log[:2] == [("w", MmioReg.STATUS, 0), ("r", MmioReg.STATUS, 0)]


def test_reset_that_never_completes_is_bounded() -> None:
    """§2.4: the driver waits for status 0, but not forever."""
    dev, t, _ = make()
    dev.reset_stuck = True
    with pytest.raises(DeviceConfigError) as info:
        t.reset()
    assert (info.value.rule, info.value.section) == ("reset-not-complete", spec.DEVICE_RESET)


def test_set_status_only_adds_bits() -> None:
    """§2.1.1: the driver never clears a status bit (writing 0 is a reset)."""
    dev, t, _ = make()
    t.set_status(Status.ACKNOWLEDGE)
    t.set_status(Status.DRIVER)
    t.set_status(Status.ACKNOWLEDGE)
    assert dev.status_writes == [1, 3, 3]
    assert t.status() == 3
    with pytest.raises(ValueError, match="non-empty"):
        t.set_status(0)


def test_features_are_read_and_written_word_by_word_through_the_selectors() -> None:
    """§4.2.2.2: select before each DeviceFeatures read / DriverFeatures write; three
    words so the v1.4 bits above 63 travel too."""
    dev, t, _ = make()
    dev.features = FeatureSet.of(F.CSUM, F.MAC, F.VERSION_1, F.RING_PACKED, F.SPEED_DUPLEX,
                                 F.RSS_CONTEXT)
    assert t.read_device_features() == dev.features
    sels = [(op, off, v) for op, off, v in dev.log if off == MmioReg.DEVICE_FEATURES_SEL]
    assert [v for _, _, v in sels] == [0, 1, 2]
    wanted = FeatureSet.of(F.MAC, F.VERSION_1, F.RSS_CONTEXT)
    t.write_driver_features(wanted)
    assert dev.driver_features == {0: 1 << 5, 1: 1, 2: 1}
    assert dev.driver_feature_set == wanted
    with pytest.raises(ValueError, match="beyond 96"):
        t.write_driver_features(FeatureSet.of(96))


def test_read_config_fields_little_endian() -> None:
    dev, t, _ = make()
    dev.config = bytearray(range(1, 17))
    assert t.read_config(0, 1) == 1
    assert t.read_config(6, 2) == 0x0807
    assert t.read_config(8, 4) == 0x0C0B0A09
    assert t.read_config(8, 8) == 0x100F0E0D0C0B0A09
    assert t.read_config_bytes(0, 6) == bytes(range(1, 7))
    with pytest.raises(ValueError, match="aligned"):
        t.read_config(1, 2)


def test_config_generation_retry() -> None:
    """§2.5 / §4.2.2 ConfigGeneration: a read that straddles a change is repeated."""
    dev, t, _ = make()
    dev.generation_flips = 3
    assert t.read_config_bytes(0, 6) == bytes.fromhex("525400123456")
    gens = [off for _, off, _ in dev.log if off == MmioReg.CONFIG_GENERATION]
    # attempt 1 reads generations 1, 2 (differ); attempt 2 reads 3, 3 (flips used up)
    assert len(gens) == 4


def test_config_generation_that_never_settles_is_bounded() -> None:
    dev, t, _ = make()
    dev.generation_flips = 10 * CONFIG_RETRY_LIMIT
    with pytest.raises(DeviceConfigError) as info:
        t.read_config(6, 2)
    assert (info.value.rule, info.value.section) == ("config-generation-unstable",
                                                      spec.CONFIG_SPACE)


def test_setup_queue_register_sequence() -> None:
    """§4.2.3.2: select, check not ready, QueueSizeMax, size, the three addresses
    (low then high), QueueReady = 1."""
    dev, t, mem = make()
    q = DriverQueue(mem, 1, 64, event_idx=False, indirect=False)
    t.setup_queue(q)
    writes = [(off, v) for op, off, v in dev.log if op == "w"]
    assert writes == [
        (MmioReg.QUEUE_SEL, 1), (MmioReg.QUEUE_NUM, 64),
        (MmioReg.QUEUE_DESC_LOW, q.desc_addr), (MmioReg.QUEUE_DESC_HIGH, 0),
        (MmioReg.QUEUE_DRIVER_LOW, q.avail_addr), (MmioReg.QUEUE_DRIVER_HIGH, 0),
        (MmioReg.QUEUE_DEVICE_LOW, q.used_addr), (MmioReg.QUEUE_DEVICE_HIGH, 0),
        (MmioReg.QUEUE_READY, 1),
    ]
    reads = [off for op, off, _ in dev.log if op == "r"]
    assert reads == [MmioReg.QUEUE_READY, MmioReg.QUEUE_NUM_MAX]
    assert dev.queues[1].num == 64 and dev.queues[1].addr("DEVICE") == q.used_addr


def test_setup_queue_checks_the_device_limits() -> None:
    dev, t, mem = make(queue_max=0)
    with pytest.raises(DeviceConfigError) as info:
        t.setup_queue(DriverQueue(mem, 0, 8, event_idx=False, indirect=False))
    assert info.value.rule == "queue-not-available"
    dev, t, mem = make(queue_max=8)
    with pytest.raises(ValueError, match="exceeds QueueSizeMax 8"):
        t.setup_queue(DriverQueue(mem, 0, 16, event_idx=False, indirect=False))
    dev.queues[0].ready = 1
    with pytest.raises(DeviceConfigError) as info:
        t.setup_queue(DriverQueue(mem, 0, 8, event_idx=False, indirect=False))
    assert info.value.rule == "queue-ready-after-reset"
    assert t.queue_num_max(0) == 8


def test_interrupt_status_ignores_undefined_bits_and_ack_never_sets_them() -> None:
    """§4.2.2.2: ignore undefined InterruptStatus bits, never write them to InterruptACK."""
    dev, t, _ = make()
    dev.isr = 0xF0 | InterruptStatus.CONFIG_CHANGE
    assert t.interrupt_status() == InterruptStatus.CONFIG_CHANGE
    t.ack_interrupt(0xFF)
    assert dev.acks == [InterruptStatus.USED_BUFFER | InterruptStatus.CONFIG_CHANGE]


def test_notify_writes_the_queue_index() -> None:
    dev, t, _ = make()
    t.notify(1)
    assert dev.notifications == [1]
