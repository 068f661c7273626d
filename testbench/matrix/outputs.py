"""What a matrix run writes: CSV, JSON, a markdown summary and PNG heatmaps."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from testbench.matrix.cells import NO_QUIRKS, row_label
from testbench.matrix.runner import COLUMNS, WALL_COLUMNS

__all__ = [
    "PLOTS", "markdown", "pivot", "plot", "totals", "write_csv", "write_json",
]

PLOTS = {
    "goodput_mbps": ("goodput.png", "goodput (Mbit/s of payload per wall-clock second)"),
    "descriptors_per_mb": ("descriptors_per_mb.png", "descriptors per MB (A tx + B rx)"),
}
"""Heatmaps drawn: column -> (file name, title)."""
ANNOTATE_LIMIT = 160
"""Cells up to which each heatmap square carries its number."""


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def write_json(path: Path, meta: dict[str, Any], rows: Sequence[dict[str, Any]]) -> None:
    doc = {"meta": meta, "columns": list(COLUMNS), "wall_clock_columns": list(WALL_COLUMNS),
           "rows": list(rows)}
    path.write_text(json.dumps(doc, indent=2) + "\n")


def totals(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """cells, exact, with_violations, errors."""
    t = {"cells": len(rows), "exact": 0, "with_violations": 0, "errors": 0}
    for row in rows:
        t["exact"] += bool(row["exact"])
        t["with_violations"] += bool(row["violations"])
        t["errors"] += bool(row["error"])
    return t


def _label(row: dict[str, Any]) -> str:
    return row_label(str(row["features"]), str(row.get("quirks") or NO_QUIRKS))


def pivot(rows: Sequence[dict[str, Any]], column: str
          ) -> tuple[list[str], list[str], list[list[float | None]]]:
    """Rows = feature sets (with their quirk sets), columns = workload/profile, values =
    ``column`` (None where a cell failed to run)."""
    ys = list(dict.fromkeys(_label(r) for r in rows))
    xs = list(dict.fromkeys(f"{r['workload']}/{r['profile']}" for r in rows))
    grid: list[list[float | None]] = [[None] * len(xs) for _ in ys]
    for r in rows:
        value = r[column]
        if r["error"] or value == "":
            continue
        grid[ys.index(_label(r))][xs.index(f"{r['workload']}/{r['profile']}")] = \
            float(value)
    return ys, xs, grid


def _cell_text(row: dict[str, Any]) -> str:
    if row["error"]:
        return "error"
    mark = "" if row["exact"] and not row["violations"] else (
        " ✗" if not row["exact"] else f" ⚠{row['violations']}")
    return f"{float(row['descriptors_per_mb']):g}{mark}"


def markdown(rows: Sequence[dict[str, Any]], meta: dict[str, Any], *, details: bool = True) -> str:
    """The summary: totals, a pivot of descriptors per MB (✗ not exact, ⚠N violations),
    and (``details``) one line per cell. Only deterministic columns: the same seed gives
    the same text."""
    t = totals(rows)
    lines = [
        "# vnetbench matrix",
        "",
        f"{t['cells']} cells: {t['exact']} exact, {t['with_violations']} with violations, "
        f"{t['errors']} errors. Size {meta['size']} bytes per bulk cell, seed {meta['seed']}, "
        f"wire loss {meta['loss']}.",
        "",
        "Descriptors per MB (A's transmit + B's receive):",
        "",
    ]
    by_key = {(_label(r), f"{r['workload']}/{r['profile']}"): r for r in rows}
    ys, xs, _ = pivot(rows, "descriptors_per_mb")
    lines.append("| features | " + " | ".join(xs) + " |")
    lines.append("|---" * (len(xs) + 1) + "|")
    for y in ys:
        cells = [_cell_text(by_key[(y, x)]) if (y, x) in by_key else "" for x in xs]
        lines.append(f"| {y} | " + " | ".join(cells) + " |")
    if details:
        cols = ("features", "quirks", "workload", "profile", "exact", "violations",
                "violation_rules", "descriptors_per_mb",
                "notifications_per_mb", "interrupts_per_mb", "device_segments",
                "rx_coalesced", "virtual_goodput_mbps", "negotiated_offloads")
        lines += ["", "Every cell:", "", "| " + " | ".join(cols) + " |",
                  "|---" * len(cols) + "|"]
        for r in rows:
            lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def plot(out: Path, rows: Sequence[dict[str, Any]]) -> list[Path]:
    """Heatmaps of :data:`PLOTS` into ``out``; ImportError when matplotlib is missing."""
    import matplotlib  # noqa: PLC0415 - optional dependency, imported when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    written: list[Path] = []
    for column, (name, title) in PLOTS.items():
        ys, xs, grid = pivot(rows, column)
        values = [[float("nan") if v is None else v for v in line] for line in grid]
        fig, ax = plt.subplots(figsize=(max(6.0, 2 + 1.1 * len(xs)), 2 + 0.45 * len(ys)))
        image = ax.imshow(values, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(xs)), labels=xs, rotation=45, ha="right")
        ax.set_yticks(range(len(ys)), labels=ys)
        ax.set_title(title, fontsize=10)
        fig.colorbar(image, ax=ax)
        if len(xs) * len(ys) <= ANNOTATE_LIMIT:
            for i, line in enumerate(grid):
                for j, v in enumerate(line):
                    ax.text(j, i, "-" if v is None else f"{v:.0f}", ha="center", va="center",
                            color="white", fontsize=7)
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=100, metadata={"Software": None})
        plt.close(fig)
        written.append(path)
    return written
