"""SET_MEM_TABLE: the frontend's memory regions, mapped, as a :class:`GuestMemory`.

Each region comes with a file descriptor (QEMU's memfd, ``share=on``) that the backend
maps from offset 0 for ``mmap_offset + size`` bytes; the region's bytes start
``mmap_offset`` into that mapping (vhost-user.rst "Memory regions description"). Two
address spaces meet here, as the specification says:

- descriptor addresses in the rings are *guest-physical*: the :class:`GuestMemory` built
  from the regions serves them, bounds-checked like any other guest memory;
- SET_VRING_ADDR's ring addresses are the frontend's *user* (virtual) addresses
  ("Vring address description"); :meth:`MemoryTable.user_to_guest` turns them into
  guest-physical ones, so the device's virtqueue code sees one address space.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from dataclasses import dataclass

from emulator.backends.vhost_user.errors import MEMORY_REGIONS, FrontendProtocolError
from emulator.backends.vhost_user.messages import RegionDesc
from virtio.memory import GuestMemory, MemoryRegion


@dataclass
class MappedRegion:
    desc: RegionDesc
    mapping: mmap.mmap
    window: memoryview
    """The region's bytes within the mapping (what the :class:`MemoryRegion` wraps)."""


class MemoryTable:
    """The mapped regions of one SET_MEM_TABLE. Takes ownership of ``fds`` (closed once
    mapped: the mapping keeps the memory)."""

    def __init__(self, regions: list[RegionDesc], fds: list[int]) -> None:
        if len(regions) != len(fds):
            raise ValueError("one file descriptor per region")
        self.regions: list[MappedRegion] = []
        try:
            for i, (desc, fd) in enumerate(zip(regions, fds, strict=True)):
                try:
                    mapping = mmap.mmap(fd, desc.mmap_offset + desc.size, mmap.MAP_SHARED,
                                        mmap.PROT_READ | mmap.PROT_WRITE)
                except (OSError, ValueError, OverflowError) as err:
                    raise FrontendProtocolError(
                        f"memory region {i} (guest {desc.guest_addr:#x}, {desc.size} bytes at "
                        f"offset {desc.mmap_offset}) cannot be mapped: {err}",
                        rule="vhost-user-mem-map", section=MEMORY_REGIONS) from None
                window = memoryview(mapping)[desc.mmap_offset:desc.mmap_offset + desc.size]
                self.regions.append(MappedRegion(desc, mapping, window))
            self.memory = GuestMemory([
                MemoryRegion(r.desc.guest_addr, r.window, f"vhost-user-{i}")
                for i, r in enumerate(self.regions)
            ])
        except ValueError as err:  # overlapping guest ranges
            self.close()
            raise FrontendProtocolError(f"memory table refused: {err}", rule="vhost-user-mem-overlap",
                                        section=MEMORY_REGIONS) from None
        except FrontendProtocolError:
            self.close()
            raise
        finally:
            for fd in fds:
                _close_fd(fd)

    def user_to_guest(self, user_addr: int, length: int) -> int:
        """The guest-physical address of the frontend user address ``user_addr``, whose
        ``length`` bytes must lie in one region."""
        for r in self.regions:
            d = r.desc
            if d.user_addr <= user_addr and user_addr + length <= d.user_addr + d.size:
                return d.guest_addr + (user_addr - d.user_addr)
        raise FrontendProtocolError(
            f"user address range [{user_addr:#x}, +{length}) is in no memory region",
            rule="vhost-user-ring-address", section=MEMORY_REGIONS)

    def close(self) -> None:
        """Unmap. A view still exported (a chain being copied) keeps its mapping alive
        until it is released; the mapping is then freed by the garbage collector."""
        memory = getattr(self, "memory", None)
        if memory is not None:
            for region in memory.regions:
                _release(region.buf)
        for r in self.regions:
            _release(r.window)
            with contextlib.suppress(BufferError):
                r.mapping.close()
        self.regions = []

    def __repr__(self) -> str:
        return "MemoryTable(" + ", ".join(
            f"[{r.desc.guest_addr:#x}+{r.desc.size:#x} @user {r.desc.user_addr:#x}]"
            for r in self.regions) + ")"


def _release(view: memoryview) -> None:
    with contextlib.suppress(BufferError):
        view.release()


def _close_fd(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
