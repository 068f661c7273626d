"""``vnetbench negotiate``: what a driver asking for one set gets from a device offering
another, negotiated for real by our driver against the emulated device."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from emulator.profiles import PROFILES
from testbench.cli_args import EXIT_ERROR, EXIT_MISMATCH, EXIT_OK
from testbench.negotiation import PERMISSIONS, NegotiationResult, run_negotiation
from virtio.errors import VirtioError

SPEC_HELP = (
    "comma list read left to right: 'all', 'default', 'none', a feature name or +NAME "
    "adds, -NAME removes (VERSION_1 implied unless -VERSION_1)"
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "negotiate",
        help="negotiate an accepted set against an offered one and explain the result",
        description=(
            "Build an emulated device offering --offer, bind the driver asking for "
            "--accept, let it probe, and print the negotiated set, every wanted feature "
            "that was dropped and why (not offered, or the dependency rule and its spec "
            "section), and what the driver may send, receive and ask for. The result is "
            "cross-checked against the rules on paper. Exit status 0 when both agree and "
            "the device recorded no violation, 1 when they differ, the driver gives up or "
            "a rule was broken, 3 on an error."
        ),
        epilog="example: vnetbench negotiate --offer default,-HOST_TSO6 "
               "--accept CSUM,HOST_TSO4,HOST_TSO6,GUEST_TSO4",
    )
    p.add_argument("--offer", default="default", metavar="SPEC",
                   help=f"features the device offers; {SPEC_HELP} (default: the "
                        "profile's offer, all the emulated device implements)")
    p.add_argument("--accept", default="default", metavar="SPEC",
                   help=f"features the driver asks for: a preset (tso, csum, none) or a "
                        f"SPEC; {SPEC_HELP} (default: the driver's DEFAULT_WANTED; all: "
                        "everything it supports)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="strict",
                   help="device profile (strict)")
    p.add_argument("--quirks", default="", metavar="NAMES",
                   help="comma list of driver quirks to switch on (driver/quirks.py), e.g. "
                        "accept-without-dependency: see what the device makes of it")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        quirks = [q.strip() for q in args.quirks.split(",") if q.strip()]
        result = run_negotiation(args.offer, args.accept, profile=args.profile, quirks=quirks)
    except (VirtioError, ValueError) as exc:
        print(f"vnetbench negotiate: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(result.as_dict(), indent=2) if args.json else format_result(result))
    return EXIT_OK if result.clean else EXIT_MISMATCH


def format_result(r: NegotiationResult) -> str:
    lines = [
        f"profile:    {r.profile}" + (f"  (driver quirks: {', '.join(r.quirks)})" if r.quirks else ""),
        f"offered:    {', '.join(r.offered.names())}",
        f"accepted:   {', '.join(r.wanted.names())}",
    ]
    if r.failure is not None:
        lines.append(f"FAILED:     {r.failure}")
    else:
        lines.append(f"negotiated: {', '.join(r.negotiated.names())}")
        lines.append(f"header {r.header_size} bytes, {r.rx_buffers} receive buffers of "
                     f"{r.rx_buffer_size} bytes, mtu {r.mtu}")
    lines.append(f"dropped ({len(r.dropped)}):")
    lines += [f"  {d}" for d in r.dropped] or ["  none"]
    if r.failure is None:
        for area in ("send", "receive", "control"):
            lines.append(f"may {area}:" if area != "control" else "may use:")
            for p in PERMISSIONS:
                if p.area == area:
                    mark = "yes" if r.allowed(p) else "no "
                    lines.append(f"  {mark}  {p.what:<48} {r.why(p)}")
    lines.append(f"violations: {len(r.violations)}")
    lines += [f"  {v}" for v in r.violations]
    verdict = "agrees" if not r.mismatches else f"DIFFERS ({len(r.mismatches)})"
    lines.append(f"cross-check with the rules: {verdict}")
    lines += [f"  {m}" for m in r.mismatches]
    return "\n".join(lines)
