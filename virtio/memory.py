"""Guest-physical memory: the only place bytes live between driver and device.

A :class:`GuestMemory` is made of one or more :class:`MemoryRegion` s, each a guest-physical
range backed by a writable buffer (a ``bytearray`` for the emulated pair, an ``mmap`` of
a memory fd for a vhost-user backend). Every access is bounds checked; an address no
region backs raises :class:`GuestMemoryError`, never ``IndexError``. An access may span
regions that are contiguous in guest-physical space (QEMU splits RAM that way), except
:meth:`GuestMemory.view`, which hands out a zero-copy window into one region.

:class:`Allocator` is the driver's allocator for rings and buffers.
"""

from __future__ import annotations

import bisect
import itertools
import mmap
from collections.abc import Sequence
from dataclasses import dataclass, field

from virtio.errors import GuestMemoryError, OutOfGuestMemory
from virtio.layouts import U16, U32, U64

ADDRESS_LIMIT = 1 << 64
_U16_FROM = U16.unpack_from
_U16_INTO = U16.pack_into

Backing = bytearray | mmap.mmap | memoryview


class MemoryRegion:
    """A guest-physical range ``[guest_addr, guest_addr + size)`` backed by ``backing``."""

    __slots__ = ("buf", "end", "guest_addr", "name", "size")

    def __init__(self, guest_addr: int, backing: Backing, name: str = "") -> None:
        view = memoryview(backing).cast("B")
        if view.readonly:
            raise ValueError("a guest memory region must be writable")
        if guest_addr < 0 or guest_addr + len(view) > ADDRESS_LIMIT:
            raise ValueError(f"region [{guest_addr:#x}, +{len(view)}) is outside the 64-bit space")
        self.guest_addr = guest_addr
        self.size = len(view)
        self.end = guest_addr + self.size
        self.buf = view
        self.name = name

    def __repr__(self) -> str:
        return f"MemoryRegion({self.name or '?'} [{self.guest_addr:#x}, {self.end:#x}))"


class GuestMemory:
    """Bounds-checked access to guest-physical addresses."""

    def __init__(self, regions: Sequence[MemoryRegion], allocator: Allocator | None = None) -> None:
        if not regions:
            raise ValueError("guest memory needs at least one region")
        ordered = sorted(regions, key=lambda r: r.guest_addr)
        for a, b in itertools.pairwise(ordered):
            if b.guest_addr < a.end:
                raise ValueError(f"regions {a} and {b} overlap")
        self.regions: tuple[MemoryRegion, ...] = tuple(ordered)
        self._starts = [r.guest_addr for r in ordered]
        self._last = ordered[0]  # most accesses hit the region of the previous one
        self.allocator = allocator

    @classmethod
    def anonymous(cls, size: int, base: int = 0, *, reserve_low: int = 0x1000) -> GuestMemory:
        """One zeroed region of ``size`` bytes at ``base`` with an :class:`Allocator` over
        it. The first ``reserve_low`` bytes are never handed out, so address 0 is never a
        valid buffer (a zeroed descriptor then points at memory the driver never uses)."""
        if size <= reserve_low:
            raise ValueError(f"guest memory of {size} bytes is too small")
        region = MemoryRegion(base, bytearray(size), "ram")
        return cls([region], Allocator(base + reserve_low, size - reserve_low))

    @property
    def size(self) -> int:
        return sum(r.size for r in self.regions)

    # lookup
    def _region(self, addr: int) -> MemoryRegion | None:
        r = self._last
        if r.guest_addr <= addr < r.end:
            return r
        i = bisect.bisect_right(self._starts, addr) - 1
        if i < 0:
            return None
        r = self.regions[i]
        if addr < r.end:
            self._last = r
            return r
        return None

    def contains(self, addr: int, length: int) -> bool:
        """Whether ``[addr, addr + length)`` is backed (contiguously, across regions)."""
        if addr < 0 or length < 0 or addr + length > ADDRESS_LIMIT:
            return False
        if length == 0:
            return self._region(addr) is not None or any(addr == r.end for r in self.regions)
        while length > 0:
            r = self._region(addr)
            if r is None:
                return False
            n = min(length, r.end - addr)
            addr += n
            length -= n
        return True

    def check(self, addr: int, length: int) -> None:
        """Raise :class:`GuestMemoryError` unless ``[addr, addr + length)`` is backed."""
        if not self.contains(addr, length):
            raise GuestMemoryError(addr, length)

    # bulk access
    def view(self, addr: int, length: int) -> memoryview:
        """A writable zero-copy window; the range must lie inside one region."""
        r = self._region(addr)
        if r is None or length < 0 or addr + length > r.end:
            if length == 0 and self.contains(addr, 0):
                return memoryview(b"")
            raise GuestMemoryError(
                addr, length,
                None if self.contains(addr, length)
                else f"guest memory access [{addr:#x}, +{length}) is outside every region",
            )
        off = addr - r.guest_addr
        return r.buf[off : off + length]

    def read(self, addr: int, length: int) -> bytes:
        r = self._region(addr)
        if r is not None and length >= 0 and addr + length <= r.end:
            off = addr - r.guest_addr
            return bytes(r.buf[off : off + length])
        self.check(addr, length)
        out = bytearray()
        while length > 0:
            r = self._region(addr)
            assert r is not None
            off = addr - r.guest_addr
            n = min(length, r.end - addr)
            out += r.buf[off : off + n]
            addr += n
            length -= n
        return bytes(out)

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        length = len(data)
        r = self._region(addr)
        if r is not None and addr + length <= r.end:
            off = addr - r.guest_addr
            r.buf[off : off + length] = data
            return
        self.check(addr, length)
        src = memoryview(data).cast("B")
        pos = 0
        while pos < length:
            r = self._region(addr)
            assert r is not None
            off = addr - r.guest_addr
            n = min(length - pos, r.end - addr)
            r.buf[off : off + n] = src[pos : pos + n]
            addr += n
            pos += n

    def fill(self, addr: int, length: int, value: int = 0) -> None:
        self.write(addr, bytes([value]) * length)

    # scalars (little-endian, as every virtio structure with VERSION_1)
    def _scalar_view(self, addr: int, size: int) -> tuple[memoryview, int]:
        r = self._region(addr)
        if r is None or addr + size > r.end:
            raise GuestMemoryError(addr, size)
        return r.buf, addr - r.guest_addr

    def read_u16(self, addr: int) -> int:
        r = self._last  # the common case inlined: the region of the previous access
        if r.guest_addr <= addr and addr + 2 <= r.end:
            return int(_U16_FROM(r.buf, addr - r.guest_addr)[0])
        buf, off = self._scalar_view(addr, 2)
        return int(U16.unpack_from(buf, off)[0])

    def read_u32(self, addr: int) -> int:
        buf, off = self._scalar_view(addr, 4)
        return int(U32.unpack_from(buf, off)[0])

    def read_u64(self, addr: int) -> int:
        buf, off = self._scalar_view(addr, 8)
        return int(U64.unpack_from(buf, off)[0])

    def write_u16(self, addr: int, value: int) -> None:
        r = self._last
        if r.guest_addr <= addr and addr + 2 <= r.end:
            _U16_INTO(r.buf, addr - r.guest_addr, value & 0xFFFF)
            return
        buf, off = self._scalar_view(addr, 2)
        U16.pack_into(buf, off, value & 0xFFFF)

    def write_u32(self, addr: int, value: int) -> None:
        buf, off = self._scalar_view(addr, 4)
        U32.pack_into(buf, off, value & 0xFFFF_FFFF)

    def write_u64(self, addr: int, value: int) -> None:
        buf, off = self._scalar_view(addr, 8)
        U64.pack_into(buf, off, value & 0xFFFF_FFFF_FFFF_FFFF)

    def __repr__(self) -> str:
        return f"GuestMemory({', '.join(map(repr, self.regions))})"


@dataclass
class Allocator:
    """First-fit allocator over ``[base, base + size)`` with coalescing free list.

    Used by the driver for rings and buffers. ``alloc`` raises :class:`OutOfGuestMemory`
    when no free block fits; ``free`` of an address that is not allocated is a
    ``ValueError`` (our caller's bug, not a protocol error).
    """

    base: int
    size: int
    _free: list[tuple[int, int]] = field(init=False)  # sorted (addr, length)
    _used: dict[int, int] = field(init=False, default_factory=dict)  # addr -> length
    in_use: int = field(init=False, default=0)
    peak: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ValueError("allocator size must be positive")
        self._free = [(self.base, self.size)]

    def alloc(self, size: int, align: int = 16) -> int:
        if size <= 0:
            raise ValueError(f"cannot allocate {size} bytes")
        if align <= 0 or align & (align - 1):
            raise ValueError(f"alignment {align} is not a power of two")
        for i, (addr, length) in enumerate(self._free):
            start = (addr + align - 1) & ~(align - 1)
            pad = start - addr
            if pad + size > length:
                continue
            pieces = []
            if pad:
                pieces.append((addr, pad))
            rest = length - pad - size
            if rest:
                pieces.append((start + size, rest))
            self._free[i : i + 1] = pieces
            self._used[start] = size
            self.in_use += size
            self.peak = max(self.peak, self.in_use)
            return start
        raise OutOfGuestMemory(
            f"no free block of {size} bytes (align {align}); {self.in_use} of {self.size} in use"
        )

    def free(self, addr: int) -> None:
        size = self._used.pop(addr, None)
        if size is None:
            raise ValueError(f"{addr:#x} is not an allocated block")
        self.in_use -= size
        i = bisect.bisect_left(self._free, (addr, 0))
        self._free.insert(i, (addr, size))
        # coalesce with the next, then the previous block
        if i + 1 < len(self._free) and addr + size == self._free[i + 1][0]:
            self._free[i] = (addr, size + self._free[i + 1][1])
            del self._free[i + 1]
        if i > 0 and self._free[i - 1][0] + self._free[i - 1][1] == addr:
            self._free[i - 1] = (self._free[i - 1][0], self._free[i - 1][1] + self._free[i][1])
            del self._free[i]

    @property
    def free_bytes(self) -> int:
        return sum(length for _, length in self._free)
