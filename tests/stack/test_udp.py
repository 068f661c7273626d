"""UDP headers (RFC 768)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.wire import udp
from stack.wire.udp import UdpHeader
from virtio.errors import WireError


def test_golden_bytes() -> None:
    # Hand-built: port 53 -> 1024, length 12, checksum 0xbeef.
    raw = bytes.fromhex("0035040000" "0cbeef")
    h = UdpHeader.parse(raw + b"abcd")
    assert h == UdpHeader(53, 1024, 12, 0xBEEF)
    assert h.emit() == raw
    assert raw[udp.OFF_LENGTH:udp.OFF_LENGTH + 2] == b"\x00\x0c"
    assert raw[udp.OFF_CHECKSUM:udp.OFF_CHECKSUM + 2] == b"\xbe\xef"


@pytest.mark.parametrize("raw", [b"", bytes(7), bytes.fromhex("0000000000070000"),
                                 bytes.fromhex("0000000000100000") + bytes(4)])
def test_malformed(raw: bytes) -> None:
    with pytest.raises(WireError):
        UdpHeader.parse(raw)


def test_zero_length_for_jumbograms() -> None:
    raw = bytes(8)
    with pytest.raises(WireError):
        UdpHeader.parse(raw)
    assert UdpHeader.parse(raw, allow_zero_length=True).length == 0


def test_emit_range() -> None:
    with pytest.raises(ValueError):
        UdpHeader(70000, 1, 8).emit()


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(8, 600), st.integers(0, 0xFFFF))
def test_round_trip(sport: int, dport: int, length: int, csum: int) -> None:
    h = UdpHeader(sport, dport, length, csum)
    assert UdpHeader.parse(h.emit() + bytes(length - 8)) == h
