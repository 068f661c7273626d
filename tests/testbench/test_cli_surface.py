"""The CLI as a whole: every subcommand has --help; ``vnetbench capture`` writes the
demo scenario to a pcapng."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from testbench.cli import EXIT_ERROR, EXIT_OK, build_parser, main

PCAPNG_MAGIC = bytes.fromhex("0a0d0d0a")


def _commands() -> list[str]:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def test_the_commands_of_this_issue_are_listed() -> None:
    assert {"demo", "capture", "negotiate", "matrix"} <= set(_commands())


@pytest.mark.parametrize("command", _commands())
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: vnetbench {command} ")


def test_capture_writes_the_demo_to_a_pcapng(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo.pcapng"
    assert main(["capture", "--out", str(out), "--frames", "10", "--tcp-bytes", "256K",
                 "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == {
        "path": str(out), "packets": 263, "mismatches": 0}
    assert out.read_bytes()[:4] == PCAPNG_MAGIC


def test_capture_into_a_missing_directory_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "missing" / "demo.pcapng"
    assert main(["capture", "--out", str(out), "--frames", "1", "--tcp-bytes", "0"]) == EXIT_ERROR
    assert capsys.readouterr().err == (
        f"vnetbench capture: error: [Errno 2] No such file or directory: '{out}'\n")


def test_a_reader_that_stops_early_is_no_error() -> None:
    """``vnetbench bugs list | head -1``: output into a pipe nobody reads any more ends
    the command quietly, exit status 0, no traceback. (The reading end is closed before
    the command writes, so its first write fails with EPIPE.)"""
    proc = subprocess.Popen([sys.executable, "-m", "testbench.cli", "bugs", "list"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 0
    assert err == b""
