"""The demo scenario: host A ↔ wire ↔ host B on the emulated pair.

- 1,000 numbered frames of mixed sizes each way, every one checked byte for byte;
- then both hosts get the TCP/IP stack and A sends ``tcp_bytes`` to B over one TCP
  connection: A's stack emits packets of up to 64 KB that A's device segments (TSO,
  §5.1.6.2), B's device coalesces them back (GUEST_TSO4/6, §5.1.6.4) into mergeable
  (MRG_RXBUF) or big buffers, every byte is checked; goodput and per-layer counters;
- B's driver switches promiscuous mode off (CTRL_RX, §5.1.6.5.1) and A sends a few
  frames to a stranger's MAC: B's receive filter drops them (counted by reason);
- with ``queue_pairs`` > 1 both devices have that many queue pairs and the drivers
  spread flows over them (RSS, §5.1.6.5.7): the counters show per-queue traffic.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from driver.net import BIG_PACKET, DEFAULT_WANTED, DriverConfig
from emulator.backends.faults import FaultConfig
from emulator.backends.pcap import Capture
from emulator.net.device import NetDeviceConfig
from stack.wire.ethernet import EtherType, build_frame
from testbench.host import MIB, Host, HostConfig, Pair, make_pair
from testbench.loop import EventLoop
from testbench.tcp_bulk import add_stacks, run_bulk
from testbench.traffic import Checker, Sender, Stream, frame_sizes
from virtio.constants import FeatureBit as F
from virtio.ctrl import RxCmd
from virtio.features import FeatureSet

RX_OFFLOADS = FeatureSet.of(F.GUEST_CSUM, F.GUEST_TSO4, F.GUEST_TSO6, F.GUEST_ECN)
STRANGER = bytes.fromhex("02aabbccddee")
"""A unicast MAC nobody has: frames to it are for B's receive filter to drop."""


@dataclass(frozen=True)
class DemoOptions:
    frames: int = 1000
    seed: int = 1
    memory_size: int | None = None
    """Guest memory per host; None: enough for the receive buffers (8 MiB or more)."""
    queue_size: int = 256
    max_steps: int = 2_000_000
    profile: str = "strict"
    """Device profile of both hosts (emulator/profiles.py)."""
    pcap: Path | None = None
    """Write a pcapng of host A: what its driver handed the device, and its wire."""
    mrg_rxbuf: bool = True
    """Receiver with mergeable buffers (MRG_RXBUF) or, off, with big 64 KB buffers."""
    queue_pairs: int = 1
    """Queue pairs of both devices and drivers (RSS when more than one)."""
    tcp_bytes: int = 8 << 20
    """Bytes of the TCP bulk transfer A → B (0: no TCP phase)."""
    strangers: int = 10
    """Frames A sends to a MAC nobody has (dropped by B's filter)."""
    faults: FaultConfig | None = None
    """What goes wrong on the wire during the TCP phase (seeded by ``seed``); the frame
    phase, which checks every frame, always runs on a perfect wire."""

    def __post_init__(self) -> None:
        if not 1 <= self.queue_pairs <= 16:
            raise ValueError(f"queue_pairs {self.queue_pairs} is outside 1..16")
        if self.tcp_bytes < 0 or self.strangers < 0:
            raise ValueError("tcp_bytes and strangers must not be negative")


def _host_report(host: Host) -> dict[str, Any]:
    drv = host.driver
    return {
        "mac": drv.mac.hex(":"),
        "offered": drv.offered.names(),
        "negotiated": drv.negotiated.names(),
        "declined": [str(v) for v in drv.dropped],
        "header_size": drv.header_size,
        "device": host.device.counters.as_dict(),
        "driver": drv.counters.as_dict(),
        "violations": [
            {"who": r.who, "rule": r.rule, "reference": r.reference, "detail": r.detail}
            for r in host.monitor.records
        ],
        "driver_errors": [str(e) for e in drv.errors],
        "guest_memory_peak_bytes": (
            host.memory.allocator.peak if host.memory.allocator is not None else 0
        ),
    }


def run_demo(options: DemoOptions = DemoOptions()) -> dict[str, Any]:
    """Run the scenario and return its report (what ``vnetbench demo --json`` prints)."""
    loop = EventLoop()
    with contextlib.ExitStack() as stack:
        capture = None
        if options.pcap is not None:
            # virtual-time stamps, like the records of the driver's TX chains
            capture = stack.enter_context(Capture(options.pcap, clock=loop.clock))
        report = _run(options, loop, capture)
        if capture is not None:
            report["pcap"] = {"path": str(options.pcap), "packets": capture.packets}
    return report


def _memory_needed(options: DemoOptions, offered: FeatureSet) -> int:
    """Guest memory a receiver needs: big buffers (no MRG_RXBUF, asked for or offered)
    take 64 KB each."""
    mergeable = options.mrg_rxbuf and F.MRG_RXBUF in offered
    per_buffer = 1600 if mergeable else BIG_PACKET + 64
    return options.queue_pairs * options.queue_size * (per_buffer + 1600) + 4 * MIB


def _run(options: DemoOptions, loop: EventLoop, capture: Capture | None) -> dict[str, Any]:
    started = time.perf_counter()
    pairs = options.queue_pairs
    wanted = DEFAULT_WANTED | RX_OFFLOADS | FeatureSet.of(F.CTRL_RX)
    if options.mrg_rxbuf:
        wanted |= FeatureSet.of(F.MRG_RXBUF)
    if pairs > 1:
        wanted |= FeatureSet.of(F.RSS)
    driver_cfg = DriverConfig(wanted=wanted, queue_size=options.queue_size, queue_pairs=pairs)
    device_cfg = NetDeviceConfig(profile=options.profile, max_queue_pairs=pairs)
    memory = options.memory_size
    if memory is None:
        memory = max(8 * MIB, _memory_needed(options, device_cfg.features))
    pair: Pair = make_pair(
        loop,
        a=HostConfig("a", bytes.fromhex("525400000001"), memory, device_cfg, driver_cfg),
        b=HostConfig("b", bytes.fromhex("525400000002"), memory, device_cfg, driver_cfg),
        seed=options.seed,
        capture=capture,
    )
    a, b = pair.a, pair.b
    # B stops accepting every unicast frame (§5.1.6.5.1) — when its device has a
    # receive filter to switch (CTRL_RX; a firecracker device has none): otherwise
    # frames to a stranger would reach B, so none are sent.
    strangers_sent = options.strangers if F.CTRL_RX in b.driver.negotiated else 0
    if strangers_sent:
        b.driver.set_rx_mode(RxCmd.PROMISC, False)
    a_to_b = Stream(
        1, a.driver.mac, b.driver.mac, frame_sizes(options.frames, options.seed), options.seed
    )
    b_to_a = Stream(
        2, b.driver.mac, a.driver.mac, frame_sizes(options.frames, options.seed + 1), options.seed
    )
    checkers = {"a_to_b": Checker(a_to_b), "b_to_a": Checker(b_to_a)}
    b.on_frames = checkers["a_to_b"].check
    a.on_frames = checkers["b_to_a"].check
    strangers = [build_frame(STRANGER, a.driver.mac, EtherType.LOCAL_EXPERIMENTAL_1,
                             n.to_bytes(4, "big") + bytes(56)) for n in range(strangers_sent)]
    for frame in strangers:
        a.driver.transmit(frame)
    a.driver.flush()
    senders = [Sender(a_to_b, a.driver), Sender(b_to_a, b.driver)]
    for s in senders:
        loop.add_idle_hook(s.pump)
    steps = loop.run_until_idle(max_steps=options.max_steps)
    frames_done_ns = loop.now
    tcp: dict[str, Any] = {"bytes": 0}
    tcp_mismatches = 0
    if options.tcp_bytes:
        if options.faults is not None:
            pair.wire.set_faults(options.faults)
        add_stacks(pair)
        result = run_bulk(pair, options.tcp_bytes, max_steps=options.max_steps)
        conn = result.client.conn.counters
        tcp = {
            "bytes": result.size,
            "received": result.received,
            "exact": result.exact,
            "closed": result.closed,
            "goodput_gbps_wall": round(result.goodput_bps / 1e9, 4),
            "goodput_gbps_virtual": round(result.virtual_goodput_bps / 1e9, 3),
            "wall_s": round(result.wall_s, 3),
            "faults": None if options.faults is None else asdict(options.faults),
            "connection": vars(conn).copy(),
            "stacks": {name: {"stack": layers["stack"], "interface": layers["interface"]}
                       for name, layers in result.layers.items()},
        }
        tcp_mismatches = 0 if result.exact and result.closed else 1
    mismatches = sum(c.mismatches for c in checkers.values()) + tcp_mismatches
    return {
        "scenario": "demo: host A <-> wire <-> host B: plain frames both ways, then TCP A -> B",
        "profile": options.profile,
        "frames_per_direction": options.frames,
        "seed": options.seed,
        "queue_pairs": pairs,
        "mrg_rxbuf": options.mrg_rxbuf,
        "mismatches": mismatches,
        "streams": {name: c.as_dict() for name, c in checkers.items()},
        "tcp": tcp,
        "strangers_sent": strangers_sent,
        "hosts": {"a": _host_report(a), "b": _host_report(b)},
        "wire": {"a_to_b": pair.wire.a.counters.as_dict(), "b_to_a": pair.wire.b.counters.as_dict()},
        "virtual_time_ns": frames_done_ns,
        "loop_steps": steps,
        "wall_time_s": round(time.perf_counter() - started, 3),
    }


def format_report(report: dict[str, Any]) -> str:
    """The human-readable form of :func:`run_demo`'s report."""
    lines = [
        f"{report['scenario']} (device profile {report['profile']}, "
        f"{report['queue_pairs']} queue pair(s), "
        f"{'mergeable' if report['mrg_rxbuf'] else 'big'} receive buffers)", ""]
    for name, host in report["hosts"].items():
        lines.append(f"host {name}  mac {host['mac']}  virtio_net_hdr {host['header_size']} bytes")
        lines.append(f"  offered:    {' '.join(host['offered'])}")
        lines.append(f"  negotiated: {' '.join(host['negotiated'])}")
        for d in host["declined"]:
            lines.append(f"  declined:   {d}")
        for side in ("device", "driver"):
            counters = host[side]
            flat = {k: v for k, v in counters.items() if not isinstance(v, dict)}
            lines.append(f"  {side}: " + ", ".join(f"{k}={v}" for k, v in flat.items()))
            drops = counters.get("drops") or {}
            lines.append(
                f"  {side} drops: " + (", ".join(f"{k}={v}" for k, v in drops.items()) or "none")
            )
            for key, value in counters.items():
                if isinstance(value, dict) and key != "drops" and value:
                    items = ", ".join(f"{k}={v}" for k, v in value.items())
                    lines.append(f"  {side} {key}: {items}")
        lines.append(f"  violations: {len(host['violations'])}")
        for v in host["violations"]:
            lines.append(f"    [{v['who']}] {v['rule']}: {v['detail']} ({v['reference']})")
        lines.append("")
    for direction, counters in report["wire"].items():
        lines.append(f"wire {direction}: " + ", ".join(f"{k}={v}" for k, v in counters.items()))
    for direction, s in report["streams"].items():
        lines.append(f"stream {direction}: " + ", ".join(f"{k}={v}" for k, v in s.items()))
    lines.append(f"frames to a stranger's MAC (B's filter): {report['strangers_sent']}")
    tcp = report["tcp"]
    if tcp["bytes"]:
        lines.append("")
        lines.append(
            f"TCP a -> b: {tcp['received']} of {tcp['bytes']} bytes, exact={tcp['exact']}, "
            f"closed={tcp['closed']}, goodput {tcp['goodput_gbps_wall'] * 1000:.1f} Mb/s "
            f"wall-clock ({tcp['wall_s']:.2f} s), {tcp['goodput_gbps_virtual']:.2f} Gb/s "
            "on the emulated link")
        if tcp["faults"] is not None:
            fired = {k: v for k, v in tcp["faults"].items() if v}
            lines.append("  over a faulty wire: " + ", ".join(f"{k}={v}" for k, v in fired.items()))
        conn = {k: v for k, v in tcp["connection"].items() if v}
        lines.append("  connection a: " + ", ".join(f"{k}={v}" for k, v in conn.items()))
        for name, layers in tcp["stacks"].items():
            for layer, counters in layers.items():
                flat = {k: v for k, v in counters.items() if v and not isinstance(v, dict)}
                drops = counters.get("drops") or {}
                text = ", ".join(f"{k}={v}" for k, v in flat.items())
                if drops:
                    text += "; drops " + ", ".join(f"{k}={v}" for k, v in drops.items())
                lines.append(f"  {layer} {name}: {text or 'nothing'}")
    lines.append(
        f"virtual time {report['virtual_time_ns'] / 1e6:.3f} ms, {report['loop_steps']} loop "
        f"steps, wall {report['wall_time_s']:.2f} s"
    )
    if "pcap" in report:
        lines.append(f"capture: {report['pcap']['packets']} packets in {report['pcap']['path']}")
    lines.append(f"mismatches: {report['mismatches']}")
    return "\n".join(lines)
