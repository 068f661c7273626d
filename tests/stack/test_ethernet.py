"""Ethernet II and 802.1Q framing (IEEE 802.3, IEEE 802.1Q)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.wire.ethernet import (
    BROADCAST,
    HEADER_LEN,
    EthernetHeader,
    EtherType,
    build_frame,
    format_mac,
    link_header_len,
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


@given(st.binary(max_size=40), st.sampled_from([b"", b"\x81\x00", b"\x08\x00", b"\x88\xa8"]))
def test_link_header_len_agrees_with_the_parser(data: bytes, tpid: bytes) -> None:
    """The device's fast length check says what parsing the header says (§5.1.4.1's
    "low level ethernet header length"), for tagged, untagged and truncated frames."""
    frame = (data[:12] + tpid + data[12:]) if tpid else data
    try:
        expected = EthernetHeader.parse(frame).length
    except WireError:
        expected = HEADER_LEN
    assert link_header_len(frame) == expected


def test_link_header_len_of_a_tagged_frame() -> None:
    tagged = bytes(12) + b"\x81\x00" + b"\x00\x05" + b"\x08\x00" + bytes(20)
    assert link_header_len(tagged) == 18
    assert link_header_len(tagged[:17]) == 14  # truncated inside its tag
    assert link_header_len(bytes(12) + b"\x08\x00" + bytes(20)) == 14
