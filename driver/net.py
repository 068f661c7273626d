"""The virtio-net driver (virtio-v1.2 §5.1 Network Device) over virtio-mmio.

It implements :class:`stack.device.NetworkDevice`: ``queue_pairs`` receive/transmit queue
pairs (receiveqN = 2(N-1), transmitqN = 2(N-1)+1, §5.1.2) served by driver/rx.py and
driver/tx.py, a control virtqueue (driver/control.py) when CTRL_VQ is negotiated,
buffers from one pool per queue allocated at :meth:`VirtioNetDriver.probe`,
interrupt-driven or polled completion.

The device is untrusted. Whatever it writes that breaks the spec is a
:class:`~virtio.errors.DriverProtocolError` that the driver records in
:attr:`VirtioNetDriver.errors` instead of raising out of the data path: a bad received
frame is dropped and counted (its buffer goes back to the device); a broken ring (used
id not in flight, used length beyond the buffer, used idx jumping) marks the driver
:attr:`~VirtioNetDriver.broken`, after which it no longer touches the rings.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from driver.bus import RegisterBus
from driver.control import BUFFER_SIZE as CTRL_BUFFER_SIZE
from driver.control import ControlChannel
from driver.counters import DriverCounters
from driver.quirk_queue import make_queue
from driver.quirks import check_quirks, negotiation_quirks, tx_quirks
from driver.rx import RX_GSO_FEATURES, RxPath, check_rx_header
from driver.transport import MmioDriverTransport
from driver.tx import TxPath
from driver.tx_header import PLAIN, build_tx_header
from driver.virtqueue import DriverQueue
from stack.device import (
    ChecksumCapabilities,
    DeviceCapabilities,
    RxFrame,
    SegmentationCapabilities,
    TxMeta,
)
from stack.wire.ethernet import HEADER_LEN, VLAN_TAG_LEN
from virtio import spec
from virtio.constants import (
    MAX_QUEUE_SIZE,
    DeviceId,
    FeatureBit,
    HashType,
    InterruptStatus,
    NetStatus,
    Status,
)
from virtio.ctrl import (
    MQ_VQ_PAIRS_MAX,
    Ack,
    AnnounceCmd,
    CtrlClass,
    HashConfig,
    MacCmd,
    MacTable,
    MqCmd,
    NotfCoal,
    NotfCoalCmd,
    OffloadsCmd,
    RssConfig,
    RxCmd,
    VlanCmd,
    VqNotfCoal,
    command_allowed,
    command_name,
    encode_coal_vq_get,
    encode_mac,
    encode_offloads,
    encode_rx_mode,
    encode_vlan,
    encode_vq_pairs,
)
from virtio.errors import (
    DeviceConfigError,
    DriverProtocolError,
    NegotiationFailed,
)
from virtio.features import BIG_RX_FEATURES, FeatureSet, Violation, negotiate, net_hdr_size
from virtio.layouts import NET_CONFIG
from virtio.memory import GuestMemory
from virtio.net_hdr import NetHdr

__all__ = [
    "BIG_PACKET", "DEFAULT_WANTED", "MAX_GSO_FRAME", "RX_GSO_FEATURES", "SUPPORTED",
    "DriverConfig", "VirtioNetDriver", "check_rx_header", "local_mac",
]

F = FeatureBit

RX_QUEUE = 0
TX_QUEUE = 1
"""receiveq1 and transmitq1 (§5.1.2 Virtqueues)."""

LINK_OVERHEAD = HEADER_LEN + VLAN_TAG_LEN
""""Low level ethernet header length" beside the MTU (§5.1.4.2): header plus one tag."""
DEFAULT_MTU = 1500
MIN_MTU = 68
"""§5.1.4.1: the device MUST set mtu between 68 and 65535."""
BIG_PACKET = 65589
"""Largest packet with GUEST_TSO*/UFO/USO and no MRG_RXBUF (§5.1.6.3): 14 + 40 + 65535."""
BUFFER_ALIGN = 64
MAX_GSO_IP = 0xFFFF
"""Largest IP packet handed to the device for segmentation (no BIG TCP)."""
MAX_GSO_FRAME = MAX_GSO_IP + LINK_OVERHEAD
"""Largest frame the driver hands over for segmentation: a 64 KiB IP packet plus the
Ethernet header and one VLAN tag (no BIG TCP yet)."""
MAX_REAP_ROUNDS = 1024
"""Bound on process / re-enable / re-check rounds in one interrupt (§2.7.14)."""
RSS_KEY = bytes.fromhex(
    "6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa"
)
"""The RSS key the driver programs by default (Microsoft's verification key, so hashes
can be checked against published vectors); DriverConfig.rss_key overrides it."""
MULTIQUEUE = FeatureSet.of(F.MQ, F.RSS)
ALL_HASH_TYPES = HashType(0x1FF)
"""Every hash type of §5.1.6.4.3.1."""

DEFAULT_WANTED = FeatureSet.of(
    F.VERSION_1, F.MAC, F.MTU, F.STATUS, F.EVENT_IDX, F.INDIRECT_DESC,
    F.CSUM, F.HOST_TSO4, F.HOST_TSO6, F.HOST_ECN, F.HOST_USO,
    F.CTRL_VQ, F.CTRL_RX, F.CTRL_MAC_ADDR, F.GUEST_ANNOUNCE, F.MQ, F.CTRL_GUEST_OFFLOADS,
    F.NOTF_COAL,
)
"""What the driver asks for by default: the transmit offloads and the control plane
Linux's virtio_net asks for. Not by default (a driver opts in with DriverConfig.wanted):
the receive offloads and MRG_RXBUF (they change what the driver receives), CTRL_VLAN
(with it the device drops tagged frames of VLANs not added), RSS and HASH_REPORT (the
latter changes the header size to 20)."""

CONTROL_FEATURES = FeatureSet.of(
    F.CTRL_VQ, F.CTRL_RX, F.CTRL_RX_EXTRA, F.CTRL_VLAN, F.CTRL_MAC_ADDR, F.GUEST_ANNOUNCE,
    F.CTRL_GUEST_OFFLOADS, F.MQ, F.RSS, F.HASH_REPORT, F.NOTF_COAL, F.VQ_NOTF_COAL,
)
"""The control plane: filters, MAC, VLAN, announcements, offload switching,
multiqueue (automatic steering and RSS), hash reports, notification coalescing (all
queues, or per queue)."""

SUPPORTED = DEFAULT_WANTED | CONTROL_FEATURES | FeatureSet.of(
    # TX offloads the driver may accept and simply not use yet.
    F.CSUM, F.HOST_TSO4, F.HOST_TSO6, F.HOST_ECN, F.HOST_UFO, F.HOST_USO, F.GUEST_HDRLEN,
    # RX offloads: buffers are sized for big packets, header flags are passed up.
    F.GUEST_CSUM, F.GUEST_TSO4, F.GUEST_TSO6, F.GUEST_ECN, F.GUEST_UFO, F.GUEST_USO4,
    F.GUEST_USO6, F.MRG_RXBUF, F.RSC_EXT,
    F.SPEED_DUPLEX, F.ACCESS_PLATFORM,
)
"""Features this driver can operate with. Anything else it is asked for (packed rings,
IN_ORDER...) is dropped at probe with a reason in ``dropped``."""
NOT_IMPLEMENTED = "vnetbench driver: feature not implemented"

_local_macs = itertools.count(1)

_CONFIG_CHANGE = int(InterruptStatus.CONFIG_CHANGE)
_HOST_TSO = FeatureSet.of(F.HOST_TSO4, F.HOST_TSO6)
_USED_BUFFER = int(InterruptStatus.USED_BUFFER)


def local_mac() -> bytes:
    """A locally administered unicast MAC (IEEE 802 §9.2: bit 1 of the first octet set,
    bit 0 clear), deterministic per process: 02:76:6e:xx:xx:xx ("vn")."""
    n = next(_local_macs) & 0xFF_FFFF
    return bytes((0x02, 0x76, 0x6E)) + n.to_bytes(3, "big")


@dataclass(frozen=True)
class DriverConfig:
    """How the driver sets itself up."""

    wanted: FeatureSet = DEFAULT_WANTED
    queue_size: int = 256
    """Ring size asked for; capped by QueueNumMax (rounded down to a power of two)."""
    use_indirect: bool = False
    """TX chains through indirect tables when INDIRECT_DESC is negotiated."""
    tx_header_separate: bool = False
    """Header and frame in two descriptors instead of one buffer."""
    rx_buffer_size: int | None = None
    """Bytes per RX buffer, header included. Default: header + max(mtu, 1500) + 14 + 4,
    at least the 1526 bytes of §5.1.6.3.1 without MRG_RXBUF / GUEST_TSO; with
    GUEST_TSO4/6, UFO or USO negotiated header + 65589 (§5.1.6.3)."""
    queue_pairs: int = 1
    """Queue pairs to use when MQ or RSS is negotiated (capped by max_virtqueue_pairs)."""
    rss_key: bytes = RSS_KEY
    """Key for RSS_CONFIG / HASH_CONFIG (cut to the device's rss_max_key_size)."""
    rss_hash_types: HashType = ALL_HASH_TYPES
    """Hash types to enable (intersected with the device's supported_hash_types)."""
    quirks: frozenset[str] = frozenset()
    """Named misbehaviours to reproduce (driver/quirks.py); empty for a correct driver."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "quirks", check_quirks(self.quirks))
        q = self.queue_size
        if not 1 <= q <= MAX_QUEUE_SIZE or q & (q - 1):
            raise ValueError(f"queue_size {q} is not a power of two in 1..{MAX_QUEUE_SIZE}")
        if self.rx_buffer_size is not None and self.rx_buffer_size <= 0:
            raise ValueError(f"rx_buffer_size {self.rx_buffer_size} must be positive")
        if not 1 <= self.queue_pairs <= MQ_VQ_PAIRS_MAX:
            raise ValueError(f"queue_pairs {self.queue_pairs} is outside 1..{MQ_VQ_PAIRS_MAX}")


DEFAULT_CONFIG = DriverConfig()


@dataclass(frozen=True)
class NetConfig:
    """The fields of virtio_net_config the driver uses, read under one generation."""

    mac: bytes
    status: int
    max_virtqueue_pairs: int
    mtu: int
    rss_max_key_size: int
    rss_max_indirection_table_length: int
    supported_hash_types: int


class VirtioNetDriver:
    """The virtio-net driver; a :class:`stack.device.NetworkDevice`."""

    def __init__(
        self, bus: RegisterBus, memory: GuestMemory, config: DriverConfig = DEFAULT_CONFIG
    ) -> None:
        if memory.allocator is None:
            raise ValueError("the driver needs guest memory with an allocator")
        self.transport = MmioDriverTransport(bus)
        self.memory = memory
        self.config = config
        self.offered = FeatureSet()
        self.negotiated = FeatureSet()
        self.dropped: list[Violation] = []
        self.mac = b""
        self._local_mac = b""
        self.mtu = DEFAULT_MTU
        self.link_up = False
        self.header_size = net_hdr_size(FeatureSet.of(F.VERSION_1))
        self.broken = False
        self.needs_reset = False
        """The device reported DEVICE_NEEDS_RESET (§2.1.2)."""
        self.errors: list[DriverProtocolError] = []
        self.counters = DriverCounters()
        self.net_config: NetConfig | None = None
        self.max_queue_pairs = 1
        self.queue_pairs = 1
        """Pairs in use (after VQ_PAIRS_SET / RSS_CONFIG)."""
        self.rx_paths: list[RxPath] = []
        self.tx_paths: list[TxPath] = []
        self.control: ControlChannel | None = None
        self.on_announce: Callable[[], None] | None = None
        """Called when the device asks for an announcement (GUEST_ANNOUNCE), before the
        driver acks it: the stack sends its gratuitous ARP / unsolicited NA here."""
        self.rx_buffer_size = 0
        self.tx_buffer_size = 0
        self._pools: list[int] = []
        self._tx_header = b""
        self._received: list[RxFrame] = []
        self._reaping = False
        self._reap_again = False
        self._quirks = config.quirks

    @property
    def rx_queue(self) -> DriverQueue:
        """receiveq1 (queue 0); ``ValueError`` before :meth:`probe`."""
        if not self.rx_paths:
            raise ValueError("no RX queue before probe()")
        return self.rx_paths[0].queue

    @property
    def tx_queue(self) -> DriverQueue:
        """transmitq1 (queue 1); ``ValueError`` before :meth:`probe`."""
        if not self.tx_paths:
            raise ValueError("no TX queue before probe()")
        return self.tx_paths[0].queue

    @property
    def max_frame(self) -> int:
        """Largest frame :meth:`transmit` takes: MTU plus Ethernet header and one VLAN tag
        (§5.1.4.2)."""
        return self.mtu + LINK_OVERHEAD

    # initialization, §3.1.1 / §5.1.5
    def probe(self) -> None:
        """Initialize the device (§3.1.1, §4.2.3.1, §5.1.5). Identity is checked first,
        before any other register (§4.2.3.1), then the device is reset. Raises
        :class:`DeviceConfigError` for a device that is not a virtio-mmio v2 net device
        or has bad configuration, :class:`NegotiationFailed` when FEATURES_OK does not
        stick; in both cases (after the identity check) FAILED is set. Calling it again
        resets the device and starts over with fresh rings and buffers. With MQ / RSS
        negotiated and more than one pair wanted, multiqueue is switched on through the
        control queue after DRIVER_OK (§5.1.6.5.6, §5.1.6.5.7)."""
        t = self.transport
        t.check_identity(DeviceId.NET)
        t.reset()
        self._release()
        self.broken = False
        self.needs_reset = False
        try:
            self._initialize()
        except Exception:
            t.fail()
            raise
        self._start_multiqueue()

    def _initialize(self) -> None:
        t = self.transport
        t.set_status(Status.ACKNOWLEDGE)
        t.set_status(Status.DRIVER)
        self.offered = t.read_device_features()
        unsupported = (self.config.wanted & self.offered) - SUPPORTED
        self.dropped = [Violation(f, "not implemented by this driver", NOT_IMPLEMENTED)
                        for f in unsupported]
        accepted, lost = negotiate(self.offered, self.config.wanted - unsupported)
        self.dropped += lost
        if F.VERSION_1 not in accepted:
            raise NegotiationFailed(
                "this driver drives only VERSION_1 devices; offered "
                f"{self.offered.names()}, wanted {self.config.wanted.names()} "
                f"({spec.RESERVED_FEATURE_BITS_DEVICE}: a device MUST offer VERSION_1)"
            )
        quirks = self._quirks
        if quirks:
            accepted = negotiation_quirks(accepted, self.offered, quirks)
        t.write_driver_features(accepted)
        self.negotiated = accepted
        t.set_status(Status.FEATURES_OK)
        if "features-after-features-ok" in quirks:
            t.write_driver_features(accepted)
        if "no-features-ok-check" not in quirks and not t.status() & Status.FEATURES_OK:
            raise NegotiationFailed(
                f"the device cleared FEATURES_OK: it refused {accepted.names()} "
                f"(offered {self.offered.names()}) ({spec.DEVICE_INIT})"
            )
        self.header_size = net_hdr_size(accepted)
        self._tx_header = NetHdr().emit(self.header_size)
        self._read_config()

        memory = self.memory
        allocator = memory.allocator
        assert allocator is not None
        event_idx, indirect = F.EVENT_IDX in accepted, F.INDIRECT_DESC in accepted
        multiqueue = bool(accepted & MULTIQUEUE)
        pairs = min(self.config.queue_pairs, self.max_queue_pairs) if multiqueue else 1
        self.rx_buffer_size = self._default_rx_buffer_size()
        self.tx_buffer_size = self.header_size + self.max_frame

        def alloc(size: int) -> int:
            addr = allocator.alloc(size, BUFFER_ALIGN)
            self._pools.append(addr)
            return addr

        if "driver-ok-before-queues" in quirks:
            t.set_status(Status.DRIVER_OK)
        for pair in range(pairs):  # §5.1.5: the queues are set up before DRIVER_OK
            rx = make_queue(memory, 2 * pair, self._queue_size(2 * pair),
                            event_idx=event_idx, indirect=indirect, quirks=quirks)
            t.setup_queue(rx)
            self.rx_paths.append(RxPath(
                rx, alloc(rx.size * self.rx_buffer_size), self.rx_buffer_size,
                header_size=self.header_size, negotiated=accepted, counters=self.counters,
                errors=self.errors, memory=memory, notify=t.notify, quirks=quirks))
            tx = make_queue(memory, 2 * pair + 1, self._queue_size(2 * pair + 1),
                            event_idx=event_idx, indirect=indirect, quirks=quirks)
            t.setup_queue(tx)
            self.tx_paths.append(TxPath(
                tx, alloc(tx.size * self.tx_buffer_size), self.tx_buffer_size, memory,
                self.counters))
        if F.CTRL_VQ in accepted:
            index = 2 * self.max_queue_pairs if multiqueue else 2
            ctrl = DriverQueue(memory, index, min(self._queue_size(index), 64),
                               event_idx=False, indirect=False)
            t.setup_queue(ctrl)
            self.control = ControlChannel(ctrl, alloc(CTRL_BUFFER_SIZE), memory, t.notify)
        for path in self.rx_paths:
            path.fill()

        t.set_status(Status.DRIVER_OK)
        for path in self.rx_paths:
            path.kick()

    def _read_config(self) -> None:
        """The configuration space (§5.1.4, §5.1.4.2) read in one go under one
        ConfigGeneration (§2.5: the fields are consistent with each other)."""
        t, neg = self.transport, self.negotiated
        raw = t.read_config_bytes(0, NET_CONFIG.size)
        fields = NET_CONFIG.fmt.unpack(raw)
        cfg = NetConfig(
            mac=bytes(fields[0:6]), status=fields[6], max_virtqueue_pairs=fields[7],
            mtu=fields[8], rss_max_key_size=fields[11],
            rss_max_indirection_table_length=fields[12], supported_hash_types=fields[13],
        )
        self.net_config = cfg
        if F.MAC in neg:
            self.mac = cfg.mac
        else:  # one local address per driver, kept across re-probes
            self._local_mac = self._local_mac or local_mac()
            self.mac = self._local_mac
        self.link_up = bool(cfg.status & NetStatus.LINK_UP) if F.STATUS in neg else True
        self.mtu = DEFAULT_MTU
        if F.MTU in neg:
            if cfg.mtu < MIN_MTU:
                raise DeviceConfigError(
                    f"config mtu {cfg.mtu} is below {MIN_MTU}",
                    rule="mtu-out-of-range", section=spec.NET_CONFIG_DEVICE,
                )
            self.mtu = cfg.mtu
        self.max_queue_pairs = 1
        if neg & MULTIQUEUE:
            pairs = cfg.max_virtqueue_pairs
            if not 1 <= pairs <= MQ_VQ_PAIRS_MAX:
                raise DeviceConfigError(
                    f"config max_virtqueue_pairs {pairs} is outside 1..{MQ_VQ_PAIRS_MAX}",
                    rule="max-virtqueue-pairs-out-of-range", section=spec.NET_CONFIG_DEVICE,
                )
            self.max_queue_pairs = pairs

    def _start_multiqueue(self) -> None:
        """Switch on the pairs that were set up: RSS_CONFIG when RSS is negotiated (as
        Linux does, with a round-robin indirection table), else VQ_PAIRS_SET; with
        HASH_REPORT and no RSS, HASH_CONFIG so the device reports hashes. A device that
        answers ERR leaves the driver on one pair (§5.1.6.5.6.1: receiveq1/transmitq1
        only until the command is used)."""
        neg, cfg = self.negotiated, self.net_config
        if self.control is None or cfg is None or self.broken:
            return
        wanted = len(self.tx_paths)
        types = HashType(self.config.rss_hash_types & cfg.supported_hash_types)
        key = self.config.rss_key[:cfg.rss_max_key_size]
        if F.RSS in neg and (wanted > 1 or F.HASH_REPORT in neg):
            # also for one pair with HASH_REPORT: with RSS negotiated the hash types and
            # key come from RSS_CONFIG (§5.1.6.4.3; Linux syncs RSS at probe likewise)
            length = 1 << (max(1, cfg.rss_max_indirection_table_length).bit_length() - 1)
            table = tuple(i % wanted for i in range(min(length, 128)))
            if self.set_rss(RssConfig(types, table, 0, wanted, key)):
                return
        elif F.MQ in neg and wanted > 1:
            self.set_queue_pairs(wanted)
        if F.HASH_REPORT in neg and F.RSS not in neg:
            self.set_hash_config(HashConfig(types, key))

    def _queue_size(self, index: int) -> int:
        maximum = self.transport.queue_num_max(index)
        if maximum == 0:
            raise DeviceConfigError(
                f"queue {index} is not available (QueueSizeMax 0)",
                rule="queue-not-available", section=spec.MMIO_INIT,
            )
        size = min(self.config.queue_size, maximum, MAX_QUEUE_SIZE)
        return 1 << (size.bit_length() - 1)  # split queue sizes are powers of two, §2.7

    def _default_rx_buffer_size(self) -> int:
        size = self.config.rx_buffer_size
        if size is not None:
            if size <= self.header_size:
                raise ValueError(
                    f"rx_buffer_size {size} leaves no room after the "
                    f"{self.header_size}-byte header"
                )
            return size
        if self.negotiated & BIG_RX_FEATURES and F.MRG_RXBUF not in self.negotiated \
                and "rx-small-buffers" not in self._quirks:
            return self.header_size + BIG_PACKET
        return self.header_size + max(self.mtu, DEFAULT_MTU) + LINK_OVERHEAD

    def _release(self) -> None:
        """Give back rings and pools of a previous probe (the device is reset)."""
        allocator = self.memory.allocator
        assert allocator is not None
        for tx in self.tx_paths:
            tx.release()
        queues = [p.queue for p in self.rx_paths] + [p.queue for p in self.tx_paths]
        if self.control is not None:
            queues.append(self.control.queue)
        for q in queues:
            q.release()
        for pool in self._pools:
            allocator.free(pool)
        self._pools = []
        self.rx_paths, self.tx_paths = [], []
        self.control = None
        self.queue_pairs = 1
        self._received = []

    def remove(self) -> None:
        """Reset the device and give back every ring and buffer."""
        self.transport.reset()
        self._release()

    # control virtqueue, §5.1.6.5
    def control_command(self, cls: int, cmd: int, data: bytes = b"") -> bool:
        """Send one command as it is, whether or not its feature was negotiated (tests
        use this to see the device's error path); True for VIRTIO_NET_OK. A device that
        breaks the control queue protocol is recorded and gives False."""
        if self.control is None:
            raise ValueError("no control queue: CTRL_VQ was not negotiated")
        if self.broken:
            return False
        try:
            ack = self.control.command(cls, cmd, data)
        except DriverProtocolError as err:
            self.errors.append(err)
            self.counters.drop(err.rule)
            return False
        self.counters.ctrl_commands += 1
        if ack != Ack.OK:
            self.counters.ctrl_errors += 1
        return ack == Ack.OK

    def _command(self, cls: int, cmd: int, data: bytes = b"") -> bool:
        """A command the negotiated features allow (``ValueError`` otherwise: the driver
        does not send what it did not negotiate, §5.1.6.5)."""
        if not command_allowed(cls, cmd, self.negotiated) \
                and "use-not-negotiated" not in self._quirks:
            raise ValueError(
                f"{command_name(cls, cmd)} needs a feature that was not negotiated "
                f"(negotiated: {self.negotiated.names()})"
            )
        return self.control_command(cls, cmd, data)

    def set_rx_mode(self, mode: RxCmd, on: bool) -> bool:
        """VIRTIO_NET_CTRL_RX: promiscuous, all-multicast (CTRL_RX), all-unicast,
        no-multicast, no-unicast, no-broadcast (CTRL_RX_EXTRA) (§5.1.6.5.1)."""
        return self._command(CtrlClass.RX, mode, encode_rx_mode(on))

    def set_mac_table(self, unicast: tuple[bytes, ...], multicast: tuple[bytes, ...]) -> bool:
        """VIRTIO_NET_CTRL_MAC_TABLE_SET: the addresses the filter accepts besides the
        device's own (§5.1.6.5.2)."""
        return self._command(CtrlClass.MAC, MacCmd.TABLE_SET,
                             MacTable(unicast, multicast).emit())

    def set_mac_address(self, mac: bytes) -> bool:
        """VIRTIO_NET_CTRL_MAC_ADDR_SET (CTRL_MAC_ADDR, §5.1.6.5.2); the driver then
        uses ``mac`` as its address."""
        ok = self._command(CtrlClass.MAC, MacCmd.ADDR_SET, encode_mac(mac))
        if ok:
            self.mac = bytes(mac)
        return ok

    def vlan_add(self, vid: int) -> bool:
        """VIRTIO_NET_CTRL_VLAN_ADD (CTRL_VLAN, §5.1.6.5.3)."""
        return self._command(CtrlClass.VLAN, VlanCmd.ADD, encode_vlan(vid))

    def vlan_del(self, vid: int) -> bool:
        """VIRTIO_NET_CTRL_VLAN_DEL (CTRL_VLAN, §5.1.6.5.3)."""
        return self._command(CtrlClass.VLAN, VlanCmd.DEL, encode_vlan(vid))

    def set_queue_pairs(self, pairs: int) -> bool:
        """VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET (MQ, §5.1.6.5.6): use ``pairs`` of the pairs
        set up at probe."""
        if not 1 <= pairs <= len(self.tx_paths):
            raise ValueError(f"{pairs} pairs: {len(self.tx_paths)} were set up")
        ok = self._command(CtrlClass.MQ, MqCmd.VQ_PAIRS_SET, encode_vq_pairs(pairs))
        if ok:
            self.queue_pairs = pairs
        return ok

    def set_rss(self, config: RssConfig) -> bool:
        """VIRTIO_NET_CTRL_MQ_RSS_CONFIG (RSS, §5.1.6.5.7.1); transmit then uses
        ``max_tx_vq`` queues."""
        ok = self._command(CtrlClass.MQ, MqCmd.RSS_CONFIG, config.emit())
        if ok:
            self.queue_pairs = max(1, min(config.max_tx_vq, len(self.tx_paths)))
        return ok

    def set_hash_config(self, config: HashConfig) -> bool:
        """VIRTIO_NET_CTRL_MQ_HASH_CONFIG (HASH_REPORT, §5.1.6.4.4)."""
        return self._command(CtrlClass.MQ, MqCmd.HASH_CONFIG, config.emit())

    def set_guest_offloads(self, offloads: FeatureSet) -> bool:
        """VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET (CTRL_GUEST_OFFLOADS, §5.1.6.5.8): the
        receive offloads the device may use from now on."""
        return self._command(CtrlClass.GUEST_OFFLOADS, OffloadsCmd.SET,
                             encode_offloads(offloads))

    def set_notf_coal(self, *, tx: NotfCoal | None = None, rx: NotfCoal | None = None) -> bool:
        """VIRTIO_NET_CTRL_NOTF_COAL_TX_SET / RX_SET (NOTF_COAL, v1.3 §5.1.6.5.9)."""
        ok = True
        if tx is not None:
            ok = self._command(CtrlClass.NOTF_COAL, NotfCoalCmd.TX_SET, tx.emit()) and ok
        if rx is not None:
            ok = self._command(CtrlClass.NOTF_COAL, NotfCoalCmd.RX_SET, rx.emit()) and ok
        return ok

    def set_vq_notf_coal(self, vq_index: int, coal: NotfCoal) -> bool:
        """VIRTIO_NET_CTRL_NOTF_COAL_VQ_SET (VQ_NOTF_COAL, v1.3 §5.1.6.5.9) for one
        enabled data virtqueue."""
        return self._command(CtrlClass.NOTF_COAL, NotfCoalCmd.VQ_SET,
                             VqNotfCoal(vq_index, coal).emit())

    def get_vq_notf_coal(self, vq_index: int) -> NotfCoal | None:
        """VIRTIO_NET_CTRL_NOTF_COAL_VQ_GET: the parameters of one data virtqueue, or
        None when the device answered ERR (whose result the driver MUST ignore,
        v1.3 §5.1.6.5.9.5)."""
        if not command_allowed(CtrlClass.NOTF_COAL, NotfCoalCmd.VQ_GET, self.negotiated):
            raise ValueError("VQ_GET needs VQ_NOTF_COAL negotiated")
        if self.control is None or self.broken:
            return None
        try:
            ack = self.control.command(CtrlClass.NOTF_COAL, NotfCoalCmd.VQ_GET,
                                       encode_coal_vq_get(vq_index), result_size=8)
        except DriverProtocolError as err:
            self.errors.append(err)
            self.counters.drop(err.rule)
            return None
        self.counters.ctrl_commands += 1
        if ack != Ack.OK:
            self.counters.ctrl_errors += 1
            return None
        return NotfCoal.parse(self.control.result)

    def announce_ack(self) -> bool:
        """VIRTIO_NET_CTRL_ANNOUNCE_ACK (GUEST_ANNOUNCE, §5.1.6.5.4)."""
        return self._command(CtrlClass.ANNOUNCE, AnnounceCmd.ACK)

    # the stack's device protocol
    def capabilities(self) -> DeviceCapabilities:
        """What the stack may rely on, from the negotiated features: the MTU; CSUM →
        the device completes partial checksums; GUEST_CSUM → DATA_VALID on receive;
        HOST_TSO4/6 (with CSUM, §5.1.3.1) → TCP packets up to a 64 KiB IP packet are
        segmented by the device (the smoltcp PR 1148 capability: the largest packet
        per IP version); the TX ring size as burst."""
        neg = self.negotiated
        tx = self.tx_paths[0].queue.size if self.tx_paths else None
        csum = F.CSUM in neg
        return DeviceCapabilities(
            mtu=self.mtu,
            checksum=ChecksumCapabilities(tx_partial=csum, rx_verified=F.GUEST_CSUM in neg),
            segmentation=SegmentationCapabilities(
                tcp_ipv4_max=MAX_GSO_IP if csum and F.HOST_TSO4 in neg else None,
                tcp_ipv6_max=MAX_GSO_IP if csum and F.HOST_TSO6 in neg else None,
                tcp_ecn=csum and F.HOST_ECN in neg and bool(neg & _HOST_TSO),
            ),
            max_burst=tx,
        )

    def tx_queue_for(self, frame: bytes) -> int:
        """The transmit queue pair for a frame: one per flow (a CRC-32 of the IP
        addresses and ports, like Linux picking a queue from the flow hash), so a flow's
        packets stay in order and automatic steering sends its replies to the same
        pair (§5.1.6.5.6)."""
        pairs = self.queue_pairs
        if pairs == 1 or len(frame) < HEADER_LEN + 20:
            return 0
        ethertype = frame[12] << 8 | frame[13]
        if ethertype == 0x0800:
            ihl = (frame[HEADER_LEN] & 0x0F) * 4
            key = frame[26:34] + frame[HEADER_LEN + ihl:HEADER_LEN + ihl + 4]
        elif ethertype == 0x86DD:
            key = frame[22:54] + frame[54:58]
        else:
            return 0
        return zlib.crc32(key) % pairs

    def transmit(self, frame: bytes, meta: TxMeta | None = None, *, queue: int | None = None) -> bool:
        """Queue one Ethernet frame behind its virtio_net_hdr (§5.1.6.2): flags 0 and
        gso_type NONE without ``meta``; with ``meta`` the checksum and segmentation
        offloads it asks for, built by :func:`driver.tx_header.build_tx_header` from the
        negotiated features (``ValueError`` for one that was not negotiated). A
        segmented packet may be up to 64 KiB of IP packet; anything else up to the MTU
        plus the Ethernet header. ``queue``: the transmit queue pair (0 = transmitq1);
        default by flow (:meth:`tx_queue_for`). False when the TX ring is full after
        reaping completed transmissions, when guest memory has no room for a large
        packet, or when the device is broken."""
        if not self.tx_paths:
            raise ValueError("transmit before probe()")
        quirks = self._quirks
        allowed = self.negotiated
        if quirks and "use-not-negotiated" in quirks:
            allowed = allowed | self.offered
        hdr = PLAIN if meta is None else build_tx_header(frame, meta, allowed)
        limit = MAX_GSO_FRAME if hdr.gso_type else self.max_frame
        if not 0 < len(frame) <= limit:
            raise ValueError(
                f"frame of {len(frame)} bytes; the link takes 1..{self.max_frame} "
                f"(mtu {self.mtu} + {LINK_OVERHEAD}, {spec.NET_CONFIG_DRIVER}), a "
                f"segmented packet up to {MAX_GSO_FRAME}"
            )
        pair = self.tx_queue_for(frame) if queue is None else queue
        if not 0 <= pair < len(self.tx_paths):
            raise ValueError(f"transmit queue {pair}: {len(self.tx_paths)} pair(s) set up")
        if self.broken:
            self.counters.drop("device-broken")
            return False
        path = self.tx_paths[pair]
        try:
            path.reap()
        except DriverProtocolError as err:
            self._device_broke(err)
            return False
        tx = path.queue
        use_indirect = self.config.use_indirect and tx.indirect
        separate = self.config.tx_header_separate
        if not path.has_room(1 if use_indirect or not separate else 2):
            self.counters.tx_ring_full += 1
            return False
        if quirks:
            hdr, frame, size = tx_quirks(hdr, frame, quirks, self.header_size)
            header = hdr.emit(size)
        else:
            header = self._tx_header if hdr is PLAIN else hdr.emit(self.header_size)
        if not path.put(header, frame, separate=separate, indirect=use_indirect):
            return False
        counters = self.counters
        counters.tx_frames += 1
        counters.tx_bytes += len(frame)
        if hdr.gso_type:
            counters.tx_gso_packets += 1
        if hdr.flags:
            counters.tx_csum_offloads += 1
        return True

    def flush(self) -> None:
        """Notify the device once per queue for the frames queued since the last flush,
        unless it suppressed notifications (§2.7.10)."""
        if self.broken:
            return
        for path in self.tx_paths:
            if not path.unkicked:
                continue
            path.unkicked = 0
            if path.queue.kick_needed():
                self.transport.notify(path.queue.index)
                self.counters.tx_kicks += 1
            else:
                self.counters.tx_kicks_suppressed += 1

    def receive(self) -> list[RxFrame]:
        frames, self._received = self._received, []
        return frames

    # interrupts and completion
    def handle_interrupt(self) -> None:
        """Read and acknowledge InterruptStatus (§4.2.3.4), then handle a configuration
        change (device status, link status, announcement) and used buffers (reap TX,
        reap RX, refill). Device misbehaviour is recorded, never raised."""
        self.counters.interrupts += 1
        t = self.transport
        isr = t.interrupt_status()
        if isr:
            t.ack_interrupt(isr)
        if isr & _CONFIG_CHANGE:
            self.counters.config_interrupts += 1
            self._config_changed()
        if isr & _USED_BUFFER:
            self._process_used()

    def poll(self) -> None:
        """Reap TX and RX without an interrupt (polling-mode users)."""
        if not self.rx_paths:
            raise ValueError("poll before probe()")
        self._process_used()

    def _config_changed(self) -> None:
        try:
            if self.transport.status() & Status.DEVICE_NEEDS_RESET:
                self.needs_reset = True
                self.broken = True
                return
            self._read_config()
        except DriverProtocolError as err:
            self._device_broke(err)
            return
        cfg = self.net_config
        if cfg is not None and F.GUEST_ANNOUNCE in self.negotiated \
                and cfg.status & NetStatus.ANNOUNCE:
            # §5.1.6.5.4.1: announce, then ack so the device clears the bit
            self.counters.announces += 1
            if self.on_announce is not None:
                self.on_announce()
            self.announce_ack()

    def _device_broke(self, err: DriverProtocolError) -> None:
        self.errors.append(err)
        self.broken = True

    def _process_used(self) -> None:
        if self.broken or not self.rx_paths:
            return
        if self._reaping:  # re-entered from a notification the device answered at once
            self._reap_again = True
            return
        self._reaping = True
        try:
            for _ in range(MAX_REAP_ROUNDS):
                self._reap_again = False
                for tx in self.tx_paths:
                    tx.reap()
                for rx in self.rx_paths:
                    rx.reap(self._received)
                if not self._reap_again:
                    break
        except DriverProtocolError as err:
            self._device_broke(err)
        finally:
            self._reaping = False
