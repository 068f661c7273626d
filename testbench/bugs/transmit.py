"""Transmit-side bugs: headers and checksum seeds drivers got wrong (§5.1.6.2)."""

from __future__ import annotations

from pathlib import Path

from driver.net import DEFAULT_WANTED
from testbench.bugs.base import Bug, BugResult, finish, tcp4_checksum_ok
from testbench.bugs.rig import make_rig
from testbench.packets import tcp_packet
from virtio.constants import FeatureBit as F
from virtio.features import FeatureSet

PACKETS = 4
"""TSO packets per run (4000 payload bytes, MSS 1448: three segments each)."""


def _bad_checksums(name: str, quirk: str, pcap: Path | None, fixed: bool) -> BugResult:
    """TSO through the Linux tap path with a bad seed: segments with wrong checksums."""
    rig = make_rig(profile="linux", quirks=frozenset() if fixed else frozenset({quirk}),
                   pcap=pcap)
    for i in range(PACKETS):
        rig.send(tcp_packet(4000, mss=1448, seq=1_000_000 + i * 4000))
    bad = sum(not tcp4_checksum_ok(f) for f in rig.sink.sent)
    return finish(rig, name, fixed, bad > 0,
                  f"{bad} of {len(rig.sink.sent)} segments on the wire with a wrong TCP "
                  "checksum",
                  {"segments": len(rig.sink.sent), "bad_checksums": bad,
                   "device_drops": dict(rig.host.device.counters.drops)})


def _dpdk_seed_lost(pcap: Path | None, fixed: bool) -> BugResult:
    return _bad_checksums("dpdk-tx-seed-lost", "seed-missing", pcap, fixed)


def _openvmm_lengthless_seed(pcap: Path | None, fixed: bool) -> BugResult:
    return _bad_checksums("openvmm-lso-lengthless-seed", "seed-length-zero", pcap, fixed)


def _linux_hdrlen(pcap: Path | None, fixed: bool) -> BugResult:
    wanted = DEFAULT_WANTED | FeatureSet.of(F.GUEST_HDRLEN)
    rig = make_rig(profile="strict", wanted=wanted, pcap=pcap,
                   quirks=frozenset() if fixed else frozenset({"hdr-len-wrong"}))
    for i in range(PACKETS):
        rig.send(tcp_packet(4000, mss=1448, seq=1_000_000 + i * 4000))
    refused = rig.host.device.counters.drops.get("hdr-len-inexact", 0)
    return finish(rig, "linux-guest-hdrlen-headlen", fixed, refused > 0,
                  f"{refused} of {PACKETS} TSO packets refused (hdr-len-inexact), "
                  f"{len(rig.sink.sent)} segments sent",
                  {"refused": refused, "segments": len(rig.sink.sent),
                   "records": rig.host.monitor.count("hdr-len-inexact")})


def _hash_report_header(pcap: Path | None, fixed: bool) -> BugResult:
    wanted = DEFAULT_WANTED | FeatureSet.of(F.HASH_REPORT)
    rig = make_rig(profile="strict", wanted=wanted, pcap=pcap,
                   quirks=frozenset() if fixed else frozenset({"header-size-mismatch"}))
    frames = [tcp_packet(200, mss=None, seq=i) for i in range(PACKETS)]
    for p in frames:
        rig.send(p)
    wrong = sum(f[:12] != p.frame[:12] for f, p in zip(rig.sink.sent, frames, strict=False))
    wrong += PACKETS - len(rig.sink.sent)
    return finish(rig, "virtio-spec-183-hash-report-tx-header", fixed, wrong > 0,
                  f"{wrong} of {PACKETS} frames left with the wrong MAC addresses "
                  f"(header {rig.host.driver.header_size} bytes negotiated)",
                  {"frames": PACKETS, "wrong_on_wire": wrong, "sent": len(rig.sink.sent)})


def _netkvm_csum_start(pcap: Path | None, fixed: bool) -> BugResult:
    rig = make_rig(profile="linux", pcap=pcap,
                   quirks=frozenset() if fixed else frozenset({"csum-start-wrong"}))
    for i in range(PACKETS):  # checksum offload only
        rig.send(tcp_packet(300, mss=None, seq=i * 300))
    drops = sum(rig.host.device.counters.drops.values())
    bad = sum(not tcp4_checksum_ok(f) for f in rig.sink.sent)
    return finish(rig, "netkvm-csum-start-without-ip-offset", fixed, bad + drops > 0,
                  f"{bad} of {PACKETS} packets left with a wrong TCP checksum (summed from "
                  f"byte 20 and written over the TCP destination port), {drops} dropped",
                  {"sent": len(rig.sink.sent), "bad_checksums": bad, "dropped": drops})


BUGS = (
    Bug(
        "dpdk-tx-seed-lost",
        "DPDK virtio PMD: pseudo-header checksum lost when Tx prepare was introduced",
        "DPDK net/virtio",
        "http://git.droids-corp.org?a=commit&h=00a5ea02e12fc1409901c0149ce87c28a286ea60&p=dpdk.git",
        "DPDK commit 00a5ea02e12f (seed set again through rte_net_intel_cksum_prepare)",
        "profile linux (the tap path: seed trusted and adjusted per segment); CSUM, "
        "HOST_TSO4; quirk seed-missing; 4 TSO packets of 4000 bytes, MSS 1448",
        "every segment on the wire has a wrong TCP checksum (bad_checksums = 12); the "
        "monitor records csum-seed-other",
        "no quirk: the driver seeds the pseudo-header sum (bad_checksums = 0)",
        _dpdk_seed_lost,
    ),
    Bug(
        "openvmm-lso-lengthless-seed",
        "A length-less LSO pseudo-header seed through a Linux tap gives wrong checksums",
        "openvmm net_tap (NDIS/netvsp guests)",
        "https://github.com/microsoft/openvmm/pull/3812",
        "openvmm PR #3812 (open): recompute the seed with the full L4 length",
        "profile linux; CSUM, HOST_TSO4; quirk seed-length-zero (the Windows/NDIS "
        "convention); 4 TSO packets of 4000 bytes, MSS 1448",
        "every segment has a wrong TCP checksum (the kernel adjusts a seed that lacks "
        "the length); the monitor records csum-seed-zero-length",
        "no quirk: full-length seed, every checksum right (the strict and qemu profiles "
        "fix the seed instead)",
        _openvmm_lengthless_seed,
    ),
    Bug(
        "linux-guest-hdrlen-headlen",
        "Linux virtio_net: hdr_len from skb_headlen() with VIRTIO_NET_F_GUEST_HDRLEN",
        "Linux virtio_net",
        "https://lexplain.net/commit-analyses/38ec410b99a5ee6566f75650ce3d4fd632940fd0",
        "Linux 38ec410b99a5 'virtio-net: correct hdr_len handling for "
        "VIRTIO_NET_F_GUEST_HDRLEN' (merge 673bb63d2006), fixing be50da3e9d4a",
        "profile strict (a device that holds the driver to GUEST_HDRLEN); GUEST_HDRLEN "
        "negotiated; quirk hdr-len-wrong (hdr_len = the linear length, here the frame); "
        "4 TSO packets",
        "all 4 TSO packets refused, counted as hdr-len-inexact, nothing sent",
        "no quirk: hdr_len = Ethernet + IP + TCP headers, 12 segments sent",
        _linux_hdrlen,
    ),
    Bug(
        "virtio-spec-183-hash-report-tx-header",
        "HASH_REPORT makes the transmit header 20 bytes too (spec clarification)",
        "OASIS virtio spec / drivers",
        "https://github.com/oasis-tcs/virtio-spec/issues/183",
        "virtio-spec issue #183, fix merged for v1.4: the TX header has the hash fields",
        "profile strict; HASH_REPORT negotiated (20-byte header); quirk "
        "header-size-mismatch (the driver sends 12-byte TX headers); 4 plain frames",
        "every frame leaves 8 bytes short with garbage MAC addresses (the device reads 8 "
        "frame bytes as hash fields); nothing the device can detect",
        "no quirk: a 20-byte TX header, frames exact on the wire",
        _hash_report_header,
    ),
    Bug(
        "netkvm-csum-start-without-ip-offset",
        "NetKVM: csum_start counted from the IP header when Windows disables offloads",
        "Windows NetKVM",
        "https://github.com/virtio-win/kvm-guest-drivers-windows/pull/1487",
        "NetKVM PR #1487 (closed): fall back to in-driver checksums; ipHeaderOffset was "
        "left 0 when no OID_OFFLOAD_ENCAPSULATION came",
        "profile linux (the host tap completes the checksum where told); CSUM; quirk "
        "csum-start-wrong "
        "(csum_start = 20, the TCP offset from the IP header); 4 TCP packets with "
        "checksum offload",
        "all 4 leave with a wrong TCP checksum (the device sums from byte 20 and writes "
        "the result over the TCP destination port); a receiver drops them",
        "no quirk: csum_start 34, 4 packets sent with good checksums",
        _netkvm_csum_start,
    ),
)
