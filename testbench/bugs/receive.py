"""Receive-side driver bugs: lengths, checksums and buffer sizes (§5.1.6.3, §5.1.6.4)."""

from __future__ import annotations

from pathlib import Path

from driver.net import DEFAULT_WANTED
from testbench.bugs.base import Bug, BugResult, finish, tcp4_checksum_ok
from testbench.bugs.rig import make_rig
from testbench.packets import tcp_packet
from virtio.constants import FeatureBit as F
from virtio.features import FeatureSet

FRAMES = 5


def _freebsd_needs_csum(pcap: Path | None, fixed: bool) -> BugResult:
    wanted = DEFAULT_WANTED | FeatureSet.of(F.GUEST_CSUM)
    rig = make_rig(profile="linux", wanted=wanted, pcap=pcap,
                   quirks=frozenset() if fixed else frozenset({"rx-needs-csum-as-verified"}))
    for i in range(FRAMES):  # a local sender's packets, checksum left partial
        p = tcp_packet(300, mss=None, seq=i * 300)
        rig.receive_offloaded(p.frame, p.hdr)
    lies = sum(f.csum_verified and not tcp4_checksum_ok(f.data) for f in rig.got)
    return finish(rig, "freebsd-vtnet-needs-csum-as-valid", fixed, lies > 0,
                  f"{lies} of {len(rig.got)} frames handed up as checksum-verified with "
                  "a partial (invalid) checksum",
                  {"received": len(rig.got), "verified_but_bad": lies,
                   "partial": sum(f.csum_partial for f in rig.got)})


def _netkvm_unmarked(pcap: Path | None, fixed: bool) -> BugResult:
    wanted = DEFAULT_WANTED | FeatureSet.of(F.GUEST_CSUM)
    # the workaround of the issue, tx checksum offload off on the host tap, means the
    # host completes checksums: the strict profile does that instead of passing them on
    rig = make_rig(profile="strict" if fixed else "linux", wanted=wanted, pcap=pcap,
                   quirks=frozenset({"rx-needs-csum-as-plain"}))
    for i in range(FRAMES):
        p = tcp_packet(300, mss=None, seq=i * 300)
        rig.receive_offloaded(p.frame, p.hdr)
    dropped = sum(not f.csum_verified and not f.csum_partial and not tcp4_checksum_ok(f.data)
                  for f in rig.got)
    return finish(rig, "netkvm-rx-partial-checksum-unmarked", fixed, dropped > 0,
                  f"{dropped} of {len(rig.got)} frames handed up as plain with only the "
                  "pseudo-header sum in the checksum field (the stack drops them)",
                  {"received": len(rig.got), "bad_plain": dropped,
                   "verified": sum(f.csum_verified for f in rig.got)})


def _sddf_length(pcap: Path | None, fixed: bool) -> BugResult:
    rig = make_rig(pcap=pcap,
                   quirks=frozenset() if fixed else frozenset({"rx-len-from-descriptor"}))
    frames = [tcp_packet(100 + 50 * i, mss=None, seq=i).frame for i in range(FRAMES)]
    for f in frames:
        rig.receive(f)
    wrong = sum(g.data != f for g, f in zip(rig.got, frames, strict=False))
    return finish(rig, "sddf-rx-length-from-descriptor", fixed, wrong > 0,
                  f"{wrong} of {FRAMES} frames handed up with the buffer's length instead "
                  "of the packet's", {"received": len(rig.got), "wrong_length": wrong,
                                      "lengths": [len(g.data) for g in rig.got]})


def _osv_small_buffers(pcap: Path | None, fixed: bool) -> BugResult:
    wanted = DEFAULT_WANTED | FeatureSet.of(F.GUEST_CSUM, F.GUEST_TSO4)
    # OSv, like Linux, never looked at num_buffers (firecracker-legacy leaves it 0)
    quirks = {"ignore-num-buffers"} | (set() if fixed else {"rx-small-buffers"})
    rig = make_rig(profile="firecracker-legacy", wanted=wanted, pcap=pcap,
                   quirks=frozenset(quirks), max_steps=2_000)
    big = tcp_packet(20000, mss=1448)
    for _ in range(3):
        rig.receive_offloaded(big.frame, big.hdr)
    retries = rig.host.device.counters.rx_oversize_retries
    hang = f"hangs retrying ({retries} retries, cut by the bound)" if rig.stalled \
        else "does not hang"
    return finish(rig, "osv-small-rx-buffers-firecracker", fixed, rig.stalled,
                  f"{len(rig.got)} of 3 coalesced packets received into "
                  f"{rig.host.driver.rx_buffer_size}-byte buffers; the device {hang}",
                  {"retries": retries, "received": len(rig.got),
                   "rx_buffer_size": rig.host.driver.rx_buffer_size})


BUGS = (
    Bug(
        "netkvm-rx-partial-checksum-unmarked",
        "NetKVM: NEEDS_CSUM packets handed to tcpip.sys with the checksum unfinished",
        "Windows NetKVM",
        "https://github.com/virtio-win/kvm-guest-drivers-windows/issues/1630",
        "NetKVM issue #1630 (closed); confirmed workaround: ethtool -K <tap> tx off",
        "profile linux (partial checksums from local senders reach the guest); "
        "GUEST_CSUM; quirk rx-needs-csum-as-plain; 5 TCP packets with NEEDS_CSUM",
        "all 5 handed up as plain packets whose checksum field holds the pseudo-header "
        "sum: the stack drops them (DHCP ACKs lost in the report)",
        "the workaround: the host completes checksums (profile strict), 5 packets "
        "verified",
        _netkvm_unmarked,
    ),
    Bug(
        "freebsd-vtnet-needs-csum-as-valid",
        "FreeBSD vtnet: received NEEDS_CSUM taken for a verified checksum",
        "FreeBSD if_vtnet",
        "https://reviews.freebsd.org/rG3008f30d2c2cabdd7e17f7fb922139da8681ffbd",
        "FreeBSD 3008f30d2c2c 'vtnet: improve checksum offloading' (D51686, PR 165059)",
        "profile linux (partial checksums passed to the guest); GUEST_CSUM; quirk "
        "rx-needs-csum-as-verified; 5 TCP packets from a local sender with NEEDS_CSUM",
        "5 frames handed up as verified whose checksum field is only the pseudo-header "
        "sum (forwarded on, they leave with bad checksums)",
        "no quirk: handed up as partial (csum_partial, start/offset kept)",
        _freebsd_needs_csum,
    ),
    Bug(
        "sddf-rx-length-from-descriptor",
        "sDDF virtio net: packet length read from the descriptor, not from used.len",
        "au-ts/sddf virtio net driver",
        "https://github.com/au-ts/sddf/pull/506",
        "au-ts/sddf PR #506 'Read Rx packet length from correct field' (merged)",
        "profile strict; default features; quirk rx-len-from-descriptor; 5 frames of "
        "154..354 bytes",
        "every frame handed up padded to the buffer size (1518 bytes)",
        "no quirk: lengths from used.len, frames exact",
        _sddf_length,
    ),
    Bug(
        "osv-small-rx-buffers-firecracker",
        "OSv on Firecracker: page-sized receive buffers with GUEST_TSO and no MRG_RXBUF",
        "OSv virtio-net",
        "https://github.com/cloudius-systems/osv/issues/1058",
        "OSv issue #1058 (closed): 17-page buffers when MRG_RXBUF is not negotiated",
        "profile firecracker-legacy (no MRG_RXBUF); GUEST_CSUM, GUEST_TSO4; quirk "
        "rx-small-buffers (and ignore-num-buffers, as OSv); 3 coalesced 20 KB TCP "
        "packets from the tap",
        "none fits; Firecracker keeps retrying the first: a hang, cut by the bound "
        "(large downloads fail)",
        "no quirk: 65601-byte buffers (header + 65589), the 3 packets arrive",
        _osv_small_buffers,
    ),
)
