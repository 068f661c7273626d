"""A driver-side split virtqueue that breaks the ring rules its quirks name
(:mod:`driver.quirks`, families "ring" and "receive").

The faults that corrupt a chain (``avail-idx-jump``, ``descriptor-loop``,
``nested-indirect``, ``address-outside-memory``, ``reuse-in-flight``) hit the first chain
added to a transmit queue, once: that is enough for the device to see it, and what
follows (DEVICE_NEEDS_RESET, a broken driver) is the symptom. The others change the
queue's behaviour for good. The plain :class:`~driver.virtqueue.DriverQueue` stays free
of quirk checks; the driver builds this class only when one of these quirks is on.
"""

from __future__ import annotations

from collections.abc import Sequence

from driver.virtqueue import RING_FLAGS, RING_IDX, DriverQueue
from virtio.constants import AvailFlag, DescFlag, UsedFlag
from virtio.layouts import DESC, USED_ELEM
from virtio.memory import GuestMemory
from virtio.ring import U16_MASK

RING_QUIRKS = frozenset({
    "avail-idx-jump", "descriptor-loop", "nested-indirect", "address-outside-memory",
    "reuse-in-flight", "ignore-event-idx", "rx-refill-no-kick", "trust-used-len",
})
"""The quirks this queue implements."""
_CHAIN_FAULTS = ("avail-idx-jump", "descriptor-loop", "nested-indirect",
                 "address-outside-memory", "reuse-in-flight")
OUTSIDE = 1 << 40
"""A guest-physical address no emulated guest memory reaches (1 TiB)."""


class QuirkyQueue(DriverQueue):
    """A :class:`DriverQueue` with ring quirks."""

    def __init__(self, memory: GuestMemory, index: int, size: int, *, event_idx: bool,
                 indirect: bool, quirks: frozenset[str]) -> None:
        super().__init__(memory, index, size, event_idx=event_idx, indirect=indirect)
        self.quirks = quirks & RING_QUIRKS
        self.faulted = False
        """A chain fault was injected (once per queue)."""
        self._kicks = 0
        if "ignore-event-idx" in self.quirks and event_idx and index & 1:
            # no transmit interrupts wanted, asked for the legacy way
            memory.write_u16(self.avail_addr + RING_FLAGS, AvailFlag.NO_INTERRUPT)

    # chain faults
    def add(self, out: Sequence[tuple[int, int]], in_: Sequence[tuple[int, int]],
            token: object, *, use_indirect: bool = False) -> int:
        fault = None
        if not self.faulted and self.index & 1:
            fault = next((q for q in _CHAIN_FAULTS if q in self.quirks), None)
        if fault == "nested-indirect" and self.indirect:
            use_indirect = True
        head = super().add(out, in_, token, use_indirect=use_indirect)
        if fault is not None:
            self.faulted = True
            self._inject(fault, head)
        return head

    def _desc_addr(self, i: int) -> int:
        return self.desc_addr + DESC.size * i

    def _inject(self, fault: str, head: int) -> None:
        mem = self.memory
        chain = self._chains[head]
        if fault == "avail-idx-jump":
            mem.write_u16(self.avail_addr + RING_IDX, (self._avail_idx + self.size) & U16_MASK)
        elif fault == "descriptor-loop":
            last = chain.descriptors[-1]
            addr, length, flags, _ = DESC.fmt.unpack(mem.read(self._desc_addr(last), DESC.size))
            mem.write(self._desc_addr(last),
                      DESC.fmt.pack(addr, length, flags | DescFlag.NEXT, head))
        elif fault == "nested-indirect" and chain.indirect_table is not None:
            table = chain.indirect_table
            addr, length, flags, nxt = DESC.fmt.unpack(mem.read(table, DESC.size))
            mem.write(table, DESC.fmt.pack(addr, length, flags | DescFlag.INDIRECT, nxt))
        elif fault == "address-outside-memory":
            _, length, flags, nxt = DESC.fmt.unpack(mem.read(self._desc_addr(head), DESC.size))
            mem.write(self._desc_addr(head), DESC.fmt.pack(OUTSIDE, length, flags, nxt))
        elif fault == "reuse-in-flight":
            slot = self._avail_idx % self.size
            mem.write_u16(self.avail_addr + self.geometry.avail_entry(slot), head)
            self._avail_idx = (self._avail_idx + 1) & U16_MASK
            mem.write_u16(self.avail_addr + RING_IDX, self._avail_idx)

    # notification suppression done as if EVENT_IDX were not negotiated
    def kick_needed(self) -> bool:
        if "rx-refill-no-kick" in self.quirks and not self.index & 1:
            self._kicks += 1
            needed = super().kick_needed()
            return needed and self._kicks == 1  # the kick at probe, never a refill's
        if "ignore-event-idx" in self.quirks and self.event_idx:
            self._kick_mark = self._avail_idx
            return not self.memory.read_u16(self.used_addr + RING_FLAGS) & UsedFlag.NO_NOTIFY
        return super().kick_needed()

    def disable_interrupts(self) -> None:
        super().disable_interrupts()
        if "ignore-event-idx" in self.quirks and self.event_idx:
            self.memory.write_u16(self.avail_addr + RING_FLAGS, AvailFlag.NO_INTERRUPT)

    def enable_interrupts(self) -> bool:
        if "ignore-event-idx" in self.quirks and self.event_idx:
            self.memory.write_u16(self.avail_addr + RING_FLAGS, 0)
        return super().enable_interrupts()

    # receive
    def get_used(self) -> tuple[object, int] | None:
        if "trust-used-len" in self.quirks and self.has_used():
            slot = self._last_used % self.size
            entry = self.memory.read(self.used_addr + self.geometry.used_entry(slot),
                                     USED_ELEM.size)
            head, length = USED_ELEM.fmt.unpack(entry)
            chain = self._chains.get(head)
            if chain is not None and length > chain.writable:
                chain.writable = length  # believed: the driver reads past its buffer
        return super().get_used()


def make_queue(memory: GuestMemory, index: int, size: int, *, event_idx: bool,
               indirect: bool, quirks: frozenset[str]) -> DriverQueue:
    """A :class:`QuirkyQueue` when ``quirks`` name a ring quirk, else a plain queue."""
    if quirks & RING_QUIRKS:
        return QuirkyQueue(memory, index, size, event_idx=event_idx, indirect=indirect,
                           quirks=quirks)
    return DriverQueue(memory, index, size, event_idx=event_idx, indirect=indirect)
