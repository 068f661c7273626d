"""``vnetbench demo``: the demo scenario on the built-in emulated pair."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from emulator.profiles import PROFILES
from testbench.cli_args import (
    EXIT_ERROR,
    EXIT_MISMATCH,
    EXIT_OK,
    FAULTS_HELP,
    count,
    faults,
    positive,
    size,
    size_or_zero,
)
from testbench.demo import DemoOptions, format_report, run_demo
from testbench.host import MIB
from virtio.errors import VirtioError


def register(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="run the demo scenario on the emulated pair",
        description=(
            "Host A <-> wire <-> host B: both drivers negotiate with their devices, then "
            "send numbered frames of mixed sizes each way and a TCP bulk transfer A -> B "
            "(TSO on A's device, receive coalescing on B's); every frame and every flow "
            "is checked byte for byte. Exit status 0 when all arrived exact, 1 on "
            "mismatches, 3 on an error."
        ),
    )
    demo.add_argument("--json", action="store_true", help="print the report as JSON")
    demo.add_argument("--frames", type=positive, default=1000, help="frames per direction (1000)")
    demo.add_argument("--seed", type=int, default=1, help="seed for sizes and payloads (1)")
    demo.add_argument(
        "--memory", type=size, default=None,
        help="guest memory per host, e.g. 8M, 512K (default: what the buffers need, at least 8M)",
    )
    demo.add_argument(
        "--queue-size", type=positive, default=256, help="virtqueue size the drivers ask for (256)"
    )
    demo.add_argument(
        "--profile", choices=sorted(PROFILES), default="strict",
        help="device profile of both hosts: what the device does where the spec is silent",
    )
    demo.add_argument(
        "--mrg-rxbuf", action=argparse.BooleanOptionalAction, default=True,
        help="receivers use mergeable buffers (MRG_RXBUF); --no-mrg-rxbuf: big 64 KB "
        "buffers (default: on)",
    )
    demo.add_argument(
        "--queue-pairs", type=positive, default=1, metavar="N",
        help="queue pairs per device and driver, spread by RSS (1)",
    )
    demo.add_argument(
        "--tcp-bytes", type=size_or_zero, default=8 * MIB, metavar="SIZE",
        help="bytes of the TCP transfer A -> B through the stacks, e.g. 16M; 0: none (8M)",
    )
    demo.add_argument(
        "--strangers", type=count, default=10, metavar="N",
        help="frames A sends to a MAC nobody has, for B's receive filter to drop (10)",
    )
    demo.add_argument(
        "--pcap", type=Path, default=None, metavar="PATH",
        help="write a pcapng of host A: frames its driver handed the device (virtio_net_hdr "
        "in each packet's comment) and its side of the wire",
    )
    demo.add_argument(
        "--faults", type=faults, default=None, metavar="SPEC",
        help="a faulty wire for the TCP phase: " + FAULTS_HELP)
    demo.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        report = run_demo(
            DemoOptions(
                frames=args.frames,
                seed=args.seed,
                memory_size=args.memory,
                queue_size=args.queue_size,
                pcap=args.pcap,
                profile=args.profile,
                mrg_rxbuf=args.mrg_rxbuf,
                queue_pairs=args.queue_pairs,
                tcp_bytes=args.tcp_bytes,
                strangers=args.strangers,
                faults=args.faults,
            )
        )
    except (VirtioError, ValueError, OSError) as exc:
        print(f"vnetbench demo: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return EXIT_OK if report["mismatches"] == 0 else EXIT_MISMATCH
