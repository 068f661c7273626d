"""ICMPv6 (RFC 4443), checksums over the IPv6 pseudo header (RFC 8200 §8.1) checked against
the RFC 1071 reference in tests/reference.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.wire import icmpv6
from stack.wire.icmpv6 import (
    DestUnreachableCode,
    Icmpv6Message,
    Icmpv6Type,
    ParameterProblemCode,
    TimeExceededCode,
)
from stack.wire.ipv6 import FragmentHeader, Ipv6Header
from tests.reference import rfc1071_sum
from virtio.errors import WireError

SRC = bytes.fromhex("fe800000000000000000000000000001")
DST = bytes.fromhex("fe800000000000000000000000000002")
GLOBAL = bytes.fromhex("20010db8000000000000000000000001")
MULTICAST = bytes.fromhex("ff020000000000000000000000000001")

# Hand-derived echo request fe80::1 -> fe80::2, identifier 0x1234, sequence 1, no data.
# Pseudo header words (RFC 8200 §8.1): fe80 + 0001 + fe80 + 0002, length 0x0008, next
# header 0x003a; message words 0x8000, 0x0000, 0x1234, 0x0001. The sum is 0x28f7a, folded
# 0x8f7c, so the checksum is ~0x8f7c = 0x7083.
ECHO_REQUEST = bytes.fromhex("8000708312340001")


def pseudo_header(src: bytes, dst: bytes, length: int) -> bytes:
    """RFC 8200 §8.1, written out: source, destination, 32-bit length, 3 zero bytes, 58."""
    return src + dst + length.to_bytes(4, "big") + b"\0\0\0\x3a"


def reference_checksum(src: bytes, dst: bytes, message: bytes) -> int:
    zeroed = message[:2] + b"\0\0" + message[4:]
    return ~rfc1071_sum(pseudo_header(src, dst, len(message)) + zeroed) & 0xFFFF


def v6_packet(next_header: int, payload: bytes, *, src: bytes = GLOBAL, dst: bytes = DST
              ) -> bytes:
    return Ipv6Header(src, dst, next_header, len(payload)).emit() + payload


def udp6(data_len: int, **kw: bytes) -> bytes:
    udp = bytes.fromhex("30390035") + (8 + data_len).to_bytes(2, "big") + b"\0\0"
    return v6_packet(17, udp + bytes(i & 0xFF for i in range(data_len)), **kw)


def test_echo_request_golden() -> None:
    msg = icmpv6.echo_request(0x1234, 1)
    assert msg == Icmpv6Message(Icmpv6Type.ECHO_REQUEST, 0, bytes.fromhex("12340001"))
    assert msg.emit(SRC, DST) == ECHO_REQUEST
    assert reference_checksum(SRC, DST, ECHO_REQUEST) == 0x7083
    back = Icmpv6Message.parse(ECHO_REQUEST, SRC, DST)
    assert back == msg and back.is_echo_request and not back.is_error
    assert (back.ident, back.seq, back.data) == (0x1234, 1, b"")


def test_checksum_covers_the_pseudo_header() -> None:
    with pytest.raises(WireError, match="bad ICMPv6 checksum"):
        Icmpv6Message.parse(ECHO_REQUEST, SRC, GLOBAL)
    # Addition commutes: the reply direction has the same pseudo-header sum.
    assert Icmpv6Message.parse(ECHO_REQUEST, DST, SRC).ident == 0x1234
    with pytest.raises(WireError, match="bad ICMPv6 checksum"):
        Icmpv6Message.parse(ECHO_REQUEST[:7] + b"\x02", SRC, DST)
    # The length is part of the pseudo header: an extra zero byte breaks the checksum
    # even though it adds nothing to the message words.
    with pytest.raises(WireError, match="bad ICMPv6 checksum"):
        Icmpv6Message.parse(ECHO_REQUEST + b"\0", SRC, DST)


def test_echo_reply_copies_everything() -> None:
    request = icmpv6.echo_request(7, 9, b"ping data")
    reply = icmpv6.echo_reply(Icmpv6Message.parse(request.emit(GLOBAL, DST), GLOBAL, DST))
    assert reply == Icmpv6Message(Icmpv6Type.ECHO_REPLY, 0, request.body)
    raw = reply.emit(DST, GLOBAL)
    assert int.from_bytes(raw[2:4], "big") == reference_checksum(DST, GLOBAL, raw)
    assert (reply.ident, reply.seq, reply.data) == (7, 9, b"ping data")
    with pytest.raises(ValueError, match="echo request"):
        icmpv6.echo_reply(reply)


@pytest.mark.parametrize(("raw", "why"), [
    (b"", "truncated"),
    (b"\x80\x00\x00", "truncated"),
    (b"\x80\x00\x00\x00\x00\x00", "needs 8"),  # echo without identifier and sequence
    (b"\x02\x00\x00\x00\x00\x00\x05", "needs 8"),  # packet too big without its MTU
])
def test_truncated(raw: bytes, why: str) -> None:
    with pytest.raises(WireError, match=why):
        Icmpv6Message.parse(raw, SRC, DST)


def test_four_byte_messages_of_other_types() -> None:
    msg = Icmpv6Message(200, 1, b"")  # a private experimentation type, RFC 4443 §2.1
    raw = msg.emit(SRC, DST)
    assert len(raw) == 4 and Icmpv6Message.parse(raw, SRC, DST) == msg


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Icmpv6Message.parse(ECHO_REQUEST, SRC[:4], DST)
    with pytest.raises(ValueError):
        Icmpv6Message(300, 0, b"").emit(SRC, DST)
    with pytest.raises(ValueError):
        icmpv6.echo_request(-1, 0)
    with pytest.raises(ValueError):
        icmpv6.packet_too_big(1 << 32, b"")
    msg = Icmpv6Message.parse(ECHO_REQUEST, SRC, DST)
    with pytest.raises(ValueError, match="no such field"):
        _ = msg.mtu
    with pytest.raises(ValueError, match="no such field"):
        _ = msg.pointer
    with pytest.raises(ValueError, match="not an error"):
        msg.quoted()
    with pytest.raises(ValueError, match="shorter than 4"):
        _ = Icmpv6Message(Icmpv6Type.ECHO_REQUEST, 0, b"").ident


def test_packet_too_big_quotes_up_to_the_minimum_mtu() -> None:
    # RFC 4443 §2.4(c): the error must not exceed the minimum IPv6 MTU (1280).
    original = udp6(1500 - 48)
    assert len(original) == 1500
    msg = icmpv6.packet_too_big(1280, original)
    raw = msg.emit(DST, GLOBAL)
    assert raw[:2] == b"\x02\x00" and raw[4:8] == (1280).to_bytes(4, "big")
    assert 40 + len(raw) == 1280 and msg.quoted() == original[:icmpv6.MAX_QUOTE]
    back = Icmpv6Message.parse(raw, DST, GLOBAL)
    assert back.mtu == 1280 and back.is_error
    assert int.from_bytes(raw[2:4], "big") == reference_checksum(DST, GLOBAL, raw)


def test_dest_unreachable_layout() -> None:
    original = udp6(10)
    msg = icmpv6.dest_unreachable(DestUnreachableCode.PORT_UNREACHABLE, original)
    raw = msg.emit(DST, GLOBAL)
    # RFC 4443 §3.1: type 1, code 4, checksum, 4 unused bytes, as much of the invoking
    # packet as fits.
    assert raw[:2] == b"\x01\x04" and raw[4:8] == bytes(4) and raw[8:] == original
    assert Icmpv6Message.parse(raw, DST, GLOBAL).quoted() == original


def test_quote_drops_padding() -> None:
    original = udp6(0)
    msg = icmpv6.time_exceeded(TimeExceededCode.REASSEMBLY, original + bytes(12))
    assert msg.quoted() == original and msg.type == 3 and msg.code == 1


def test_parameter_problem_pointer() -> None:
    original = udp6(4)
    msg = icmpv6.parameter_problem(ParameterProblemCode.UNRECOGNIZED_NEXT_HEADER, 6, original)
    raw = msg.emit(DST, GLOBAL)
    assert raw[:2] == b"\x04\x01" and raw[4:8] == b"\0\0\0\x06"
    assert Icmpv6Message.parse(raw, DST, GLOBAL).pointer == 6


def icmp_inside(kind: int, **kw: bytes) -> bytes:
    return v6_packet(58, bytes([kind]) + bytes(7), **kw)


HBH_TO_ICMP = bytes([58, 0, 1, 4, 0, 0, 0, 0])  # hop-by-hop: PadN, next header ICMPv6


@pytest.mark.parametrize(("packet", "kind", "code", "allowed"), [
    (udp6(8), Icmpv6Type.DEST_UNREACHABLE, 4, True),
    (icmp_inside(Icmpv6Type.ECHO_REQUEST), Icmpv6Type.DEST_UNREACHABLE, 0, True),
    (icmp_inside(Icmpv6Type.PACKET_TOO_BIG), Icmpv6Type.DEST_UNREACHABLE, 0, False),  # e.1
    (icmp_inside(Icmpv6Type.REDIRECT), Icmpv6Type.PARAMETER_PROBLEM, 0, False),  # e.2
    (v6_packet(0, HBH_TO_ICMP + bytes([1]) + bytes(7)), 1, 0, False),  # error behind HBH
    (v6_packet(0, HBH_TO_ICMP + bytes([128]) + bytes(7)), 1, 0, True),
    (udp6(8, dst=MULTICAST), Icmpv6Type.DEST_UNREACHABLE, 4, False),  # e.3
    (udp6(8, dst=MULTICAST), Icmpv6Type.PACKET_TOO_BIG, 0, True),  # e.3 exception
    (udp6(8, dst=MULTICAST), Icmpv6Type.PARAMETER_PROBLEM, 2, True),  # e.3 exception
    (udp6(8, dst=MULTICAST), Icmpv6Type.PARAMETER_PROBLEM, 0, False),
    (udp6(8, src=bytes(16)), Icmpv6Type.DEST_UNREACHABLE, 4, False),  # e.6
    (udp6(8, src=MULTICAST), Icmpv6Type.PACKET_TOO_BIG, 0, False),  # e.6
    (v6_packet(44, FragmentHeader(58, 8, False, 1).emit() + bytes([1]) + bytes(7)), 3, 1,
     True),  # a non-initial fragment: its bytes are not an ICMPv6 header
    (v6_packet(44, FragmentHeader(58, 0, True, 1).emit() + bytes([1]) + bytes(7)), 3, 1,
     False),
    (v6_packet(0, bytes([6, 3])), 4, 3, True),  # broken chain: parameter problem's business
    (v6_packet(58, b""), 1, 0, True),
    (bytes(39), 1, 0, False),
    (b"\x40" + bytes(39), 1, 0, False),
])
def test_may_send_error(packet: bytes, kind: int, code: int, allowed: bool) -> None:
    assert icmpv6.may_send_error(packet, kind, code) is allowed


messages = st.builds(
    Icmpv6Message,
    type=st.integers(0, 255),
    code=st.integers(0, 255),
    body=st.binary(min_size=4, max_size=1300),
)
addresses = st.binary(min_size=16, max_size=16)


@given(messages, addresses, addresses)
def test_round_trip_and_reference_checksum(msg: Icmpv6Message, src: bytes, dst: bytes) -> None:
    raw = msg.emit(src, dst)
    assert rfc1071_sum(pseudo_header(src, dst, len(raw)) + raw) == 0xFFFF
    assert int.from_bytes(raw[2:4], "big") == reference_checksum(src, dst, raw)
    assert Icmpv6Message.parse(raw, src, dst) == msg


@given(st.binary(max_size=128), addresses, addresses)
def test_arbitrary_bytes_raise_only_wire_error(data: bytes, src: bytes, dst: bytes) -> None:
    try:
        msg = Icmpv6Message.parse(data, src, dst)
    except WireError:
        return
    assert msg.body == data[4:]


@given(st.binary(min_size=4, max_size=128), addresses, addresses)
def test_arbitrary_messages_with_a_good_checksum(data: bytes, src: bytes, dst: bytes) -> None:
    raw = data[:2] + reference_checksum(src, dst, data).to_bytes(2, "big") + data[4:]
    try:
        msg = Icmpv6Message.parse(raw, src, dst)
    except WireError as exc:
        assert "needs 8" in str(exc)
        return
    assert (msg.type, msg.code, msg.body) == (raw[0], raw[1], raw[4:])


@given(st.binary(max_size=1600), st.integers(0, 255), st.integers(0, 255))
def test_error_helpers_accept_any_original(original: bytes, kind: int, code: int) -> None:
    msg = icmpv6.dest_unreachable(DestUnreachableCode.NO_ROUTE, original)
    assert len(msg.quoted()) <= icmpv6.MAX_QUOTE
    assert 40 + len(msg.emit(SRC, DST)) <= icmpv6.MIN_MTU
    assert isinstance(icmpv6.may_send_error(original, kind, code), bool)
