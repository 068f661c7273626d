"""virtio_net_hdr parse/emit in its three sizes (§5.1.6)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from virtio.constants import GSO_ECN, GsoType, NetHdrFlag
from virtio.errors import DeviceProtocolError
from virtio.net_hdr import NetHdr

HDR = NetHdr(
    flags=NetHdrFlag.NEEDS_CSUM,
    gso_type=GsoType.TCPV4 | GSO_ECN,
    hdr_len=54,
    gso_size=1448,
    csum_start=34,
    csum_offset=16,
    num_buffers=2,
    hash_value=0xDEADBEEF,
    hash_report=1,
)


def test_exact_bytes_of_each_size() -> None:
    # Field order and widths from §5.1.6: u8 flags, u8 gso_type, le16 hdr_len, le16
    # gso_size, le16 csum_start, le16 csum_offset, le16 num_buffers, then le32
    # hash_value, le16 hash_report, le16 padding.
    assert HDR.emit(10).hex() == "01813600a8052200" "1000"
    assert HDR.emit(12).hex() == "01813600a80522001000" "0200"
    assert HDR.emit(20).hex() == "01813600a805220010000200" "efbeadde" "0100" "0000"


def test_properties() -> None:
    assert HDR.needs_csum and not HDR.data_valid
    assert HDR.gso_kind == GsoType.TCPV4 and HDR.ecn
    assert HDR.with_(flags=NetHdrFlag.DATA_VALID).data_valid


@pytest.mark.parametrize("size", [10, 12, 20])
def test_roundtrip_keeps_the_fields_of_that_size(size: int) -> None:
    back = NetHdr.parse(HDR.emit(size), size)
    if size == 10:
        assert back == HDR.with_(num_buffers=0, hash_value=0, hash_report=0)
    elif size == 12:
        assert back == HDR.with_(hash_value=0, hash_report=0)
    else:
        assert back == HDR


def test_short_buffer_is_the_drivers_fault() -> None:
    with pytest.raises(DeviceProtocolError) as info:
        NetHdr.parse(b"\0" * 11, 12)
    assert info.value.rule == "net-hdr-truncated"


def test_bad_size_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        NetHdr.parse(b"\0" * 16, 16)
    with pytest.raises(ValueError):
        HDR.emit(11)


@given(st.binary(min_size=20, max_size=20), st.sampled_from([10, 12, 20]))
def test_parse_emit_is_identity_on_bytes(raw: bytes, size: int) -> None:
    hdr = NetHdr.parse(raw, size)
    out = hdr.emit(size)
    if size == 20:
        assert out == raw[:18] + b"\0\0"  # padding is emitted as zero
    else:
        assert out == raw[:size]
