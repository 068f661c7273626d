"""``vnetbench negotiate`` and the SPEC syntax: the real driver against the real device,
cross-checked against the rules of §5.1.3.1."""

from __future__ import annotations

import json

import pytest

from driver.net import DEFAULT_WANTED
from emulator.net.device import IMPLEMENTED
from testbench.cli import EXIT_ERROR, EXIT_MISMATCH, EXIT_OK, main
from testbench.feature_spec import SpecError, parse_spec
from testbench.negotiation import PERMISSIONS, run_negotiation
from virtio.constants import FeatureBit as F
from virtio.features import FeatureSet

SETS = {"all": IMPLEMENTED, "default": DEFAULT_WANTED}


def test_spec_names_imply_version_1() -> None:
    assert parse_spec("CSUM, virtio_net_f_host_tso4", SETS) == FeatureSet.of(
        F.VERSION_1, F.CSUM, F.HOST_TSO4)


def test_spec_edits_read_left_to_right() -> None:
    spec = parse_spec("default,-HOST_ECN,+MRG_RXBUF,-MRG_RXBUF,GUEST_CSUM", SETS)
    assert spec == DEFAULT_WANTED.without(F.HOST_ECN).with_(F.GUEST_CSUM)
    assert parse_spec("none", SETS) == FeatureSet.of(F.VERSION_1)
    assert parse_spec("all,-VERSION_1", SETS) == IMPLEMENTED.without(F.VERSION_1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("HOST_TS04", "unknown feature 'HOST_TS04' (did you mean HOST_TSO4?)"),
        ("CSUM,,+", "unknown feature '' (see virtio/constants.py FeatureBit)"),
        ("", "empty feature spec (use 'none' for no features)"),
        ("bogus", "unknown feature 'bogus' (see virtio/constants.py FeatureBit)"),
    ],
)
def test_bad_specs_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text, SETS)
    assert str(info.value) == message


def test_guest_tso_without_guest_csum_is_dropped_with_its_rule() -> None:
    r = run_negotiation("default", "CSUM,HOST_TSO4,GUEST_TSO4")
    assert r.negotiated == FeatureSet.of(F.VERSION_1, F.CSUM, F.HOST_TSO4)
    assert [str(d) for d in r.dropped] == [
        "GUEST_TSO4: requires GUEST_CSUM [virtio-v1.2 §5.1.3.1 Network Device: Feature bit "
        "requirements]"]
    assert (r.failure, r.mismatches, r.violations) == (None, [], [])
    assert (r.header_size, r.rx_buffers, r.rx_buffer_size, r.mtu) == (12, "small", 1530, 1500)
    allowed = {p.what: (r.allowed(p), r.why(p)) for p in PERMISSIONS}
    assert allowed["TSO over IPv4 (gso_type TCPV4)"] == (True, "CSUM + HOST_TSO4")
    assert allowed["TSO over IPv6 (gso_type TCPV6)"] == (False, "HOST_TSO6 not accepted")
    assert allowed["coalesced TCP/IPv4 (GUEST_TSO4)"] == (False, "GUEST_TSO4 dropped")


def test_chains_resolve_and_not_offered_is_named() -> None:
    r = run_negotiation("default,-GUEST_TSO4,-GUEST_TSO6,-GUEST_ECN",
                        "GUEST_CSUM,GUEST_TSO4,GUEST_ECN,MRG_RXBUF")
    assert r.negotiated == FeatureSet.of(F.VERSION_1, F.GUEST_CSUM, F.MRG_RXBUF)
    assert [(d.feature, d.reason) for d in r.dropped] == [
        ("GUEST_TSO4", "wanted but not offered"), ("GUEST_ECN", "wanted but not offered")]
    assert r.rx_buffers == "mergeable" and r.mismatches == []


def test_big_buffers_without_mrg_rxbuf() -> None:
    r = run_negotiation("default", "GUEST_CSUM,GUEST_TSO4,GUEST_TSO6")
    assert (r.rx_buffers, r.rx_buffer_size, r.mismatches) == ("big", 12 + 65589, [])


def test_accept_takes_the_bulk_presets() -> None:
    r = run_negotiation("default", "csum")
    assert r.negotiated == (DEFAULT_WANTED - FeatureSet.of(
        F.HOST_TSO4, F.HOST_TSO6, F.HOST_ECN, F.HOST_USO)).with_(F.GUEST_CSUM, F.MRG_RXBUF)
    assert r.mismatches == []


def test_firecracker_offers_no_control_queue() -> None:
    r = run_negotiation(profile="firecracker")
    assert r.negotiated == FeatureSet.of(
        F.VERSION_1, F.CSUM, F.MTU, F.MAC, F.HOST_TSO4, F.HOST_TSO6, F.EVENT_IDX)
    assert r.mismatches == [] and r.failure is None


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["negotiate", "--accept", "CSUM,HOST_TSO4,GUEST_TSO4", "--json"]) == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["negotiated"] == ["CSUM", "HOST_TSO4", "VERSION_1"]
    assert out["dropped"] == [{
        "feature": "GUEST_TSO4", "reason": "requires GUEST_CSUM",
        "section": "virtio-v1.2 §5.1.3.1 Network Device: Feature bit requirements"}]
    assert len(out["permissions"]) == len(PERMISSIONS)
    assert sum(p["allowed"] for p in out["permissions"]) == 2
    assert out["mismatches"] == [] and out["violations"] == []


def test_cli_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["negotiate", "--accept", "CSUM,HOST_TSO4"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "negotiated: CSUM, HOST_TSO4, VERSION_1\n" in out
    assert "  yes  TSO over IPv4 (gso_type TCPV4)" in out
    assert out.rstrip().endswith("cross-check with the rules: agrees")


def test_cli_driver_gives_up_without_version_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["negotiate", "--offer", "default,-VERSION_1"]) == EXIT_MISMATCH
    assert "FAILED:     this driver drives only VERSION_1 devices" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--offer", "CSUM,GUEST_TSO4"],
         "vnetbench negotiate: error: a device must not offer a feature without what it "
         "requires: GUEST_TSO4: requires GUEST_CSUM [virtio-v1.2 §5.1.3.1 Network Device: "
         "Feature bit requirements]"),
        (["--accept", "HOST_TS04"],
         "vnetbench negotiate: error: unknown feature 'HOST_TS04' (did you mean HOST_TSO4?)"),
        (["--offer", "all,+RING_PACKED"],
         "vnetbench negotiate: error: the emulated device cannot offer RING_PACKED"),
    ],
)
def test_cli_errors_are_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["negotiate", *args]) == EXIT_ERROR
    assert capsys.readouterr().err == message + "\n"


def test_a_driver_quirk_shows_what_the_device_makes_of_it() -> None:
    r = run_negotiation("default", "default,+GUEST_CSUM,+GUEST_TSO4",
                        quirks=["accept-without-dependency"])
    assert r.quirks == ["accept-without-dependency"]
    assert r.failure is not None and r.failure.startswith("the device cleared FEATURES_OK")
    assert [v.split(" -> ")[0] for v in r.violations] == [
        "[0 ns] driver broke feature-dependency"]
    assert not r.clean


def test_cli_quirks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["negotiate", "--quirks", "driver-ok-before-queues", "--json"]) == EXIT_MISMATCH
    out = json.loads(capsys.readouterr().out)
    assert out["quirks"] == ["driver-ok-before-queues"] and out["failure"] is None
    assert out["mismatches"] == []
    rules = [v.split(" broke ")[1].split(" ")[0] for v in out["violations"]]
    assert sorted(set(rules)) == ["notify-queue-not-ready", "queue-setup-after-driver-ok"]
    assert main(["negotiate", "--quirks", "acept-not-offered"]) == EXIT_ERROR
    assert capsys.readouterr().err == (
        "vnetbench negotiate: error: unknown driver quirk 'acept-not-offered'; did you mean "
        "accept-not-offered?\n")
