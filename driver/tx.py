"""One transmit queue of the virtio-net driver: header + frame into a slot of its pool
(or a buffer of its own for a large packet), chains in the ring, completions reaped
(virtio-v1.2 §5.1.6.2 Packet Transmission)."""

from __future__ import annotations

from driver.counters import DriverCounters
from driver.virtqueue import DriverQueue
from virtio.errors import OutOfGuestMemory
from virtio.memory import GuestMemory

BUFFER_ALIGN = 64


class TxPath:
    """transmitqN with ``queue.size`` slots of ``slot_size`` bytes."""

    def __init__(
        self, queue: DriverQueue, pool: int, slot_size: int, memory: GuestMemory,
        counters: DriverCounters,
    ) -> None:
        self.queue = queue
        self.pool = pool
        self.slot_size = slot_size
        self.memory = memory
        self.counters = counters
        self.pair = queue.index // 2
        self.free = list(range(queue.size - 1, -1, -1))
        self.big: dict[int, int] = {}
        """Slot -> a buffer allocated for a packet larger than the slot."""
        self.unkicked = 0
        self.frames = 0
        """Frames queued on this queue."""

    def reap(self) -> None:
        """Take back completed chains (their slots and large buffers)."""
        q = self.queue
        allocator = self.memory.allocator
        assert allocator is not None
        while (entry := q.get_used()) is not None:
            slot, _ = entry
            assert isinstance(slot, int)
            big = self.big.pop(slot, 0)
            if big:
                allocator.free(big)
            self.free.append(slot)
            self.counters.used_reaped += 1

    def has_room(self, descriptors: int) -> bool:
        return self.queue.num_free >= descriptors and bool(self.free)

    def put(
        self, header: bytes, frame: bytes, *, separate: bool, indirect: bool
    ) -> bool:
        """Write ``header`` + ``frame`` and make them available as one chain; False
        when a large packet finds no room in guest memory."""
        hs = len(header)
        big = 0
        if hs + len(frame) > self.slot_size:
            allocator = self.memory.allocator
            assert allocator is not None
            try:
                big = allocator.alloc(hs + len(frame), BUFFER_ALIGN)
            except OutOfGuestMemory:
                self.counters.tx_no_memory += 1
                return False
        slot = self.free.pop()
        if big:
            self.big[slot] = big
        addr = big or self.pool + slot * self.slot_size
        self.memory.write(addr, header)
        self.memory.write(addr + hs, frame)
        out = [(addr, hs), (addr + hs, len(frame))] if separate else [(addr, hs + len(frame))]
        self.queue.add(out, [], slot, use_indirect=indirect)
        self.unkicked += 1
        self.frames += 1
        return True

    def release(self) -> None:
        """Give back the large buffers (the pool and ring are the driver's)."""
        allocator = self.memory.allocator
        assert allocator is not None
        for big in self.big.values():
            allocator.free(big)
        self.big = {}
