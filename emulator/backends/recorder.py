"""A backend wrapper that keeps every frame the device sends (for tests and scenarios
that compare what went onto the network), forwarding everything to the backend it
wraps — transmit backpressure included."""

from __future__ import annotations

from collections.abc import Callable

from emulator.backends.base import Backend, FlowControl, Receiver


class Recorder:
    """Wraps ``inner``; :attr:`frames` holds what was sent, in order."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.frames: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)
        self.inner.send(frame)

    def set_receiver(self, receiver: Receiver | None) -> None:
        self.inner.set_receiver(receiver)

    def tx_ready(self) -> bool:
        return not isinstance(self.inner, FlowControl) or self.inner.tx_ready()

    def on_tx_ready(self, callback: Callable[[], None] | None) -> None:
        if isinstance(self.inner, FlowControl):
            self.inner.on_tx_ready(callback)
