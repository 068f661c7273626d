"""The backend interface of the network device (DESIGN.md, "Backend").

A backend carries Ethernet frames (no virtio_net_hdr) between the device and the network.
The device calls :meth:`Backend.send` for each frame it puts on the wire; the backend
calls the receiver the device registered for each frame that arrives. The receiver returns
whether the device accepted the frame (False: dropped, and the device has counted why).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Receiver = Callable[[bytes], bool]


class Backend(Protocol):
    def send(self, frame: bytes) -> None:
        """Put one frame on the network."""
        ...

    def set_receiver(self, receiver: Receiver | None) -> None:
        """Register the device's entry point for frames from the network."""
        ...
