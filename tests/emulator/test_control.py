"""The device-side control command executor (virtio-v1.2 §5.1.6.5; NOTF_COAL v1.3
§5.1.6.5.9): every command's success path with the exact state change and ``changed``
set, every refusal with its exact rule, and "never raises, refused commands change
nothing" for arbitrary bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.net.control import CHANGE_GROUPS, CommandResult, ControlLimits, ControlState
from emulator.net.rx_filter import DROP_UNICAST
from virtio import spec
from virtio.constants import FeatureBit as F
from virtio.constants import HashType as H
from virtio.ctrl import (
    COMMAND_FEATURE,
    GUEST_OFFLOAD_BITS,
    AnnounceCmd,
    CtrlClass,
    HashConfig,
    MacCmd,
    MacTable,
    MqCmd,
    NotfCoal,
    NotfCoalCmd,
    OffloadsCmd,
    RssConfig,
    RxCmd,
    VlanCmd,
    VqNotfCoal,
    encode_coal_vq_get,
    encode_command,
    encode_mac,
    encode_offloads,
    encode_rx_mode,
    encode_vlan,
    encode_vq_pairs,
)
from virtio.features import FeatureSet

MAC = bytes.fromhex("525400123456")
NEW_MAC = bytes.fromhex("525400abcdef")
UC = bytes.fromhex("020000000001")
MC = bytes.fromhex("01005e000001")
KEY = bytes(range(40))
SUPPORTED = H.IPV4 | H.TCPV4 | H.UDPV4 | H.IPV6 | H.TCPV6 | H.UDPV6
LIMITS = ControlLimits(
    max_pairs=4, rss_max_key_size=40, rss_max_indirection_table_length=128,
    supported_hash_types=SUPPORTED,
)
ALL = FeatureSet.of(
    F.VERSION_1, F.CTRL_VQ, F.CTRL_RX, F.CTRL_RX_EXTRA, F.CTRL_VLAN, F.GUEST_ANNOUNCE, F.MQ,
    F.CTRL_MAC_ADDR, F.CTRL_GUEST_OFFLOADS, F.RSS, F.HASH_REPORT, F.NOTF_COAL,
    F.VQ_NOTF_COAL, F.GUEST_CSUM, F.GUEST_TSO4, F.GUEST_TSO6, F.GUEST_ECN,
)
RSS = RssConfig(H.IPV4 | H.TCPV4, (0, 1, 2, 3), 0, 2, KEY)
HASH = HashConfig(H.IPV4 | H.TCPV6, KEY)


def state(negotiated: FeatureSet = ALL, **kwargs: object) -> ControlState:
    return ControlState(MAC, LIMITS, negotiated, **kwargs)  # type: ignore[arg-type]


def ok(result: CommandResult, *changed: str) -> None:
    assert result.ok, result
    assert result.rule is None and result.section is None
    assert result.changed == frozenset(changed)


# one valid command of each (class, command)
VALID: dict[tuple[int, int], bytes] = {
    **{(CtrlClass.RX, c): encode_rx_mode(True) for c in RxCmd},
    (CtrlClass.MAC, MacCmd.TABLE_SET): MacTable((UC,), (MC,)).emit(),
    (CtrlClass.MAC, MacCmd.ADDR_SET): encode_mac(NEW_MAC),
    (CtrlClass.VLAN, VlanCmd.ADD): encode_vlan(100),
    (CtrlClass.VLAN, VlanCmd.DEL): encode_vlan(100),
    (CtrlClass.ANNOUNCE, AnnounceCmd.ACK): b"",
    (CtrlClass.MQ, MqCmd.VQ_PAIRS_SET): encode_vq_pairs(2),
    (CtrlClass.MQ, MqCmd.RSS_CONFIG): RSS.emit(),
    (CtrlClass.MQ, MqCmd.HASH_CONFIG): HASH.emit(),
    (CtrlClass.GUEST_OFFLOADS, OffloadsCmd.SET): encode_offloads(FeatureSet.of(F.GUEST_CSUM)),
    (CtrlClass.NOTF_COAL, NotfCoalCmd.TX_SET): NotfCoal(15, 10).emit(),
    (CtrlClass.NOTF_COAL, NotfCoalCmd.RX_SET): NotfCoal(15, 10).emit(),
    (CtrlClass.NOTF_COAL, NotfCoalCmd.VQ_SET): VqNotfCoal(1, NotfCoal(8, 4)).emit(),
    (CtrlClass.NOTF_COAL, NotfCoalCmd.VQ_GET): encode_coal_vq_get(1),
}


def test_valid_covers_every_command() -> None:
    assert set(VALID) == set(COMMAND_FEATURE)


# --- reset state ----------------------------------------------------------------------------


def test_reset_state() -> None:
    s = state()
    assert s.mac == MAC and s.filter.mac == MAC
    assert s.filter.promisc and s.filter.vlan_filtering
    assert s.queue_pairs == 1
    assert s.rss is None and s.hash_config is None
    assert s.guest_offloads == FeatureSet.of(F.GUEST_CSUM, F.GUEST_TSO4, F.GUEST_TSO6,
                                             F.GUEST_ECN)
    assert s.notf_coal_tx == NotfCoal(0, 0) and s.notf_coal_rx == NotfCoal(0, 0)
    assert s.announces_acked == 0
    assert s.hash_params() == (H(0), b"")
    assert s.data_pairs == 4


def test_reset_options() -> None:
    s = state(ALL.without(F.CTRL_VLAN, F.MQ, F.RSS), promisc=False)
    assert not s.filter.promisc and not s.filter.vlan_filtering
    assert s.data_pairs == 1


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        ControlLimits(0, 40, 128, SUPPORTED)
    with pytest.raises(ValueError):
        ControlLimits(0x8001, 40, 128, SUPPORTED)
    with pytest.raises(ValueError):
        ControlLimits(1, 256, 128, SUPPORTED)


# --- success paths --------------------------------------------------------------------------


@pytest.mark.parametrize("cmd", list(RxCmd))
def test_rx_modes(cmd: RxCmd) -> None:
    s = state()
    initially = s.filter.mode(cmd)  # PROMISC starts on
    ok(s.execute(CtrlClass.RX, cmd, encode_rx_mode(initially)))
    ok(s.execute(CtrlClass.RX, cmd, encode_rx_mode(not initially)), "rx_filter")
    assert s.filter.mode(cmd) is (not initially)
    ok(s.execute(CtrlClass.RX, cmd, encode_rx_mode(initially)), "rx_filter")
    assert s.filter.mode(cmd) is initially


def test_promisc_off_makes_the_filter_bite() -> None:
    s = state()
    other = NEW_MAC + bytes(60)
    assert s.filter.check(other) is None
    ok(s.execute(CtrlClass.RX, RxCmd.PROMISC, encode_rx_mode(False)), "rx_filter")
    assert s.filter.check(other) == DROP_UNICAST


def test_mac_addr_set() -> None:
    s = state()
    ok(s.execute(CtrlClass.MAC, MacCmd.ADDR_SET, encode_mac(MAC)))
    ok(s.execute(CtrlClass.MAC, MacCmd.ADDR_SET, encode_mac(NEW_MAC)), "mac")
    assert s.mac == NEW_MAC and s.filter.mac == NEW_MAC


def test_mac_table_set() -> None:
    s = state()
    table = MacTable((UC,), (MC,))
    ok(s.execute(CtrlClass.MAC, MacCmd.TABLE_SET, table.emit()), "rx_filter")
    assert s.filter.unicast_table == {UC} and s.filter.multicast_table == {MC}
    ok(s.execute(CtrlClass.MAC, MacCmd.TABLE_SET, table.emit()))
    ok(s.execute(CtrlClass.MAC, MacCmd.TABLE_SET, MacTable().emit()), "rx_filter")
    assert s.filter.unicast_table == frozenset() and s.filter.multicast_table == frozenset()


def test_vlan_add_del() -> None:
    s = state()
    ok(s.execute(CtrlClass.VLAN, VlanCmd.ADD, encode_vlan(4095)), "rx_filter")
    assert s.filter.vlan_ids() == [4095]
    ok(s.execute(CtrlClass.VLAN, VlanCmd.ADD, encode_vlan(4095)))
    ok(s.execute(CtrlClass.VLAN, VlanCmd.DEL, encode_vlan(4095)), "rx_filter")
    assert s.filter.vlan_ids() == []
    ok(s.execute(CtrlClass.VLAN, VlanCmd.DEL, encode_vlan(7)))


def test_announce_ack() -> None:
    s = state()
    ok(s.execute(CtrlClass.ANNOUNCE, AnnounceCmd.ACK, b""), "announce")
    ok(s.execute(CtrlClass.ANNOUNCE, AnnounceCmd.ACK, b""), "announce")
    assert s.announces_acked == 2


def test_vq_pairs_set() -> None:
    s = state()
    ok(s.execute(CtrlClass.MQ, MqCmd.VQ_PAIRS_SET, encode_vq_pairs(1)))
    ok(s.execute(CtrlClass.MQ, MqCmd.VQ_PAIRS_SET, encode_vq_pairs(4)), "queue_pairs")
    assert s.queue_pairs == 4
    ok(s.execute(CtrlClass.MQ, MqCmd.VQ_PAIRS_SET, encode_vq_pairs(1)), "queue_pairs")
    assert s.queue_pairs == 1


def test_rss_config_sets_rss_and_queue_pairs() -> None:
    s = state()
    ok(s.execute(CtrlClass.MQ, MqCmd.RSS_CONFIG, RSS.emit()), "rss", "queue_pairs")
    assert s.rss == RSS
    assert s.queue_pairs == RSS.max_tx_vq == 2
    assert s.hash_params() == (RSS.hash_types, KEY)
    ok(s.execute(CtrlClass.MQ, MqCmd.RSS_CONFIG, RSS.emit()))
    other = RssConfig(H.IPV4, (3,) * 128, 3, 2, KEY[:1])
    ok(s.execute(CtrlClass.MQ, MqCmd.RSS_CONFIG, other.emit()), "rss")
    assert s.rss == other


def test_rss_table_may_name_more_rx_queues_than_max_tx_vq() -> None:
    s = state()
    cfg = RssConfig(H.TCPV4, (0, 1, 2, 3), 3, 1, KEY)
    ok(s.execute(CtrlClass.MQ, MqCmd.RSS_CONFIG, cfg.emit()), "rss")
    assert s.queue_pairs == 1


def test_rss_without_hash_types_needs_no_key() -> None:
    # everything unclassified (§5.1.6.5.7.3)
    s = state()
    cfg = RssConfig(H(0), (0,), 1, 1, b"")
    ok(s.execute(CtrlClass.MQ, MqCmd.RSS_CONFIG, cfg.emit()), "rss")


def test_vq_pairs_set_after_rss_returns_to_automatic_steering() -> None:
    # §5.1.6.5.5: the last command defines the configuration (QEMU disables RSS)
    s = state()
    s.execute(CtrlClass.MQ, MqCmd.RSS_CONFIG, RSS.emit())
    ok(s.execute(CtrlClass.MQ, MqCmd.VQ_PAIRS_SET, encode_vq_pairs(2)), "rss")
    assert s.rss is None and s.queue_pairs == 2
    ok(s.execute(CtrlClass.MQ, MqCmd.VQ_PAIRS_SET, encode_vq_pairs(3)), "queue_pairs")


def test_hash_config() -> None:
    s = state(ALL.without(F.RSS))
    ok(s.execute(CtrlClass.MQ, MqCmd.HASH_CONFIG, HASH.emit()), "hash")
    assert s.hash_config == HASH
    assert s.hash_params() == (HASH.hash_types, KEY)
    assert s.rss is None and s.queue_pairs == 1
    ok(s.execute(CtrlClass.MQ, MqCmd.HASH_CONFIG, HASH.emit()))


def test_hash_config_leaves_rss_alone() -> None:
    s = state()
    s.execute(CtrlClass.MQ, MqCmd.RSS_CONFIG, RSS.emit())
    ok(s.execute(CtrlClass.MQ, MqCmd.HASH_CONFIG, HASH.emit()), "hash")
    assert s.rss == RSS and s.queue_pairs == 2
    assert s.hash_params() == (RSS.hash_types, KEY)  # RSS negotiated: RSS's parameters


def test_guest_offloads_set() -> None:
    s = state()
    off = FeatureSet.of(F.GUEST_CSUM)
    ok(s.execute(CtrlClass.GUEST_OFFLOADS, OffloadsCmd.SET, encode_offloads(off)), "offloads")
    assert s.guest_offloads == off
    ok(s.execute(CtrlClass.GUEST_OFFLOADS, OffloadsCmd.SET, encode_offloads(off)))
    ok(s.execute(CtrlClass.GUEST_OFFLOADS, OffloadsCmd.SET, encode_offloads(FeatureSet())),
       "offloads")
    assert s.guest_offloads == FeatureSet()
    back = ALL & GUEST_OFFLOAD_BITS
    ok(s.execute(CtrlClass.GUEST_OFFLOADS, OffloadsCmd.SET, encode_offloads(back)), "offloads")
    assert s.guest_offloads == back


@pytest.mark.parametrize(("cmd", "attr"), [(NotfCoalCmd.TX_SET, "notf_coal_tx"),
                                           (NotfCoalCmd.RX_SET, "notf_coal_rx")])
def test_notf_coal_tx_rx(cmd: NotfCoalCmd, attr: str) -> None:
    s = state()
    ok(s.execute(CtrlClass.NOTF_COAL, cmd, NotfCoal(0, 0).emit()))
    ok(s.execute(CtrlClass.NOTF_COAL, cmd, NotfCoal(15, 10).emit()), "notf_coal")
    assert getattr(s, attr) == NotfCoal(15, 10)
    parity = 1 if cmd == NotfCoalCmd.TX_SET else 0
    assert [s.coal_for(q) for q in range(8) if q & 1 == parity] == [NotfCoal(15, 10)] * 4
    assert [s.coal_for(q) for q in range(8) if q & 1 != parity] == [NotfCoal(0, 0)] * 4


def test_notf_coal_vq_spec_example() -> None:
    # virtio-v1.3 §5.1.6.5.9, the six-command example with two pairs of virtqueues
    s = state()
    c1, c2, c4, c5 = NotfCoal(1, 1), NotfCoal(2, 2), NotfCoal(4, 4), NotfCoal(5, 5)

    def run(cmd: NotfCoalCmd, data: bytes) -> CommandResult:
        return s.execute(CtrlClass.NOTF_COAL, cmd, data)

    ok(run(NotfCoalCmd.RX_SET, c1.emit()), "notf_coal")  # vq 0 and 2
    assert (s.coal_for(0), s.coal_for(2), s.coal_for(1)) == (c1, c1, NotfCoal())
    ok(run(NotfCoalCmd.VQ_SET, VqNotfCoal(0, c2).emit()), "notf_coal")
    assert (s.coal_for(0), s.coal_for(2)) == (c2, c1)
    got = run(NotfCoalCmd.VQ_GET, encode_coal_vq_get(0))
    ok(got)
    assert got.response == c2.emit()
    ok(run(NotfCoalCmd.VQ_SET, VqNotfCoal(1, c4).emit()), "notf_coal")
    assert (s.coal_for(1), s.coal_for(3)) == (c4, NotfCoal())
    ok(run(NotfCoalCmd.TX_SET, c5.emit()), "notf_coal")  # overrides command 4
    assert (s.coal_for(1), s.coal_for(3)) == (c5, c5)
    assert run(NotfCoalCmd.VQ_GET, encode_coal_vq_get(1)).response == c5.emit()


def test_notf_coal_vq_set_same_value_changes_nothing() -> None:
    s = state()
    ok(s.execute(CtrlClass.NOTF_COAL, NotfCoalCmd.VQ_SET, VqNotfCoal(2, NotfCoal()).emit()))
    ok(s.execute(CtrlClass.NOTF_COAL, NotfCoalCmd.VQ_SET,
                 VqNotfCoal(2, NotfCoal(3, 0), reserved=0xFFFF).emit()), "notf_coal")
    s.queue_reenabled(2)  # §5.1.6.5.9.6: back to RX_SET's (here 0/0)
    assert s.coal_for(2) == NotfCoal()


def test_notf_coal_vq_get_linux_two_byte_form() -> None:
    s = state()
    got = s.execute(CtrlClass.NOTF_COAL, NotfCoalCmd.VQ_GET, b"\x07\x00")
    ok(got)
    assert got.response == NotfCoal().emit()


def test_handle_splits_the_header() -> None:
    s = state()
    ok(s.handle(encode_command(CtrlClass.MQ, MqCmd.VQ_PAIRS_SET, encode_vq_pairs(3))),
       "queue_pairs")
    assert s.queue_pairs == 3


# --- refusals ---------------------------------------------------------------------------------


def refused(  # noqa: PLR0917 - reads like the command it checks
    s: ControlState, cls: int, cmd: int, data: bytes, rule: str,
    section: spec.Section | None = None,
) -> CommandResult:
    before = s.snapshot()
    result = s.execute(cls, cmd, data)
    assert not result.ok
    assert result.rule == rule, result
    assert isinstance(result.section, spec.Section)
    if section is not None:
        assert result.section == section
    assert result.detail
    assert result.changed == frozenset() and result.response == b""
    assert s.snapshot() == before
    return result


@pytest.mark.parametrize(("cls", "cmd"), [(7, 0), (8, 0), (255, 255)])
def test_unknown_class(cls: int, cmd: int) -> None:
    refused(state(), cls, cmd, b"", "ctrl-unknown-class", spec.NET_CTRL)


@pytest.mark.parametrize(
    ("cls", "cmd"),
    [(CtrlClass.RX, 6), (CtrlClass.MAC, 2), (CtrlClass.VLAN, 2), (CtrlClass.ANNOUNCE, 1),
     (CtrlClass.MQ, 3), (CtrlClass.GUEST_OFFLOADS, 1), (CtrlClass.NOTF_COAL, 4),
     (CtrlClass.RX, 255)],
)
def test_unknown_command(cls: int, cmd: int) -> None:
    refused(state(), cls, cmd, b"\x00", "ctrl-unknown-command", spec.NET_CTRL)


@pytest.mark.parametrize(("cls", "cmd"), sorted(COMMAND_FEATURE))
def test_not_negotiated(cls: int, cmd: int) -> None:
    req = COMMAND_FEATURE[cls, cmd]
    for f in req.features:
        r = refused(state(ALL.without(f)), cls, cmd, VALID[cls, cmd], "ctrl-not-negotiated",
                    req.section)
        assert f.name in r.detail
    r = refused(state(ALL.without(F.CTRL_VQ)), cls, cmd, VALID[cls, cmd],
                "ctrl-not-negotiated", req.section)
    assert "CTRL_VQ" in r.detail


@pytest.mark.parametrize(("cls", "cmd"), sorted(COMMAND_FEATURE))
def test_every_valid_command_succeeds(cls: int, cmd: int) -> None:
    assert state().execute(cls, cmd, VALID[cls, cmd]).ok


@pytest.mark.parametrize(("cls", "cmd"), sorted(COMMAND_FEATURE))
def test_data_too_short_or_too_long(cls: int, cmd: int) -> None:
    data = VALID[cls, cmd]
    if data:
        refused(state(), cls, cmd, data[:-1], "ctrl-data-short")
    if (cls, cmd) == (CtrlClass.NOTF_COAL, NotfCoalCmd.VQ_GET):
        data = data + b"\x00"  # 4 + 1 bytes (2 and 4 are both accepted)
        refused(state(), cls, cmd, data, "ctrl-data-long")
        return
    refused(state(), cls, cmd, data + b"\x00", "ctrl-data-long")


def test_rx_mode_byte() -> None:
    refused(state(), CtrlClass.RX, RxCmd.ALLMULTI, b"\x02", "ctrl-rx-mode-not-boolean",
            spec.NET_CTRL_RX_DEVICE)


def test_mac_table_class_mismatch() -> None:
    s = state()
    refused(s, CtrlClass.MAC, MacCmd.TABLE_SET, MacTable((MC,), ()).emit(),
            "ctrl-mac-table-class", spec.NET_CTRL_MAC_DRIVER)
    refused(s, CtrlClass.MAC, MacCmd.TABLE_SET, MacTable((), (UC,)).emit(),
            "ctrl-mac-table-class", spec.NET_CTRL_MAC_DRIVER)


def test_mac_table_count_lies() -> None:
    raw = bytes.fromhex("02000000") + UC + bytes.fromhex("00000000")  # 2 announced, 1 sent
    refused(state(), CtrlClass.MAC, MacCmd.TABLE_SET, raw, "ctrl-data-short",
            spec.NET_CTRL_MAC_DRIVER)


@pytest.mark.parametrize("vid", [4096, 0xFFFF])
def test_vlan_id_out_of_range(vid: int) -> None:
    for cmd in VlanCmd:
        refused(state(), CtrlClass.VLAN, cmd, encode_vlan(vid), "ctrl-vlan-id-out-of-range",
                spec.NET_CTRL_VLAN)


def test_announce_carries_no_data() -> None:
    refused(state(), CtrlClass.ANNOUNCE, AnnounceCmd.ACK, b"\x00", "ctrl-data-long")


@pytest.mark.parametrize("pairs", [0, 5, 0x8000, 0xFFFF])
def test_vq_pairs_out_of_range(pairs: int) -> None:
    refused(state(), CtrlClass.MQ, MqCmd.VQ_PAIRS_SET, encode_vq_pairs(pairs),
            "ctrl-vq-pairs-out-of-range", spec.NET_MQ_STEERING_DRIVER)


@pytest.mark.parametrize(
    ("cfg", "rule", "section"),
    [
        (RssConfig(H.IPV4, (0, 1, 2), 0, 1, KEY), "ctrl-rss-table-not-power-of-two",
         spec.NET_RSS_DRIVER),
        (RssConfig(H.IPV4, (0,) * 256, 0, 1, KEY), "ctrl-rss-table-too-long",
         spec.NET_RSS_DRIVER),
        (RssConfig(H.IPV4 | H.IP_EX, (0,), 0, 1, KEY), "ctrl-rss-hash-types-unsupported",
         spec.NET_RSS_DRIVER),
        (RssConfig(H(1 << 20), (0,), 0, 1, KEY), "ctrl-rss-hash-types-unsupported",
         spec.NET_RSS_DRIVER),
        (RssConfig(H.IPV4, (0,), 0, 1, bytes(41)), "ctrl-rss-key-too-long", spec.NET_CONFIG),
        (RssConfig(H.IPV4, (0,), 0, 1, b""), "ctrl-rss-key-missing", spec.NET_RSS_SET),
        (RssConfig(H.IPV4, (0,), 4, 1, KEY), "ctrl-rss-queue-out-of-range",
         spec.NET_RSS_DRIVER),
        (RssConfig(H.IPV4, (0, 4), 0, 1, KEY), "ctrl-rss-queue-out-of-range",
         spec.NET_RSS_DRIVER),
        (RssConfig(H.IPV4, (0, 0x8000), 0, 1, KEY), "ctrl-rss-queue-out-of-range",
         spec.NET_RSS_DRIVER),  # v1.3 rss_rq_id reserved bit
        (RssConfig(H.IPV4, (0,), 0, 0, KEY), "ctrl-rss-max-tx-vq-out-of-range",
         spec.NET_RSS_SET),
        (RssConfig(H.IPV4, (0,), 0, 5, KEY), "ctrl-rss-max-tx-vq-out-of-range",
         spec.NET_RSS_SET),
    ],
)
def test_rss_refusals(cfg: RssConfig, rule: str, section: spec.Section) -> None:
    s = state()
    s.execute(CtrlClass.MQ, MqCmd.RSS_CONFIG, RSS.emit())  # a previous config survives
    refused(s, CtrlClass.MQ, MqCmd.RSS_CONFIG, cfg.emit(), rule, section)
    assert s.rss == RSS


@pytest.mark.parametrize(
    ("cfg", "rule", "section"),
    [
        # Linux before "virtio_net: fix the missing of the max_tx_vq" put max_tx_vq here
        (HashConfig(H.IPV4, KEY, (0, 0, 0, 1)), "ctrl-hash-reserved-nonzero", spec.NET_MQ_HASH),
        (HashConfig(H.UDP_EX, KEY), "ctrl-hash-types-unsupported", spec.NET_HASH_TYPES),
        (HashConfig(H.IPV4, bytes(41)), "ctrl-hash-key-too-long", spec.NET_CONFIG),
        (HashConfig(H.IPV4, b""), "ctrl-hash-key-missing", spec.NET_MQ_HASH),
    ],
)
def test_hash_config_refusals(cfg: HashConfig, rule: str, section: spec.Section) -> None:
    refused(state(), CtrlClass.MQ, MqCmd.HASH_CONFIG, cfg.emit(), rule, section)


def test_hash_config_zero_types_no_key_is_fine() -> None:
    ok(state().execute(CtrlClass.MQ, MqCmd.HASH_CONFIG, HashConfig(H(0), b"").emit()), "hash")


@pytest.mark.parametrize(
    ("offloads", "rule", "section"),
    [
        (FeatureSet.of(F.CSUM), "ctrl-offloads-unknown", spec.NET_CTRL_OFFLOADS_SET),
        (FeatureSet.of(F.GUEST_CSUM, F.RSC_EXT), "ctrl-offloads-unknown",
         spec.NET_CTRL_OFFLOADS_SET),
        (FeatureSet(1 << 63), "ctrl-offloads-unknown", spec.NET_CTRL_OFFLOADS_SET),
        (FeatureSet.of(F.GUEST_CSUM, F.GUEST_UFO), "ctrl-offloads-not-negotiated",
         spec.NET_CTRL_OFFLOADS_DRIVER),
        (FeatureSet.of(F.GUEST_USO4), "ctrl-offloads-not-negotiated",
         spec.NET_CTRL_OFFLOADS_DRIVER),
    ],
)
def test_offloads_refusals(offloads: FeatureSet, rule: str, section: spec.Section) -> None:
    refused(state(), CtrlClass.GUEST_OFFLOADS, OffloadsCmd.SET, encode_offloads(offloads),
            rule, section)


@pytest.mark.parametrize("vq", [8, 9, 0xFFFF])
def test_coal_vq_beyond_the_data_queues(vq: int) -> None:
    # 4 pairs: data queues 0..7, 8 is the control queue
    s = state()
    refused(s, CtrlClass.NOTF_COAL, NotfCoalCmd.VQ_SET, VqNotfCoal(vq, NotfCoal(1, 1)).emit(),
            "ctrl-coal-vq-not-enabled", spec.NET_NOTF_COAL_DEVICE)
    refused(s, CtrlClass.NOTF_COAL, NotfCoalCmd.VQ_GET, encode_coal_vq_get(vq),
            "ctrl-coal-vq-not-enabled", spec.NET_NOTF_COAL_DEVICE)


def test_coal_vq_single_pair_without_mq() -> None:
    s = state(ALL.without(F.MQ, F.RSS))
    ok(s.execute(CtrlClass.NOTF_COAL, NotfCoalCmd.VQ_GET, encode_coal_vq_get(1)))
    refused(s, CtrlClass.NOTF_COAL, NotfCoalCmd.VQ_GET, encode_coal_vq_get(2),
            "ctrl-coal-vq-not-enabled")


def test_coal_vq_enabled_predicate() -> None:
    s = state(vq_enabled=lambda vq: vq < 2)
    ok(s.execute(CtrlClass.NOTF_COAL, NotfCoalCmd.VQ_GET, encode_coal_vq_get(0)))
    refused(s, CtrlClass.NOTF_COAL, NotfCoalCmd.VQ_SET, VqNotfCoal(3, NotfCoal()).emit(),
            "ctrl-coal-vq-not-enabled")


@pytest.mark.parametrize("raw", [b"", b"\x04"])
def test_handle_short_header(raw: bytes) -> None:
    s = state()
    before = s.snapshot()
    r = s.handle(raw)
    assert not r.ok and r.rule == "ctrl-header-short" and r.section == spec.NET_CTRL
    assert s.snapshot() == before


# --- never raises; refusals change nothing ---------------------------------------------------

feature_sets = st.sets(st.sampled_from(sorted(ALL, key=int))).map(FeatureSet)


def _mutations(raw: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.just(raw),
        st.integers(0, max(0, len(raw))).map(lambda n: raw[:n]),
        st.binary(max_size=4).map(lambda extra: raw + extra),
        st.tuples(st.integers(0, max(0, len(raw) - 1)), st.integers(0, 255)).map(
            lambda p: raw[: p[0]] + bytes((p[1],)) + raw[p[0] + 1 :] if raw else raw
        ),
    )


commands = st.one_of(
    st.tuples(st.integers(0, 9), st.integers(0, 6), st.binary(max_size=600)),
    st.sampled_from(sorted(VALID.items())).flatmap(
        lambda item: st.tuples(st.just(item[0][0]), st.just(item[0][1]), _mutations(item[1]))
    ),
    st.builds(lambda c: (int(CtrlClass.MQ), int(MqCmd.RSS_CONFIG), c.emit()),
              st.builds(RssConfig, st.integers(0, 0x1FF).map(H),
                        st.lists(st.integers(0, 5), min_size=1, max_size=9).map(tuple),
                        st.integers(0, 5), st.integers(0, 5), st.binary(max_size=42))),
)


@settings(max_examples=300)
@given(feature_sets, st.lists(commands, min_size=1, max_size=12))
def test_never_raises_and_refusals_change_nothing(
    negotiated: FeatureSet, sequence: list[tuple[int, int, bytes]]
) -> None:
    s = state(negotiated, promisc=False)
    for cls, cmd, data in sequence:
        before = s.snapshot()
        result = s.execute(cls, cmd, data)
        if result.ok:
            assert result.rule is None
            assert result.changed <= CHANGE_GROUPS
            if not result.changed:
                assert s.snapshot() == before
            assert 1 <= s.queue_pairs <= LIMITS.max_pairs
        else:
            assert isinstance(result.rule, str) and result.rule.startswith("ctrl-")
            assert isinstance(result.section, spec.Section)
            assert result.changed == frozenset()
            assert s.snapshot() == before
        assert s.handle(encode_command(cls & 0xFF, cmd & 0xFF, data)).ok in (True, False)
