"""``vnetbench capture``: the demo scenario, written to a pcapng file (host A's
driver→device frames with their virtio_net_hdr, and its side of the wire)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from emulator.profiles import PROFILES
from testbench.cli_args import EXIT_ERROR, EXIT_MISMATCH, EXIT_OK, positive, size_or_zero
from testbench.demo import DemoOptions, run_demo
from testbench.host import MIB
from virtio.errors import VirtioError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "capture",
        help="run the demo scenario and write it to a pcapng file",
        description=(
            "Runs the demo scenario (frames both ways, the TCP transfer A -> B) and writes "
            "a pcapng with two interfaces: 'driver→device', every frame host A's driver "
            "handed its device with its virtio_net_hdr as the packet comment (TSO packets "
            "whole), and 'wire', what A's port put on and took off the wire (the segments). "
            "Read it with tshark -r FILE or Wireshark. Exit status 0 when everything "
            "arrived exact, 1 on mismatches, 3 on an error."
        ),
    )
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="the pcapng to write")
    p.add_argument("--frames", type=positive, default=100, help="frames per direction (100)")
    p.add_argument("--seed", type=int, default=1, help="seed for sizes and payloads (1)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="strict",
                   help="device profile of both hosts (strict)")
    p.add_argument("--tcp-bytes", type=size_or_zero, default=1 * MIB, metavar="SIZE",
                   help="bytes of the TCP transfer A -> B; 0: none (1M)")
    p.add_argument("--queue-pairs", type=positive, default=1, metavar="N",
                   help="queue pairs per device and driver (1)")
    p.add_argument("--mrg-rxbuf", action=argparse.BooleanOptionalAction, default=True,
                   help="receivers use mergeable buffers (default: on)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        report = run_demo(DemoOptions(
            frames=args.frames, seed=args.seed, profile=args.profile, pcap=args.out,
            tcp_bytes=args.tcp_bytes, queue_pairs=args.queue_pairs, mrg_rxbuf=args.mrg_rxbuf,
        ))
    except (VirtioError, ValueError, OSError) as exc:
        print(f"vnetbench capture: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    result = {"path": str(args.out), "packets": report["pcap"]["packets"],
              "mismatches": report["mismatches"]}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"wrote {result['packets']} packets to {result['path']} (interfaces "
              f"driver→device and wire of host A); mismatches: {result['mismatches']}")
    return EXIT_OK if report["mismatches"] == 0 else EXIT_MISMATCH
