"""Device initialization over the virtio-mmio register file (virtio-v1.2 §3.1.1 Driver
Requirements: Device Initialization, §4.2.2 MMIO Device Register Layout, §4.2.3
MMIO-specific Initialization And Device Operation).

Whatever the registers return is the device's word and is checked: a bad magic, version
or device id, a reset that never completes, a configuration space that never reads
consistently or a queue the device does not offer is a
:class:`~virtio.errors.DeviceConfigError`. Misuse by our caller is a ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from driver.bus import RegisterBus
from driver.virtqueue import DriverQueue
from virtio import spec
from virtio.constants import MMIO_MAGIC, MMIO_VERSION, InterruptStatus, MmioReg, Status
from virtio.errors import DeviceConfigError
from virtio.features import FeatureSet

FEATURE_WORDS = 3
"""Feature words exchanged (bits 0..95): v1.4 drafts define bits up to 68."""
RESET_POLL_LIMIT = 1000
"""Status reads after writing 0 before the driver gives up on the reset (§2.4)."""
CONFIG_RETRY_LIMIT = 100
"""Reads of the configuration space before the driver gives up on a stable
ConfigGeneration (§2.5, §4.2.2)."""
T = TypeVar("T")

INTERRUPT_BITS = int(InterruptStatus.USED_BUFFER | InterruptStatus.CONFIG_CHANGE)
"""The defined InterruptStatus bits; the driver ignores the others (§4.2.2.2)."""


class MmioDriverTransport:
    """The driver's side of the virtio-mmio transport (version 2, §4.2)."""

    def __init__(self, bus: RegisterBus) -> None:
        self.bus = bus

    def _read(self, reg: MmioReg) -> int:
        return self.bus.read(int(reg), 4)

    def _write(self, reg: MmioReg, value: int) -> None:
        self.bus.write(int(reg), value & 0xFFFF_FFFF, 4)

    # identity and reset
    def check_identity(self, device_id: int) -> None:
        """Check MagicValue, Version, then DeviceID, in that order (§4.2.3.1); any
        mismatch is a :class:`DeviceConfigError` (the driver must ignore such a device,
        §4.2.2.2). Call it before touching any other register."""
        magic = self._read(MmioReg.MAGIC_VALUE)
        if magic != MMIO_MAGIC:
            raise DeviceConfigError(
                f"MagicValue {magic:#x} is not {MMIO_MAGIC:#x} ('virt')",
                rule="mmio-bad-magic", section=spec.MMIO_REGISTERS_DEVICE,
            )
        version = self._read(MmioReg.VERSION)
        if version != MMIO_VERSION:
            kind = "the legacy interface, not supported" if version == 1 else "unknown"
            raise DeviceConfigError(
                f"virtio-mmio Version {version} ({kind}); this driver needs {MMIO_VERSION}",
                rule="mmio-bad-version", section=spec.MMIO_REGISTERS_DEVICE,
            )
        found = self._read(MmioReg.DEVICE_ID)
        if found == 0:
            raise DeviceConfigError(
                "DeviceID 0: no device behind this window; initialization aborted",
                rule="mmio-no-device", section=spec.MMIO_INIT,
            )
        if found != device_id:
            raise DeviceConfigError(
                f"DeviceID {found}, expected {device_id}",
                rule="mmio-wrong-device-id", section=spec.MMIO_INIT,
            )

    def reset(self) -> None:
        """Write 0 to Status and read it back until it is 0 (§2.4, §4.2.2 Status),
        at most :data:`RESET_POLL_LIMIT` times."""
        self._write(MmioReg.STATUS, 0)
        for _ in range(RESET_POLL_LIMIT):
            if self._read(MmioReg.STATUS) == 0:
                return
        raise DeviceConfigError(
            f"device status did not read 0 within {RESET_POLL_LIMIT} reads after reset",
            rule="reset-not-complete", section=spec.DEVICE_RESET,
        )

    # status
    def status(self) -> int:
        return self._read(MmioReg.STATUS)

    def set_status(self, bits: int) -> None:
        """Add ``bits`` to the device status (read, or, write): never clears a bit
        (§2.1.1). Writing 0 would reset the device: use :meth:`reset`."""
        if bits <= 0 or bits > 0xFF:
            raise ValueError(f"status bits {bits:#x} must be a non-empty 8-bit mask")
        self._write(MmioReg.STATUS, self.status() | bits)

    # features, §2.2 / §4.2.2
    def read_device_features(self) -> FeatureSet:
        """DeviceFeatures words 0..2, each selected through DeviceFeaturesSel first
        (§4.2.2.2)."""
        bits = 0
        for word in range(FEATURE_WORDS):
            self._write(MmioReg.DEVICE_FEATURES_SEL, word)
            bits |= self._read(MmioReg.DEVICE_FEATURES) << (32 * word)
        return FeatureSet(bits)

    def write_driver_features(self, features: FeatureSet) -> None:
        """DriverFeatures words 0..2, each selected through DriverFeaturesSel first."""
        if features.bits >> (32 * FEATURE_WORDS):
            raise ValueError(f"{features} has bits beyond {32 * FEATURE_WORDS}")
        for word in range(FEATURE_WORDS):
            self._write(MmioReg.DRIVER_FEATURES_SEL, word)
            self._write(MmioReg.DRIVER_FEATURES, features.word(word))

    # configuration space, §2.5
    def read_config(self, offset: int, size: int) -> int:
        """One configuration field (little-endian), read ``size`` bytes wide and aligned
        (64-bit fields as two 32-bit reads, §4.2.2.2), retried until ConfigGeneration
        reads the same before and after (§2.5, §4.2.2)."""
        if size not in (1, 2, 4, 8):
            raise ValueError(f"config field size {size} is not 1, 2, 4 or 8")
        if offset < 0 or offset % min(size, 4):
            raise ValueError(f"config offset {offset} is not aligned for a {size}-byte field")

        def read() -> int:
            base = int(MmioReg.CONFIG) + offset
            if size == 8:
                return self.bus.read(base, 4) | self.bus.read(base + 4, 4) << 32
            return self.bus.read(base, size)

        return self._consistent(read)

    def read_config_bytes(self, offset: int, length: int) -> bytes:
        """``length`` bytes of configuration space read byte by byte (fields of u8, like
        the MAC), with the same ConfigGeneration retry."""
        if offset < 0 or length < 0:
            raise ValueError(f"bad config range ({offset}, {length})")

        def read() -> bytes:
            base = int(MmioReg.CONFIG) + offset
            return bytes(self.bus.read(base + i, 1) & 0xFF for i in range(length))

        return self._consistent(read)

    def _consistent(self, read: Callable[[], T]) -> T:
        for _ in range(CONFIG_RETRY_LIMIT):
            before = self._read(MmioReg.CONFIG_GENERATION)
            value = read()
            if self._read(MmioReg.CONFIG_GENERATION) == before:
                return value
        raise DeviceConfigError(
            f"ConfigGeneration changed during each of {CONFIG_RETRY_LIMIT} reads",
            rule="config-generation-unstable", section=spec.CONFIG_SPACE,
        )

    # virtqueues, §4.2.3.2
    def queue_num_max(self, index: int) -> int:
        """QueueSizeMax of queue ``index`` (0: the queue is not available)."""
        self._write(MmioReg.QUEUE_SEL, index)
        return self._read(MmioReg.QUEUE_NUM_MAX)

    def setup_queue(self, queue: DriverQueue) -> None:
        """Configure and enable ``queue`` (§4.2.3.2 Virtqueue Configuration): select it,
        check it is not ready and available, write its size and the three area
        addresses, then QueueReady = 1."""
        self._write(MmioReg.QUEUE_SEL, queue.index)
        if self._read(MmioReg.QUEUE_READY) != 0:
            raise DeviceConfigError(
                f"queue {queue.index} reads QueueReady != 0 after reset",
                rule="queue-ready-after-reset", section=spec.MMIO_REGISTERS_DEVICE,
            )
        maximum = self._read(MmioReg.QUEUE_NUM_MAX)
        if maximum == 0:
            raise DeviceConfigError(
                f"queue {queue.index} is not available (QueueSizeMax 0)",
                rule="queue-not-available", section=spec.MMIO_INIT,
            )
        if queue.size > maximum:
            raise ValueError(
                f"queue {queue.index} size {queue.size} exceeds QueueSizeMax {maximum} "
                f"({spec.MMIO_REGISTERS_DRIVER})"
            )
        self._write(MmioReg.QUEUE_NUM, queue.size)
        for low, high, addr in (
            (MmioReg.QUEUE_DESC_LOW, MmioReg.QUEUE_DESC_HIGH, queue.desc_addr),
            (MmioReg.QUEUE_DRIVER_LOW, MmioReg.QUEUE_DRIVER_HIGH, queue.avail_addr),
            (MmioReg.QUEUE_DEVICE_LOW, MmioReg.QUEUE_DEVICE_HIGH, queue.used_addr),
        ):
            self._write(low, addr)
            self._write(high, addr >> 32)
        self._write(MmioReg.QUEUE_READY, 1)

    def notify(self, index: int) -> None:
        """An available buffer notification: the queue index to QueueNotify (§4.2.3.3,
        without VIRTIO_F_NOTIFICATION_DATA)."""
        self._write(MmioReg.QUEUE_NOTIFY, index)

    # interrupts, §4.2.3.4
    def interrupt_status(self) -> int:
        """InterruptStatus with undefined bits ignored (§4.2.2.2)."""
        return self._read(MmioReg.INTERRUPT_STATUS) & INTERRUPT_BITS

    def ack_interrupt(self, bits: int) -> None:
        """Acknowledge handled events; never sets undefined bits (§4.2.2.2)."""
        self._write(MmioReg.INTERRUPT_ACK, bits & INTERRUPT_BITS)

    def fail(self) -> None:
        """Set FAILED (§3.1.1: the driver gave up on the device)."""
        self.set_status(Status.FAILED)
