"""``vnetbench matrix``: feature sets × workloads × profiles, one emulated pair per cell,
run across cores; CSV, JSON, a markdown summary and PNG heatmaps in --out."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from emulator.profiles import PROFILES
from testbench.cli_args import EXIT_ERROR, EXIT_MISMATCH, EXIT_OK, positive, size
from testbench.matrix.cells import (
    BASE,
    FAMILIES,
    WORKLOADS,
    base_set,
    build_cells,
    families,
    subsets,
)
from testbench.matrix.outputs import markdown, plot, totals, write_csv, write_json
from testbench.matrix.runner import ProgressBar, run_cells


def _list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("an empty list")
    return items


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not in [0, 1)")
    return value


def register(sub: Any) -> None:
    p = sub.add_parser(
        "matrix",
        help="sweep feature sets x workloads x profiles and tabulate correctness and cost",
        description=(
            "Each cell is an emulated pair whose drivers ask for one feature set, on one "
            "device profile, running one workload. Recorded per cell: bytes exact, "
            "conformance violations, descriptors, notifications, interrupts, device "
            "segments, virtual and wall time, goodput. Cells run in parallel processes. "
            "Writes matrix.csv, matrix.json, matrix.md and PNG heatmaps (with the 'plot' "
            "extra: pip install 'vnetbench[plot]') into --out. Exit status 0 when every "
            "cell was exact with no violation, 1 otherwise, 3 on an error."
        ),
        epilog=(f"families: {', '.join(FAMILIES)} (or all); workloads: "
                + "; ".join(f"{k}: {v}" for k, v in WORKLOADS.items())),
    )
    p.add_argument("--features", type=_list, default=["none", "csum", "tso"], metavar="FAMILIES",
                   help="comma list of feature families (default: none,csum,tso)")
    p.add_argument("--subsets", type=_list, default=None, metavar="FEATURES",
                   help="instead of --features: every valid subset of these features, "
                        "each added to --base")
    p.add_argument("--base", default=None, metavar="SPEC",
                   help="what --subsets adds to: a family or a SPEC (default: the driver's "
                        "default request without any offload)")
    p.add_argument("--workloads", type=_list, default=["bulk4", "bulk6"], metavar="LIST",
                   help=f"comma list of {', '.join(WORKLOADS)} (default: bulk4,bulk6)")
    p.add_argument("--profiles", type=_list, default=["strict"], metavar="LIST",
                   help=f"comma list of device profiles: {', '.join(sorted(PROFILES))} "
                        "(default: strict)")
    p.add_argument("--size", type=size, default=2 << 20,
                   help="bytes per bulk cell, e.g. 4M (default 2M)")
    p.add_argument("--seed", type=int, default=1, help="seed of the wire's faults (1)")
    p.add_argument("--loss", type=_probability, default=0.0,
                   help="probability a frame is lost on the wire (0)")
    p.add_argument("--jobs", type=positive, default=os.cpu_count() or 1,
                   help=f"worker processes (default: one per core, {os.cpu_count()})")
    p.add_argument("--out", type=Path, default=Path("matrix-out"), metavar="DIR",
                   help="output directory (matrix-out)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG heatmaps")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true",
                   help="print the JSON document (meta and rows) instead of the summary")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        if args.subsets is not None:
            base = BASE if args.base is None else base_set(args.base)
            choices = subsets(args.subsets, base)
        else:
            if args.base is not None:
                raise ValueError("--base goes with --subsets")
            choices = families(args.features)
        cells = build_cells(choices, args.workloads, args.profiles, size=args.size,
                            seed=args.seed, loss=args.loss)
        args.out.mkdir(parents=True, exist_ok=True)
    except (ValueError, OSError) as exc:
        print(f"vnetbench matrix: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    bar = None if args.quiet else ProgressBar(len(cells))
    started = time.perf_counter()
    try:
        rows = run_cells(cells, jobs=args.jobs, progress=None if bar is None else bar.advance)
    except BrokenProcessPool as exc:
        print(f"vnetbench matrix: error: a worker process died: {exc}", file=sys.stderr)
        return EXIT_ERROR
    wall = time.perf_counter() - started
    meta = {"cells": len(cells), "size": args.size, "seed": args.seed, "loss": args.loss,
            "features": [c.label for c in choices], "workloads": args.workloads,
            "profiles": args.profiles, "jobs": args.jobs, "wall_s": round(wall, 3)}
    out: Path = args.out
    files = [out / "matrix.csv", out / "matrix.json", out / "matrix.md"]
    notes: list[str] = []
    try:
        write_csv(files[0], rows)
        write_json(files[1], meta, rows)
        files[2].write_text(markdown(rows, meta))
        if not args.no_plots:
            try:
                files += plot(out, rows)
            except ImportError:
                notes.append("plots skipped: matplotlib is not installed "
                             "(pip install 'vnetbench[plot]')")
    except OSError as exc:
        print(f"vnetbench matrix: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    t = totals(rows)
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=2))
    else:
        print(markdown(rows, meta, details=False), end="")
        print(f"\n{t['cells']} cells in {wall:.1f} s with {args.jobs} job(s); wrote "
              + ", ".join(str(f) for f in files))
    for note in notes:
        print(note, file=sys.stderr)
    clean = t["exact"] == t["cells"] and not t["with_violations"] and not t["errors"]
    return EXIT_OK if clean else EXIT_MISMATCH
