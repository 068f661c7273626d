"""Whatever header and frame a driver puts in the TX ring, under every profile the device
either sends the packet or drops it for a named reason — never an exception — and every
chain goes back on the used ring (§5.1.6.2, DESIGN.md "Errors say who is at fault").
Accounting invariant: chains = packets sent + drops."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.backends.base import Receiver
from emulator.net.device import NetDeviceConfig
from testbench.host import HostConfig, make_pair
from testbench.loop import EventLoop
from testbench.packets import DST_MAC, SRC_MAC, tcp_packet, udp_packet
from virtio.constants import MmioReg
from virtio.net_hdr import NetHdr

TX = 1
BASES = [tcp_packet(5000).frame, tcp_packet(3000, ipv6=True, mss=1440).frame,
         udp_packet(4000).frame, tcp_packet(200, mss=None).frame]

headers = st.builds(
    NetHdr,
    flags=st.integers(0, 0xFF),
    gso_type=st.sampled_from([0, 1, 3, 4, 5, 0x80, 0x81, 0x84, 0x85, 2, 0xFF]),
    hdr_len=st.integers(0, 0xFFFF),
    gso_size=st.one_of(st.sampled_from([0, 1, 8, 1400, 1448, 9000]), st.integers(0, 0xFFFF)),
    csum_start=st.one_of(st.sampled_from([0, 14, 34, 54, 74]), st.integers(0, 0xFFFF)),
    csum_offset=st.one_of(st.sampled_from([0, 6, 16]), st.integers(0, 0xFFFF)),
    num_buffers=st.sampled_from([0, 0, 1, 7]),
)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    base = bytearray(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(0, 4))):  # flip a few bytes anywhere
        at = draw(st.integers(0, len(base) - 1))
        base[at] = draw(st.integers(0, 255))
    cut = draw(st.one_of(st.none(), st.integers(0, len(base))))
    return bytes(base if cut is None else base[:cut])


class Sink:
    """A backend that takes every frame (what is sent is not this test's subject)."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, frame: bytes) -> None:
        self.sent += 1

    def set_receiver(self, receiver: Receiver | None) -> None:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profile=st.sampled_from(["strict", "linux", "qemu"]),
       packets=st.lists(st.tuples(headers, frames()), min_size=1, max_size=4))
def test_any_header_and_frame_is_sent_or_dropped_for_a_reason(
    profile: str, packets: list[tuple[NetHdr, bytes]]
) -> None:
    dev = NetDeviceConfig(profile=profile)
    pair = make_pair(EventLoop(), a=HostConfig("a", SRC_MAC, 4 << 20, dev),
                     b=HostConfig("b", DST_MAC, 4 << 20, dev))
    a = pair.a
    a.attach(Sink())  # no backpressure: a gso_size of 1 may make thousands of segments
    alloc = a.memory.allocator
    assert alloc is not None
    q = a.driver.tx_queue
    for hdr, frame in packets:
        data = hdr.emit(12) + frame
        addr = alloc.alloc(len(data))
        a.memory.write(addr, data)
        # straight into the ring: the driver's own checks would refuse most of these
        q.add([(addr, len(data))], [], token=None)
    a.mmio.write(MmioReg.QUEUE_NOTIFY, TX)  # must not raise
    # (the loop is not run: these chains bypassed the driver, whose reaping would not
    # know them)
    c = a.device.counters
    assert c.tx_chains == len(packets)
    assert c.tx_packets + sum(c.drops.values()) == len(packets)
    backend = a.device.backend
    assert isinstance(backend, Sink) and backend.sent == c.tx_frames
    assert a.memory.read_u16(q.used_addr + 2) == len(packets)  # every chain came back
    assert not a.core.status & 64  # no DEVICE_NEEDS_RESET: header rules are not ring rules
    for rec in a.monitor.records:
        assert rec.who == "driver" and rec.rule and rec.reference
