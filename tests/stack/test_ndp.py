"""Neighbor Discovery (RFC 4861): NS/NA codecs, options, the §7.1.1/§7.1.2 receive rules,
and the address mappings (RFC 4291, RFC 2464)."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.wire import ndp
from stack.wire.icmpv6 import Icmpv6Message, Icmpv6Type
from stack.wire.ndp import NeighborAdvertisement, NeighborSolicitation
from tests.reference import rfc1071_sum
from virtio.errors import WireError

MAC = bytes.fromhex("00aa00289c5a")
OTHER_MAC = bytes.fromhex("020000000002")
LINK_LOCAL = bytes.fromhex("fe8000000000000002aa00fffe289c5a")  # fe80::2aa:ff:fe28:9c5a
SOLICITED = bytes.fromhex("ff0200000000000000000001ff289c5a")  # ff02::1:ff28:9c5a
PEER = bytes.fromhex("fe800000000000000000000000000001")
GLOBAL = bytes.fromhex("20010db8000000000000000000000001")

# Hand-derived NS body (RFC 4861 §4.3): 4 reserved zero bytes, the target, then a source
# link-layer address option (§4.6.1): type 1, length 1 (8 octets, RFC 2464 §6), MAC.
NS_BODY = bytes(4) + LINK_LOCAL + bytes.fromhex("0101") + MAC
# Hand-derived NA body (§4.4): flags byte R=0 S=1 O=1 -> 0x60, 3 reserved bytes, the
# target, then a target link-layer address option: type 2, length 1, MAC.
NA_BODY = bytes.fromhex("60000000") + LINK_LOCAL + bytes.fromhex("0201") + MAC


# -- address mappings ------------------------------------------------------------------


def test_link_local_from_mac() -> None:
    # RFC 4291 Appendix A / RFC 2464 §4: insert ff:fe in the middle, invert the
    # universal/local bit (0x02 of the first byte): 00:aa:00:28:9c:5a ->
    # 02aa:00ff:fe28:9c5a under fe80::/64.
    assert ndp.interface_id_from_mac(MAC) == bytes.fromhex("02aa00fffe289c5a")
    assert ndp.link_local_from_mac(MAC) == LINK_LOCAL
    # A locally administered MAC gets the bit cleared.
    assert ndp.link_local_from_mac(OTHER_MAC)[8:] == bytes.fromhex("000000fffe000002")
    with pytest.raises(ValueError):
        ndp.link_local_from_mac(MAC[:5])


def test_solicited_node_multicast() -> None:
    # RFC 4291 §2.7.1: ff02::1:ff00:0/104 plus the low 24 bits of the address.
    assert ndp.solicited_node_multicast(LINK_LOCAL) == SOLICITED
    assert ndp.solicited_node_multicast(GLOBAL) == bytes.fromhex(
        "ff0200000000000000000001ff000001")
    assert ndp.is_solicited_node(SOLICITED) and not ndp.is_solicited_node(ndp.ALL_NODES)
    with pytest.raises(ValueError):
        ndp.solicited_node_multicast(bytes(4))


def test_multicast_mac() -> None:
    # RFC 2464 §7: 33:33 followed by the last four octets of the multicast address.
    assert ndp.multicast_mac(SOLICITED) == bytes.fromhex("3333ff289c5a")
    assert ndp.multicast_mac(ndp.ALL_NODES) == bytes.fromhex("333300000001")
    assert ndp.multicast_mac(ndp.ALL_ROUTERS) == bytes.fromhex("333300000002")
    with pytest.raises(ValueError, match="multicast"):
        ndp.multicast_mac(LINK_LOCAL)


@given(st.binary(min_size=6, max_size=6))
def test_eui64_properties(mac: bytes) -> None:
    iid = ndp.link_local_from_mac(mac)[8:]
    assert iid[3:5] == b"\xff\xfe" and iid[0] == mac[0] ^ 0x02
    assert iid[1:3] + iid[5:] == mac[1:3] + mac[3:]
    group = ndp.solicited_node_multicast(ndp.link_local_from_mac(mac))
    assert ndp.multicast_mac(group) == b"\x33\x33\xff" + mac[3:]


# -- codecs ------------------------------------------------------------------------------


def test_ns_golden() -> None:
    ns = NeighborSolicitation(LINK_LOCAL, MAC)
    msg = ns.to_message()
    assert msg == Icmpv6Message(Icmpv6Type.NEIGHBOR_SOLICITATION, 0, NS_BODY)
    raw = msg.emit(PEER, SOLICITED)
    assert raw[:2] == b"\x87\x00" and raw[4:] == NS_BODY and len(raw) == 32
    # The checksum, from the RFC 1071 reference over the RFC 8200 §8.1 pseudo header.
    pseudo = PEER + SOLICITED + len(raw).to_bytes(4, "big") + b"\0\0\0\x3a"
    assert rfc1071_sum(pseudo + raw) == 0xFFFF
    assert NeighborSolicitation.from_message(Icmpv6Message.parse(raw, PEER, SOLICITED)) == ns


def test_ns_without_option() -> None:
    ns = NeighborSolicitation(LINK_LOCAL)
    msg = ns.to_message()
    assert msg.body == bytes(4) + LINK_LOCAL and len(msg.emit(PEER, SOLICITED)) == 24
    assert NeighborSolicitation.from_message(msg) == ns


def test_na_golden() -> None:
    na = NeighborAdvertisement(LINK_LOCAL, router=False, solicited=True, override=True,
                               target_lladdr=MAC)
    msg = na.to_message()
    assert msg == Icmpv6Message(Icmpv6Type.NEIGHBOR_ADVERTISEMENT, 0, NA_BODY)
    raw = msg.emit(LINK_LOCAL, PEER)
    assert raw[:2] == b"\x88\x00" and raw[4:] == NA_BODY
    assert NeighborAdvertisement.from_message(Icmpv6Message.parse(raw, LINK_LOCAL, PEER)) == na


@pytest.mark.parametrize(("flags", "byte"), [
    ((True, False, False), 0x80), ((False, True, False), 0x40),
    ((False, False, True), 0x20), ((True, True, True), 0xE0), ((False, False, False), 0),
])
def test_na_flags(flags: tuple[bool, bool, bool], byte: int) -> None:
    na = NeighborAdvertisement(LINK_LOCAL, *flags)
    msg = na.to_message()
    assert msg.body[0] == byte and msg.body[1:4] == bytes(3) and len(msg.body) == 20
    assert NeighborAdvertisement.from_message(msg) == na


def test_reserved_bits_ignored() -> None:
    # §4.3, §4.4: reserved fields are ignored by the receiver.
    ns = Icmpv6Message(135, 0, b"\xff" * 4 + NS_BODY[4:])
    assert NeighborSolicitation.from_message(ns) == NeighborSolicitation(LINK_LOCAL, MAC)
    na = Icmpv6Message(136, 0, b"\x1f\xff\xff\xff" + NA_BODY[4:])
    assert NeighborAdvertisement.from_message(na) == NeighborAdvertisement(
        LINK_LOCAL, False, False, False, MAC)


def test_unknown_options_skipped() -> None:
    nonce = bytes([14, 1]) + b"\x01\x02\x03\x04\x05\x06"  # RFC 3971 nonce option
    mtu = bytes([5, 1, 0, 0, 0, 0, 5, 0xDC])  # MTU option: not for an NS, ignored (§4.3)
    body = bytes(4) + LINK_LOCAL + nonce + mtu + bytes.fromhex("0101") + MAC
    assert NeighborSolicitation.from_message(Icmpv6Message(135, 0, body)).source_lladdr == MAC
    # A target link-layer address option in an NS is not its source address.
    wrong = bytes(4) + LINK_LOCAL + bytes.fromhex("0201") + MAC
    assert NeighborSolicitation.from_message(Icmpv6Message(135, 0, wrong)).source_lladdr is None
    # ...and a source option in an NA is not the target's.
    na = bytes(4) + LINK_LOCAL + bytes.fromhex("0101") + MAC
    assert NeighborAdvertisement.from_message(Icmpv6Message(136, 0, na)).target_lladdr is None


def test_duplicate_option_first_wins() -> None:
    body = NS_BODY + bytes.fromhex("0101") + OTHER_MAC
    assert NeighborSolicitation.from_message(Icmpv6Message(135, 0, body)).source_lladdr == MAC


@pytest.mark.parametrize(("options", "why"), [
    (bytes([14, 0]) + bytes(6), "length 0"),  # §4.6: a zero length must be discarded
    (bytes.fromhex("0102") + MAC, "runs past"),
    (bytes.fromhex("01"), "truncated"),
    (bytes.fromhex("0101") + MAC + b"\x01", "truncated"),
    (bytes.fromhex("0102") + MAC + bytes(8), "Ethernet's is 8"),  # RFC 2464 §6
])
def test_bad_options(options: bytes, why: str) -> None:
    with pytest.raises(WireError, match=why):
        NeighborSolicitation.from_message(Icmpv6Message(135, 0, bytes(4) + LINK_LOCAL + options))


def test_wrong_type_or_short() -> None:
    with pytest.raises(WireError, match="not a neighbor solicitation"):
        NeighborSolicitation.from_message(Icmpv6Message(136, 0, NA_BODY))
    with pytest.raises(WireError, match="not a neighbor advertisement"):
        NeighborAdvertisement.from_message(Icmpv6Message(135, 0, NS_BODY))
    with pytest.raises(WireError, match="shorter than 24"):
        NeighborSolicitation.from_message(Icmpv6Message(135, 0, NS_BODY[:19]))
    with pytest.raises(WireError, match="shorter than 24"):
        NeighborAdvertisement.from_message(Icmpv6Message(136, 0, b""))


def test_emit_misuse() -> None:
    with pytest.raises(ValueError):
        NeighborSolicitation(LINK_LOCAL[:4]).to_message()
    with pytest.raises(ValueError):
        NeighborAdvertisement(LINK_LOCAL, False, False, False, MAC[:4]).to_message()


# -- §7.1.1 -----------------------------------------------------------------------------


def ns_message(body: bytes = NS_BODY, code: int = 0) -> Icmpv6Message:
    return Icmpv6Message(Icmpv6Type.NEIGHBOR_SOLICITATION, code, body)


DAD_NS = ns_message(bytes(4) + LINK_LOCAL)


def test_valid_ns() -> None:
    assert ndp.validate_ns(ns_message(), PEER, SOLICITED, 255) == NeighborSolicitation(
        LINK_LOCAL, MAC)
    assert ndp.validate_ns(ns_message(), PEER, LINK_LOCAL, 255).target == LINK_LOCAL  # NUD
    # Duplicate address detection: from ::, to the solicited-node group, no option.
    assert ndp.validate_ns(DAD_NS, ndp.UNSPECIFIED, SOLICITED, 255).source_lladdr is None


@pytest.mark.parametrize(("msg", "src", "dst", "hops", "why"), [
    (ns_message(), PEER, SOLICITED, 254, "hop limit 254"),
    (ns_message(), PEER, SOLICITED, 64, "hop limit 64"),
    (ns_message(code=1), PEER, SOLICITED, 255, "ICMP code 1"),
    (ns_message(NS_BODY[:19]), PEER, SOLICITED, 255, "shorter than 24"),
    (ns_message(NS_BODY[:20] + bytes([14, 0]) + bytes(6)), PEER, SOLICITED, 255, "length 0"),
    (ns_message(bytes(4) + SOLICITED), PEER, SOLICITED, 255, "multicast target"),
    (DAD_NS, ndp.UNSPECIFIED, LINK_LOCAL, 255, "solicited-node"),
    (DAD_NS, ndp.UNSPECIFIED, ndp.ALL_NODES, 255, "solicited-node"),
    (ns_message(), ndp.UNSPECIFIED, SOLICITED, 255, "source link-layer"),
    (Icmpv6Message(136, 0, NA_BODY), PEER, SOLICITED, 255, "not a neighbor solicitation"),
])
def test_ns_rules(msg: Icmpv6Message, src: bytes, dst: bytes, hops: int, why: str) -> None:
    with pytest.raises(WireError, match=why):
        ndp.validate_ns(msg, src, dst, hops)


# -- §7.1.2 -----------------------------------------------------------------------------


def na_message(body: bytes = NA_BODY, code: int = 0) -> Icmpv6Message:
    return Icmpv6Message(Icmpv6Type.NEIGHBOR_ADVERTISEMENT, code, body)


UNSOLICITED_NA = na_message(b"\x20\0\0\0" + NA_BODY[4:])


def test_valid_na() -> None:
    na = ndp.validate_na(na_message(), LINK_LOCAL, PEER, 255)
    assert na.solicited and na.override and not na.router and na.target_lladdr == MAC
    # An unsolicited advertisement to all nodes is fine.
    assert not ndp.validate_na(UNSOLICITED_NA, LINK_LOCAL, ndp.ALL_NODES, 255).solicited


@pytest.mark.parametrize(("msg", "dst", "hops", "why"), [
    (na_message(), PEER, 0, "hop limit 0"),
    (na_message(code=3), PEER, 255, "ICMP code 3"),
    (na_message(NA_BODY[:10]), PEER, 255, "shorter than 24"),
    (na_message(NA_BODY + b"\x05"), PEER, 255, "truncated"),
    (na_message(NA_BODY[:20] + bytes([2, 0]) + bytes(6)), PEER, 255, "length 0"),
    (na_message(b"\x60\0\0\0" + ndp.ALL_NODES), PEER, 255, "multicast target"),
    (na_message(), ndp.ALL_NODES, 255, "solicited neighbor advertisement sent to a multicast"),
    (Icmpv6Message(135, 0, NS_BODY), PEER, 255, "not a neighbor advertisement"),
])
def test_na_rules(msg: Icmpv6Message, dst: bytes, hops: int, why: str) -> None:
    with pytest.raises(WireError, match=why):
        ndp.validate_na(msg, LINK_LOCAL, dst, hops)


def test_validation_misuse() -> None:
    with pytest.raises(ValueError):
        ndp.validate_ns(ns_message(), PEER[:4], SOLICITED, 255)
    with pytest.raises(ValueError):
        ndp.validate_na(na_message(), PEER, SOLICITED[:4], 255)


# -- properties --------------------------------------------------------------------------

macs = st.none() | st.binary(min_size=6, max_size=6)
targets = st.binary(min_size=16, max_size=16)


@given(targets, macs)
def test_ns_round_trip(target: bytes, mac: bytes | None) -> None:
    ns = NeighborSolicitation(target, mac)
    raw = ns.to_message().emit(PEER, SOLICITED)
    assert NeighborSolicitation.from_message(Icmpv6Message.parse(raw, PEER, SOLICITED)) == ns


@given(targets, st.booleans(), st.booleans(), st.booleans(), macs)
def test_na_round_trip(target: bytes, r: bool, s: bool, o: bool, mac: bytes | None) -> None:
    na = NeighborAdvertisement(target, r, s, o, mac)
    raw = na.to_message().emit(LINK_LOCAL, PEER)
    back = NeighborAdvertisement.from_message(Icmpv6Message.parse(raw, LINK_LOCAL, PEER))
    assert back == na and dataclasses.replace(back, router=not r) != na


@given(st.sampled_from([135, 136]), st.integers(0, 3), st.binary(max_size=80),
       st.tuples(st.sampled_from([ndp.UNSPECIFIED, PEER]),
                 st.sampled_from([SOLICITED, PEER, ndp.ALL_NODES]), st.sampled_from([255, 254])))
def test_arbitrary_bodies_raise_only_wire_error(
    kind: int, code: int, body: bytes, where: tuple[bytes, bytes, int]
) -> None:
    msg = Icmpv6Message(kind, code, body)
    for read in (NeighborSolicitation.from_message, NeighborAdvertisement.from_message):
        with contextlib.suppress(WireError):
            read(msg)
    for check in (ndp.validate_ns, ndp.validate_na):
        with contextlib.suppress(WireError):
            check(msg, *where)


@given(st.binary(max_size=64))
def test_parse_options_total(data: bytes) -> None:
    try:
        options = ndp.parse_options(data)
    except WireError:
        return
    assert sum(len(value) + 2 for _, value in options) == len(data)
