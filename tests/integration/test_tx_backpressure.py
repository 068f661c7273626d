"""Transmit backpressure: a backend with a bounded queue (the in-memory wire) pushes back
and the device leaves chains in the transmit ring until it drains, as vhost-net does on
a full tap socket (DESIGN.md "Backend"; §2.7.13 Supplying Buffers: the device uses a
buffer when it is done with it, not before). Nothing is lost; the driver sees a full
ring and waits."""

from __future__ import annotations

from driver.net import DriverConfig
from emulator.backends.base import FlowControl
from emulator.backends.wire import TX_HEADROOM, Wire
from emulator.net.device import NetDeviceConfig
from testbench.host import Host, HostConfig
from testbench.loop import EventLoop

MAC_A = bytes.fromhex("525400000001")
MAC_B = bytes.fromhex("525400000002")


def frame(n: int) -> bytes:
    return MAC_B + MAC_A + b"\x88\xb5" + n.to_bytes(4, "big") + bytes(60)


def test_wire_port_is_ready_below_the_threshold_and_calls_back_once() -> None:
    loop = EventLoop()
    wire = Wire(loop.clock, queue_limit=TX_HEADROOM + 3)
    loop.add_source(wire)
    port = wire.a
    assert isinstance(port, FlowControl)
    calls: list[int] = []
    for n in range(3):
        assert port.tx_ready()
        port.send(frame(n))
    assert not port.tx_ready()  # three in flight: the threshold
    port.on_tx_ready(lambda: calls.append(loop.now))
    loop.run_until_idle(max_steps=100)
    assert len(calls) == 1 and port.tx_ready()
    assert wire.a.counters.queue_drops == 0


def test_device_pauses_on_a_full_wire_and_delivers_everything() -> None:
    loop = EventLoop()
    wire = Wire(loop.clock, queue_limit=TX_HEADROOM + 6, rate_bps=1_000_000_000)
    loop.add_source(wire)
    a = Host(loop, HostConfig("a", MAC_A, 4 << 20, NetDeviceConfig(), DriverConfig(queue_size=32)))
    b = Host(loop, HostConfig("b", MAC_B, 4 << 20, NetDeviceConfig(), DriverConfig(queue_size=32)))
    a.attach(wire.a)
    b.attach(wire.b)
    a.start()
    b.start()
    got: list[bytes] = []
    b.on_frames = lambda frames: got.extend(f.data for f in frames)
    for n in range(20):
        assert a.driver.transmit(frame(n))
    a.driver.flush()
    # the device took 6 chains, then found the wire full: 14 stay in the ring
    assert (a.device.counters.tx_chains, a.device.counters.tx_backpressure) == (6, 1)
    tx = a.core.queue(1)
    assert tx is not None and tx.pending(a.memory) == 14
    loop.run_until_idle(max_steps=10_000)
    assert got == [frame(n) for n in range(20)]
    assert wire.a.counters.queue_drops == 0
    assert a.device.counters.tx_chains == 20 and tx.pending(a.memory) == 0
    assert a.driver.tx_queue.in_flight == 0  # every chain used and reaped
