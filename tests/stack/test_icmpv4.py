"""ICMP for IPv4 (RFC 792, RFC 1122 §3.2.2, RFC 1812 §4.3.2.3), checksums checked against
the RFC 1071 reference in tests/reference.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.wire import icmpv4
from stack.wire.icmpv4 import Icmpv4Message, Icmpv4Type, TimeExceededCode, UnreachableCode
from stack.wire.ipv4 import FLAG_MF, IpProtocol, Ipv4Header
from tests.reference import rfc1071_sum
from virtio.errors import WireError

SRC = bytes([192, 0, 2, 1])
DST = bytes([192, 0, 2, 2])

# Hand-derived echo request, identifier 0x1234, sequence 1, no data: the words are
# 0x0800 (type 8, code 0), 0x0000 (checksum), 0x1234, 0x0001; their ones' complement sum
# is 0x1a35, so the checksum is ~0x1a35 = 0xe5ca (RFC 792, RFC 1071 §1).
ECHO_REQUEST = bytes.fromhex("0800e5ca12340001")
# The reply: type 0, the same identifier and sequence: sum 0x1235, checksum 0xedca.
ECHO_REPLY = bytes.fromhex("0000edca12340001")


def reference_checksum(message: bytes) -> int:
    """RFC 1071: the complement of the sum of the message with a zero checksum field."""
    zeroed = message[:2] + b"\0\0" + message[4:]
    return ~rfc1071_sum(zeroed) & 0xFFFF


def udp_packet(data_len: int, *, src: bytes = SRC, dst: bytes = DST, frag_offset: int = 0,
               protocol: int = IpProtocol.UDP, l4: bytes | None = None) -> bytes:
    body = l4 if l4 is not None else bytes.fromhex("30390035") + (8 + data_len).to_bytes(2, "big") \
        + b"\0\0" + bytes(range(256)) * (data_len // 256) + bytes(data_len % 256)
    header = Ipv4Header(src, dst, protocol, 20 + len(body), ident=7, frag_offset=frag_offset)
    return header.emit() + body


def test_echo_request_golden() -> None:
    msg = icmpv4.echo_request(0x1234, 1)
    assert msg == Icmpv4Message(Icmpv4Type.ECHO_REQUEST, 0, bytes.fromhex("12340001"), b"")
    assert msg.emit() == ECHO_REQUEST
    assert Icmpv4Message.parse(ECHO_REQUEST) == msg
    assert msg.is_echo_request and msg.ident == 0x1234 and msg.seq == 1
    assert not msg.is_error


def test_echo_reply_golden() -> None:
    reply = icmpv4.echo_reply(Icmpv4Message.parse(ECHO_REQUEST))
    assert reply.emit() == ECHO_REPLY
    assert (reply.ident, reply.seq) == (0x1234, 1) and not reply.is_echo_request


def test_echo_reply_copies_data() -> None:
    request = icmpv4.echo_request(0xBEEF, 0xFFFF, b"abcdefghijklmnopqrstuvwabcdefghi")
    reply = icmpv4.echo_reply(Icmpv4Message.parse(request.emit()))
    assert reply.payload == request.payload and reply.rest == request.rest
    assert reply.type == Icmpv4Type.ECHO_REPLY and reply.code == 0
    raw = reply.emit()
    assert int.from_bytes(raw[2:4], "big") == reference_checksum(raw)


def test_echo_only_from_requests() -> None:
    with pytest.raises(ValueError, match="echo request"):
        icmpv4.echo_reply(Icmpv4Message.parse(ECHO_REPLY))
    with pytest.raises(ValueError, match="16 bits"):
        icmpv4.echo_request(0x10000, 0)


def test_checksum_verified() -> None:
    with pytest.raises(WireError, match="bad ICMP checksum"):
        Icmpv4Message.parse(ECHO_REQUEST[:2] + b"\xe5\xcb" + ECHO_REQUEST[4:])
    with pytest.raises(WireError, match="bad ICMP checksum"):
        Icmpv4Message.parse(ECHO_REQUEST + b"\x01")
    # Trailing zero bytes do not change the sum: the caller trims to the IP length.
    assert Icmpv4Message.parse(ECHO_REQUEST + b"\0\0").payload == b"\0\0"


@pytest.mark.parametrize("raw", [b"", b"\x08", ECHO_REQUEST[:7]])
def test_truncated(raw: bytes) -> None:
    with pytest.raises(WireError, match="truncated"):
        Icmpv4Message.parse(raw)


def test_emit_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        Icmpv4Message(8, 0, b"\0\0", b"").emit()
    with pytest.raises(ValueError, match="8 bits"):
        Icmpv4Message(256, 0, bytes(4), b"").emit()


def test_echo_fields_of_other_messages_are_misuse() -> None:
    unreachable = icmpv4.dest_unreachable(UnreachableCode.PORT, udp_packet(4))
    with pytest.raises(ValueError, match="not an echo"):
        _ = unreachable.ident
    with pytest.raises(ValueError, match="not an echo"):
        _ = unreachable.seq
    with pytest.raises(ValueError, match="not an error"):
        Icmpv4Message.parse(ECHO_REQUEST).quoted()
    with pytest.raises(ValueError, match="parameter problem"):
        _ = unreachable.pointer


def test_port_unreachable_layout() -> None:
    original = udp_packet(4)  # 20 + 8 + 4 bytes: quoted whole
    msg = icmpv4.dest_unreachable(UnreachableCode.PORT, original)
    raw = msg.emit()
    # RFC 792 "Destination Unreachable Message": type 3, code 3, checksum, 4 unused
    # zero bytes, then the internet header + data of the original datagram.
    assert raw[:2] == b"\x03\x03" and raw[4:8] == bytes(4) and raw[8:] == original
    assert int.from_bytes(raw[2:4], "big") == reference_checksum(raw)
    back = Icmpv4Message.parse(raw)
    assert back.is_error and back.quoted() == original and back.next_hop_mtu == 0


def test_frag_needed_carries_next_hop_mtu() -> None:
    # RFC 1191 §4: unused (16 bits) then the next-hop MTU (16 bits).
    msg = icmpv4.dest_unreachable(UnreachableCode.FRAG_NEEDED, udp_packet(1472), next_hop_mtu=1400)
    assert msg.rest == bytes.fromhex("00000578")
    assert Icmpv4Message.parse(msg.emit()).next_hop_mtu == 1400
    with pytest.raises(ValueError, match="next-hop MTU"):
        icmpv4.dest_unreachable(UnreachableCode.PORT, udp_packet(4), next_hop_mtu=1400)
    with pytest.raises(ValueError, match="16 bits"):
        icmpv4.dest_unreachable(UnreachableCode.FRAG_NEEDED, udp_packet(4), next_hop_mtu=1 << 16)


@pytest.mark.parametrize("data_len", [520, 521, 1000, 1472, 65000])
def test_quote_keeps_the_error_within_576_bytes(data_len: int) -> None:
    # RFC 1812 §4.3.2.3: as much of the original as fits in a 576-byte ICMP datagram.
    original = udp_packet(data_len)
    msg = icmpv4.dest_unreachable(UnreachableCode.PORT, original)
    quoted = len(original) if len(original) <= icmpv4.MAX_QUOTE else icmpv4.MAX_QUOTE
    assert msg.payload == original[:quoted]
    assert 20 + len(msg.emit()) <= 576
    if len(original) >= icmpv4.MAX_QUOTE:
        assert 20 + len(msg.emit()) == 576


def test_quote_drops_ethernet_padding() -> None:
    original = udp_packet(0)  # 28 bytes; a 60-byte frame pads its IP packet to 46
    msg = icmpv4.time_exceeded(TimeExceededCode.TTL, original + bytes(18))
    assert msg.payload == original
    # Bytes that do not look like IPv4 are quoted as given, up to the bound.
    odd = icmpv4.time_exceeded(TimeExceededCode.TTL, b"\x60" + bytes(40))
    assert odd.payload == b"\x60" + bytes(40)


def test_time_exceeded_and_parameter_problem() -> None:
    original = udp_packet(8)
    te = icmpv4.time_exceeded(TimeExceededCode.REASSEMBLY, original)
    assert te.emit()[:2] == b"\x0b\x01" and te.quoted() == original
    pp = icmpv4.parameter_problem(9, original)  # pointing at the protocol field
    raw = pp.emit()
    assert raw[:2] == b"\x0c\x00" and raw[4:8] == b"\x09\0\0\0"
    assert Icmpv4Message.parse(raw).pointer == 9
    with pytest.raises(ValueError):
        icmpv4.parameter_problem(256, original)


def icmp_inside(kind: int) -> bytes:
    return udp_packet(0, protocol=IpProtocol.ICMP, l4=bytes([kind]) + bytes(7))


@pytest.mark.parametrize(
    ("packet", "allowed"),
    [
        (udp_packet(8), True),
        (icmp_inside(Icmpv4Type.ECHO_REQUEST), True),
        (icmp_inside(Icmpv4Type.DEST_UNREACHABLE), False),  # never about an error
        (icmp_inside(Icmpv4Type.TIME_EXCEEDED), False),
        (icmp_inside(Icmpv4Type.REDIRECT), False),
        (udp_packet(0, protocol=IpProtocol.ICMP, l4=b""), False),  # too short to tell
        (udp_packet(8, frag_offset=5), False),  # non-initial fragment
        (udp_packet(8, dst=b"\xff\xff\xff\xff"), False),  # limited broadcast
        (udp_packet(8, dst=bytes([224, 0, 0, 1])), False),  # multicast
        (udp_packet(8, src=bytes(4)), False),  # zero source
        (udp_packet(8, src=bytes([127, 0, 0, 1])), False),  # loopback
        (udp_packet(8, src=bytes([240, 0, 0, 1])), False),  # class E
        (udp_packet(8, src=bytes([230, 0, 0, 1])), False),  # multicast source
        (b"\x45" + bytes(10), False),
        (b"\x65" + bytes(30), False),
        (b"\x44" + bytes(30), False),
    ],
)
def test_may_send_error(packet: bytes, allowed: bool) -> None:
    # RFC 1122 §3.2.2, the parts a packet tells by itself.
    assert icmpv4.may_send_error(packet) is allowed


def test_first_fragment_may_be_answered() -> None:
    first = Ipv4Header(SRC, DST, IpProtocol.UDP, 36, flags=FLAG_MF).emit() + bytes(16)
    assert icmpv4.may_send_error(first)


messages = st.builds(
    Icmpv4Message,
    type=st.integers(0, 255),
    code=st.integers(0, 255),
    rest=st.binary(min_size=4, max_size=4),
    payload=st.binary(max_size=600),
)


@given(messages)
def test_round_trip_and_reference_checksum(msg: Icmpv4Message) -> None:
    raw = msg.emit()
    assert rfc1071_sum(raw) == 0xFFFF
    assert int.from_bytes(raw[2:4], "big") == reference_checksum(raw)
    assert Icmpv4Message.parse(raw) == msg


@given(st.binary(max_size=128))
def test_arbitrary_bytes_raise_only_wire_error(data: bytes) -> None:
    try:
        msg = Icmpv4Message.parse(data)
    except WireError:
        return
    assert rfc1071_sum(data) == 0xFFFF
    assert msg.payload == data[8:]


@given(st.binary(min_size=8, max_size=128))
def test_arbitrary_messages_with_a_good_checksum_parse(data: bytes) -> None:
    raw = data[:2] + reference_checksum(data).to_bytes(2, "big") + data[4:]
    msg = Icmpv4Message.parse(raw)
    assert (msg.type, msg.code, msg.rest, msg.payload) == (raw[0], raw[1], raw[4:8], raw[8:])


@given(st.binary(max_size=2000))
def test_error_builders_accept_any_original(original: bytes) -> None:
    for msg in (icmpv4.dest_unreachable(UnreachableCode.HOST, original),
                icmpv4.time_exceeded(TimeExceededCode.TTL, original)):
        assert len(msg.payload) <= icmpv4.MAX_QUOTE
        assert Icmpv4Message.parse(msg.emit()) == msg
    assert isinstance(icmpv4.may_send_error(original), bool)
