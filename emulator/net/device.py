"""The virtio network device (§5.1): up to ``max_queue_pairs`` receive/transmit queue
pairs and a control virtqueue (§5.1.2: receiveqN = 2(N-1), transmitqN = 2(N-1)+1,
controlq = 2 * max_virtqueue_pairs with MQ or RSS negotiated, else 2).

TX (§5.1.6.2): on a notification the device pops every available chain, checks the
virtio_net_hdr against the negotiated features and its profile, completes checksums and
segments (emulator/offload), hands the frames to its backend and returns the chain with
used length 0. RX (§5.1.6.4): a frame from the backend is checksum-verified and coalesced
as the negotiated GUEST_ features allow, then written after its header into one receive
buffer, or with MRG_RXBUF into as many as it needs. Header rules the driver breaks are
recorded in the monitor and counted as drops; ring rules it breaks put the device in
DEVICE_NEEDS_RESET. Before a frame goes to a receive queue it passes the receive
filter (§5.1.6.5.1-3) and the steering of emulator/net/steering.py picks the queue.
Control commands (§5.1.6.5) are executed by emulator/net/control.py; this module moves
them through the control virtqueue and applies what changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from emulator.backends.base import Backend, FlowControl, OffloadSource, ReceivePaced
from emulator.core import DeviceCore
from emulator.monitor import DEVICE, DRIVER
from emulator.net.control import CommandResult, ControlLimits, ControlState
from emulator.net.counters import NetCounters
from emulator.net.notify_coalesce import NotifyCoalescer
from emulator.net.rss import RSS_KEY_SIZE_MAX, RSS_TABLE_LENGTH_MAX, SUPPORTED_HASH_TYPES
from emulator.net.steering import Steering
from emulator.offload import (
    CoalesceConfig,
    Coalesced,
    Coalescer,
    Note,
    OffloadError,
    complete_checksum,
    segment,
    segment_packet,
)
from emulator.offload.rules import rule as offload_rule
from emulator.profiles import STRICT, Action, Profile, get_profile
from emulator.virtqueue import Chain, ChainError, DeviceQueue
from stack.wire.ethernet import HEADER_LEN, VLAN_TAG_LEN, link_header_len
from virtio import spec
from virtio.constants import (
    MAX_QUEUE_SIZE,
    DeviceId,
    FeatureBit,
    GsoType,
    InterruptStatus,
    NetHdrFlag,
    NetStatus,
)
from virtio.ctrl import CTRL_HDR_SIZE, Ack, CtrlClass, MqCmd
from virtio.errors import DeviceProtocolError, GuestMemoryError, RingError
from virtio.features import (
    BIG_RX_FEATURES,
    RX_BIG_PACKET,
    RX_PACKET,
    FeatureSet,
    Level,
    Violation,
    net_hdr_size,
)
from virtio.layouts import NET_CONFIG
from virtio.memory import GuestMemory
from virtio.net_hdr import NetHdr

F = FeatureBit
_RX_PLAIN = NetHdr()

IMPLEMENTED = FeatureSet.of(
    F.VERSION_1, F.MAC, F.MTU, F.STATUS, F.EVENT_IDX, F.INDIRECT_DESC,
    F.CSUM, F.HOST_TSO4, F.HOST_TSO6, F.HOST_ECN, F.HOST_UFO, F.HOST_USO,
    F.GUEST_CSUM, F.GUEST_TSO4, F.GUEST_TSO6, F.GUEST_ECN, F.GUEST_USO4, F.GUEST_USO6,
    F.RSC_EXT, F.MRG_RXBUF,
    F.CTRL_VQ, F.CTRL_RX, F.CTRL_RX_EXTRA, F.CTRL_VLAN, F.CTRL_MAC_ADDR, F.GUEST_ANNOUNCE,
    F.CTRL_GUEST_OFFLOADS, F.MQ, F.RSS, F.HASH_REPORT, F.NOTF_COAL, F.VQ_NOTF_COAL,
    F.GUEST_HDRLEN,
)
"""What this device can do (§5.1.3): transmit checksum offload and segmentation (with
GUEST_HDRLEN holding the driver to an exact hdr_len); on
receive, checksum verification (DATA_VALID), TCP and UDP coalescing into big or
mergeable buffers with RSC_EXT information; the control virtqueue with receive filtering,
MAC and VLAN tables, announcements, guest offload switching and notification coalescing;
multiqueue with automatic steering or RSS, and hash reports."""

MAX_NUM_BUFFERS = 0xFFFF
"""num_buffers is a le16 (§5.1.6)."""
RX_OFFLOADS = FeatureSet.of(
    F.GUEST_CSUM, F.GUEST_TSO4, F.GUEST_TSO6, F.GUEST_ECN, F.GUEST_USO4, F.GUEST_USO6,
)
MULTIQUEUE = FeatureSet.of(F.MQ, F.RSS)
BIG_RX = FeatureSet.of(F.GUEST_TSO4, F.GUEST_TSO6, F.GUEST_USO4, F.GUEST_USO6)
"""Either puts the control queue after all ``max_virtqueue_pairs`` pairs (§5.1.2)."""
MAX_QUEUE_PAIRS = 0x8000
"""VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX (§5.1.6.5.6)."""
GRO_FLUSH_NS = 100_000
"""How long received segments may be held for coalescing before they go to the driver
(virtual ns; Linux's ``gro_flush_timeout`` plays this role): long enough for a 64 KB
burst at 10 Gb/s (≈ 53 µs)."""


GSO_FEATURE: dict[int, FeatureBit] = {
    GsoType.TCPV4: F.HOST_TSO4,
    GsoType.TCPV6: F.HOST_TSO6,
    GsoType.UDP: F.HOST_UFO,
    GsoType.UDP_L4: F.HOST_USO,
}
"""The feature a driver needs before it may send each gso_type (§5.1.6.2.1)."""

SPEED_UNKNOWN = 0xFFFF_FFFF
DUPLEX_UNKNOWN = 0xFF
MIN_MTU = 68
"""§5.1.4.1: mtu between 68 and 65535 when MTU is offered."""
DEFAULT_MTU = 1500
"""The MTU a driver assumes without MTU negotiated (§5.1.6.3.1 sizes its buffers)."""
_TX_IGNORED_FLAGS = int(NetHdrFlag.DATA_VALID | NetHdrFlag.RSC_INFO)
_FATAL_RING_RULES = frozenset({"avail-idx-jump", "ring-out-of-memory", "head-out-of-range"})
"""Ring errors after which no index can be trusted: even a tolerant device stops."""


@dataclass(frozen=True)
class NetDeviceConfig:
    """How a :class:`NetDevice` is built."""

    mac: bytes = bytes.fromhex("525400000001")
    mtu: int = 1500
    queue_size_max: int = 256
    offered: FeatureSet | None = None
    """None: :data:`IMPLEMENTED`."""
    link_up: bool = True
    gro_flush_ns: int = GRO_FLUSH_NS
    """Receive coalescing window (virtual ns) when GUEST_TSO4/6 are negotiated."""
    profile: str | Profile = "strict"
    """Device personality for what the spec leaves open (emulator/profiles.py): a
    name ("strict", "linux", "qemu", "firecracker"...) or a :class:`Profile`."""
    max_queue_pairs: int = 1
    """max_virtqueue_pairs (§5.1.4): receive/transmit pairs the device has (MQ / RSS)."""
    rx_recheck: bool = True
    """When the receive ring runs dry the device enables the driver's refill notification
    and then looks at the ring once more (§2.7.10; vhost-net ``handle_rx``). False is
    the naive order — enable and give up — under which a refill that lands between the
    device's last look and the enable is never noticed: the queue stalls (kept for
    reproductions)."""

    def __post_init__(self) -> None:
        get_profile(self.profile)  # ValueError naming the known profiles
        if not 1 <= self.max_queue_pairs <= MAX_QUEUE_PAIRS:
            raise ValueError(
                f"max_queue_pairs {self.max_queue_pairs} is outside 1..{MAX_QUEUE_PAIRS} "
                f"({spec.NET_MQ_STEERING})"
            )
        if len(self.mac) != 6:
            raise ValueError(f"a MAC address is 6 bytes, not {len(self.mac)}")
        if not MIN_MTU <= self.mtu <= 0xFFFF:
            raise ValueError(f"mtu {self.mtu} is outside [{MIN_MTU}, 65535] (§5.1.4.1)")
        qmax = self.queue_size_max
        if qmax <= 0 or qmax & (qmax - 1) or qmax > MAX_QUEUE_SIZE:
            raise ValueError(f"queue_size_max {qmax} is not a power of two <= {MAX_QUEUE_SIZE}")
        offered = self.features
        extra = offered - IMPLEMENTED
        if extra.bits:
            raise ValueError(f"the device cannot offer {extra.names()} (not implemented)")
        if self.max_queue_pairs > 1 and not offered & MULTIQUEUE:
            raise ValueError(f"{self.max_queue_pairs} queue pairs need MQ or RSS offered")
        broken = offered.dependency_violations(Level.MUST)
        if broken:
            raise ValueError(
                "the device must not offer a feature without its requirements: "
                + "; ".join(map(str, broken))
            )

    @property
    def features(self) -> FeatureSet:
        """``offered``, else the profile's offered features, else :data:`IMPLEMENTED`."""
        if self.offered is not None:
            return self.offered
        offered = get_profile(self.profile).offered
        return IMPLEMENTED if offered is None else offered


class NetDevice:
    """A :class:`~emulator.core.DeviceFunction` for the network device (§5.1)."""

    RX_QUEUE = 0
    TX_QUEUE = 1
    """receiveq1 and transmitq1."""

    def __init__(self, config: NetDeviceConfig | None = None) -> None:
        self.config = config if config is not None else NetDeviceConfig()
        self.counters = NetCounters()
        self.core: DeviceCore | None = None
        self.backend: Backend | None = None
        self.device_id: int = DeviceId.NET
        pairs = self.config.max_queue_pairs
        self.num_queues: int = 2 * pairs + (1 if F.CTRL_VQ in self.config.features else 0)
        self.queue_size_max: int = self.config.queue_size_max
        self.link_up = self.config.link_up
        self.profile: Profile = get_profile(self.config.profile)
        self.call_later: Callable[[int, Callable[[], object]], object] | None = None
        """Timer service (virtual ns) for the receive coalescing window and notification
        coalescing; without one, each received frame is flushed at once (no coalescing
        across frames) and every used buffer batch is notified at once."""
        self._gro: list[Coalescer | None] = [None] * pairs
        self._gro_timer = False
        self.tx_tap: Callable[[NetHdr, bytes], None] | None = None
        """Called with each TX chain's header and frame as the driver handed them over,
        before validation or offloads (a capture of what the driver sent)."""
        self._rx_kick_wanted = [False] * pairs
        """Notifications were enabled because the ring ran dry; off at the next pop."""
        self._rx_waiting = [False] * pairs
        """The ring ran dry: wait for the refill notification before looking again."""
        self.control: ControlState | None = None
        """Control virtqueue state (filters, MAC, queue pairs, RSS, offloads); set at
        DRIVER_OK when CTRL_VQ is negotiated."""
        self.steering = Steering()
        self.mac = self.config.mac
        self.announce_pending = False
        self._guest_offloads = FeatureSet()
        self._rx_mtu_limit = False
        """MTU negotiated: received frames are limited by the configured MTU (§5.1.4.1)."""
        self._notify = NotifyCoalescer(self._later, self._deferred_notify)
        self._tx_index = self.TX_QUEUE
        """The transmit queue being processed (for monitor records)."""
        self._tx_paused: set[int] = set()
        """Transmit queues waiting for the backend to drain."""
        self._tx_frame = b""
        """The frame of the transmit chain being processed (for monitor records)."""
        self._event_idx_flags: set[int] = set()
        """Queues whose avail flags were seen non-zero with EVENT_IDX (recorded once)."""

    def _later(self, delay: int, fn: Callable[[], object]) -> object:
        assert self.call_later is not None
        return self.call_later(delay, fn)

    # DeviceFunction
    def bind(self, core: DeviceCore) -> None:
        self.core = core

    def offered_features(self) -> FeatureSet:
        return self.config.features

    def check_features(self, accepted: FeatureSet) -> list[Violation]:
        return []

    def config_bytes(self) -> bytes:
        """virtio_net_config (§5.1.4): ``status`` holds LINK_UP when STATUS is offered
        and the link is up, ANNOUNCE while an announcement waits for its ack;
        ``max_virtqueue_pairs`` the configured pairs; ``mtu`` when MTU is offered; speed
        and duplex unknown (SPEED_DUPLEX is not offered); the RSS limits and supported
        hash types when RSS or HASH_REPORT is offered (§5.1.4.1)."""
        offered = self.config.features
        status = 0
        if F.STATUS in offered:
            status = int(NetStatus.LINK_UP) if self.link_up else 0
            if self.announce_pending:
                status |= NetStatus.ANNOUNCE
        mtu = self.config.mtu if F.MTU in offered else 0
        key, table, types = 0, 0, 0
        if offered & FeatureSet.of(F.RSS, F.HASH_REPORT):
            key, types = RSS_KEY_SIZE_MAX, int(SUPPORTED_HASH_TYPES)
            table = RSS_TABLE_LENGTH_MAX if F.RSS in offered else 0
        return NET_CONFIG.fmt.pack(
            *self.mac, status, self.config.max_queue_pairs, mtu, SPEED_UNKNOWN,
            DUPLEX_UNKNOWN, key, table, types,
        )

    def write_config(self, offset: int, data: bytes) -> None:
        self._violation("config-write", spec.NET_CONFIG_DRIVER,
                        f"write of {data.hex()} at configuration offset {offset:#x}: every "
                        "field is read-only", action="ignored")

    def activate(self, core: DeviceCore) -> None:
        neg = self.negotiated
        pairs = self.config.max_queue_pairs
        self._rx_kick_wanted = [False] * pairs
        self._rx_waiting = [False] * pairs
        self._guest_offloads = neg & RX_OFFLOADS
        self._rx_mtu_limit = F.MTU in neg
        self._build_gro()
        self.steering.reset()
        self._notify.reset()
        self.control = None
        if F.CTRL_VQ in neg:
            self.control = ControlState(self.mac, ControlLimits(
                max_pairs=pairs, rss_max_key_size=RSS_KEY_SIZE_MAX,
                rss_max_indirection_table_length=RSS_TABLE_LENGTH_MAX,
                supported_hash_types=SUPPORTED_HASH_TYPES,
            ), neg, vq_enabled=lambda vq: core.queue(vq) is not None)
        for pair in range(pairs):
            rx = core.queue(2 * pair)
            if rx is not None:
                rx.disable_notifications(core.memory)  # re-enabled when RX runs dry
        for pair in range(pairs):
            self._process_tx(2 * pair + 1)

    def _build_gro(self) -> None:
        """One coalescer per receive queue (as one GRO context per NAPI instance), of
        the kinds the driver accepted and has not switched off (§5.1.6.4.1,
        §5.1.6.5.8)."""
        on = self._guest_offloads
        neg = self.negotiated
        gro: Coalescer | None = None
        if on:
            csum = F.GUEST_CSUM in on
            gro = Coalescer(CoalesceConfig(
                tcp4=csum and F.GUEST_TSO4 in on, tcp6=csum and F.GUEST_TSO6 in on,
                ecn=csum and F.GUEST_ECN in on and bool(on & FeatureSet.of(F.GUEST_TSO4, F.GUEST_TSO6)),
                uso4=csum and F.GUEST_USO4 in on, uso6=csum and F.GUEST_USO6 in on,
                rsc_info=F.RSC_EXT in neg, guest_csum=csum,
            ))
        self._gro = [gro if gro is None else Coalescer(gro.config)
                     for _ in range(self.config.max_queue_pairs)]

    def queue_notify(self, index: int) -> None:
        if index == self.ctrl_queue:
            self.counters.ctrl_notifications += 1
            self._process_ctrl()
        elif index & 1:
            self.counters.tx_notifications += 1
            self._process_tx(index)
        else:
            self.counters.rx_notifications += 1
            pair = index // 2
            if pair < len(self._rx_waiting):
                self._rx_waiting[pair] = False  # the refill: look at the ring again

    def interrupt_raised(self, bits: InterruptStatus) -> None:
        if bits & InterruptStatus.USED_BUFFER:
            self.counters.interrupts += 1
        if bits & InterruptStatus.CONFIG_CHANGE:
            self.counters.config_interrupts += 1

    def reset(self) -> None:
        """The counters and the link state outlive a reset; filters, MAC, steering and
        offload switches go back to their defaults."""
        pairs = self.config.max_queue_pairs
        self._rx_kick_wanted = [False] * pairs
        self._rx_waiting = [False] * pairs
        self._gro = [None] * pairs
        self._rx_mtu_limit = False
        self.control = None
        self.steering.reset()
        self._notify.reset()
        self.mac = self.config.mac
        self.announce_pending = False
        self._tx_paused.clear()
        self._event_idx_flags.clear()

    # outside world
    def attach(self, backend: Backend) -> None:
        self.backend = backend
        backend.set_receiver(self.receive)
        if isinstance(backend, OffloadSource):
            backend.set_offload_receiver(self.receive_offloaded)
        if isinstance(backend, ReceivePaced):
            backend.set_ready_check(self.rx_ready)

    def rx_ready(self) -> bool:
        """Whether a frame from the backend can be placed now: live, no receive queue
        waiting for a refill, and every active receive queue holding buffers for the
        largest packet the driver accepts (QEMU ``virtio_net_has_buffers``) — one buffer,
        or with MRG_RXBUF enough 1526-byte buffers for 64 KiB when GUEST_TSO/USO is on."""
        core = self.core
        if core is None or not core.live:
            return True  # the frame is dropped and counted as before
        if any(self._rx_waiting):
            return False
        mergeable = F.MRG_RXBUF in self.negotiated
        need = 1
        if mergeable:
            need = 44 if self._guest_offloads & BIG_RX else 1
        pairs = self.steering.pairs if self.steering.mode != "single" else 1
        if self.steering.mode == "rss":
            pairs = self.config.max_queue_pairs
        memory = core.memory
        try:
            for pair in range(min(pairs, self.config.max_queue_pairs)):
                q = core.queue(2 * pair)
                if q is not None and q.pending(memory) < need:
                    return False
        except DeviceProtocolError:
            return True  # a broken ring: the receive path records it
        return True

    @property
    def negotiated(self) -> FeatureSet:
        return self.core.driver_features if self.core is not None else FeatureSet()

    @property
    def ctrl_queue(self) -> int | None:
        """Index of the control virtqueue for the negotiated features (§5.1.2)."""
        neg = self.negotiated
        if F.CTRL_VQ not in neg:
            return None
        return 2 * self.config.max_queue_pairs if neg & MULTIQUEUE else 2

    @property
    def guest_offloads(self) -> FeatureSet:
        """Receive offloads in force: the negotiated GUEST_ features minus what
        CTRL_GUEST_OFFLOADS switched off (§5.1.6.5.8)."""
        return self._guest_offloads

    def header_size(self) -> int:
        return net_hdr_size(self.negotiated)

    def set_link(self, up: bool) -> None:
        """Link state (config ``status`` LINK_UP). With STATUS negotiated the driver gets
        a configuration change notification; with STATUS only offered the generation
        still moves."""
        if up == self.link_up:
            return
        self.link_up = up
        if self.core is None or F.STATUS not in self.config.features:
            return
        self.core.config_changed(notify=F.STATUS in self.negotiated)

    def announce(self) -> bool:
        """Ask the driver to announce itself (e.g. after a migration): with
        GUEST_ANNOUNCE negotiated, set ANNOUNCE in ``status`` and send a configuration
        change notification; the driver sends its gratuitous packets and acks with
        VIRTIO_NET_CTRL_ANNOUNCE_ACK, which clears the bit (§5.1.6.5.4). False when the
        driver did not negotiate GUEST_ANNOUNCE."""
        core = self.core
        if core is None or F.GUEST_ANNOUNCE not in self.negotiated:
            return False
        self.announce_pending = True
        self.counters.announces += 1
        core.config_changed(notify=True)
        return True

    # helpers
    def _violation(
        self, rule: str, section: spec.Section | str, detail: str, *, action: str,
        queue: int | None = None, descriptor: int | None = None,
        packet: bytes | None = None, who: str = DRIVER,
    ) -> None:
        if self.core is not None:
            self.core.monitor.record(who, rule, str(section), detail, queue=queue,
                                     descriptor=descriptor, action=action, packet=packet)

    def _signal(self, core: DeviceCore, q: DeviceQueue, packets: int = 1) -> None:
        """After a batch of used buffers: interrupt unless notification coalescing holds
        it back (NOTF_COAL) or the driver suppressed it."""
        if self._notify.packets(q.index, packets):
            self._notify_used(core, q)

    def _notify_used(self, core: DeviceCore, q: DeviceQueue) -> None:
        if q.event_idx and q.index not in self._event_idx_flags \
                and core.memory.read_u16(q.avail_addr):
            self._event_idx_flags.add(q.index)  # §2.7.7.1: flags MUST be 0 with EVENT_IDX
            self._violation("avail-flags-with-event-idx", spec.USED_NOTIF_SUPPRESSION,
                            f"avail.flags {core.memory.read_u16(q.avail_addr):#x} with "
                            "EVENT_IDX negotiated (must be 0; used_event decides)",
                            action="ignored", queue=q.index)
        if q.needs_interrupt(core.memory):
            core.raise_interrupt(InterruptStatus.USED_BUFFER)
        else:
            self.counters.interrupts_suppressed += 1

    def _deferred_notify(self, index: int) -> None:
        core = self.core
        q = core.queue(index) if core is not None and core.live else None
        if core is not None and q is not None:
            self._notify_used(core, q)

    def _max_frame(self, frame: bytes) -> tuple[int, bool]:
        """Largest frame this device passes and whether the limit is the negotiated
        MTU (§5.1.4.1). Without MTU negotiated the device still has its own limit:
        mtu plus the Ethernet header and one VLAN tag."""
        if F.MTU in self.negotiated:
            return self.config.mtu + link_header_len(frame), True
        return self.config.mtu + HEADER_LEN + VLAN_TAG_LEN, False

    # control virtqueue, §5.1.6.5
    def _process_ctrl(self) -> None:
        core, index = self.core, self.ctrl_queue
        if core is None or index is None or not core.live:
            return
        q = core.queue(index)
        if q is None:
            return
        memory = core.memory
        done = 0
        try:
            while core.live and (chain := q.pop(memory)) is not None:
                written = self._control_command(core, chain, index)
                q.push_used(memory, chain.head, written)
                done += 1
        except DeviceProtocolError as err:
            core.fail(err, queue=index)
            return
        except GuestMemoryError as err:
            core.fail(RingError(str(err), rule="ring-out-of-memory",
                                section=spec.SPLIT_VIRTQUEUES), queue=index)
            return
        if done:
            self._notify_used(core, q)

    def _control_command(self, core: DeviceCore, chain: Chain, index: int) -> int:
        """One command (§5.1.6.5: class, command, data; then the device-written ack);
        returns the bytes written."""
        counters = self.counters
        counters.ctrl_commands += 1
        if chain.writable_len < 1:
            counters.ctrl_errors += 1
            self._violation("ctrl-no-ack-buffer", spec.NET_CTRL,
                            "the command has no device-writable byte for the ack",
                            action="ignored", queue=index, descriptor=chain.head)
            return 0
        data = chain.read(core.memory)
        control = self.control
        if control is None:  # CTRL_VQ negotiated is the only way here
            return 0
        if len(data) < CTRL_HDR_SIZE:
            result = CommandResult(False, "ctrl-malformed", spec.NET_CTRL,
                                   f"{len(data)}-byte command: class and command need 2")
        else:
            cls, cmd = data[0], data[1]
            if cls in (CtrlClass.MQ, CtrlClass.GUEST_OFFLOADS):
                self._flush_rx()  # steering or offloads change: nothing held may cross
            result = control.execute(cls, cmd, data[CTRL_HDR_SIZE:])
            if result.ok:
                self._apply(core, control, result, cls, cmd)
        if result.ok:
            # struct virtio_net_ctrl: the ack, then any command-specific-result
            # (NOTF_COAL VQ_GET; virtio-v1.3 §5.1.6.5, Linux virtnet_send_command_reply)
            reply = bytes((Ack.OK,)) + result.response
            if chain.writable_len < len(reply):
                reply = bytes((Ack.ERR,))
                result = CommandResult(
                    False, "ctrl-result-buffer-short", spec.NET_NOTF_COAL,
                    f"{chain.writable_len} device-writable bytes for the ack and a "
                    f"{len(result.response)}-byte result")
            else:
                chain.write(core.memory, reply)
                return len(reply)
        counters.ctrl_errors += 1
        self._violation(result.rule or "ctrl-error", result.section or spec.NET_CTRL,
                        result.detail, action="refused", queue=index,
                        descriptor=chain.head)
        chain.write(core.memory, bytes((Ack.ERR,)))
        return 1

    def _apply(
        self, core: DeviceCore, control: ControlState, result: CommandResult, cls: int,
        cmd: int,
    ) -> None:
        """What an acknowledged command changes outside the control state."""
        changed = result.changed
        if "mac" in changed and control.mac != self.mac:
            self.mac = control.mac
            core.config_changed(notify=False)  # §5.1.6.5.2: reflected in config mac
        if "announce" in changed and self.announce_pending:
            self.announce_pending = False
            core.config_changed(notify=False)
        if "offloads" in changed:
            self._guest_offloads = control.guest_offloads & RX_OFFLOADS
            self._build_gro()
        if cls == CtrlClass.MQ:
            if cmd == MqCmd.RSS_CONFIG and control.rss is not None:
                rss = control.rss
                self.steering.set_rss(rss.hash_types, rss.key, rss.indirection_table,
                                      rss.unclassified_queue)
            elif cmd == MqCmd.VQ_PAIRS_SET:
                self.steering.set_pairs(control.queue_pairs)
            self.steering.set_hash(*control.hash_params())  # one source of truth
        if "notf_coal" in changed:
            due: list[int] = []
            for q_index in range(2 * self.config.max_queue_pairs):
                coal = control.coal_for(q_index)  # VQ_SET's, else TX_SET / RX_SET's
                due += self._notify.configure([q_index], coal.max_packets, coal.max_usecs)
            for q_index in due:
                self._deferred_notify(q_index)

    # transmit, §5.1.6.2
    def _process_tx(self, index: int) -> None:
        core = self.core
        if core is None or not core.live:
            return
        q = core.queue(index)
        if q is None:
            return
        pair = index // 2
        if pair >= self._tx_pairs() and q.pending(core.memory):
            self._violation("tx-queue-not-enabled", spec.NET_MQ_STEERING_DRIVER,
                            f"transmitq{pair + 1} used while {self._tx_pairs()} pair(s) "
                            "are enabled", action="allowed", queue=index)
        self._tx_index = index
        self._tx_paused.discard(index)
        memory = core.memory
        used = 0
        backend: object = self.backend
        flow = backend if isinstance(backend, FlowControl) else None
        pop = self._tolerant_pop if self.profile.skip_bad_chains else DeviceQueue.pop
        while core.live:
            q.disable_notifications(memory)
            while (flow is None or flow.tx_ready()) and (chain := pop(q, memory)) is not None:
                self._transmit(core, chain)
                q.push_used(memory, chain.head, 0)
                used += 1
            if flow is not None and not flow.tx_ready() and q.pending(memory):
                # The backend is full: leave the rest in the ring (notifications off)
                # and go on when it drains, as vhost-net does on a full tap socket.
                self._tx_paused.add(index)
                self.counters.tx_backpressure += 1
                flow.on_tx_ready(self._resume_tx)
                break
            # Re-enable, then re-check: a chain made available after the last pop and
            # before notifications were on again would otherwise wait forever.
            q.enable_notifications(memory)
            if q.pending(memory) == 0:
                break
        if used:
            self._signal(core, q, used)

    def discard_tx(self, index: int) -> int:
        """Give back every available chain of transmit queue ``index`` unread, used.len 0,
        and send nothing: what a vhost-user back-end does with a ring that is started
        but disabled (vhost-user.rst "Ring states": process and discard TX packets, no
        side effects). Counted as ``tx-ring-disabled`` drops; returns how many."""
        core = self.core
        if core is None or not core.live or not index & 1 or index == self.ctrl_queue:
            return 0
        q = core.queue(index)
        if q is None:
            return 0
        memory = core.memory
        discarded = 0
        for _ in range(q.pending(memory)):  # bounded: at most the queue size (pending checks)
            q.discard(memory)
            self.counters.drop("tx-ring-disabled")
            discarded += 1
        if discarded:
            self._signal(core, q, discarded)
        return discarded

    def _tolerant_pop(self, q: DeviceQueue, memory: GuestMemory) -> Chain | None:
        """``q.pop`` for a profile that skips chains it cannot walk (Firecracker): such a
        chain is recorded, counted as a drop and returned with used.len 0; an index the
        device cannot trust still raises (DEVICE_NEEDS_RESET)."""
        for _ in range(q.size + 1):
            try:
                return q.pop(memory)
            except ChainError as err:
                if err.rule in _FATAL_RING_RULES:
                    raise
                self.counters.drop(err.rule)
                if self.core is not None:
                    self.core.monitor.record_error(err, queue=q.index,
                                                   descriptor=err.descriptor, action="skipped")
                q.discard(memory)
                if self.core is not None:
                    self._signal(self.core, q)
        return None

    def _resume_tx(self) -> None:
        """The backend has room again: carry on with the paused transmit queues."""
        for index in sorted(self._tx_paused):
            self._process_tx(index)

    def _tx_pairs(self) -> int:
        """Transmit queues the driver may use now (§5.1.6.5.6.1, RSS max_tx_vq)."""
        control = self.control
        if control is None:
            return 1
        if self.steering.mode == "rss" and control.rss is not None:
            return max(1, control.rss.max_tx_vq)
        return control.queue_pairs

    def _tx_drop(self, reason: str, chain: Chain, detail: str = "",
                 section: spec.Section | None = None) -> None:
        self.counters.drop(reason)
        if section is not None:
            self._violation(reason, section, detail, action="dropped",
                            queue=self._tx_index, descriptor=chain.head,
                            packet=self._tx_frame)

    def _transmit(self, core: DeviceCore, chain: Chain) -> None:
        counters = self.counters
        counters.tx_chains += 1
        counters.tx_descriptors += chain.descriptors
        memory = core.memory
        negotiated = self.negotiated
        hsize = net_hdr_size(negotiated)
        total = chain.readable_len
        if total < hsize:
            self._tx_drop("tx-header-truncated", chain,
                          f"TX chain holds {total} readable bytes, less than the "
                          f"{hsize}-byte virtio_net_hdr", spec.NET_TX_DRIVER)
            return
        data = chain.read(memory)
        hdr = NetHdr.parse(data, hsize)
        frame = data[hsize:]
        self._tx_frame = frame
        if self.tx_tap is not None:
            self.tx_tap(hdr, frame)
        if not self._tx_features_ok(hdr, chain):
            return
        if hdr.ecn and hdr.flags & NetHdrFlag.NEEDS_CSUM and hdr.csum_start + 14 <= len(frame) \
                and not frame[hdr.csum_start + 13] & 0x80:  # TCP flags: CWR
            self._violation("tx-ecn-without-cwr", spec.NET_TX_DRIVER,
                            "the ECN gso bit on a packet without CWR (the bit says the "
                            "first segment carries CWR)", action="allowed",
                            queue=self._tx_index, descriptor=chain.head, packet=frame)
        if hdr.flags & _TX_IGNORED_FLAGS:
            self._violation("tx-hdr-flags", spec.NET_TX_DRIVER,
                            f"flags {hdr.flags:#x}: DATA_VALID / RSC_INFO are RX-only; "
                            "ignored", action="ignored",
                            queue=self._tx_index, descriptor=chain.head)
        if hdr.num_buffers != 0:
            self._violation("tx-num-buffers", spec.NET_TX_DRIVER,
                            f"num_buffers {hdr.num_buffers} on TX (the driver MUST set 0)",
                            action="ignored", queue=self._tx_index, descriptor=chain.head)
        frame_len = total - hsize
        if frame_len < HEADER_LEN:
            counters.drop("tx-runt")
            return
        gso = hdr.gso_type != GsoType.NONE
        if not gso:
            limit, by_mtu = self._max_frame(frame)
            if frame_len > limit:
                if by_mtu:
                    self._tx_drop("tx-exceeds-mtu", chain,
                                  f"{frame_len}-byte frame exceeds mtu {self.config.mtu} plus "
                                  f"the Ethernet header ({limit})", spec.NET_CONFIG_DRIVER)
                else:
                    counters.drop("tx-oversize")
                return
        if not self.link_up:
            counters.drop("tx-link-down")
            return
        if self.backend is None:
            counters.drop("tx-no-backend")
            return
        try:
            result = segment_packet(
                frame, hdr, self.profile, hdr_size=hsize,
                hdrlen_exact=F.GUEST_HDRLEN in negotiated,
            )
        except OffloadError as err:
            self._record_notes(err.notes, chain)
            counters.drop(err.rule)
            core.monitor.record_error(
                err, queue=self._tx_index, descriptor=chain.head,
                action="refused" if err.stage == "reject" else "dropped", packet=frame,
            )
            return
        self._record_notes(result.notes, chain)
        if gso and F.MTU in negotiated and not self._segments_fit(result.frames, hdr, chain):
            return
        for out in result.frames:
            self.backend.send(out)
            counters.tx_frames += 1
            counters.tx_bytes += len(out)
        pair = self._tx_index // 2
        counters.tx_queue_packets[pair] = counters.tx_queue_packets.get(pair, 0) + 1
        self.steering.note_tx(frame, pair)
        counters.tx_packets += 1
        if result.seed is not None:
            counters.tx_seeds[result.seed] = counters.tx_seeds.get(result.seed, 0) + 1
        if result.path == "segmented":
            counters.tx_gso_packets += 1
            if hdr.ecn:
                counters.tx_gso_ecn_packets += 1
        if hdr.flags & NetHdrFlag.NEEDS_CSUM:
            counters.tx_csum_offloads += 1

    def _tx_features_ok(self, hdr: NetHdr, chain: Chain) -> bool:
        """§5.1.6.2.1: a gso_type only with its HOST_ feature, the ECN bit only with
        HOST_ECN, NEEDS_CSUM only with CSUM. Breaking one is always recorded; whether
        the packet still goes is the profile's call (a Linux tap or QEMU never look at
        the negotiated features; the strict device drops it)."""
        negotiated = self.negotiated
        problems: list[tuple[str, str]] = []
        needed = GSO_FEATURE.get(hdr.gso_kind)
        if needed is not None and needed not in negotiated:
            problems.append(("tx-gso-not-negotiated",
                             f"gso_type {hdr.gso_type:#x} but {needed.name} was not negotiated"))
        if hdr.ecn and F.HOST_ECN not in negotiated:
            problems.append(("tx-ecn-not-negotiated",
                             "the ECN gso bit but HOST_ECN was not negotiated"))
        if hdr.needs_csum and F.CSUM not in negotiated:
            problems.append(("tx-csum-not-negotiated",
                             "NEEDS_CSUM set but CSUM was not negotiated"))
        for rule, detail in problems:
            if self.profile.action(rule) in (Action.REJECT, Action.DROP):
                self._tx_drop(rule, chain, detail, spec.NET_TX_DRIVER)
                return False
            self._violation(rule, spec.NET_TX_DRIVER, detail, action="allowed",
                            queue=self._tx_index, descriptor=chain.head)
        return True

    def _segments_fit(self, frames: list[bytes], hdr: NetHdr, chain: Chain) -> bool:
        """With MTU negotiated the driver must not make the device send more than mtu
        plus the Ethernet header per packet (§5.1.4.2), segments included."""
        limit, _ = self._max_frame(frames[0])
        longest = max(len(f) for f in frames)
        if longest <= limit:
            return True
        rule = "tx-segment-exceeds-mtu"
        detail = (f"gso_size {hdr.gso_size} gives {longest}-byte segments, over mtu "
                  f"{self.config.mtu} plus the Ethernet header ({limit})")
        if self.profile.action(rule) in (Action.REJECT, Action.DROP):
            self._tx_drop(rule, chain, detail, spec.NET_CONFIG_DRIVER)
            return False
        self._violation(rule, spec.NET_CONFIG_DRIVER, detail, action="allowed",
                        queue=self._tx_index, descriptor=chain.head)
        return True

    def _record_notes(self, notes: tuple[Note, ...], chain: Chain) -> None:
        """What the offload engine fixed, allowed or observed: every note is counted in
        ``counters.tx_notes``; those where the driver broke a spec rule also go to the
        conformance monitor."""
        counters = self.counters
        for note in notes:
            counters.tx_notes[note.rule] = counters.tx_notes.get(note.rule, 0) + 1
            if offload_rule(note.rule).violation:
                self._violation(note.rule, note.reference, note.detail,
                                action=note.action.value, queue=self._tx_index,
                                descriptor=chain.head, packet=self._tx_frame)

    # receive, §5.1.6.4
    def receive(self, frame: bytes) -> bool:
        """A frame from the network; True when it was taken (placed in a receive buffer,
        or held for coalescing)."""
        admitted = self._admit(frame, gso=False)
        if admitted is None:
            return False
        core, q, pair = admitted
        gro = self._gro[pair]
        if gro is None:
            return self._deliver(core, q, frame, _RX_PLAIN)
        placed = True
        for packet in gro.push(frame):
            placed = self._deliver_coalesced(core, q, packet)
        if gro.last_held:
            placed = True  # taken; whether it reaches the driver is counted at flush
        if gro.held:
            if self.call_later is None:
                self._flush_rx()
            elif not self._gro_timer:
                self._gro_timer = True
                self.call_later(self.config.gro_flush_ns, self._flush_rx)
        return placed

    def receive_offloaded(self, frame: bytes, hdr: NetHdr) -> bool:
        """A frame whose source left offload work undone (a tap with a vnet header: a
        partial checksum, NEEDS_CSUM, or a GSO packet). A profile that passes offloads
        on (``rx_pass_offloads``) hands it to a driver that accepted that kind as it is
        (§5.1.6.4.1: NEEDS_CSUM, gso_type, gso_size); otherwise the device finishes the
        work — completes the checksum, segments a GSO packet — and receives the result
        as plain frames (DATA_VALID with GUEST_CSUM)."""
        counters = self.counters
        gso = hdr.gso_type != GsoType.NONE
        if not gso and not hdr.needs_csum:
            return self.receive(frame)
        on = self._guest_offloads
        loose = self.profile.rx_offloads_from_offered
        if loose:  # the profile's bug: what was offered, not what was accepted
            if F.GUEST_CSUM not in on or (gso and not self._gso_allowed(hdr)):
                self._violation("rx-offload-not-negotiated", spec.NET_RX_DEVICE,
                                f"gso_type {hdr.gso_type:#x} / NEEDS_CSUM passed to a driver "
                                "that did not accept them", action="passed",
                                queue=self.RX_QUEUE, packet=frame, who=DEVICE)
            on = self.config.features & RX_OFFLOADS
        if (self.profile.rx_pass_offloads and F.GUEST_CSUM in on
                and hdr.needs_csum and (not gso or loose or self._gso_allowed(hdr))):
            admitted = self._admit(frame, gso=gso)
            if admitted is None:
                return False
            core, q, _ = admitted
            counters.rx_offloads_passed += 1
            passed = NetHdr(flags=int(NetHdrFlag.NEEDS_CSUM), gso_type=hdr.gso_type,
                            hdr_len=hdr.hdr_len, gso_size=hdr.gso_size,
                            csum_start=hdr.csum_start, csum_offset=hdr.csum_offset)
            return self._deliver(core, q, frame, passed)
        try:
            frames = (segment(frame, hdr, self.profile) if gso
                      else [complete_checksum(frame, hdr)])
        except OffloadError as err:
            counters.drop("rx-" + err.rule)
            return False
        counters.rx_offloads_finished += 1
        results = [self.receive(f) for f in frames]
        return all(results)

    def _admit(self, frame: bytes, *, gso: bool) -> tuple[DeviceCore, DeviceQueue, int] | None:
        """The checks every received frame passes before a receive queue: device live,
        link up, size (a GSO packet up to 64 KiB of IP), the receive filter
        (§5.1.6.5.1-3), steering to a ready queue not waiting for a refill. None when
        dropped (counted by reason)."""
        counters = self.counters
        core = self.core
        if core is None or not core.live or core.queue(self.RX_QUEUE) is None:
            counters.drop("rx-not-ready")
            return None
        if not self.link_up:
            counters.drop("rx-link-down")
            return None
        if len(frame) < HEADER_LEN:
            counters.drop("rx-runt")
            return None
        if gso:
            limit = 0xFFFF + link_header_len(frame)
        elif self._rx_mtu_limit:
            limit = self.config.mtu + link_header_len(frame)  # §5.1.4.1
        else:  # §5.1.6.3.1: such a driver posts 1526-byte buffers (1514 + a tag)
            limit = min(self.config.mtu, DEFAULT_MTU) + HEADER_LEN + VLAN_TAG_LEN
        if len(frame) > limit:
            counters.drop("rx-oversize")
            return None
        control = self.control
        if control is not None:
            reason = control.filter.check(frame)
            if reason is not None:  # §5.1.6.5.1-3: the driver's filters said no
                counters.drop(reason)
                return None
        pair = self.steering.select(frame)
        q = core.queue(2 * pair) if pair < self.config.max_queue_pairs else None
        if q is None:
            counters.drop("rx-queue-not-ready")
            return None
        if self._rx_waiting[pair]:
            # Out of buffers and waiting for the driver's refill notification; like a
            # QEMU backend that stops reading its tap until virtio_net_handle_rx, the
            # device does not look at the ring meanwhile.
            counters.drop("rx-no-buffer")
            return None
        return core, q, pair

    def _flush_rx(self) -> None:
        """End of the coalescing window: what is held goes to the driver."""
        self._gro_timer = False
        core = self.core
        if core is None:
            return
        for pair, gro in enumerate(self._gro):
            if gro is None or not gro.held:
                continue
            q = core.queue(2 * pair) if core.live else None
            held = gro.flush()
            if q is None:
                for _ in held:
                    self.counters.drop("rx-not-ready")
                continue
            for packet in held:
                self._deliver_coalesced(core, q, packet)

    def _deliver_coalesced(self, core: DeviceCore, q: DeviceQueue, packet: Coalesced) -> bool:
        if packet.hdr.gso_type != GsoType.NONE and not self._gso_allowed(packet.hdr):
            # Never a coalesced packet of a kind the driver has not (or no longer) got
            # switched on (§5.1.6.4.1, §5.1.6.5.8): back into its wire segments.
            self.counters.rx_resegmented += 1
            results = [self._deliver(core, q, frame, _RX_PLAIN)
                       for frame in segment(packet.frame, packet.hdr, STRICT)]
            return all(results)
        placed = self._deliver(core, q, packet.frame, packet.hdr)
        if placed and packet.segments > 1:
            self.counters.rx_coalesced += 1
            self.counters.rx_coalesced_segments += packet.segments
        return placed

    def _gso_allowed(self, hdr: NetHdr) -> bool:
        on = self._guest_offloads
        kind = hdr.gso_kind
        if F.GUEST_CSUM not in on:
            return False
        if kind == GsoType.TCPV4:
            return F.GUEST_TSO4 in on and (not hdr.ecn or F.GUEST_ECN in on)
        if kind == GsoType.TCPV6:
            return F.GUEST_TSO6 in on and (not hdr.ecn or F.GUEST_ECN in on)
        if kind == GsoType.UDP_L4:
            return bool(on & FeatureSet.of(F.GUEST_USO4, F.GUEST_USO6))
        return False

    def _deliver(self, core: DeviceCore, q: DeviceQueue, frame: bytes, hdr: NetHdr) -> bool:
        counters = self.counters
        try:
            return self._place(core, q, frame, hdr)
        except DeviceProtocolError as err:
            core.fail(err, queue=q.index)
        except GuestMemoryError as err:
            core.fail(RingError(str(err), rule="ring-out-of-memory",
                                section=spec.SPLIT_VIRTQUEUES), queue=q.index)
        counters.drop("rx-ring-error")
        return False

    def _pop_rx(self, q: DeviceQueue, memory: GuestMemory) -> Chain | None:
        """The next receive buffer. Out of buffers: ask for the refill notification,
        then re-check, so a buffer added in between is not missed (§2.7.10; vhost-net
        handle_rx) — unless the device models the naive order (``rx_recheck`` off)."""
        pair = q.index // 2
        pop = self._tolerant_pop if self.profile.skip_bad_chains else DeviceQueue.pop
        chain = pop(q, memory)
        if chain is None:
            q.enable_notifications(memory)
            self._rx_kick_wanted[pair] = True
            if self.config.rx_recheck:
                chain = pop(q, memory)
            if chain is None:
                self._rx_waiting[pair] = True
                return None
        if self._rx_kick_wanted[pair]:
            q.disable_notifications(memory)
            self._rx_kick_wanted[pair] = False
        if chain.writable_len == 0:
            raise ChainError(
                f"receive chain {chain.head} has no device-writable buffer",
                rule="rx-chain-not-writable", section=spec.NET_RX_BUFFERS,
                queue=q.index, descriptor=chain.head,
            )
        return chain

    def _place(self, core: DeviceCore, q: DeviceQueue, frame: bytes, hdr: NetHdr) -> bool:
        """Header and frame into receive buffers (§5.1.6.4): one buffer, or with
        MRG_RXBUF as many as it takes, every one but the last filled completely and
        ``num_buffers`` in the first header (§5.1.6.4.1); with HASH_REPORT the hash
        of the packet (§5.1.6.4.4)."""
        counters = self.counters
        memory = core.memory
        negotiated = self.negotiated
        hsize = net_hdr_size(negotiated)
        need = hsize + len(frame)
        mergeable = F.MRG_RXBUF in negotiated
        chains: list[Chain] = []
        room = 0
        while room < need and len(chains) < MAX_NUM_BUFFERS:
            chain = self._pop_rx(q, memory)
            if chain is None:
                break
            chains.append(chain)
            room += chain.writable_len
            if not mergeable:
                break
        if room < need:
            if chains:
                q.unpop(len(chains))
            if mergeable or not chains:
                # nothing (or not enough) posted: wait for the refill notification
                # Too few buffers for this packet: wait for the refill notification
                # like an empty ring (QEMU virtio_net_has_buffers, vhost-net
                # get_rx_bufs) — unless every entry of the ring is posted: then no
                # refill is coming and the next, smaller packet may fit.
                self._rx_waiting[q.index // 2] = len(chains) < q.size
                counters.drop("rx-no-buffer")
                return False
            # Whose fault: a buffer below what §5.1.6.3.1 asks for the negotiated features
            # (with MTU, a whole MTU-sized frame, §5.1.4.2) is the driver's; a packet too
            # big for a buffer that meets it is the device's (it sent more than the
            # driver accepted, §5.1.6.4.1).
            size = chains[0].writable_len
            largest = RX_PACKET
            if negotiated & BIG_RX_FEATURES:
                largest = RX_BIG_PACKET
            elif self._rx_mtu_limit:
                largest = max(RX_PACKET, self.config.mtu + HEADER_LEN)
            if size >= hsize + largest:
                who, rule, section = DEVICE, "rx-packet-too-large", spec.NET_RX_DEVICE
            else:
                who, rule, section = DRIVER, "rx-buffer-too-small", spec.NET_RX_BUFFERS_DRIVER
            retry = self.profile.rx_oversize_retry_ns
            if retry and self.call_later is not None:
                # the profile's bug: keep the frame and try again, forever
                counters.rx_oversize_retries += 1
                if counters.rx_oversize_retries == 1:
                    self._violation(rule, section,
                                    f"receive buffer of {size} bytes "
                                    f"cannot hold a {len(frame)}-byte frame: retried",
                                    action="retried", queue=q.index, packet=frame, who=who)
                self.call_later(retry, lambda: self._deliver(core, q, frame, hdr))
                return True
            counters.drop(rule)
            self._violation(rule, section,
                            f"receive buffer of {size} bytes cannot hold "
                            f"a {len(frame)}-byte frame and its {hsize}-byte header",
                            action="dropped", queue=q.index,
                            descriptor=chains[0].head, packet=frame, who=who)
            return False
        # §5.1.6.4.1: num_buffers is 1 without MRG_RXBUF (the 10-byte legacy header has
        # none); flags and gso fields as the coalescer decided (all 0 without offloads).
        if F.HASH_REPORT in negotiated:
            value, report = self.steering.report(frame)
            hdr = hdr.with_(num_buffers=len(chains), hash_value=value, hash_report=report)
        else:
            hdr = hdr.with_(num_buffers=len(chains))
        profile = self.profile
        if profile.rx_num_buffers_zero and not mergeable:
            hdr = hdr.with_(num_buffers=0)
            self._violation("rx-num-buffers-not-one", spec.NET_RX_DEVICE,
                            "num_buffers left 0 without MRG_RXBUF (must be 1)",
                            action="sent", queue=q.index, who=DEVICE)
        elif profile.rx_num_buffers_early and len(chains) > 1:
            hdr = hdr.with_(num_buffers=1)
            self._violation("rx-num-buffers-wrong", spec.NET_RX_DEVICE,
                            f"num_buffers 1 published for a packet in {len(chains)} buffers",
                            action="sent", queue=q.index, who=DEVICE)
        extra = profile.rx_used_len_extra
        data = memoryview(hdr.emit(hsize) + frame)
        pos = 0
        for chain in chains:
            n = min(chain.writable_len, need - pos)
            chain.write(memory, data[pos:pos + n])
            q.push_used(memory, chain.head, n + extra if pos + n == need else n)
            pos += n
            counters.rx_chains += 1
            counters.rx_descriptors += chain.descriptors
        if extra:
            self._violation("rx-used-len-beyond-written", spec.USED_RING_DEVICE,
                            f"used.len {extra} bytes more than the device wrote",
                            action="sent", queue=q.index, who=DEVICE)
        counters.rx_frames += 1
        counters.rx_bytes += len(frame)
        pair = q.index // 2
        counters.rx_queue_packets[pair] = counters.rx_queue_packets.get(pair, 0) + 1
        self._signal(core, q)
        return True
