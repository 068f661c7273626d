"""``vnetbench matrix``: feature sets × workloads × profiles, one emulated pair per cell,
run across cores (or, one test per cell, by pytest-xdist: testbench/matrix/suite.py, then
``--collect``); CSV, JSON, a markdown summary and PNG heatmaps in --out."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from testbench.cli_args import EXIT_ERROR, EXIT_MISMATCH, EXIT_OK, positive
from testbench.matrix.cells import FAMILIES, WORKLOADS
from testbench.matrix.collect import collect
from testbench.matrix.outputs import markdown, plot, totals, write_csv, write_json
from testbench.matrix.runner import ProgressBar, run_cells
from testbench.matrix.selection import SELECTION_OPTIONS, add_arguments, select


def register(sub: Any) -> None:
    p = sub.add_parser(
        "matrix",
        help="sweep feature sets x workloads x profiles and tabulate correctness and cost",
        description=(
            "Each cell is an emulated pair whose drivers ask for one feature set, on one "
            "device profile, running one workload. Recorded per cell: bytes exact, "
            "conformance violations, descriptors, notifications, interrupts, device "
            "segments, virtual and wall time, goodput. Cells run in parallel processes "
            "(across machines: one test per cell with pytest --pyargs testbench.matrix.suite "
            "under pytest-xdist, then --collect). "
            "Writes matrix.csv, matrix.json, matrix.md and PNG heatmaps (with the 'plot' "
            "extra: pip install 'vnetbench[plot]') into --out. Exit status 0 when every "
            "cell was exact with no violation, 1 otherwise, 3 on an error."
        ),
        epilog=(f"families: {', '.join(FAMILIES)} (or all); workloads: "
                + "; ".join(f"{k}: {v}" for k, v in WORKLOADS.items())),
    )
    add_arguments(p)
    p.add_argument("--jobs", type=positive, default=os.cpu_count() or 1,
                   help=f"worker processes (default: one per core, {os.cpu_count()})")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="output directory (matrix-out; with --collect, the directory collected)")
    p.add_argument("--collect", type=Path, default=None, metavar="DIR",
                   help="run nothing: assemble the outputs from the cell records that "
                        "pytest --pyargs testbench.matrix.suite --vnet-matrix-out DIR wrote "
                        "(the selection comes from them)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG heatmaps")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true",
                   help="print the JSON document (meta and rows) instead of the summary")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.collect is not None:
        return _collect(args)
    try:
        selection = select(args)
        out: Path = args.out or Path("matrix-out")
        out.mkdir(parents=True, exist_ok=True)
    except (ValueError, OSError) as exc:
        return _error(exc)
    cells = selection.cells
    bar = None if args.quiet else ProgressBar(len(cells))
    started = time.perf_counter()
    try:
        rows = run_cells(cells, jobs=args.jobs, progress=None if bar is None else bar.advance)
    except BrokenProcessPool as exc:
        return _error(f"a worker process died: {exc}")
    wall = time.perf_counter() - started
    return _report(args, out, rows, selection.meta(jobs=args.jobs, wall_s=wall),
                   f"{len(cells)} cells in {wall:.1f} s with {args.jobs} job(s)")


def _collect(args: argparse.Namespace) -> int:
    given = [f"--{k}" for k in SELECTION_OPTIONS if getattr(args, k) is not None]
    try:
        if given:
            raise ValueError(f"--collect takes the selection from the cell records, not from "
                             f"{', '.join(given)}")
        _, rows, meta = collect(args.collect)
        out: Path = args.out or args.collect
        out.mkdir(parents=True, exist_ok=True)
    except (ValueError, OSError) as exc:
        return _error(exc)
    return _report(args, out, rows, meta,
                   f"{meta['cells']} cells collected from {args.collect} "
                   f"({meta['jobs']} worker(s), {meta['wall_s']:.1f} s)")


def _error(exc: Exception | str) -> int:
    print(f"vnetbench matrix: error: {exc}", file=sys.stderr)
    return EXIT_ERROR


def _report(args: argparse.Namespace, out: Path, rows: list[dict[str, Any]],
            meta: dict[str, Any], done: str) -> int:
    """Write the outputs, print the summary (or the JSON); the exit status."""
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
        return _error(exc)
    t = totals(rows)
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=2))
    else:
        print(markdown(rows, meta, details=False), end="")
        print(f"\n{done}; wrote " + ", ".join(str(f) for f in files))
    for note in notes:
        print(note, file=sys.stderr)
    clean = t["exact"] == t["cells"] and not t["with_violations"] and not t["errors"]
    return EXIT_OK if clean else EXIT_MISMATCH
