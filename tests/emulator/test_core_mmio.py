"""The device core's state machine (§2.1, §3.1.1, §2.2) and the virtio-mmio register
file in front of it (§4.2.2). A stub device function stands in for the net device where
the core is tested on its own."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from emulator.core import DeviceCore, QueueConfig
from emulator.mmio import MmioTransport
from emulator.monitor import Monitor
from emulator.net.device import IMPLEMENTED, NetDevice, NetDeviceConfig
from tests.emulator.ring_writer import MockSplitQueue, bring_up, setup_queue
from virtio import spec
from virtio.constants import (
    MMIO_MAGIC,
    FeatureBit,
    InterruptStatus,
    MmioReg,
    Status,
)
from virtio.errors import DeviceProtocolError, GuestMemoryError, RingError
from virtio.features import FeatureSet, Violation
from virtio.layouts import NET_CONFIG
from virtio.memory import GuestMemory

F = FeatureBit
R = MmioReg
ACK, DRV, FOK, DOK = Status.ACKNOWLEDGE, Status.DRIVER, Status.FEATURES_OK, Status.DRIVER_OK
NEEDS_RESET = Status.DEVICE_NEEDS_RESET
MEM_SIZE = 1 << 20


class StubFunction:
    """A device function that records what the core asks of it."""

    def __init__(self, offered: FeatureSet, *, num_queues: int = 2, qmax: int = 16) -> None:
        self.device_id = 42
        self.num_queues = num_queues
        self.queue_size_max = qmax
        self.offered = offered
        self.refuse: list[Violation] = []
        self.calls: list[str] = []
        self.on_notify: Callable[[int], None] | None = None
        self.interrupts: list[InterruptStatus] = []
        self.core: DeviceCore | None = None

    def bind(self, core: DeviceCore) -> None:
        self.core = core
        self.calls.append("bind")

    def offered_features(self) -> FeatureSet:
        return self.offered

    def check_features(self, accepted: FeatureSet) -> list[Violation]:
        return self.refuse

    def config_bytes(self) -> bytes:
        return bytes(range(8))

    def write_config(self, offset: int, data: bytes) -> None:
        self.calls.append(f"write_config {offset} {data.hex()}")

    def activate(self, core: DeviceCore) -> None:
        self.calls.append("activate")

    def queue_notify(self, index: int) -> None:
        self.calls.append(f"notify {index}")
        if self.on_notify is not None:
            self.on_notify(index)

    def interrupt_raised(self, bits: InterruptStatus) -> None:
        self.interrupts.append(bits)

    def reset(self) -> None:
        self.calls.append("reset")


V1 = FeatureSet.of(F.VERSION_1)
BASE = FeatureSet.of(F.VERSION_1, F.EVENT_IDX, F.INDIRECT_DESC, F.GUEST_CSUM, F.GUEST_TSO4)


class Rig:
    def __init__(self, offered: FeatureSet = BASE) -> None:
        self.memory = GuestMemory.anonymous(MEM_SIZE)
        self.monitor = Monitor()
        self.fn = StubFunction(offered)
        self.core = DeviceCore(self.fn, self.memory, self.monitor)
        self.mmio = MmioTransport(self.core)
        self.irqs = 0
        self.core.on_interrupt = self._irq
        self.queues = {i: MockSplitQueue(self.memory, 8) for i in range(2)}

    def _irq(self) -> None:
        self.irqs += 1

    def status(self, value: int) -> None:
        self.mmio.write(R.STATUS, value)

    def read_status(self) -> int:
        return self.mmio.read(R.STATUS)

    def driver_features(self, features: FeatureSet) -> None:
        for word in (0, 1):
            self.mmio.write(R.DRIVER_FEATURES_SEL, word)
            self.mmio.write(R.DRIVER_FEATURES, features.word(word))

    def up(self, features: FeatureSet = V1, *, driver_ok: bool = True) -> None:
        bring_up(self.mmio, features, self.queues, driver_ok=driver_ok)


@pytest.fixture
def rig() -> Rig:
    return Rig()


def rules(rig: Rig) -> list[str]:
    return rig.monitor.rules()


# construction

def test_core_binds_its_function(rig: Rig) -> None:
    assert rig.fn.core is rig.core
    assert rig.fn.calls == ["bind"]
    assert rig.core.device_features == BASE
    assert rig.core.status == 0 and not rig.core.live


# identity registers

def test_identity_registers(rig: Rig) -> None:
    assert rig.mmio.read(R.MAGIC_VALUE) == MMIO_MAGIC == 0x74726976
    assert rig.mmio.read(R.VERSION) == 2
    assert rig.mmio.read(R.DEVICE_ID) == 42
    assert rig.mmio.read(R.VENDOR_ID) == 0x554D4551
    assert MmioTransport(rig.core, vendor_id=0x1AF4).read(R.VENDOR_ID) == 0x1AF4
    assert rules(rig) == []


def test_device_features_words(rig: Rig) -> None:
    expected = {0: (1 << 1) | (1 << 7) | (1 << 28) | (1 << 29), 1: 1, 2: 0, 3: 0, 100: 0}
    for word, value in expected.items():
        rig.mmio.write(R.DEVICE_FEATURES_SEL, word)
        assert rig.mmio.read(R.DEVICE_FEATURES) == value
    assert rules(rig) == []


def test_driver_features_words(rig: Rig) -> None:
    rig.status(ACK | DRV)
    rig.mmio.write(R.DRIVER_FEATURES_SEL, 1)
    rig.mmio.write(R.DRIVER_FEATURES, 1)
    rig.mmio.write(R.DRIVER_FEATURES_SEL, 0)
    rig.mmio.write(R.DRIVER_FEATURES, 1 << 29)
    assert rig.core.driver_features == FeatureSet.of(F.VERSION_1, F.EVENT_IDX)
    rig.mmio.write(R.DRIVER_FEATURES, 0)  # a word can be rewritten before FEATURES_OK
    assert rig.core.driver_features == FeatureSet.of(F.VERSION_1)


def test_queue_num_max(rig: Rig) -> None:
    for index, expected in ((0, 16), (1, 16), (2, 0), (0xFFFF, 0)):
        rig.mmio.write(R.QUEUE_SEL, index)
        assert rig.mmio.read(R.QUEUE_NUM_MAX) == expected
        assert rig.mmio.read(R.QUEUE_READY) == 0
    assert rules(rig) == []


# bring-up

def test_full_bring_up(rig: Rig) -> None:
    rig.up(FeatureSet.of(F.VERSION_1, F.EVENT_IDX))
    assert rig.read_status() == ACK | DRV | FOK | DOK
    assert rig.core.live
    assert rig.fn.calls == ["bind", "reset", "activate"]
    for i, mq in rig.queues.items():
        rig.mmio.write(R.QUEUE_SEL, i)
        assert rig.mmio.read(R.QUEUE_READY) == 1
        q = rig.core.queue(i)
        assert q is not None
        assert (q.index, q.size, q.desc_addr, q.avail_addr, q.used_addr) == (
            i, 8, mq.desc_addr, mq.avail_addr, mq.used_addr)
        assert q.event_idx and not q.indirect
        assert rig.core.queue_config(i) == QueueConfig(8, mq.desc_addr, mq.avail_addr,
                                                       mq.used_addr, True)
    assert rules(rig) == []


def test_queue_address_high_and_low_halves(rig: Rig) -> None:
    rig.status(ACK | DRV)
    rig.mmio.write(R.QUEUE_SEL, 1)
    rig.mmio.write(R.QUEUE_DESC_HIGH, 0x12)
    rig.mmio.write(R.QUEUE_DESC_LOW, 0x3456_7000)
    rig.mmio.write(R.QUEUE_DRIVER_LOW, 0x10)
    rig.mmio.write(R.QUEUE_DRIVER_HIGH, 0xAB)
    rig.mmio.write(R.QUEUE_DEVICE_LOW, 0xFFFF_FFFC)
    cfg = rig.core.queue_config(1)
    assert (cfg.desc, cfg.driver, cfg.device) == (0x12_3456_7000, 0xAB_0000_0010, 0xFFFF_FFFC)
    with pytest.raises(ValueError):
        rig.core.queue_config(2)


# status state machine, §2.1 / §3.1.1: each refusal

def test_clearing_a_status_bit_is_refused(rig: Rig) -> None:
    rig.status(ACK)
    rig.status(ACK | DRV)
    rig.status(DRV)
    assert rig.read_status() == ACK | DRV
    assert rules(rig) == ["status-bit-cleared"]
    rec = rig.monitor.records[0]
    assert (rec.who, rec.reference, rec.action) == (
        "driver", str(spec.DEVICE_STATUS_DRIVER), "refused")


def test_driver_before_acknowledge(rig: Rig) -> None:
    rig.status(DRV)
    assert rig.read_status() == 0
    assert rules(rig) == ["status-order"]


def test_acknowledge_and_driver_in_one_write(rig: Rig) -> None:
    rig.status(ACK | DRV)
    assert rig.read_status() == ACK | DRV
    assert rules(rig) == []


def test_features_ok_before_driver(rig: Rig) -> None:
    rig.status(ACK)
    rig.status(ACK | FOK)
    assert rig.read_status() == ACK
    assert rules(rig) == ["status-order"]
    assert rig.monitor.records[0].reference == str(spec.DEVICE_INIT)


def test_driver_ok_without_features_ok(rig: Rig) -> None:
    rig.status(ACK | DRV)
    rig.status(ACK | DRV | DOK)
    assert rig.read_status() == ACK | DRV
    assert rules(rig) == ["driver-ok-without-features-ok"]
    assert "activate" not in rig.fn.calls


def test_features_ok_with_a_feature_not_offered(rig: Rig) -> None:
    rig.status(ACK | DRV)
    rig.driver_features(FeatureSet.of(F.VERSION_1, F.MRG_RXBUF))
    rig.status(ACK | DRV | FOK)
    assert rig.read_status() == ACK | DRV  # FEATURES_OK did not stick
    assert rules(rig) == ["feature-not-offered"]
    rec = rig.monitor.records[0]
    assert (rec.reference, rec.action) == (str(spec.FEATURE_BITS_DRIVER), "refused")
    assert "MRG_RXBUF" in rec.detail


def test_features_ok_without_version_1(rig: Rig) -> None:
    rig.status(ACK | DRV)
    rig.driver_features(FeatureSet.of(F.EVENT_IDX))
    rig.status(ACK | DRV | FOK)
    assert rig.read_status() == ACK | DRV
    assert rules(rig) == ["feature-version-1-not-accepted"]
    assert rig.monitor.records[0].reference == str(spec.RESERVED_FEATURE_BITS_DRIVER)


def test_features_ok_breaking_a_dependency(rig: Rig) -> None:
    rig.status(ACK | DRV)
    rig.driver_features(FeatureSet.of(F.VERSION_1, F.GUEST_TSO4))  # needs GUEST_CSUM
    rig.status(ACK | DRV | FOK)
    assert rig.read_status() == ACK | DRV
    assert rules(rig) == ["feature-dependency"]
    assert rig.monitor.records[0].reference == str(spec.NET_FEATURE_REQUIREMENTS)


def test_features_ok_refused_by_the_function(rig: Rig) -> None:
    rig.fn.refuse = [Violation(F.EVENT_IDX, "not with this profile", "profile X")]
    rig.status(ACK | DRV)
    rig.driver_features(FeatureSet.of(F.VERSION_1, F.EVENT_IDX))
    rig.status(ACK | DRV | FOK)
    assert rig.read_status() == ACK | DRV
    assert rules(rig) == ["feature-refused"]
    assert rig.monitor.records[0].reference == "profile X"


def test_features_ok_with_a_bit_beyond_the_known_words(rig: Rig) -> None:
    rig.status(ACK | DRV)
    rig.driver_features(FeatureSet.of(F.VERSION_1))
    rig.mmio.write(R.DRIVER_FEATURES_SEL, 9)
    rig.mmio.write(R.DRIVER_FEATURES, 1)
    rig.status(ACK | DRV | FOK)
    assert rig.read_status() == ACK | DRV
    assert rules(rig) == ["feature-not-offered"]
    rig.monitor.clear()
    rig.mmio.write(R.DRIVER_FEATURES, 0)  # taken back: acceptable again
    rig.status(ACK | DRV | FOK)
    assert rig.read_status() == ACK | DRV | FOK
    assert rules(rig) == []


def test_features_cannot_change_after_features_ok(rig: Rig) -> None:
    rig.up(FeatureSet.of(F.VERSION_1), driver_ok=False)
    rig.mmio.write(R.DRIVER_FEATURES_SEL, 0)
    rig.mmio.write(R.DRIVER_FEATURES, 1 << 29)
    assert rig.core.driver_features == FeatureSet.of(F.VERSION_1)
    assert rules(rig) == ["features-after-features-ok"]
    assert rig.monitor.records[0].action == "refused"


def test_reserved_status_bits(rig: Rig) -> None:
    rig.status(ACK | 0x10)
    assert rig.read_status() == ACK
    assert rules(rig) == ["status-reserved-bits"]


def test_driver_must_not_set_needs_reset(rig: Rig) -> None:
    rig.status(ACK | NEEDS_RESET)
    assert rig.read_status() == ACK
    assert rules(rig) == ["status-device-bit"]


def test_driver_may_set_failed(rig: Rig) -> None:
    rig.status(ACK | DRV)
    rig.status(ACK | DRV | Status.FAILED)
    assert rig.read_status() == ACK | DRV | Status.FAILED
    assert rules(rig) == []


def test_writing_back_needs_reset_is_not_a_violation(rig: Rig) -> None:
    rig.up()
    rig.core.fail(RingError("x", rule="r", section=spec.DESC_TABLE))
    rig.monitor.clear()
    rig.status(rig.read_status() | Status.FAILED)
    assert rig.read_status() == ACK | DRV | FOK | DOK | NEEDS_RESET | Status.FAILED
    assert rules(rig) == []


# notifications before DRIVER_OK, queue setup rules

def test_notify_before_driver_ok_is_recorded_and_ignored(rig: Rig) -> None:
    rig.up(driver_ok=False)
    rig.mmio.write(R.QUEUE_NOTIFY, 1)
    assert rules(rig) == ["notify-before-driver-ok"]
    assert rig.monitor.records[0].queue == 1
    assert "notify 1" not in rig.fn.calls
    rig.status(ACK | DRV | FOK | DOK)
    assert rig.fn.calls[-1] == "activate"  # pending work is the function's at activation


def test_notify_unknown_and_not_ready_queues(rig: Rig) -> None:
    bring_up(rig.mmio, FeatureSet.of(F.VERSION_1), {0: rig.queues[0]})
    rig.mmio.write(R.QUEUE_NOTIFY, 5)
    rig.mmio.write(R.QUEUE_NOTIFY, 1)
    rig.mmio.write(R.QUEUE_NOTIFY, 0)
    assert rules(rig) == ["notify-unknown-queue", "notify-queue-not-ready"]
    assert rig.fn.calls[-1] == "notify 0"


def test_queue_setup_while_ready(rig: Rig) -> None:
    rig.up(driver_ok=False)
    rig.mmio.write(R.QUEUE_SEL, 0)
    rig.mmio.write(R.QUEUE_NUM, 4)
    rig.mmio.write(R.QUEUE_DESC_LOW, 0x8000)
    assert rules(rig) == ["queue-setup-while-ready", "queue-setup-while-ready"]
    assert rig.core.queue_config(0).size == 8
    assert rig.core.queue_config(0).desc == rig.queues[0].desc_addr


def test_queue_setup_after_driver_ok(rig: Rig) -> None:
    bring_up(rig.mmio, FeatureSet.of(F.VERSION_1), {0: rig.queues[0]})
    setup_queue(rig.mmio, 1, rig.queues[1])
    assert rules(rig) == ["queue-setup-after-driver-ok"] * 8  # size, 3 x 2 halves, ready
    assert rig.core.queue(1) is None
    assert rig.mmio.read(R.QUEUE_READY) == 0


def test_queue_enable_before_features_ok(rig: Rig) -> None:
    rig.status(ACK | DRV)
    setup_queue(rig.mmio, 0, rig.queues[0])
    assert rules(rig) == ["queue-enable-before-features-ok"]
    assert rig.mmio.read(R.QUEUE_READY) == 0


@pytest.mark.parametrize(
    ("size", "desc", "rule"),
    [(6, None, "queue-size-not-power-of-two"), (0, None, "queue-size-not-power-of-two"),
     (32, None, "queue-size-exceeds-max"), (8, 0x1008, "desc-table-misaligned"),
     (8, MEM_SIZE - 16, "desc-table-out-of-memory")],
)
def test_enabling_a_bad_queue_is_refused(rig: Rig, size: int, desc: int | None,
                                         rule: str) -> None:
    rig.up(driver_ok=False)
    rig.mmio.write(R.QUEUE_SEL, 0)
    rig.mmio.write(R.QUEUE_READY, 0)
    assert rig.core.queue(0) is None
    rig.mmio.write(R.QUEUE_NUM, size)
    if desc is not None:
        rig.mmio.write(R.QUEUE_DESC_LOW, desc)
    rig.mmio.write(R.QUEUE_READY, 1)
    assert rig.mmio.read(R.QUEUE_READY) == 0
    assert rig.core.queue(0) is None
    assert rules(rig) == [rule]
    assert rig.monitor.records[0].action == "refused"
    assert rig.monitor.records[0].queue == 0


def test_queue_registers_of_a_missing_queue(rig: Rig) -> None:
    rig.status(ACK | DRV)
    rig.mmio.write(R.QUEUE_SEL, 7)
    rig.mmio.write(R.QUEUE_NUM, 8)
    rig.mmio.write(R.QUEUE_DESC_LOW, 0x1000)
    rig.mmio.write(R.QUEUE_READY, 1)
    assert rules(rig) == ["queue-index-out-of-range"] * 3
    assert rig.mmio.read(R.QUEUE_READY) == 0


def test_queue_ready_value_must_be_0_or_1(rig: Rig) -> None:
    rig.up(driver_ok=False)
    rig.mmio.write(R.QUEUE_SEL, 0)
    rig.mmio.write(R.QUEUE_READY, 2)
    assert rules(rig) == ["queue-ready-value"]
    assert rig.mmio.read(R.QUEUE_READY) == 1


# reset

def test_reset_clears_everything(rig: Rig) -> None:
    rig.up(FeatureSet.of(F.VERSION_1, F.EVENT_IDX))
    rig.core.raise_interrupt(InterruptStatus.USED_BUFFER)
    assert rig.mmio.read(R.INTERRUPT_STATUS) == 1
    rig.status(0)
    assert rig.read_status() == 0
    assert rig.core.driver_features == FeatureSet()
    assert rig.mmio.read(R.INTERRUPT_STATUS) == 0
    for i in range(2):
        rig.mmio.write(R.QUEUE_SEL, i)
        assert rig.mmio.read(R.QUEUE_READY) == 0
        assert rig.core.queue(i) is None
        assert rig.core.queue_config(i) == QueueConfig(16)
    assert rig.fn.calls[-1] == "reset"
    assert not rig.core.live
    assert rules(rig) == []
    rig.up()  # and the device can be brought up again
    assert rig.core.live


# failure, interrupts

def test_fail_sets_needs_reset_and_sends_a_config_interrupt(rig: Rig) -> None:
    rig.up()
    rig.fn.on_notify = lambda index: (_ for _ in ()).throw(
        RingError("bad chain", rule="head-out-of-range", section=spec.AVAIL_RING))
    rig.mmio.write(R.QUEUE_NOTIFY, 1)
    assert rig.read_status() & NEEDS_RESET
    assert not rig.core.live
    assert rig.mmio.read(R.INTERRUPT_STATUS) == InterruptStatus.CONFIG_CHANGE
    assert rig.irqs == 1
    assert rig.fn.interrupts == [InterruptStatus.CONFIG_CHANGE]
    rec = rig.monitor.records[0]
    assert (rec.who, rec.rule, rec.queue, rec.action) == (
        "driver", "head-out-of-range", 1, "needs-reset")
    calls = len(rig.fn.calls)
    rig.mmio.write(R.QUEUE_NOTIFY, 1)  # the device touches no ring until reset
    assert len(rig.fn.calls) == calls
    assert len(rig.monitor.records) == 1


def test_guest_memory_error_from_the_function_becomes_needs_reset(rig: Rig) -> None:
    rig.up()

    def boom(index: int) -> None:
        raise GuestMemoryError(0xDEAD_0000, 4)

    rig.fn.on_notify = boom
    rig.mmio.write(R.QUEUE_NOTIFY, 0)
    assert rig.read_status() & NEEDS_RESET
    assert rules(rig) == ["ring-out-of-memory"]


def test_fail_twice_records_twice_interrupts_once(rig: Rig) -> None:
    rig.up()
    err = DeviceProtocolError("x", rule="r1")
    rig.core.fail(err, queue=0, descriptor=3)
    rig.core.fail(err)
    assert rig.irqs == 1
    assert [(r.queue, r.descriptor) for r in rig.monitor.records] == [(0, 3), (None, None)]


def test_interrupts_follow_driver_ok(rig: Rig) -> None:
    assert rig.core.raise_interrupt(InterruptStatus.USED_BUFFER) is False
    assert rig.core.raise_interrupt(InterruptStatus.CONFIG_CHANGE) is False
    assert rig.irqs == 0
    rig.up()
    assert rig.core.raise_interrupt(InterruptStatus.USED_BUFFER) is True
    assert rig.mmio.read(R.INTERRUPT_STATUS) == 1
    rig.core.config_changed()
    assert rig.mmio.read(R.INTERRUPT_STATUS) == 3
    assert rig.irqs == 2
    rig.mmio.write(R.INTERRUPT_ACK, 1)
    assert rig.mmio.read(R.INTERRUPT_STATUS) == 2
    rig.mmio.write(R.INTERRUPT_ACK, 2 | 8)
    assert rig.mmio.read(R.INTERRUPT_STATUS) == 0
    assert rules(rig) == ["interrupt-ack-undefined-bits"]


def test_config_generation(rig: Rig) -> None:
    assert rig.mmio.read(R.CONFIG_GENERATION) == 0
    rig.core.config_changed(notify=False)
    assert rig.mmio.read(R.CONFIG_GENERATION) == 1
    assert rig.irqs == 0


# register access rules, §4.2.2.2

@pytest.mark.parametrize(("offset", "size"), [(0x070, 2), (0x070, 1), (0x072, 4), (0x004, 8)])
def test_control_registers_take_32_bit_aligned_accesses_only(rig: Rig, offset: int,
                                                             size: int) -> None:
    assert rig.mmio.read(offset, size) == 0
    rig.mmio.write(offset, 1, size)
    assert rig.read_status() == 0
    assert rules(rig) == ["mmio-access-width", "mmio-access-width"]


def test_unknown_offsets(rig: Rig) -> None:
    assert rig.mmio.read(0x018) == 0
    rig.mmio.write(0x0F8, 5)
    assert rules(rig) == ["mmio-unknown-register", "mmio-unknown-register"]


def test_writes_to_read_only_registers_are_ignored(rig: Rig) -> None:
    for reg in (R.MAGIC_VALUE, R.VERSION, R.DEVICE_ID, R.DEVICE_FEATURES,
                R.QUEUE_NUM_MAX, R.INTERRUPT_STATUS, R.CONFIG_GENERATION):
        rig.mmio.write(reg, 0x55)
    assert rig.mmio.read(R.MAGIC_VALUE) == MMIO_MAGIC
    assert rig.mmio.read(R.QUEUE_NUM_MAX) == 16
    assert rules(rig) == ["mmio-write-read-only"] * 7


def test_reads_of_write_only_registers_return_zero(rig: Rig) -> None:
    rig.mmio.write(R.QUEUE_SEL, 1)
    for reg in (R.QUEUE_SEL, R.DRIVER_FEATURES, R.QUEUE_NOTIFY, R.INTERRUPT_ACK,
                R.QUEUE_DESC_LOW, R.DEVICE_FEATURES_SEL):
        assert rig.mmio.read(reg) == 0
    assert rules(rig) == ["mmio-read-write-only"] * 6


def test_shared_memory_and_queue_reset_registers(rig: Rig) -> None:
    rig.mmio.write(R.SHM_SEL, 0)
    for reg in (R.SHM_LEN_LOW, R.SHM_LEN_HIGH, R.SHM_BASE_LOW, R.SHM_BASE_HIGH):
        assert rig.mmio.read(reg) == 0xFFFF_FFFF  # no region: length -1
    assert rig.mmio.read(R.QUEUE_RESET) == 0
    rig.mmio.write(R.QUEUE_RESET, 1)
    assert rules(rig) == ["queue-reset-not-negotiated"]


def test_value_wider_than_the_access_is_our_callers_bug(rig: Rig) -> None:
    with pytest.raises(ValueError):
        rig.mmio.write(R.STATUS, 1 << 32)
    with pytest.raises(ValueError):
        rig.mmio.write(R.STATUS, -1)


def test_stub_config_space_reads(rig: Rig) -> None:
    assert rig.mmio.read(0x100, 1) == 0
    assert rig.mmio.read(0x101, 2) == 0x0201
    assert rig.mmio.read(0x104, 4) == 0x07060504
    rig.mmio.write(0x102, 0xAB, 1)
    assert rig.fn.calls[-1] == "write_config 2 ab"


# configuration space of the net device, §5.1.4

def net_rig(cfg: NetDeviceConfig | None = None) -> tuple[MmioTransport, NetDevice, Monitor]:
    memory = GuestMemory.anonymous(MEM_SIZE)
    monitor = Monitor()
    net = NetDevice(cfg)
    core = DeviceCore(net, memory, monitor)
    return MmioTransport(core), net, monitor


def test_net_config_space_bytes() -> None:
    mmio, _, monitor = net_rig()
    raw = bytes(mmio.read(0x100 + i, 1) for i in range(NET_CONFIG.size))
    assert raw == bytes.fromhex(
        "525400000001"  # mac
        "0100"          # status: LINK_UP
        "0100"          # max_virtqueue_pairs 1
        "dc05"          # mtu 1500
        "ffffffff"      # speed unknown
        "ff"            # duplex unknown
        "28" "8000" "ff010000"  # RSS: 40-byte key, 128 entries, all 9 hash types
    )
    assert mmio.read(0x100, 4) == 0x00005452
    assert mmio.read(0x106, 2) == 1
    assert mmio.read(0x10A, 2) == 1500
    assert mmio.read(0x10C, 4) == 0xFFFF_FFFF
    assert mmio.read(R.DEVICE_ID) == 1
    assert mmio.read(R.DEVICE_FEATURES) == IMPLEMENTED.word(0)
    assert monitor.rules() == []


def test_net_config_space_access_rules() -> None:
    mmio, _, monitor = net_rig()
    assert mmio.read(0x100 + NET_CONFIG.size - 2, 4) == 0
    assert mmio.read(0x100, 8) == 0
    mmio.write(0x100, 0x66, 1)
    assert mmio.read(0x100, 1) == 0x52
    assert monitor.rules() == ["config-out-of-range", "config-access-width", "config-write"]
    assert monitor.records[2].reference == str(spec.NET_CONFIG_DRIVER)
    assert monitor.records[2].action == "ignored"


def test_net_config_without_status_and_mtu_offered() -> None:
    mmio, _, _ = net_rig(NetDeviceConfig(offered=FeatureSet.of(F.VERSION_1, F.MAC)))
    assert mmio.read(0x106, 2) == 0  # status only exists with STATUS
    assert mmio.read(0x10A, 2) == 0  # mtu only exists with MTU
