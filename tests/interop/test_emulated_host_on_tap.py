"""An emulated host (driver + virtio-net device) plugged into a real Linux network
namespace through the tap backend: the kernel is the peer.

- ARP: our driver's request reaches the kernel and the kernel's reply comes back up
  through the device's receive path.
- TSO: a 64 KB TCP super-packet to a closed port, segmented by our device, arrives in the
  kernel as MTU-sized segments whose checksums the kernel verifies — it answers each one
  it accepts with a RST. With the ``linux`` profile and a length-0 pseudo-header seed the
  checksums are wrong and the kernel drops every segment: no RST (the symptom users come
  to reproduce, against the real kernel).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator

import pytest

from driver.net import DriverConfig
from emulator.backends.tap import TapBackend, TapDevice, TunOffload
from emulator.net.device import NetDeviceConfig
from stack.device import TxMeta
from stack.wire.ethernet import BROADCAST, EthernetHeader, EtherType
from stack.wire.tcp import TcpFlags
from testbench.host import Host, HostConfig
from testbench.loop import EventLoop
from testbench.netns import Netns
from testbench.packets import DST_V4, SRC_MAC, SRC_V4, Seed, tcp_packet
from tests.interop.conftest import kernel_on_tap

KERNEL_IP = DST_V4  # 10.0.0.2: the packets' destination is the kernel's address
OUR_IP = SRC_V4  # 10.0.0.1
TIMEOUT_S = 3.0


class TapHost:
    def __init__(self, ns: Netns, tap: TapDevice, profile: str) -> None:
        self.loop = EventLoop()
        cfg = HostConfig("a", SRC_MAC, 16 << 20, NetDeviceConfig(profile=profile),
                         DriverConfig())
        self.host = Host(self.loop, cfg)
        self.backend = TapBackend(tap)
        self.host.attach(self.backend)
        self.host.start()
        self.received: list[bytes] = []
        self.host.on_frames = lambda rx: self.received.extend(r.data for r in rx)
        self.ns = ns

    def run_until(self, done: Callable[[], object], seconds: float = TIMEOUT_S) -> None:
        """Pump the tap and the loop in real time until ``done()`` or the timeout."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not done():
            self.backend.wait(0.02)
            self.backend.poll(self.loop.now)
            self.loop.run_until_idle(max_steps=100_000)

    def send(self, frame: bytes, meta: TxMeta | None = None) -> None:
        assert self.host.driver.transmit(frame, meta)
        self.host.driver.flush()
        self.loop.run_until_idle(max_steps=100_000)


@pytest.fixture
def kernel_peer(needs_tap: None) -> Iterator[tuple[Netns, TapDevice]]:
    with kernel_on_tap("vnb-peer-", TunOffload(0)) as peer:
        yield peer


def arp_request() -> bytes:
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, SRC_MAC, OUR_IP, bytes(6), KERNEL_IP)
    return EthernetHeader(BROADCAST, SRC_MAC, EtherType.ARP).emit() + arp + bytes(18)


def test_arp_round_trip_with_the_kernel(kernel_peer: tuple[Netns, TapDevice]) -> None:
    ns, tap = kernel_peer
    th = TapHost(ns, tap, "strict")
    th.send(arp_request())
    def replies() -> list[bytes]:
        return [f for f in th.received if f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02"]

    th.run_until(replies)
    (reply,) = replies()
    assert reply[:6] == SRC_MAC  # to us
    assert reply[28:32] == KERNEL_IP and reply[38:42] == OUR_IP
    assert th.host.device.counters.rx_frames >= 1


def rsts(frames: list[bytes]) -> list[int]:
    """Sequence numbers of the TCP RSTs the kernel sent us."""
    out = []
    for f in frames:
        if f[12:14] == b"\x08\x00" and f[23] == 6 and f[47] & TcpFlags.RST:
            out.append(struct.unpack_from("!I", f, 38)[0])
    return out


@pytest.mark.parametrize(("profile", "seed", "accepted"), [
    ("strict", Seed.FULL, True), ("linux", Seed.FULL, True),
    ("strict", Seed.ZERO, True),   # strict recomputes the pseudo header
    ("linux", Seed.ZERO, False),   # Linux adjusts the bad seed: wrong checksums
])
def test_tso_segments_reach_the_kernel(kernel_peer: tuple[Netns, TapDevice], profile: str,
                                       seed: Seed, accepted: bool) -> None:
    ns, tap = kernel_peer
    th = TapHost(ns, tap, profile)
    pkt = tcp_packet(64000, seed=seed, flags=TcpFlags.ACK)
    th.send(pkt.frame, TxMeta(1448, pkt.hdr.csum_start, pkt.hdr.csum_offset))
    dev = th.host.device.counters
    assert (dev.tx_gso_packets, dev.tx_frames) == (1, 45)
    if accepted:
        th.run_until(lambda: len(rsts(th.received)) >= 45)
        # the kernel verified each segment's checksum and answered each with a RST whose
        # sequence number is the segment's acknowledgment number (RFC 9293 §3.10.7.1)
        assert rsts(th.received) == [2_000_000] * 45
    else:
        th.run_until(lambda: False, seconds=0.5)
        assert rsts(th.received) == []
        # the kernel counted the bad checksums
        snmp = ns.exec("cat", "/proc/net/snmp")
        tcp_rows = [ln.split() for ln in snmp.splitlines() if ln.startswith("Tcp:")]
        in_csum_errors = int(tcp_rows[1][tcp_rows[0].index("InCsumErrors")])
        assert in_csum_errors == 45
