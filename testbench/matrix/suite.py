"""The matrix as a pytest suite, one test per cell, so pytest-xdist can spread the cells
over workers and machines::

    pytest --pyargs testbench.matrix.suite --vnet-matrix="--features none,tso --size 1M" \\
        --vnet-matrix-out DIR -n 4
    vnetbench matrix --collect DIR --out OUT

``--vnet-matrix`` takes ``vnetbench matrix``'s selection options (default: its default
cells). Each test runs its cell (testbench/matrix/runner.py ``run_cell``), hands the row
to pytest (written as ``DIR/cell-NNNNN.json`` by testbench/matrix/pytest_matrix.py), and
fails when the cell was not exact, broke a rule or could not run — the exit status a
normal run would give. ``--collect`` writes the same CSV, JSON, markdown and plots."""

from __future__ import annotations

import os
import time

import pytest

from testbench.matrix.cells import NO_QUIRKS, Cell
from testbench.matrix.collect import record
from testbench.matrix.pytest_matrix import PROPERTY, selection_of
from testbench.matrix.runner import run_cell


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "matrix_cell" in metafunc.fixturenames:
        cells = selection_of(metafunc.config)[1].cells
        metafunc.parametrize("matrix_cell", cells,
                             ids=[f"{c.index}-{c.features}" + ("" if c.quirks == NO_QUIRKS
                                                                else f"-{c.quirks}")
                                  + f"-{c.workload}-{c.profile}" for c in cells])


def test_cell(matrix_cell: Cell, request: pytest.FixtureRequest) -> None:
    words, selection = selection_of(request.config)
    started = time.time()
    row = run_cell(matrix_cell)
    request.node.user_properties.append((PROPERTY, record(
        words, len(selection.cells), row, started=started, ended=time.time(),
        worker=os.environ.get("PYTEST_XDIST_WORKER", "main"))))
    assert not row["error"], row["error"]
    assert row["exact"], f"received {row['received']} of {row['bytes']} bytes, not exact"
    assert not row["violations"], f"{row['violations']} violation(s): {row['violation_rules']}"
