"""The receive refill race (§2.7.10 Available Buffer Notification Suppression, §5.1.6.4
Processing of Incoming Packets).

A device that runs out of receive buffers turns the driver's notifications back on and
waits for the refill notification. The driver, meanwhile, refills with notifications
off — so it does not notify. If the refill lands after the device's last look at the
ring and before notifications are on again, nobody notices it: the device waits for a
notification that never comes while the ring is full of buffers. The cure is the order
every real device uses (vhost-net ``handle_rx`` / ``vhost_enable_notify``, QEMU
``virtio_net_has_buffers``): enable, then look again.

The tests run the race deterministically: the device's ``enable_notifications`` on
receiveq1 is wrapped so that the driver's interrupt handler (reap, refill, maybe
notify) runs just before it — the other CPU winning the race.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from driver.net import DEFAULT_WANTED, DriverConfig
from emulator.net.device import NetDeviceConfig
from emulator.virtqueue import DeviceQueue
from testbench.host import Host, HostConfig
from testbench.loop import EventLoop
from virtio.constants import FeatureBit as F
from virtio.features import FeatureSet
from virtio.memory import GuestMemory

RING = 4
MAC = bytes.fromhex("525400000002")
PEER = bytes.fromhex("525400000001")


def frame(n: int) -> bytes:
    return MAC + PEER + b"\x88\xb5" + n.to_bytes(4, "big") + bytes(60)


def host(recheck: bool, event_idx: bool) -> tuple[Host, list[bytes]]:
    wanted = DEFAULT_WANTED if event_idx else DEFAULT_WANTED - FeatureSet.of(F.EVENT_IDX)
    h = Host(EventLoop(), HostConfig("b", MAC, 4 << 20, NetDeviceConfig(rx_recheck=recheck),
                                     DriverConfig(wanted=wanted, queue_size=RING)))
    h.start()
    got: list[bytes] = []
    h.on_frames = lambda frames: got.extend(f.data for f in frames)
    return h, got


def race_on_next_enable(h: Host, q: DeviceQueue) -> list[int]:
    """Make the driver service its interrupt right before the device's next
    ``enable_notifications`` on ``q``; returns a list that records the driver's RX
    notifications sent during that service."""
    original: Callable[[GuestMemory], None] = q.enable_notifications
    kicks: list[int] = []

    def enable(memory: GuestMemory) -> None:
        before = h.driver.counters.rx_kicks
        h.driver.handle_interrupt()  # reap the full ring and refill it
        kicks.append(h.driver.counters.rx_kicks - before)
        q.enable_notifications = original  # type: ignore[method-assign,assignment]
        original(memory)

    q.enable_notifications = enable  # type: ignore[method-assign]
    return kicks


@pytest.mark.parametrize("event_idx", [True, False], ids=["event-idx", "flags"])
def test_naive_order_stalls_with_buffers_posted(event_idx: bool) -> None:
    """Enable without a second look (``rx_recheck=False``): the refill made in the window
    is never seen. Every later frame is dropped as "rx-no-buffer" although all four
    buffers are posted — the stall."""
    h, got = host(recheck=False, event_idx=event_idx)
    q = h.core.queue(0)
    assert q is not None
    for n in range(RING):  # fill the ring; the driver has not run yet
        assert h.device.receive(frame(n))
    kicks = race_on_next_enable(h, q)
    assert not h.device.receive(frame(RING))  # ring empty → enable (the race) → give up
    assert kicks == [0]  # the driver refilled with notifications off: no notification
    for n in range(RING + 1, RING + 11):
        assert not h.device.receive(frame(n))
    h.loop.run_until_idle(max_steps=10_000)
    assert got == [frame(n) for n in range(RING)]
    assert h.device.counters.drops == {"rx-no-buffer": 11}
    assert q.pending(h.memory) == RING  # four buffers posted, none ever used again


@pytest.mark.parametrize("event_idx", [True, False], ids=["event-idx", "flags"])
def test_enable_then_recheck_sees_the_refill(event_idx: bool) -> None:
    """The same race with the device's order (enable, then look again): the refilled
    buffers are found at once, nothing is dropped, nothing stalls."""
    h, got = host(recheck=True, event_idx=event_idx)
    q = h.core.queue(0)
    assert q is not None
    for n in range(RING):
        assert h.device.receive(frame(n))
    kicks = race_on_next_enable(h, q)
    assert h.device.receive(frame(RING))
    assert kicks == [0]
    for n in range(RING + 1, RING + 11):
        h.device.receive(frame(n))
        h.loop.run_until_idle(max_steps=10_000)  # the driver keeps up
    h.loop.run_until_idle(max_steps=10_000)
    assert got == [frame(n) for n in range(RING + 11)]
    assert h.device.counters.drops == {}


@pytest.mark.parametrize("recheck", [True, False])
def test_empty_ring_waits_for_the_refill_notification(recheck: bool) -> None:
    """Without the race both orders work: the device drops while the ring is empty
    ("rx-no-buffer"), the driver's refill finds notifications on and notifies, and
    receive resumes."""
    h, got = host(recheck=recheck, event_idx=True)
    for n in range(RING + 3):
        h.device.receive(frame(n))
    assert h.device.counters.drops == {"rx-no-buffer": 3}
    h.loop.run_until_idle(max_steps=10_000)  # the driver reaps, refills and notifies
    assert h.driver.counters.rx_kicks == 2  # at probe, and this refill
    assert h.device.counters.rx_notifications == 2
    assert h.device.receive(frame(100))
    h.loop.run_until_idle(max_steps=10_000)
    assert got == [frame(n) for n in range(RING)] + [frame(100)]
