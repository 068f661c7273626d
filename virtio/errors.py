"""The error hierarchy: every error says whose fault it is (DESIGN.md, "Errors say who is
at fault").

- :class:`DeviceProtocolError` — the *driver* broke the spec; raised inside the device,
  caught once at the device boundary and turned into state (a counted drop or
  DEVICE_NEEDS_RESET) plus a conformance record.
- :class:`DriverProtocolError` — the *device* broke the spec; raised inside the driver.
- :class:`GuestMemoryError` — an access outside guest memory; whoever made the access
  wraps it into one of the two above when the address came from the other side.
- :class:`WireError` — a malformed packet seen by the stack.
- Misuse of our own APIs by their caller is a plain ``ValueError`` / ``TypeError``.
"""

from __future__ import annotations

from virtio.spec import Section


class VirtioError(Exception):
    """Root of every error vnetbench raises on purpose."""


class ProtocolError(VirtioError):
    """A spec rule was broken. ``rule`` is a short stable name, ``section`` the spec
    section (or other reference) that states it."""

    rule: str = "protocol"
    section: Section | str | None = None

    def __init__(
        self,
        message: str,
        *,
        rule: str | None = None,
        section: Section | str | None = None,
    ) -> None:
        super().__init__(message)
        if rule is not None:
            self.rule = rule
        if section is not None:
            self.section = section

    @property
    def reference(self) -> str:
        return str(self.section) if self.section is not None else "unspecified"


class DeviceProtocolError(ProtocolError):
    """The driver broke the spec (detected by the device)."""


class DriverProtocolError(ProtocolError):
    """The device broke the spec (detected by the driver)."""


class GuestMemoryError(VirtioError):
    """An access to guest-physical memory that no region backs."""

    def __init__(self, address: int, length: int, message: str | None = None) -> None:
        self.address = address
        self.length = length
        super().__init__(
            message or f"guest memory access [{address:#x}, +{length}) is outside every region"
        )


class OutOfGuestMemory(VirtioError):
    """The guest memory allocator has no free block large enough."""


class NegotiationFailed(VirtioError):
    """The device refused the driver's feature subset (FEATURES_OK did not stick), or the
    transport is not one the driver can drive."""


class WireError(VirtioError):
    """A malformed packet (truncated, bad length field, bad version...)."""


# Device-side (the driver broke a rule; raised in the device, caught at its boundary)


class RingError(DeviceProtocolError):
    """A malformed virtqueue: bad index, descriptor, chain or indirect table (§2.7)."""


class TransportError(DeviceProtocolError):
    """A transport-level rule broken by the driver: status sequence, feature or queue
    registers used out of order, bad register access (§2.1, §3.1.1, §4.2)."""


class NetHeaderError(DeviceProtocolError):
    """A virtio_net_hdr the driver must not send (§5.1.6.2)."""


# Driver-side (the device broke a rule; raised in the driver)


class UsedRingError(DriverProtocolError):
    """An impossible used-ring entry: id not in flight, length beyond the buffer, used idx
    moved by more than the queue size (§2.7.8)."""


class DeviceConfigError(DriverProtocolError):
    """The device's registers or configuration space are not what the spec allows
    (bad magic, version, queue size) (§4.2.2, §5.1.4)."""
