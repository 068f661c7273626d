"""ARP for IPv4 over Ethernet (RFC 826)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.wire import arp
from stack.wire.arp import ArpOp, ArpPacket
from virtio.errors import WireError

MAC_A = bytes.fromhex("00aa00289c5a")
MAC_B = bytes.fromhex("020000000002")
IP_A = bytes([192, 0, 2, 1])
IP_B = bytes([192, 0, 2, 2])

# Hand-derived from the RFC 826 packet format: ar$hrd 0x0001 (Ethernet), ar$pro 0x0800,
# ar$hln 6, ar$pln 4, ar$op 0x0001 (request), ar$sha, ar$spa, ar$tha (zero, RFC 5227
# §2.1.1), ar$tpa.
REQUEST = bytes.fromhex(
    "0001" "0800" "06" "04" "0001"
    "00aa00289c5a" "c0000201"
    "000000000000" "c0000202"
)
# The reply B sends (RFC 826, "Packet Reception": swap, fill in ar$sha, op = reply).
REPLY = bytes.fromhex(
    "0001" "0800" "06" "04" "0002"
    "020000000002" "c0000202"
    "00aa00289c5a" "c0000201"
)


def test_request_golden() -> None:
    packet = arp.request(MAC_A, IP_A, IP_B)
    assert packet == ArpPacket(ArpOp.REQUEST, MAC_A, IP_A, bytes(6), IP_B)
    assert packet.emit() == REQUEST
    assert len(REQUEST) == arp.LENGTH == 28
    assert ArpPacket.parse(REQUEST) == packet


def test_reply_golden() -> None:
    reply = arp.reply_to(ArpPacket.parse(REQUEST), MAC_B)
    assert reply == ArpPacket(ArpOp.REPLY, MAC_B, IP_B, MAC_A, IP_A)
    assert reply.emit() == REPLY
    assert ArpPacket.parse(REPLY).op is ArpOp.REPLY


def test_parse_accepts_ethernet_padding() -> None:
    # A 60-byte minimum frame holds 46 payload bytes: 28 of ARP, 18 of padding.
    assert ArpPacket.parse(REQUEST + bytes(18)) == ArpPacket.parse(REQUEST)
    assert ArpPacket.parse(memoryview(REQUEST + b"\xee" * 18)).target_ip == IP_B


def test_reply_only_to_requests() -> None:
    with pytest.raises(ValueError, match="request"):
        arp.reply_to(ArpPacket.parse(REPLY), MAC_A)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (REQUEST[:27], "truncated"),
        (b"\x00\x06" + REQUEST[2:], "hardware type 6"),  # IEEE 802 networks
        (REQUEST[:2] + b"\x86\xdd" + REQUEST[4:], "protocol type 0x86dd"),
        (REQUEST[:4] + b"\x08" + REQUEST[5:], "address lengths 8/4"),
        (REQUEST[:5] + b"\x10" + REQUEST[6:], "address lengths 6/16"),
        (REQUEST[:6] + b"\x00\x03" + REQUEST[8:], "operation 3"),  # RARP request
        (REQUEST[:6] + b"\x00\x00" + REQUEST[8:], "operation 0"),
        (b"", "truncated"),
    ],
)
def test_malformed(raw: bytes, why: str) -> None:
    with pytest.raises(WireError, match=why):
        ArpPacket.parse(raw)


def test_emit_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="hardware"):
        ArpPacket(ArpOp.REQUEST, MAC_A[:5], IP_A, bytes(6), IP_B).emit()
    with pytest.raises(ValueError, match="protocol"):
        ArpPacket(ArpOp.REQUEST, MAC_A, IP_A, bytes(6), bytes(16)).emit()
    with pytest.raises(ValueError, match="operation"):
        ArpPacket(3, MAC_A, IP_A, bytes(6), IP_B).emit()  # type: ignore[arg-type]


def test_probe_and_announcement() -> None:
    # RFC 5227 §2.1.1: a probe has sender IP 0.0.0.0; §2.3: an announcement has sender
    # and target IP both the announced address.
    probe = arp.request(MAC_A, bytes(4), IP_A)
    assert probe.is_probe and not probe.is_gratuitous
    announce = arp.request(MAC_A, IP_A, IP_A)
    assert announce.is_gratuitous and not announce.is_probe
    normal = arp.request(MAC_A, IP_A, IP_B)
    assert not normal.is_probe and not normal.is_gratuitous
    assert not ArpPacket.parse(REPLY).is_probe


packets = st.builds(
    ArpPacket,
    op=st.sampled_from(ArpOp),
    sender_mac=st.binary(min_size=6, max_size=6),
    sender_ip=st.binary(min_size=4, max_size=4),
    target_mac=st.binary(min_size=6, max_size=6),
    target_ip=st.binary(min_size=4, max_size=4),
)


@given(packets, st.binary(max_size=32))
def test_round_trip(packet: ArpPacket, padding: bytes) -> None:
    raw = packet.emit()
    assert len(raw) == arp.LENGTH
    assert ArpPacket.parse(raw + padding) == packet


@given(st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_wire_error(data: bytes) -> None:
    try:
        packet = ArpPacket.parse(data)
    except WireError:
        return
    assert packet.emit() == data[:arp.LENGTH]


@given(st.binary(min_size=8, max_size=8), st.binary(min_size=20, max_size=40))
def test_valid_prefix_with_arbitrary_addresses(prefix_ops: bytes, rest: bytes) -> None:
    # Keep the fixed fields valid, vary the op and addresses: only ops 1 and 2 parse.
    raw = REQUEST[:6] + prefix_ops[:2] + rest
    try:
        packet = ArpPacket.parse(raw)
    except WireError:
        assert len(raw) < 28 or int.from_bytes(prefix_ops[:2], "big") not in (1, 2)
        return
    assert packet.emit() == raw[:28]
