"""The device side of a split virtqueue (§2.7).

:class:`DeviceQueue` keeps only indices and the negotiated ring features; guest memory
is passed to every call. Everything it reads from guest memory is untrusted: each broken
rule raises a :class:`ChainError` (a :class:`~virtio.errors.RingError`) with a stable
``rule`` and the spec section that states it, never ``IndexError`` or ``struct.error``.
The device catches it at its boundary (DESIGN.md, "Errors say who is at fault").

The chain walk follows rust-vmm ``virtio-queue/src/chain.rs`` and QEMU
``virtqueue_split_pop``: bounded by the queue size (or the indirect table size), so a
loop in the chain is caught as a chain that is too long. Indices are free-running u16
counters (§2.7.13.3 "idx always increments, and wraps naturally at 65536").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from virtio import spec
from virtio.constants import MAX_QUEUE_SIZE, AvailFlag, DescFlag, UsedFlag
from virtio.errors import GuestMemoryError, RingError
from virtio.layouts import (
    AVAIL_RING_ALIGN,
    DESC,
    DESC_TABLE_ALIGN,
    USED_ELEM,
    USED_RING_ALIGN,
    SplitRingGeometry,
)
from virtio.memory import GuestMemory
from virtio.ring import U16_MASK, vring_need_event

CHAIN_LIMIT = 1 << 32
"""A chain's total length must stay below 2^32 bytes (§2.7.5.1); the used ring's le32
``len`` cannot describe more, so a chain of exactly 2^32 bytes is refused too."""

_NEXT = int(DescFlag.NEXT)
_WRITE = int(DescFlag.WRITE)
_INDIRECT = int(DescFlag.INDIRECT)
_DESC_SIZE = DESC.size


class ChainError(RingError):
    """A broken virtqueue rule, with the queue and descriptor where it was found."""

    def __init__(
        self,
        message: str,
        *,
        rule: str,
        section: spec.Section | str,
        queue: int | None = None,
        descriptor: int | None = None,
    ) -> None:
        super().__init__(message, rule=rule, section=section)
        self.queue = queue
        self.descriptor = descriptor


@dataclass
class Chain:
    """A validated descriptor chain: readable parts first, then writable parts (§2.7.4)."""

    head: int
    readable: list[tuple[int, int]]
    writable: list[tuple[int, int]]
    descriptors: int
    """Descriptors walked, counting the one that points to an indirect table."""
    indirect: bool

    readable_len: int = field(init=False, repr=False)
    """The readable parts' total length."""
    writable_len: int = field(init=False, repr=False)
    """The writable parts' total length."""

    def __post_init__(self) -> None:
        # computed once: the device asks for them per buffer on the receive path
        self.readable_len = sum(length for _, length in self.readable)
        self.writable_len = sum(length for _, length in self.writable)

    def read(self, memory: GuestMemory, offset: int = 0, length: int | None = None) -> bytes:
        """The readable bytes concatenated (``length`` bytes from ``offset``, default all
        of them; clipped to what the chain holds)."""
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        remaining = self.readable_len - offset if length is None else length
        out = bytearray()
        for addr, part_len in self.readable:
            if remaining <= 0:
                break
            if offset >= part_len:
                offset -= part_len
                continue
            n = min(part_len - offset, remaining)
            out += memory.read(addr + offset, n)
            remaining -= n
            offset = 0
        return bytes(out)

    def write(self, memory: GuestMemory, data: bytes | memoryview, offset: int = 0) -> int:
        """Scatter ``data`` into the writable parts from byte ``offset`` of the writable
        space; ``ValueError`` if it does not fit. Returns the bytes written."""
        total = len(data)
        if offset < 0 or offset + total > self.writable_len:
            raise ValueError(
                f"{total} bytes at offset {offset} do not fit in {self.writable_len} "
                "writable bytes"
            )
        src = memoryview(data).cast("B") if isinstance(data, memoryview) else memoryview(data)
        pos = 0
        for addr, part_len in self.writable:
            if pos >= total:
                break
            if offset >= part_len:
                offset -= part_len
                continue
            n = min(part_len - offset, total - pos)
            memory.write(addr + offset, src[pos : pos + n])
            pos += n
            offset = 0
        return total


class DeviceQueue:
    """Device-side state of one split virtqueue (§2.7). Memory is passed per call."""

    def __init__(
        self,
        index: int,
        size: int,
        desc_addr: int,
        avail_addr: int,
        used_addr: int,
        *,
        event_idx: bool,
        indirect: bool,
        start_idx: int = 0,
    ) -> None:
        self.index = index
        self.size = size
        self.desc_addr = desc_addr
        self.avail_addr = avail_addr
        self.used_addr = used_addr
        self.event_idx = event_idx
        self.indirect = indirect
        self.last_avail_idx = start_idx & U16_MASK
        self.used_idx = start_idx & U16_MASK
        self.geometry = SplitRingGeometry(size) if size > 0 else SplitRingGeometry(1)
        self._signalled_used = self.used_idx
        self._unpoppable = 0
        self._avail_seen = self.last_avail_idx
        """avail.idx as last read and validated: chains up to it are popped without
        reading it again (a driver only ever moves it forward, §2.7.6)."""

    def set_base(self, idx: int) -> None:
        """Move both indices to ``idx`` (vhost-user SET_VRING_BASE; tests start near
        65535 to exercise the wrap-around)."""
        self.last_avail_idx = self.used_idx = self._signalled_used = idx & U16_MASK
        self._avail_seen = self.last_avail_idx
        self._unpoppable = 0

    def __repr__(self) -> str:
        return (
            f"DeviceQueue({self.index}, size={self.size}, last_avail={self.last_avail_idx}, "
            f"used={self.used_idx})"
        )

    def _error(
        self, message: str, rule: str, section: spec.Section, descriptor: int | None = None
    ) -> ChainError:
        return ChainError(
            f"queue {self.index}: {message}", rule=rule, section=section,
            queue=self.index, descriptor=descriptor,
        )

    # setup
    def validate(self, memory: GuestMemory) -> None:
        """Check the size and the three areas (§2.7: power of two, at most 32768;
        §2.7.2: alignment 16/2/4; every byte backed by guest memory)."""
        size = self.size
        if size <= 0 or size & (size - 1):
            raise self._error(f"size {size} is not a power of two",
                              "queue-size-not-power-of-two", spec.SPLIT_VIRTQUEUES)
        if size > MAX_QUEUE_SIZE:
            raise self._error(f"size {size} exceeds {MAX_QUEUE_SIZE}",
                              "queue-size-too-large", spec.SPLIT_VIRTQUEUES)
        geo = SplitRingGeometry(size)
        areas = (
            ("desc-table", self.desc_addr, DESC_TABLE_ALIGN, geo.desc_table_size),
            ("avail-ring", self.avail_addr, AVAIL_RING_ALIGN, geo.avail_size),
            ("used-ring", self.used_addr, USED_RING_ALIGN, geo.used_size),
        )
        for name, addr, align, length in areas:
            if addr % align:
                raise self._error(f"{name} at {addr:#x} is not {align}-byte aligned",
                                  f"{name}-misaligned", spec.VIRTQUEUE_ALIGNMENT)
            if not memory.contains(addr, length):
                raise self._error(f"{name} [{addr:#x}, +{length}) is not in guest memory",
                                  f"{name}-out-of-memory", spec.SPLIT_VIRTQUEUES)
        self.geometry = geo

    # available ring
    def _avail_idx(self, memory: GuestMemory) -> int:
        return memory.read_u16(self.avail_addr + 2)

    def pending(self, memory: GuestMemory) -> int:
        """Chains made available and not yet popped (§2.7.6). More than the queue size
        means the driver moved ``avail.idx`` by more than it could have filled."""
        try:
            avail_idx = self._avail_idx(memory)
        except GuestMemoryError as err:
            raise self._error(f"available ring unreadable: {err}", "ring-out-of-memory",
                              spec.AVAIL_RING) from None
        n = (avail_idx - self.last_avail_idx) & U16_MASK
        if n > self.size:
            raise self._error(
                f"avail.idx {avail_idx} is {n} ahead of the device's {self.last_avail_idx}, "
                f"more than the queue size {self.size}",
                "avail-idx-jump", spec.AVAIL_RING,
            )
        self._avail_seen = avail_idx
        return n

    def pop(self, memory: GuestMemory) -> Chain | None:
        """The next available chain, validated, or ``None``. Raises :class:`ChainError`
        on any broken rule (the indices are then left unchanged)."""
        if self._avail_seen == self.last_avail_idx and self.pending(memory) == 0:
            return None
        slot = self.last_avail_idx % self.size
        try:
            head = memory.read_u16(self.avail_addr + self.geometry.avail_entry(slot))
            chain = self._walk(memory, head)
        except GuestMemoryError as err:
            raise self._error(f"ring unreadable: {err}", "ring-out-of-memory",
                              spec.SPLIT_VIRTQUEUES) from None
        self.last_avail_idx = (self.last_avail_idx + 1) & U16_MASK
        self._unpoppable += 1
        return chain

    def discard(self, memory: GuestMemory) -> int:
        """Give the next available chain back unread, used length 0, and return its head:
        what a device that skips a chain it cannot use does (Firecracker returns a TX or
        RX chain that fails to parse this way). The head must be in range."""
        slot = self.last_avail_idx % self.size
        try:
            head = memory.read_u16(self.avail_addr + self.geometry.avail_entry(slot))
        except GuestMemoryError as err:
            raise self._error(f"ring unreadable: {err}", "ring-out-of-memory",
                              spec.AVAIL_RING) from None
        if head >= self.size:
            raise self._error(f"avail ring entry names head {head}, queue size is {self.size}",
                              "head-out-of-range", spec.AVAIL_RING, head)
        self.last_avail_idx = (self.last_avail_idx + 1) & U16_MASK
        self.push_used(memory, head, 0)
        return head

    def unpop(self, count: int = 1) -> None:
        """Give the last ``count`` popped chains back (QEMU ``virtqueue_unpop``, as a
        mergeable receive does when the buffers run out mid-packet): the next
        :meth:`pop` returns them again. Only chains popped since the last
        :meth:`push_used` can be given back."""
        if not 0 < count <= self._unpoppable:
            raise ValueError(f"unpop of {count} chains, {self._unpoppable} popped since the "
                             "last push_used")
        self.last_avail_idx = (self.last_avail_idx - count) & U16_MASK
        self._unpoppable -= count

    def _walk(self, memory: GuestMemory, head: int) -> Chain:
        size = self.size
        if head >= size:
            raise self._error(f"avail ring entry names head {head}, queue size is {size}",
                              "head-out-of-range", spec.AVAIL_RING, head)
        readable: list[tuple[int, int]] = []
        writable: list[tuple[int, int]] = []
        buffers: list[tuple[int, int, int]] = []  # (descriptor, addr, len) to check
        total = 0
        walked = 0
        in_table = 0            # descriptors read from the current table
        table = self.desc_addr
        limit = size            # entries of the current table
        indirect = False
        seen_writable = False
        idx = head
        while True:
            in_table += 1
            if in_table > limit:
                if indirect:
                    raise self._error(
                        f"indirect chain longer than its table of {limit} descriptors "
                        "(a loop?)", "indirect-chain-too-long", spec.DESC_TABLE_DRIVER, idx)
                raise self._error(
                    f"chain from head {head} longer than the queue size {size} (a loop?); "
                    f"see also {spec.DESC_TABLE_DRIVER}",
                    "chain-too-long", spec.INDIRECT_DESC_DRIVER, idx)
            addr, length, flags, nxt = DESC.fmt.unpack(
                memory.read(table + idx * _DESC_SIZE, _DESC_SIZE)
            )
            walked += 1
            if flags & _INDIRECT:
                if indirect:
                    raise self._error("INDIRECT set inside an indirect table",
                                      "indirect-nested", spec.INDIRECT_DESC_DRIVER, idx)
                if not self.indirect:
                    raise self._error("INDIRECT used but INDIRECT_DESC was not negotiated",
                                      "indirect-not-negotiated", spec.INDIRECT_DESC_DRIVER,
                                      idx)
                if flags & _NEXT:
                    raise self._error("INDIRECT and NEXT both set", "indirect-with-next",
                                      spec.INDIRECT_DESC_DRIVER, idx)
                if length == 0 or length % _DESC_SIZE:
                    raise self._error(
                        f"indirect table length {length} is not a positive multiple of 16",
                        "indirect-table-size", spec.INDIRECT_DESC, idx)
                if not memory.contains(addr, length):
                    raise self._error(
                        f"indirect table [{addr:#x}, +{length}) is not in guest memory",
                        "indirect-table-out-of-memory", spec.INDIRECT_DESC, idx)
                # The WRITE flag of this descriptor is ignored (§2.7.5.3.2).
                indirect = True
                table = addr
                # ``next`` is a u16: entries past 65536 are unreachable, and a longer
                # walk must be a loop (Linux vhost refuses such tables outright).
                limit = min(length // _DESC_SIZE, 1 << 16)
                in_table = 0
                idx = 0
                continue
            total += length
            if total >= CHAIN_LIMIT:
                raise self._error(f"chain from head {head} holds {total} bytes, 2^32 or more",
                                  "chain-too-large", spec.DESC_TABLE_DRIVER, idx)
            if length:
                buffers.append((idx, addr, length))
            if flags & _WRITE:
                seen_writable = True
                writable.append((addr, length))
            elif seen_writable:
                raise self._error(
                    f"device-readable descriptor {idx} after a device-writable one",
                    "readable-after-writable", spec.MESSAGE_FRAMING, idx)
            else:
                readable.append((addr, length))
            if not flags & _NEXT:
                break
            if nxt >= limit:
                raise self._error(
                    f"descriptor {idx} names next {nxt}, "
                    f"{'indirect table' if indirect else 'queue'} size is {limit}",
                    "next-out-of-range", spec.DESC_TABLE, idx)
            idx = nxt
        # Buffers are checked once the chain's shape is known to be sound.
        for idx, addr, length in buffers:
            if not memory.contains(addr, length):
                raise self._error(
                    f"descriptor {idx} buffer [{addr:#x}, +{length}) is not in guest memory",
                    "desc-addr-out-of-memory", spec.DESC_TABLE, idx)
        return Chain(head, readable, writable, walked, indirect)

    # used ring
    def push_used(self, memory: GuestMemory, head: int, length: int) -> None:
        """Write the used element, then advance ``used.idx`` (§2.7.8.1: len before idx)."""
        if not 0 <= head < self.size:
            raise ValueError(f"head {head} is not a descriptor of a queue of {self.size}")
        if not 0 <= length < CHAIN_LIMIT:
            raise ValueError(f"used length {length} does not fit in le32")
        slot = self.used_idx % self.size
        try:
            memory.write(self.used_addr + self.geometry.used_entry(slot),
                         USED_ELEM.fmt.pack(head, length))
            self.used_idx = (self.used_idx + 1) & U16_MASK
            memory.write_u16(self.used_addr + 2, self.used_idx)
        except GuestMemoryError as err:
            raise self._error(f"used ring unwritable: {err}", "ring-out-of-memory",
                              spec.USED_RING) from None
        self._unpoppable = 0

    def needs_interrupt(self, memory: GuestMemory) -> bool:
        """Whether the used entries pushed since the previous call need a used buffer
        notification (§2.7.7): with EVENT_IDX, whether ``used.idx`` crossed
        ``used_event``; otherwise unless the driver set NO_INTERRUPT. Nothing pushed:
        no. Marks the current ``used.idx`` as signalled."""
        old, new = self._signalled_used, self.used_idx
        self._signalled_used = new
        if old == new:
            return False
        try:
            if self.event_idx:
                used_event = memory.read_u16(self.avail_addr + self.geometry.used_event)
                return vring_need_event(used_event, new, old)
            flags = memory.read_u16(self.avail_addr)
        except GuestMemoryError as err:
            raise self._error(f"available ring unreadable: {err}", "ring-out-of-memory",
                              spec.AVAIL_RING) from None
        return not flags & AvailFlag.NO_INTERRUPT

    # available buffer notification suppression, §2.7.10
    def disable_notifications(self, memory: GuestMemory) -> None:
        """Advise the driver not to notify: ``used.flags = NO_NOTIFY`` without EVENT_IDX
        (with EVENT_IDX, ``avail_event`` is simply left behind)."""
        if not self.event_idx:
            self._write_used_u16(memory, 0, int(UsedFlag.NO_NOTIFY))

    def enable_notifications(self, memory: GuestMemory) -> None:
        """Ask for notifications again: ``used.flags = 0``; with EVENT_IDX,
        ``avail_event`` = the ``avail.idx`` the device has seen (notify when anything
        after it is made available; vhost ``vhost_enable_notify`` does the same — after
        an :meth:`unpop` the entries already available must not be what the driver's
        next notification waits for). Callers re-check :meth:`pending` afterwards (a
        chain added in between would otherwise be missed)."""
        if self.event_idx:
            try:
                seen = self._avail_idx(memory)
            except GuestMemoryError as err:
                raise self._error(f"available ring unreadable: {err}", "ring-out-of-memory",
                                  spec.AVAIL_RING) from None
            self._write_used_u16(memory, self.geometry.avail_event, seen)
        else:
            self._write_used_u16(memory, 0, 0)

    def _write_used_u16(self, memory: GuestMemory, offset: int, value: int) -> None:
        try:
            memory.write_u16(self.used_addr + offset, value)
        except GuestMemoryError as err:
            raise self._error(f"used ring unwritable: {err}", "ring-out-of-memory",
                              spec.USED_RING) from None
