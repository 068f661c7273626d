"""Sequence-number arithmetic modulo 2**32 (RFC 9293 §3.4)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stack.tcp import seq as sq

u32 = st.integers(0, sq.MASK)


def test_comparisons_across_the_wrap() -> None:
    assert sq.lt(0xFFFFFFF0, 0x10)
    assert sq.gt(0x10, 0xFFFFFFF0)
    assert sq.le(5, 5) and sq.ge(5, 5) and not sq.lt(5, 5)
    assert sq.diff(0x10, 0xFFFFFFF0) == 0x20
    assert sq.diff(0xFFFFFFF0, 0x10) == -0x20
    assert sq.add(0xFFFFFFFF, 2) == 1


def test_half_space_boundary() -> None:
    assert sq.diff(1 << 31, 0) == -(1 << 31)  # ambiguous half: counts as behind
    assert sq.diff((1 << 31) - 1, 0) == (1 << 31) - 1


def test_unwrap_to_nearest_position() -> None:
    ref = (1 << 32) + 100  # one wrap past zero
    assert sq.unwrap(90, ref) == (1 << 32) + 90
    assert sq.unwrap(0xFFFFFFF0, ref) == (1 << 32) - 16
    assert sq.unwrap(200, 0xFFFFFF00) == (1 << 32) + 200
    assert sq.wrap((1 << 32) + 7) == 7


@given(u32, st.integers(-(1 << 31), (1 << 31) - 1), st.integers(0, 1 << 40))
def test_unwrap_inverts_wrap(a: int, d: int, base: int) -> None:
    ref = base + a
    pos = ref + d
    assert sq.unwrap(sq.wrap(pos), ref) == pos
    assert sq.diff(sq.wrap(pos), sq.wrap(ref)) == d
