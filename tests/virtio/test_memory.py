"""GuestMemory bounds checks, multi-region access and the driver's allocator."""

from __future__ import annotations

import mmap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from virtio.errors import GuestMemoryError, OutOfGuestMemory
from virtio.memory import Allocator, GuestMemory, MemoryRegion


def two_regions() -> GuestMemory:
    # Two regions contiguous in guest-physical space (as QEMU splits RAM around a hole),
    # plus one far away.
    return GuestMemory(
        [
            MemoryRegion(0x1000, bytearray(0x1000), "lo"),
            MemoryRegion(0x2000, bytearray(0x1000), "hi"),
            MemoryRegion(0x10000, bytearray(0x100), "far"),
        ]
    )


def test_read_write_roundtrip_and_scalars() -> None:
    mem = two_regions()
    mem.write(0x1010, b"abcdef")
    assert mem.read(0x1010, 6) == b"abcdef"
    mem.write_u16(0x1100, 0xBEEF)
    mem.write_u32(0x1104, 0x01020304)
    mem.write_u64(0x1108, 0x1122334455667788)
    assert mem.read(0x1100, 2) == b"\xef\xbe"
    assert (mem.read_u16(0x1100), mem.read_u32(0x1104), mem.read_u64(0x1108)) == (
        0xBEEF,
        0x01020304,
        0x1122334455667788,
    )


def test_access_spanning_contiguous_regions() -> None:
    mem = two_regions()
    mem.write(0x1FFC, b"12345678")
    assert mem.read(0x1FFC, 8) == b"12345678"
    assert mem.regions[0].buf[-4:].tobytes() == b"1234"
    assert mem.regions[1].buf[:4].tobytes() == b"5678"
    # a zero-copy view cannot span regions
    with pytest.raises(GuestMemoryError, match="0x1ffc"):
        mem.view(0x1FFC, 8)
    # a scalar across the seam is not one region either
    with pytest.raises(GuestMemoryError):
        mem.read_u32(0x1FFE)


@pytest.mark.parametrize(
    ("addr", "length"),
    [(0, 1), (0xFFF, 2), (0x2FFF, 2), (0x3000, 1), (0x100FF, 2), (2**64 - 1, 2), (-1, 1)],
)
def test_out_of_bounds_is_a_guest_memory_error(addr: int, length: int) -> None:
    mem = two_regions()
    assert not mem.contains(addr, length)
    with pytest.raises(GuestMemoryError) as info:
        mem.read(addr, length)
    assert info.value.address == addr and info.value.length == length
    with pytest.raises(GuestMemoryError):
        mem.write(addr, b"\0" * length)


def test_zero_length_access_at_a_region_end_is_fine() -> None:
    mem = two_regions()
    assert mem.contains(0x10100, 0)
    assert mem.read(0x10100, 0) == b""
    assert not mem.contains(0x20000, 0)


def test_view_is_zero_copy() -> None:
    mem = two_regions()
    v = mem.view(0x1200, 4)
    v[:] = b"wxyz"
    assert mem.read(0x1200, 4) == b"wxyz"


def test_mmap_backed_region() -> None:
    # The shape a vhost-user backend uses: a region over an mmap of a memory fd.
    with mmap.mmap(-1, 4096) as m:
        mem = GuestMemory([MemoryRegion(0x40000000, m, "memfd")])
        mem.write(0x40000010, b"shared")
        assert m[0x10:0x16] == b"shared"
        with pytest.raises(GuestMemoryError):
            mem.read(0x40001000, 1)
        del mem


def test_overlapping_or_readonly_regions_are_rejected() -> None:
    with pytest.raises(ValueError, match="overlap"):
        GuestMemory([MemoryRegion(0, bytearray(16)), MemoryRegion(8, bytearray(16))])
    with pytest.raises(ValueError, match="writable"):
        MemoryRegion(0, memoryview(b"readonly"))
    with pytest.raises(ValueError):
        GuestMemory([])


def test_anonymous_reserves_low_memory() -> None:
    mem = GuestMemory.anonymous(1 << 16)
    assert mem.allocator is not None
    assert mem.allocator.alloc(16) == 0x1000


def test_allocator_alignment_reuse_and_coalescing() -> None:
    a = Allocator(0x1000, 0x1000)
    x = a.alloc(10, align=16)
    y = a.alloc(100, align=64)
    assert (x, y) == (0x1000, 0x1040)
    assert a.in_use == 110
    a.free(x)
    a.free(y)
    assert a.in_use == 0 and a.free_bytes == 0x1000
    assert a.alloc(0x1000, align=16) == 0x1000  # coalesced back into one block
    with pytest.raises(OutOfGuestMemory):
        a.alloc(1)
    assert a.peak == 0x1000


def test_allocator_misuse() -> None:
    a = Allocator(0, 64)
    with pytest.raises(ValueError):
        a.alloc(0)
    with pytest.raises(ValueError):
        a.alloc(8, align=3)
    with pytest.raises(ValueError):
        a.free(0)


@given(st.lists(st.tuples(st.integers(1, 300), st.sampled_from([1, 2, 4, 16, 64]), st.booleans())))
def test_allocator_never_overlaps(ops: list[tuple[int, int, bool]]) -> None:
    a = Allocator(0x100, 0x2000)
    live: dict[int, int] = {}
    for size, align, free_one in ops:
        if free_one and live:
            addr = next(iter(live))
            a.free(addr)
            del live[addr]
        try:
            addr = a.alloc(size, align)
        except OutOfGuestMemory:
            continue
        assert addr % align == 0 and addr >= 0x100 and addr + size <= 0x2100
        for other, osize in live.items():
            assert addr + size <= other or other + osize <= addr
        live[addr] = size
    assert a.in_use == sum(live.values())
    assert a.in_use + a.free_bytes <= 0x2000
