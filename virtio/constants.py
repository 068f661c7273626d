"""Numbers the virtio specification defines, with the section that defines them.

Feature bits are kept as bit *numbers* (:class:`FeatureBit`), because the feature space is
wider than 64 bits (v1.4 drafts define bits 64–68); a set of features is a
:class:`virtio.features.FeatureSet`. Every enum here maps its members to a section with
``section_of``.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

from virtio import spec


class FeatureBit(IntEnum):
    """Feature bit numbers: generic (§6) and network device (§5.1.3)."""

    # Network device, §5.1.3
    CSUM = 0
    GUEST_CSUM = 1
    CTRL_GUEST_OFFLOADS = 2
    MTU = 3
    MAC = 5
    GUEST_TSO4 = 7
    GUEST_TSO6 = 8
    GUEST_ECN = 9
    GUEST_UFO = 10
    HOST_TSO4 = 11
    HOST_TSO6 = 12
    HOST_ECN = 13
    HOST_UFO = 14
    MRG_RXBUF = 15
    STATUS = 16
    CTRL_VQ = 17
    CTRL_RX = 18
    CTRL_VLAN = 19
    CTRL_RX_EXTRA = 20
    GUEST_ANNOUNCE = 21
    MQ = 22
    CTRL_MAC_ADDR = 23
    # Generic, §6
    NOTIFY_ON_EMPTY = 24
    ANY_LAYOUT = 27
    INDIRECT_DESC = 28
    EVENT_IDX = 29
    VERSION_1 = 32
    ACCESS_PLATFORM = 33
    RING_PACKED = 34
    IN_ORDER = 35
    ORDER_PLATFORM = 36
    SR_IOV = 37
    NOTIFICATION_DATA = 38
    NOTIF_CONFIG_DATA = 39
    RING_RESET = 40
    ADMIN_VQ = 41
    # Network device, §5.1.3 (continued)
    DEVICE_STATS = 50
    HASH_TUNNEL = 51
    VQ_NOTF_COAL = 52
    NOTF_COAL = 53
    GUEST_USO4 = 54
    GUEST_USO6 = 55
    HOST_USO = 56
    HASH_REPORT = 57
    GUEST_HDRLEN = 59
    RSS = 60
    RSC_EXT = 61
    STANDBY = 62
    SPEED_DUPLEX = 63
    # v1.4 drafts
    RSS_CONTEXT = 64
    GUEST_UDP_TUNNEL_GSO = 65
    GUEST_UDP_TUNNEL_GSO_CSUM = 66
    HOST_UDP_TUNNEL_GSO = 67
    HOST_UDP_TUNNEL_GSO_CSUM = 68

    @property
    def section(self) -> spec.Section:
        return _GENERIC_SECTION if self.name in _GENERIC_NAMES else spec.NET_FEATURE_BITS

    @property
    def mask(self) -> int:
        return 1 << int(self)


_GENERIC_NAMES = frozenset(
    {
        "NOTIFY_ON_EMPTY", "ANY_LAYOUT", "INDIRECT_DESC", "EVENT_IDX", "VERSION_1",
        "ACCESS_PLATFORM", "RING_PACKED", "IN_ORDER", "ORDER_PLATFORM", "SR_IOV",
        "NOTIFICATION_DATA", "NOTIF_CONFIG_DATA", "RING_RESET", "ADMIN_VQ",
    }
)
_GENERIC_SECTION = spec.RESERVED_FEATURE_BITS


class LegacyFeatureBit(IntEnum):
    """Legacy-only net feature bits (§5.1.3.2 Legacy Interface: Feature bits).

    Kept apart from :class:`FeatureBit` because GUEST_RSC4 shares bit 41 with ADMIN_VQ.
    """

    GSO = 6
    GUEST_RSC4 = 41
    GUEST_RSC6 = 42


class Status(IntFlag):
    """Device status field, §2.1."""

    ACKNOWLEDGE = 1
    DRIVER = 2
    DRIVER_OK = 4
    FEATURES_OK = 8
    DEVICE_NEEDS_RESET = 64
    FAILED = 128


class DescFlag(IntFlag):
    """Split virtqueue descriptor flags, §2.7.5."""

    NEXT = 1
    WRITE = 2
    INDIRECT = 4


class AvailFlag(IntFlag):
    """Available ring flags, §2.7.6 / §2.7.7."""

    NO_INTERRUPT = 1


class UsedFlag(IntFlag):
    """Used ring flags, §2.7.8 / §2.7.10."""

    NO_NOTIFY = 1


class NetHdrFlag(IntFlag):
    """virtio_net_hdr.flags, §5.1.6."""

    NEEDS_CSUM = 1
    DATA_VALID = 2
    RSC_INFO = 4


class GsoType(IntEnum):
    """virtio_net_hdr.gso_type without the ECN bit, §5.1.6."""

    NONE = 0
    TCPV4 = 1
    UDP = 3
    TCPV6 = 4
    UDP_L4 = 5


GSO_ECN = 0x80
"""Or-ed into gso_type when the TCP packet needs ECN (CWR) handling, §5.1.6."""


class NetStatus(IntFlag):
    """virtio_net_config.status, §5.1.4."""

    LINK_UP = 1
    ANNOUNCE = 2


class HashType(IntFlag):
    """Hash types a device supports and a driver enables (supported_hash_types, RSS and
    hash configuration), §5.1.6.4.3.1."""

    IPV4 = 1 << 0
    TCPV4 = 1 << 1
    UDPV4 = 1 << 2
    IPV6 = 1 << 3
    TCPV6 = 1 << 4
    UDPV6 = 1 << 5
    IP_EX = 1 << 6
    TCP_EX = 1 << 7
    UDP_EX = 1 << 8


class HashReport(IntEnum):
    """virtio_net_hdr.hash_report: which hash the device calculated, §5.1.6.4.4."""

    NONE = 0
    IPV4 = 1
    TCPV4 = 2
    UDPV4 = 3
    IPV6 = 4
    TCPV6 = 5
    UDPV6 = 6
    IPV6_EX = 7
    TCPV6_EX = 8
    UDPV6_EX = 9


class InterruptStatus(IntFlag):
    """MMIO InterruptStatus / InterruptACK bits, §4.2.2."""

    USED_BUFFER = 1
    CONFIG_CHANGE = 2


class DeviceId(IntEnum):
    """Device IDs, §5."""

    NET = 1


class MmioReg(IntEnum):
    """virtio-mmio version 2 register offsets, §4.2.2."""

    MAGIC_VALUE = 0x000
    VERSION = 0x004
    DEVICE_ID = 0x008
    VENDOR_ID = 0x00C
    DEVICE_FEATURES = 0x010
    DEVICE_FEATURES_SEL = 0x014
    DRIVER_FEATURES = 0x020
    DRIVER_FEATURES_SEL = 0x024
    QUEUE_SEL = 0x030
    QUEUE_NUM_MAX = 0x034
    QUEUE_NUM = 0x038
    QUEUE_READY = 0x044
    QUEUE_NOTIFY = 0x050
    INTERRUPT_STATUS = 0x060
    INTERRUPT_ACK = 0x064
    STATUS = 0x070
    QUEUE_DESC_LOW = 0x080
    QUEUE_DESC_HIGH = 0x084
    QUEUE_DRIVER_LOW = 0x090
    QUEUE_DRIVER_HIGH = 0x094
    QUEUE_DEVICE_LOW = 0x0A0
    QUEUE_DEVICE_HIGH = 0x0A4
    SHM_SEL = 0x0AC
    SHM_LEN_LOW = 0x0B0
    SHM_LEN_HIGH = 0x0B4
    SHM_BASE_LOW = 0x0B8
    SHM_BASE_HIGH = 0x0BC
    QUEUE_RESET = 0x0C0
    CONFIG_GENERATION = 0x0FC
    CONFIG = 0x100


MMIO_MAGIC = 0x74726976
"""The little-endian string "virt", §4.2.2."""
MMIO_VERSION = 2
"""Non-legacy virtio-mmio, §4.2.2 (version 1 is the legacy interface)."""
MAX_QUEUE_SIZE = 32768
"""Largest split queue size, §2.7 ("Queue Size ... maximum 32768")."""

SECTIONS: dict[type, spec.Section] = {
    LegacyFeatureBit: spec.NET_FEATURE_BITS,
    Status: spec.DEVICE_STATUS,
    DescFlag: spec.DESC_TABLE,
    AvailFlag: spec.USED_NOTIF_SUPPRESSION,
    UsedFlag: spec.AVAIL_NOTIF_SUPPRESSION,
    NetHdrFlag: spec.NET_OPERATION,
    GsoType: spec.NET_OPERATION,
    NetStatus: spec.NET_CONFIG,
    HashType: spec.NET_HASH_TYPES,
    HashReport: spec.NET_HASH_REPORT,
    InterruptStatus: spec.MMIO_REGISTERS,
    DeviceId: spec.Section("5", "Device Types"),
    MmioReg: spec.MMIO_REGISTERS,
}


def section_of(member: IntEnum | IntFlag) -> spec.Section:
    """The spec section that defines an enum member."""
    if isinstance(member, FeatureBit):
        return member.section
    return SECTIONS[type(member)]
