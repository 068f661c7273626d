"""Linux taps as a peer and the kernel as a segmentation reference.

Packets are built by hand here (Ethernet + IPv4 + TCP with struct), so the checks do not
lean on the stack under test. The expected kernel behaviour is the one described in
shared/NOTES-REAL-PEERS.md and seen on Linux 6.18: segments out of B carry full
checksums, IPv4 ID +1 per segment, seq + MSS, PSH (and FIN) only on the last, and an
all-zero virtio_net_hdr.
"""

from __future__ import annotations

import errno
import os
import platform
import struct
import time

import pytest

from emulator.backends.tap import TapBackend, TapDevice, TapError, TunOffload
from testbench.kernel_oracle import KernelOracleError, KernelSegmenter
from testbench.loop import EventLoop
from testbench.netns import Netns, NetnsError, run_ip, unique_name
from tests.interop.conftest import TapPair
from virtio.constants import GsoType, NetHdrFlag
from virtio.net_hdr import NetHdr

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("needs_tap")]

SRC = bytes.fromhex("02766e620a01")
DST = bytes.fromhex("02766e620a02")
IP_SRC = bytes([10, 0, 0, 1])
IP_DST = bytes([10, 0, 0, 2])
TCP_ACK, TCP_PSH, TCP_FIN = 0x10, 0x08, 0x01
WAIT_S = 2.0


def inet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_frame(payload: bytes, *, ident: int = 0x1234, seq: int = 1_000_000,
              flags: int = TCP_ACK | TCP_PSH, partial: bool = True) -> bytes:
    """Ethernet/IPv4/TCP, IP checksum complete; TCP checksum = the pseudo-header seed
    (``partial``, as a driver hands a NEEDS_CSUM packet to the device) or complete."""
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), ident, 0x4000,
                               64, 6, 0, IP_SRC, IP_DST))
    struct.pack_into("!H", ip, 10, inet_checksum(bytes(ip)))
    tcp = bytearray(struct.pack("!HHIIBBHHH", 40000, 5001, seq, 77, 5 << 4, flags, 65535, 0, 0))
    pseudo = IP_SRC + IP_DST + struct.pack("!BBH", 0, 6, 20 + len(payload))
    if partial:
        struct.pack_into("!H", tcp, 16, ~inet_checksum(pseudo) & 0xFFFF)
    else:
        struct.pack_into("!H", tcp, 16, inet_checksum(pseudo + bytes(tcp) + payload))
    return DST + SRC + b"\x08\x00" + bytes(ip) + bytes(tcp) + payload


def kernel_version() -> tuple[int, int]:
    major, minor = platform.release().split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def tso_hdr(mss: int) -> NetHdr:
    return NetHdr(flags=NetHdrFlag.NEEDS_CSUM, gso_type=GsoType.TCPV4, hdr_len=54,
                  gso_size=mss, csum_start=34, csum_offset=16)


# -- TapDevice and TapBackend ----------------------------------------------------------

class Sink:
    """A receiver that keeps every frame and accepts it."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def __call__(self, frame: bytes) -> bool:
        self.frames.append(frame)
        return True


def test_tap_backends_exchange_frames_through_a_bridge(tap_pair: TapPair) -> None:
    one = TapBackend(tap_pair.one)
    two = TapBackend(tap_pair.two)
    got_one, got_two = Sink(), Sink()
    one.set_receiver(got_one)
    two.set_receiver(got_two)
    forth = tcp_frame(b"forth" * 20, partial=False)
    back = bytes(forth[6:12] + forth[0:6]) + forth[12:]
    one.send(forth)
    assert two.wait(WAIT_S)
    assert two.poll(0) == 1
    two.send(back)
    assert one.wait(WAIT_S)
    assert one.poll(0) == 1
    assert (got_two.frames, got_one.frames) == ([forth], [back])
    assert one.counters.tx_frames == two.counters.rx_delivered == 1
    assert one.poll(1) == 0  # nothing else queued: the namespace is quiet


def test_tap_backend_as_a_timed_source(tap_pair: TapPair) -> None:
    loop = EventLoop()
    backend = TapBackend(tap_pair.two, poll_interval_ns=100_000)
    got = Sink()
    backend.set_receiver(got)
    loop.add_source(backend)
    assert backend.next_deadline() == 0
    frame = tcp_frame(b"tick", partial=False)
    TapBackend(tap_pair.one).send(frame)
    assert backend.wait(WAIT_S)
    loop.run_for(100_000)
    assert got.frames == [frame]
    assert backend.next_deadline() == 200_000  # polled at 0 and 100 µs; next one 100 µs on


def test_tap_backend_receives_a_frame_it_cannot_deliver(tap_pair: TapPair) -> None:
    backend = TapBackend(tap_pair.two)
    TapBackend(tap_pair.one).send(tcp_frame(b"x", partial=False))
    assert backend.wait(WAIT_S)
    assert backend.poll(0) == 1
    assert backend.counters.rx_undeliverable == 1


def test_write_to_a_down_tap_fails_with_eio(needs_tap: None) -> None:
    with Netns("vnb-down-") as ns, TapDevice(unique_name("vdn"), vnet_hdr_size=12) as tap:
        ns.move_link(tap.name)  # never up: nothing can leave
        with pytest.raises(TapError) as info:
            tap.write(None, tcp_frame(b"x"))
        assert info.value.errno == errno.EIO
        backend = TapBackend(tap, raise_on_error=False)
        backend.send(tcp_frame(b"x"))
        assert backend.counters.tx_errors == 1
        assert backend.last_error is not None and backend.last_error.errno == errno.EIO
    assert tap.closed
    with pytest.raises(ValueError, match="closed"):
        tap.read()


def test_offload_flags_the_kernel_checks(needs_tap: None) -> None:
    with Netns("vnb-off-") as ns, TapDevice(unique_name("vof")) as tap:
        ns.move_link(tap.name)
        # Every segmentation offload needs CSUM (tun.c, set_offload).
        assert not tap.try_offload(TunOffload.TSO4)
        assert tap.try_offload(TunOffload.CSUM | TunOffload.TSO4)
        with pytest.raises(TapError) as info:
            tap.set_offload(TunOffload.TSO6)
        assert info.value.errno == errno.EINVAL
        assert tap.offloads == TunOffload.CSUM | TunOffload.TSO4  # unchanged by the refusal
        if kernel_version() >= (6, 2):  # USO4/USO6 appeared in 6.2 and go together
            assert not tap.try_offload(TunOffload.CSUM | TunOffload.USO4)
            assert tap.try_offload(TunOffload.CSUM | TunOffload.USO4 | TunOffload.USO6)


# -- the kernel as a segmentation reference --------------------------------------------

def test_kernel_segments_a_tso_packet_exactly(needs_tap: None) -> None:
    mss = 1448
    payload = bytes(i * 7 % 251 for i in range(4000))
    frame = tcp_frame(payload, ident=0x1234, seq=1_000_000, flags=TCP_ACK | TCP_PSH | TCP_FIN)
    with KernelSegmenter() as kernel:
        result = kernel.segment(tso_hdr(mss), frame)
        assert kernel.looped_back == kernel.stale_markers == kernel.foreign_frames == 0
    assert result.rejected_errno is None
    sizes = [mss, mss, 4000 - 2 * mss]
    assert [len(s) for s in result.segments] == [54 + n for n in sizes]
    assert result.headers == [NetHdr()] * 3  # B has no offloads: a zero header
    joined = b""
    offset = 0
    for i, (seg, size) in enumerate(zip(result.segments, sizes, strict=True)):
        assert seg[:14] == frame[:14]
        ip, tcp, data = seg[14:34], seg[34:54], seg[54:]
        total_len, ident = struct.unpack_from("!HH", ip, 2)
        assert (total_len, ident) == (40 + size, 0x1234 + i)
        assert inet_checksum(ip) == 0
        seq, ack = struct.unpack_from("!II", tcp, 4)
        assert (seq, ack) == (1_000_000 + offset, 77)
        last = i == len(sizes) - 1
        assert tcp[13] == (TCP_ACK | TCP_PSH | TCP_FIN if last else TCP_ACK)
        pseudo = IP_SRC + IP_DST + struct.pack("!BBH", 0, 6, 20 + size)
        assert inet_checksum(pseudo + tcp + data) == 0
        joined += data
        offset += size
    assert joined == payload


def test_kernel_rejects_a_header_with_einval(needs_tap: None) -> None:
    frame = tcp_frame(bytes(3000))
    with KernelSegmenter() as kernel:
        beyond = NetHdr(flags=NetHdrFlag.NEEDS_CSUM, csum_start=5000, csum_offset=16)
        assert kernel.segment(beyond, frame).rejected_errno == errno.EINVAL
        no_size = tso_hdr(1448).with_(gso_size=0)
        assert kernel.segment(no_size, frame).rejected_errno == errno.EINVAL
        bad_type = NetHdr(gso_type=2)  # no such gso_type
        assert kernel.segment(bad_type, frame).rejected_errno == errno.EINVAL
        # Accepted but dropped later: TSO4 on an IPv6 frame (NOTES-REAL-PEERS.md).
        v6 = (DST + SRC + b"\x86\xdd" + struct.pack("!IHBB", 0x6000_0000, 20 + 3000, 6, 64)
              + bytes(32) + struct.pack("!HHIIBBHHH", 1, 2, 0, 0, 0x50, TCP_ACK, 1000, 0, 0)
              + bytes(3000))
        dropped = kernel.segment(tso_hdr(1000).with_(hdr_len=74, csum_start=54), v6)
        assert dropped.accepted and dropped.dropped
        # ...and the oracle still answers exactly afterwards.
        assert len(kernel.segment(tso_hdr(1000), frame).segments) == 3


def test_marker_keeps_order_over_2000_writes(needs_tap: None) -> None:
    """Each call's output is exactly its own packet's segments: the marker written after
    the packet never overtakes them (process pinned to one CPU)."""
    mss = 500
    with KernelSegmenter() as kernel:
        for i in range(2000):
            count = 1 + i % 3  # 1, 2 or 3 segments
            frame = tcp_frame(bytes([i & 0xFF]) * (mss * count), ident=i, seq=i * 100_000)
            result = kernel.segment(tso_hdr(mss), frame)
            seqs = [struct.unpack_from("!I", s, 38)[0] for s in result.segments]
            assert seqs == [i * 100_000 + k * mss for k in range(count)], f"write {i}"
        assert kernel.stale_markers == kernel.looped_back == kernel.foreign_frames == 0


def _leftovers() -> list[str]:
    """Namespaces and root-namespace links this process created and did not remove."""
    mark = f"{os.getpid()}x"  # testbench.netns.unique_name: prefix, pid, "x", counter
    names = run_ip(["netns", "list"]) + run_ip(["-o", "link", "show"])
    return [word for word in names.split() if mark in word]


def test_oracle_cleans_up_when_setup_fails(needs_tap: None, monkeypatch: pytest.MonkeyPatch) -> None:
    affinity = os.sched_getaffinity(0)
    real_ip = Netns.ip

    def failing_ip(self: Netns, *args: str) -> str:
        if args[:2] == ("link", "add"):
            raise NetnsError("injected failure")
        return real_ip(self, *args)

    monkeypatch.setattr(Netns, "ip", failing_ip)
    with pytest.raises(NetnsError, match="injected"), KernelSegmenter():
        pass
    assert _leftovers() == []
    assert os.sched_getaffinity(0) == affinity


def test_oracle_times_out_instead_of_hanging(needs_tap: None) -> None:
    affinity = os.sched_getaffinity(0)
    with KernelSegmenter(timeout=0.2) as kernel:
        assert os.sched_getaffinity(0) == {min(affinity)}
        kernel.netns.ip("link", "set", "dev", kernel.tap_b.name, "down")
        started = time.monotonic()
        with pytest.raises(KernelOracleError, match="did not come out"):
            kernel.segment(NetHdr(), tcp_frame(b"lost", partial=False))
        assert time.monotonic() - started < 1.0
    assert _leftovers() == []
    assert os.sched_getaffinity(0) == affinity
