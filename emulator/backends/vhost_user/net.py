"""The net device served over vhost-user: the same :class:`~emulator.net.device.NetDevice`
and :class:`~emulator.core.DeviceCore` as the in-memory emulator, driven from vhost-user
ring state instead of MMIO registers.

vhost-user carries no device status (without the STATUS protocol feature, not offered):
QEMU keeps the virtio transport, the configuration space and the control virtqueue, and
hands the backend the data rings and the acked feature bits. So when every ring has
started, :class:`VhostUserNet` plays the transport's part of virtio-v1.2 §3.1.1 on the
core — reset, ACKNOWLEDGE | DRIVER, the acked features, FEATURES_OK, each queue's size
and (guest-physical) areas, QueueReady, the ring base, DRIVER_OK — and from then on the
device's own code runs: TX chains validated against the profile, checksums completed and
packets segmented, received frames checksum-verified and coalesced into mergeable or big
buffers, the monitor recording whatever the guest driver breaks. Kick eventfds become
:meth:`DeviceCore.notify` (§2.3 available buffer notifications); the device's used buffer
notifications become writes to the call eventfds of the rings whose used index moved;
DEVICE_NEEDS_RESET (§2.1.2) is reported on the err eventfds.

On the network side the device's backend is a :class:`HoldingPort`: frames from the
network wait (bounded) while the guest has no receive buffers posted, as QEMU's
``virtio_net_can_receive`` holds a tap's queue, instead of being dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from emulator.backends.base import Backend, FlowControl, Receiver
from emulator.backends.vhost_user.errors import RING_STATES, FrontendProtocolError
from emulator.backends.vhost_user.memory import MemoryTable
from emulator.backends.vhost_user.vring import Vring
from emulator.core import DeviceCore
from emulator.monitor import Monitor
from emulator.net.device import NetDevice, NetDeviceConfig
from emulator.profiles import get_profile
from emulator.virtqueue import DeviceQueue
from virtio.constants import AvailFlag, FeatureBit, Status
from virtio.errors import GuestMemoryError
from virtio.features import FeatureSet
from virtio.layouts import SplitRingGeometry
from virtio.memory import GuestMemory
from virtio.ring import vring_need_event

F = FeatureBit

DELEGATED = FeatureSet.of(
    F.VERSION_1, F.EVENT_IDX, F.INDIRECT_DESC, F.MTU,
    F.CSUM, F.HOST_TSO4, F.HOST_TSO6, F.HOST_ECN, F.HOST_UFO,
    F.GUEST_CSUM, F.GUEST_TSO4, F.GUEST_TSO6, F.GUEST_ECN, F.MRG_RXBUF,
)
"""Features a vhost-user net backend decides and this device implements: the bits of
QEMU's ``user_feature_bits`` (hw/net/vhost_net.c) that the guest sees only when the backend
offers them. The others the guest sees (MAC, STATUS, CTRL_VQ and its commands) come
from QEMU's own virtio-net device. The guest sees MTU only when QEMU's ``host_mtu`` is
set, and then with the value QEMU puts in its configuration space (a backend without the
NET_MTU protocol feature never hears it); MQ needs several rings (not built)."""

DEFAULT_OFFER = FeatureSet.of(
    F.VERSION_1, F.EVENT_IDX, F.INDIRECT_DESC,
    F.CSUM, F.HOST_TSO4, F.HOST_TSO6, F.HOST_ECN,
    F.GUEST_CSUM, F.GUEST_TSO4, F.GUEST_TSO6, F.MRG_RXBUF,
)
"""What the backend offers unless told otherwise."""

_PLACEHOLDER_SIZE = 0x2000
_SETUP_STATUS = (Status.ACKNOWLEDGE, Status.DRIVER)


def vhost_net_config(base: NetDeviceConfig | None = None,
                     offered: FeatureSet | None = None) -> NetDeviceConfig:
    """``base`` (default: the default device) offering ``offered``, checked against
    :data:`DELEGATED`. Without ``offered``: what ``base`` offers when its configuration or
    its profile names the features (e.g. the ``firecracker`` profile's set), restricted
    to :data:`DELEGATED`; else :data:`DEFAULT_OFFER`."""
    base = base or NetDeviceConfig()
    if offered is not None:
        offer = offered
    elif base.offered is not None or get_profile(base.profile).offered is not None:
        offer = base.features & DELEGATED
    else:
        offer = DEFAULT_OFFER
    extra = offer - DELEGATED
    if extra.bits:
        raise ValueError(f"a vhost-user net backend cannot offer {extra.names()} "
                         f"(it offers among {DELEGATED.names()})")
    if F.VERSION_1 not in offer:
        raise ValueError("QEMU's modern virtio-net-pci needs VERSION_1 from the backend")
    return replace(base, offered=offer, max_queue_pairs=1)


class HoldingPort:
    """The device's backend: frames to the network go straight to ``network``; frames
    from it are handed to the device while it has room (``ready``) and held, up to
    ``limit`` (then dropped and counted), while it has none — until :meth:`drain`."""

    def __init__(self, network: Backend, limit: int = 2048) -> None:
        self.network = network
        self.limit = limit
        self._held: deque[bytes] = deque()
        self._receiver: Receiver | None = None
        self._ready: Callable[[], bool] = lambda: True
        self.held_max = 0
        self.held_drops = 0
        self.passed = 0
        network.set_receiver(self._from_network)

    # Backend, towards the device
    def send(self, frame: bytes) -> None:
        self.network.send(frame)

    def set_receiver(self, receiver: Receiver | None) -> None:
        self._receiver = receiver

    def set_ready_check(self, ready: Callable[[], bool] | None) -> None:
        self._ready = ready if ready is not None else (lambda: True)

    def tx_ready(self) -> bool:
        net = self.network
        return net.tx_ready() if isinstance(net, FlowControl) else True

    def on_tx_ready(self, callback: Callable[[], None] | None) -> None:
        net = self.network
        if isinstance(net, FlowControl):
            net.on_tx_ready(callback)

    @property
    def held(self) -> int:
        return len(self._held)

    def _from_network(self, frame: bytes) -> bool:
        if not self._held and self._ready():
            return self._deliver(frame)
        if len(self._held) >= self.limit:
            self.held_drops += 1
            return False
        self._held.append(frame)
        self.held_max = max(self.held_max, len(self._held))
        return True

    def _deliver(self, frame: bytes) -> bool:
        receiver = self._receiver
        self.passed += 1
        return receiver(frame) if receiver is not None else False

    def drain(self) -> int:
        """Hand held frames to the device while it has room; how many."""
        n = 0
        for _ in range(len(self._held)):
            if not self._ready():
                break
            self._deliver(self._held.popleft())
            n += 1
        return n

    def clear(self) -> None:
        self._held.clear()


@dataclass
class RingInfo:
    """Where a started ring lives, for reports."""

    index: int
    size: int
    desc: int
    avail: int
    used: int
    base: int


class VhostUserNet:
    """A :class:`~emulator.backends.vhost_user.session.VhostDevice`: our net device on the
    frontend's rings, with ``network`` as its backend."""

    def __init__(self, config: NetDeviceConfig, network: Backend, *,
                 monitor: Monitor | None = None,
                 call_later: Callable[[int, Callable[[], object]], object] | None = None,
                 hold_limit: int = 2048) -> None:
        extra = config.features - DELEGATED
        if extra.bits:
            raise ValueError(f"a vhost-user net backend cannot offer {extra.names()}")
        self.config = config
        self.monitor = monitor if monitor is not None else Monitor()
        self.net = NetDevice(config)
        self.placeholder = GuestMemory.anonymous(_PLACEHOLDER_SIZE)
        self.core = DeviceCore(self.net, self.placeholder, self.monitor)
        self.core.on_interrupt = self._interrupt
        self.net.call_later = call_later
        self.port = HoldingPort(network, hold_limit)
        self.net.attach(self.port)
        self.port.set_ready_check(self._rx_ready)
        self.num_queues = self.net.num_queues
        self.queue_size_max = self.net.queue_size_max
        self.rings: list[Vring] = []
        self.ring_info: list[RingInfo] = []
        self._running = False
        self.starts = 0
        self.stops = 0
        self.negotiated = FeatureSet()
        self.err_signals = 0
        self.calls_suppressed = 0
        """Rings whose used index moved in a batch that notified another ring, skipped
        because their driver suppressed notifications."""

    @property
    def running(self) -> bool:
        return self._running

    def offered_features(self) -> int:
        return self.config.features.bits

    def _rx_ready(self) -> bool:
        if self._running and self.rings and not self.rings[NetDevice.RX_QUEUE].enabled:
            return False  # a disabled ring takes no new receive packets (Ring states)
        return self.net.rx_ready()

    def start(self, memory: GuestMemory, features: int, rings: list[Vring],
              table: MemoryTable) -> None:
        core = self.core
        core.reset()
        core.memory = memory
        status = 0
        for bit in _SETUP_STATUS:
            status |= bit
            core.set_status(status)
        core.write_driver_features(0, features & 0xFFFF_FFFF)
        core.write_driver_features(1, features >> 32)
        core.set_status(status | Status.FEATURES_OK)
        if not core.status & Status.FEATURES_OK:
            raise FrontendProtocolError(
                f"features {features:#x} refused by the device: "
                f"{self.monitor.records[-1] if self.monitor.records else '?'}",
                rule="vhost-user-features-refused", section=RING_STATES)
        self.ring_info = []
        for ring in rings:
            assert ring.addr is not None
            geo = SplitRingGeometry(ring.num)
            desc = table.user_to_guest(ring.addr.desc_user, geo.desc_table_size)
            avail = table.user_to_guest(ring.addr.avail_user, geo.avail_size)
            used = table.user_to_guest(ring.addr.used_user, geo.used_size)
            core.set_queue_size(ring.index, ring.num)
            core.set_queue_area(ring.index, "desc", desc)
            core.set_queue_area(ring.index, "driver", avail)
            core.set_queue_area(ring.index, "device", used)
            core.set_queue_ready(ring.index, True)
            q = core.queue(ring.index)
            if q is None:  # the core refused it and the monitor says why
                raise FrontendProtocolError(
                    f"ring {ring.index} cannot be used: "
                    f"{self.monitor.records[-1] if self.monitor.records else '?'}",
                    rule="vhost-user-ring-refused", section=RING_STATES)
            q.set_base(ring.base)
            ring.signalled_used = q.used_idx
            self.ring_info.append(RingInfo(ring.index, ring.num, desc, avail, used, ring.base))
        self.rings = rings
        self.negotiated = FeatureSet(features)
        self._running = True
        self.starts += 1
        core.set_status(status | Status.FEATURES_OK | Status.DRIVER_OK)

    def stop(self) -> list[int]:
        bases = []
        for ring in self.rings:
            q = self.core.queue(ring.index)
            bases.append(q.last_avail_idx if q is not None else ring.base)
        self._running = False
        self.stops += 1
        self.core.reset()
        self.core.memory = self.placeholder
        self.port.clear()
        return bases

    def set_memory(self, memory: GuestMemory) -> None:
        self.core.memory = memory

    def kick(self, index: int) -> None:
        self.core.notify(index)
        if index == NetDevice.RX_QUEUE:
            self.port.drain()

    def ring_enabled(self, index: int, enabled: bool) -> None:
        if enabled:
            self.kick(index)

    def kick_disabled(self, index: int) -> None:
        # vhost-user.rst "Ring states": a started but disabled ring is processed without
        # side effects — for a network device no new receive packets (they wait in the
        # holding port), and transmit packets processed and discarded.
        if index & 1:
            self.net.discard_tx(index)

    def poll(self) -> int:
        """Work that needs no event: frames held for the guest, when it has room now."""
        return self.port.drain() if self._running else 0

    def _interrupt(self) -> None:
        core = self.core
        if core.status & Status.DEVICE_NEEDS_RESET:
            for ring in self.rings:
                if ring.err is not None and ring.err.signal():
                    self.err_signals += 1
            return
        # The device decided that a queue needs a used buffer notification; the call goes
        # to each ring whose used index moved and whose driver wants one (§2.7.7), so a
        # ring with notifications suppressed gets no spurious call.
        for ring in self.rings:
            q = core.queue(ring.index)
            if q is None or q.used_idx == ring.signalled_used:
                continue
            old = ring.signalled_used if ring.signalled_used is not None else q.used_idx
            ring.signalled_used = q.used_idx
            if not _wants_call(q, core.memory, old):
                self.calls_suppressed += 1
                continue
            if ring.call is not None and ring.call.signal():
                ring.calls += 1


def _wants_call(q: DeviceQueue, memory: GuestMemory, old: int) -> bool:
    """Whether the driver wants a used buffer notification for ``q``'s entries since
    used index ``old`` (virtio-v1.2 §2.7.7: with EVENT_IDX, whether ``used_event`` was
    crossed; otherwise unless NO_INTERRUPT is set). An unreadable ring: yes (the device
    records the broken ring itself)."""
    try:
        if q.event_idx:
            used_event = memory.read_u16(q.avail_addr + q.geometry.used_event)
            return vring_need_event(used_event, q.used_idx, old)
        return not memory.read_u16(q.avail_addr) & AvailFlag.NO_INTERRUPT
    except GuestMemoryError:
        return True
