"""The register interface between driver and device (virtio-v1.2 §4.2.2 MMIO Device
Register Layout).

The driver reaches the device's register file only through this protocol, the way a
guest kernel reaches an MMIO window: the emulator's register file, a test fake or a
vhost-user front can sit behind it.
"""

from __future__ import annotations

from typing import Protocol


class RegisterBus(Protocol):
    """What the driver sees of the virtio-mmio register file (§4.2.2).

    ``offset`` is relative to the start of the MMIO window; ``size`` is the access width
    in bytes. Control registers are accessed 32 bits wide and aligned; the configuration
    space (offset 0x100 and up) with the width of the field (§4.2.2.2).
    """

    def read(self, offset: int, size: int = 4) -> int: ...

    def write(self, offset: int, value: int, size: int = 4) -> None: ...
