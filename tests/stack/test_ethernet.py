"""Ethernet II and 802.1Q framing (IEEE 802.3, IEEE 802.1Q)."""

from __future__ import annotations

import pytest

from stack.wire.ethernet import (
    BROADCAST,
    EthernetHeader,
    EtherType,
    build_frame,
    format_mac,
    parse_mac,
)
from virtio.errors import WireError

A = bytes.fromhex("525400000001")


def test_untagged_roundtrip_exact_bytes() -> None:
    frame = build_frame(BROADCAST, A, EtherType.ARP, b"payload")
    assert frame.hex() == "ffffffffffff" "525400000001" "0806" + b"payload".hex()
    hdr = EthernetHeader.parse(frame)
    assert hdr == EthernetHeader(BROADCAST, A, EtherType.ARP)
    assert hdr.length == 14


def test_tagged_roundtrip_exact_bytes() -> None:
    hdr = EthernetHeader(BROADCAST, A, EtherType.IPV4, vlan_tci=0x2064)
    raw = hdr.emit()
    assert raw.hex() == "ffffffffffff" "525400000001" "8100" "2064" "0800"
    assert EthernetHeader.parse(raw + b"x") == hdr
    assert hdr.length == 18


@pytest.mark.parametrize("raw", [b"", b"\0" * 13, bytes(12) + b"\x81\x00" + b"\0\0"])
def test_truncated_frames_are_wire_errors(raw: bytes) -> None:
    with pytest.raises(WireError):
        EthernetHeader.parse(raw)


def test_mac_text() -> None:
    assert format_mac(A) == "52:54:00:00:00:01"
    assert parse_mac("52-54-00-00-00-01") == A
    for bad in ("52:54:00", "zz:54:00:00:00:01"):
        with pytest.raises(ValueError):
            parse_mac(bad)
    with pytest.raises(ValueError):
        EthernetHeader(b"\0", A, 0).emit()
