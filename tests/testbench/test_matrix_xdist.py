"""The matrix across pytest-xdist workers: ``pytest --pyargs testbench.matrix.suite -n 2``
writes one record per cell, ``vnetbench matrix --collect`` assembles them into the same
outputs as a normal run with the same selection (all but the wall-clock columns)."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testbench.cli import EXIT_ERROR, EXIT_OK, main
from testbench.matrix.runner import COLUMNS, WALL_COLUMNS
from tests.conftest import skip_unless

pytest_plugins = ["pytester"]

SELECTION = ["--features", "none,tso", "--workloads", "bulk4,small", "--size", "128K",
             "--seed", "5"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        return [{k: v for k, v in row.items() if k not in WALL_COLUMNS} for row in reader]


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 4 cells run by the suite under ``-n 2`` in a separate pytest."""
    skip_unless(None if importlib.util.find_spec("xdist") else
                "pytest-xdist is not installed (pip install 'vnetbench[xdist]')")
    work = tmp_path_factory.mktemp("xdist")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs",
         "testbench.matrix.suite", f"--vnet-matrix={' '.join(SELECTION)}",
         "--vnet-matrix-out", str(work / "cells"), "-n", "2"],
        cwd=work, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout.splitlines()[-1]
    return work / "cells"


def test_collected_run_equals_a_normal_run(
    cells: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sorted(p.name for p in cells.iterdir()) == [
        "cell-00000.json", "cell-00001.json", "cell-00002.json", "cell-00003.json"]
    workers = {json.loads(p.read_text())["worker"] for p in cells.iterdir()}
    assert workers == {"gw0", "gw1"}

    assert main(["matrix", *SELECTION, "--jobs", "1", "--quiet", "--no-plots",
                 "--out", str(tmp_path / "normal")]) == EXIT_OK
    capsys.readouterr()
    assert main(["matrix", "--collect", str(cells), "--out", str(tmp_path / "collected")]) \
        == EXIT_OK
    out = capsys.readouterr().out
    assert f"\n4 cells collected from {cells} (2 worker(s), " in out
    assert out.endswith(f"wrote {tmp_path}/collected/matrix.csv, {tmp_path}/collected/matrix.json, "
                        f"{tmp_path}/collected/matrix.md, {tmp_path}/collected/goodput.png, "
                        f"{tmp_path}/collected/descriptors_per_mb.png\n")

    normal, collected = tmp_path / "normal", tmp_path / "collected"
    rows = _csv(collected / "matrix.csv")
    assert rows == _csv(normal / "matrix.csv")
    assert [(r["index"], r["features"], r["workload"], r["exact"], r["violations"]) for r in rows] \
        == [("0", "none", "bulk4", "True", "0"), ("1", "none", "small", "True", "0"),
            ("2", "tso", "bulk4", "True", "0"), ("3", "tso", "small", "True", "0")]
    assert (collected / "matrix.md").read_text() == (normal / "matrix.md").read_text()
    docs = [json.loads((d / "matrix.json").read_text()) for d in (normal, collected)]
    for doc in docs:
        for row in doc["rows"]:
            for column in WALL_COLUMNS:
                del row[column]
        del doc["meta"]["wall_s"]
    assert docs[0]["meta"] == {"cells": 4, "size": 131072, "seed": 5, "loss": 0.0,
                               "features": ["none", "tso"], "quirks": ["none"],
                               "workloads": ["bulk4", "small"],
                               "profiles": ["strict"], "jobs": 1}
    docs[1]["meta"]["jobs"] = 1  # two workers ran the collected cells
    assert docs[0] == docs[1]
    for name in ("goodput.png", "descriptors_per_mb.png"):
        assert (collected / name).read_bytes()[:8] == PNG_MAGIC


def test_collect_refuses_an_incomplete_or_mixed_directory(
    cells: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(cells, partial)
    (partial / "cell-00002.json").unlink()
    assert main(["matrix", "--collect", str(partial)]) == EXIT_ERROR
    assert capsys.readouterr().err == \
        f"vnetbench matrix: error: {partial}: 1 of 4 cells missing: 2\n"

    doc = json.loads((cells / "cell-00002.json").read_text())
    doc["selection"][-1] = "6"
    (partial / "cell-00002.json").write_text(json.dumps(doc))
    assert main(["matrix", "--collect", str(partial)]) == EXIT_ERROR
    assert capsys.readouterr().err == (f"vnetbench matrix: error: {partial}: cells of 2 "
                                       "different selections; collect one run per directory\n")

    assert main(["matrix", "--collect", str(cells), "--size", "1M", "--seed", "2"]) == EXIT_ERROR
    assert capsys.readouterr().err == ("vnetbench matrix: error: --collect takes the selection "
                                       "from the cell records, not from --size, --seed\n")
    assert main(["matrix", "--collect", str(tmp_path)]) == EXIT_ERROR
    assert capsys.readouterr().err == (
        f"vnetbench matrix: error: {tmp_path}: no cell-*.json files (write them with pytest "
        f"--pyargs testbench.matrix.suite --vnet-matrix-out {tmp_path})\n")


def test_a_bad_selection_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-p", "no:cacheprovider", "--vnet-matrix=--features tso,turbo")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.errlines == [
        "ERROR: --vnet-matrix: unknown feature family 'turbo'; known: all, none, csum, tso, "
        "tso-tx, gro, tso-big, tso4, tso6", ""]
