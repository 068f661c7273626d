"""``vnetbench bugs``: the catalogue of real virtio-net bugs (testbench/bugs)."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from testbench.bugs import CATALOGUE, get_bug
from testbench.bugs.base import Bug, BugResult
from testbench.cli_args import EXIT_ERROR, EXIT_MISMATCH, EXIT_OK
from virtio.errors import VirtioError


def register(sub: Any) -> None:
    bugs = sub.add_parser(
        "bugs",
        help="list or reproduce real virtio-net bugs",
        description=(
            "A catalogue of real, documented virtio-net driver and device bugs, each "
            "reproduced on the emulated host: 'list' shows them with their citations, "
            "'run NAME' reproduces one and prints the symptom and the conformance "
            "monitor's report."
        ),
    )
    verbs = bugs.add_subparsers(dest="verb", required=True, metavar="VERB")
    listing = verbs.add_parser("list", help="the catalogue, one entry a paragraph")
    listing.add_argument("--json", action="store_true", help="print the catalogue as JSON")
    listing.set_defaults(handler=run_list)
    run = verbs.add_parser(
        "run", help="reproduce one bug",
        description=(
            "Reproduce NAME and print what was observed. Exit status 0 when the symptom "
            "appears (with --fixed: when it is gone), 1 otherwise, 3 on an error."
        ),
    )
    run.add_argument("name", metavar="NAME", help="a name from 'vnetbench bugs list'")
    run.add_argument("--fixed", action="store_true",
                     help="run with the fixed setting: the symptom must be gone")
    run.add_argument("--pcap", type=Path, default=None, metavar="FILE",
                     help="write a pcapng of the host's traffic (frames the driver handed "
                     "the device, header in the comment, and the wire)")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.set_defaults(handler=run_one)


def _wrap(label: str, text: str) -> str:
    return textwrap.fill(text, width=92, initial_indent=f"    {label:<9}",
                         subsequent_indent=" " * 13, break_on_hyphens=False,
                         break_long_words=False)


def format_bug(bug: Bug) -> str:
    lines = [f"{bug.name}  [{bug.project}]", f"    {bug.title}"]
    lines += [_wrap("cite", bug.citation), _wrap("fix", bug.fix), _wrap("setup", bug.setup),
              _wrap("symptom", bug.symptom), _wrap("fixed", bug.fixed_setting)]
    return "\n".join(lines)


def run_list(args: argparse.Namespace) -> int:
    bugs = list(CATALOGUE.values())
    if args.json:
        print(json.dumps([b.as_dict() for b in bugs], indent=2))
    else:
        print("\n\n".join(format_bug(b) for b in bugs))
        print(f"\n{len(bugs)} bugs")
    return EXIT_OK


def format_result(bug: Bug, result: BugResult) -> str:
    setting = "fixed setting" if result.fixed else "with the bug"
    if result.fixed:
        verdict = "symptom gone, as expected" if result.as_expected else "SYMPTOM STILL THERE"
    else:
        verdict = "symptom reproduced" if result.as_expected else "SYMPTOM NOT REPRODUCED"
    figures = ", ".join(f"{k}={v}" for k, v in result.figures.items())
    return "\n".join([
        f"{bug.name} ({setting}): {verdict}",
        f"  {bug.title}",
        f"  cite: {bug.citation}",
        f"  observed: {result.symptom}",
        f"  figures: {figures}",
        "  monitor: " + result.report_text.replace("\n", "\n    "),
    ])


def run_one(args: argparse.Namespace) -> int:
    try:
        bug = get_bug(args.name)
        result = bug.run(args.pcap, fixed=args.fixed)
    except (VirtioError, ValueError, OSError) as exc:
        print(f"vnetbench bugs: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        out = result.as_dict()
        if args.pcap is not None:
            out["pcap"] = str(args.pcap)
        print(json.dumps(out, indent=2))
    else:
        print(format_result(bug, result))
        if args.pcap is not None:
            print(f"  capture: {args.pcap}")
    return EXIT_OK if result.as_expected else EXIT_MISMATCH
