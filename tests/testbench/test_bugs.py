"""The bug catalogue (testbench/bugs): each entry's symptom appears with the bug and is
gone with the fix, in exact figures; the ``vnetbench bugs`` command."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from testbench.bugs import CATALOGUE, get_bug
from testbench.cli import EXIT_ERROR, EXIT_MISMATCH, EXIT_OK, main
from tests.conftest import skip_unless

NEGOTIATED = [
    "CSUM", "CTRL_GUEST_OFFLOADS", "MTU", "MAC", "HOST_TSO4", "HOST_TSO6", "HOST_ECN",
    "STATUS", "CTRL_VQ", "CTRL_RX", "GUEST_ANNOUNCE", "MQ", "CTRL_MAC_ADDR",
    "INDIRECT_DESC", "EVENT_IDX", "VERSION_1", "NOTF_COAL", "HOST_USO"]
EXPECTED: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, int]]] = {
    # name: (figures with the bug, figures fixed, monitor rules with the bug)
    "dpdk-tx-seed-lost": (
        {"segments": 12, "bad_checksums": 12, "device_drops": {}},
        {"segments": 12, "bad_checksums": 0, "device_drops": {}},
        {"csum-seed-other": 4}),
    "openvmm-lso-lengthless-seed": (
        {"segments": 12, "bad_checksums": 12, "device_drops": {}},
        {"segments": 12, "bad_checksums": 0, "device_drops": {}},
        {"csum-seed-zero-length": 4}),
    "linux-guest-hdrlen-headlen": (
        {"refused": 4, "segments": 0, "records": 4},
        {"refused": 0, "segments": 12, "records": 0},
        {"hdr-len-inexact": 4}),
    "virtio-spec-183-hash-report-tx-header": (
        {"frames": 4, "wrong_on_wire": 4, "sent": 4},
        {"frames": 4, "wrong_on_wire": 0, "sent": 4},
        {}),
    "netkvm-csum-start-without-ip-offset": (
        {"sent": 4, "bad_checksums": 4, "dropped": 0},
        {"sent": 4, "bad_checksums": 0, "dropped": 0}, {}),
    "netkvm-rx-partial-checksum-unmarked": (
        {"received": 5, "bad_plain": 5, "verified": 0},
        {"received": 5, "bad_plain": 0, "verified": 5}, {}),
    "freebsd-vtnet-needs-csum-as-valid": (
        {"received": 5, "verified_but_bad": 5, "partial": 0},
        {"received": 5, "verified_but_bad": 0, "partial": 5},
        {}),
    "sddf-rx-length-from-descriptor": (
        {"received": 5, "wrong_length": 5, "lengths": [1518] * 5},
        {"received": 5, "wrong_length": 0, "lengths": [154, 204, 254, 304, 354]},
        {}),
    "osv-small-rx-buffers-firecracker": (  # three retry loops, 2000 steps a run, 3 runs
        {"retries": 6003, "received": 0, "rx_buffer_size": 1530, "stalled": True},
        {"retries": 0, "received": 3, "rx_buffer_size": 65601},
        {"rx-buffer-too-small": 1}),
    "firecracker-guest-tso-nack": (
        {"retries": 2001, "received": 0, "device_records": 1, "stalled": True},
        {"retries": 0, "received": 14, "device_records": 0},
        {"rx-offload-not-negotiated": 1, "rx-packet-too-large": 1}),
    # recorded by the device (it knows it breaks the rule) and caught by the driver
    "firecracker-num-buffers-zero": (
        {"driver_drops": 5, "received": 0}, {"driver_drops": 0, "received": 5},
        {"rx-num-buffers-not-one": 10}),
    "hermit-mlx5-num-buffers": (
        {"driver_drops": 5, "received": 0}, {"driver_drops": 0, "received": 5},
        {"rx-num-buffers-not-one": 10}),
    "kvmtool-mrg-rxbuf-num-buffers-early": (
        {"whole": 0, "frames": 2, "driver_drops": {"rx-gso-type-unknown": 4}},
        {"whole": 2, "frames": 2, "driver_drops": {}},
        {"rx-num-buffers-wrong": 2, "rx-gso-type-unknown": 4}),
    "openvmm-used-len-overreport": (
        {"driver_errors": ["used-len-too-large"], "broken": True, "received": 0},
        {"driver_errors": [], "broken": False, "received": 5},
        {"rx-used-len-beyond-written": 5, "used-len-too-large": 1}),
    "snabb-mrg-rxbuf-overreport": (
        {"wrong_length": 5, "received": 5}, {"wrong_length": 0, "received": 5},
        {"rx-used-len-beyond-written": 5}),
    "qemu-rx-stall-under-load": (
        {"rx_no_buffer": 11, "buffers_posted": 4, "received": 4, "sent": 15},
        {"rx_no_buffer": 0, "buffers_posted": 4, "received": 15, "sent": 15},
        {}),
    "qemu-cve-2016-5403-avail-idx": (
        {"records": 1, "needs_reset": True, "sent": 0},
        {"records": 0, "needs_reset": False, "sent": 3},
        {"avail-idx-jump": 1}),
    "linux-validate-features-at-probe": (
        {"probe_failed": True, "records": 1, "negotiated": []},
        {"probe_failed": False, "records": 0, "negotiated": NEGOTIATED},
        {"feature-dependency": 1}),
    "rcore-version-1-not-accepted": (
        {"probe_failed": True, "records": 1}, {"probe_failed": False, "records": 0},
        {"feature-version-1-not-accepted": 1}),
}


FIXED_RULES = {
    "hermit-mlx5-num-buffers": {"rx-num-buffers-not-one": 5},
    "osv-small-rx-buffers-firecracker": {"rx-num-buffers-not-one": 3},
}


def test_the_catalogue_has_fifteen_cited_bugs() -> None:
    assert len(CATALOGUE) >= 15
    assert set(CATALOGUE) == set(EXPECTED)
    for bug in CATALOGUE.values():
        assert bug.citation.startswith(("https://", "http://")), bug.name
        assert bug.title and bug.fix and bug.setup and bug.symptom and bug.fixed_setting


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_symptom_with_the_bug_gone_with_the_fix(name: str) -> None:
    with_bug, fixed, rules = EXPECTED[name]
    bug = get_bug(name)
    broken = bug.run()
    assert (broken.observed, broken.as_expected) == (True, True), broken.symptom
    assert broken.figures == {"stalled": False, **with_bug}
    assert broken.report["rules"] == rules
    good = bug.run(fixed=True)
    assert (good.observed, good.as_expected) == (False, True), good.symptom
    assert good.figures == {**fixed, "stalled": False}
    # where the fix is the driver's workaround, the device still breaks the rule
    assert good.report["rules"] == FIXED_RULES.get(name, {})


def test_unknown_bug_suggests_names() -> None:
    with pytest.raises(ValueError, match="did you mean qemu-rx-stall-under-load"):
        get_bug("qemu-stall")


# the command
def test_cli_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bugs", "list"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.rstrip().endswith(f"{len(CATALOGUE)} bugs")
    assert "    cite     https://github.com/firecracker-microvm/firecracker/issues/3905" in out
    assert main(["bugs", "list", "--json"]) == EXIT_OK
    entries = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in entries] == list(CATALOGUE)


def test_cli_run_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bugs", "run", "firecracker-num-buffers-zero"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("firecracker-num-buffers-zero (with the bug): symptom reproduced")
    assert "monitor: 10 violation(s):" in out
    assert "device broke rx-num-buffers-not-one -> caught by the driver: num_buffers 0" in out
    assert main(["bugs", "run", "firecracker-num-buffers-zero", "--fixed", "--json"]) == EXIT_OK
    result = json.loads(capsys.readouterr().out)
    assert (result["fixed"], result["observed"], result["as_expected"]) == (True, False, True)
    assert result["figures"] == {"driver_drops": 0, "received": 5, "stalled": False}
    assert result["monitor"] == {"violations": 0, "rules": {}, "records": []}


def test_cli_exit_1_when_the_symptom_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bug = get_bug("dpdk-tx-seed-lost")
    no_symptom = replace(bug.run(fixed=True), fixed=False)  # as if the bug did not show
    monkeypatch.setattr(type(bug), "run", lambda self, pcap=None, *, fixed=False: no_symptom)
    assert main(["bugs", "run", "dpdk-tx-seed-lost"]) == EXIT_MISMATCH
    assert "SYMPTOM NOT REPRODUCED" in capsys.readouterr().out


def test_cli_unknown_name_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bugs", "run", "firecracker"]) == EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("vnetbench bugs: error: no bug named 'firecracker'")
    assert "did you mean" in err and "\n" not in err


def test_cli_unwritable_pcap_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bugs", "run", "dpdk-tx-seed-lost", "--pcap", "/nonexistent/x.pcapng"]) \
        == EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("vnetbench bugs: error: ") and "\n" not in err


def test_pcap_of_a_run_is_read_by_tshark(tmp_path: Path) -> None:
    tshark = shutil.which("tshark")
    skip_unless("tshark is not installed (apt-get install tshark)" if tshark is None else None)
    assert tshark is not None
    pcap = tmp_path / "seed.pcapng"
    assert main(["bugs", "run", "dpdk-tx-seed-lost", "--pcap", str(pcap)]) == EXIT_OK
    done = subprocess.run(
        [tshark, "-r", str(pcap), "-o", "tcp.check_checksum:TRUE", "-T", "fields",
         "-e", "frame.interface_name", "-e", "tcp.checksum.status"],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    # 4 TSO packets as the driver handed them, 12 segments on the wire, all bad
    assert sorted(r[0] for r in rows) == ["driver→device"] * 4 + ["wire"] * 12
    assert [r[1] for r in rows if r[0] == "wire"] == ["0"] * 12  # 0: Bad


def test_pcap_keeps_the_header_of_frames_from_an_offload_source(tmp_path: Path) -> None:
    tshark = shutil.which("tshark")
    skip_unless("tshark is not installed (apt-get install tshark)" if tshark is None else None)
    assert tshark is not None
    pcap = tmp_path / "partial.pcapng"
    assert main(["bugs", "run", "freebsd-vtnet-needs-csum-as-valid", "--pcap", str(pcap)]) \
        == EXIT_OK
    done = subprocess.run(
        [tshark, "-r", str(pcap), "-T", "fields", "-e", "frame.interface_name",
         "-e", "frame.comment"],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    comment = ("virtio_net_hdr flags=NEEDS_CSUM gso_type=NONE hdr_len=54 gso_size=0 "
               "csum_start=34 csum_offset=16 num_buffers=0")
    assert done.stdout.splitlines() == [f"wire\t{comment}"] * 5
