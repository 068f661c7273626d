"""Running the cells of a matrix: one emulated pair per cell, cells spread over worker
processes (concurrent.futures), a plain-text progress bar on stderr."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, TextIO

from emulator.backends.wire import FaultConfig
from testbench.host import Pair
from testbench.matrix.cells import OFFLOADS, Cell
from testbench.matrix.workloads import run_udp
from testbench.tcp_bulk import run_bulk, stack_pair
from virtio.errors import VirtioError

__all__ = ["COLUMNS", "WALL_COLUMNS", "ProgressBar", "run_cell", "run_cells"]

MIB = 1 << 20
COLUMNS = (
    "index", "features", "quirks", "workload", "profile", "seed", "bytes", "negotiated_offloads",
    "exact", "received", "retransmits", "violations", "violation_rules",
    "tx_descriptors", "tx_notifications", "rx_descriptors", "interrupts",
    "device_segments", "tx_gso_packets", "rx_coalesced",
    "descriptors_per_mb", "notifications_per_mb", "interrupts_per_mb",
    "virtual_ms", "virtual_goodput_mbps", "wall_s", "goodput_mbps", "error",
)
"""CSV columns, in order."""
WALL_COLUMNS = ("wall_s", "goodput_mbps")
"""Columns measured on the wall clock: the only ones that differ between two runs with
the same seed."""
SMALL_PAYLOAD, UDP_PAYLOAD = 64, 1400


def _per_mb(value: int, size: int) -> float:
    return round(value * MIB / size, 3) if size else 0.0


def run_cell(cell: Cell) -> dict[str, Any]:
    """One cell: build the pair, run the workload, read the counters. A cell that cannot
    run (the driver gives up, a bad combination) is a row with ``error`` set."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS, "")
    row.update(index=cell.index, features=cell.features, quirks=cell.quirks,
               workload=cell.workload, profile=cell.profile, seed=cell.seed, exact=False)
    faults = FaultConfig(loss=cell.loss) if cell.loss else None
    try:
        # stack_pair posts page-sized buffers only when they are mergeable
        p = stack_pair("tso", wanted=cell.wanted, profile=cell.profile, seed=cell.cell_seed,
                       faults=faults, quirks=cell.quirk_set)
        _run_workload(p, cell, row)
    except (VirtioError, ValueError, OSError) as exc:
        row["error"] = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return row


def _run_workload(p: Pair, cell: Cell, row: dict[str, Any]) -> None:
    size = cell.size
    if cell.workload in ("bulk4", "bulk6"):
        bulk = run_bulk(p, size, v6=cell.workload == "bulk6")
        received, exact, virtual_ns, wall = bulk.received, bulk.exact, bulk.virtual_ns, bulk.wall_s
        row["retransmits"] = bulk.client.conn.counters.retransmitted_segments
    else:
        small = cell.workload == "small"
        size = size // 32 if small else size // 4
        udp = run_udp(p, size, SMALL_PAYLOAD if small else UDP_PAYLOAD)
        received, exact, virtual_ns, wall = udp.received, udp.exact, udp.virtual_ns, udp.wall_s
        row["retransmits"] = 0
    a_dev, b_dev = p.a.device.counters, p.b.device.counters
    records = [r for host in (p.a, p.b) for r in host.monitor.records]
    negotiated = p.a.driver.negotiated & OFFLOADS
    interrupts = p.a.driver.counters.interrupts + p.b.driver.counters.interrupts
    rx_descriptors = b_dev.rx_descriptors
    row.update(
        bytes=size, negotiated_offloads="+".join(negotiated.names()) or "-",
        exact=exact, received=received, violations=len(records),
        violation_rules=";".join(sorted({r.rule for r in records})),
        tx_descriptors=a_dev.tx_descriptors, tx_notifications=a_dev.tx_notifications,
        rx_descriptors=rx_descriptors, interrupts=interrupts,
        device_segments=a_dev.tx_frames, tx_gso_packets=a_dev.tx_gso_packets,
        rx_coalesced=b_dev.rx_coalesced,
        descriptors_per_mb=_per_mb(a_dev.tx_descriptors + rx_descriptors, size),
        notifications_per_mb=_per_mb(a_dev.tx_notifications, size),
        interrupts_per_mb=_per_mb(interrupts, size),
        virtual_ms=round(virtual_ns / 1e6, 6),
        virtual_goodput_mbps=round(received * 8e3 / virtual_ns, 3) if virtual_ns else 0.0,
        wall_s=round(wall, 4),
        goodput_mbps=round(received * 8 / wall / 1e6, 3) if wall > 0 else 0.0,
    )


class ProgressBar:
    """``[#####.....] 12/64 cells  0:07 elapsed`` on one line of ``stream``, redrawn in
    place on a terminal and printed every tenth otherwise."""

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.perf_counter()
        self._tty = self.stream.isatty()
        self._last_tenth = -1

    def advance(self, failed: bool = False) -> None:
        self.done += 1
        tenth = self.done * 10 // max(self.total, 1)
        if not self._tty and tenth == self._last_tenth and self.done != self.total:
            return
        self._last_tenth = tenth
        filled = self.done * self.WIDTH // max(self.total, 1)
        elapsed = int(time.perf_counter() - self.started)
        line = (f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {self.done}/{self.total} "
                f"cells  {elapsed // 60}:{elapsed % 60:02d} elapsed")
        end = "\n" if not self._tty or self.done == self.total else ""
        self.stream.write(("\r" if self._tty else "") + line + end)
        self.stream.flush()


def run_cells(cells: Sequence[Cell], *, jobs: int | None = None,
              progress: Callable[[bool], None] | None = None) -> list[dict[str, Any]]:
    """Every cell's row, in cell order; ``jobs`` worker processes (default: one per
    core; 1: in this process). ``progress(failed)`` is called as each cell ends."""
    jobs = jobs or os.cpu_count() or 1
    rows: dict[int, dict[str, Any]] = {}

    def finished(row: dict[str, Any]) -> None:
        rows[row["index"]] = row
        if progress is not None:
            progress(bool(row["error"]) or not row["exact"])

    if jobs == 1 or len(cells) == 1:
        for cell in cells:
            finished(run_cell(cell))
    else:
        with ProcessPoolExecutor(max_workers=min(jobs, len(cells))) as pool:
            pending: set[Future[dict[str, Any]]] = {pool.submit(run_cell, c) for c in cells}
            for _ in range(len(cells)):
                if not pending:
                    break
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    finished(future.result())
    return [rows[c.index] for c in cells]
