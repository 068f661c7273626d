"""Device profiles (emulator/profiles.py) and their agreement with the rule catalogue."""

from __future__ import annotations

import pytest

from emulator.offload.rules import RULES, OffloadError, Rule
from emulator.profiles import (
    LINUX,
    PROFILES,
    QEMU,
    RULE_NAMES,
    STRICT,
    Action,
    Engine,
    Profile,
    SeedPolicy,
    get_profile,
    register_profile,
)
from virtio.errors import DeviceProtocolError, NetHeaderError
from virtio.spec import Section


def test_the_profiles() -> None:
    assert set(PROFILES) == {"strict", "linux", "qemu", "firecracker", "firecracker-legacy"}
    assert get_profile("linux") is LINUX
    assert (STRICT.seed, LINUX.seed, QEMU.seed) == (
        SeedPolicy.RECOMPUTE, SeedPolicy.ADJUST, SeedPolicy.RECOMPUTE)
    assert (STRICT.big_packets, LINUX.big_packets, QEMU.big_packets) == (False, True, False)
    assert (STRICT.engine, LINUX.engine, QEMU.engine) == (Engine.SPEC, Engine.LINUX, Engine.QEMU)


def test_firecracker_profiles() -> None:
    """Firecracker passes the guest's header to its tap (the linux actions), offers a
    fixed set without a control queue; before 2024 no MRG_RXBUF, num_buffers 0 and
    receive offloads from the offered features."""
    fc, old = get_profile("firecracker"), get_profile("firecracker-legacy")
    assert fc.actions == LINUX.actions and fc.seed is SeedPolicy.ADJUST
    assert fc.offered is not None and old.offered is not None
    assert fc.offered.names() == [
        "CSUM", "GUEST_CSUM", "MTU", "MAC", "GUEST_TSO4", "GUEST_TSO6", "HOST_TSO4",
        "HOST_TSO6", "HOST_UFO", "MRG_RXBUF", "EVENT_IDX", "VERSION_1"]
    assert set(fc.offered.names()) - set(old.offered.names()) == {"MRG_RXBUF"}
    assert (fc.rx_num_buffers_zero, fc.rx_offloads_from_offered) == (False, False)
    assert fc.skip_bad_chains and old.skip_bad_chains and not STRICT.skip_bad_chains
    assert (old.rx_num_buffers_zero, old.rx_offloads_from_offered) == (True, True)
    assert any("#3905" in s for s in old.sources)
    assert STRICT.offered is None and LINUX.offered is None and QEMU.offered is None


def test_profile_objects_and_registration() -> None:
    mine = STRICT.derive("strict-overreport", rx_used_len_extra=12)
    assert get_profile(mine) is mine
    with pytest.raises(ValueError, match="unknown device profile"):
        get_profile("strict-overreport")
    with pytest.raises(ValueError, match="exists already"):
        register_profile(STRICT.derive("linux"))


def test_unknown_profile_lists_the_names() -> None:
    with pytest.raises(ValueError, match="linux, qemu, strict"):
        get_profile("windows")


def test_every_rule_has_an_action_in_every_profile() -> None:
    assert set(RULE_NAMES) == set(RULES)
    for profile in PROFILES.values():
        assert set(profile.actions) == set(RULES), profile.name
        assert all(isinstance(a, Action) for a in profile.actions.values())


def test_every_rule_has_a_reference() -> None:
    for rule in RULES.values():
        assert isinstance(rule, Rule)
        assert rule.summary and rule.ref
        assert isinstance(rule.reference, Section | str)


def test_every_profile_says_where_it_comes_from() -> None:
    for profile in PROFILES.values():
        assert profile.sources and profile.description
    assert any("virtio_net_hdr_to_skb" in s for s in LINUX.sources)
    assert any("net_tx_pkt" in s for s in QEMU.sources)
    assert any("5.1.6.2" in s for s in STRICT.sources)


def test_action_defaults_to_reject() -> None:
    assert STRICT.action("no-such-rule") is Action.REJECT
    assert LINUX.action("gso-size-zero") is Action.REJECT
    assert LINUX.action("gso-single-segment") is Action.FIX
    assert QEMU.action("gso-size-zero") is Action.DROP


def test_strict_refuses_must_violations_and_drops_the_undefined() -> None:
    for name in ("gso-size-zero", "gso-without-needs-csum", "csum-outside-frame",
                 "csum-seed-other", "gso-type-unknown"):
        assert STRICT.action(name) is Action.REJECT, name
    for name in ("ipv4-options", "gso-type-mismatch", "ip-length-mismatch",
                 "ufo-gso-size-unaligned", "ip-packet-too-big"):
        assert STRICT.action(name) is Action.DROP, name


def test_linux_actions_follow_the_kernel() -> None:
    rejects = ["gso-type-unknown", "gso-size-zero", "gso-size-by-frags", "csum-outside-frame",
               "csum-start-below-ip-minimum", "csum-offset-tcp", "csum-offset-uso",
               "uso-without-needs-csum", "uso-ecn", "uso-too-many-segments",
               "hdr-len-beyond-frame", "frame-too-short", "ecn-without-gso"]
    drops = ["gso-type-mismatch", "csum-start-not-transport", "ipv6-fragment-header",
             "gso-not-ip", "ipv4-ihl-invalid", "gso-payload-within-mss"]
    fixes = ["gso-single-segment", "ip-length-mismatch", "gso-without-needs-csum",
             "ufo-dont-fragment", "ipv6-jumbo-hop-by-hop"]
    assert [LINUX.action(r) for r in rejects] == [Action.REJECT] * len(rejects)
    assert [LINUX.action(r) for r in drops] == [Action.DROP] * len(drops)
    assert [LINUX.action(r) for r in fixes] == [Action.FIX] * len(fixes)
    assert LINUX.action("ipv4-options") is Action.ALLOW
    assert LINUX.action("csum-seed-zero-length") is Action.ALLOW


def test_profiles_are_immutable_and_derivable() -> None:
    with pytest.raises(TypeError):
        LINUX.actions["gso-size-zero"] = Action.ALLOW  # type: ignore[index]
    lenient = LINUX.derive("lenient", actions={"gso-size-by-frags": Action.ALLOW},
                           big_packets=False)
    assert isinstance(lenient, Profile)
    assert lenient.name == "lenient" and not lenient.big_packets
    assert lenient.action("gso-size-by-frags") is Action.ALLOW
    assert LINUX.action("gso-size-by-frags") is Action.REJECT
    assert lenient.action("gso-size-zero") is Action.REJECT
    assert hash(lenient) != 0


def test_offload_error_is_a_device_protocol_error() -> None:
    err = OffloadError("x", rule="gso-size-zero", section="ref", stage="reject")
    assert isinstance(err, NetHeaderError) and isinstance(err, DeviceProtocolError)
    assert err.rule == "gso-size-zero" and err.stage == "reject" and err.reference == "ref"
    with pytest.raises(ValueError):
        OffloadError("x", rule="r", section="s", stage="later")
