"""The control virtqueue's command set (§5.1.6.5 and its subsections; notifications
coalescing is virtio-v1.3 §5.1.6.5.9): classes, commands, acks, which negotiated features
each command needs, and the wire format of every command's data.

Both sides import this module: the driver to build commands, the device to parse them.
Each struct is defined twice, as in :mod:`virtio.layouts`: a construct schema (the
declarative definition, used by tests and tools, never on untrusted bytes in the hot path)
and a hand-written ``struct`` codec (``emit``/``parse``) that the tests prove equal.

A command on the queue is ``u8 class, u8 command, command-specific-data, u8 ack``
(struct virtio_net_ctrl, §5.1.6.5): the driver writes the first three (readable part of
the chain), the device the ack (and, for NOTF_COAL VQ_GET, a virtio_net_ctrl_coal before
it). All multi-byte fields are little-endian (legacy native-endian is not modelled).

Parsing bytes the driver wrote is the device's job; malformed data is the driver's fault,
so :class:`CtrlFormatError` is a :class:`~virtio.errors.DeviceProtocolError`. Our own
caller asking to emit something that cannot be encoded (a 7-byte MAC, an empty
indirection table) is a plain ``ValueError``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Self

import construct as cs

from virtio import spec
from virtio.constants import FeatureBit, HashType
from virtio.errors import DeviceProtocolError
from virtio.features import FeatureSet

F = FeatureBit

# --- classes, commands, acks (§5.1.6.5 and subsections) --------------------------------


class CtrlClass(IntEnum):
    """``class`` of struct virtio_net_ctrl."""

    RX = 0  # §5.1.6.5.1
    MAC = 1  # §5.1.6.5.2
    VLAN = 2  # §5.1.6.5.3
    ANNOUNCE = 3  # §5.1.6.5.4
    MQ = 4  # §5.1.6.5.5
    GUEST_OFFLOADS = 5  # §5.1.6.5.8
    NOTF_COAL = 6  # v1.3 §5.1.6.5.9


class RxCmd(IntEnum):
    """VIRTIO_NET_CTRL_RX commands, §5.1.6.5.1."""

    PROMISC = 0
    ALLMULTI = 1
    ALLUNI = 2
    NOMULTI = 3
    NOUNI = 4
    NOBCAST = 5


class MacCmd(IntEnum):
    """VIRTIO_NET_CTRL_MAC commands, §5.1.6.5.2."""

    TABLE_SET = 0
    ADDR_SET = 1


class VlanCmd(IntEnum):
    """VIRTIO_NET_CTRL_VLAN commands, §5.1.6.5.3."""

    ADD = 0
    DEL = 1


class AnnounceCmd(IntEnum):
    """VIRTIO_NET_CTRL_ANNOUNCE commands, §5.1.6.5.4."""

    ACK = 0


class MqCmd(IntEnum):
    """VIRTIO_NET_CTRL_MQ commands, §5.1.6.5.5."""

    VQ_PAIRS_SET = 0
    RSS_CONFIG = 1
    HASH_CONFIG = 2


class OffloadsCmd(IntEnum):
    """VIRTIO_NET_CTRL_GUEST_OFFLOADS commands, §5.1.6.5.8.1."""

    SET = 0


class NotfCoalCmd(IntEnum):
    """VIRTIO_NET_CTRL_NOTF_COAL commands, v1.3 §5.1.6.5.9."""

    TX_SET = 0
    RX_SET = 1
    VQ_SET = 2
    VQ_GET = 3


COMMANDS: Mapping[CtrlClass, type[IntEnum]] = {
    CtrlClass.RX: RxCmd,
    CtrlClass.MAC: MacCmd,
    CtrlClass.VLAN: VlanCmd,
    CtrlClass.ANNOUNCE: AnnounceCmd,
    CtrlClass.MQ: MqCmd,
    CtrlClass.GUEST_OFFLOADS: OffloadsCmd,
    CtrlClass.NOTF_COAL: NotfCoalCmd,
}
"""The command enum of each class."""


class Ack(IntEnum):
    """The ``ack`` byte the device writes, §5.1.6.5 (VIRTIO_NET_OK / VIRTIO_NET_ERR)."""

    OK = 0
    ERR = 1


CTRL_HDR_SIZE = 2
"""``u8 class, u8 command``."""
ACK_SIZE = 1
MQ_VQ_PAIRS_MIN = 1
MQ_VQ_PAIRS_MAX = 0x8000
"""VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN/MAX, §5.1.6.5.6."""
VLAN_ID_LIMIT = 4096
"""VLAN ids are 12 bits (IEEE 802.1Q); QEMU's MAX_VLAN."""
MAC_LEN = 6

GUEST_OFFLOAD_BITS = FeatureSet.of(
    F.GUEST_CSUM, F.GUEST_TSO4, F.GUEST_TSO6, F.GUEST_ECN, F.GUEST_UFO, F.GUEST_USO4, F.GUEST_USO6
)
"""The offloads VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET may toggle (§5.1.6.5.8.1: v1.2 lists
GUEST_CSUM, TSO4, TSO6, ECN, UFO; v1.3 adds GUEST_USO4/USO6). The v1.4 UDP-tunnel offloads
(feature bits 65/66, mapped to bits 46/47 of the le64 bitmask) are not modelled."""


# --- which negotiated features each command needs --------------------------------------


@dataclass(frozen=True, slots=True)
class Requirement:
    """The features a command needs (all of them) and the section that says so."""

    features: tuple[FeatureBit, ...]
    section: spec.Section

    def missing(self, negotiated: FeatureSet) -> tuple[FeatureBit, ...]:
        return tuple(f for f in self.features if f not in negotiated)


def _requirements() -> dict[tuple[int, int], Requirement]:
    out: dict[tuple[int, int], Requirement] = {}
    # §5.1.6.5.1.2: PROMISC/ALLMULTI need CTRL_RX; the other four need CTRL_RX_EXTRA.
    for rx in (RxCmd.PROMISC, RxCmd.ALLMULTI):
        out[CtrlClass.RX, rx] = Requirement((F.CTRL_RX,), spec.NET_CTRL_RX_DRIVER)
    for rx in (RxCmd.ALLUNI, RxCmd.NOMULTI, RxCmd.NOUNI, RxCmd.NOBCAST):
        out[CtrlClass.RX, rx] = Requirement((F.CTRL_RX_EXTRA,), spec.NET_CTRL_RX_DRIVER)
    # §5.1.6.5.2.2: no MAC class command without CTRL_RX; ADDR_SET is what CTRL_MAC_ADDR
    # ("Set MAC address through control channel", §5.1.3) offers, so it needs both.
    out[CtrlClass.MAC, MacCmd.TABLE_SET] = Requirement((F.CTRL_RX,), spec.NET_CTRL_MAC_DRIVER)
    out[CtrlClass.MAC, MacCmd.ADDR_SET] = Requirement(
        (F.CTRL_RX, F.CTRL_MAC_ADDR), spec.NET_CTRL_MAC_DRIVER
    )
    for vlan in VlanCmd:
        out[CtrlClass.VLAN, vlan] = Requirement((F.CTRL_VLAN,), spec.NET_CTRL_VLAN)
    out[CtrlClass.ANNOUNCE, AnnounceCmd.ACK] = Requirement(
        (F.GUEST_ANNOUNCE,), spec.NET_CTRL_ANNOUNCE_DRIVER
    )
    out[CtrlClass.MQ, MqCmd.VQ_PAIRS_SET] = Requirement((F.MQ,), spec.NET_MQ_STEERING_DRIVER)
    out[CtrlClass.MQ, MqCmd.RSS_CONFIG] = Requirement((F.RSS,), spec.NET_RSS_DRIVER)
    out[CtrlClass.MQ, MqCmd.HASH_CONFIG] = Requirement((F.HASH_REPORT,), spec.NET_MQ_HASH)
    out[CtrlClass.GUEST_OFFLOADS, OffloadsCmd.SET] = Requirement(
        (F.CTRL_GUEST_OFFLOADS,), spec.NET_CTRL_OFFLOADS
    )
    for coal in (NotfCoalCmd.TX_SET, NotfCoalCmd.RX_SET):
        out[CtrlClass.NOTF_COAL, coal] = Requirement((F.NOTF_COAL,), spec.NET_NOTF_COAL_DRIVER)
    for coal in (NotfCoalCmd.VQ_SET, NotfCoalCmd.VQ_GET):
        out[CtrlClass.NOTF_COAL, coal] = Requirement((F.VQ_NOTF_COAL,), spec.NET_NOTF_COAL_DRIVER)
    return out


COMMAND_FEATURE: Mapping[tuple[int, int], Requirement] = _requirements()
"""``(class, command) → Requirement``: the negotiated features a driver needs before it
may issue the command (every command also needs CTRL_VQ, §5.1.6.5)."""


def command_allowed(cls: int, cmd: int, negotiated: FeatureSet) -> bool:
    """Whether a driver that negotiated ``negotiated`` may issue ``(cls, cmd)``."""
    req = COMMAND_FEATURE.get((cls, cmd))
    return req is not None and F.CTRL_VQ in negotiated and not req.missing(negotiated)


def command_name(cls: int, cmd: int) -> str:
    """``"MQ.RSS_CONFIG"``, or numbers for what is not defined."""
    try:
        klass = CtrlClass(cls)
    except ValueError:
        return f"class {cls}.command {cmd}"
    try:
        return f"{klass.name}.{COMMANDS[klass](cmd).name}"
    except ValueError:
        return f"{klass.name}.command {cmd}"


# --- errors -----------------------------------------------------------------------------


class CtrlFormatError(DeviceProtocolError):
    """Command-specific data that does not have the layout its command defines (the
    driver's fault when the device parses it). ``rule`` is one of ``ctrl-header-short``,
    ``ctrl-data-short``, ``ctrl-data-long``, ``ctrl-rx-mode-not-boolean``."""

    section = spec.NET_CTRL


def _exact(data: bytes, size: int, what: str, section: spec.Section) -> None:
    if len(data) < size:
        raise CtrlFormatError(
            f"{what}: {len(data)} bytes of data, expected {size}", rule="ctrl-data-short",
            section=section,
        )
    if len(data) > size:
        raise CtrlFormatError(
            f"{what}: {len(data)} bytes of data, expected {size}", rule="ctrl-data-long",
            section=section,
        )


def _need(data: bytes, end: int, what: str, section: spec.Section) -> None:
    if len(data) < end:
        raise CtrlFormatError(
            f"{what}: data ends at byte {len(data)}, {end} needed", rule="ctrl-data-short",
            section=section,
        )


def _done(data: bytes, end: int, what: str, section: spec.Section) -> None:
    if len(data) > end:
        raise CtrlFormatError(
            f"{what}: {len(data) - end} bytes after the end of the structure",
            rule="ctrl-data-long", section=section,
        )


def _check_u(value: int, bits: int, what: str) -> None:
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{what} {value} does not fit in {bits} bits")


_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_HDR = struct.Struct("<BB")

# --- header -----------------------------------------------------------------------------


def encode_command(cls: int, cmd: int, data: bytes = b"") -> bytes:
    """The driver-written part of a command: ``u8 class, u8 command`` + data (§5.1.6.5)."""
    _check_u(int(cls), 8, "class")
    _check_u(int(cmd), 8, "command")
    return _HDR.pack(int(cls), int(cmd)) + bytes(data)


def decode_header(data: bytes) -> tuple[int, int, bytes]:
    """Split the driver-written bytes into ``(class, command, command-specific data)``."""
    if len(data) < CTRL_HDR_SIZE:
        raise CtrlFormatError(
            f"{len(data)} bytes cannot hold the 2-byte class/command header",
            rule="ctrl-header-short", section=spec.NET_CTRL,
        )
    cls, cmd = _HDR.unpack_from(data, 0)
    return cls, cmd, bytes(data[CTRL_HDR_SIZE:])


# --- one-field payloads -----------------------------------------------------------------


def encode_rx_mode(on: bool) -> bytes:
    """VIRTIO_NET_CTRL_RX_* data: one byte, 0 (off) or 1 (on), §5.1.6.5.1.1."""
    return _U8.pack(1 if on else 0)


def decode_rx_mode(data: bytes) -> bool:
    """Strict: the spec defines only 0 and 1 (QEMU takes any non-zero byte as on)."""
    _exact(data, 1, "RX mode", spec.NET_CTRL_RX_DEVICE)
    value = data[0]
    if value > 1:
        raise CtrlFormatError(
            f"RX mode byte is {value}, the spec defines 0 (off) and 1 (on)",
            rule="ctrl-rx-mode-not-boolean", section=spec.NET_CTRL_RX_DEVICE,
        )
    return value == 1


def encode_mac(mac: bytes) -> bytes:
    """VIRTIO_NET_CTRL_MAC_ADDR_SET data: the 6-byte MAC, §5.1.6.5.2."""
    if len(mac) != MAC_LEN:
        raise ValueError(f"a MAC address is 6 bytes, not {len(mac)}")
    return bytes(mac)


def decode_mac(data: bytes) -> bytes:
    _exact(data, MAC_LEN, "MAC_ADDR_SET", spec.NET_CTRL_MAC)
    return bytes(data)


def encode_vlan(vid: int) -> bytes:
    """VIRTIO_NET_CTRL_VLAN_ADD/DEL data: le16 VLAN id, §5.1.6.5.3. Any le16 encodes (a
    driver quirk may send an id ≥ 4096); the device checks the range."""
    _check_u(vid, 16, "VLAN id")
    return _U16.pack(vid)


def decode_vlan(data: bytes) -> int:
    _exact(data, 2, "VLAN id", spec.NET_CTRL_VLAN)
    return int(_U16.unpack(data)[0])


def encode_vq_pairs(n: int) -> bytes:
    """struct virtio_net_ctrl_mq_pairs_set: le16 virtqueue_pairs, §5.1.6.5.6."""
    _check_u(n, 16, "virtqueue_pairs")
    return _U16.pack(n)


def decode_vq_pairs(data: bytes) -> int:
    _exact(data, 2, "virtio_net_ctrl_mq_pairs_set", spec.NET_MQ_STEERING)
    return int(_U16.unpack(data)[0])


def encode_offloads(features: FeatureSet) -> bytes:
    """VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET data: le64 bitmask of feature bit numbers,
    §5.1.6.5.8.1."""
    if features.bits >> 64:
        raise ValueError(f"offloads bitmask is 64 bits; {features!r} has higher bits")
    return _U64.pack(features.bits)


def decode_offloads(data: bytes) -> FeatureSet:
    _exact(data, 8, "le64 offloads", spec.NET_CTRL_OFFLOADS_SET)
    return FeatureSet(int(_U64.unpack(data)[0]))


def encode_coal_vq_get(vq_index: int) -> bytes:
    """VIRTIO_NET_CTRL_NOTF_COAL_VQ_GET driver data: ``le16 vq_index, le16 reserved`` (the
    write-only head of struct virtio_net_ctrl_coal_vq, v1.3 §5.1.6.5.9)."""
    _check_u(vq_index, 16, "vq_index")
    return struct.pack("<HH", vq_index, 0)


def decode_coal_vq_get(data: bytes) -> int:
    """The vq_index of a VQ_GET. Accepts the 4 bytes the spec defines and the 2-byte form
    Linux sends (``virtnet_get_coal_init_value`` maps only ``vqn``); ``reserved`` is
    ignored as the device must (v1.3 §5.1.6.5.9.6)."""
    if len(data) == 2:
        return int(_U16.unpack(data)[0])
    _exact(data, 4, "VQ_GET vq_index/reserved", spec.NET_NOTF_COAL)
    return int(_U16.unpack_from(data, 0)[0])


# --- structs ----------------------------------------------------------------------------


def _mac_list(macs: tuple[bytes, ...]) -> bytes:
    for m in macs:
        if len(m) != MAC_LEN:
            raise ValueError(f"a MAC address is 6 bytes, not {len(m)}")
    return _U32.pack(len(macs)) + b"".join(bytes(m) for m in macs)


@dataclass(frozen=True, slots=True)
class MacTable:
    """VIRTIO_NET_CTRL_MAC_TABLE_SET data: two struct virtio_net_ctrl_mac (``le32 entries;
    u8 macs[entries][6]``), the unicast table first, then the multicast one
    (§5.1.6.5.2, §5.1.6.5.2.2)."""

    unicast: tuple[bytes, ...] = ()
    multicast: tuple[bytes, ...] = ()

    def emit(self) -> bytes:
        return _mac_list(self.unicast) + _mac_list(self.multicast)

    @classmethod
    def parse(cls, data: bytes) -> Self:
        data = bytes(data)
        sec = spec.NET_CTRL_MAC_DRIVER
        tables: list[tuple[bytes, ...]] = []
        pos = 0
        for which in ("unicast", "multicast"):
            _need(data, pos + 4, f"MAC_TABLE_SET {which} entries", sec)
            (entries,) = _U32.unpack_from(data, pos)
            pos += 4
            _need(data, pos + MAC_LEN * entries, f"MAC_TABLE_SET {which} table of {entries}", sec)
            tables.append(
                tuple(data[pos + MAC_LEN * i : pos + MAC_LEN * (i + 1)] for i in range(entries))
            )
            pos += MAC_LEN * entries
        _done(data, pos, "MAC_TABLE_SET", sec)
        return cls(tables[0], tables[1])


_RSS_HEAD = struct.Struct("<IHH")  # hash_types, indirection_table_mask, unclassified_queue
_RSS_TAIL = struct.Struct("<HB")  # max_tx_vq, hash_key_length


@dataclass(frozen=True, slots=True)
class RssConfig:
    """struct virtio_net_rss_config (§5.1.6.5.7.1): ``le32 hash_types; le16
    indirection_table_mask; le16 unclassified_queue; le16 indirection_table[mask + 1];
    le16 max_tx_vq; u8 hash_key_length; u8 hash_key_data[hash_key_length]``.

    Queue numbers are 0-based receive queue numbers (0 = receiveq1). virtio-v1.3 words them
    as ``rss_rq_id`` (bits 1..16 of the virtqueue index, bit 15 reserved): the same numbers,
    since receiveq(k+1) is virtqueue 2k. The table length is ``mask + 1``; ``emit`` does not
    insist on a power of two so that a driver quirk can send a bad table (the device
    checks, §5.1.6.5.7.2)."""

    hash_types: HashType
    indirection_table: tuple[int, ...]
    unclassified_queue: int
    max_tx_vq: int
    key: bytes

    @property
    def indirection_table_mask(self) -> int:
        return len(self.indirection_table) - 1

    def emit(self) -> bytes:
        n = len(self.indirection_table)
        if not 1 <= n <= 0x10000:
            raise ValueError(f"indirection table of {n} entries cannot be encoded (1..65536)")
        _check_u(int(self.hash_types), 32, "hash_types")
        _check_u(self.unclassified_queue, 16, "unclassified_queue")
        _check_u(self.max_tx_vq, 16, "max_tx_vq")
        for q in self.indirection_table:
            _check_u(q, 16, "indirection_table entry")
        _check_u(len(self.key), 8, "hash_key_length")
        return (
            _RSS_HEAD.pack(int(self.hash_types), n - 1, self.unclassified_queue)
            + struct.pack(f"<{n}H", *self.indirection_table)
            + _RSS_TAIL.pack(self.max_tx_vq, len(self.key))
            + bytes(self.key)
        )

    @classmethod
    def parse(cls, data: bytes) -> Self:
        data = bytes(data)
        sec = spec.NET_RSS_SET
        _need(data, _RSS_HEAD.size, "virtio_net_rss_config head", sec)
        hash_types, mask, unclassified = _RSS_HEAD.unpack_from(data, 0)
        n = mask + 1
        pos = _RSS_HEAD.size
        _need(data, pos + 2 * n, f"indirection_table of {n} entries", sec)
        table = struct.unpack_from(f"<{n}H", data, pos)
        pos += 2 * n
        _need(data, pos + _RSS_TAIL.size, "max_tx_vq/hash_key_length", sec)
        max_tx_vq, key_len = _RSS_TAIL.unpack_from(data, pos)
        pos += _RSS_TAIL.size
        _need(data, pos + key_len, f"hash_key_data of {key_len} bytes", sec)
        key = data[pos : pos + key_len]
        _done(data, pos + key_len, "virtio_net_rss_config", sec)
        return cls(HashType(hash_types), tuple(table), unclassified, max_tx_vq, key)


_HASH_HEAD = struct.Struct("<I4HB")  # hash_types, reserved[4], hash_key_length


@dataclass(frozen=True, slots=True)
class HashConfig:
    """struct virtio_net_hash_config (§5.1.6.5.6.4): ``le32 hash_types; le16 reserved[4];
    u8 hash_key_length; u8 hash_key_data[hash_key_length]``. ``reserved`` is kept so that
    every byte round-trips (the spec says it MUST be zero; the device checks)."""

    hash_types: HashType
    key: bytes
    reserved: tuple[int, int, int, int] = (0, 0, 0, 0)

    def emit(self) -> bytes:
        _check_u(int(self.hash_types), 32, "hash_types")
        for r in self.reserved:
            _check_u(r, 16, "reserved")
        _check_u(len(self.key), 8, "hash_key_length")
        return _HASH_HEAD.pack(int(self.hash_types), *self.reserved, len(self.key)) + bytes(
            self.key
        )

    @classmethod
    def parse(cls, data: bytes) -> Self:
        data = bytes(data)
        sec = spec.NET_MQ_HASH
        _need(data, _HASH_HEAD.size, "virtio_net_hash_config head", sec)
        hash_types, r0, r1, r2, r3, key_len = _HASH_HEAD.unpack_from(data, 0)
        end = _HASH_HEAD.size + key_len
        _need(data, end, f"hash_key_data of {key_len} bytes", sec)
        _done(data, end, "virtio_net_hash_config", sec)
        return cls(HashType(hash_types), data[_HASH_HEAD.size : end], (r0, r1, r2, r3))


_COAL = struct.Struct("<II")


@dataclass(frozen=True, slots=True)
class NotfCoal:
    """struct virtio_net_ctrl_coal (v1.3 §5.1.6.5.9): ``le32 max_packets; le32 max_usecs``
    — the data of NOTF_COAL_TX_SET and RX_SET (Linux's virtio_net_ctrl_coal_tx/_rx have the
    same two fields in the same order) and the reply of VQ_GET. 0 in either field means a
    notification after every packet."""

    max_packets: int = 0
    max_usecs: int = 0

    SIZE = _COAL.size

    def emit(self) -> bytes:
        _check_u(self.max_packets, 32, "max_packets")
        _check_u(self.max_usecs, 32, "max_usecs")
        return _COAL.pack(self.max_packets, self.max_usecs)

    @classmethod
    def parse(cls, data: bytes) -> Self:
        _exact(data, _COAL.size, "virtio_net_ctrl_coal", spec.NET_NOTF_COAL)
        packets, usecs = _COAL.unpack(data)
        return cls(packets, usecs)


_COAL_VQ = struct.Struct("<HHII")


@dataclass(frozen=True, slots=True)
class VqNotfCoal:
    """struct virtio_net_ctrl_coal_vq (v1.3 §5.1.6.5.9): ``le16 vq_index; le16 reserved;
    struct virtio_net_ctrl_coal coal`` — the data of NOTF_COAL_VQ_SET. ``reserved`` is
    kept for round-trips; the device ignores it (§5.1.6.5.9.6)."""

    vq_index: int
    coal: NotfCoal
    reserved: int = 0

    def emit(self) -> bytes:
        _check_u(self.vq_index, 16, "vq_index")
        _check_u(self.reserved, 16, "reserved")
        return _U16.pack(self.vq_index) + _U16.pack(self.reserved) + self.coal.emit()

    @classmethod
    def parse(cls, data: bytes) -> Self:
        _exact(data, _COAL_VQ.size, "virtio_net_ctrl_coal_vq", spec.NET_NOTF_COAL)
        vq, reserved, packets, usecs = _COAL_VQ.unpack(data)
        return cls(vq, NotfCoal(packets, usecs), reserved)


# --- construct schemas (the declarative twins; tests prove the codecs agree) -------------

CTRL_HDR_SCHEMA = cs.Struct("class_" / cs.Int8ul, "command" / cs.Int8ul)
CTRL_MAC_SCHEMA = cs.PrefixedArray(cs.Int32ul, cs.Bytes(MAC_LEN))
MAC_TABLE_SCHEMA = cs.Struct("unicast" / CTRL_MAC_SCHEMA, "multicast" / CTRL_MAC_SCHEMA)
RSS_CONFIG_SCHEMA = cs.Struct(
    "hash_types" / cs.Int32ul,
    "indirection_table_mask" / cs.Int16ul,
    "unclassified_queue" / cs.Int16ul,
    "indirection_table" / cs.Array(cs.this.indirection_table_mask + 1, cs.Int16ul),
    "max_tx_vq" / cs.Int16ul,
    "hash_key_length" / cs.Int8ul,
    "hash_key_data" / cs.Bytes(cs.this.hash_key_length),
)
HASH_CONFIG_SCHEMA = cs.Struct(
    "hash_types" / cs.Int32ul,
    "reserved" / cs.Array(4, cs.Int16ul),
    "hash_key_length" / cs.Int8ul,
    "hash_key_data" / cs.Bytes(cs.this.hash_key_length),
)
COAL_SCHEMA = cs.Struct("max_packets" / cs.Int32ul, "max_usecs" / cs.Int32ul)
COAL_VQ_SCHEMA = cs.Struct("vq_index" / cs.Int16ul, "reserved" / cs.Int16ul, "coal" / COAL_SCHEMA)
