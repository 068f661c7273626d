"""The control virtqueue's wire formats (virtio-v1.2 §5.1.6.5; NOTF_COAL v1.3 §5.1.6.5.9):
exact bytes of known examples, round trips, agreement with the construct schemas, and
malformed lengths refused with the rule."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from virtio import spec
from virtio.constants import FeatureBit as F
from virtio.constants import HashType
from virtio.ctrl import (
    COAL_SCHEMA,
    COAL_VQ_SCHEMA,
    COMMAND_FEATURE,
    COMMANDS,
    CTRL_HDR_SCHEMA,
    CTRL_HDR_SIZE,
    GUEST_OFFLOAD_BITS,
    HASH_CONFIG_SCHEMA,
    MAC_TABLE_SCHEMA,
    MQ_VQ_PAIRS_MAX,
    MQ_VQ_PAIRS_MIN,
    RSS_CONFIG_SCHEMA,
    Ack,
    AnnounceCmd,
    CtrlClass,
    CtrlFormatError,
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
    command_allowed,
    command_name,
    decode_coal_vq_get,
    decode_header,
    decode_mac,
    decode_offloads,
    decode_rx_mode,
    decode_vlan,
    decode_vq_pairs,
    encode_coal_vq_get,
    encode_command,
    encode_mac,
    encode_offloads,
    encode_rx_mode,
    encode_vlan,
    encode_vq_pairs,
)
from virtio.errors import DeviceProtocolError
from virtio.features import FeatureSet

# --- strategies -------------------------------------------------------------------------

macs = st.binary(min_size=6, max_size=6)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
hash_types = st.integers(0, 0xFFFF_FFFF).map(HashType)
keys = st.binary(max_size=255)

mac_tables = st.builds(
    MacTable, st.lists(macs, max_size=8).map(tuple), st.lists(macs, max_size=8).map(tuple)
)
rss_configs = st.builds(
    RssConfig, hash_types, st.lists(u16, min_size=1, max_size=64).map(tuple), u16, u16, keys
)
hash_configs = st.builds(HashConfig, hash_types, keys, st.tuples(u16, u16, u16, u16))
coals = st.builds(NotfCoal, u32, u32)
vq_coals = st.builds(VqNotfCoal, u16, coals, u16)


STRUCTS: dict[str, tuple[st.SearchStrategy[object], Callable[[bytes], object]]] = {
    "MacTable": (mac_tables, MacTable.parse),
    "RssConfig": (rss_configs, RssConfig.parse),
    "HashConfig": (hash_configs, HashConfig.parse),
    "NotfCoal": (coals, NotfCoal.parse),
    "VqNotfCoal": (vq_coals, VqNotfCoal.parse),
}


def _emit(value: object) -> bytes:
    assert isinstance(value, MacTable | RssConfig | HashConfig | NotfCoal | VqNotfCoal)
    return value.emit()


# --- constants --------------------------------------------------------------------------


def test_numbers_are_the_specs() -> None:
    # §5.1.6.5: VIRTIO_NET_CTRL_RX 0 ... VIRTIO_NET_CTRL_GUEST_OFFLOADS 5; v1.3 NOTF_COAL 6
    assert [int(c) for c in CtrlClass] == [0, 1, 2, 3, 4, 5, 6]
    assert [c.name for c in RxCmd] == ["PROMISC", "ALLMULTI", "ALLUNI", "NOMULTI", "NOUNI",
                                       "NOBCAST"]
    assert [int(c) for c in RxCmd] == [0, 1, 2, 3, 4, 5]
    assert (MacCmd.TABLE_SET, MacCmd.ADDR_SET) == (0, 1)
    assert (VlanCmd.ADD, VlanCmd.DEL, AnnounceCmd.ACK, OffloadsCmd.SET) == (0, 1, 0, 0)
    assert (MqCmd.VQ_PAIRS_SET, MqCmd.RSS_CONFIG, MqCmd.HASH_CONFIG) == (0, 1, 2)
    assert [int(c) for c in NotfCoalCmd] == [0, 1, 2, 3]
    assert (Ack.OK, Ack.ERR) == (0, 1)
    assert (MQ_VQ_PAIRS_MIN, MQ_VQ_PAIRS_MAX, CTRL_HDR_SIZE) == (1, 0x8000, 2)


def test_guest_offload_bits_are_the_v1_3_list() -> None:
    # v1.3 §5.1.6.5.8.1 lists GUEST_CSUM 1, TSO4 7, TSO6 8, ECN 9, UFO 10, USO4 54, USO6 55
    assert sorted(int(f) for f in GUEST_OFFLOAD_BITS) == [1, 7, 8, 9, 10, 54, 55]


def test_every_command_has_a_requirement_and_nothing_else_does() -> None:
    defined = {(int(k), int(c)) for k, enum in COMMANDS.items() for c in enum}
    assert set(COMMAND_FEATURE) == defined


@pytest.mark.parametrize(
    ("cls", "cmd", "features"),
    [
        (CtrlClass.RX, RxCmd.PROMISC, (F.CTRL_RX,)),
        (CtrlClass.RX, RxCmd.ALLMULTI, (F.CTRL_RX,)),
        (CtrlClass.RX, RxCmd.ALLUNI, (F.CTRL_RX_EXTRA,)),
        (CtrlClass.RX, RxCmd.NOMULTI, (F.CTRL_RX_EXTRA,)),
        (CtrlClass.RX, RxCmd.NOUNI, (F.CTRL_RX_EXTRA,)),
        (CtrlClass.RX, RxCmd.NOBCAST, (F.CTRL_RX_EXTRA,)),
        (CtrlClass.MAC, MacCmd.TABLE_SET, (F.CTRL_RX,)),
        (CtrlClass.MAC, MacCmd.ADDR_SET, (F.CTRL_RX, F.CTRL_MAC_ADDR)),
        (CtrlClass.VLAN, VlanCmd.ADD, (F.CTRL_VLAN,)),
        (CtrlClass.VLAN, VlanCmd.DEL, (F.CTRL_VLAN,)),
        (CtrlClass.ANNOUNCE, AnnounceCmd.ACK, (F.GUEST_ANNOUNCE,)),
        (CtrlClass.MQ, MqCmd.VQ_PAIRS_SET, (F.MQ,)),
        (CtrlClass.MQ, MqCmd.RSS_CONFIG, (F.RSS,)),
        (CtrlClass.MQ, MqCmd.HASH_CONFIG, (F.HASH_REPORT,)),
        (CtrlClass.GUEST_OFFLOADS, OffloadsCmd.SET, (F.CTRL_GUEST_OFFLOADS,)),
        (CtrlClass.NOTF_COAL, NotfCoalCmd.TX_SET, (F.NOTF_COAL,)),
        (CtrlClass.NOTF_COAL, NotfCoalCmd.RX_SET, (F.NOTF_COAL,)),
        (CtrlClass.NOTF_COAL, NotfCoalCmd.VQ_SET, (F.VQ_NOTF_COAL,)),
        (CtrlClass.NOTF_COAL, NotfCoalCmd.VQ_GET, (F.VQ_NOTF_COAL,)),
    ],
)
def test_command_feature(cls: int, cmd: int, features: tuple[F, ...]) -> None:
    req = COMMAND_FEATURE[cls, cmd]
    assert req.features == features
    assert isinstance(req.section, spec.Section)
    full = FeatureSet.of(F.CTRL_VQ, *features)
    assert command_allowed(cls, cmd, full)
    assert not command_allowed(cls, cmd, full.without(F.CTRL_VQ))
    for f in features:
        assert not command_allowed(cls, cmd, full.without(f))


def test_sections_of_requirements() -> None:
    assert COMMAND_FEATURE[CtrlClass.RX, RxCmd.NOUNI].section == spec.NET_CTRL_RX_DRIVER
    assert COMMAND_FEATURE[CtrlClass.MAC, MacCmd.ADDR_SET].section == spec.NET_CTRL_MAC_DRIVER
    assert COMMAND_FEATURE[CtrlClass.MQ, MqCmd.RSS_CONFIG].section == spec.NET_RSS_DRIVER
    assert COMMAND_FEATURE[CtrlClass.NOTF_COAL, NotfCoalCmd.VQ_GET].section == (
        spec.NET_NOTF_COAL_DRIVER
    )


def test_unknown_commands_are_not_allowed_and_are_named() -> None:
    everything = FeatureSet((1 << 70) - 1)
    assert not command_allowed(7, 0, everything)
    assert not command_allowed(CtrlClass.RX, 6, everything)
    assert command_name(CtrlClass.MQ, MqCmd.RSS_CONFIG) == "MQ.RSS_CONFIG"
    assert command_name(CtrlClass.RX, 9) == "RX.command 9"
    assert command_name(9, 1) == "class 9.command 1"


def test_format_error_is_the_drivers_fault() -> None:
    assert issubclass(CtrlFormatError, DeviceProtocolError)


# --- exact bytes of known examples ------------------------------------------------------


def test_header_bytes() -> None:
    # struct virtio_net_ctrl: u8 class (MQ = 4), u8 command (VQ_PAIRS_SET = 0), then
    # struct virtio_net_ctrl_mq_pairs_set { le16 virtqueue_pairs = 4 } -> 04 00
    msg = encode_command(CtrlClass.MQ, MqCmd.VQ_PAIRS_SET, encode_vq_pairs(4))
    assert msg == bytes.fromhex("0400" "0400")
    assert decode_header(msg) == (4, 0, b"\x04\x00")
    assert CTRL_HDR_SCHEMA.parse(msg[:2]) == {"class_": 4, "command": 0}


def test_one_field_payload_bytes() -> None:
    # RX modes: one byte 0/1 (§5.1.6.5.1.1); VLAN id le16 (§5.1.6.5.3): 0x123 -> 23 01
    assert encode_rx_mode(True) == b"\x01"
    assert encode_rx_mode(False) == b"\x00"
    assert encode_vlan(0x123) == b"\x23\x01"
    assert decode_vlan(b"\x23\x01") == 0x123
    assert encode_vq_pairs(0x8000) == b"\x00\x80"
    assert decode_vq_pairs(b"\x00\x80") == 0x8000
    mac = bytes.fromhex("525400123456")
    assert encode_mac(mac) == mac
    assert decode_mac(mac) == mac


def test_offloads_bytes() -> None:
    # le64 bitmask of feature bit numbers (§5.1.6.5.8.1): GUEST_CSUM (1), GUEST_TSO4 (7),
    # GUEST_USO6 (55) = 0x0080_0000_0000_0082 -> 82 00 00 00 00 00 80 00
    fs = FeatureSet.of(F.GUEST_CSUM, F.GUEST_TSO4, F.GUEST_USO6)
    assert encode_offloads(fs) == bytes.fromhex("8200000000008000")
    assert decode_offloads(bytes.fromhex("8200000000008000")) == fs


def test_mac_table_bytes() -> None:
    # two struct virtio_net_ctrl_mac {le32 entries; u8 macs[entries][6]}, unicast first:
    # 01000000 020000000001 | 02000000 01005e000001 333300000001
    table = MacTable(
        (bytes.fromhex("020000000001"),),
        (bytes.fromhex("01005e000001"), bytes.fromhex("333300000001")),
    )
    raw = bytes.fromhex("01000000" "020000000001" "02000000" "01005e000001" "333300000001")
    assert table.emit() == raw
    assert MacTable.parse(raw) == table
    assert MacTable().emit() == bytes(8)  # both tables empty: two zero counts


def test_rss_config_bytes() -> None:
    # struct virtio_net_rss_config: le32 hash_types = IPv4|TCPv4 = 3 -> 03000000;
    # le16 indirection_table_mask = 3 -> 0300; le16 unclassified_queue = 1 -> 0100;
    # le16 indirection_table[4] = 0,1,0,1 -> 0000 0100 0000 0100; le16 max_tx_vq = 2 ->
    # 0200; u8 hash_key_length = 2 -> 02; hash_key_data 6d 5a
    cfg = RssConfig(HashType.IPV4 | HashType.TCPV4, (0, 1, 0, 1), 1, 2, b"\x6d\x5a")
    raw = bytes.fromhex("03000000" "0300" "0100" "0000010000000100" "0200" "02" "6d5a")
    assert cfg.emit() == raw
    assert RssConfig.parse(raw) == cfg
    assert cfg.indirection_table_mask == 3


def test_hash_config_bytes() -> None:
    # struct virtio_net_hash_config: le32 hash_types = 0x1ff -> ff010000; le16 reserved[4]
    # -> 8 zero bytes; u8 hash_key_length = 3 -> 03; hash_key_data 01 02 03
    cfg = HashConfig(HashType(0x1FF), b"\x01\x02\x03")
    raw = bytes.fromhex("ff010000" "0000000000000000" "03" "010203")
    assert cfg.emit() == raw
    assert HashConfig.parse(raw) == cfg
    odd = HashConfig.parse(bytes.fromhex("00000000" "0000000002000000" "00"))
    assert odd.reserved == (0, 0, 2, 0)  # kept so the device can refuse it


def test_coal_bytes() -> None:
    # struct virtio_net_ctrl_coal {le32 max_packets; le32 max_usecs} with the v1.3 RX
    # example's max_packets = 15, max_usecs = 10 -> 0f000000 0a000000
    assert NotfCoal(15, 10).emit() == bytes.fromhex("0f000000" "0a000000")
    assert NotfCoal.parse(bytes.fromhex("0f000000" "0a000000")) == NotfCoal(15, 10)
    # struct virtio_net_ctrl_coal_vq {le16 vq_index = 3; le16 reserved; coal}
    vq = VqNotfCoal(3, NotfCoal(15, 10))
    assert vq.emit() == bytes.fromhex("0300" "0000" "0f000000" "0a000000")
    assert VqNotfCoal.parse(vq.emit()) == vq


def test_coal_vq_get_forms() -> None:
    # spec: le16 vq_index + le16 reserved; Linux's virtnet_get_coal_init_value maps only
    # the le16 vqn: both are accepted, reserved ignored.
    assert encode_coal_vq_get(5) == bytes.fromhex("0500" "0000")
    assert decode_coal_vq_get(bytes.fromhex("0500" "0000")) == 5
    assert decode_coal_vq_get(bytes.fromhex("0500" "ffff")) == 5
    assert decode_coal_vq_get(bytes.fromhex("0500")) == 5


# --- round trips and construct agreement -------------------------------------------------


@pytest.mark.parametrize("name", sorted(STRUCTS))
@given(data=st.data())
def test_struct_round_trips(name: str, data: st.DataObject) -> None:
    strategy, parse = STRUCTS[name]
    value = data.draw(strategy)
    raw = _emit(value)
    assert parse(raw) == value
    assert _emit(parse(raw)) == raw


@given(mac_tables)
def test_mac_table_agrees_with_construct(table: MacTable) -> None:
    parsed = MAC_TABLE_SCHEMA.parse(table.emit())
    assert tuple(parsed.unicast) == table.unicast
    assert tuple(parsed.multicast) == table.multicast
    assert MAC_TABLE_SCHEMA.build({"unicast": table.unicast, "multicast": table.multicast}) == (
        table.emit()
    )


@given(rss_configs)
def test_rss_config_agrees_with_construct(cfg: RssConfig) -> None:
    p = RSS_CONFIG_SCHEMA.parse(cfg.emit())
    assert p.hash_types == cfg.hash_types
    assert p.indirection_table_mask == cfg.indirection_table_mask
    assert p.unclassified_queue == cfg.unclassified_queue
    assert tuple(p.indirection_table) == cfg.indirection_table
    assert p.max_tx_vq == cfg.max_tx_vq
    assert p.hash_key_length == len(cfg.key)
    assert p.hash_key_data == cfg.key


@given(hash_configs)
def test_hash_config_agrees_with_construct(cfg: HashConfig) -> None:
    p = HASH_CONFIG_SCHEMA.parse(cfg.emit())
    assert (p.hash_types, tuple(p.reserved), p.hash_key_data) == (
        cfg.hash_types, cfg.reserved, cfg.key
    )


@given(vq_coals)
def test_coal_agrees_with_construct(vq: VqNotfCoal) -> None:
    p = COAL_VQ_SCHEMA.parse(vq.emit())
    assert (p.vq_index, p.reserved, p.coal.max_packets, p.coal.max_usecs) == (
        vq.vq_index, vq.reserved, vq.coal.max_packets, vq.coal.max_usecs
    )
    assert COAL_SCHEMA.build({"max_packets": vq.coal.max_packets,
                              "max_usecs": vq.coal.max_usecs}) == vq.coal.emit()


@given(st.integers(0, (1 << 64) - 1))
def test_offloads_round_trip(bits: int) -> None:
    assert decode_offloads(encode_offloads(FeatureSet(bits))) == FeatureSet(bits)


@given(st.booleans(), u16, macs)
def test_small_payloads_round_trip(on: bool, n: int, mac: bytes) -> None:
    assert decode_rx_mode(encode_rx_mode(on)) is on
    assert decode_vlan(encode_vlan(n)) == n
    assert decode_vq_pairs(encode_vq_pairs(n)) == n
    assert decode_coal_vq_get(encode_coal_vq_get(n)) == n
    assert decode_mac(encode_mac(mac)) == mac


@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=32))
def test_header_round_trip(cls: int, cmd: int, data: bytes) -> None:
    assert decode_header(encode_command(cls, cmd, data)) == (cls, cmd, data)


# --- malformed data ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(STRUCTS))
@given(data=st.data())
def test_every_truncation_is_short(name: str, data: st.DataObject) -> None:
    strategy, parse = STRUCTS[name]
    raw = _emit(data.draw(strategy))
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(CtrlFormatError) as info:
        parse(raw[:cut])
    assert info.value.rule == "ctrl-data-short"


@pytest.mark.parametrize("name", sorted(STRUCTS))
@given(data=st.data())
def test_trailing_bytes_are_long(name: str, data: st.DataObject) -> None:
    strategy, parse = STRUCTS[name]
    raw = _emit(data.draw(strategy)) + data.draw(st.binary(min_size=1, max_size=8))
    with pytest.raises(CtrlFormatError) as info:
        parse(raw)
    assert info.value.rule == "ctrl-data-long"


@pytest.mark.parametrize(
    ("decode", "size"),
    [(decode_rx_mode, 1), (decode_mac, 6), (decode_vlan, 2), (decode_vq_pairs, 2),
     (decode_offloads, 8)],
)
def test_fixed_payload_lengths(decode: Callable[[bytes], object], size: int) -> None:
    for n in range(size):
        with pytest.raises(CtrlFormatError) as info:
            decode(bytes(n))
        assert info.value.rule == "ctrl-data-short"
    with pytest.raises(CtrlFormatError) as info:
        decode(bytes(size + 1))
    assert info.value.rule == "ctrl-data-long"


@pytest.mark.parametrize(("raw", "rule"), [(b"", "ctrl-data-short"), (b"\x01", "ctrl-data-short"),
                                          (b"\x01\x00\x00", "ctrl-data-short"),
                                          (b"\x01\x00\x00\x00\x00", "ctrl-data-long")])
def test_coal_vq_get_lengths(raw: bytes, rule: str) -> None:
    with pytest.raises(CtrlFormatError) as info:
        decode_coal_vq_get(raw)
    assert info.value.rule == rule


@pytest.mark.parametrize("value", [2, 0x80, 0xFF])
def test_rx_mode_byte_must_be_zero_or_one(value: int) -> None:
    with pytest.raises(CtrlFormatError) as info:
        decode_rx_mode(bytes((value,)))
    assert info.value.rule == "ctrl-rx-mode-not-boolean"
    assert info.value.section == spec.NET_CTRL_RX_DEVICE


@pytest.mark.parametrize("raw", [b"", b"\x04"])
def test_short_header(raw: bytes) -> None:
    with pytest.raises(CtrlFormatError) as info:
        decode_header(raw)
    assert info.value.rule == "ctrl-header-short"
    assert info.value.section == spec.NET_CTRL


def test_mac_table_count_beyond_the_data() -> None:
    # entries = 0xffffffff: refused without building anything
    with pytest.raises(CtrlFormatError) as info:
        MacTable.parse(bytes.fromhex("ffffffff") + bytes(12))
    assert info.value.rule == "ctrl-data-short"
    assert info.value.section == spec.NET_CTRL_MAC_DRIVER


def test_rss_table_beyond_the_data() -> None:
    # mask 0xffff: 65536 entries announced, 4 bytes present
    with pytest.raises(CtrlFormatError) as info:
        RssConfig.parse(bytes.fromhex("00000000" "ffff" "0000" "00000000"))
    assert info.value.rule == "ctrl-data-short"


# --- emitting what cannot be encoded is the caller's error -------------------------------


def test_emit_misuse_is_value_error() -> None:
    with pytest.raises(ValueError, match="6 bytes"):
        encode_mac(b"\x00" * 7)
    with pytest.raises(ValueError, match="6 bytes"):
        MacTable((b"\x00",)).emit()
    with pytest.raises(ValueError, match="indirection table"):
        RssConfig(HashType(0), (), 0, 1, b"").emit()
    with pytest.raises(ValueError, match="hash_key_length"):
        RssConfig(HashType(0), (0,), 0, 1, bytes(256)).emit()
    with pytest.raises(ValueError, match="64 bits"):
        encode_offloads(FeatureSet.of(F.GUEST_UDP_TUNNEL_GSO))
    with pytest.raises(ValueError, match="VLAN id"):
        encode_vlan(0x10000)
    with pytest.raises(ValueError, match="class"):
        encode_command(256, 0)
    with pytest.raises(ValueError, match="max_packets"):
        NotfCoal(-1, 0).emit()


def test_bad_tables_still_encode_for_driver_quirks() -> None:
    # a 3-entry table (not a power of two) and a VLAN id >= 4096 encode: the device refuses
    raw = RssConfig(HashType(0), (0, 0, 0), 0, 1, b"").emit()
    assert RssConfig.parse(raw).indirection_table == (0, 0, 0)
    assert encode_vlan(4096) == b"\x00\x10"
