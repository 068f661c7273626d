"""Ring bugs: notification races and indices (§2.7), and negotiation (§3.1.1)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from emulator.net.device import NetDeviceConfig
from testbench.bugs.base import Bug, BugResult, finish
from testbench.bugs.rig import Rig, make_rig
from testbench.packets import tcp_packet
from virtio.errors import NegotiationFailed
from virtio.memory import GuestMemory

RING = 4
LATE = 10
"""Frames that arrive after the race."""


def _race(rig: Rig) -> None:
    """The driver services its interrupt (reap, refill with notifications off) right
    before the device's next enable on receiveq1: the other CPU wins the race."""
    q = rig.host.core.queue(0)
    assert q is not None
    original: Callable[[GuestMemory], None] = q.enable_notifications

    def enable(memory: GuestMemory) -> None:
        rig.host.driver.handle_interrupt()
        q.enable_notifications = original  # type: ignore[method-assign,assignment]
        original(memory)

    q.enable_notifications = enable  # type: ignore[method-assign]


def _qemu_stall(pcap: Path | None, fixed: bool) -> BugResult:
    def device(c: NetDeviceConfig) -> NetDeviceConfig:
        return replace(c, rx_recheck=fixed)

    rig = make_rig(device=device, queue_size=RING, pcap=pcap)
    frames = [tcp_packet(64, mss=None, seq=i).frame for i in range(RING + 1 + LATE)]
    for f in frames[:RING]:  # fill the ring before the driver runs
        rig.sink.deliver(f)
    _race(rig)
    for f in frames[RING:]:
        rig.receive(f)
    q = rig.host.core.queue(0)
    posted = q.pending(rig.host.memory) if q is not None else 0
    drops = rig.host.device.counters.drops.get("rx-no-buffer", 0)
    return finish(rig, "qemu-rx-stall-under-load", fixed, drops > 0 and posted > 0,
                  f"{drops} frames dropped as rx-no-buffer while {posted} buffers sit "
                  f"posted; {len(rig.got)} of {len(frames)} received",
                  {"rx_no_buffer": drops, "buffers_posted": posted,
                   "received": len(rig.got), "sent": len(frames)})


def _avail_jump(pcap: Path | None, fixed: bool) -> BugResult:
    rig = make_rig(pcap=pcap,
                   quirks=frozenset() if fixed else frozenset({"avail-idx-jump"}))
    for i in range(3):
        rig.send(tcp_packet(100, mss=None, seq=i))
    records = rig.host.monitor.count("avail-idx-jump")
    return finish(rig, "qemu-cve-2016-5403-avail-idx", fixed, records > 0,
                  f"{records} avail-idx-jump record(s); device needs reset: "
                  f"{rig.host.driver.needs_reset}; {len(rig.sink.sent)} of 3 frames sent",
                  {"records": records, "needs_reset": rig.host.driver.needs_reset,
                   "sent": len(rig.sink.sent)})


def _rcore_version_1(pcap: Path | None, fixed: bool) -> BugResult:
    rig = make_rig(pcap=pcap, start=False,
                   quirks=frozenset() if fixed else frozenset({"skip-version-1"}))
    error = ""
    try:
        rig.host.start()
    except NegotiationFailed as exc:
        error = str(exc)
    records = rig.host.monitor.count("feature-version-1-not-accepted")
    return finish(rig, "rcore-version-1-not-accepted", fixed, bool(error),
                  f"probe {'failed: FEATURES_OK refused' if error else 'succeeded'}; "
                  f"{records} feature-version-1-not-accepted record(s)",
                  {"probe_failed": bool(error), "records": records})


def _linux_validate(pcap: Path | None, fixed: bool) -> BugResult:
    rig = make_rig(pcap=pcap, start=False,
                   quirks=frozenset() if fixed else frozenset({"accept-without-dependency"}))
    failed = False
    try:
        rig.host.start()
    except NegotiationFailed:
        failed = True
    records = rig.host.monitor.count("feature-dependency")
    return finish(rig, "linux-validate-features-at-probe", fixed, failed,
                  f"probe {'failed: FEATURES_OK refused' if failed else 'succeeded'}; "
                  f"{records} feature-dependency record(s)",
                  {"probe_failed": failed, "records": records,
                   "negotiated": rig.host.driver.negotiated.names() if not failed else []})


BUGS = (
    Bug(
        "qemu-rx-stall-under-load",
        "QEMU virtio-net: receive stalls when the refill lands between check and enable",
        "QEMU virtio-net",
        "https://github.com/qemu/qemu/pull/267",
        "QEMU 06b12970174 'virtio-net: fix network stall under load' (named in PR #267)",
        "profile strict with the naive order (rx_recheck off: enable notifications, do "
        "not look again); a 4-entry ring filled, the driver refills just before the "
        "device's enable; 11 more frames",
        "11 frames dropped as rx-no-buffer while 4 buffers sit posted: the stall",
        "enable, then look again (rx_recheck on): nothing dropped, 15 frames received",
        _qemu_stall,
    ),
    Bug(
        "qemu-cve-2016-5403-avail-idx",
        "A guest moving avail.idx beyond the queue size (QEMU CVE-2016-5403)",
        "QEMU virtio",
        "https://vuldb.com/ar/cve/CVE-2016-5403",
        "QEMU virtqueue_pop refuses more requests than the queue size (CVE-2016-5403)",
        "profile strict; quirk avail-idx-jump (avail.idx moved by size + 1 on the first "
        "transmit); 3 frames",
        "the device records avail-idx-jump and sets DEVICE_NEEDS_RESET; nothing is sent",
        "no quirk: 3 frames sent, no record",
        _avail_jump,
    ),
    Bug(
        "rcore-version-1-not-accepted",
        "rcore virtio-drivers did not accept VIRTIO_F_VERSION_1",
        "rcore-os virtio-drivers",
        "https://github.com/rcore-os/virtio-drivers/pull/196",
        "rcore-os/virtio-drivers PR #196 'Accept VIRTIO_F_VERSION_1 if offered' (merged)",
        "profile strict; quirk skip-version-1",
        "the device refuses FEATURES_OK (record feature-version-1-not-accepted), the "
        "probe fails (a COQOS hypervisor failed the same way)",
        "no quirk: VERSION_1 accepted, probe succeeds",
        _rcore_version_1,
    ),
    Bug(
        "linux-validate-features-at-probe",
        "Linux virtio_net accepted features without their dependencies",
        "Linux virtio_net",
        "https://lore.kernel.org/patchwork/patch/519074/",
        "patch 'virtio-net: validate features during probe' (Jason Wang, v2, Nov 2014): "
        "fail the probe when a dependency is missing",
        "profile strict; quirk accept-without-dependency (GUEST_TSO4 accepted without "
        "GUEST_CSUM; the report's case was CTRL_RX and friends without CTRL_VQ, which "
        "hit BUG())",
        "the device refuses FEATURES_OK (record feature-dependency) and the probe fails",
        "no quirk: the driver closes its set under the dependency rules, probe succeeds",
        _linux_validate,
    ),
)
