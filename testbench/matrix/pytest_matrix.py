"""The pytest side of the matrix (loaded by testbench/pytest_plugin.py): the options of
the suite in testbench/matrix/suite.py, and the hook that writes each cell's record.

``pytest --pyargs testbench.matrix.suite --vnet-matrix "OPTIONS" --vnet-matrix-out DIR``
runs one test per cell; with pytest-xdist (``-n 4``, ``--dist load``, ``--tx ssh=...``)
the cells spread over workers and machines. A test hands its record to pytest as a user
property, which travels with its report to the process that runs the session (xdist's
controller), and that process writes it into DIR: no shared file system is needed."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from testbench.matrix.collect import write_record
from testbench.matrix.selection import Selection, parse

__all__ = ["PROPERTY", "selection_of"]

PROPERTY = "vnet_matrix_cell"
"""The user property carrying a cell's record (testbench/matrix/collect.py)."""
_SELECTION = pytest.StashKey[tuple[list[str], Selection]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vnetbench-matrix",
                            "vnetbench feature matrix (pytest --pyargs testbench.matrix.suite)")
    group.addoption(
        "--vnet-matrix", default="", metavar="OPTIONS",
        help="the cells testbench.matrix.suite runs, as vnetbench matrix's selection "
             "options in one string, e.g. --vnet-matrix='--features none,tso --size 1M'",
    )
    group.addoption(
        "--vnet-matrix-out", default="matrix-out", metavar="DIR",
        help="where each cell's record goes (cell-NNNNN.json; default matrix-out); then "
             "vnetbench matrix --collect DIR",
    )


def selection_of(config: pytest.Config) -> tuple[list[str], Selection]:
    """The option words of ``--vnet-matrix`` and the cells they select."""
    if _SELECTION not in config.stash:
        words = shlex.split(config.getoption("vnet_matrix"))
        try:
            config.stash[_SELECTION] = (words, parse(words))
        except ValueError as exc:
            raise pytest.UsageError(f"--vnet-matrix: {exc}") from None
    return config.stash[_SELECTION]


class _Writer:
    """Writes the records of the reports this process sees: xdist's controller (its
    workers' reports), or the only process without xdist."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == PROPERTY and isinstance(value, str):
                self.out.mkdir(parents=True, exist_ok=True)
                write_record(self.out, value)


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("vnet_matrix"):
        selection_of(config)  # a bad selection is a usage error before anything runs
    if not hasattr(config, "workerinput"):  # not an xdist worker
        config.pluginmanager.register(_Writer(Path(config.getoption("vnet_matrix_out"))),
                                      "vnetbench-matrix-writer")
