"""The test rig the bug reproductions run on: one emulated host (guest memory, device,
driver) whose device sends into a :class:`Sink` that keeps every frame put on the wire
and can hand frames to the device, optionally recorded into a pcapng file.

Everything runs on the virtual clock of one :class:`~testbench.loop.EventLoop`, each
run bounded by :data:`MAX_STEPS`; a run that would go beyond the bound is a stall the
reproduction reports, not a hang.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from driver.net import DEFAULT_WANTED, DriverConfig
from emulator.backends.base import Receiver
from emulator.backends.pcap import Capture, Direction, describe_net_hdr
from emulator.net.device import NetDeviceConfig
from emulator.profiles import Profile
from stack.device import RxFrame, TxMeta
from testbench.host import Host, HostConfig
from testbench.loop import EventLoop, LoopBoundExceeded
from testbench.packets import DST_MAC, OffloadPacket
from virtio.constants import GsoType, NetHdrFlag
from virtio.features import FeatureSet
from virtio.net_hdr import NetHdr

MAX_STEPS = 100_000
"""Bound on event-loop steps per run."""
MEMORY = 4 << 20


class Sink:
    """A backend: keeps what the device sends; :meth:`deliver` hands it a frame."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self._receiver: Receiver | None = None

    def send(self, frame: bytes) -> None:
        self.sent.append(bytes(frame))

    def set_receiver(self, receiver: Receiver | None) -> None:
        self._receiver = receiver

    def deliver(self, frame: bytes) -> bool:
        """A frame from the network to the device (False: the device dropped it)."""
        return self._receiver(frame) if self._receiver is not None else False


@dataclass
class Rig:
    """One host wired to a :class:`Sink`; frames its driver received in :attr:`got`."""

    loop: EventLoop
    host: Host
    sink: Sink
    capture: Capture | None = None
    got: list[RxFrame] = field(default_factory=list)
    stalled: bool = False
    """A run hit the step bound."""
    max_steps: int = MAX_STEPS
    """Bound on event-loop steps per run."""
    _errors_seen: int = 0

    def run(self) -> None:
        """Run the loop until idle, at most :data:`MAX_STEPS` steps; what the driver
        caught the device doing wrong goes to the monitor too (who="device")."""
        try:
            self.loop.run_until_idle(max_steps=self.max_steps)
        except LoopBoundExceeded:
            self.stalled = True
        self.sync_driver_errors()

    def sync_driver_errors(self) -> None:
        """Record the driver's new :class:`~virtio.errors.DriverProtocolError` s."""
        errors = self.host.driver.errors
        for err in errors[self._errors_seen:]:
            self.host.monitor.record_error(err, action="caught by the driver")
        self._errors_seen = len(errors)

    def send(self, packet: OffloadPacket) -> bool:
        """The driver transmits ``packet.frame`` with the offloads its header asks for
        (checksum, segmentation), then notifies; the loop runs."""
        ok = self.host.driver.transmit(packet.frame, meta_for(packet.hdr))
        self.host.driver.flush()
        self.run()
        return ok

    def receive(self, frame: bytes) -> bool:
        """A frame from the network; the loop runs (the driver takes it)."""
        ok = self.sink.deliver(frame)
        self.run()
        return ok

    def receive_offloaded(self, frame: bytes, hdr: NetHdr) -> bool:
        """A frame whose source left offload work undone (a tap with a vnet header);
        captured on the wire interface with its header as the comment."""
        if self.capture is not None:
            self.capture.writer.record(frame, self.loop.now, interface=Capture.WIRE,
                                       comment=describe_net_hdr(hdr),
                                       direction=Direction.INBOUND)
        ok = self.host.device.receive_offloaded(frame, hdr)
        self.run()
        return ok

    def close(self) -> None:
        if self.capture is not None:
            self.capture.close()


def meta_for(hdr: NetHdr) -> TxMeta | None:
    """The :class:`TxMeta` a stack hands the driver for a frame that needs ``hdr``."""
    csum = bool(hdr.flags & NetHdrFlag.NEEDS_CSUM)
    gso = hdr.gso_type != GsoType.NONE
    if not csum and not gso:
        return None
    return TxMeta(
        segment_size=hdr.gso_size if gso else None,
        csum_start=hdr.csum_start if csum else None,
        csum_offset=hdr.csum_offset if csum else None,
    )


def make_rig(
    *,
    profile: str | Profile = "strict",
    wanted: FeatureSet = DEFAULT_WANTED,
    quirks: frozenset[str] = frozenset(),
    pcap: Path | None = None,
    start: bool = True,
    driver: Callable[[DriverConfig], DriverConfig] | None = None,
    device: Callable[[NetDeviceConfig], NetDeviceConfig] | None = None,
    queue_size: int = 16,
    max_steps: int = MAX_STEPS,
) -> Rig:
    """A started rig (unless ``start`` is False: then :meth:`Host.start` is the
    caller's, to catch a failed negotiation). ``driver`` / ``device`` may adjust the
    configurations (``dataclasses.replace``)."""
    loop = EventLoop()
    dcfg = DriverConfig(wanted=wanted, queue_size=queue_size, quirks=quirks)
    ncfg = NetDeviceConfig(mac=DST_MAC, profile=profile)
    if driver is not None:
        dcfg = driver(dcfg)
    if device is not None:
        ncfg = device(ncfg)
    host = Host(loop, HostConfig("dut", DST_MAC, MEMORY, ncfg, dcfg))
    sink = Sink()
    capture = None
    if pcap is not None:
        capture = Capture(pcap, clock=loop.clock)
        host.capture_into(capture, sink)
    else:
        host.attach(sink)
    rig = Rig(loop, host, sink, capture, max_steps=max_steps)
    host.on_frames = rig.got.extend
    if start:
        host.start()
    return rig
