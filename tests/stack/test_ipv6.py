"""IPv6 headers (RFC 8200), the extension-header walk and the fragment header."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.wire import ipv6
from stack.wire.ipv6 import (
    ExtHeader,
    FragmentHeader,
    Ipv6Header,
    find_jumbo_payload,
    routing_final_destination,
    walk_extension_headers,
)
from virtio.errors import WireError

SRC = bytes.fromhex("20010db8000000000000000000000001")
DST = bytes.fromhex("20010db8000000000000000000000002")
FINAL = bytes.fromhex("20010db8000000000000000000000099")


def test_golden_fixed_header() -> None:
    # Hand-built: version 6, traffic class 0x12, flow label 0x34567, payload 8, UDP, hops 64.
    raw = bytes.fromhex("61234567" "0008" "11" "40") + SRC + DST
    h = Ipv6Header.parse(raw + bytes(8))
    assert h == Ipv6Header(SRC, DST, 17, 8, 64, 0x12, 0x34567)
    assert h.emit() == raw
    assert raw[ipv6.OFF_PAYLOAD_LEN:ipv6.OFF_PAYLOAD_LEN + 2] == b"\x00\x08"
    assert raw[ipv6.OFF_NEXT_HEADER] == 17
    assert raw[ipv6.OFF_SRC:ipv6.OFF_SRC + 16] == SRC
    assert raw[ipv6.OFF_DST:ipv6.OFF_DST + 16] == DST


@pytest.mark.parametrize("raw", [
    bytes(39),
    bytes.fromhex("40000000000011ff") + SRC + DST,  # version 4
    bytes.fromhex("60000000000811ff") + SRC + DST,  # payload length beyond the buffer
])
def test_malformed(raw: bytes) -> None:
    with pytest.raises(WireError):
        Ipv6Header.parse(raw)


def test_zero_payload_length() -> None:
    raw = bytes.fromhex("60000000000006ff") + SRC + DST
    assert Ipv6Header.parse(raw).payload_length == 0  # 0 bytes present, 0 claimed
    assert Ipv6Header.parse(raw + bytes(4), allow_zero_length=True).payload_length == 0


def hbh(next_header: int, options: bytes = b"\x01\x04\0\0\0\0") -> bytes:
    body = bytes([next_header, (len(options) + 2) // 8 - 1]) + options
    assert len(body) % 8 == 0
    return body


def routing0(next_header: int, addrs: list[bytes], left: int) -> bytes:
    return bytes([next_header, 2 * len(addrs), 0, left, 0, 0, 0, 0]) + b"".join(addrs)


def srh(next_header: int, segments: list[bytes], left: int) -> bytes:
    # RFC 8754: routing type 4, Segment List[0] is the last segment.
    return bytes([next_header, 2 * len(segments), 4, left, len(segments) - 1, 0, 0, 0]) + \
        b"".join(segments)


def test_walk_chain() -> None:
    frag = FragmentHeader(6, 0, True, 0xDEADBEEF).emit()
    chain = hbh(43) + routing0(60, [FINAL], 1) + hbh(44) + frag
    walk = walk_extension_headers(chain, 0, 0)
    assert [h.kind for h in walk.headers] == [0, 43, 60, 44]
    assert walk.upper_protocol == 6
    assert walk.upper_offset == len(chain)
    assert walk.has(ExtHeader.FRAGMENT)
    assert walk.find(ExtHeader.ROUTING) is not None
    assert walk.find(ExtHeader.AH) is None
    rt = walk.find(ExtHeader.ROUTING)
    assert rt is not None and routing_final_destination(chain, rt) == FINAL


def test_walk_stops_at_kinds_not_crossed() -> None:
    chain = hbh(44) + FragmentHeader(17, 8, False, 1).emit()
    walk = walk_extension_headers(chain, 0, 0, kinds=frozenset({0, 43, 60}))
    assert walk.upper_protocol == 44 and walk.upper_offset == 8


def test_walk_ah_length_in_words() -> None:
    ah = bytes([6, 4]) + bytes(22)  # (4 + 2) * 4 = 24 bytes
    walk = walk_extension_headers(ah, 51, 0)
    assert walk.headers[0].length == 24 and walk.upper_protocol == 6


@pytest.mark.parametrize("chain", [b"\x06", hbh(6)[:7], bytes([6, 1]) + bytes(6)])
def test_walk_truncated(chain: bytes) -> None:
    with pytest.raises(WireError):
        walk_extension_headers(chain, 0, 0)


def test_routing_final_destination() -> None:
    r = srh(6, [FINAL, DST], 1)
    walk = walk_extension_headers(r, 43, 0)
    assert routing_final_destination(r, walk.headers[0]) == FINAL
    done = routing0(6, [FINAL], 0)
    walk = walk_extension_headers(done, 43, 0)
    assert routing_final_destination(done, walk.headers[0]) is None


def test_jumbo_option() -> None:
    opt = b"\xc2\x04" + (100000).to_bytes(4, "big")
    h = hbh(6, opt)
    walk = walk_extension_headers(h, 0, 0)
    assert find_jumbo_payload(h, walk.headers[0]) == 100000
    plain = hbh(6)
    assert find_jumbo_payload(plain, walk_extension_headers(plain, 0, 0).headers[0]) is None
    bad = hbh(6, b"\xc2\x02\0\0\x01\x00")
    with pytest.raises(WireError):
        find_jumbo_payload(bad, walk_extension_headers(bad, 0, 0).headers[0])


def test_fragment_header_golden() -> None:
    # Hand-built: next header UDP, offset 1448 bytes (181 units), M set, id 0x01020304.
    raw = bytes.fromhex("1100" "05a9" "01020304")
    f = FragmentHeader.parse(raw)
    assert f == FragmentHeader(17, 1448, True, 0x01020304)
    assert f.emit() == raw
    with pytest.raises(WireError):
        FragmentHeader.parse(raw[:7])
    with pytest.raises(ValueError):
        FragmentHeader(17, 3, False, 0).emit()


fragments = st.builds(
    FragmentHeader,
    next_header=st.integers(0, 255),
    offset=st.integers(0, 0x1FFF).map(lambda units: units * 8),
    more=st.booleans(),
    ident=st.integers(0, 2**32 - 1),
    reserved=st.integers(0, 255),
    res2=st.integers(0, 3),
)


@given(fragments)
def test_fragment_round_trip(f: FragmentHeader) -> None:
    assert FragmentHeader.parse(f.emit()) == f


@given(st.integers(0, 255), st.integers(0, 600), st.integers(0, 255), st.integers(0, 255),
       st.integers(0, 0xFFFFF))
def test_header_round_trip(nxt: int, plen: int, hops: int, tc: int, flow: int) -> None:
    h = Ipv6Header(SRC, DST, nxt, plen, hops, tc, flow)
    assert Ipv6Header.parse(h.emit() + bytes(plen)) == h


def test_emit_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        Ipv6Header(SRC[:4], DST, 6, 0).emit()
    with pytest.raises(ValueError):
        Ipv6Header(SRC, DST, 6, 0, flow_label=1 << 20).emit()
    with pytest.raises(ValueError):
        Ipv6Header(SRC, DST, 6, 70000).emit()
