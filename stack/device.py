"""The network-device protocol the stack sees (DESIGN.md, "Stack device protocol").

Any device can sit under the stack: the virtio driver, a loopback, a Linux tap. The stack
asks for :class:`DeviceCapabilities`, hands frames down with :class:`TxMeta` and takes
frames up as :class:`RxFrame`. This mirrors smoltcp's ``phy::DeviceCapabilities`` with the
segmentation capabilities of smoltcp PR 1148 (per IP version, the largest packet the
device accepts for segmentation) and a segment size in the transmit metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ChecksumCapabilities:
    """Which checksums the device computes on transmit / verifies on receive."""

    tx_partial: bool = False
    """The device completes a partial L4 checksum (virtio CSUM)."""
    rx_verified: bool = False
    """The device verifies L4 checksums and says so (virtio GUEST_CSUM / DATA_VALID)."""


@dataclass(frozen=True, slots=True)
class SegmentationCapabilities:
    """Largest IP packet (bytes, IP header included) the device segments, per IP version;
    ``None`` means the device does not segment that version."""

    tcp_ipv4_max: int | None = None
    tcp_ipv6_max: int | None = None
    tcp_ecn: bool = False
    """A TSO packet may carry CWR: the device puts it on the first segment only (virtio
    HOST_ECN, Linux NETIF_F_TSO_ECN)."""


@dataclass(frozen=True, slots=True)
class DeviceCapabilities:
    mtu: int
    """Largest IP packet the link carries without segmentation (Ethernet payload)."""
    checksum: ChecksumCapabilities = field(default_factory=ChecksumCapabilities)
    segmentation: SegmentationCapabilities = field(default_factory=SegmentationCapabilities)
    max_burst: int | None = None
    """How many frames the device takes before the stack should wait (ring size)."""


@dataclass(frozen=True, slots=True)
class TxMeta:
    """What the stack tells the device about one outgoing frame."""

    segment_size: int | None = None
    """Payload bytes per segment when the device must segment this frame (TSO)."""
    csum_start: int | None = None
    """Offset from the frame start where the partial checksum starts."""
    csum_offset: int | None = None
    """Where, counted from ``csum_start``, the 16-bit checksum goes."""


@dataclass(frozen=True, slots=True)
class RxFrame:
    """One received frame with what the device says about it."""

    data: bytes
    csum_verified: bool = False
    """The device verified the L4 checksum (DATA_VALID)."""
    csum_partial: bool = False
    """The L4 checksum is partial, as sent by the peer (NEEDS_CSUM on receive)."""
    csum_start: int | None = None
    csum_offset: int | None = None
    segment_size: int | None = None
    """Set when the device coalesced segments into this frame (GSO on receive)."""
    segments: int | None = None
    """Number of coalesced segments (RSC_INFO), when the device reports it."""
    dup_acks: int | None = None
    """Duplicate ACKs the device absorbed into this frame (RSC_INFO)."""
    queue: int = 0
    """The receive queue (pair number, 0 = the first) the frame arrived on."""
    hash_value: int | None = None
    """The device's receive hash of the flow, when it reported one."""
    hash_report: int | None = None
    """Which hash the device calculated (virtio hash_report numbering; 0 = none)."""


class NetworkDevice(Protocol):
    """What the stack needs from whatever carries its frames."""

    def capabilities(self) -> DeviceCapabilities: ...

    def transmit(self, frame: bytes, meta: TxMeta | None = None) -> bool:
        """Queue ``frame``; False when the device has no room (try again later)."""
        ...

    def flush(self) -> None:
        """Tell the device about queued frames (one notification for a batch)."""
        ...

    def receive(self) -> list[RxFrame]:
        """Frames received since the last call."""
        ...
