"""The device's receive filter (virtio-v1.2 §5.1.6.5.1 RX modes, §5.1.6.5.2 MAC filtering,
§5.1.6.5.3 VLAN filtering), decided in QEMU's ``receive_filter`` order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.net.rx_filter import (
    DROP_BROADCAST,
    DROP_MULTICAST,
    DROP_REASONS,
    DROP_UNICAST,
    DROP_VLAN,
    SECTIONS,
    RxFilter,
)
from stack.wire.ethernet import BROADCAST, EthernetHeader, EtherType
from virtio import spec
from virtio.ctrl import MacTable, RxCmd

OWN = bytes.fromhex("525400123456")
OTHER = bytes.fromhex("525400abcdef")
UC_IN_TABLE = bytes.fromhex("020000000001")
MC_IN_TABLE = bytes.fromhex("01005e000001")
MC_OTHER = bytes.fromhex("333300000001")
SRC = bytes.fromhex("020000000099")
PAYLOAD = bytes(46)

DESTS = {
    "own": OWN,
    "other": OTHER,
    "uc-table": UC_IN_TABLE,
    "mc-table": MC_IN_TABLE,
    "mc-other": MC_OTHER,
    "bcast": BROADCAST,
}


def frame(dst: bytes, vid: int | None = None, pcp: int = 0) -> bytes:
    tci = None if vid is None else (pcp << 13) | vid
    return EthernetHeader(dst, SRC, EtherType.IPV4, tci).emit() + PAYLOAD


def make(**modes: bool) -> RxFilter:
    f = RxFilter(OWN, promisc=modes.pop("promisc", False))
    f.set_mac_table(MacTable((UC_IN_TABLE,), (MC_IN_TABLE,)))
    for name, on in modes.items():
        f.set_mode(RxCmd[name.upper()], on)
    return f


def verdicts(f: RxFilter) -> dict[str, str | None]:
    return {name: f.check(frame(dst)) for name, dst in DESTS.items()}


def test_reset_state_is_promiscuous_with_empty_tables() -> None:
    # §5.1.6.5.2.1: empty MAC table on reset; RX modes: QEMU's virtio_net_reset (promisc)
    f = RxFilter(OWN)
    assert f.promisc
    assert not (f.allmulti or f.alluni or f.nomulti or f.nouni or f.nobcast)
    assert f.unicast_table == frozenset() and f.multicast_table == frozenset()
    assert f.vlans == 0 and not f.vlan_filtering
    assert all(v is None for v in verdicts(f).values())
    assert f.check(b"") is None  # promiscuous takes anything, even a runt


def test_normal_mode() -> None:
    # §5.1.6.5.2.1: drop a destination matching neither the MAC nor the table
    assert verdicts(make()) == {
        "own": None, "other": DROP_UNICAST, "uc-table": None,
        "mc-table": None, "mc-other": DROP_MULTICAST, "bcast": None,
    }


@pytest.mark.parametrize(
    ("modes", "expected"),
    [
        # PROMISC wins over every other mode (§5.1.6.5.1.1)
        ({"promisc": True, "nouni": True, "nomulti": True, "nobcast": True},
         {"own": None, "other": None, "uc-table": None, "mc-table": None, "mc-other": None,
          "bcast": None}),
        ({"allmulti": True},
         {"own": None, "other": DROP_UNICAST, "uc-table": None, "mc-table": None,
          "mc-other": None, "bcast": None}),
        ({"alluni": True},
         {"own": None, "other": None, "uc-table": None, "mc-table": None,
          "mc-other": DROP_MULTICAST, "bcast": None}),
        # NOMULTI does not apply to broadcast
        ({"nomulti": True},
         {"own": None, "other": DROP_UNICAST, "uc-table": None, "mc-table": DROP_MULTICAST,
          "mc-other": DROP_MULTICAST, "bcast": None}),
        # NOMULTI takes effect even with ALLMULTI
        ({"nomulti": True, "allmulti": True},
         {"own": None, "other": DROP_UNICAST, "uc-table": None, "mc-table": DROP_MULTICAST,
          "mc-other": DROP_MULTICAST, "bcast": None}),
        # NOUNI drops every unicast frame, the device's own MAC included
        ({"nouni": True},
         {"own": DROP_UNICAST, "other": DROP_UNICAST, "uc-table": DROP_UNICAST,
          "mc-table": None, "mc-other": DROP_MULTICAST, "bcast": None}),
        # NOUNI takes effect even with ALLUNI
        ({"nouni": True, "alluni": True},
         {"own": DROP_UNICAST, "other": DROP_UNICAST, "uc-table": DROP_UNICAST,
          "mc-table": None, "mc-other": DROP_MULTICAST, "bcast": None}),
        ({"nobcast": True},
         {"own": None, "other": DROP_UNICAST, "uc-table": None, "mc-table": None,
          "mc-other": DROP_MULTICAST, "bcast": DROP_BROADCAST}),
        # NOBCAST takes effect even with ALLMULTI
        ({"nobcast": True, "allmulti": True},
         {"own": None, "other": DROP_UNICAST, "uc-table": None, "mc-table": None,
          "mc-other": None, "bcast": DROP_BROADCAST}),
    ],
    ids=["promisc-wins", "allmulti", "alluni", "nomulti", "nomulti-over-allmulti", "nouni",
         "nouni-over-alluni", "nobcast", "nobcast-over-allmulti"],
)
def test_modes(modes: dict[str, bool], expected: dict[str, str | None]) -> None:
    assert verdicts(make(**modes)) == expected


def test_set_mode_and_mode_read_back() -> None:
    f = RxFilter(OWN)
    for cmd in RxCmd:
        f.set_mode(cmd, True)
        assert f.mode(cmd)
        f.set_mode(cmd, False)
        assert not f.mode(cmd)


def test_mac_change_moves_own_address() -> None:
    f = make()
    f.set_mac(OTHER)
    assert f.check(frame(OTHER)) is None
    assert f.check(frame(OWN)) == DROP_UNICAST


def test_mac_table_replaces_both_tables() -> None:
    f = make()
    f.set_mac_table(MacTable((OTHER,), ()))
    assert f.check(frame(OTHER)) is None
    assert f.check(frame(UC_IN_TABLE)) == DROP_UNICAST
    assert f.check(frame(MC_IN_TABLE)) == DROP_MULTICAST


# --- VLAN -------------------------------------------------------------------------------


def vlan_filter(**modes: bool) -> RxFilter:
    f = make(**modes)
    f.vlan_filtering = True
    f.add_vlan(100)
    return f


def test_vlan_in_table_passes_on_to_the_mac_checks() -> None:
    f = vlan_filter()
    assert f.check(frame(OWN, 100)) is None
    assert f.check(frame(OWN, 100, pcp=7)) is None  # priority bits are not part of the VID
    assert f.check(frame(OTHER, 100)) == DROP_UNICAST


def test_vlan_not_in_table_is_dropped_first() -> None:
    f = vlan_filter(allmulti=True)
    assert f.check(frame(OWN, 200)) == DROP_VLAN
    assert f.check(frame(BROADCAST, 200)) == DROP_VLAN
    assert f.check(frame(MC_OTHER, 200)) == DROP_VLAN
    assert f.check(frame(OWN, 0)) == DROP_VLAN  # priority-tagged: VID 0 not added


def test_untagged_frames_ignore_the_vlan_table() -> None:
    assert vlan_filter().check(frame(OWN)) is None


def test_promisc_ignores_the_vlan_table() -> None:
    assert vlan_filter(promisc=True).check(frame(OWN, 200)) is None


def test_without_ctrl_vlan_every_vlan_passes() -> None:
    f = make()
    assert not f.vlan_filtering
    assert f.check(frame(OWN, 200)) is None
    assert f.check(frame(OTHER, 200)) == DROP_UNICAST


def test_only_the_8021q_tpid_is_checked() -> None:
    f = vlan_filter()
    qinq = OWN + SRC + bytes.fromhex("88a8") + bytes.fromhex("00c8") + PAYLOAD  # 802.1ad
    assert f.check(qinq) is None


def test_vlan_table_edits() -> None:
    f = RxFilter(OWN)
    f.add_vlan(0)
    f.add_vlan(4095)
    assert f.vlan_ids() == [0, 4095]
    assert f.vlan_allowed(4095) and not f.vlan_allowed(1) and not f.vlan_allowed(4096)
    f.remove_vlan(0)
    assert f.vlan_ids() == [4095]
    with pytest.raises(ValueError):
        f.add_vlan(4096)
    with pytest.raises(ValueError):
        f.remove_vlan(-1)


# --- short frames -------------------------------------------------------------------------


def test_short_frames_never_raise() -> None:
    f = vlan_filter()
    assert f.check(b"") == DROP_UNICAST
    assert f.check(OWN[:5]) == DROP_UNICAST
    assert f.check(OWN) is None  # destination only
    assert f.check(BROADCAST + b"\x00" * 4) is None
    assert f.check(OWN + SRC + b"\x81\x00") == DROP_VLAN  # tag announced, TCI missing
    assert f.check(OWN + SRC + b"\x81\x00\x00") == DROP_VLAN
    assert f.check(OWN + SRC + b"\x81\x00\x00\x64") is None  # VID 100, nothing more


def test_equality_and_copy() -> None:
    f = vlan_filter()
    g = f.copy()
    assert g == f and g is not f
    g.set_mode(RxCmd.NOBCAST, True)
    assert g != f


def test_mac_must_be_six_bytes() -> None:
    with pytest.raises(ValueError):
        RxFilter(b"\x00" * 5)
    with pytest.raises(ValueError):
        RxFilter(OWN).set_mac(b"")


def test_every_reason_has_a_section() -> None:
    assert set(SECTIONS) == set(DROP_REASONS)
    assert SECTIONS[DROP_VLAN] == spec.NET_CTRL_VLAN
    assert DROP_REASONS == ("rx-filter-unicast", "rx-filter-multicast", "rx-filter-broadcast",
                            "rx-filter-vlan")


@given(
    st.binary(max_size=64),
    st.lists(st.booleans(), min_size=6, max_size=6),
    st.booleans(),
    st.integers(0, 4095),
)
def test_check_never_raises(data: bytes, modes: list[bool], vlan: bool, vid: int) -> None:
    f = RxFilter(OWN, vlan_filtering=vlan)
    f.add_vlan(vid)
    for cmd, on in zip(RxCmd, modes, strict=True):
        f.set_mode(cmd, on)
    for candidate in (data, OWN + data, BROADCAST + SRC + b"\x81\x00" + data):
        reason = f.check(candidate)
        assert reason is None or reason in DROP_REASONS
        assert f.check(memoryview(candidate)) == reason
