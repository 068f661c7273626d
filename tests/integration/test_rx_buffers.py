"""The three ways a driver provides receive buffers, end to end, with exact bytes and counters.

virtio-v1.2 §5.1.6.3 "Setting Up Receive Buffers" and §5.1.6.3.1 (driver requirements),
§5.1.6.4 "Processing of Incoming Packets" and §5.1.6.4.1 (device requirements):

1. small buffers: no MRG_RXBUF and none of GUEST_TSO4/6, UFO, USO4/6. The largest
   incoming packet is 1514 bytes, a buffer SHOULD hold at least 1526 (12-byte header +
   1514); the driver allocates header + max(mtu, 1500) + 14 + 4 (one VLAN tag).
2. big packets: no MRG_RXBUF, GUEST_TSO4/6 negotiated: the largest incoming packet is
   65589 bytes (14 + 40 + 65535), a buffer SHOULD hold at least 65601 bytes; the driver
   allocates header + :data:`driver.net.BIG_PACKET`.
3. mergeable buffers (MRG_RXBUF): a packet spans as many buffers as it needs; the first
   begins with the header, whose ``num_buffers`` counts them, and every buffer but the
   last is filled completely (§5.1.6.4.1).

Without MRG_RXBUF ``num_buffers`` is exactly 1 (§5.1.6.4.1). Without GUEST_TSO4/6 the
device sets ``gso_type`` NONE (§5.1.6.4.1) and, with MTU negotiated, passes nothing larger
than mtu plus the link header (§5.1.4.1); the driver posts room for at least one such
packet (§5.1.4.2). When the ring has no room the device drops ("rx-no-buffer"), asks for
the refill notification and waits for it (§2.7.10); a buffer too small for the frame
without MRG_RXBUF is the driver's fault (§5.1.6.3.1, a monitor record).

How the tests see what the device wrote: host B's interrupt line is disconnected while
packets arrive (:func:`hold_interrupts`), so the used buffers stay on the used ring; the
test reads them straight from guest memory — used ring (§2.7.8) → descriptor (§2.7.5) →
buffer — the way the driver would, then lets the driver run and compares the frames it
delivered with what was sent. Every loop is bounded (``run_until_idle(max_steps=...)``,
ring walks by the queue size).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driver.net import BIG_PACKET, DEFAULT_WANTED, DriverConfig, check_rx_header
from emulator.backends.recorder import Recorder
from emulator.monitor import DEVICE, DRIVER
from emulator.net.device import NetDeviceConfig
from emulator.offload import segment
from emulator.profiles import STRICT
from stack.device import RxFrame, TxMeta
from stack.wire.ethernet import EthernetHeader
from testbench.host import Host, HostConfig, Pair, make_pair
from testbench.loop import EventLoop
from testbench.packets import DST_MAC, SRC_MAC, OffloadPacket, Seed, payload_bytes, tcp_packet
from virtio import spec
from virtio.constants import FeatureBit as F
from virtio.constants import GsoType, NetHdrFlag
from virtio.errors import DriverProtocolError
from virtio.features import FeatureSet
from virtio.layouts import DESC, USED_ELEM
from virtio.net_hdr import NetHdr
from virtio.ring import U16_MASK

MIB = 1 << 20
HDR = 12
"""virtio_net_hdr with VERSION_1 (num_buffers included), §5.1.6."""
MAX_STEPS = 200_000
EXPERIMENTAL_ETHERTYPE = 0x88B5
"""IEEE 802 local experimental ethertype 1: a frame no offload engine looks into."""
VLAN_ID = 5

SMALL = DEFAULT_WANTED
GRO = DEFAULT_WANTED.with_(F.GUEST_CSUM, F.GUEST_TSO4, F.GUEST_TSO6)
MERGEABLE = DEFAULT_WANTED.with_(F.MRG_RXBUF)
MERGEABLE_GRO = GRO.with_(F.MRG_RXBUF)


@dataclass(frozen=True)
class Setup:
    """One way of providing receive buffers: what the receiver asks for, the MTU of both
    devices (and drivers, which negotiate MTU), the receiver's buffer size."""

    name: str
    wanted: FeatureSet
    mtu: int = 1500
    rx_buffer_size: int | None = None

    @property
    def mergeable(self) -> bool:
        return F.MRG_RXBUF in self.wanted

    @property
    def buffer_size(self) -> int:
        """The buffer size the driver picks (§5.1.6.3.1 asks for at least 1526 bytes of
        small buffers, 65601 bytes of big ones; anything ≥ 12 with MRG_RXBUF)."""
        if self.rx_buffer_size is not None:
            return self.rx_buffer_size
        if F.GUEST_TSO4 in self.wanted and not self.mergeable:
            return HDR + BIG_PACKET
        return HDR + max(self.mtu, 1500) + 14 + 4

    def __str__(self) -> str:
        return self.name


SMALL_1500 = Setup("small", SMALL)
BIG_1500 = Setup("big", GRO)
MERGEABLE_1500 = Setup("mergeable", MERGEABLE)
MERGEABLE_GRO_1500 = Setup("mergeable+gro", MERGEABLE_GRO)
MERGEABLE_GRO_1526 = Setup("mergeable+gro/1526", MERGEABLE_GRO, rx_buffer_size=1526)
FRAME_SETUPS = [
    SMALL_1500,
    BIG_1500,
    MERGEABLE_1500,
    MERGEABLE_GRO_1500,
    Setup("mergeable/1526", MERGEABLE, rx_buffer_size=1526),
    Setup("small-jumbo", SMALL, mtu=9000),
    Setup("mergeable-jumbo", MERGEABLE, mtu=9000),
    Setup("mergeable-jumbo/1526", MERGEABLE, mtu=9000, rx_buffer_size=1526),
]


# -- frames ------------------------------------------------------------------------------

def raw_frame(size: int, *, vlan: int | None = None, salt: int = 0) -> bytes:
    """A ``size``-byte Ethernet frame (no FCS) to host B with an experimental ethertype."""
    eth = EthernetHeader(DST_MAC, SRC_MAC, EXPERIMENTAL_ETHERTYPE, vlan).emit()
    return eth + payload_bytes(size - len(eth), salt)


def tcp_frame(size: int) -> bytes:
    """A ``size``-byte IPv4/TCP frame with a complete checksum and PSH (sent as is)."""
    frame = tcp_packet(size - 54, mss=None, seed=Seed.COMPLETE).frame
    assert len(frame) == size
    return frame


FrameKind = Callable[[int], bytes]
"""Builds the frame of one size class for a given MTU."""
FRAME_KINDS: dict[str, FrameKind] = {
    "min-60": lambda mtu: raw_frame(60),
    "1514": lambda mtu: raw_frame(1514, salt=1),
    "tcp-1514": lambda mtu: tcp_frame(1514),
    "max-untagged": lambda mtu: raw_frame(mtu + 14, salt=2),
    "max-tagged": lambda mtu: raw_frame(mtu + 18, vlan=VLAN_ID, salt=3),
}
"""The size classes: the minimum Ethernet frame, a full 1500-byte MTU frame (raw and
TCP), and the largest frame the MTU allows with its link header, untagged and with one
802.1Q tag (§5.1.4.1 "mtu (plus low level ethernet header length)")."""


# -- the pair and what the device wrote ---------------------------------------------------



@dataclass
class Bench:
    pair: Pair
    wire: list[bytes]
    """Frames host A put on the wire."""
    got: list[RxFrame]
    """Frames host B's driver delivered."""

    @property
    def b(self) -> Host:
        return self.pair.b

    def run(self) -> None:
        self.pair.loop.run_until_idle(max_steps=MAX_STEPS)

    def send(self, frames: list[bytes]) -> None:
        """Host A's driver transmits ``frames`` unchanged (no offload)."""
        for frame in frames:
            assert self.pair.a.driver.transmit(frame)
        self.pair.a.driver.flush()
        self.run()

    def send_tso(self, pkt: OffloadPacket) -> None:
        """Host A's driver hands its device one TSO packet to segment (§5.1.6.2)."""
        meta = TxMeta(pkt.hdr.gso_size, pkt.hdr.csum_start, pkt.hdr.csum_offset)
        assert self.pair.a.driver.transmit(pkt.frame, meta)
        self.pair.a.driver.flush()
        self.run()


def bench(setup: Setup, *, queue_size: int = 64, peer_mtu: int | None = None) -> Bench:
    """Host A (default driver: TSO, checksum offload) → wire → host B set up as ``setup``."""
    pair = make_pair(
        EventLoop(),
        a=HostConfig("a", SRC_MAC, 8 * MIB, NetDeviceConfig(mtu=peer_mtu or setup.mtu),
                     DriverConfig(queue_size=64)),
        b=HostConfig("b", DST_MAC, 8 * MIB, NetDeviceConfig(mtu=setup.mtu),
                     DriverConfig(wanted=setup.wanted, queue_size=queue_size,
                                  rx_buffer_size=setup.rx_buffer_size)),
    )
    tap = Recorder(pair.wire.a)
    pair.a.attach(tap)
    got: list[RxFrame] = []
    pair.b.on_frames = got.extend
    b = pair.b.driver
    assert b.negotiated & setup.wanted == setup.wanted
    assert b.mtu == setup.mtu and b.rx_buffer_size == setup.buffer_size
    return Bench(pair, tap.frames, got)


def lone_host(setup: Setup, *, queue_size: int = 64) -> Host:
    """Host B alone, probed, for frames fed straight into its device (no wire)."""
    host = Host(EventLoop(), HostConfig(
        "b", DST_MAC, 8 * MIB, NetDeviceConfig(mtu=setup.mtu),
        DriverConfig(wanted=setup.wanted, queue_size=queue_size,
                     rx_buffer_size=setup.rx_buffer_size)))
    host.start()
    assert host.driver.rx_buffer_size == setup.buffer_size
    return host


def hold_interrupts(host: Host) -> Callable[[], list[RxFrame]]:
    """Disconnect ``host``'s interrupt line: the device still raises InterruptStatus but
    the driver does not run, so used buffers stay on the used ring and nothing is
    refilled. Returns ``release``: reconnect, run the interrupt handler once (reap,
    deliver, refill), return the frames the driver delivered."""
    saved = host.core.on_interrupt
    host.core.on_interrupt = None

    def release() -> list[RxFrame]:
        host.core.on_interrupt = saved
        host.driver.handle_interrupt()
        return host.driver.receive()

    return release


@dataclass(frozen=True)
class UsedBuffer:
    head: int
    length: int
    """used.len: the bytes the device wrote (§2.7.8)."""
    data: bytes


def used_buffers(host: Host) -> list[UsedBuffer]:
    """The RX used entries the driver has not reaped, read from guest memory: each used
    element's id is a descriptor whose address the device wrote ``len`` bytes to."""
    q = host.driver.rx_queue
    mem = host.memory
    used_idx = mem.read_u16(q.used_addr + 2)
    pending = (used_idx - q.last_used_idx) & U16_MASK
    assert pending <= q.size
    out: list[UsedBuffer] = []
    for i in range(pending):
        slot = (q.last_used_idx + i) % q.size
        head, length = USED_ELEM.fmt.unpack(
            mem.read(q.used_addr + q.geometry.used_entry(slot), USED_ELEM.size))
        addr, size, _flags, _next = DESC.fmt.unpack(mem.read(q.desc_addr + DESC.size * head,
                                                             DESC.size))
        assert length <= size
        out.append(UsedBuffer(head, length, mem.read(addr, length)))
    return out


@dataclass(frozen=True)
class Placed:
    """One packet as the device placed it: the header of its first buffer, the used
    length of each of its buffers, and the frame (the buffers joined, header removed)."""

    hdr: NetHdr
    lengths: tuple[int, ...]
    frame: bytes


def placed(host: Host) -> list[Placed]:
    """Group the unreaped used buffers into packets: by ``num_buffers`` with MRG_RXBUF
    (§5.1.6.4: "the other buffers will not begin with a struct virtio_net_hdr"), one
    buffer a packet without it (whatever ``num_buffers`` says)."""
    bufs = used_buffers(host)
    mergeable = F.MRG_RXBUF in host.driver.negotiated
    out: list[Placed] = []
    i = 0
    while i < len(bufs):  # advances by at least one buffer a pass
        hdr = NetHdr.parse(bufs[i].data, HDR)
        n = hdr.num_buffers if mergeable else 1
        assert 1 <= n <= len(bufs) - i
        group = bufs[i:i + n]
        frame = group[0].data[HDR:] + b"".join(b.data for b in group[1:])
        out.append(Placed(hdr, tuple(b.length for b in group), frame))
        i += n
    return out


def spread(frame_len: int, buffer_size: int) -> tuple[int, ...]:
    """The used lengths of a packet of ``frame_len`` bytes in buffers of ``buffer_size``
    (§5.1.6.4.1: every buffer but the last filled completely)."""
    total = HDR + frame_len
    n = -(-total // buffer_size)
    return (buffer_size,) * (n - 1) + (total - buffer_size * (n - 1),)


def rx_counters(host: Host) -> dict[str, object]:
    c = host.device.counters
    return {
        "rx_frames": c.rx_frames, "rx_bytes": c.rx_bytes, "rx_chains": c.rx_chains,
        "rx_descriptors": c.rx_descriptors, "rx_coalesced": c.rx_coalesced,
        "rx_coalesced_segments": c.rx_coalesced_segments, "drops": dict(c.drops),
    }


def expect_counters(frames: int = 0, nbytes: int = 0, buffers: int = 0, coalesced: int = 0,
                    segments: int = 0, *, drops: dict[str, int] | None = None
                    ) -> dict[str, object]:
    """Every RX chain the driver posts is one descriptor, so descriptors == chains."""
    return {
        "rx_frames": frames, "rx_bytes": nbytes, "rx_chains": buffers,
        "rx_descriptors": buffers, "rx_coalesced": coalesced,
        "rx_coalesced_segments": segments, "drops": drops or {},
    }


def link_header_len(frame: bytes) -> int:
    return EthernetHeader.parse(frame).length


# -- every mode, every size class ---------------------------------------------------------

@pytest.mark.parametrize("kind", list(FRAME_KINDS))
@pytest.mark.parametrize("setup", FRAME_SETUPS, ids=str)
def test_each_size_class_arrives_byte_exact_in_each_mode(setup: Setup, kind: str) -> None:
    """§5.1.6.3 / §5.1.6.4: a frame of each size class (60 bytes, 1514 raw and TCP, the
    largest the MTU allows untagged and tagged, at MTU 1500 and 9000) reaches host B's
    driver byte for byte. The header in the first buffer: ``num_buffers`` 1 without
    MRG_RXBUF, else the buffers used; gso_type NONE; flags 0 except DATA_VALID for the
    verified TCP frame when GUEST_CSUM was negotiated (§5.1.6.4.1). Used lengths: every
    buffer but the last full."""
    t = bench(setup)
    frame = FRAME_KINDS[kind](setup.mtu)
    release = hold_interrupts(t.b)
    t.send([frame])
    assert t.wire == [frame]

    lengths = spread(len(frame), setup.buffer_size)
    if not setup.mergeable:
        assert lengths == (HDR + len(frame),)  # one buffer holds it
    flags = NetHdrFlag.DATA_VALID if kind == "tcp-1514" and F.GUEST_CSUM in setup.wanted else 0
    (pkt,) = placed(t.b)
    assert pkt == Placed(NetHdr(flags=flags, num_buffers=len(lengths)), lengths, frame)
    assert rx_counters(t.b) == expect_counters(1, len(frame), len(lengths))

    (rx,) = release()
    assert rx == RxFrame(frame, csum_verified=bool(flags))
    t.run()
    assert t.got == [] and t.b.driver.errors == [] and t.b.monitor.records == []
    assert t.b.driver.counters.rx_refills == len(lengths)


# -- 64 KiB coalesced TCP packets: big and mergeable -------------------------------------

COALESCED = {
    "tcp4-64000": tcp_packet(64000),
    "tcp4-max": tcp_packet(65535 - 40),
    "tcp6-max": tcp_packet(65535 - 60, ipv6=True, mss=1440),
}
"""TSO packets host A sends: 64000 bytes of payload (45 segments), and the largest IP
packet (65535 bytes, a 65549-byte frame: 46 segments), IPv4 and IPv6 — the device's
coalescer builds nothing larger (``CoalesceConfig.max_size``: the whole IP packet, header
included, at most 65535), short of the 65589 bytes §5.1.6.3 allows an IPv6 packet."""


@pytest.mark.parametrize("name", list(COALESCED))
@pytest.mark.parametrize("setup", [BIG_1500, MERGEABLE_GRO_1500, MERGEABLE_GRO_1526], ids=str)
def test_a_coalesced_64k_packet_in_big_or_mergeable_buffers(setup: Setup, name: str) -> None:
    """§5.1.6.4: host B's device coalesces host A's TSO burst into one packet for a driver
    with GUEST_CSUM + GUEST_TSO4/6; in one big buffer (num_buffers 1), or with MRG_RXBUF
    spread over ceil((12 + len) / buffer size) buffers, all but the last full
    (§5.1.6.4.1). The header says NEEDS_CSUM, the gso_type, gso_size = MSS, csum_start
    at the TCP header, csum_offset 16. The frame the driver gets is exactly the one A's
    stack handed down, and cutting it again gives exactly the segments on the wire."""
    pkt = COALESCED[name]
    t = bench(setup)
    release = hold_interrupts(t.b)
    t.send_tso(pkt)

    mss = pkt.hdr.gso_size
    payload = len(pkt.frame) - pkt.hdr.hdr_len
    segments = -(-payload // mss)
    assert len(t.wire) == segments and all(len(f) <= 1514 for f in t.wire)
    lengths = spread(len(pkt.frame), setup.buffer_size)
    ipv6 = name.startswith("tcp6")
    hdr = NetHdr(flags=NetHdrFlag.NEEDS_CSUM, gso_type=GsoType.TCPV6 if ipv6 else GsoType.TCPV4,
                 hdr_len=pkt.hdr.hdr_len, gso_size=mss, csum_start=pkt.hdr.csum_start,
                 csum_offset=16, num_buffers=len(lengths))
    assert placed(t.b) == [Placed(hdr, lengths, pkt.frame)]
    assert rx_counters(t.b) == expect_counters(1, len(pkt.frame), len(lengths), 1, segments)

    (rx,) = release()
    assert rx == RxFrame(pkt.frame, csum_partial=True, csum_start=pkt.hdr.csum_start,
                         csum_offset=16, segment_size=mss)
    assert segment(rx.data, hdr.with_(num_buffers=0), STRICT) == t.wire
    assert t.b.driver.errors == [] and t.b.driver.counters.rx_refills == len(lengths)


def test_the_spec_example_64k_packet_in_1526_byte_buffers() -> None:
    """§5.1.6.4.1: the 64054-byte packet of a 64000-byte TSO burst in 1526-byte buffers
    (the §5.1.6.3.1 minimum for small buffers) takes ceil((12 + 64054) / 1526) = 42
    buffers: 41 of 1526 bytes and one of 1500."""
    t = bench(MERGEABLE_GRO_1526)
    release = hold_interrupts(t.b)
    t.send_tso(COALESCED["tcp4-64000"])
    (pkt,) = placed(t.b)
    assert pkt.hdr.num_buffers == 42 == len(pkt.lengths)
    assert pkt.lengths == (1526,) * 41 + (1500,)
    assert [r.data for r in release()] == [COALESCED["tcp4-64000"].frame]


# -- num_buffers, driven from the device side ---------------------------------------------

@pytest.mark.parametrize(("size", "vlan", "buffers"), [
    (60, None, 1), (1514, None, 1), (1515, None, 2), (2 * 1526 - HDR, None, 2),
    (2 * 1526 - HDR + 1, None, 3), (9014, None, 6), (9018, VLAN_ID, 6),
])
def test_num_buffers_counts_the_buffers_a_packet_spans(size: int, vlan: int | None,
                                                       buffers: int) -> None:
    """§5.1.6.4.1: with MRG_RXBUF num_buffers is the number of buffers the packet
    (header included) is spread over — at the boundaries of 1526-byte buffers, up to a
    9018-byte tagged jumbo frame."""
    host = lone_host(Setup("mergeable-jumbo/1526", MERGEABLE, mtu=9000, rx_buffer_size=1526))
    release = hold_interrupts(host)
    frame = raw_frame(size, vlan=vlan)
    assert host.device.receive(frame)
    lengths = spread(size, 1526)
    assert len(lengths) == buffers
    assert placed(host) == [Placed(NetHdr(num_buffers=buffers), lengths, frame)]
    assert [r.data for r in release()] == [frame]


MODEL_SETUPS: list[tuple[Setup, int]] = [
    (Setup("small", SMALL, mtu=9000, rx_buffer_size=1530), 16),
    (Setup("small-jumbo", SMALL, mtu=9000), 16),
    (Setup("big", GRO, mtu=9000, rx_buffer_size=4000), 16),
    (Setup("mergeable/13", MERGEABLE, rx_buffer_size=HDR + 1), 128),
    (Setup("mergeable/100", MERGEABLE, mtu=9000, rx_buffer_size=100), 128),
    (Setup("mergeable/1526", MERGEABLE, mtu=9000, rx_buffer_size=1526), 8),
    (Setup("mergeable+gro/4096", MERGEABLE_GRO, mtu=9000, rx_buffer_size=4096), 4),
]
"""Receivers (with their ring size) for the model test. The mergeable ones post enough
buffer space for one mtu-sized packet, as §5.1.4.2 requires of a driver that negotiated
MTU (ring × buffer ≥ 12 + mtu + 14); the small-buffer "small" and "big" ones do not, on
purpose: their buffers are too small for jumbo frames (§5.1.6.3.1)."""


@dataclass
class RingModel:
    """What the device should do with frames while the driver does not refill: the
    buffers left, and whether it ran dry and waits for the refill notification."""

    setup: Setup
    free: int
    waiting: bool = False

    def offer(self, size: int) -> tuple[str, tuple[int, ...]]:
        """(drop reason or "", used lengths) for the next frame of ``size`` bytes."""
        lengths = spread(size, self.setup.buffer_size)
        if self.waiting:
            return "rx-no-buffer", lengths
        if not self.setup.mergeable and self.free and len(lengths) > 1:
            return "rx-buffer-too-small", lengths
        if len(lengths) > self.free:
            self.waiting = True
            return "rx-no-buffer", lengths
        self.free -= len(lengths)
        return "", lengths


@settings(max_examples=40, deadline=None)
@given(case=st.sampled_from(MODEL_SETUPS), data=st.data())
def test_placement_follows_the_buffer_model(case: tuple[Setup, int], data: st.DataObject) -> None:
    """§5.1.6.3 / §5.1.6.4.1 against a model of the ring (all buffers posted), in rounds
    during which the driver does not refill. Without MRG_RXBUF a frame takes one buffer
    (num_buffers 1) or, when header + frame do not fit, is dropped as
    "rx-buffer-too-small" and the buffer stays posted; with MRG_RXBUF it takes
    ceil((12 + len) / size) buffers. A frame that finds too few is dropped as
    "rx-no-buffer" without consuming any (QEMU virtqueue_unpop), and from then on the
    device waits for the refill notification (§2.7.10; vhost-net handle_rx): every frame
    is dropped until the driver refills. After each round the driver delivers exactly
    the placed frames, in order, refills and notifies, and placement starts afresh."""
    setup, ring = case
    frame_sizes = st.lists(st.integers(14, setup.mtu + 14), min_size=1, max_size=8)
    rounds = data.draw(st.lists(frame_sizes, min_size=1, max_size=2), label="rounds")
    host = lone_host(setup, queue_size=ring)
    drops: dict[str, int] = {}
    delivered: list[bytes] = []
    buffers = 0
    salt = 0
    for sizes in rounds:
        release = hold_interrupts(host)
        model = RingModel(setup, ring)
        expected: list[Placed] = []
        for size in sizes:
            frame = raw_frame(size, salt=salt)
            salt += 1
            reason, lengths = model.offer(size)
            if reason:
                drops[reason] = drops.get(reason, 0) + 1
            else:
                expected.append(Placed(NetHdr(num_buffers=len(lengths)), lengths, frame))
            accepted = host.device.receive(frame)
            if F.GUEST_CSUM not in setup.wanted:  # with it: test_a_dropped_frame_is_reported_...
                assert accepted == (not reason)
        host.loop.run_until_idle(max_steps=MAX_STEPS)
        assert placed(host) == expected
        assert setup.mergeable or all(p.hdr.num_buffers == 1 for p in expected)
        buffers += ring - model.free
        delivered += [p.frame for p in expected]
        assert rx_counters(host) == expect_counters(
            len(delivered), sum(map(len, delivered)), buffers, drops=drops)
        assert [r.data for r in release()] == [p.frame for p in expected]
        assert host.driver.counters.rx_refills == buffers
    assert host.monitor.count("rx-buffer-too-small") == drops.get("rx-buffer-too-small", 0)
    assert len(host.monitor.records) == drops.get("rx-buffer-too-small", 0)
    assert host.driver.errors == [] and host.driver.counters.rx_frames == len(delivered)


def test_check_rx_header_enforces_num_buffers() -> None:
    """§5.1.6.4.1 from the driver's side: without MRG_RXBUF num_buffers must be 1; with
    it, at least 1; a gso_type needs its GUEST_ feature."""
    small, mergeable = FeatureSet.of(F.VERSION_1), FeatureSet.of(F.VERSION_1, F.MRG_RXBUF)
    check_rx_header(NetHdr(num_buffers=1), small)
    check_rx_header(NetHdr(num_buffers=43), mergeable)
    cases = [
        (NetHdr(num_buffers=2), small, "rx-num-buffers-not-one"),
        (NetHdr(num_buffers=0), small, "rx-num-buffers-not-one"),
        (NetHdr(num_buffers=0), mergeable, "rx-num-buffers-zero"),
        (NetHdr(flags=NetHdrFlag.NEEDS_CSUM, gso_type=GsoType.TCPV4, gso_size=1448,
                num_buffers=1), small | FeatureSet.of(F.GUEST_CSUM), "rx-gso-not-negotiated"),
    ]
    for hdr, negotiated, rule in cases:
        with pytest.raises(DriverProtocolError) as info:
            check_rx_header(hdr, negotiated)
        assert info.value.rule == rule
        assert info.value.reference == str(spec.NET_RX_DEVICE)


# -- a driver without GUEST_TSO never sees more than its MTU ------------------------------

NO_TSO = [SMALL, SMALL.with_(F.GUEST_CSUM), MERGEABLE, MERGEABLE.with_(F.GUEST_CSUM)]


@settings(max_examples=25, deadline=None)
@given(data=st.data(), wanted=st.sampled_from(NO_TSO), ipv6=st.booleans(),
       vlan=st.sampled_from([None, VLAN_ID]), peer_mtu=st.sampled_from([1500, 9000]))
def test_a_driver_without_guest_tso_never_sees_more_than_its_mtu(
    data: st.DataObject, wanted: FeatureSet, ipv6: bool, vlan: int | None, peer_mtu: int,
) -> None:
    """§5.1.6.4.1 / §5.1.4.1: whatever TSO burst the peer sends — any payload up to 64 KiB,
    any MSS its MTU allows, IPv4 or IPv6, tagged or not, a peer MTU of 1500 or 9000 —
    a driver that declined GUEST_TSO4/6 gets each wire frame that fits mtu + link header
    unchanged, with gso_type NONE and num_buffers 1 (its buffers hold a whole frame), and
    the device drops each larger one as "rx-oversize"."""
    l3l4 = 60 if ipv6 else 40
    mss = data.draw(st.integers(536, peer_mtu - l3l4), label="mss")
    payload = data.draw(st.integers(1, min(65535 - l3l4, 120 * mss)), label="payload")
    t = bench(Setup("no-tso", wanted), queue_size=256, peer_mtu=peer_mtu)
    release = hold_interrupts(t.b)
    t.send_tso(tcp_packet(payload, mss=mss, ipv6=ipv6, vlan=vlan))

    assert len(t.wire) == -(-payload // mss)
    fits = [f for f in t.wire if len(f) <= 1500 + link_header_len(f)]
    oversize = len(t.wire) - len(fits)
    flags = NetHdrFlag.DATA_VALID if F.GUEST_CSUM in wanted and vlan is None else 0
    assert placed(t.b) == [Placed(NetHdr(flags=flags, num_buffers=1), (HDR + len(f),), f)
                           for f in fits]
    assert rx_counters(t.b) == expect_counters(
        len(fits), sum(map(len, fits)), len(fits),
        drops={"rx-oversize": oversize} if oversize else {})
    got = release()
    assert [r.data for r in got] == fits
    assert all(r.segment_size is None and not r.csum_partial for r in got)
    assert t.b.driver.errors == [] and t.b.driver.counters.drops == {}


@pytest.mark.parametrize("wanted", [SMALL, MERGEABLE], ids=["small", "mergeable"])
def test_a_driver_without_mtu_or_guest_tso_never_sees_a_jumbo_frame(wanted: FeatureSet) -> None:
    """§5.1.6.3: without GUEST_TSO4/6, UFO, USO4/6 "the maximum incoming packet will be
    1514 bytes", so §5.1.6.3.1 asks for 1526-byte buffers. A driver that also declined
    MTU (its MTU is 1500) behind a device configured for 9000 must not get a 9014-byte
    frame, and its 1530-byte buffers did not break §5.1.6.3.1: the device should drop
    the frame as oversize without recording a driver violation."""
    host = lone_host(Setup("no-mtu", wanted.without(F.MTU), mtu=9000, rx_buffer_size=1530))
    assert F.MTU not in host.driver.negotiated and host.driver.mtu == 1500
    release = hold_interrupts(host)
    assert not host.device.receive(raw_frame(9014))
    assert host.device.counters.drops == {"rx-oversize": 1}
    assert host.monitor.records == []
    assert release() == []


# -- no room in the ring ------------------------------------------------------------------

@pytest.mark.parametrize("setup", [SMALL_1500, BIG_1500, MERGEABLE_1500], ids=str)
def test_a_full_ring_drops_with_rx_no_buffer_and_resumes_after_refill(setup: Setup) -> None:
    """§5.1.6.3 ("if it runs out, network performance will suffer"): with 8 buffers
    posted and the driver not refilling, 13 frames from the wire put 8 in the ring and
    drop exactly 5 as "rx-no-buffer" (not a driver violation: nothing in the monitor).
    The refill notification the device asked for arrives (§2.7.10); the next 8 frames
    are delivered; each frame is delivered once, unchanged, in order."""
    t = bench(setup, queue_size=8)
    first = [raw_frame(1514, salt=i) for i in range(13)]
    release = hold_interrupts(t.b)
    notifications = t.b.device.counters.rx_notifications
    t.send(first)
    assert [p.frame for p in placed(t.b)] == first[:8]
    assert rx_counters(t.b) == expect_counters(8, 8 * 1514, 8, drops={"rx-no-buffer": 5})

    assert [r.data for r in release()] == first[:8]
    assert t.b.driver.counters.rx_refills == 8
    assert t.b.device.counters.rx_notifications == notifications + 1

    second = [raw_frame(1514, salt=100 + i) for i in range(8)]
    t.send(second)
    assert [r.data for r in t.got] == second
    assert rx_counters(t.b) == expect_counters(16, 16 * 1514, 16, drops={"rx-no-buffer": 5})
    assert t.b.driver.counters.rx_frames == 16 and t.b.driver.errors == []
    assert t.b.monitor.records == []


@pytest.mark.parametrize("setup", [
    SMALL_1500, MERGEABLE_1500,
    BIG_1500, MERGEABLE_GRO_1500,
], ids=str)
def test_a_dropped_frame_is_reported_to_the_backend(setup: Setup) -> None:
    """The backend contract (emulator/backends/base.py: the receiver returns False for a
    frame it dropped and counted): of 13 frames into 8 buffers the wire counts 8
    delivered and 5 undeliverable, matching the device's 5 "rx-no-buffer" drops."""
    t = bench(setup, queue_size=8)
    hold_interrupts(t.b)
    t.send([raw_frame(1514, salt=i) for i in range(13)])
    assert t.b.device.counters.drops == {"rx-no-buffer": 5}
    counters = t.pair.wire.a.counters
    assert (counters.delivered, counters.undeliverable) == (8, 5)


def test_a_mergeable_packet_is_placed_whole_or_not_at_all() -> None:
    """§5.1.6.4.1 with MRG_RXBUF: the device uses all the buffers of a packet together.
    With 8 buffers of 1526 bytes and no refill, a 9014-byte frame takes 6; a second one
    finds 2 and is dropped ("rx-no-buffer") without consuming them; the device then
    waits for the refill notification (§2.7.10), dropping even a 60-byte frame that
    would fit. After the refill all 8 buffers are there: 9014 + 1514 + 60 bytes take
    6 + 1 + 1 of them, and a 1515-byte frame (2 buffers) finds none."""
    host = lone_host(Setup("mergeable-jumbo/1526", MERGEABLE, mtu=9000, rx_buffer_size=1526),
                     queue_size=8)
    release = hold_interrupts(host)
    first = [raw_frame(n, salt=i) for i, n in enumerate([9014, 9014, 60])]
    assert [host.device.receive(f) for f in first] == [True, False, False]
    assert placed(host) == [Placed(NetHdr(num_buffers=6), spread(9014, 1526), first[0])]
    assert rx_counters(host) == expect_counters(1, 9014, 6, drops={"rx-no-buffer": 2})
    assert [r.data for r in release()] == first[:1]
    assert host.driver.counters.rx_refills == 6

    release = hold_interrupts(host)
    second = [raw_frame(n, salt=10 + i) for i, n in enumerate([9014, 1514, 60, 1515])]
    assert [host.device.receive(f) for f in second] == [True, True, True, False]
    assert placed(host) == [
        Placed(NetHdr(num_buffers=6), spread(9014, 1526), second[0]),
        Placed(NetHdr(num_buffers=1), (1526,), second[1]),
        Placed(NetHdr(num_buffers=1), (HDR + 60,), second[2]),
    ]
    assert rx_counters(host) == expect_counters(
        4, 2 * 9014 + 1514 + 60, 14, drops={"rx-no-buffer": 3})
    assert [r.data for r in release()] == second[:3]
    assert host.driver.errors == [] and host.monitor.records == []


def test_a_packet_larger_than_the_whole_ring_does_not_stall_receive() -> None:
    """§5.1.6.3.1 lets a MRG_RXBUF driver post any buffers of at least the header: 8
    buffers of 1530 bytes (enough for one mtu-sized packet, §5.1.4.2) cannot take a
    64054-byte coalesced packet, which is dropped as "rx-no-buffer". No buffer was used,
    so no refill (and no refill notification, §2.7.10) will come: the device must not
    wait for one. The next frame is delivered."""
    t = bench(MERGEABLE_GRO_1500, queue_size=8)
    t.send_tso(COALESCED["tcp4-64000"])
    assert t.got == []
    assert rx_counters(t.b) == expect_counters(drops={"rx-no-buffer": 1})
    small = raw_frame(60)
    t.send([small])
    assert [r.data for r in t.got] == [small]
    assert rx_counters(t.b) == expect_counters(1, 60, 1, drops={"rx-no-buffer": 1})


# -- buffers too small without MRG_RXBUF --------------------------------------------------

def test_a_buffer_too_small_for_the_frame_is_a_driver_violation() -> None:
    """§5.1.6.3.1: without MRG_RXBUF and GUEST_TSO a buffer SHOULD hold 1526 bytes. A
    driver posting 1000-byte buffers gets frames of up to 988 bytes (header + frame =
    1000 exactly); a 989- or 1514-byte frame is dropped as "rx-buffer-too-small", with a
    monitor record blaming the driver, and the buffer stays posted for the next frame."""
    host = lone_host(Setup("small/1000", SMALL, rx_buffer_size=1000))
    release = hold_interrupts(host)
    frames = [raw_frame(n, salt=i) for i, n in enumerate([988, 989, 1514, 60])]
    assert [host.device.receive(f) for f in frames] == [True, False, False, True]
    assert placed(host) == [Placed(NetHdr(num_buffers=1), (1000,), frames[0]),
                            Placed(NetHdr(num_buffers=1), (HDR + 60,), frames[3])]
    assert rx_counters(host) == expect_counters(2, 988 + 60, 2,
                                                drops={"rx-buffer-too-small": 2})
    records = host.monitor.records
    assert [(r.who, r.rule, r.reference, r.queue, r.descriptor, r.action, r.time)
            for r in records] == [
        (DRIVER, "rx-buffer-too-small", str(spec.NET_RX_BUFFERS_DRIVER), 0, 1, "dropped", 0),
    ] * 2
    assert "1000" in records[0].detail and "989" in records[0].detail
    assert "1514" in records[1].detail
    assert [r.data for r in release()] == [frames[0], frames[3]]


def test_a_frame_too_big_for_a_spec_sized_buffer_is_the_device_s_fault() -> None:
    """The driver posted what §5.1.6.3.1 asks (1526 bytes: header + 1514) and negotiated
    no MTU; a VLAN-tagged 1518-byte frame the device admits (§5.1.6.3.1 leaves room for a
    tag in its limit) does not fit: dropped, and the record blames the device, which
    sent more than the driver was told to expect (§5.1.6.4.1) — not the driver."""
    host = lone_host(Setup("small/1526", SMALL - FeatureSet.of(F.MTU), rx_buffer_size=1526))
    release = hold_interrupts(host)
    tagged = raw_frame(1514, salt=1)
    tagged = tagged[:12] + b"\x81\x00\x00\x05" + tagged[12:]
    assert host.device.receive(tagged) is False
    assert rx_counters(host) == expect_counters(drops={"rx-packet-too-large": 1})
    (rec,) = host.monitor.records
    assert (rec.who, rec.rule, rec.reference, rec.action) == (
        DEVICE, "rx-packet-too-large", str(spec.NET_RX_DEVICE), "dropped")
    assert release() == []


@pytest.mark.parametrize(("spare", "placed_ok"), [(0, True), (-1, False)])
def test_a_big_buffer_one_byte_short_of_the_coalesced_packet(spare: int, placed_ok: bool) -> None:
    """§5.1.6.3.1 for big packets: a driver with GUEST_TSO4 and no MRG_RXBUF whose
    buffers hold header + the 65549-byte largest coalesced packet gets it; one byte less
    and the whole packet (46 wire segments) is dropped as "rx-buffer-too-small", with a
    monitor record; a 64000-byte burst still fits afterwards."""
    size = HDR + 65549 + spare
    t = bench(Setup(f"big/{size}", GRO, rx_buffer_size=size), queue_size=8)
    t.send_tso(COALESCED["tcp4-max"])
    if placed_ok:
        assert [r.data for r in t.got] == [COALESCED["tcp4-max"].frame]
        assert rx_counters(t.b) == expect_counters(1, 65549, 1, 1, 46)
        assert t.b.monitor.records == []
        return
    assert t.got == []
    assert rx_counters(t.b) == expect_counters(drops={"rx-buffer-too-small": 1})
    (rec,) = t.b.monitor.records
    assert (rec.who, rec.rule, rec.reference, rec.action) == (
        DRIVER, "rx-buffer-too-small", str(spec.NET_RX_BUFFERS_DRIVER), "dropped")
    t.send_tso(COALESCED["tcp4-64000"])
    assert [r.data for r in t.got] == [COALESCED["tcp4-64000"].frame]
    assert rx_counters(t.b) == expect_counters(1, 64054, 1, 1, 45,
                                               drops={"rx-buffer-too-small": 1})
