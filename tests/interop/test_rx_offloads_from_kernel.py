"""The Linux kernel as a sender with offloads left undone (§5.1.6.4.1): a tap whose
reader accepts TUN_F_CSUM and TUN_F_USO4/6 gets UDP from a socket in the namespace with
a partial checksum (NEEDS_CSUM in the vnet header), and a UDP_SEGMENT send as one GSO
packet (gso_type UDP_L4). The tap backend hands both to our device with the header;
the ``linux`` profile passes them on to a driver that accepted GUEST_CSUM / GUEST_USO4
(as the kernel's own tap → virtio path, ``virtio_net_hdr_from_skb``, would), the
``strict`` profile finishes them in the device. Either way the payload is exact and the
completed checksums verify."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from driver.net import DEFAULT_WANTED, DriverConfig
from emulator.backends.tap import TapBackend, TapDevice, TunOffload
from emulator.net.device import NetDeviceConfig
from emulator.offload import complete_checksum
from stack.device import RxFrame
from stack.wire.checksum import internet_checksum, pseudo_header_sum_v4
from testbench.host import Host, HostConfig
from testbench.loop import EventLoop
from testbench.netns import Netns
from testbench.packets import SRC_MAC
from tests.interop.conftest import kernel_on_tap
from virtio.constants import FeatureBit as F
from virtio.constants import NetHdrFlag
from virtio.features import FeatureSet
from virtio.net_hdr import NetHdr

TIMEOUT_S = 3.0
PAYLOAD = bytes((i * 7 + 3) & 0xFF for i in range(8000))
SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
size, gso = int(sys.argv[1]), int(sys.argv[2])
if gso:
    s.setsockopt(17, 103, gso)  # SOL_UDP, UDP_SEGMENT
payload = bytes((i * 7 + 3) & 0xFF for i in range(size))
s.sendto(payload, ("10.0.0.1", 6000))
"""


@pytest.fixture
def offload_peer(needs_tap: None) -> Iterator[tuple[Netns, TapDevice]]:
    with kernel_on_tap("vnb-rxo-", TunOffload.CSUM | TunOffload.USO4 | TunOffload.USO6) as peer:
        yield peer


def run(ns: Netns, tap: TapDevice, profile: str, wanted: FeatureSet, *, size: int,
        gso: int) -> tuple[Host, list[RxFrame]]:
    loop = EventLoop()
    host = Host(loop, HostConfig("a", SRC_MAC, 32 << 20, NetDeviceConfig(profile=profile),
                                 DriverConfig(wanted=wanted)))
    backend = TapBackend(tap)
    host.attach(backend)
    host.start()
    got: list[RxFrame] = []
    host.on_frames = lambda rx: got.extend(r for r in rx if r.data[12:14] == b"\x08\x00")
    ns.exec(sys.executable, "-c", SEND, str(size), str(gso))
    end = time.monotonic() + TIMEOUT_S
    while time.monotonic() < end and sum(udp_len(r.data) for r in got) < size:
        backend.wait(0.02)
        backend.poll(loop.now)
        loop.run_until_idle(max_steps=100_000)
    return host, got


def udp_len(frame: bytes) -> int:
    return int.from_bytes(frame[38:40], "big") - 8 if frame[23] == 17 else 0


def finished(rx: RxFrame) -> bytes:
    """The frame with its checksum completed when the device left it partial."""
    if not rx.csum_partial:
        return rx.data
    assert rx.csum_start is not None and rx.csum_offset is not None
    return complete_checksum(rx.data, NetHdr(flags=int(NetHdrFlag.NEEDS_CSUM),
                                             csum_start=rx.csum_start,
                                             csum_offset=rx.csum_offset))


def udp_checksum_ok(frame: bytes) -> bool:
    ip, l4 = frame[14:34], frame[34:]
    seed = pseudo_header_sum_v4(ip[12:16], ip[16:20], 17, len(l4))
    return internet_checksum(l4, seed) == 0


CSUM = DEFAULT_WANTED.with_(F.GUEST_CSUM)


@pytest.mark.parametrize(("profile", "partial"), [("linux", True), ("strict", False)])
def test_kernel_partial_checksum(offload_peer: tuple[Netns, TapDevice], profile: str,
                                 partial: bool) -> None:
    ns, tap = offload_peer
    host, got = run(ns, tap, profile, CSUM, size=1000, gso=0)
    (rx,) = got
    assert rx.data[42:] == PAYLOAD[:1000]
    assert (rx.csum_partial, rx.csum_verified) == (partial, not partial)
    assert rx.csum_start == (34 if partial else None)
    assert udp_checksum_ok(finished(rx))
    counters = host.device.counters
    assert (counters.rx_offloads_passed, counters.rx_offloads_finished) == (
        (1, 0) if partial else (0, 1))


@dataclass(frozen=True)
class GsoCase:
    profile: str
    wanted: FeatureSet
    packets: int
    """What the driver gets: 1 (a GSO packet) or 6 datagrams."""
    passed: int
    """1 when the device passed the kernel's GSO packet on, 0 when it finished it."""
    coalesced: int


@pytest.mark.parametrize("case", [
    GsoCase("linux", CSUM.with_(F.GUEST_USO4), 1, 1, 0),  # passed on whole
    GsoCase("linux", CSUM, 6, 0, 0),                       # no GUEST_USO4: segmented
    GsoCase("strict", CSUM.with_(F.GUEST_USO4), 1, 0, 1),  # segmented, coalesced again
    GsoCase("strict", DEFAULT_WANTED, 6, 0, 0),            # no offloads: plain datagrams
], ids=["linux-uso", "linux-csum", "strict-uso", "strict-none"])
def test_kernel_udp_gso(offload_peer: tuple[Netns, TapDevice], case: GsoCase) -> None:
    ns, tap = offload_peer
    host, got = run(ns, tap, case.profile, case.wanted, size=8000, gso=1400)
    counters = host.device.counters
    # the kernel handed the tap one GSO packet: passed on, or finished by the device
    assert (counters.rx_offloads_passed, counters.rx_offloads_finished) == (
        case.passed, 1 - case.passed)
    assert counters.rx_coalesced == case.coalesced
    packets = case.packets
    assert len(got) == packets
    if packets == 1:
        (rx,) = got
        assert rx.segment_size == 1400 and rx.data[42:] == PAYLOAD
    else:
        assert [udp_len(r.data) for r in got] == [1400] * 5 + [1000]
        assert b"".join(r.data[42:] for r in got) == PAYLOAD
        assert all(udp_checksum_ok(finished(r)) for r in got)
        assert all(r.segment_size is None for r in got)
