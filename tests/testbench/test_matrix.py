"""``vnetbench matrix``: the cells, one run with one job and with two (same CSV but for
the wall-clock columns), the summary table and the heatmaps."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from testbench.cli import EXIT_ERROR, EXIT_OK, main
from testbench.commands import matrix as matrix_command
from testbench.feature_spec import SpecError
from testbench.matrix.cells import (
    FAMILIES,
    Cell,
    base_set,
    build_cells,
    families,
    quirk_set_label,
    subsets,
)
from testbench.matrix.runner import COLUMNS, WALL_COLUMNS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_valid_subsets_only() -> None:
    labels = [c.label for c in subsets(["CSUM", "HOST_TSO4", "GUEST_TSO4", "MRG_RXBUF"])]
    # GUEST_TSO4 needs GUEST_CSUM, HOST_TSO4 needs CSUM (§5.1.3.1)
    assert labels == ["-", "CSUM", "MRG_RXBUF", "CSUM+HOST_TSO4", "CSUM+MRG_RXBUF",
                      "CSUM+HOST_TSO4+MRG_RXBUF"]
    tso = subsets(["HOST_TSO4", "HOST_TSO6", "GUEST_TSO4", "GUEST_TSO6"], base_set("csum"))
    assert len(tso) == 16


def test_sixty_four_cells_from_families() -> None:
    cells = build_cells(families(["all"]), ["bulk4", "bulk6"],
                        ["strict", "linux", "qemu", "firecracker"], size=1 << 20, seed=3)
    assert len(cells) == 64 == len(FAMILIES) * 8
    assert [(c.features, c.workload, c.profile) for c in cells[:3]] == [
        ("none", "bulk4", "strict"), ("none", "bulk4", "linux"), ("none", "bulk4", "qemu")]
    assert len({c.cell_seed for c in cells}) == 64


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: families(["tso", "turbo"]),
         "unknown feature family 'turbo'; known: all, none, csum, tso, tso-tx, gro, "
         "tso-big, tso4, tso6"),
        (lambda: subsets(["CSUM", "HOST_TS04"]),
         "unknown feature 'HOST_TS04' (did you mean HOST_TSO4?)"),
        (lambda: subsets([" "]),
         "--subsets needs at least one feature"),
        (lambda: build_cells(families(["tso"]), ["bulk5"], ["strict"], size=1, seed=1),
         "unknown workload 'bulk5'; known: bulk4, bulk6, small, udp"),
        (lambda: build_cells(families(["tso"]), ["bulk4"], ["strict"], size=1, seed=1,
                             quirks=["none", "gso-size-zer0"]),
         "unknown driver quirk 'gso-size-zer0'; did you mean gso-size-zero?"),
    ],
)
def test_bad_choices_say_what_is_wrong(build: object, message: str) -> None:
    assert callable(build)
    with pytest.raises((ValueError, SpecError)) as info:
        build()
    assert str(info.value) == message


def test_quirk_sets_are_a_dimension_of_the_matrix() -> None:
    assert quirk_set_label("none") == quirk_set_label("") == "none"
    assert quirk_set_label("gso-size-zero+ignore-num-buffers+gso-size-zero") == \
        "gso-size-zero+ignore-num-buffers"
    cells = build_cells(families(["none", "tso"]), ["bulk4"], ["strict", "linux"], size=1,
                        seed=3, quirks=["none", "gso-size-zero", "none"])
    assert [(c.features, c.quirks, c.profile) for c in cells] == [
        ("none", "none", "strict"), ("none", "none", "linux"),
        ("none", "gso-size-zero", "strict"), ("none", "gso-size-zero", "linux"),
        ("tso", "none", "strict"), ("tso", "none", "linux"),
        ("tso", "gso-size-zero", "strict"), ("tso", "gso-size-zero", "linux")]
    assert cells[2].quirk_set == frozenset({"gso-size-zero"}) and cells[0].quirk_set == frozenset()
    assert cells[2].label == "none [gso-size-zero]" and cells[0].label == "none"
    # a cell without quirks keeps the wire seed it had before quirks were a coordinate
    import zlib  # noqa: PLC0415
    assert cells[0].cell_seed == zlib.crc32(b"3/none/bulk4/strict")
    assert len({c.cell_seed for c in cells}) == 8
    assert Cell(0, "tso", 0, "bulk4", "strict", 1, 1).quirks == "none"


def test_a_quirk_shows_in_its_cells_only(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """gso-size-zero (TSO packets with gso_size 0) is refused by the strict device only
    where TSO was negotiated: the tso cell records it (and TCP recovers at MSS-sized
    segments), the csum cell is as clean as without the quirk."""
    code = main(["matrix", "--features", "csum,tso", "--quirks", "none,gso-size-zero",
                 "--workloads", "bulk4", "--size", "256K", "--jobs", "1", "--quiet",
                 "--no-plots", "--out", str(tmp_path)])
    assert code == 1  # a cell broke a rule
    with (tmp_path / "matrix.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["features"], r["quirks"], r["exact"]) for r in rows] == [
        ("csum", "none", "True"), ("csum", "gso-size-zero", "True"),
        ("tso", "none", "True"), ("tso", "gso-size-zero", "True")]
    assert [r["violation_rules"] for r in rows] == ["", "", "", "gso-size-zero"]
    assert int(rows[3]["violations"]) > 0
    assert {k: v for k, v in rows[0].items() if k not in (*WALL_COLUMNS, "index", "quirks")} \
        == {k: v for k, v in rows[1].items() if k not in (*WALL_COLUMNS, "index", "quirks")}
    md = (tmp_path / "matrix.md").read_text()
    assert "| tso [gso-size-zero] | " in md and "⚠" in md
    assert json.loads((tmp_path / "matrix.json").read_text())["meta"]["quirks"] == [
        "none", "gso-size-zero"]


def _run(out: Path, jobs: int, capsys: pytest.CaptureFixture[str]) -> list[dict[str, str]]:
    code = main(["matrix", "--features", "none,tso", "--workloads", "bulk4,small",
                 "--size", "256K", "--seed", "5", "--jobs", str(jobs), "--out", str(out)])
    assert code == EXIT_OK
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1].startswith("[##############################] 4/4 cells")
    assert "4 cells in " in captured.out and f"with {jobs} job(s); wrote {out}/matrix.csv" \
        in captured.out
    with (out / "matrix.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        return list(reader)


def test_small_matrix_one_and_two_jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = _run(tmp_path / "one", 1, capsys)
    two = _run(tmp_path / "two", 2, capsys)
    assert [(r["index"], r["features"], r["workload"], r["profile"]) for r in one] == [
        ("0", "none", "bulk4", "strict"), ("1", "none", "small", "strict"),
        ("2", "tso", "bulk4", "strict"), ("3", "tso", "small", "strict")]
    for row in one:
        assert (row["exact"], row["violations"], row["error"], row["seed"]) == ("True", "0", "", "5")
        assert row["received"] == row["bytes"]
    assert [r["bytes"] for r in one] == ["262144", "8192", "262144", "8192"]
    assert one[0]["negotiated_offloads"] == "MRG_RXBUF"
    assert one[2]["negotiated_offloads"] == (
        "CSUM+GUEST_CSUM+GUEST_TSO4+GUEST_TSO6+GUEST_ECN+HOST_TSO4+HOST_TSO6+HOST_ECN+"
        "MRG_RXBUF+HOST_USO")
    # no offload: one frame per descriptor and nothing segmented or coalesced
    assert one[0]["tx_gso_packets"] == one[0]["rx_coalesced"] == "0"
    assert one[0]["device_segments"] == one[0]["tx_descriptors"]
    # TSO: the device cuts packets, B's device coalesces, far fewer descriptors per MB
    assert int(one[2]["tx_gso_packets"]) > 0 and int(one[2]["rx_coalesced"]) > 0
    assert float(one[2]["descriptors_per_mb"]) * 3 < float(one[0]["descriptors_per_mb"])
    # 128 datagrams of 64 bytes and A's ARP request, one notification each
    assert one[1]["tx_notifications"] == "129"

    def deterministic(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        return [{k: v for k, v in r.items() if k not in WALL_COLUMNS} for r in rows]

    assert deterministic(one) == deterministic(two)
    md = (tmp_path / "one" / "matrix.md").read_text()
    assert md == (tmp_path / "two" / "matrix.md").read_text()
    assert md.startswith(
        "# vnetbench matrix\n\n4 cells: 4 exact, 0 with violations, 0 errors. Size 262144 "
        "bytes per bulk cell, seed 5, wire loss 0.0.\n\nDescriptors per MB (A's transmit + "
        "B's receive):\n\n| features | bulk4/strict | small/strict |\n|---|---|---|\n"
        f"| none | {float(one[0]['descriptors_per_mb']):g} | "
        f"{float(one[1]['descriptors_per_mb']):g} |\n")
    doc = json.loads((tmp_path / "one" / "matrix.json").read_text())
    assert doc["meta"]["cells"] == 4 and doc["columns"] == list(COLUMNS)
    assert [str(r["descriptors_per_mb"]) for r in doc["rows"]] == [
        r["descriptors_per_mb"] for r in one]
    for name in ("goodput.png", "descriptors_per_mb.png"):
        assert (tmp_path / "one" / name).read_bytes()[:8] == PNG_MAGIC


def test_without_matplotlib_plots_are_skipped_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(out: Path, rows: object) -> list[Path]:
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(matrix_command, "plot", missing)
    assert main(["matrix", "--features", "tso", "--workloads", "bulk4", "--size", "64K",
                 "--jobs", "1", "--quiet", "--out", str(tmp_path)]) == EXIT_OK
    assert capsys.readouterr().err == (
        "plots skipped: matplotlib is not installed (pip install 'vnetbench[plot]')\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["matrix.csv", "matrix.json",
                                                          "matrix.md"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workloads", "bulk4,bogus"],
         "unknown workload 'bogus'; known: bulk4, bulk6, small, udp"),
        (["--base", "csum"], "--base goes with --subsets"),
        (["--features", "tso", "--subsets", "CSUM"], "--features and --subsets exclude each other"),
        (["--subsets", "CSUM,GUEST_TS04"], "unknown feature 'GUEST_TS04' (did you mean GUEST_TSO4?)"),
        (["--profiles", "strict,strikt"], "unknown device profile 'strikt'; known profiles: "),
    ],
)
def test_errors_are_one_line(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["matrix", "--out", str(tmp_path / "out"), *args]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"vnetbench matrix: error: {message}") and err.count("\n") == 1
