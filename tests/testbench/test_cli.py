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
    assert main(["demo", "--json", "--frames", "40", "--seed", "3", "--tcp-bytes", "1M"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["mismatches"] == 0
    assert report["frames_per_direction"] == 40
    assert report["streams"]["a_to_b"]["exact"] == 40
    assert report["streams"]["b_to_a"]["exact"] == 40
    a, b = report["hosts"]["a"], report["hosts"]["b"]
    for host in (a, b):
        assert "VERSION_1" in host["negotiated"] and "MRG_RXBUF" in host["negotiated"]
        assert host["violations"] == []
    assert b["device"]["drops"] == {"rx-filter-unicast": 10}  # B is not promiscuous
    tcp = report["tcp"]
    assert (tcp["bytes"], tcp["received"], tcp["exact"], tcp["closed"]) == (
        1 << 20, 1 << 20, True, True)
    conn = tcp["connection"]
    # A's stack handed its device TSO packets; every one was segmented by the device
    assert conn["tso_segments_out"] > 0
    assert a["device"]["tx_gso_packets"] == tcp["stacks"]["a"]["interface"]["tx_segmented"] \
        == conn["tso_segments_out"]
    assert b["device"]["rx_coalesced"] > 0  # and B's device coalesced the segments
    assert conn["bytes_out"] == 1 << 20 and conn["retransmitted_segments"] == 0


def test_demo_two_queue_pairs_and_big_buffers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json", "--frames", "20", "--queue-pairs", "2", "--no-mrg-rxbuf",
                 "--tcp-bytes", "1M"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert (report["mismatches"], report["queue_pairs"], report["mrg_rxbuf"]) == (0, 2, False)
    b = report["hosts"]["b"]
    assert "RSS" in b["negotiated"] and "MRG_RXBUF" not in b["negotiated"]
    assert report["tcp"]["exact"] and b["device"]["rx_coalesced"] > 0
    # without MRG_RXBUF every received packet takes exactly one (big) buffer
    assert b["device"]["rx_chains"] == b["device"]["rx_frames"]


def test_demo_tcp_over_a_faulty_wire(capsys: pytest.CaptureFixture[str]) -> None:
    """``--faults``: the frame phase stays on a perfect wire (every frame checked), the
    TCP phase meets the faults and still ends exact, its retransmissions explained."""
    spec = "loss=0.02,reorder=0.01,reorder-delay=50us,duplicate=0.01,corrupt=0.01,jitter=2us"
    assert main(["demo", "--json", "--frames", "30", "--tcp-bytes", "1M",
                 "--faults", spec]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["mismatches"] == 0
    assert report["streams"]["a_to_b"]["exact"] == report["streams"]["b_to_a"]["exact"] == 30
    tcp = report["tcp"]
    assert tcp["exact"] and tcp["closed"]
    assert tcp["faults"] == {"loss": 0.02, "duplicate": 0.01, "reorder": 0.01,
                             "reorder_delay_ns": 50_000, "corrupt": 0.01, "jitter_ns": 2_000,
                             "ce_mark": 0.0}
    wire = report["wire"]["a_to_b"]
    assert min(wire["lost"], wire["duplicated"], wire["reordered"], wire["corrupted"]) > 0
    conn = tcp["connection"]
    assert conn["retransmitted_segments"] > 0 and conn["bytes_out"] > 1 << 20
    main(["demo", "--frames", "5", "--tcp-bytes", "64K", "--faults", "loss=0.05"])
    assert "  over a faulty wire: loss=0.05" in capsys.readouterr().out


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
    [(["--frames", "0"], "must be positive"), (["--memory", "8X"], "not a positive size"),
     (["--faults", "loss=2"], "FaultConfig.loss must be in [0, 1], got 2.0"),
     (["--faults", "lose=0.1"], "'lose=0.1': expected key=value with a key of loss,"),
     (["--faults", "jitter=5"], "jitter='5' is not a duration (e.g. 50us, 2ms)"),
     (["--faults", "reorder-delay=infms"], "is not a duration"),
     (["--faults", "loss=0.1,loss=0.2"], "loss given twice")],
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
    assert main(["demo", "--json", "--frames", "30", "--pcap", str(pcap), "--tcp-bytes", "0",
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


def test_demo_on_a_device_without_a_receive_filter(capsys: pytest.CaptureFixture[str]) -> None:
    """The firecracker profile offers no CTRL_RX: B has no filter to switch, so no
    frames go to a stranger, and everything else arrives exact."""
    assert main(["demo", "--json", "--profile", "firecracker", "--frames", "30",
                 "--tcp-bytes", "256K"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["strangers_sent"] == 0 and report["mismatches"] == 0
    assert "CTRL_RX" not in report["hosts"]["b"]["negotiated"]
    assert report["tcp"]["exact"] is True
