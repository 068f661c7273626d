"""The virtio-net driver (virtio-v1.2 §5.1 Network Device) over virtio-mmio.

It implements :class:`stack.device.NetworkDevice`: one receive queue (0) and one transmit
queue (1), buffers from one pool per queue allocated at :meth:`VirtioNetDriver.probe`,
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
from dataclasses import dataclass

from driver.bus import RegisterBus
from driver.counters import DriverCounters
from driver.transport import MmioDriverTransport
from driver.tx_header import PLAIN, build_tx_header
from driver.virtqueue import DriverQueue
from stack.device import DeviceCapabilities, RxFrame, TxMeta
from stack.wire.ethernet import HEADER_LEN, VLAN_TAG_LEN
from virtio import spec
from virtio.constants import (
    MAX_QUEUE_SIZE,
    DeviceId,
    FeatureBit,
    GsoType,
    InterruptStatus,
    NetStatus,
    Status,
)
from virtio.errors import (
    DeviceConfigError,
    DriverProtocolError,
    NegotiationFailed,
    OutOfGuestMemory,
)
from virtio.features import FeatureSet, Violation, negotiate, net_hdr_size
from virtio.layouts import NET_CONFIG
from virtio.memory import GuestMemory
from virtio.net_hdr import NetHdr

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
MAX_GSO_FRAME = 0xFFFF + LINK_OVERHEAD
"""Largest frame the driver hands over for segmentation: a 64 KiB IP packet plus the
Ethernet header and one VLAN tag (no BIG TCP yet)."""
MAX_REAP_ROUNDS = 1024
"""Bound on process / re-enable / re-check rounds in one interrupt (§2.7.14)."""

DEFAULT_WANTED = FeatureSet.of(
    F.VERSION_1, F.MAC, F.MTU, F.STATUS, F.EVENT_IDX, F.INDIRECT_DESC,
    F.CSUM, F.HOST_TSO4, F.HOST_TSO6, F.HOST_ECN, F.HOST_USO,
)
"""What the driver asks for by default."""

SUPPORTED = DEFAULT_WANTED | FeatureSet.of(
    # TX offloads the driver may accept and simply not use yet.
    F.CSUM, F.HOST_TSO4, F.HOST_TSO6, F.HOST_ECN, F.HOST_UFO, F.HOST_USO, F.GUEST_HDRLEN,
    # RX offloads: buffers are sized for big packets, header flags are passed up.
    F.GUEST_CSUM, F.GUEST_TSO4, F.GUEST_TSO6, F.GUEST_ECN, F.GUEST_UFO, F.GUEST_USO4,
    F.GUEST_USO6, F.MRG_RXBUF,
    F.SPEED_DUPLEX, F.ACCESS_PLATFORM,
)
"""Features this driver can operate with. Anything else it is asked for (MRG_RXBUF,
CTRL_VQ, MQ, packed rings...) is dropped at probe with a reason in ``dropped``."""
NOT_IMPLEMENTED = "vnetbench driver: feature not implemented"

BIG_RX_FEATURES = FeatureSet.of(F.GUEST_TSO4, F.GUEST_TSO6, F.GUEST_UFO, F.GUEST_USO4, F.GUEST_USO6)
RX_GSO_FEATURES: dict[int, tuple[FeatureBit, ...]] = {
    GsoType.TCPV4: (F.GUEST_TSO4,),
    GsoType.TCPV6: (F.GUEST_TSO6,),
    GsoType.UDP: (F.GUEST_UFO,),
    GsoType.UDP_L4: (F.GUEST_USO4, F.GUEST_USO6),
}
"""Which feature allows the device to send each gso_type (§5.1.6.4.1)."""

_local_macs = itertools.count(1)


def local_mac() -> bytes:
    """A locally administered unicast MAC (IEEE 802 §9.2: bit 1 of the first octet set,
    bit 0 clear), deterministic per process: 02:76:6e:xx:xx:xx ("vn")."""
    n = next(_local_macs) & 0xFF_FFFF
    return bytes((0x02, 0x76, 0x6E)) + n.to_bytes(3, "big")


def check_rx_header(hdr: NetHdr, negotiated: FeatureSet) -> None:
    """Raise :class:`DriverProtocolError` when a received virtio_net_hdr breaks the
    device's rules for the negotiated features (§5.1.6.4.1, §5.1.6.3)."""
    if F.MRG_RXBUF not in negotiated and hdr.num_buffers != 1:
        raise DriverProtocolError(
            f"num_buffers {hdr.num_buffers} without MRG_RXBUF (must be 1)",
            rule="rx-num-buffers-not-one", section=spec.NET_RX_DEVICE,
        )
    if hdr.num_buffers == 0:
        raise DriverProtocolError(
            "num_buffers 0 (a packet takes at least its first buffer)",
            rule="rx-num-buffers-zero", section=spec.NET_RX_DEVICE,
        )
    if F.GUEST_CSUM not in negotiated and hdr.flags:
        raise DriverProtocolError(
            f"flags {hdr.flags:#x} without GUEST_CSUM (must be 0)",
            rule="rx-flags-without-guest-csum", section=spec.NET_RX_DEVICE,
        )
    kind = hdr.gso_kind
    if kind == GsoType.NONE:
        return
    allowed = RX_GSO_FEATURES.get(kind)
    if allowed is None:
        raise DriverProtocolError(
            f"unknown gso_type {hdr.gso_type:#x}",
            rule="rx-gso-type-unknown", section=spec.NET_RX_DEVICE,
        )
    if not any(f in negotiated for f in allowed):
        raise DriverProtocolError(
            f"gso_type {GsoType(kind).name} without "
            f"{' or '.join(f.name for f in allowed)} negotiated",
            rule="rx-gso-not-negotiated", section=spec.NET_RX_DEVICE,
        )


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

    def __post_init__(self) -> None:
        q = self.queue_size
        if not 1 <= q <= MAX_QUEUE_SIZE or q & (q - 1):
            raise ValueError(f"queue_size {q} is not a power of two in 1..{MAX_QUEUE_SIZE}")
        if self.rx_buffer_size is not None and self.rx_buffer_size <= 0:
            raise ValueError(f"rx_buffer_size {self.rx_buffer_size} must be positive")


DEFAULT_CONFIG = DriverConfig()


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
        self._rx: DriverQueue | None = None
        self._tx: DriverQueue | None = None
        self.rx_buffer_size = 0
        self.tx_buffer_size = 0
        self._rx_pool = 0
        self._tx_pool = 0
        self._tx_free: list[int] = []
        self._tx_big: dict[int, int] = {}
        """TX slot -> a buffer allocated for a packet larger than the slot's."""
        self._tx_unkicked = 0
        self._tx_header = b""
        self._received: list[RxFrame] = []
        self._reaping = False
        self._reap_again = False

    @property
    def rx_queue(self) -> DriverQueue:
        """receiveq1 (queue 0); ``ValueError`` before :meth:`probe`."""
        if self._rx is None:
            raise ValueError("no RX queue before probe()")
        return self._rx

    @property
    def tx_queue(self) -> DriverQueue:
        """transmitq1 (queue 1); ``ValueError`` before :meth:`probe`."""
        if self._tx is None:
            raise ValueError("no TX queue before probe()")
        return self._tx

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
        resets the device and starts over with fresh rings and buffers."""
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
        t.write_driver_features(accepted)
        self.negotiated = accepted
        t.set_status(Status.FEATURES_OK)
        if not t.status() & Status.FEATURES_OK:
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
        rx = DriverQueue(memory, RX_QUEUE, self._queue_size(RX_QUEUE),
                         event_idx=event_idx, indirect=indirect)
        self._rx = rx
        t.setup_queue(rx)
        tx = DriverQueue(memory, TX_QUEUE, self._queue_size(TX_QUEUE),
                         event_idx=event_idx, indirect=indirect)
        self._tx = tx
        t.setup_queue(tx)

        self.rx_buffer_size = self._default_rx_buffer_size()
        self._rx_pool = allocator.alloc(rx.size * self.rx_buffer_size, BUFFER_ALIGN)
        self.tx_buffer_size = self.header_size + self.max_frame
        self._tx_pool = allocator.alloc(tx.size * self.tx_buffer_size, BUFFER_ALIGN)
        self._tx_free = list(range(tx.size - 1, -1, -1))
        for slot in range(rx.size):  # §5.1.6.3: keep the receive queue full
            self._add_rx_buffer(slot)

        t.set_status(Status.DRIVER_OK)
        if rx.kick_needed():
            t.notify(RX_QUEUE)
            self.counters.rx_kicks += 1

    def _read_config(self) -> None:
        """MAC, link status and MTU from the configuration space (§5.1.4, §5.1.4.2)."""
        t, neg = self.transport, self.negotiated
        if F.MAC in neg:
            self.mac = t.read_config_bytes(NET_CONFIG.offset("mac0"), 6)
        else:  # one local address per driver, kept across re-probes
            self._local_mac = self._local_mac or local_mac()
            self.mac = self._local_mac
        self.link_up = (bool(t.read_config(NET_CONFIG.offset("status"), 2) & NetStatus.LINK_UP)
                        if F.STATUS in neg else True)
        self.mtu = DEFAULT_MTU
        if F.MTU in neg:
            mtu = t.read_config(NET_CONFIG.offset("mtu"), 2)
            if mtu < MIN_MTU:
                raise DeviceConfigError(
                    f"config mtu {mtu} is below {MIN_MTU}",
                    rule="mtu-out-of-range", section=spec.NET_CONFIG_DEVICE,
                )
            self.mtu = mtu

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
        if self.negotiated & BIG_RX_FEATURES and F.MRG_RXBUF not in self.negotiated:
            return self.header_size + BIG_PACKET
        return self.header_size + max(self.mtu, DEFAULT_MTU) + LINK_OVERHEAD

    def _release(self) -> None:
        """Give back rings and pools of a previous probe (the device is reset)."""
        allocator = self.memory.allocator
        assert allocator is not None
        for q in (self._rx, self._tx):
            if q is not None:
                q.release()
        for pool in (self._rx_pool, self._tx_pool, *self._tx_big.values()):
            if pool:
                allocator.free(pool)
        self._tx_big = {}
        self._rx = self._tx = None
        self._rx_pool = self._tx_pool = 0
        self._tx_free = []
        self._tx_unkicked = 0
        self._received = []

    def remove(self) -> None:
        """Reset the device and give back every ring and buffer."""
        self.transport.reset()
        self._release()

    # the stack's device protocol
    def capabilities(self) -> DeviceCapabilities:
        return DeviceCapabilities(mtu=self.mtu, max_burst=self._tx.size if self._tx else None)

    def transmit(self, frame: bytes, meta: TxMeta | None = None) -> bool:
        """Queue one Ethernet frame behind its virtio_net_hdr (§5.1.6.2): flags 0 and
        gso_type NONE without ``meta``; with ``meta`` the checksum and segmentation
        offloads it asks for, built by :func:`driver.tx_header.build_tx_header` from the
        negotiated features (``ValueError`` for one that was not negotiated). A
        segmented packet may be up to 64 KiB of IP packet; anything else up to the MTU
        plus the Ethernet header. False when the TX ring is full after reaping completed
        transmissions, when guest memory has no room for a large packet, or when the
        device is broken."""
        tx = self._tx
        if tx is None:
            raise ValueError("transmit before probe()")
        hdr = PLAIN if meta is None else build_tx_header(frame, meta, self.negotiated)
        limit = MAX_GSO_FRAME if hdr.gso_type else self.max_frame
        if not 0 < len(frame) <= limit:
            raise ValueError(
                f"frame of {len(frame)} bytes; the link takes 1..{self.max_frame} "
                f"(mtu {self.mtu} + {LINK_OVERHEAD}, {spec.NET_CONFIG_DRIVER}), a "
                f"segmented packet up to {MAX_GSO_FRAME}"
            )
        if self.broken:
            self.counters.drop("device-broken")
            return False
        try:
            self._reap_tx()
        except DriverProtocolError as err:
            self._device_broke(err)
            return False
        use_indirect = self.config.use_indirect and tx.indirect
        separate = self.config.tx_header_separate
        needed = 1 if use_indirect or not separate else 2
        if tx.num_free < needed or not self._tx_free:
            self.counters.tx_ring_full += 1
            return False
        hs = self.header_size
        big = 0
        if hs + len(frame) > self.tx_buffer_size:
            allocator = self.memory.allocator
            assert allocator is not None
            try:
                big = allocator.alloc(hs + len(frame), BUFFER_ALIGN)
            except OutOfGuestMemory:
                self.counters.tx_no_memory += 1
                return False
        slot = self._tx_free.pop()
        if big:
            self._tx_big[slot] = big
        addr = big or self._tx_pool + slot * self.tx_buffer_size
        self.memory.write(addr, self._tx_header if hdr is PLAIN else hdr.emit(hs))
        self.memory.write(addr + hs, frame)
        out = [(addr, hs), (addr + hs, len(frame))] if separate else [(addr, hs + len(frame))]
        tx.add(out, [], slot, use_indirect=use_indirect)
        self._tx_unkicked += 1
        counters = self.counters
        counters.tx_frames += 1
        counters.tx_bytes += len(frame)
        if hdr.gso_type:
            counters.tx_gso_packets += 1
        if hdr.flags:
            counters.tx_csum_offloads += 1
        return True

    def flush(self) -> None:
        """Notify the device once for the frames queued since the last flush, unless it
        suppressed notifications (§2.7.10)."""
        tx = self._tx
        if tx is None or self.broken or not self._tx_unkicked:
            return
        self._tx_unkicked = 0
        if tx.kick_needed():
            self.transport.notify(TX_QUEUE)
            self.counters.tx_kicks += 1
        else:
            self.counters.tx_kicks_suppressed += 1

    def receive(self) -> list[RxFrame]:
        frames, self._received = self._received, []
        return frames

    # interrupts and completion
    def handle_interrupt(self) -> None:
        """Read and acknowledge InterruptStatus (§4.2.3.4), then handle a configuration
        change (device status, link status) and used buffers (reap TX, reap RX, refill).
        Device misbehaviour is recorded, never raised."""
        self.counters.interrupts += 1
        t = self.transport
        isr = t.interrupt_status()
        if isr:
            t.ack_interrupt(isr)
        if isr & InterruptStatus.CONFIG_CHANGE:
            self.counters.config_interrupts += 1
            self._config_changed()
        if isr & InterruptStatus.USED_BUFFER:
            self._process_used()

    def poll(self) -> None:
        """Reap TX and RX without an interrupt (polling-mode users)."""
        if self._rx is None:
            raise ValueError("poll before probe()")
        self._process_used()

    def _config_changed(self) -> None:
        try:
            if self.transport.status() & Status.DEVICE_NEEDS_RESET:
                self.needs_reset = True
                self.broken = True
            if F.STATUS in self.negotiated:
                status = self.transport.read_config(NET_CONFIG.offset("status"), 2)
                self.link_up = bool(status & NetStatus.LINK_UP)
        except DriverProtocolError as err:
            self._device_broke(err)

    def _device_broke(self, err: DriverProtocolError) -> None:
        self.errors.append(err)
        self.broken = True

    def _process_used(self) -> None:
        if self.broken or self._rx is None:
            return
        if self._reaping:  # re-entered from a notification the device answered at once
            self._reap_again = True
            return
        self._reaping = True
        try:
            for _ in range(MAX_REAP_ROUNDS):
                self._reap_again = False
                self._reap_tx()
                self._reap_rx()
                if not self._reap_again:
                    break
        except DriverProtocolError as err:
            self._device_broke(err)
        finally:
            self._reaping = False

    def _reap_tx(self) -> None:
        tx = self._tx
        assert tx is not None
        while (entry := tx.get_used()) is not None:
            slot, _ = entry
            assert isinstance(slot, int)
            big = self._tx_big.pop(slot, 0)
            if big:
                self._free(big)
            self._tx_free.append(slot)
            self.counters.used_reaped += 1

    def _free(self, addr: int) -> None:
        allocator = self.memory.allocator
        assert allocator is not None
        allocator.free(addr)

    def _reap_rx(self) -> None:
        """Process used RX buffers with notifications off, refill, re-enable and re-check
        (the loop of §2.7.14 and §5.1.6.4)."""
        rx = self._rx
        assert rx is not None
        rx.disable_interrupts()
        for _ in range(MAX_REAP_ROUNDS):
            returned: list[int] = []
            while (entry := rx.get_used()) is not None:
                slot, length = entry
                assert isinstance(slot, int)
                self.counters.used_reaped += 1
                returned.append(slot)
                self._deliver_rx(slot, length, returned)
            if returned:
                for slot in returned:
                    self._add_rx_buffer(slot)
                self.counters.rx_refills += len(returned)
                if rx.kick_needed():
                    self.transport.notify(RX_QUEUE)
                    self.counters.rx_kicks += 1
            if not rx.enable_interrupts():
                return
            rx.disable_interrupts()
        rx.enable_interrupts()

    def _merge_buffers(self, count: int, returned: list[int]) -> bytes:
        """The data of the next ``count`` used buffers of a mergeable packet."""
        rx = self._rx
        assert rx is not None
        parts: list[bytes] = []
        for i in range(count):
            entry = rx.get_used()
            if entry is None:
                raise DriverProtocolError(
                    f"num_buffers says {count + 1} buffers, the used ring has {i + 1}",
                    rule="rx-num-buffers-beyond-used", section=spec.NET_RX_DEVICE,
                )
            slot, length = entry
            assert isinstance(slot, int)
            self.counters.used_reaped += 1
            returned.append(slot)
            parts.append(self.memory.read(self._rx_pool + slot * self.rx_buffer_size, length))
        return b"".join(parts)

    def _add_rx_buffer(self, slot: int) -> None:
        rx = self._rx
        assert rx is not None
        rx.add([], [(self._rx_pool + slot * self.rx_buffer_size, self.rx_buffer_size)], slot)

    def _deliver_rx(self, slot: int, length: int, returned: list[int]) -> None:
        """Turn a used RX buffer — with MRG_RXBUF, and the ``num_buffers - 1`` used
        buffers after it (§5.1.6.4) — into an :class:`RxFrame`, or record why not. The
        slots of the extra buffers are appended to ``returned`` for refilling."""
        hs = self.header_size
        addr = self._rx_pool + slot * self.rx_buffer_size
        try:
            if length < hs:
                raise DriverProtocolError(
                    f"received buffer of {length} bytes is shorter than the "
                    f"{hs}-byte virtio_net_hdr",
                    rule="rx-shorter-than-header", section=spec.NET_RX,
                )
            hdr = NetHdr.parse(self.memory.read(addr, hs), hs)
            check_rx_header(hdr, self.negotiated)
        except DriverProtocolError as err:
            self.errors.append(err)
            self.counters.drop(err.rule)
            return
        data = self.memory.read(addr + hs, length - hs)
        if hdr.num_buffers > 1:
            try:
                data += self._merge_buffers(hdr.num_buffers - 1, returned)
            except DriverProtocolError as err:
                self.errors.append(err)
                self.counters.drop(err.rule)
                return
        if not data:
            self.counters.drop("rx-empty-frame")
            return
        partial = hdr.needs_csum
        self._received.append(RxFrame(
            data=data,
            csum_verified=hdr.data_valid,
            csum_partial=partial,
            csum_start=hdr.csum_start if partial else None,
            csum_offset=hdr.csum_offset if partial else None,
            segment_size=hdr.gso_size if hdr.gso_kind != GsoType.NONE else None,
        ))
        self.counters.rx_frames += 1
        self.counters.rx_bytes += len(data)
