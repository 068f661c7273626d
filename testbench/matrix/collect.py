"""A matrix run in pieces: each cell's row in its own file (``cell-00003.json``), written
by the pytest suite (testbench/matrix/suite.py) wherever pytest-xdist ran the cell, and
read back by ``vnetbench matrix --collect DIR`` into the rows and meta a normal run has.

A record carries the selection it belongs to (the option words), so collecting checks
that every file is of one selection and that no cell is missing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from testbench.matrix.cells import NO_QUIRKS
from testbench.matrix.selection import Selection, parse

__all__ = ["CELL_GLOB", "cell_path", "collect", "record", "write_record"]

CELL_GLOB = "cell-*.json"
MAX_LISTED = 10
"""Missing cells named in an error, at most."""


def cell_path(out: Path, index: int) -> Path:
    return out / f"cell-{index:05d}.json"


def record(words: Sequence[str], cells: int, row: dict[str, Any], *, started: float,
           ended: float, worker: str) -> str:
    """One cell's record as JSON text: the selection's option words, its cell count, the
    row, when it ran (epoch seconds) and on which worker."""
    return json.dumps({"selection": list(words), "cells": cells, "worker": worker,
                       "started": started, "ended": ended, "row": row})


def write_record(out: Path, text: str) -> Path:
    """Write a record under its cell's name; returns the path."""
    path = cell_path(out, int(json.loads(text)["row"]["index"]))
    path.write_text(text + "\n")
    return path


def collect(directory: Path) -> tuple[Selection, list[dict[str, Any]], dict[str, Any]]:
    """The selection, the rows in cell order and the meta of the records in
    ``directory``; ValueError when there are none, they mix selections, or cells are
    missing. ``jobs`` counts the workers that ran cells, ``wall_s`` spans the first
    start to the last end."""
    if not directory.is_dir():
        raise ValueError(f"{directory}: not a directory")
    docs = [json.loads(p.read_text()) for p in sorted(directory.glob(CELL_GLOB))]
    if not docs:
        raise ValueError(f"{directory}: no {CELL_GLOB} files (write them with "
                         f"pytest --pyargs testbench.matrix.suite --vnet-matrix-out {directory})")
    kinds = {(tuple(d["selection"]), d["cells"]) for d in docs}
    if len(kinds) > 1:
        raise ValueError(f"{directory}: cells of {len(kinds)} different selections; "
                         "collect one run per directory")
    selection = parse(docs[0]["selection"])
    rows = {int(d["row"]["index"]): d["row"] for d in docs}
    missing = [c.index for c in selection.cells if c.index not in rows]
    if missing:
        listed = ", ".join(map(str, missing[:MAX_LISTED])) + (", ..." if len(missing) > MAX_LISTED
                                                              else "")
        raise ValueError(f"{directory}: {len(missing)} of {len(selection.cells)} cells "
                         f"missing: {listed}")
    for cell in selection.cells:
        row = rows[cell.index]
        if (row["features"], row.get("quirks", NO_QUIRKS), row["workload"], row["profile"]) != (
                cell.features, cell.quirks, cell.workload, cell.profile):
            raise ValueError(f"{cell_path(directory, cell.index)}: not cell {cell.index} of "
                             "its selection")
    meta = selection.meta(jobs=len({d["worker"] for d in docs}),
                          wall_s=max(d["ended"] for d in docs) - min(d["started"] for d in docs))
    return selection, [rows[c.index] for c in selection.cells], meta
