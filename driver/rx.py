"""One receive queue of the virtio-net driver: its buffers, refill, and turning used
buffers into :class:`~stack.device.RxFrame` (virtio-v1.2 §5.1.6.3 Setting Up Receive
Buffers, §5.1.6.4 Processing of Incoming Packets).

Every buffer is a fixed slot of one pool; a used buffer is checked against the header
rules of the negotiated features (:func:`check_rx_header`), joined with the rest of a
mergeable packet (MRG_RXBUF), and refilled at once. Device misbehaviour is a
:class:`~virtio.errors.DriverProtocolError`: per packet it is recorded and the packet
dropped; a broken ring propagates to the driver.
"""

from __future__ import annotations

from collections.abc import Callable

from driver.counters import DriverCounters
from driver.virtqueue import DriverQueue
from stack.device import RxFrame
from stack.wire.ethernet import HEADER_LEN, VLAN_TAG_LEN
from virtio import spec
from virtio.constants import FeatureBit, GsoType, NetHdrFlag
from virtio.errors import DriverProtocolError
from virtio.features import FeatureSet
from virtio.memory import GuestMemory
from virtio.net_hdr import NetHdr

F = FeatureBit

MAX_REAP_ROUNDS = 1024
"""Bound on process / re-enable / re-check rounds in one interrupt (§2.7.14)."""
RX_GSO_FEATURES: dict[int, tuple[FeatureBit, ...]] = {
    GsoType.TCPV4: (F.GUEST_TSO4,),
    GsoType.TCPV6: (F.GUEST_TSO6,),
    GsoType.UDP: (F.GUEST_UFO,),
    GsoType.UDP_L4: (F.GUEST_USO4, F.GUEST_USO6),
}
"""Which feature allows the device to send each gso_type (§5.1.6.4.1)."""
RX_QUIRKS = frozenset({"rx-len-from-descriptor", "ignore-num-buffers",
                       "rx-needs-csum-as-verified", "rx-needs-csum-as-plain"})
"""The driver quirks (driver/quirks.py) the receive path implements."""
_ETH_VLAN = 0x8100
_ETH_IPV4, _ETH_IPV6 = 0x0800, 0x86DD


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
    if hdr.flags & NetHdrFlag.RSC_INFO:
        if F.RSC_EXT not in negotiated:
            raise DriverProtocolError(
                "RSC_INFO set without RSC_EXT negotiated",
                rule="rx-rsc-info-not-negotiated", section=spec.NET_RX_DEVICE,
            )
        if kind == GsoType.NONE:
            raise DriverProtocolError(
                "RSC_INFO on a packet with gso_type NONE (only coalesced packets carry it)",
                rule="rx-rsc-info-without-gso", section=spec.NET_RX_DEVICE,
            )
    if F.HASH_REPORT not in negotiated and (hdr.hash_report or hdr.hash_value):
        raise DriverProtocolError(  # only reachable with a hash-sized header
            "hash fields set without HASH_REPORT", rule="rx-hash-not-negotiated",
            section=spec.NET_HASH_REPORT,
        )
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


def l4_offset(frame: bytes) -> int | None:
    """Offset of the TCP/UDP header of an Ethernet frame (one optional 802.1Q tag;
    IPv4 with options, IPv6 without extension headers), or None. With RSC_INFO the
    device reuses csum_start/csum_offset for counts, so the driver finds the transport
    header itself (§5.1.6.4.1)."""
    if len(frame) < HEADER_LEN:
        return None
    off = HEADER_LEN
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == _ETH_VLAN and len(frame) >= HEADER_LEN + VLAN_TAG_LEN:
        ethertype = int.from_bytes(frame[16:18], "big")
        off += VLAN_TAG_LEN
    if ethertype == _ETH_IPV4 and len(frame) > off:
        ihl = (frame[off] & 0x0F) * 4
        return off + ihl if ihl >= 20 and len(frame) >= off + ihl else None
    if ethertype == _ETH_IPV6 and len(frame) >= off + 40:
        return off + 40
    return None


class RxPath:
    """receiveqN: the queue, its buffer pool (one ``buffer_size`` slot per entry)."""

    def __init__(
        self,
        queue: DriverQueue,
        pool: int,
        buffer_size: int,
        *,
        header_size: int,
        negotiated: FeatureSet,
        counters: DriverCounters,
        errors: list[DriverProtocolError],
        memory: GuestMemory,
        notify: Callable[[int], None],
        quirks: frozenset[str] = frozenset(),
    ) -> None:
        self.queue = queue
        self.pool = pool
        self.buffer_size = buffer_size
        self.header_size = header_size
        self.negotiated = negotiated
        self.counters = counters
        self.errors = errors
        self.memory = memory
        self._notify = notify
        self.pair = queue.index // 2
        self.frames = 0
        """Frames delivered from this queue."""
        self.quirks = quirks & RX_QUIRKS

    def fill(self) -> None:
        """Post every slot (§5.1.6.3: keep the receive queue full)."""
        for slot in range(self.queue.size):
            self._add(slot)

    def kick(self) -> None:
        if self.queue.kick_needed():
            self._notify(self.queue.index)
            self.counters.rx_kicks += 1

    def _add(self, slot: int) -> None:
        self.queue.add([], [(self.pool + slot * self.buffer_size, self.buffer_size)], slot)

    def reap(self, out: list[RxFrame]) -> None:
        """Process used buffers with notifications off, refill, re-enable and re-check
        (the loop of §2.7.14 and §5.1.6.4); frames go to ``out``."""
        rx = self.queue
        rx.disable_interrupts()
        for _ in range(MAX_REAP_ROUNDS):
            returned: list[int] = []
            while (entry := rx.get_used()) is not None:
                slot, length = entry
                assert isinstance(slot, int)
                self.counters.used_reaped += 1
                returned.append(slot)
                self._deliver(slot, length, returned, out)
            if returned:
                for slot in returned:
                    self._add(slot)
                self.counters.rx_refills += len(returned)
                self.kick()
            if not rx.enable_interrupts():
                return
            rx.disable_interrupts()
        rx.enable_interrupts()

    def _merge(self, count: int, returned: list[int]) -> bytes:
        """The data of the next ``count`` used buffers of a mergeable packet."""
        rx = self.queue
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
            parts.append(self.memory.read(self.pool + slot * self.buffer_size, length))
        return b"".join(parts)

    def _deliver(self, slot: int, length: int, returned: list[int], out: list[RxFrame]) -> None:
        """Turn a used buffer — with MRG_RXBUF, and the ``num_buffers - 1`` used buffers
        after it (§5.1.6.4) — into an :class:`RxFrame`, or record why not. The slots of
        the extra buffers are appended to ``returned`` for refilling."""
        hs = self.header_size
        addr = self.pool + slot * self.buffer_size
        quirks = self.quirks
        if quirks and "rx-len-from-descriptor" in quirks:
            length = self.buffer_size  # au-ts/sddf PR #506
        try:
            if length < hs:
                raise DriverProtocolError(
                    f"received buffer of {length} bytes is shorter than the "
                    f"{hs}-byte virtio_net_hdr",
                    rule="rx-shorter-than-header", section=spec.NET_RX,
                )
            hdr = NetHdr.parse(self.memory.read(addr, hs), hs)
            if quirks and "ignore-num-buffers" in quirks:
                hdr = hdr.with_(num_buffers=1)
            check_rx_header(hdr, self.negotiated)
            data = self.memory.read(addr + hs, length - hs)
            if hdr.num_buffers > 1:
                data += self._merge(hdr.num_buffers - 1, returned)
        except DriverProtocolError as err:
            self.errors.append(err)
            self.counters.drop(err.rule)
            return
        if not data:
            self.counters.drop("rx-empty-frame")
            return
        partial = hdr.needs_csum
        verified = hdr.data_valid
        if quirks and partial:
            if "rx-needs-csum-as-verified" in quirks:  # FreeBSD vtnet before 3008f30d
                verified, partial = True, False
            elif "rx-needs-csum-as-plain" in quirks:  # NetKVM issue #1630
                partial = False
        rsc = bool(hdr.flags & NetHdrFlag.RSC_INFO)
        start: int | None = hdr.csum_start if partial else None
        offset: int | None = hdr.csum_offset if partial else None
        if rsc:  # csum_start / csum_offset carry the counts (§5.1.6.4.1)
            start = l4_offset(data)
            offset = (16 if hdr.gso_kind in (GsoType.TCPV4, GsoType.TCPV6) else 6) \
                if start is not None else None
        hashed = F.HASH_REPORT in self.negotiated
        out.append(RxFrame(
            data=data,
            csum_verified=verified,
            csum_partial=partial,
            csum_start=start,
            csum_offset=offset,
            segment_size=hdr.gso_size if hdr.gso_kind != GsoType.NONE else None,
            segments=hdr.csum_start if rsc else None,
            dup_acks=hdr.csum_offset if rsc else None,
            queue=self.pair,
            hash_value=hdr.hash_value if hashed and hdr.hash_report else None,
            hash_report=hdr.hash_report if hashed else None,
        ))
        self.frames += 1
        self.counters.rx_frames += 1
        self.counters.rx_bytes += len(data)
