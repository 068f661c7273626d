"""The virtio network device (§5.1): one receive and one transmit queue.

TX (§5.1.6.2): on a notification the device pops every available chain, checks the
virtio_net_hdr against the negotiated features and its profile, completes checksums and
segments (emulator/offload), hands the frames to its backend and returns the chain with
used length 0. RX (§5.1.6.4): a frame from the backend is checksum-verified and coalesced
as the negotiated GUEST_ features allow, then written after its header into one receive
buffer, or with MRG_RXBUF into as many as it needs. Header rules the driver breaks are
recorded in the monitor and counted as drops; ring rules it breaks put the device in
DEVICE_NEEDS_RESET.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from emulator.backends.base import Backend
from emulator.core import DeviceCore
from emulator.monitor import DRIVER
from emulator.net.counters import NetCounters
from emulator.offload import (
    CoalesceConfig,
    Coalesced,
    Coalescer,
    Note,
    OffloadError,
    segment_packet,
)
from emulator.offload.rules import rule as offload_rule
from emulator.profiles import Action, Profile, get_profile
from emulator.virtqueue import Chain, ChainError, DeviceQueue
from stack.wire.ethernet import HEADER_LEN, VLAN_TAG_LEN, EthernetHeader
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
from virtio.errors import DeviceProtocolError, GuestMemoryError, RingError, WireError
from virtio.features import FeatureSet, Level, Violation, net_hdr_size
from virtio.layouts import NET_CONFIG
from virtio.memory import GuestMemory
from virtio.net_hdr import NetHdr

F = FeatureBit
_RX_PLAIN = NetHdr()

IMPLEMENTED = FeatureSet.of(
    F.VERSION_1, F.MAC, F.MTU, F.STATUS, F.EVENT_IDX, F.INDIRECT_DESC,
    F.CSUM, F.HOST_TSO4, F.HOST_TSO6, F.HOST_ECN, F.HOST_UFO, F.HOST_USO,
    F.GUEST_CSUM, F.GUEST_TSO4, F.GUEST_TSO6, F.GUEST_ECN, F.MRG_RXBUF,
)
"""What this device can do today (§5.1.3): transmit checksum offload and segmentation;
on receive, checksum verification (DATA_VALID) and TCP coalescing into big buffers."""

MAX_NUM_BUFFERS = 0xFFFF
"""num_buffers is a le16 (§5.1.6)."""
RX_OFFLOADS = FeatureSet.of(F.GUEST_CSUM, F.GUEST_TSO4, F.GUEST_TSO6, F.GUEST_ECN)
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
_TX_IGNORED_FLAGS = int(NetHdrFlag.DATA_VALID | NetHdrFlag.RSC_INFO)


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
    profile: str = "strict"
    """Device personality for what the spec leaves open (emulator/profiles.py):
    "strict", "linux" or "qemu"."""

    def __post_init__(self) -> None:
        get_profile(self.profile)  # ValueError naming the known profiles
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
        broken = offered.dependency_violations(Level.MUST)
        if broken:
            raise ValueError(
                "the device must not offer a feature without its requirements: "
                + "; ".join(map(str, broken))
            )

    @property
    def features(self) -> FeatureSet:
        return IMPLEMENTED if self.offered is None else self.offered


def _link_header_len(frame: bytes) -> int:
    """Ethernet header length, 802.1Q tag included ("low level ethernet header length",
    §5.1.4.1)."""
    try:
        return EthernetHeader.parse(frame).length
    except WireError:
        return HEADER_LEN


class NetDevice:
    """A :class:`~emulator.core.DeviceFunction` for the network device (§5.1)."""

    RX_QUEUE = 0
    TX_QUEUE = 1

    def __init__(self, config: NetDeviceConfig | None = None) -> None:
        self.config = config if config is not None else NetDeviceConfig()
        self.counters = NetCounters()
        self.core: DeviceCore | None = None
        self.backend: Backend | None = None
        self.device_id: int = DeviceId.NET
        self.num_queues: int = 2
        self.queue_size_max: int = self.config.queue_size_max
        self.link_up = self.config.link_up
        self.profile: Profile = get_profile(self.config.profile)
        self.call_later: Callable[[int, Callable[[], object]], object] | None = None
        """Timer service (virtual ns) for the receive coalescing window; without one,
        each received frame is flushed at once (no coalescing across frames)."""
        self._gro: Coalescer | None = None
        self._gro_timer = False
        self.tx_tap: Callable[[NetHdr, bytes], None] | None = None
        """Called with each TX chain's header and frame as the driver handed them over,
        before validation or offloads (a capture of what the driver sent)."""
        self._rx_kick_wanted = False

    # DeviceFunction
    def bind(self, core: DeviceCore) -> None:
        self.core = core

    def offered_features(self) -> FeatureSet:
        return self.config.features

    def check_features(self, accepted: FeatureSet) -> list[Violation]:
        return []

    def config_bytes(self) -> bytes:
        """virtio_net_config (§5.1.4): ``status`` holds LINK_UP when STATUS is offered
        and the link is up; ``mtu`` is set when MTU is offered; one queue pair; speed
        and duplex unknown (SPEED_DUPLEX is not offered); no RSS."""
        offered = self.config.features
        status = int(NetStatus.LINK_UP) if F.STATUS in offered and self.link_up else 0
        mtu = self.config.mtu if F.MTU in offered else 0
        return NET_CONFIG.fmt.pack(
            *self.config.mac, status, 1, mtu, SPEED_UNKNOWN, DUPLEX_UNKNOWN, 0, 0, 0
        )

    def write_config(self, offset: int, data: bytes) -> None:
        self._violation("config-write", spec.NET_CONFIG_DRIVER,
                        f"write of {data.hex()} at configuration offset {offset:#x}: every "
                        "field is read-only", action="ignored")

    def activate(self, core: DeviceCore) -> None:
        rx = core.queue(self.RX_QUEUE)
        self._rx_kick_wanted = False
        neg = self.negotiated
        self._gro = None
        if neg.bits & RX_OFFLOADS.bits:
            # §5.1.6.4: coalesced packets only of the kinds the driver accepted
            self._gro = Coalescer(CoalesceConfig(
                tcp4=F.GUEST_TSO4 in neg, tcp6=F.GUEST_TSO6 in neg, ecn=F.GUEST_ECN in neg,
                guest_csum=F.GUEST_CSUM in neg))
        if rx is not None:
            rx.disable_notifications(core.memory)  # re-enabled when RX runs dry
        self._process_tx()

    def queue_notify(self, index: int) -> None:
        if index == self.RX_QUEUE:
            self.counters.rx_notifications += 1
        elif index == self.TX_QUEUE:
            self.counters.tx_notifications += 1
            self._process_tx()

    def interrupt_raised(self, bits: InterruptStatus) -> None:
        if bits & InterruptStatus.USED_BUFFER:
            self.counters.interrupts += 1
        if bits & InterruptStatus.CONFIG_CHANGE:
            self.counters.config_interrupts += 1

    def reset(self) -> None:
        """The counters and the link state outlive a reset."""
        self._rx_kick_wanted = False
        self._gro = None

    # outside world
    def attach(self, backend: Backend) -> None:
        self.backend = backend
        backend.set_receiver(self.receive)

    @property
    def negotiated(self) -> FeatureSet:
        return self.core.driver_features if self.core is not None else FeatureSet()

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

    # helpers
    def _violation(
        self, rule: str, section: spec.Section | str, detail: str, *, action: str,
        queue: int | None = None, descriptor: int | None = None,
    ) -> None:
        if self.core is not None:
            self.core.monitor.record(DRIVER, rule, str(section), detail, queue=queue,
                                     descriptor=descriptor, action=action)

    def _signal(self, core: DeviceCore, q: DeviceQueue) -> None:
        """After a batch of used buffers: interrupt unless the driver suppressed it."""
        if q.needs_interrupt(core.memory):
            core.raise_interrupt(InterruptStatus.USED_BUFFER)
        else:
            self.counters.interrupts_suppressed += 1

    def _max_frame(self, frame: bytes) -> tuple[int, bool]:
        """Largest frame this device passes and whether the limit is the negotiated
        MTU (§5.1.4.1). Without MTU negotiated the device still has its own limit:
        mtu plus the Ethernet header and one VLAN tag."""
        if F.MTU in self.negotiated:
            return self.config.mtu + _link_header_len(frame), True
        return self.config.mtu + HEADER_LEN + VLAN_TAG_LEN, False

    # transmit, §5.1.6.2
    def _process_tx(self) -> None:
        core = self.core
        if core is None or not core.live:
            return
        q = core.queue(self.TX_QUEUE)
        if q is None:
            return
        memory = core.memory
        used = 0
        while core.live:
            q.disable_notifications(memory)
            while (chain := q.pop(memory)) is not None:
                self._transmit(core, chain)
                q.push_used(memory, chain.head, 0)
                used += 1
            # Re-enable, then re-check: a chain made available after the last pop and
            # before notifications were on again would otherwise wait forever.
            q.enable_notifications(memory)
            if q.pending(memory) == 0:
                break
        if used:
            self._signal(core, q)

    def _tx_drop(self, reason: str, chain: Chain, detail: str = "",
                 section: spec.Section | None = None) -> None:
        self.counters.drop(reason)
        if section is not None:
            self._violation(reason, section, detail, action="dropped",
                            queue=self.TX_QUEUE, descriptor=chain.head)

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
        if self.tx_tap is not None:
            self.tx_tap(hdr, frame)
        if not self._tx_features_ok(hdr, chain):
            return
        if hdr.flags & _TX_IGNORED_FLAGS:
            self._violation("tx-hdr-flags", spec.NET_TX_DRIVER,
                            f"flags {hdr.flags:#x}: DATA_VALID / RSC_INFO are RX-only; "
                            "ignored", action="ignored",
                            queue=self.TX_QUEUE, descriptor=chain.head)
        if hdr.num_buffers != 0:
            self._violation("tx-num-buffers", spec.NET_TX_DRIVER,
                            f"num_buffers {hdr.num_buffers} on TX (the driver MUST set 0)",
                            action="ignored", queue=self.TX_QUEUE, descriptor=chain.head)
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
                err, queue=self.TX_QUEUE, descriptor=chain.head,
                action="refused" if err.stage == "reject" else "dropped",
            )
            return
        self._record_notes(result.notes, chain)
        if gso and F.MTU in negotiated and not self._segments_fit(result.frames, hdr, chain):
            return
        for out in result.frames:
            self.backend.send(out)
            counters.tx_frames += 1
            counters.tx_bytes += len(out)
        counters.tx_packets += 1
        if result.seed is not None:
            counters.tx_seeds[result.seed] = counters.tx_seeds.get(result.seed, 0) + 1
        if result.path == "segmented":
            counters.tx_gso_packets += 1
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
        if hdr.flags & NetHdrFlag.NEEDS_CSUM and F.CSUM not in negotiated:
            problems.append(("tx-csum-not-negotiated",
                             "NEEDS_CSUM set but CSUM was not negotiated"))
        for rule, detail in problems:
            if self.profile.action(rule) in (Action.REJECT, Action.DROP):
                self._tx_drop(rule, chain, detail, spec.NET_TX_DRIVER)
                return False
            self._violation(rule, spec.NET_TX_DRIVER, detail, action="allowed",
                            queue=self.TX_QUEUE, descriptor=chain.head)
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
                        queue=self.TX_QUEUE, descriptor=chain.head)
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
                                action=note.action.value, queue=self.TX_QUEUE,
                                descriptor=chain.head)

    # receive, §5.1.6.4
    def receive(self, frame: bytes) -> bool:
        """A frame from the network; True when it was placed in a receive buffer."""
        counters = self.counters
        core = self.core
        q = core.queue(self.RX_QUEUE) if core is not None and core.live else None
        if core is None or q is None:
            counters.drop("rx-not-ready")
            return False
        if not self.link_up:
            counters.drop("rx-link-down")
            return False
        if len(frame) < HEADER_LEN:
            counters.drop("rx-runt")
            return False
        limit, _ = self._max_frame(frame)
        if len(frame) > limit:
            counters.drop("rx-oversize")  # §5.1.4.1: nothing beyond mtu + header
            return False
        gro = self._gro
        if gro is None:
            return self._deliver(core, q, frame, _RX_PLAIN)
        for packet in gro.push(frame):
            self._deliver_coalesced(core, q, packet)
        if gro.held:
            if self.call_later is None:
                self._flush_rx()
            elif not self._gro_timer:
                self._gro_timer = True
                self.call_later(self.config.gro_flush_ns, self._flush_rx)
        return True

    def _flush_rx(self) -> None:
        """End of the coalescing window: what is held goes to the driver."""
        self._gro_timer = False
        core, gro = self.core, self._gro
        if core is None or gro is None:
            return
        q = core.queue(self.RX_QUEUE) if core.live else None
        held = gro.flush()
        if q is None:
            for _ in held:
                self.counters.drop("rx-not-ready")
            return
        for packet in held:
            self._deliver_coalesced(core, q, packet)

    def _deliver_coalesced(self, core: DeviceCore, q: DeviceQueue, packet: Coalesced) -> None:
        if self._deliver(core, q, packet.frame, packet.hdr) and packet.segments > 1:
            self.counters.rx_coalesced += 1
            self.counters.rx_coalesced_segments += packet.segments

    def _deliver(self, core: DeviceCore, q: DeviceQueue, frame: bytes, hdr: NetHdr) -> bool:
        counters = self.counters
        try:
            return self._place(core, q, frame, hdr)
        except DeviceProtocolError as err:
            core.fail(err, queue=self.RX_QUEUE)
        except GuestMemoryError as err:
            core.fail(RingError(str(err), rule="ring-out-of-memory",
                                section=spec.SPLIT_VIRTQUEUES), queue=self.RX_QUEUE)
        counters.drop("rx-ring-error")
        return False

    def _pop_rx(self, q: DeviceQueue, memory: GuestMemory) -> Chain | None:
        """The next receive buffer. Out of buffers: ask for the refill notification,
        then re-check, so a buffer added in between is not missed (§2.7.10; vhost-net
        handle_rx)."""
        chain = q.pop(memory)
        if chain is None:
            q.enable_notifications(memory)
            self._rx_kick_wanted = True
            chain = q.pop(memory)
            if chain is None:
                return None
        if self._rx_kick_wanted:
            q.disable_notifications(memory)
            self._rx_kick_wanted = False
        if chain.writable_len == 0:
            raise ChainError(
                f"receive chain {chain.head} has no device-writable buffer",
                rule="rx-chain-not-writable", section=spec.NET_RX_BUFFERS,
                queue=self.RX_QUEUE, descriptor=chain.head,
            )
        return chain

    def _place(self, core: DeviceCore, q: DeviceQueue, frame: bytes, hdr: NetHdr) -> bool:
        """Header and frame into receive buffers (§5.1.6.4): one buffer, or with
        MRG_RXBUF as many as it takes, every one but the last filled completely and
        ``num_buffers`` in the first header (§5.1.6.4.1)."""
        counters = self.counters
        memory = core.memory
        hsize = self.header_size()
        need = hsize + len(frame)
        mergeable = F.MRG_RXBUF in self.negotiated
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
                if chains:
                    q.enable_notifications(memory)
                    self._rx_kick_wanted = True
                counters.drop("rx-no-buffer")
                return False
            counters.drop("rx-buffer-too-small")
            self._violation("rx-buffer-too-small", spec.NET_RX_BUFFERS_DRIVER,
                            f"receive buffer of {chains[0].writable_len} bytes cannot hold "
                            f"a {len(frame)}-byte frame and its {hsize}-byte header",
                            action="dropped", queue=self.RX_QUEUE,
                            descriptor=chains[0].head)
            return False
        # §5.1.6.4.1: num_buffers is 1 without MRG_RXBUF (the 10-byte legacy header has
        # none); flags and gso fields as the coalescer decided (all 0 without offloads).
        data = memoryview(hdr.with_(num_buffers=len(chains)).emit(hsize) + frame)
        pos = 0
        for chain in chains:
            n = min(chain.writable_len, need - pos)
            chain.write(memory, data[pos:pos + n])
            q.push_used(memory, chain.head, n)
            pos += n
            counters.rx_chains += 1
            counters.rx_descriptors += chain.descriptors
        counters.rx_frames += 1
        counters.rx_bytes += len(frame)
        self._signal(core, q)
        return True
