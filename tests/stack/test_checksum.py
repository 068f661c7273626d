"""The Internet checksum (RFC 1071), its numpy batch forms and the pseudo headers."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.wire.checksum import (
    checksum_rows,
    finish,
    fold,
    fold_array,
    internet_checksum,
    oc_add,
    oc_neg,
    oc_sub,
    ones_complement_sum,
    pseudo_header_sum_v4,
    pseudo_header_sum_v6,
    raw_sum,
    sum_ranges,
    sum_rows,
    sum_rows_le,
    swap16,
    verify,
)


def reference_sum(data: bytes) -> int:
    """RFC 1071 §4.1 (the C reference loop), transcribed: 16-bit words, carries folded."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_rfc1071_numerical_example() -> None:
    # RFC 1071 §3, "Numerical Examples": bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_complement_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D
    assert verify(data + (0x220D).to_bytes(2, "big"))


def test_ipv4_header_golden() -> None:
    # A hand-checked IPv4 header (UDP 192.168.0.1 -> 192.168.0.199, total length 0x73,
    # DF, TTL 64): its checksum field holds b861 and the whole header sums to ffff.
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert internet_checksum(header) == 0xB861
    assert verify(header[:10] + b"\xb8\x61" + header[12:])


def test_odd_length_pads_with_zero() -> None:
    assert ones_complement_sum(b"\x12") == 0x1200
    assert ones_complement_sum(b"\x12\x34\x56") == 0x1234 + 0x5600


def test_fold_never_gives_zero_for_nonzero() -> None:
    assert fold(0) == 0
    assert fold(0xFFFF) == 0xFFFF
    assert fold(0x10000) == 1
    assert fold(0x1FFFE) == 0xFFFF
    assert ones_complement_sum(b"\xff\xff\xff\xff") == 0xFFFF  # -0 + -0 stays -0
    assert finish(0) == 0xFFFF and finish(0xFFFF) == 0
    with pytest.raises(ValueError):
        fold(-1)


def test_ones_complement_helpers() -> None:
    assert oc_add(0xFFFF, 1) == 1
    assert oc_add(0x8000, 0x8000) == 1
    assert oc_neg(0x1234) == 0xEDCB
    assert oc_sub(5, 3) == 2
    assert oc_sub(3, 5) == 0xFFFD  # -2
    assert oc_sub(7, 7) == 0xFFFF  # a - a is -0
    assert swap16(0x1234) == 0x3412


def test_pseudo_header_v4_golden() -> None:
    # 10.0.0.1 -> 10.0.0.2, TCP, length 20: 0a00+0001+0a00+0002+0006+0014 = 0x141d.
    assert pseudo_header_sum_v4(bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), 6, 20) == 0x141D
    with pytest.raises(ValueError):
        pseudo_header_sum_v4(b"\0" * 3, b"\0" * 4, 6, 0)


def test_pseudo_header_v6_32bit_length() -> None:
    src = bytes(15) + b"\x01"
    dst = bytes(15) + b"\x02"
    # RFC 8200 §8.1: 32-bit length, so a jumbogram length adds both halves.
    assert pseudo_header_sum_v6(src, dst, 17, 0x12345) == 1 + 2 + 0x1 + 0x2345 + 17
    with pytest.raises(ValueError):
        pseudo_header_sum_v6(src, dst, 17, -1)


@given(st.binary(max_size=10000), st.integers(0, 0xFFFF))
def test_scalar_matches_reference(data: bytes, initial: int) -> None:
    assert ones_complement_sum(data) == reference_sum(data)
    assert ones_complement_sum(data, initial) == fold(reference_sum(data) + initial)
    assert fold(raw_sum(data)) == reference_sum(data)


@settings(max_examples=50)
@given(st.integers(4096, 70000), st.integers(0, 2**32))
def test_numpy_path_matches_reference_on_large_buffers(n: int, seed: int) -> None:
    data = random.Random(seed).randbytes(n)
    assert ones_complement_sum(data) == reference_sum(data)


@given(st.integers(1, 12), st.integers(0, 300), st.binary(min_size=3600, max_size=3600))
def test_sum_rows_matches_scalar(rows: int, width: int, pool: bytes) -> None:
    raw = (pool * 2)[: rows * width]
    arr = np.frombuffer(raw, dtype=np.uint8).reshape(rows, width)
    expected = [reference_sum(raw[i * width:(i + 1) * width]) for i in range(rows)]
    assert sum_rows(arr).tolist() == expected
    checks = checksum_rows(arr, 0x1234).tolist()
    assert checks == [~fold(e + 0x1234) & 0xFFFF for e in expected]


def test_sum_rows_le_is_the_byte_swap() -> None:
    arr = np.frombuffer(bytes(range(256)) * 2, dtype=np.uint8).reshape(4, 128)
    le = fold_array(sum_rows_le(arr)).tolist()
    be = sum_rows(arr).tolist()
    assert [swap16(x) for x in le] == be


def test_sum_rows_rejects_wrong_arrays() -> None:
    with pytest.raises(ValueError):
        sum_rows(np.zeros(4, dtype=np.uint8))
    with pytest.raises(ValueError):
        sum_rows(np.zeros((2, 2), dtype=np.uint16))


@given(st.binary(min_size=1, max_size=2000), st.data())
def test_sum_ranges_matches_scalar(data: bytes, draw: st.DataObject) -> None:
    ranges = draw.draw(st.lists(
        st.tuples(st.integers(0, len(data)), st.integers(0, len(data))).map(
            lambda t: (min(t), max(t))), max_size=20))
    assert sum_ranges(data, ranges) == [reference_sum(data[a:b]) for a, b in ranges]


def test_sum_ranges_bounds() -> None:
    assert sum_ranges(b"abc", []) == []
    with pytest.raises(ValueError):
        sum_ranges(b"abc", [(2, 4)])
