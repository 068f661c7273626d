"""The driver side of a split virtqueue (virtio-v1.2 §2.7 Split Virtqueues).

The driver owns the descriptor table and the available ring and only reads the used
ring. Everything it needs to free a chain (which descriptors, how many writable bytes,
the indirect table) is kept in driver-private shadow state; the descriptor table in guest
memory is never read back, so a device scribbling over it cannot corrupt the free list.
Every value read from the used ring is untrusted and checked (§2.7.8); a bad one raises
:class:`~virtio.errors.UsedRingError` with its rule name and section.

All ring indices are 16-bit and wrap at 65536 (§2.7.13.3 "Updating idx").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from virtio import spec
from virtio.constants import MAX_QUEUE_SIZE, AvailFlag, DescFlag, UsedFlag
from virtio.errors import UsedRingError
from virtio.layouts import (
    AVAIL_RING_ALIGN,
    DESC,
    DESC_TABLE_ALIGN,
    USED_ELEM,
    USED_RING_ALIGN,
    SplitRingGeometry,
)
from virtio.memory import Allocator, GuestMemory
from virtio.ring import U16_MASK, vring_need_event

MAX_DESC_LEN = 0xFFFF_FFFF
"""``virtq_desc.len`` is a le32 (§2.7.5)."""
MAX_ADDR = (1 << 64) - 1
_WRITE = int(DescFlag.WRITE)
"""``virtq_desc.addr`` is a le64 (§2.7.5)."""

# Offsets inside the rings (§2.7.6, §2.7.8): both start with ``le16 flags; le16 idx``.
RING_FLAGS = 0
RING_IDX = 2


@dataclass(slots=True)
class _Chain:
    """Driver-private record of one chain the device owns."""

    token: object
    descriptors: list[int]
    writable: int
    indirect_table: int | None


class DriverQueue:
    """The driver side of one split virtqueue (§2.7).

    ``start_idx`` sets both the available ``idx`` and the last-seen used index (and
    writes them into the zeroed rings) so a test can start near the 16-bit wrap; a real
    device starts at 0 after reset.
    """

    def __init__(
        self,
        memory: GuestMemory,
        index: int,
        size: int,
        *,
        event_idx: bool,
        indirect: bool,
        start_idx: int = 0,
    ) -> None:
        if not 1 <= size <= MAX_QUEUE_SIZE or size & (size - 1):
            raise ValueError(
                f"queue size {size} is not a power of two in 1..{MAX_QUEUE_SIZE} "
                f"({spec.SPLIT_VIRTQUEUES})"
            )
        if not 0 <= start_idx <= U16_MASK:
            raise ValueError(f"start_idx {start_idx} is not a 16-bit index")
        allocator = memory.allocator
        if allocator is None:
            raise ValueError("guest memory has no allocator for the driver's rings")
        self.memory = memory
        self.allocator: Allocator = allocator
        self.index = index
        self.size = size
        self.start_idx = start_idx
        self.event_idx = event_idx
        self.indirect = indirect
        self.geometry = SplitRingGeometry(size)
        g = self.geometry
        # §2.7.2 Virtqueue Alignment; §4.2.3.2 "Allocate and zero the queue memory".
        self.desc_addr = allocator.alloc(g.desc_table_size, DESC_TABLE_ALIGN)
        self.avail_addr = allocator.alloc(g.avail_size, AVAIL_RING_ALIGN)
        self.used_addr = allocator.alloc(g.used_size, USED_RING_ALIGN)
        memory.fill(self.desc_addr, g.desc_table_size)
        memory.fill(self.avail_addr, g.avail_size)
        memory.fill(self.used_addr, g.used_size)  # used.flags = 0, §2.7.10 driver rule

        self._avail_idx = start_idx
        self._last_used = start_idx
        self._used_seen = start_idx
        """used.idx as last read: entries up to it are consumed without reading it again."""
        self._kick_mark = start_idx
        self._interrupts_enabled = True
        memory.write_u16(self.avail_addr + RING_IDX, start_idx)
        memory.write_u16(self.used_addr + RING_IDX, start_idx)
        if event_idx:
            # Interrupt after the first used entry, like used_event = 0 after reset.
            memory.write_u16(self.avail_addr + g.used_event, start_idx)

        # Free descriptors as a singly linked list in driver-private memory.
        self._free_next = [i + 1 for i in range(size)]
        self._free_head = 0
        self.num_free = size
        self._chains: dict[int, _Chain] = {}
        self._released = False

    # properties
    @property
    def in_flight(self) -> int:
        """Chains the device owns (added, not yet returned through the used ring)."""
        return len(self._chains)

    @property
    def avail_idx(self) -> int:
        """The driver's available ``idx`` (what it last published)."""
        return self._avail_idx

    @property
    def last_used_idx(self) -> int:
        """The used index the driver will read next."""
        return self._last_used

    # supplying buffers, §2.7.13
    def add(
        self,
        out: Sequence[tuple[int, int]],
        in_: Sequence[tuple[int, int]],
        token: object,
        *,
        use_indirect: bool = False,
    ) -> int:
        """Expose one buffer: ``out`` device-readable ``(addr, len)`` elements, then ``in_``
        device-writable ones (§2.7.4 Message Framing: readable before writable). Returns
        the head descriptor index. ``ValueError`` for an empty buffer, a bad element, too
        few free descriptors (check :attr:`num_free` first) or ``use_indirect`` without
        VIRTIO_F_INDIRECT_DESC (§2.7.5.3.1)."""
        if not out and len(in_) == 1 and not use_indirect:
            return self._add_one_writable(in_[0], token)
        total = len(out) + len(in_)
        if total == 0:
            raise ValueError("a buffer needs at least one element (§2.7.13.1)")
        elements = [(addr, length, 0) for addr, length in out]
        elements += [(addr, length, int(DescFlag.WRITE)) for addr, length in in_]
        for addr, length, _ in elements:
            if not 0 <= addr <= MAX_ADDR or not 0 <= length <= MAX_DESC_LEN:
                raise ValueError(f"bad buffer element ({addr:#x}, {length})")
        writable = sum(length for _, length in in_)
        if writable + sum(length for _, length in out) > 1 << 32:
            raise ValueError(f"a chain longer than 2^32 bytes ({spec.DESC_TABLE_DRIVER})")

        if use_indirect:
            if not self.indirect:
                raise ValueError(
                    f"indirect descriptors without VIRTIO_F_INDIRECT_DESC ({spec.INDIRECT_DESC_DRIVER})"
                )
            if total > self.size:
                raise ValueError(
                    f"a chain of {total} descriptors is longer than the queue size {self.size} "
                    f"({spec.INDIRECT_DESC_DRIVER})"
                )
            needed = 1
        else:
            needed = total
        if needed > self.num_free:
            raise ValueError(
                f"{needed} descriptors needed, {self.num_free} free on queue {self.index}"
            )

        if use_indirect:
            table = self._write_indirect_table(elements)
            head = self._take_descriptors(1)[0]
            self._write_desc(head, table, DESC.size * total, int(DescFlag.INDIRECT), 0)
            chain = _Chain(token, [head], writable, table)
        else:
            descs = self._take_descriptors(total)
            for i, (addr, length, flags) in enumerate(elements):
                last = i == total - 1
                self._write_desc(
                    descs[i], addr, length,
                    flags if last else flags | DescFlag.NEXT,
                    0 if last else descs[i + 1],
                )
            head = descs[0]
            chain = _Chain(token, descs, writable, None)

        self._chains[head] = chain
        # §2.7.13.2: ring[idx % size] = head, then publish idx (§2.7.13.3, wraps at 2^16).
        slot = self._avail_idx % self.size
        self.memory.write_u16(self.avail_addr + self.geometry.avail_entry(slot), head)
        self._avail_idx = (self._avail_idx + 1) & U16_MASK
        self.memory.write_u16(self.avail_addr + RING_IDX, self._avail_idx)
        return head

    def _add_one_writable(self, element: tuple[int, int], token: object) -> int:
        """:meth:`add` of one device-writable buffer in one descriptor (a receive
        buffer), the same checks and ring updates without the general path's lists."""
        addr, length = element
        if not 0 <= addr <= MAX_ADDR or not 0 <= length <= MAX_DESC_LEN:
            raise ValueError(f"bad buffer element ({addr:#x}, {length})")
        if self.num_free < 1:
            raise ValueError(f"1 descriptors needed, 0 free on queue {self.index}")
        head = self._free_head
        self._free_head = self._free_next[head]
        self.num_free -= 1
        self._write_desc(head, addr, length, _WRITE, 0)
        self._chains[head] = _Chain(token, [head], length, None)
        memory = self.memory
        memory.write_u16(self.avail_addr + self.geometry.avail_entry(self._avail_idx % self.size),
                         head)
        self._avail_idx = (self._avail_idx + 1) & U16_MASK
        memory.write_u16(self.avail_addr + RING_IDX, self._avail_idx)
        return head

    def _take_descriptors(self, count: int) -> list[int]:
        out: list[int] = []
        cur = self._free_head
        for _ in range(count):
            out.append(cur)
            cur = self._free_next[cur]
        self._free_head = cur
        self.num_free -= count
        return out

    def _write_desc(self, i: int, addr: int, length: int, flags: int, nxt: int) -> None:
        self.memory.write(self.desc_addr + DESC.size * i, DESC.fmt.pack(addr, length, flags, nxt))

    def _write_indirect_table(self, elements: list[tuple[int, int, int]]) -> int:
        """An indirect table (§2.7.5.3): descriptors 0..n-1 chained by ``next``; no
        INDIRECT flag inside it (§2.7.5.3.1)."""
        n = len(elements)
        table = bytearray(DESC.size * n)
        for i, (addr, length, flags) in enumerate(elements):
            last = i == n - 1
            DESC.fmt.pack_into(
                table, DESC.size * i, addr, length,
                flags if last else flags | DescFlag.NEXT, 0 if last else i + 1,
            )
        addr = self.allocator.alloc(len(table), DESC_TABLE_ALIGN)
        self.memory.write(addr, table)
        return addr

    # notifying the device, §2.7.10
    def kick_needed(self) -> bool:
        """Whether the driver must notify the device about what it added since the
        previous call (§2.7.10): with EVENT_IDX, whether avail ``idx`` crossed
        ``avail_event``; otherwise whether the device left ``used.flags`` NO_NOTIFY
        clear. Moves the "previous" mark to the current avail ``idx``."""
        new, old = self._avail_idx, self._kick_mark
        self._kick_mark = new
        if self.event_idx:
            avail_event = self.memory.read_u16(self.used_addr + self.geometry.avail_event)
            return vring_need_event(avail_event, new, old)
        return not self.memory.read_u16(self.used_addr + RING_FLAGS) & UsedFlag.NO_NOTIFY

    # receiving used buffers, §2.7.14
    def _used_idx(self) -> int:
        return self.memory.read_u16(self.used_addr + RING_IDX)

    def has_used(self) -> bool:
        """Whether the device has returned entries the driver has not read yet."""
        return self._used_idx() != self._last_used

    def get_used(self) -> tuple[object, int] | None:
        """The next used entry as ``(token, len)``, its descriptors freed; ``None`` when
        there is none. Raises :class:`UsedRingError` (and consumes nothing) when the
        device broke §2.7.8."""
        used_idx = self._used_seen
        pending = (used_idx - self._last_used) & U16_MASK
        if pending == 0:  # all seen so far consumed: look at used.idx again
            used_idx = self._used_seen = self._used_idx()
            pending = (used_idx - self._last_used) & U16_MASK
            if pending == 0:
                return None
        if pending > self.size:
            raise UsedRingError(
                f"queue {self.index}: used idx moved from {self._last_used} to {used_idx}, "
                f"more than the queue size {self.size}",
                rule="used-idx-jump", section=spec.USED_RING,
            )
        slot = self._last_used % self.size
        entry = self.memory.read(self.used_addr + self.geometry.used_entry(slot), USED_ELEM.size)
        head, length = USED_ELEM.fmt.unpack(entry)
        if head >= self.size:
            raise UsedRingError(
                f"queue {self.index}: used id {head} is outside the descriptor table "
                f"of {self.size}",
                rule="used-id-out-of-range", section=spec.USED_RING,
            )
        chain = self._chains.get(head)
        if chain is None:
            raise UsedRingError(
                f"queue {self.index}: used id {head} is not the head of a chain in flight",
                rule="used-id-not-in-flight", section=spec.USED_RING,
            )
        if length > chain.writable:
            raise UsedRingError(
                f"queue {self.index}: used len {length} for chain {head} exceeds its "
                f"{chain.writable} device-writable bytes",
                rule="used-len-too-large", section=spec.USED_RING_DEVICE,
            )
        del self._chains[head]
        self._release(chain)
        self._last_used = (self._last_used + 1) & U16_MASK
        if self.event_idx and self._interrupts_enabled:
            # Keep asking for an interrupt at the next entry (§2.7.7).
            self._write_used_event(self._last_used)
        return chain.token, length

    def _release(self, chain: _Chain) -> None:
        descs = chain.descriptors
        for a, b in pairwise(descs):
            self._free_next[a] = b
        self._free_next[descs[-1]] = self._free_head
        self._free_head = descs[0]
        self.num_free += len(descs)
        if chain.indirect_table is not None:
            self.allocator.free(chain.indirect_table)

    # used buffer notification suppression, §2.7.7
    def _write_used_event(self, value: int) -> None:
        self.memory.write_u16(self.avail_addr + self.geometry.used_event, value & U16_MASK)

    def disable_interrupts(self) -> None:
        """Ask the device not to notify (§2.7.7): avail ``flags`` NO_INTERRUPT without
        EVENT_IDX; with EVENT_IDX (flags must stay 0) park ``used_event`` at the index
        farthest away, ``last_used - 1``, reached only after 65535 more entries."""
        self._interrupts_enabled = False
        if self.event_idx:
            self._write_used_event(self._last_used - 1)
        else:
            self.memory.write_u16(self.avail_addr + RING_FLAGS, AvailFlag.NO_INTERRUPT)

    def enable_interrupts(self) -> bool:
        """Ask for a notification at the next used entry (clear NO_INTERRUPT, or
        ``used_event = last_used``), then re-check the used ring. True means entries are
        already pending: the device may have written them before it saw the change, so
        the caller must process them now (the race §2.7.14 describes)."""
        self._interrupts_enabled = True
        if self.event_idx:
            self._write_used_event(self._last_used)
        else:
            self.memory.write_u16(self.avail_addr + RING_FLAGS, 0)
        return self.has_used()

    # teardown
    def release(self) -> None:
        """Give the three ring areas and every in-flight indirect table back to the
        allocator. Only after a device reset: the device must no longer use the queue
        (§4.2.2.1, QueueReady is cleared by reset)."""
        if self._released:
            return
        self._released = True
        for chain in self._chains.values():
            if chain.indirect_table is not None:
                self.allocator.free(chain.indirect_table)
        self._chains.clear()
        for addr in (self.desc_addr, self.avail_addr, self.used_addr):
            self.allocator.free(addr)
