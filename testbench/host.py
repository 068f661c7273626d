"""An emulated host: guest memory, the virtio-net device behind its MMIO register file,
and the Python driver bound to it; and a pair of such hosts over the in-memory wire.

The host is where the two sides meet the way they would in a machine: the driver gets
the register file (as a :class:`driver.bus.RegisterBus`) and the guest memory, the device
gets the same memory and a backend; the device's interrupt line is wired to the event
loop, which runs the driver's interrupt handler soon after (never re-entrantly from
inside the device).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from driver.net import DriverConfig, VirtioNetDriver
from emulator.backends.base import Backend
from emulator.backends.pcap import Capture
from emulator.backends.wire import FaultConfig, Wire
from emulator.core import DeviceCore
from emulator.mmio import MmioTransport
from emulator.monitor import Monitor
from emulator.net.device import NetDevice, NetDeviceConfig
from stack.device import RxFrame
from stack.stack import Stack, StackConfig
from testbench.loop import EventLoop
from virtio.memory import GuestMemory

MIB = 1 << 20


@dataclass(frozen=True)
class HostConfig:
    name: str
    mac: bytes
    memory_size: int = 8 * MIB
    device: NetDeviceConfig = field(default_factory=NetDeviceConfig)
    driver: DriverConfig = field(default_factory=DriverConfig)


class Host:
    """One emulated machine with a virtio-net device and our driver."""

    def __init__(self, loop: EventLoop, config: HostConfig, monitor: Monitor | None = None) -> None:
        self.loop = loop
        self.config = config
        self.name = config.name
        self.memory = GuestMemory.anonymous(config.memory_size)
        self.monitor = monitor if monitor is not None else Monitor(loop.clock)
        self.device = NetDevice(replace(config.device, mac=config.mac))
        self.core = DeviceCore(self.device, self.memory, self.monitor)
        self.mmio = MmioTransport(self.core)
        self.driver = VirtioNetDriver(self.mmio, self.memory, config.driver)
        self.core.on_interrupt = self._interrupt
        self.device.call_later = loop.call_later
        self.on_frames: Callable[[list[RxFrame]], None] | None = None
        self._irq_pending = False
        self.stack: Stack | None = None
        self.apps: list[Callable[[], bool]] = []
        """Run after every stack poll; True when they did something (then the stack is
        polled again at once, so their output goes out in the same step)."""
        self._stack_due: int | None = None
        self._stack_scheduled = False

    def attach(self, backend: Backend) -> None:
        self.device.attach(backend)

    def capture_into(self, capture: Capture, wire_port: Backend) -> None:
        """Record what the driver hands the device (each TX chain's frame with its
        virtio_net_hdr as a comment) and what this host's port puts on and takes off the
        wire, into one pcapng file."""
        self.device.tx_tap = lambda hdr, frame: capture.record_tx_chain(hdr, frame, self.loop.now)
        self.attach(capture.wire_backend(wire_port))

    def start(self) -> None:
        """Probe the device: reset, negotiate, set up queues, DRIVER_OK."""
        self.driver.probe()

    def _interrupt(self) -> None:
        # The interrupt line: latch it and let the loop run the handler, as a CPU would
        # take the interrupt after the device's write completes.
        if not self._irq_pending:
            self._irq_pending = True
            self.loop.call_soon(self._service_interrupt)

    def _service_interrupt(self) -> None:
        self._irq_pending = False
        self.driver.handle_interrupt()
        if self.stack is not None:
            self.poll_stack()
            return
        frames = self.driver.receive()
        if frames and self.on_frames is not None:
            self.on_frames(frames)

    # the stack on top of the driver
    def add_stack(self, config: StackConfig) -> Stack:
        """Put a TCP/IP stack on the driver (after :meth:`start`); from then on received
        frames go to the stack, which is polled on interrupts and at its timers."""
        self.stack = Stack(self.driver, config)
        self.kick()
        return self.stack

    def kick(self) -> None:
        """Poll the stack soon (an application queued data or closed a socket)."""
        if not self._stack_scheduled:
            self._stack_scheduled = True
            self.loop.call_soon(self._kicked)

    def _kicked(self) -> None:
        self._stack_scheduled = False
        self.poll_stack()

    def poll_stack(self) -> None:
        stack = self.stack
        assert stack is not None
        now = self.loop.now
        deadline = stack.poll(now)
        for _ in range(4):
            if not any([app() for app in self.apps]):
                break
            deadline = stack.poll(now)
        if deadline is not None and (self._stack_due is None or deadline < self._stack_due
                                     or self._stack_due <= now):
            self._stack_due = deadline
            self.loop.call_at(max(deadline, now), self._timer)

    def _timer(self) -> None:
        if self._stack_due is not None and self._stack_due <= self.loop.now:
            self._stack_due = None
            self.poll_stack()


@dataclass
class Pair:
    loop: EventLoop
    a: Host
    b: Host
    wire: Wire


def make_pair(
    loop: EventLoop | None = None,
    *,
    a: HostConfig | None = None,
    b: HostConfig | None = None,
    faults: FaultConfig | None = None,
    seed: int = 0,
    rate_bps: int = 10_000_000_000,
    latency_ns: int = 1_000,
    start: bool = True,
    capture: Capture | None = None,
) -> Pair:
    """Host A ↔ wire ↔ host B, both probed (unless ``start`` is False). With
    ``capture``, host A's side is recorded (see :meth:`Host.capture_into`)."""
    loop = loop or EventLoop()
    a_cfg = a or HostConfig("a", bytes.fromhex("525400000001"))
    b_cfg = b or HostConfig("b", bytes.fromhex("525400000002"))
    wire = Wire(
        loop.clock, rate_bps=rate_bps, latency_ns=latency_ns,
        faults=faults or FaultConfig(), seed=seed,
    )
    loop.add_source(wire)
    host_a, host_b = Host(loop, a_cfg), Host(loop, b_cfg)
    if capture is not None:
        host_a.capture_into(capture, wire.a)
    else:
        host_a.attach(wire.a)
    host_b.attach(wire.b)
    if start:
        host_a.start()
        host_b.start()
    return Pair(loop, host_a, host_b, wire)
