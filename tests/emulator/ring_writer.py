"""What a device test needs from a driver, written straight into guest memory.

Modelled on rust-vmm ``virtio-queue/src/mock.rs`` (MockSplitQueue): the rings are laid
out in a :class:`GuestMemory` and descriptors / available entries are written by hand, so
the emulator is tested without driver/ (which is written concurrently). ``bring_up``
performs the register sequence of §3.1.1 / §4.2.3 on a :class:`MmioTransport`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from emulator.mmio import MmioTransport
from emulator.virtqueue import DeviceQueue
from virtio.constants import DescFlag, MmioReg, Status
from virtio.features import FeatureSet
from virtio.layouts import DESC, USED_ELEM, SplitRingGeometry
from virtio.memory import GuestMemory

NEXT = int(DescFlag.NEXT)
WRITE = int(DescFlag.WRITE)
INDIRECT = int(DescFlag.INDIRECT)


@dataclass
class Placed:
    """A chain the mock made available: its head and where its buffers are."""

    head: int
    readable: list[tuple[int, int]]
    writable: list[tuple[int, int]]


class MockSplitQueue:
    """A split ring in guest memory, driven by hand."""

    def __init__(
        self,
        memory: GuestMemory,
        size: int,
        *,
        start_idx: int = 0,
        desc_addr: int | None = None,
        avail_addr: int | None = None,
        used_addr: int | None = None,
    ) -> None:
        assert memory.allocator is not None
        self.memory = memory
        self.size = size
        self.geo = SplitRingGeometry(size)
        alloc = memory.allocator
        self.desc_addr = (alloc.alloc(self.geo.desc_table_size, 16)
                          if desc_addr is None else desc_addr)
        self.avail_addr = alloc.alloc(self.geo.avail_size, 2) if avail_addr is None else avail_addr
        self.used_addr = alloc.alloc(self.geo.used_size, 4) if used_addr is None else used_addr
        for addr, length in ((self.desc_addr, self.geo.desc_table_size),
                             (self.avail_addr, self.geo.avail_size),
                             (self.used_addr, self.geo.used_size)):
            if memory.contains(addr, length):
                memory.fill(addr, length)
        self.avail_idx = start_idx & 0xFFFF
        self.next_free = 0
        if memory.contains(self.avail_addr, 4):
            memory.write_u16(self.avail_addr + 2, self.avail_idx)
        if memory.contains(self.used_addr, 4):
            memory.write_u16(self.used_addr + 2, self.avail_idx)
        self.start_idx = self.avail_idx

    # buffers
    def buffer(self, data: bytes | int) -> int:
        """Allocate a buffer holding ``data`` (or ``data`` zero bytes); its address."""
        assert self.memory.allocator is not None
        length = data if isinstance(data, int) else len(data)
        addr = self.memory.allocator.alloc(max(length, 1), 16)
        if isinstance(data, int):
            self.memory.fill(addr, length, 0)
        else:
            self.memory.write(addr, data)
        return addr

    # descriptors
    def write_desc(
        self, index: int, addr: int, length: int, flags: int = 0, next_: int = 0,
        *, table: int | None = None,
    ) -> None:
        base = self.desc_addr if table is None else table
        self.memory.write(base + DESC.size * index, DESC.fmt.pack(addr, length, flags, next_))

    def _take(self) -> int:
        i = self.next_free
        self.next_free = (self.next_free + 1) % self.size
        return i

    def add_chain(
        self,
        readable: Sequence[bytes] = (),
        writable: Iterable[int] = (),
        *,
        indirect: bool = False,
        publish: bool = True,
    ) -> Placed:
        """Place ``readable`` buffers then ``writable`` ones of the given lengths; with
        ``indirect`` all of them go into one indirect table."""
        parts: list[tuple[int, int, int]] = []
        placed = Placed(0, [], [])
        for data in readable:
            addr = self.buffer(data)
            parts.append((addr, len(data), 0))
            placed.readable.append((addr, len(data)))
        for length in writable:
            addr = self.buffer(length)
            parts.append((addr, length, WRITE))
            placed.writable.append((addr, length))
        if indirect:
            assert self.memory.allocator is not None
            table = self.memory.allocator.alloc(DESC.size * len(parts), 16)
            for i, (addr, length, flags) in enumerate(parts):
                last = i == len(parts) - 1
                self.write_desc(i, addr, length, flags | (0 if last else NEXT),
                                0 if last else i + 1, table=table)
            head = self._take()
            self.write_desc(head, table, DESC.size * len(parts), INDIRECT)
        else:
            indices = [self._take() for _ in parts]
            for i, (addr, length, flags) in enumerate(parts):
                last = i == len(parts) - 1
                self.write_desc(indices[i], addr, length, flags | (0 if last else NEXT),
                                0 if last else indices[i + 1])
            head = indices[0]
        placed.head = head
        if publish:
            self.publish(head)
        return placed

    # available ring
    def publish(self, *heads: int) -> None:
        """Put ``heads`` in the available ring and advance ``avail.idx``."""
        for head in heads:
            slot = self.avail_idx % self.size
            self.memory.write_u16(self.avail_addr + self.geo.avail_entry(slot), head)
            self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        self.memory.write_u16(self.avail_addr + 2, self.avail_idx)

    def set_avail_idx(self, value: int) -> None:
        self.avail_idx = value & 0xFFFF
        self.memory.write_u16(self.avail_addr + 2, self.avail_idx)

    def set_avail_flags(self, flags: int) -> None:
        self.memory.write_u16(self.avail_addr, flags)

    def set_used_event(self, value: int) -> None:
        self.memory.write_u16(self.avail_addr + self.geo.used_event, value)

    # used ring
    @property
    def used_idx(self) -> int:
        return self.memory.read_u16(self.used_addr + 2)

    @property
    def used_flags(self) -> int:
        return self.memory.read_u16(self.used_addr)

    @property
    def avail_event(self) -> int:
        return self.memory.read_u16(self.used_addr + self.geo.avail_event)

    def used_elem(self, n: int) -> tuple[int, int]:
        """The used element written as the ``n``-th since ``start_idx``."""
        slot = (self.start_idx + n) % self.size
        elem_id, length = USED_ELEM.fmt.unpack(
            self.memory.read(self.used_addr + self.geo.used_entry(slot), USED_ELEM.size))
        return int(elem_id), int(length)

    def device_queue(self, *, event_idx: bool = False, indirect: bool = False,
                     index: int = 0) -> DeviceQueue:
        return DeviceQueue(index, self.size, self.desc_addr, self.avail_addr, self.used_addr,
                           event_idx=event_idx, indirect=indirect, start_idx=self.start_idx)


def setup_queue(mmio: MmioTransport, index: int, mq: MockSplitQueue) -> None:
    """QueueSel, QueueSize, the three area addresses, QueueReady (§4.2.3.2)."""
    mmio.write(MmioReg.QUEUE_SEL, index)
    mmio.write(MmioReg.QUEUE_NUM, mq.size)
    for low, addr in ((MmioReg.QUEUE_DESC_LOW, mq.desc_addr),
                      (MmioReg.QUEUE_DRIVER_LOW, mq.avail_addr),
                      (MmioReg.QUEUE_DEVICE_LOW, mq.used_addr)):
        mmio.write(low, addr & 0xFFFF_FFFF)
        mmio.write(low + 4, addr >> 32)
    mmio.write(MmioReg.QUEUE_READY, 1)


def bring_up(
    mmio: MmioTransport,
    features: FeatureSet,
    queues: dict[int, MockSplitQueue],
    *,
    driver_ok: bool = True,
) -> None:
    """Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK, queues, DRIVER_OK (§3.1.1)."""
    status = int(Status.ACKNOWLEDGE)
    mmio.write(MmioReg.STATUS, 0)
    mmio.write(MmioReg.STATUS, status)
    status |= Status.DRIVER
    mmio.write(MmioReg.STATUS, status)
    for word in (0, 1):
        mmio.write(MmioReg.DRIVER_FEATURES_SEL, word)
        mmio.write(MmioReg.DRIVER_FEATURES, features.word(word))
    status |= Status.FEATURES_OK
    mmio.write(MmioReg.STATUS, status)
    assert mmio.read(MmioReg.STATUS) & Status.FEATURES_OK, "FEATURES_OK did not stick"
    for index, mq in queues.items():
        setup_queue(mmio, index, mq)
    if driver_ok:
        mmio.write(MmioReg.STATUS, status | Status.DRIVER_OK)
