"""The virtio-mmio version 2 register file (§4.2.2), a front of :class:`DeviceCore`.

Control registers take only 32-bit aligned accesses (§4.2.2.2); the configuration space
at 0x100 takes 1, 2 and 4-byte accesses. Whatever the driver does wrong here (a bad
width, an unknown offset, a read of a write-only or a write of a read-only register) is
recorded in the monitor and answered as hardware would: the read returns 0, the write is
ignored.
"""

from __future__ import annotations

from emulator.core import DeviceCore
from emulator.monitor import DRIVER
from virtio import spec
from virtio.constants import MMIO_MAGIC, MMIO_VERSION, MmioReg

R = MmioReg
_MASK32 = 0xFFFF_FFFF

READ_ONLY = frozenset({
    R.MAGIC_VALUE, R.VERSION, R.DEVICE_ID, R.VENDOR_ID, R.DEVICE_FEATURES, R.QUEUE_NUM_MAX,
    R.INTERRUPT_STATUS, R.SHM_LEN_LOW, R.SHM_LEN_HIGH, R.SHM_BASE_LOW, R.SHM_BASE_HIGH,
    R.CONFIG_GENERATION,
})
WRITE_ONLY = frozenset({
    R.DEVICE_FEATURES_SEL, R.DRIVER_FEATURES, R.DRIVER_FEATURES_SEL, R.QUEUE_SEL,
    R.QUEUE_NUM, R.QUEUE_NOTIFY, R.INTERRUPT_ACK, R.QUEUE_DESC_LOW, R.QUEUE_DESC_HIGH,
    R.QUEUE_DRIVER_LOW, R.QUEUE_DRIVER_HIGH, R.QUEUE_DEVICE_LOW, R.QUEUE_DEVICE_HIGH,
    R.SHM_SEL,
})
READ_WRITE = frozenset({R.QUEUE_READY, R.STATUS, R.QUEUE_RESET})

_AREA_REGS: dict[MmioReg, tuple[str, bool]] = {
    R.QUEUE_DESC_LOW: ("desc", False), R.QUEUE_DESC_HIGH: ("desc", True),
    R.QUEUE_DRIVER_LOW: ("driver", False), R.QUEUE_DRIVER_HIGH: ("driver", True),
    R.QUEUE_DEVICE_LOW: ("device", False), R.QUEUE_DEVICE_HIGH: ("device", True),
}
_CONTROL = {int(r): r for r in MmioReg if r is not R.CONFIG}
NO_SHM = _MASK32
"""SHMLen/SHMBase of a region that does not exist read as all ones ("-1", §4.2.2)."""


class MmioTransport:
    """virtio-mmio register accesses, by offset from the device's base address."""

    def __init__(self, core: DeviceCore, vendor_id: int = 0x554D4551) -> None:
        self.core = core
        self.vendor_id = vendor_id
        self.device_features_sel = 0
        self.driver_features_sel = 0
        self.queue_sel = 0
        self.shm_sel = 0

    def _violation(self, rule: str, section: spec.Section, detail: str, action: str) -> None:
        self.core.monitor.record(DRIVER, rule, str(section), detail, action=action)

    # reads
    def read(self, offset: int, size: int = 4) -> int:
        if offset >= R.CONFIG:
            return self._read_config(offset - R.CONFIG, size)
        reg = self._control(offset, size, "read")
        if reg is None:
            return 0
        if reg in WRITE_ONLY:
            self._violation("mmio-read-write-only", spec.MMIO_REGISTERS_DRIVER,
                            f"read of write-only register {reg.name}", "ignored")
            return 0
        return self._read_register(reg) & _MASK32

    def _read_register(self, reg: MmioReg) -> int:
        core = self.core
        if reg is R.MAGIC_VALUE:
            return MMIO_MAGIC
        if reg is R.VERSION:
            return MMIO_VERSION
        if reg is R.DEVICE_ID:
            return core.function.device_id
        if reg is R.VENDOR_ID:
            return self.vendor_id
        if reg is R.DEVICE_FEATURES:
            return core.device_features.word(self.device_features_sel)
        if reg is R.QUEUE_NUM_MAX:
            return core.function.queue_size_max if core.has_queue(self.queue_sel) else 0
        if reg is R.QUEUE_READY:
            return int(core.has_queue(self.queue_sel) and core.queue_config(self.queue_sel).ready)
        if reg is R.INTERRUPT_STATUS:
            return core.interrupt_status
        if reg is R.STATUS:
            return core.status
        if reg is R.CONFIG_GENERATION:
            return core.config_generation
        if reg in (R.SHM_LEN_LOW, R.SHM_LEN_HIGH, R.SHM_BASE_LOW, R.SHM_BASE_HIGH):
            return NO_SHM
        return 0  # QueueReset: RING_RESET is not offered, the queue is never resetting

    def _read_config(self, offset: int, size: int) -> int:
        data = self.core.config_bytes()
        if size not in (1, 2, 4):
            self._violation("config-access-width", spec.MMIO_REGISTERS_DRIVER,
                            f"{size}-byte read of the configuration space", "ignored")
            return 0
        if offset + size > len(data):
            self._violation("config-out-of-range", spec.MMIO_REGISTERS_DRIVER,
                            f"configuration read [{offset:#x}, +{size}) beyond its "
                            f"{len(data)} bytes", "ignored")
            return 0
        return int.from_bytes(data[offset : offset + size], "little")

    # writes
    def write(self, offset: int, value: int, size: int = 4) -> None:
        if size <= 0 or value < 0 or value >> (8 * size):
            raise ValueError(f"value {value:#x} does not fit in {size} bytes")
        if offset >= R.CONFIG:
            self._write_config(offset - R.CONFIG, value, size)
            return
        reg = self._control(offset, size, "write")
        if reg is None:
            return
        if reg in READ_ONLY:
            self._violation("mmio-write-read-only", spec.MMIO_REGISTERS_DRIVER,
                            f"write of {value:#x} to read-only register {reg.name}", "ignored")
            return
        self._write_register(reg, value)

    def _write_register(self, reg: MmioReg, value: int) -> None:
        core = self.core
        if reg is R.DEVICE_FEATURES_SEL:
            self.device_features_sel = value
        elif reg is R.DRIVER_FEATURES_SEL:
            self.driver_features_sel = value
        elif reg is R.DRIVER_FEATURES:
            core.write_driver_features(self.driver_features_sel, value)
        elif reg is R.QUEUE_SEL:
            self.queue_sel = value
        elif reg is R.QUEUE_NUM:
            core.set_queue_size(self.queue_sel, value)
        elif reg is R.QUEUE_READY:
            if value not in (0, 1):
                self._violation("queue-ready-value", spec.MMIO_REGISTERS,
                                f"QueueReady written with {value:#x}, not 0 or 1", "ignored")
                return
            core.set_queue_ready(self.queue_sel, bool(value))
        elif reg is R.QUEUE_NOTIFY:
            # Without NOTIFICATION_DATA the value is the queue index (§4.2.3.3).
            core.notify(value)
        elif reg is R.INTERRUPT_ACK:
            core.ack_interrupt(value)
        elif reg is R.STATUS:
            core.set_status(value)
        elif reg in _AREA_REGS:
            area, high = _AREA_REGS[reg]
            if not core.has_queue(self.queue_sel):
                core.set_queue_area(self.queue_sel, area, 0)  # records the bad index
                return
            old = getattr(core.queue_config(self.queue_sel), area)
            new = (old & _MASK32) | (value << 32) if high else (old & ~_MASK32) | value
            core.set_queue_area(self.queue_sel, area, new)
        elif reg is R.SHM_SEL:
            self.shm_sel = value
        elif reg is R.QUEUE_RESET:
            self._violation("queue-reset-not-negotiated", spec.MMIO_REGISTERS,
                            "QueueReset written but RING_RESET was not negotiated", "ignored")

    def _write_config(self, offset: int, value: int, size: int) -> None:
        if size not in (1, 2, 4):
            self._violation("config-access-width", spec.MMIO_REGISTERS_DRIVER,
                            f"{size}-byte write of the configuration space", "ignored")
            return
        self.core.write_config(offset, value.to_bytes(size, "little"))

    def _control(self, offset: int, size: int, what: str) -> MmioReg | None:
        """The control register at ``offset`` if the access is a legal one (32-bit,
        aligned, defined), else record why not."""
        if size != 4 or offset % 4:
            self._violation("mmio-access-width", spec.MMIO_REGISTERS_DRIVER,
                            f"{size}-byte {what} at {offset:#x}: control registers take "
                            "32-bit aligned accesses only", "ignored")
            return None
        reg = _CONTROL.get(offset)
        if reg is None:
            self._violation("mmio-unknown-register", spec.MMIO_REGISTERS_DRIVER,
                            f"{what} of undefined offset {offset:#x}", "ignored")
        return reg
