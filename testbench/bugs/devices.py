"""Device-side bugs the driver has to live with: receive headers, used lengths and
receive offloads a device got wrong (§2.7.8, §5.1.6.4)."""

from __future__ import annotations

from pathlib import Path

from driver.net import DEFAULT_WANTED
from emulator.profiles import STRICT
from testbench.bugs.base import Bug, BugResult, finish
from testbench.bugs.rig import make_rig
from testbench.packets import tcp_packet
from virtio.constants import FeatureBit as F
from virtio.features import FeatureSet

FRAMES = 5
HANG_STEPS = 2_000
"""Event-loop steps after which a device that retries forever is declared hung."""
KVMTOOL = STRICT.derive("kvmtool-mrg-publish-early", rx_num_buffers_early=True,
                        description="strict, with num_buffers published as 1")
OVERREPORT = STRICT.derive("used-len-overreport", rx_used_len_extra=12,
                           description="strict, with used.len 12 bytes too long")


def _fc_nack(pcap: Path | None, fixed: bool) -> BugResult:
    # FreeBSD declines LRO: GUEST_CSUM without GUEST_TSO4/6, 1526-byte buffers
    wanted = DEFAULT_WANTED | FeatureSet.of(F.GUEST_CSUM)
    rig = make_rig(profile="firecracker" if fixed else "firecracker-legacy",
                   wanted=wanted, pcap=pcap, max_steps=HANG_STEPS)
    big = tcp_packet(20000, mss=1448)
    rig.receive_offloaded(big.frame, big.hdr)
    retries = rig.host.device.counters.rx_oversize_retries
    hang = f"hang, cut by the bound after {retries} retries" if rig.stalled else "no hang"
    return finish(rig, "firecracker-guest-tso-nack", fixed, rig.stalled,
                  f"a coalesced 20 KB packet pushed at a driver that declined GUEST_TSO: "
                  f"{hang}; {len(rig.got)} frames received", {
                      "retries": retries, "received": len(rig.got),
                      "device_records": rig.host.monitor.count("rx-offload-not-negotiated")})


def _num_buffers(name: str, pcap: Path | None, *, profile: str,
                 quirks: frozenset[str], fixed: bool) -> BugResult:
    rig = make_rig(profile=profile, quirks=quirks, pcap=pcap)
    for i in range(FRAMES):
        rig.receive(tcp_packet(100, mss=None, seq=i).frame)
    drops = rig.host.driver.counters.drops.get("rx-num-buffers-not-one", 0)
    return finish(rig, name, fixed, drops > 0,
                  f"{drops} of {FRAMES} frames dropped by the driver (num_buffers 0 "
                  f"without MRG_RXBUF); {len(rig.got)} received",
                  {"driver_drops": drops, "received": len(rig.got)})


def _fc_num_buffers(pcap: Path | None, fixed: bool) -> BugResult:
    return _num_buffers("firecracker-num-buffers-zero", pcap, fixed=fixed,
                        profile="firecracker" if fixed else "firecracker-legacy",
                        quirks=frozenset())


def _hermit_num_buffers(pcap: Path | None, fixed: bool) -> BugResult:
    return _num_buffers("hermit-mlx5-num-buffers", pcap, fixed=fixed,
                        profile="firecracker-legacy",
                        quirks=frozenset({"ignore-num-buffers"}) if fixed else frozenset())


def _openvmm_used_len(pcap: Path | None, fixed: bool) -> BugResult:
    rig = make_rig(profile=STRICT if fixed else OVERREPORT, pcap=pcap)
    frame = tcp_packet(1514 - 54, mss=None).frame  # fills the buffer exactly
    for _ in range(FRAMES):
        rig.receive(frame)
    errors = [e.rule for e in rig.host.driver.errors]
    return finish(rig, "openvmm-used-len-overreport", fixed, bool(errors),
                  f"driver errors {errors}, broken={rig.host.driver.broken}, "
                  f"{len(rig.got)} of {FRAMES} frames received",
                  {"driver_errors": errors, "broken": rig.host.driver.broken,
                   "received": len(rig.got)})


def _snabb_mrg(pcap: Path | None, fixed: bool) -> BugResult:
    wanted = DEFAULT_WANTED | FeatureSet.of(F.MRG_RXBUF)
    rig = make_rig(profile=STRICT if fixed else OVERREPORT, wanted=wanted, pcap=pcap,
                   quirks=frozenset({"trust-used-len"}))  # a Linux-like guest
    frames = [tcp_packet(200 + i, mss=None, seq=i).frame for i in range(FRAMES)]
    for f in frames:
        rig.receive(f)
    wrong = sum(g.data != f for g, f in zip(rig.got, frames, strict=False))
    return finish(rig, "snabb-mrg-rxbuf-overreport", fixed, wrong > 0,
                  f"{wrong} of {FRAMES} frames handed up longer than sent "
                  f"(lengths {[len(g.data) for g in rig.got]})",
                  {"wrong_length": wrong, "received": len(rig.got)})


def _kvmtool(pcap: Path | None, fixed: bool) -> BugResult:
    wanted = DEFAULT_WANTED | FeatureSet.of(F.MRG_RXBUF, F.GUEST_CSUM, F.GUEST_TSO4)
    rig = make_rig(profile=STRICT if fixed else KVMTOOL, wanted=wanted, pcap=pcap)
    big = tcp_packet(4000, mss=1448)  # coalesced: spans three 1530-byte buffers
    for _ in range(2):
        rig.receive_offloaded(big.frame, big.hdr)
    whole = sum(g.data == big.frame for g in rig.got)
    drops = dict(rig.host.driver.counters.drops)
    return finish(rig, "kvmtool-mrg-rxbuf-num-buffers-early", fixed, whole < 2,
                  f"{whole} of 2 packets whole; {len(rig.got)} frames handed up, driver "
                  f"drops {drops}", {"whole": whole, "frames": len(rig.got),
                                     "driver_drops": drops})


BUGS = (
    Bug(
        "firecracker-guest-tso-nack",
        "Firecracker: receive offloads from the offered features; a guest cannot NACK LRO",
        "Firecracker virtio-net",
        "https://github.com/firecracker-microvm/firecracker/issues/3905",
        "Firecracker 1e5d3dba6a92 'fix(net): Apply only supported TAP offloading "
        "features'",
        "profile firecracker-legacy; the driver accepts GUEST_CSUM but not GUEST_TSO4/6 "
        "(FreeBSD without LRO, 1530-byte buffers); a coalesced 20 KB TCP packet from the "
        "tap",
        "the device passes it on as a GSO packet (device record "
        "rx-offload-not-negotiated); it cannot fit and the device retries forever: the "
        "hang of the issue, cut by the bound (stalled, 2001 retries, nothing received)",
        "profile firecracker: the offloads follow the accepted features, the device "
        "segments, 14 MSS-sized frames arrive",
        _fc_nack,
    ),
    Bug(
        "firecracker-num-buffers-zero",
        "Firecracker: num_buffers never set to 1 without MRG_RXBUF",
        "Firecracker virtio-net",
        "https://github.com/firecracker-microvm/firecracker/pull/4658",
        "Firecracker fb66e22ff3c6 'feat(net): add VIRTIO_NET_F_MRG_RXBUF support' (sets "
        "num_buffers to the chains used)",
        "profile firecracker-legacy; default features (no MRG_RXBUF); a driver that "
        "checks num_buffers (this one); 5 frames",
        "every frame dropped by the driver as rx-num-buffers-not-one (Linux never "
        "looked, so nobody noticed)",
        "profile firecracker: num_buffers 1, all 5 frames received",
        _fc_num_buffers,
    ),
    Bug(
        "hermit-mlx5-num-buffers",
        "Hermit: MLX5 sends num_buffers != 1 without MRG_RXBUF; the driver ignores it",
        "Hermit kernel virtio-net",
        "https://github.com/hermit-os/kernel/blob/019e89f43bf67de8315231858ff22dc688235f36/"
        "src/drivers/net/virtio/mod.rs",
        "Hermit RxToken::consume: num_buffers taken as 1 when MRG_RXBUF is not negotiated",
        "a device leaving num_buffers != 1 (profile firecracker-legacy stands in for "
        "MLX5); default features; 5 frames",
        "a driver that trusts num_buffers drops all 5 frames (rx-num-buffers-not-one)",
        "Hermit's workaround (quirk ignore-num-buffers): all 5 frames received",
        _hermit_num_buffers,
    ),
    Bug(
        "kvmtool-mrg-rxbuf-num-buffers-early",
        "kvmtool: mergeable buffers published before num_buffers was final",
        "kvmtool virtio-net",
        "https://kernel.googlesource.com/pub/scm/linux/kernel/git/will/kvmtool/+/"
        "3fea89a924511f9f8fe05a892098fad77c1eca0d",
        "kvmtool 3fea89a92451 'virtio-net: fix VIRTIO_NET_F_MRG_RXBUF usage in rx thread'",
        "a device whose header says num_buffers 1 for a packet in several buffers (what "
        "the guest saw when it looked before kvmtool counted up); MRG_RXBUF, GUEST_CSUM, "
        "GUEST_TSO4; 2 coalesced 4000-byte packets (3 buffers each)",
        "no packet arrives whole: each is cut at the first buffer, the other buffers are "
        "parsed as packets of their own and dropped ('the guest quickly becomes confused')",
        "num_buffers 3 in the first header: both packets whole",
        _kvmtool,
    ),
    Bug(
        "openvmm-used-len-overreport",
        "openvmm virtio_net: used.len larger than the receive buffer",
        "openvmm virtio_net",
        "https://github.com/microsoft/openvmm/pull/3119",
        "openvmm PR #3119 'virtio_net: fix RX buffer capacity to exclude virtio-net "
        "header' (merged)",
        "profile strict with used.len 12 bytes too long (the header counted twice); "
        "default features; 5 frames that fill a buffer",
        "the driver sees used len 1542 > 1530 writable bytes: used-len-too-large, the "
        "driver stops using the rings, no frame arrives",
        "profile strict: used.len exact, 5 frames received",
        _openvmm_used_len,
    ),
    Bug(
        "snabb-mrg-rxbuf-overreport",
        "Snabb vhost-user: over-reported length of packets in mergeable buffers",
        "Snabb virtio net_device",
        "https://github.com/snabbco/snabb/pull/935",
        "Snabb PR #935 'virtio/net_device: Fix bug with mergeable rx buffers' (merged)",
        "a device over-reporting used.len by 12 (stand-in for the Snabb arithmetic); "
        "MRG_RXBUF; a driver that trusts used.len (quirk trust-used-len); 5 frames",
        "every frame handed up 12 bytes too long (garbage tail) — a trusting guest does "
        "not notice, as with the Ubuntu guests of the report",
        "used.len exact: frames exact",
        _snabb_mrg,
    ),
)
