"""IPv4 headers (RFC 791)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.wire import ipv4
from stack.wire.checksum import internet_checksum
from stack.wire.ipv4 import FLAG_DF, FLAG_MF, IpProtocol, Ipv4Header, header_checksum
from virtio.errors import WireError

SRC = bytes([192, 168, 0, 1])
DST = bytes([192, 168, 0, 199])
# Hand-checked header (UDP, total length 0x73, DF, TTL 64), checksum b861.
GOLDEN = bytes.fromhex("4500007300004000401" "1b861c0a80001c0a800c7")


def test_parse_golden() -> None:
    h = Ipv4Header.parse(GOLDEN + bytes(0x73 - 20), verify_checksum=True)
    assert h == Ipv4Header(SRC, DST, IpProtocol.UDP, 0x73, ident=0, ttl=64, flags=FLAG_DF,
                           checksum=0xB861)
    assert h.dont_fragment and not h.more_fragments and not h.is_fragment
    assert h.header_len == 20 and h.ihl == 5 and h.payload_len == 0x73 - 20


def test_emit_golden() -> None:
    h = Ipv4Header(SRC, DST, IpProtocol.UDP, 0x73, ttl=64, flags=FLAG_DF)
    assert h.emit() == GOLDEN
    assert header_checksum(GOLDEN[:10] + b"\0\0" + GOLDEN[12:]) == 0xB861


def test_offsets_match_the_layout() -> None:
    raw = Ipv4Header(SRC, DST, 6, 1500, ident=0x1234, flags=FLAG_MF, frag_offset=3).emit()
    assert raw[ipv4.OFF_TOTAL_LEN:ipv4.OFF_TOTAL_LEN + 2] == (1500).to_bytes(2, "big")
    assert raw[ipv4.OFF_IDENT:ipv4.OFF_IDENT + 2] == b"\x12\x34"
    assert raw[ipv4.OFF_FLAGS_FRAG:ipv4.OFF_FLAGS_FRAG + 2] == (FLAG_MF | 3).to_bytes(2, "big")
    assert raw[ipv4.OFF_PROTOCOL] == 6
    assert raw[ipv4.OFF_SRC:ipv4.OFF_SRC + 4] == SRC
    assert raw[ipv4.OFF_DST:ipv4.OFF_DST + 4] == DST
    assert internet_checksum(raw) == 0


def test_options_round_trip() -> None:
    h = Ipv4Header(SRC, DST, 6, 24 + 10, options=b"\x94\x04\x00\x00")  # router alert
    raw = h.emit()
    assert raw[0] == 0x46
    back = Ipv4Header.parse(raw + bytes(10), verify_checksum=True)
    assert back.options == h.options and back.header_len == 24


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (GOLDEN[:19], "truncated"),
        (b"\x65" + GOLDEN[1:] + bytes(100), "version"),
        (b"\x44" + GOLDEN[1:] + bytes(100), "IHL"),
        (b"\x4f" + GOLDEN[1:] + bytes(10), "truncated"),
        (GOLDEN + bytes(10), "exceeds"),
        (GOLDEN[:2] + b"\x00\x13" + GOLDEN[4:] + bytes(100), "shorter"),
    ],
)
def test_malformed_headers(raw: bytes, why: str) -> None:
    with pytest.raises(WireError, match=why):
        Ipv4Header.parse(raw)


def test_checksum_verification_and_zero_length() -> None:
    bad = GOLDEN[:10] + b"\x00\x00" + GOLDEN[12:] + bytes(100)
    Ipv4Header.parse(bad)
    with pytest.raises(WireError, match="checksum"):
        Ipv4Header.parse(bad, verify_checksum=True)
    zero = GOLDEN[:2] + b"\0\0" + GOLDEN[4:]
    with pytest.raises(WireError):
        Ipv4Header.parse(zero)
    assert Ipv4Header.parse(zero, allow_zero_length=True).total_length == 0


def test_emit_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        Ipv4Header(b"\0", DST, 6, 20).emit()
    with pytest.raises(ValueError):
        Ipv4Header(SRC, DST, 6, 20, options=b"\0\0").emit()
    with pytest.raises(ValueError):
        Ipv4Header(SRC, DST, 6, 70000).emit()
    with pytest.raises(ValueError):
        Ipv4Header(SRC, DST, 6, 20, frag_offset=0x2000).emit()


headers = st.builds(
    Ipv4Header,
    src=st.binary(min_size=4, max_size=4),
    dst=st.binary(min_size=4, max_size=4),
    protocol=st.integers(0, 255),
    total_length=st.integers(60, 2000),
    ident=st.integers(0, 0xFFFF),
    ttl=st.integers(0, 255),
    tos=st.integers(0, 255),
    flags=st.sampled_from([0, FLAG_DF, FLAG_MF, FLAG_DF | FLAG_MF]),
    frag_offset=st.integers(0, 0x1FFF),
    options=st.integers(0, 10).map(lambda n: bytes(range(4 * n))),
)


@given(headers)
def test_round_trip(h: Ipv4Header) -> None:
    raw = h.emit()
    back = Ipv4Header.parse(raw + bytes(h.total_length - len(raw)), verify_checksum=True)
    assert back.emit() == raw
    assert back == dataclasses.replace(h, checksum=back.checksum)
