"""The backend interface of the network device (DESIGN.md, "Backend").

A backend carries Ethernet frames (no virtio_net_hdr) between the device and the network.
The device calls :meth:`Backend.send` for each frame it puts on the wire; the backend
calls the receiver the device registered for each frame that arrives. The receiver returns
whether the device accepted the frame (False: dropped, and the device has counted why).

A backend with a bounded queue towards the network may also push back
(:class:`FlowControl`): while it is not ready the device leaves transmit chains in the
ring — as vhost-net stops taking buffers when the tap's socket is full — and resumes
when the backend says it has room again. The driver then sees a full ring instead of
frames vanishing into a full queue.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from virtio.net_hdr import NetHdr

Receiver = Callable[[bytes], bool]
OffloadReceiver = Callable[[bytes, NetHdr], bool]
"""A frame with the offload metadata its source attached (partial checksum, GSO): a
Linux tap with a vnet header hands the device what the kernel left unfinished."""


class Backend(Protocol):
    def send(self, frame: bytes) -> None:
        """Put one frame on the network."""
        ...

    def set_receiver(self, receiver: Receiver | None) -> None:
        """Register the device's entry point for frames from the network."""
        ...


@runtime_checkable
class FlowControl(Protocol):
    """Optional backend side of transmit backpressure."""

    def tx_ready(self) -> bool:
        """Whether the backend takes more frames now (room for at least one packet's
        segments)."""
        ...

    def on_tx_ready(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` once the backend has room again after :meth:`tx_ready`
        said no (None: stop calling)."""
        ...


@runtime_checkable
class OffloadSource(Protocol):
    """Optional: a backend whose frames may arrive with offload work left to do."""

    def set_offload_receiver(self, receiver: OffloadReceiver | None) -> None:
        """Register the device's entry point for frames that carry a virtio_net_hdr with
        NEEDS_CSUM or a gso_type; plain frames still go to the plain receiver."""
        ...


@runtime_checkable
class ReceivePaced(Protocol):
    """Optional: a backend that can leave frames where they are (a tap's queue) while
    the device has no room, as QEMU's tap backend does (``virtio_net_can_receive`` /
    ``virtio_net_has_buffers``) and vhost-net's ``handle_rx``."""

    def set_ready_check(self, ready: Callable[[], bool] | None) -> None:
        """``ready()`` is asked before each frame is read: False leaves the rest queued
        until a later poll."""
        ...
