"""FeatureSet and the dependency rules of §5.1.3.1."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from virtio import spec
from virtio.constants import FeatureBit as F
from virtio.features import RULES, FeatureSet, Level, negotiate, net_hdr_size

KNOWN = list(F)


def test_parse_names_prefixes_numbers_and_separators() -> None:
    fs = FeatureSet.parse("VIRTIO_NET_F_CSUM | host_tso4, VIRTIO_F_VERSION_1+29")
    assert fs == FeatureSet.of(F.CSUM, F.HOST_TSO4, F.VERSION_1, F.EVENT_IDX)
    assert fs.names() == ["CSUM", "HOST_TSO4", "EVENT_IDX", "VERSION_1"]


def test_parse_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown feature 'TSO9'"):
        FeatureSet.parse("CSUM,TSO9")


def test_words_cover_bits_beyond_64() -> None:
    fs = FeatureSet.of(F.CSUM, F.VERSION_1, F.HOST_UDP_TUNNEL_GSO_CSUM)
    assert (fs.word(0), fs.word(1), fs.word(2)) == (1, 1, 1 << (68 - 64))
    assert F.HOST_UDP_TUNNEL_GSO_CSUM in fs
    assert list(fs) == [F.CSUM, F.VERSION_1, F.HOST_UDP_TUNNEL_GSO_CSUM]


def test_unknown_bits_survive_iteration() -> None:
    fs = FeatureSet(1 << 4 | 1 << 70)
    assert list(fs) == [4, 70]
    assert fs.names() == ["BIT_4", "BIT_70"]


def test_guest_tso_without_guest_csum_is_explained() -> None:
    (v,) = FeatureSet.of(F.GUEST_TSO4).dependency_violations()
    assert v.feature is F.GUEST_TSO4
    assert v.reason == "requires GUEST_CSUM"
    assert v.section == spec.NET_FEATURE_REQUIREMENTS
    assert str(v) == (
        "GUEST_TSO4: requires GUEST_CSUM [virtio-v1.2 §5.1.3.1 Network Device: Feature bit "
        "requirements]"
    )


def test_ecn_needs_either_tso() -> None:
    assert FeatureSet.of(F.CSUM, F.HOST_TSO6, F.HOST_ECN).dependency_violations() == []
    (v,) = FeatureSet.of(F.CSUM, F.HOST_ECN).dependency_violations()
    assert v.reason == "requires (HOST_TSO4 or HOST_TSO6)"


def test_tunnel_gso_needs_all_of_its_bases() -> None:
    base = FeatureSet.of(F.CSUM, F.HOST_TSO4, F.HOST_TSO6, F.HOST_UDP_TUNNEL_GSO)
    (v,) = base.dependency_violations()
    assert v.reason == "requires HOST_TSO4 and HOST_TSO6 and HOST_USO"
    assert base.with_(F.HOST_USO).dependency_violations() == []


def test_hash_report_without_ctrl_vq_is_a_should() -> None:
    fs = FeatureSet.of(F.HASH_REPORT)
    assert fs.dependency_violations(Level.MUST) == []
    (v,) = fs.dependency_violations(Level.SHOULD)
    assert v.level is Level.SHOULD and "virtnet_validate_features" in str(v.section)


def test_closed_resolves_chains() -> None:
    closed, dropped = FeatureSet.of(F.GUEST_ECN, F.GUEST_TSO4, F.VERSION_1).closed()
    assert closed == FeatureSet.of(F.VERSION_1)
    assert [d.feature for d in dropped] == [F.GUEST_TSO4, F.GUEST_ECN]


def test_driver_violations() -> None:
    offered = FeatureSet.of(F.VERSION_1, F.CSUM, F.MAC)
    accepted = FeatureSet.of(F.CSUM, F.HOST_TSO4)
    got = [(v.feature, v.reason, v.section) for v in accepted.driver_violations(offered)]
    assert got == [
        (F.HOST_TSO4, "accepted but not offered by the device", spec.FEATURE_BITS_DRIVER),
        (
            F.VERSION_1,
            "offered but not accepted (a driver MUST accept VERSION_1)",
            spec.RESERVED_FEATURE_BITS_DRIVER,
        ),
    ]


def test_negotiate_explains_each_drop() -> None:
    offered = FeatureSet.of(F.VERSION_1, F.GUEST_TSO4, F.GUEST_ECN, F.MAC)
    wanted = FeatureSet.of(F.VERSION_1, F.GUEST_TSO4, F.GUEST_ECN, F.GUEST_CSUM, F.MRG_RXBUF)
    accepted, dropped = negotiate(offered, wanted)
    assert accepted == FeatureSet.of(F.VERSION_1)
    assert [(d.feature, d.reason) for d in dropped] == [
        (F.GUEST_CSUM, "wanted but not offered"),
        (F.MRG_RXBUF, "wanted but not offered"),
        (F.GUEST_TSO4, "requires GUEST_CSUM"),
        (F.GUEST_ECN, "requires (GUEST_TSO4 or GUEST_TSO6)"),
    ]


feature_sets = st.lists(st.sampled_from(KNOWN)).map(FeatureSet)


@given(offered=feature_sets, wanted=feature_sets)
def test_negotiation_never_breaks_a_rule(offered: FeatureSet, wanted: FeatureSet) -> None:
    accepted, _ = negotiate(offered, wanted)
    assert accepted.dependency_violations() == []
    assert accepted <= offered and accepted <= wanted
    # nothing was dropped without a reason
    _, dropped = negotiate(offered, wanted)
    assert {d.feature for d in dropped} == set(wanted - accepted)


@given(feature_sets)
def test_closed_is_maximal(fs: FeatureSet) -> None:
    closed, _ = fs.closed()
    for f in fs - closed:
        # putting back any dropped feature breaks a rule
        assert closed.with_(f).dependency_violations() != []  # type: ignore[arg-type]


def test_every_rule_names_known_bits_and_a_section() -> None:
    # §5.1.3.1 lists 26 requirements; two SHOULD rules come from the Linux driver.
    assert sum(r.level is Level.MUST for r in RULES) == 26
    assert sum(r.level is Level.SHOULD for r in RULES) == 2
    for r in RULES:
        assert r.requires and all(group for group in r.requires)
        assert str(r.section)


@pytest.mark.parametrize(
    ("features", "size"),
    [
        (FeatureSet(), 10),
        (FeatureSet.of(F.MRG_RXBUF), 12),
        (FeatureSet.of(F.VERSION_1), 12),
        (FeatureSet.of(F.VERSION_1, F.HASH_REPORT), 20),
    ],
)
def test_net_hdr_size(features: FeatureSet, size: int) -> None:
    assert net_hdr_size(features) == size


def test_feature_set_is_immutable_and_hashable() -> None:
    fs = FeatureSet.of(F.CSUM)
    with pytest.raises(AttributeError):
        fs.bits = 3
    assert {fs: 1}[FeatureSet.of(F.CSUM)] == 1
    with pytest.raises(ValueError):
        FeatureSet(-1)
