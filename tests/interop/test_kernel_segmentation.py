"""Differential test: the device's segmentation under the ``linux`` profile against the
running Linux kernel's own (tap A with offloads → bridge → tap B without, in a namespace
the test creates; see testbench/kernel_oracle.py).

For every packet of the corpus and of a hypothesis-generated set (≥ 2,000 packets):
- the kernel refuses the header (write() fails with EINVAL) ⇔ the engine raises an
  OffloadError of stage "reject";
- the kernel accepts it and nothing comes out of tap B ⇔ stage "drop";
- otherwise the engine's segments equal the kernel's byte for byte — including where a
  driver's convention makes them wrong (a length-0 pseudo-header seed gives bad
  checksums on Linux, and the engine reproduces exactly those bytes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from emulator.offload import OffloadError, segment
from emulator.profiles import LINUX
from stack.wire import ipv6
from stack.wire.ipv6 import ExtHeader
from stack.wire.tcp import NopOption, TcpFlags, TimestampsOption
from testbench.kernel_oracle import MTU, KernelResult, KernelSegmenter
from testbench.netns import tap_available
from testbench.packets import OffloadPacket, Seed, tcp_packet, udp_packet
from tests.conftest import skip_unless
from tests.interop.corpus import malformed, well_formed
from virtio.constants import GsoType

GENERATED = 2000


@pytest.fixture(scope="module")
def oracle() -> Iterator[KernelSegmenter]:
    reason = tap_available()
    skip_unless(None if reason is None else f"interop: {reason}")
    with KernelSegmenter() as seg:
        yield seg


def outcome(kernel: KernelResult) -> str:
    if kernel.rejected_errno is not None:
        return f"reject(errno {kernel.rejected_errno})"
    return "segments" if kernel.segments else "drop"


def mask_fragment_id(frame: bytes) -> bytes:
    """The one field where Linux and the engine legitimately differ: the Identification
    of the IPv6 fragment header UFO adds. Linux draws it at random per packet
    (``ipv6_proxy_select_ident``); the engine numbers deterministically. Zeroed in both
    before comparing (RFC 8200 §4.5 only asks that it be unique per flow)."""
    if frame[12:14] != b"\x86\xdd":
        return frame
    chain = ipv6.walk_extension_headers(frame, frame[14 + ipv6.OFF_NEXT_HEADER], 14 + 40)
    frag = chain.find(ipv6.ExtHeader.FRAGMENT)
    if frag is None:
        return frame
    at = frag.offset + ipv6.FRAG_OFF_IDENT
    return frame[:at] + bytes(4) + frame[at + 4:]


def compare(oracle: KernelSegmenter, pkt: OffloadPacket) -> str | None:
    """None when the engine does what the kernel did, else a one-line description."""
    kernel = oracle.segment(pkt.hdr, pkt.frame)
    try:
        ours: list[bytes] | None = segment(pkt.frame, pkt.hdr, LINUX)
        err: OffloadError | None = None
    except OffloadError as exc:
        ours, err = None, exc
    want = outcome(kernel)
    if kernel.rejected_errno is not None or not kernel.segments:
        expected_stage = "reject" if kernel.rejected_errno is not None else "drop"
        if err is not None and err.stage == expected_stage:
            return None
        got = f"{err.stage} ({err.rule})" if err is not None else f"{len(ours or [])} segments"
        return f"{pkt.label}: kernel {want}, engine {got}"
    if err is not None:
        return f"{pkt.label}: kernel {len(kernel.segments)} segments, engine {err.stage} ({err.rule})"
    assert ours is not None
    if pkt.hdr.gso_type & 0x7F == GsoType.UDP:
        ours = [mask_fragment_id(f) for f in ours]
        kernel_segments = [mask_fragment_id(f) for f in kernel.segments]
    else:
        kernel_segments = kernel.segments
    if ours == kernel_segments:
        return None
    if len(ours) != len(kernel_segments):
        return f"{pkt.label}: kernel {len(kernel_segments)} segments, engine {len(ours)}"
    for i, (a, b) in enumerate(zip(ours, kernel_segments, strict=True)):
        if a != b:
            at = next((j for j in range(min(len(a), len(b))) if a[j] != b[j]), min(len(a), len(b)))
            return (f"{pkt.label}: segment {i} differs at byte {at} "
                    f"(engine {a[at:at + 4].hex()}, kernel {b[at:at + 4].hex()}; "
                    f"lengths {len(a)}/{len(b)})")
    return None  # pragma: no cover - unreachable: lists differ but no element does


def test_corpus_well_formed(oracle: KernelSegmenter) -> None:
    packets = well_formed()
    assert len(packets) >= 150
    mismatches = [m for p in packets if (m := compare(oracle, p)) is not None]
    assert mismatches == []


def test_corpus_malformed_headers(oracle: KernelSegmenter) -> None:
    packets = malformed()
    outcomes = Counter(outcome(oracle.segment(p.hdr, p.frame)) for p in packets)
    # the corpus exercises all three kernel outcomes
    assert set(outcomes) >= {"reject(errno 22)", "drop", "segments"}, outcomes
    mismatches = [m for p in packets if (m := compare(oracle, p)) is not None]
    assert mismatches == []


def test_zero_length_seed_reproduces_the_linux_symptom(oracle: KernelSegmenter) -> None:
    """A driver seeding the pseudo header with length 0 (the Windows/Intel convention)
    gets segments with wrong TCP checksums from Linux — and from the linux profile, the
    same bytes."""
    pkt = tcp_packet(10 * 1448, seed=Seed.ZERO)
    kernel = oracle.segment(pkt.hdr, pkt.frame)
    ours = segment(pkt.frame, pkt.hdr, LINUX)
    assert ours == kernel.segments and len(ours) == 10
    right = segment(tcp_packet(10 * 1448, seed=Seed.FULL).frame,
                    tcp_packet(10 * 1448, seed=Seed.FULL).hdr, LINUX)
    # same everything but the TCP checksum field (offset 14 + 20 + 16)
    for bad, good in zip(ours, right, strict=True):
        assert bad[:50] == good[:50] and bad[52:] == good[52:]
        assert bad[50:52] != good[50:52]


# hypothesis-generated packets

tcp_flags = st.sampled_from([TcpFlags.ACK, TcpFlags.PSH | TcpFlags.ACK,
                             TcpFlags.FIN | TcpFlags.PSH | TcpFlags.ACK,
                             TcpFlags.CWR | TcpFlags.ECE | TcpFlags.ACK, TcpFlags.ACK | TcpFlags.URG])
ext_chains = st.sampled_from([(), (int(ExtHeader.HOP_BY_HOP),), (int(ExtHeader.DEST_OPTS),),
                              (int(ExtHeader.HOP_BY_HOP), int(ExtHeader.ROUTING))])


@st.composite
def offload_packets(draw: st.DrawFn) -> OffloadPacket:
    ipv6 = draw(st.booleans())
    if draw(st.integers(0, 4)) == 0:
        size = draw(st.integers(1, 20000))
        return udp_packet(size, gso_size=draw(st.integers(200, 1472)), ipv6=ipv6,
                          ext=draw(ext_chains) if ipv6 else (),
                          seed=draw(st.sampled_from([Seed.FULL, Seed.ZERO])))
    # A segment (headers + mss) must fit the oracle's 9000-byte MTU: larger frames are
    # dropped by the bridge, which is not segmentation behaviour.
    mss = draw(st.integers(64, 8800))
    size = draw(st.one_of(st.integers(1, 3 * mss + 1), st.integers(1, 64000)))
    flags = draw(tcp_flags)
    opts = draw(st.sampled_from([(), (NopOption(), NopOption(), TimestampsOption(7, 9))]))
    return tcp_packet(
        size, mss=mss, ipv6=ipv6, flags=flags, options=opts,
        ext=draw(ext_chains) if ipv6 else (),
        seed=draw(st.sampled_from([Seed.FULL, Seed.ZERO])),
        ecn=bool(flags & TcpFlags.CWR) and draw(st.booleans()),
        ip_id=draw(st.integers(0, 0xFFFF)), seq=draw(st.integers(0, 2**32 - 1)),
    )


@settings(max_examples=GENERATED, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(pkt=offload_packets())
def test_generated_packets_match_the_kernel(oracle: KernelSegmenter, pkt: OffloadPacket) -> None:
    assert compare(oracle, pkt) is None


@st.composite
def mangled_packets(draw: st.DrawFn) -> OffloadPacket:
    """A well-formed packet whose virtio_net_hdr a buggy driver got wrong: any field
    replaced by a value drivers have been seen to send (the bug categories of
    SPEC-NOTES.md: gso_size 0, GSO without NEEDS_CSUM, gso_type not matching the packet,
    csum_start/csum_offset off, hdr_len wrong, RX-only flags on TX)."""
    base = draw(offload_packets())
    hdr = base.hdr
    n = len(base.frame)
    changes: dict[str, int] = {}
    fields = draw(st.sets(st.sampled_from(
        ["flags", "gso_type", "gso_size", "csum_start", "csum_offset", "hdr_len"]),
        min_size=1, max_size=3))
    if "flags" in fields:
        changes["flags"] = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 0xFF]))
    if "gso_type" in fields:
        changes["gso_type"] = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 0x80, 0x81, 0x84,
                                                    0x85, 0x7F]))
    if "gso_size" in fields:
        changes["gso_size"] = draw(st.sampled_from([0, 1, 7, 8, 536, 1448, 9000, 0xFFFF]))
    if "csum_start" in fields:
        changes["csum_start"] = draw(st.one_of(st.integers(0, n + 8),
                                               st.sampled_from([0, 14, 20, 34, 54, 0xFFFF])))
    if "csum_offset" in fields:
        changes["csum_offset"] = draw(st.sampled_from([0, 2, 6, 10, 16, 18, 0xFFFF]))
    if "hdr_len" in fields:
        changes["hdr_len"] = draw(st.one_of(st.integers(0, n + 4), st.just(0xFFFF)))
    mangled = replace(hdr, **changes)
    label = f"{base.label} with " + ", ".join(f"{k}={v:#x}" for k, v in sorted(changes.items()))
    return OffloadPacket(mangled, base.frame, label)


@settings(max_examples=1000, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(pkt=mangled_packets())
def test_mangled_headers_get_what_the_kernel_gives_them(oracle: KernelSegmenter,
                                                         pkt: OffloadPacket) -> None:
    """Refused ⇔ EINVAL, dropped ⇔ nothing out of tap B, else the same bytes."""
    assume(fits_the_oracle(pkt))
    assert compare(oracle, pkt) is None


def fits_the_oracle(pkt: OffloadPacket) -> bool:
    """Whether what the engine would send fits the oracle's links: the bridge drops
    frames over its MTU (9000) plus the Ethernet header — a property of the test
    topology, not of segmentation (a mangled header can turn a super-packet into one
    unsegmented frame)."""
    try:
        frames = segment(pkt.frame, pkt.hdr, LINUX)
    except OffloadError:
        return True
    return max(map(len, frames)) <= MTU + 14
