"""The ``vnetbench`` command: demo output, JSON, exit codes, errors in one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testbench.cli import EXIT_ERROR, EXIT_OK, main
from tests.conftest import skip_unless


def test_demo_json_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json", "--frames", "40", "--seed", "3", "--bulk-packets", "2"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["mismatches"] == 0
    assert report["frames_per_direction"] == 40
    assert report["streams"]["a_to_b"]["exact"] == 40
    assert report["streams"]["b_to_a"]["exact"] == 40
    a, b = report["hosts"]["a"], report["hosts"]["b"]
    for host in (a, b):
        assert "VERSION_1" in host["negotiated"] and "MRG_RXBUF" in host["negotiated"]
        assert host["violations"] == []
    bulk = report["bulk"]
    # 4 flows x 2 TSO packets of 32000 bytes, mss 1448: 23 segments each on A's wire
    assert (bulk["tso_packets_sent"], bulk["flows_exact"], bulk["mismatches"]) == (8, 4, 0)
    assert a["device"]["tx_gso_packets"] == 8
    assert a["device"]["tx_frames"] == 40 + 10 + 8 * 23  # frames, strangers, segments
    assert b["device"]["tx_frames"] == a["device"]["rx_frames"] == 40
    assert b["device"]["rx_frames"] == 40 + bulk["packets_received"]
    assert b["device"]["rx_coalesced_segments"] + bulk["packets_received"] \
        - b["device"]["rx_coalesced"] == 8 * 23
    assert b["device"]["drops"] == {"rx-filter-unicast": 10}  # B is not promiscuous
    assert b["device"]["ctrl_commands"] == 1 and b["device"]["rx_queue_packets"] == {
        "0": 40 + bulk["packets_received"]}


def test_demo_two_queue_pairs_and_big_buffers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json", "--frames", "20", "--queue-pairs", "2", "--no-mrg-rxbuf",
                 "--bulk-packets", "4"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert (report["mismatches"], report["queue_pairs"], report["mrg_rxbuf"]) == (0, 2, False)
    b = report["hosts"]["b"]
    assert "RSS" in b["negotiated"] and "MRG_RXBUF" not in b["negotiated"]
    # every bulk flow arrived exact, coalesced, and RSS used both receive queues
    bulk = report["bulk"]
    assert bulk["flows_exact"] == 4
    # every wire segment is in exactly one received packet, and every packet the device
    # coalesced reached the driver as a coalesced packet (segment_size set)
    assert b["device"]["rx_coalesced_segments"] + bulk["packets_received"] \
        - b["device"]["rx_coalesced"] == 16 * 23
    assert b["device"]["rx_coalesced"] == bulk["coalesced_packets_received"] >= 4
    assert set(report["bulk"]["receive_queues"]) == {"0", "1"}
    assert set(b["device"]["rx_queue_packets"]) == {"0", "1"}


def test_demo_text_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--frames", "10"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "host a  mac 52:54:00:00:00:01" in out
    assert "negotiated: " in out
    assert out.rstrip().endswith("mismatches: 0")


def test_too_little_guest_memory_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--memory", "64K"]) == EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("vnetbench demo: error: ")
    assert "\n" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--frames", "0"], "must be positive"), (["--memory", "8X"], "not a positive size")],
)
def test_bad_arguments_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", *args])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_console_script_is_installed() -> None:
    exe = shutil.which("vnetbench", path=str(Path(sys.executable).parent)) or shutil.which(
        "vnetbench"
    )
    assert exe is not None, "the vnetbench console script is not installed"
    proc = subprocess.run(
        [exe, "demo", "--json", "--frames", "5"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["mismatches"] == 0


def test_demo_writes_a_capture_tshark_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pcap = tmp_path / "demo.pcapng"
    assert main(["demo", "--json", "--frames", "30", "--pcap", str(pcap), "--bulk-packets", "0",
                 "--strangers", "0"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    # host A: 30 TX chains from its driver, 30 frames onto the wire, 30 off it
    assert report["pcap"] == {"path": str(pcap), "packets": 90}
    tshark = shutil.which("tshark")
    skip_unless("tshark is not installed (apt-get install tshark)" if tshark is None else None)
    assert tshark is not None
    proc = subprocess.run(
        [tshark, "-r", str(pcap), "-T", "fields", "-e", "frame.interface_name"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0
    warnings = [ln for ln in proc.stderr.splitlines() if not ln.startswith("Running as user")]
    assert warnings == []
    names = proc.stdout.split()
    assert (names.count("driver→device"), names.count("wire")) == (30, 60)
