"""Spec numbers: feature bits (§5.1.3, §6), status (§2.1), ring flags (§2.7), header
flags and gso types (§5.1.6), mmio registers (§4.2.2)."""

from __future__ import annotations

from virtio import spec
from virtio.constants import (
    GSO_ECN,
    DescFlag,
    FeatureBit,
    GsoType,
    LegacyFeatureBit,
    MmioReg,
    NetHdrFlag,
    Status,
    section_of,
)


def test_feature_bits_match_spec_notes() -> None:
    expected = {
        "CSUM": 0, "GUEST_CSUM": 1, "CTRL_GUEST_OFFLOADS": 2, "MTU": 3, "MAC": 5,
        "GUEST_TSO4": 7, "GUEST_TSO6": 8, "GUEST_ECN": 9, "GUEST_UFO": 10, "HOST_TSO4": 11,
        "HOST_TSO6": 12, "HOST_ECN": 13, "HOST_UFO": 14, "MRG_RXBUF": 15, "STATUS": 16,
        "CTRL_VQ": 17, "CTRL_RX": 18, "CTRL_VLAN": 19, "CTRL_RX_EXTRA": 20,
        "GUEST_ANNOUNCE": 21, "MQ": 22, "CTRL_MAC_ADDR": 23, "DEVICE_STATS": 50,
        "HASH_TUNNEL": 51, "VQ_NOTF_COAL": 52, "NOTF_COAL": 53, "GUEST_USO4": 54,
        "GUEST_USO6": 55, "HOST_USO": 56, "HASH_REPORT": 57, "GUEST_HDRLEN": 59, "RSS": 60,
        "RSC_EXT": 61, "STANDBY": 62, "SPEED_DUPLEX": 63, "RSS_CONTEXT": 64,
        "GUEST_UDP_TUNNEL_GSO": 65, "GUEST_UDP_TUNNEL_GSO_CSUM": 66,
        "HOST_UDP_TUNNEL_GSO": 67, "HOST_UDP_TUNNEL_GSO_CSUM": 68,
        "NOTIFY_ON_EMPTY": 24, "ANY_LAYOUT": 27, "INDIRECT_DESC": 28, "EVENT_IDX": 29,
        "VERSION_1": 32, "ACCESS_PLATFORM": 33, "RING_PACKED": 34, "IN_ORDER": 35,
        "ORDER_PLATFORM": 36, "SR_IOV": 37, "NOTIFICATION_DATA": 38,
        "NOTIF_CONFIG_DATA": 39, "RING_RESET": 40, "ADMIN_VQ": 41,
    }
    assert {f.name: int(f) for f in FeatureBit} == expected
    assert {f.name: int(f) for f in LegacyFeatureBit} == {
        "GSO": 6, "GUEST_RSC4": 41, "GUEST_RSC6": 42,
    }


def test_sections() -> None:
    assert section_of(FeatureBit.EVENT_IDX) == spec.RESERVED_FEATURE_BITS
    assert section_of(FeatureBit.HOST_TSO4) == spec.NET_FEATURE_BITS
    assert section_of(Status.FEATURES_OK) == spec.DEVICE_STATUS
    assert section_of(DescFlag.INDIRECT) == spec.DESC_TABLE
    assert str(section_of(MmioReg.QUEUE_NOTIFY)) == "virtio-v1.2 §4.2.2 MMIO Device Register Layout"


def test_flag_values() -> None:
    assert [int(s) for s in Status] == [1, 2, 4, 8, 64, 128]
    assert [int(d) for d in DescFlag] == [1, 2, 4]
    assert [int(f) for f in NetHdrFlag] == [1, 2, 4]
    assert {g.name: int(g) for g in GsoType} == {
        "NONE": 0, "TCPV4": 1, "UDP": 3, "TCPV6": 4, "UDP_L4": 5,
    }
    assert GSO_ECN == 0x80


def test_mmio_offsets() -> None:
    assert MmioReg.QUEUE_NOTIFY == 0x50
    assert MmioReg.STATUS == 0x70
    assert MmioReg.CONFIG_GENERATION == 0xFC
    assert MmioReg.CONFIG == 0x100
