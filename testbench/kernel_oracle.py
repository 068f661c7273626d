"""The Linux kernel as a reference for virtio_net_hdr handling and segmentation.

:class:`KernelSegmenter` builds, in a fresh network namespace::

    tap A (vnet hdr 12, offloads CSUM|TSO4|TSO6|TSO_ECN|USO4|USO6 [+UFO]) ─┐
                                                                       br0 (MTU 9000)
    tap B (vnet hdr 12, offloads 0) ───────────────────────────────────────┘

A ``virtio_net_hdr + frame`` written to A enters the kernel exactly as a virtio driver's
packet enters a vhost/tap backend (``virtio_net_hdr_to_skb``): a header the kernel
refuses fails the write (:attr:`KernelResult.rejected_errno`, EINVAL); an accepted GSO
packet is forwarded by the bridge to B, whose reader offers no offloads, so the kernel
segments it and completes the checksums in software; the segments are read back from B.

Exact and fast without waiting for silence: after each test frame a *marker* (same source
MAC, ethertype 0x88B5, a magic and a counter, broadcast) is written to A. Frames written
by one thread on one CPU are processed synchronously in that ``write`` (tap →
``netif_receive_skb`` → bridge → B's queue), so the marker reaches B after every segment
of the test frame; reading B until the marker arrives collects exactly that frame's
output (an empty list: accepted, then dropped). The process is pinned to one CPU while the
oracle is open, so the two writes cannot land on two CPUs' backlogs even if the kernel
defers them (RPS, XDP); ``tests/interop/test_tap.py`` checks the order over 2000 writes.

Keeping the namespace quiet (nothing but our frames on B, nothing back into A):

- IPv6 is disabled before the taps move in (no router solicitations, no MLD);
- the bridge runs ``stp_state 0 forward_delay 0`` (ports forward at once, no BPDUs) and
  ``mcast_snooping 0`` (otherwise it joins 224.0.0.106 and its IPv4 stack sends IGMPv3
  reports out of *both* ports, A included, because snooping treats them as router
  ports); ``net.ipv4.igmp_link_local_mcast_reports=0`` for good measure;
- ``bridge-nf-call-{ip,ip6,arp}tables=0`` in the namespace: with br_netfilter loaded the
  bridge would otherwise validate IPv4 headers (checksum, total length) and drop what a
  pure segmentation reference must pass on;
- learning off on both ports (every unicast frame is unknown, so flooded to B; nothing
  we write is ever taken for a station behind A) and flood/mcast_flood/bcast_flood off on
  A, so the bridge never sends a frame back into A. A is drained after every call
  anyway and what it read is counted in :attr:`KernelSegmenter.looped_back` (0 so far).
- br0 gets a fixed MAC (:data:`BRIDGE_MAC`): a test frame sent *to* it would be taken by
  the bridge's own stack instead of reaching B; frames to 01:80:c2:00:00:0X (802.1D
  link-local) are never forwarded; non-GSO frames longer than MTU 9000 are dropped.

Python 3.11 has no ``os.setns``: each tap is created in the root namespace (TUNSETIFF on
a file descriptor kept here), then moved into the namespace with ``ip link set dev NAME
netns NS``; the fd stays valid.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
from dataclasses import dataclass, field
from types import TracebackType

from emulator.backends.tap import TapDevice, TapError, TunOffload
from testbench.netns import Netns, unique_name
from virtio.errors import VirtioError
from virtio.net_hdr import NetHdr

__all__ = [
    "BRIDGE_MAC",
    "MARKER_ETHERTYPE",
    "KernelOracleError",
    "KernelResult",
    "KernelSegmenter",
    "KernelThroughput",
]

MARKER_ETHERTYPE = 0x88B5
"""IEEE 802 "local experimental" ethertype, used for the end-of-output marker."""
_MARKER_MAGIC = b"vnetbench-marker"
_MARKER = struct.Struct(f"!6s6sH{len(_MARKER_MAGIC)}sIQ")
_BROADCAST = b"\xff" * 6
DEFAULT_SOURCE_MAC = bytes.fromhex("02766e620001")
"""Marker source when the test frame has no valid unicast source (the bridge drops frames
from a multicast or zero source, so such a test frame yields no segments)."""
BRIDGE_MAC = bytes.fromhex("02766e6200fe")

OFFLOADS_A = (
    TunOffload.CSUM | TunOffload.TSO4 | TunOffload.TSO6 | TunOffload.TSO_ECN
    | TunOffload.USO4 | TunOffload.USO6
)
VNET_HDR_SIZE = 12
MTU = 9000
MAX_SEGMENTS_PER_CALL = 100_000
B_QUEUE_LEN = 70_000
"""tap B's txqueuelen: a 64 KiB payload cut into 1-byte segments, and the marker."""


class KernelOracleError(VirtioError):
    """The oracle could not give an answer (its marker never came back, setup failed)."""


@dataclass(frozen=True)
class KernelResult:
    """What the kernel did with one ``virtio_net_hdr + frame`` written to tap A."""

    rejected_errno: int | None
    """errno of the failed write to A (EINVAL: the kernel refused the header), or None."""
    segments: list[bytes] = field(default_factory=list)
    """Frames that came out of B (vnet header stripped), in order, with the test frame's
    source MAC. Empty when accepted: the kernel took the frame and dropped it."""
    headers: list[NetHdr] = field(default_factory=list)
    """The virtio_net_hdr B delivered with each segment (all zero for segmented TCP)."""

    @property
    def accepted(self) -> bool:
        return self.rejected_errno is None

    @property
    def dropped(self) -> bool:
        """Accepted by the write, but nothing came out of B."""
        return self.rejected_errno is None and not self.segments


@dataclass(frozen=True)
class KernelThroughput:
    """Rates of kernel segmentation through the oracle (one CPU, this process)."""

    segments_per_packet: int
    segment_bytes: int
    """Bytes of all the segments of one packet (Ethernet frames, no vnet header)."""
    writes_only_packets_per_s: float
    """Packets written to A per second while nothing reads B. B's ring overflows, but the
    kernel segments every packet before dropping: on 6.18 B's qdisc shows 0 drops and
    B's tx_dropped counts segments (tun drops in its xmit, after segmentation)."""
    read_back_segments_per_s: float
    """Segments per second written to A *and* read back from B, one read per segment."""

    @property
    def writes_only_segments_per_s(self) -> float:
        return self.writes_only_packets_per_s * self.segments_per_packet

    @property
    def writes_only_gbps(self) -> float:
        return self.writes_only_packets_per_s * self.segment_bytes * 8 / 1e9

    @property
    def read_back_gbps(self) -> float:
        per_segment = self.segment_bytes / max(1, self.segments_per_packet)
        return self.read_back_segments_per_s * per_segment * 8 / 1e9


def _valid_unicast(mac: bytes) -> bool:
    return len(mac) == 6 and not (mac[0] & 1) and mac != b"\0" * 6


class KernelSegmenter:
    """Context manager: the namespace, bridge and taps described in the module docstring.

    ``timeout`` bounds each wait for a marker (seconds); ``pin_cpu`` pins this thread to
    one CPU (the lowest it may run on) while open, and restores the affinity on exit.
    """

    def __init__(self, *, timeout: float = 2.0, pin_cpu: bool = True) -> None:
        self.timeout = timeout
        self.pin_cpu = pin_cpu
        self.looped_back = 0
        """Frames found queued on A (the bridge sending back into A); stays 0."""
        self.stale_markers = 0
        """Markers of earlier calls seen late (an ordering or timeout problem); stays 0."""
        self.foreign_frames = 0
        """Frames on B from another source MAC (filtered out)."""
        self.ufo_accepted = False
        self.offloads_a = TunOffload(0)
        self._counter = 0
        self._stack: contextlib.ExitStack | None = None
        self._ns: Netns | None = None
        self._a: TapDevice | None = None
        self._b: TapDevice | None = None

    # -- setup / teardown --------------------------------------------------------------

    def __enter__(self) -> KernelSegmenter:
        stack = contextlib.ExitStack()
        try:
            self._setup(stack)
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def _setup(self, stack: contextlib.ExitStack) -> None:
        if self.pin_cpu:
            saved = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {min(saved)})
            stack.callback(os.sched_setaffinity, 0, saved)
        ns = stack.enter_context(Netns("vnb-oracle-"))
        for key, value in (
            ("net.ipv6.conf.all.disable_ipv6", 1),
            ("net.ipv6.conf.default.disable_ipv6", 1),
            ("net.ipv4.igmp_link_local_mcast_reports", 0),
        ):
            ns.sysctl(key, value)
        for table in ("iptables", "ip6tables", "arptables"):
            key = f"net.bridge.bridge-nf-call-{table}"
            with contextlib.suppress(VirtioError):  # absent when br_netfilter is not loaded
                ns.sysctl(key, 0)
        # ExitStack unwinds in reverse: the taps are closed (and so destroyed: they are
        # not persistent) before the namespace is deleted.
        a = stack.enter_context(TapDevice(unique_name("vka"), vnet_hdr_size=VNET_HDR_SIZE))
        if not a.try_offload(OFFLOADS_A):  # USO4/USO6 exist since Linux 6.2
            a.set_offload(OFFLOADS_A & ~(TunOffload.USO4 | TunOffload.USO6))
        self.ufo_accepted = a.try_offload(a.offloads | TunOffload.UFO)
        self.offloads_a = a.offloads
        b = stack.enter_context(TapDevice(unique_name("vkb"), vnet_hdr_size=VNET_HDR_SIZE))
        b.set_offload(TunOffload(0))
        ns.move_link(a.name)
        ns.move_link(b.name)
        ns.ip("link", "add", "br0", "address", BRIDGE_MAC.hex(":"), "type", "bridge",
              "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0")
        for tap in (a, b):
            ns.ip("link", "set", "dev", tap.name, "mtu", str(MTU))
            ns.ip("link", "set", "dev", tap.name, "master", "br0")
            ns.ip("link", "set", "dev", tap.name, "type", "bridge_slave", "learning", "off")
        ns.ip("link", "set", "dev", a.name, "type", "bridge_slave",
              "flood", "off", "mcast_flood", "off", "bcast_flood", "off")
        ns.ip("link", "set", "dev", "br0", "mtu", str(MTU))
        # B's queue must hold every segment of one packet plus the marker (the default
        # 1000 drops the tail of a packet cut into thousands of tiny segments).
        ns.ip("link", "set", "dev", b.name, "txqueuelen", str(B_QUEUE_LEN))
        for name in ("br0", a.name, b.name):
            ns.ip("link", "set", "dev", name, "up")
        self._ns, self._a, self._b = ns, a, b
        a.drain()
        b.drain()

    def close(self) -> None:
        stack, self._stack = self._stack, None
        self._ns = self._a = self._b = None
        if stack is not None:
            stack.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def netns(self) -> Netns:
        return self._open()[0]

    @property
    def tap_a(self) -> TapDevice:
        return self._open()[1]

    @property
    def tap_b(self) -> TapDevice:
        return self._open()[2]

    def _open(self) -> tuple[Netns, TapDevice, TapDevice]:
        if self._ns is None or self._a is None or self._b is None:
            raise ValueError("KernelSegmenter is not open (use it as a context manager)")
        return self._ns, self._a, self._b

    # -- the oracle --------------------------------------------------------------------

    def segment(self, hdr: NetHdr, frame: bytes) -> KernelResult:
        """Write ``hdr + frame`` to A and return what came out of B (see module doc)."""
        _, a, b = self._open()
        source = bytes(frame[6:12])
        try:
            a.write(hdr, frame)
        except TapError as exc:
            if exc.errno is None:
                raise
            return KernelResult(rejected_errno=exc.errno)
        self._counter += 1
        counter = self._counter
        marker_source = source if _valid_unicast(source) else DEFAULT_SOURCE_MAC
        a.write(None, self._marker(marker_source, counter))
        segments: list[bytes] = []
        headers: list[NetHdr] = []
        deadline = time.monotonic() + self.timeout
        for _ in range(MAX_SEGMENTS_PER_CALL):
            item = b.read()
            if item is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not b.wait_readable(remaining):
                    raise KernelOracleError(
                        f"marker {counter} did not come out of {b.name} within {self.timeout} s "
                        f"({len(segments)} segments so far)"
                    )
                continue
            got_hdr, out = item
            seen = self._marker_counter(out)
            if seen is not None:
                if seen == counter:
                    break
                # A marker of an earlier call that timed out: what came before it was not ours.
                self.stale_markers += 1
                segments.clear()
                headers.clear()
                continue
            if out[6:12] == source:
                segments.append(out)
                headers.append(got_hdr)
            else:
                self.foreign_frames += 1
        else:
            raise KernelOracleError(f"more than {MAX_SEGMENTS_PER_CALL} frames for one packet")
        self.looped_back += a.drain()
        return KernelResult(rejected_errno=None, segments=segments, headers=headers)

    @staticmethod
    def _marker(source: bytes, counter: int) -> bytes:
        frame = _MARKER.pack(_BROADCAST, source, MARKER_ETHERTYPE, _MARKER_MAGIC, os.getpid(), counter)
        return frame.ljust(60, b"\0")

    @staticmethod
    def _marker_counter(frame: bytes) -> int | None:
        if len(frame) < _MARKER.size or frame[12:14] != b"\x88\xb5":
            return None
        _, _, _, magic, pid, counter = _MARKER.unpack_from(frame)
        if magic != _MARKER_MAGIC or pid != os.getpid():
            return None
        return int(counter)

    # -- benchmark ---------------------------------------------------------------------

    def throughput(self, hdr: NetHdr, frame: bytes, seconds: float) -> KernelThroughput:
        """Measure kernel segmentation of ``hdr + frame`` for ``seconds`` in each of two
        modes: writes only (nothing reads B) and writing then reading back every segment.
        Raises :class:`KernelOracleError` if the kernel refuses or drops the packet."""
        if not 0 < seconds <= 60:
            raise ValueError(f"seconds must be in (0, 60], got {seconds}")
        _, a, b = self._open()
        probe = self.segment(hdr, frame)
        if not probe.segments:
            why = f"errno {probe.rejected_errno}" if probe.rejected_errno else "dropped"
            raise KernelOracleError(f"the kernel gives no segments for this packet ({why})")
        nseg = len(probe.segments)
        seg_bytes = sum(len(s) for s in probe.segments)

        writes = 0
        start = time.perf_counter()
        end = start + seconds
        now = start
        while now < end:
            for _ in range(64):
                a.write(hdr, frame)
            writes += 64
            now = time.perf_counter()
        writes_rate = writes / (now - start)
        b.drain(limit=1_000_000)

        segments = 0
        buf = bytearray(VNET_HDR_SIZE + 65536)
        start = time.perf_counter()
        end = start + seconds
        now = start
        while now < end:
            a.write(hdr, frame)
            got = 0
            while got < nseg:
                if b.readinto(buf) is not None:
                    got += 1
                elif not b.wait_readable(self.timeout):
                    break
            segments += got
            now = time.perf_counter()
        read_rate = segments / (now - start)
        b.drain(limit=1_000_000)
        self.looped_back += a.drain()
        return KernelThroughput(nseg, seg_bytes, writes_rate, read_rate)
