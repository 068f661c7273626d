"""The demo scenario: host A ↔ wire ↔ host B on the emulated pair, 1,000 numbered frames
of mixed sizes each way, every one checked byte for byte on arrival."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driver.net import DriverConfig
from emulator.backends.pcap import Capture
from emulator.net.device import NetDeviceConfig
from testbench.host import MIB, Host, HostConfig, Pair, make_pair
from testbench.loop import EventLoop
from testbench.traffic import Checker, Sender, Stream, frame_sizes


@dataclass(frozen=True)
class DemoOptions:
    frames: int = 1000
    seed: int = 1
    memory_size: int = 8 * MIB
    queue_size: int = 256
    max_steps: int = 2_000_000
    profile: str = "strict"
    """Device profile of both hosts (emulator/profiles.py)."""
    pcap: Path | None = None
    """Write a pcapng of host A: what its driver handed the device, and its wire."""


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


def _run(options: DemoOptions, loop: EventLoop, capture: Capture | None) -> dict[str, Any]:
    started = time.perf_counter()
    driver_cfg = DriverConfig(queue_size=options.queue_size)
    device_cfg = NetDeviceConfig(profile=options.profile)
    pair: Pair = make_pair(
        loop,
        a=HostConfig("a", bytes.fromhex("525400000001"), options.memory_size, device_cfg,
                     driver_cfg),
        b=HostConfig("b", bytes.fromhex("525400000002"), options.memory_size, device_cfg,
                     driver_cfg),
        seed=options.seed,
        capture=capture,
    )
    a, b = pair.a, pair.b
    a_to_b = Stream(
        1, a.driver.mac, b.driver.mac, frame_sizes(options.frames, options.seed), options.seed
    )
    b_to_a = Stream(
        2, b.driver.mac, a.driver.mac, frame_sizes(options.frames, options.seed + 1), options.seed
    )
    checkers = {"a_to_b": Checker(a_to_b), "b_to_a": Checker(b_to_a)}
    b.on_frames = checkers["a_to_b"].check
    a.on_frames = checkers["b_to_a"].check
    senders = [Sender(a_to_b, a.driver), Sender(b_to_a, b.driver)]
    for s in senders:
        loop.add_idle_hook(s.pump)
    steps = loop.run_until_idle(max_steps=options.max_steps)
    mismatches = sum(c.mismatches for c in checkers.values())
    return {
        "scenario": "demo: host A <-> wire <-> host B, plain frames",
        "profile": options.profile,
        "frames_per_direction": options.frames,
        "seed": options.seed,
        "mismatches": mismatches,
        "streams": {name: c.as_dict() for name, c in checkers.items()},
        "hosts": {"a": _host_report(a), "b": _host_report(b)},
        "wire": {"a_to_b": pair.wire.a.counters.as_dict(), "b_to_a": pair.wire.b.counters.as_dict()},
        "virtual_time_ns": loop.now,
        "loop_steps": steps,
        "wall_time_s": round(time.perf_counter() - started, 3),
    }


def format_report(report: dict[str, Any]) -> str:
    """The human-readable form of :func:`run_demo`'s report."""
    lines = [f"{report['scenario']} (device profile {report['profile']})", ""]
    for name, host in report["hosts"].items():
        lines.append(f"host {name}  mac {host['mac']}  virtio_net_hdr {host['header_size']} bytes")
        lines.append(f"  offered:    {' '.join(host['offered'])}")
        lines.append(f"  negotiated: {' '.join(host['negotiated'])}")
        for d in host["declined"]:
            lines.append(f"  declined:   {d}")
        for side in ("device", "driver"):
            counters = host[side]
            flat = {k: v for k, v in counters.items() if k != "drops"}
            lines.append(f"  {side}: " + ", ".join(f"{k}={v}" for k, v in flat.items()))
            drops = counters.get("drops") or {}
            lines.append(
                f"  {side} drops: " + (", ".join(f"{k}={v}" for k, v in drops.items()) or "none")
            )
        lines.append(f"  violations: {len(host['violations'])}")
        for v in host["violations"]:
            lines.append(f"    [{v['who']}] {v['rule']}: {v['detail']} ({v['reference']})")
        lines.append("")
    for direction, counters in report["wire"].items():
        lines.append(f"wire {direction}: " + ", ".join(f"{k}={v}" for k, v in counters.items()))
    for direction, s in report["streams"].items():
        lines.append(f"stream {direction}: " + ", ".join(f"{k}={v}" for k, v in s.items()))
    lines.append(
        f"virtual time {report['virtual_time_ns'] / 1e6:.3f} ms, {report['loop_steps']} loop "
        f"steps, wall {report['wall_time_s']:.2f} s"
    )
    if "pcap" in report:
        lines.append(f"capture: {report['pcap']['packets']} packets in {report['pcap']['path']}")
    lines.append(f"mismatches: {report['mismatches']}")
    return "\n".join(lines)
