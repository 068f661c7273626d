"""Receive pacing (emulator/backends/base.py ``ReceivePaced``): a backend with its own
queue (a tap) asks the device before each frame whether it can place it, so a burst the
receive ring cannot hold waits in the backend instead of being dropped — QEMU's
``virtio_net_can_receive`` / ``virtio_net_has_buffers`` (§5.1.6.3, §5.1.6.4)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from driver.net import DEFAULT_WANTED, DriverConfig
from emulator.backends.base import ReceivePaced, Receiver
from emulator.net.device import NetDeviceConfig
from testbench.host import Host, HostConfig
from testbench.loop import EventLoop
from virtio.constants import FeatureBit as F

MAC = bytes.fromhex("525400000002")


class QueueBackend:
    """A backend holding frames in a queue, read only while the device is ready."""

    def __init__(self) -> None:
        self.queue: deque[bytes] = deque()
        self.receiver: Receiver | None = None
        self.ready: Callable[[], bool] | None = None
        self.paused = 0

    def send(self, frame: bytes) -> None:
        pass

    def set_receiver(self, receiver: Receiver | None) -> None:
        self.receiver = receiver

    def set_ready_check(self, ready: Callable[[], bool] | None) -> None:
        self.ready = ready

    def poll(self) -> int:
        moved = 0
        while self.queue:
            if self.ready is not None and not self.ready():
                self.paused += 1
                break
            assert self.receiver is not None
            self.receiver(self.queue.popleft())
            moved += 1
        return moved


def frame(n: int) -> bytes:
    return MAC + bytes.fromhex("525400000001") + b"\x88\xb5" + n.to_bytes(4, "big") + bytes(60)


def test_a_burst_waits_in_the_backend_instead_of_being_dropped() -> None:
    h = Host(EventLoop(), HostConfig("b", MAC, 4 << 20, NetDeviceConfig(),
                                     DriverConfig(wanted=DEFAULT_WANTED, queue_size=8)))
    backend = QueueBackend()
    assert isinstance(backend, ReceivePaced)
    h.attach(backend)
    h.start()
    got: list[bytes] = []
    h.on_frames = lambda frames: got.extend(f.data for f in frames)
    backend.queue.extend(frame(n) for n in range(20))
    assert backend.poll() == 8  # the ring holds 8; the rest stay queued
    assert backend.paused == 1 and len(backend.queue) == 12
    for _ in range(10):  # the driver reaps and refills; the backend goes on
        h.loop.run_until_idle(max_steps=10_000)
        backend.poll()
    h.loop.run_until_idle(max_steps=10_000)
    assert got == [frame(n) for n in range(20)]
    assert h.device.counters.drops == {}


def test_mergeable_gro_driver_needs_room_for_a_64k_packet() -> None:
    """With MRG_RXBUF and GUEST_TSO the device is ready only while every active receive
    queue holds buffers for a 64 KiB packet (44 of 1526 bytes)."""
    wanted = DEFAULT_WANTED.with_(F.MRG_RXBUF, F.GUEST_CSUM, F.GUEST_TSO4)
    h = Host(EventLoop(), HostConfig("b", MAC, 4 << 20, NetDeviceConfig(),
                                     DriverConfig(wanted=wanted, queue_size=64)))
    h.start()
    assert h.device.rx_ready()
    for n in range(21):  # 64 - 21 = 43 buffers left: one short of a 64 KiB packet
        assert h.device.receive(frame(n))
    assert not h.device.rx_ready()
    h.loop.run_until_idle(max_steps=10_000)  # the driver refills
    assert h.device.rx_ready()
