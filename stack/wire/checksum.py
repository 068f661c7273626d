"""The Internet checksum (RFC 1071) and the pseudo-header sums of TCP and UDP.

Conventions used throughout (and by the device's offload engines):

- A *sum* is the 16-bit ones' complement sum of big-endian 16-bit words with end-around
  carry, *not* complemented. Folding a non-zero integer always gives a value in
  ``1..0xFFFF`` (ones' complement arithmetic never produces +0 from a non-zero input), and
  ``0`` only for an all-zero input. Because ``2**16 ≡ 1 (mod 0xFFFF)``, the folded sum
  of any integer depends only on the integer modulo ``0xFFFF``; this is what makes the
  batched numpy sums below exact.
- A *checksum* is the ones' complement of a sum: ``~sum & 0xFFFF`` (RFC 1071 §1).
- Odd-length data is padded with one zero byte at the end (RFC 1071 §1, RFC 793, RFC 768).
- The sum is byte-order independent (RFC 1071 §2(B)): summing little-endian words and
  swapping the two bytes of the folded result gives the big-endian sum. The numpy
  functions use that to sum native words without byte swapping every word.

Scalar helpers work on one buffer; :func:`sum_rows` / :func:`checksum_rows` work on all
the rows of a 2-D ``uint8`` array at once (all segments of a super-packet), and
:func:`sum_ranges` on a list of ranges of one buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

MASK16 = 0xFFFF
ZERO_CHECKSUM_REPLACEMENT = 0xFFFF
"""RFC 768: a computed UDP checksum of 0 is sent as all ones (0 means "no checksum")."""

_NUMPY_THRESHOLD = 4096
"""Below this many bytes ``int.from_bytes`` is as fast as numpy (NOTES-REAL-PEERS.md)."""

Buffer = bytes | bytearray | memoryview
U8Array = npt.NDArray[np.uint8]
U64Array = npt.NDArray[np.uint64]


# Scalar ones' complement arithmetic


def fold(value: int) -> int:
    """Fold a non-negative integer to 16 bits with end-around carry.

    Equivalent to repeatedly adding the high part to the low 16 bits: the result is 0
    only for 0, and otherwise in ``1..0xFFFF`` congruent to ``value`` modulo 0xFFFF.
    """
    if value < 0:
        raise ValueError("ones' complement sums are folded from non-negative integers")
    if value == 0:
        return 0
    return (value - 1) % MASK16 + 1


def oc_add(a: int, b: int) -> int:
    """Ones' complement sum of two 16-bit values (RFC 1071 ``+'``)."""
    return fold(a + b)


def oc_neg(a: int) -> int:
    """Ones' complement negation of a 16-bit value (``~a``)."""
    return ~a & MASK16


def oc_sub(a: int, b: int) -> int:
    """``a - b`` in ones' complement: ``a + ~b``."""
    return fold(a + (~b & MASK16))


def swap16(value: int) -> int:
    """Swap the two bytes of a 16-bit value."""
    return ((value & 0xFF) << 8) | ((value >> 8) & 0xFF)


def finish(total: int) -> int:
    """The checksum of a (not yet folded) sum: ``~fold(total) & 0xFFFF``."""
    return ~fold(total) & MASK16


# Sums of one buffer


def _as_bytes_view(data: Buffer) -> memoryview:
    view = data if isinstance(data, memoryview) else memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view


def raw_sum(data: Buffer) -> int:
    """The *unfolded* sum of the big-endian 16-bit words of ``data`` (zero-padded)."""
    view = _as_bytes_view(data)
    n = len(view)
    if n >= _NUMPY_THRESHOLD:
        return _raw_sum_numpy(np.frombuffer(view, dtype=np.uint8))
    value = int.from_bytes(view, "big")
    # Each big-endian 16-bit word w_i has weight 2**(16 i) ≡ 1 (mod 0xFFFF), so the
    # big integer is congruent to the plain sum of its words. An odd length means the
    # bytes sit one byte lower than the padded words: multiply by 256.
    if n & 1:
        value <<= 8
    return value


def _raw_sum_numpy(arr: U8Array) -> int:
    n = arr.shape[0]
    even = n & ~1
    total = 0
    if even:
        words = arr[:even].view(">u2")
        total = int(words.sum(dtype=np.uint64))
    if n & 1:
        total += int(arr[n - 1]) << 8
    return total


def ones_complement_sum(data: Buffer, initial: int = 0) -> int:
    """The folded 16-bit ones' complement sum of ``data`` plus ``initial`` (RFC 1071)."""
    return fold(raw_sum(data) + initial)


def internet_checksum(data: Buffer, initial: int = 0) -> int:
    """The Internet checksum of ``data``: the complement of its sum plus ``initial``.

    ``initial`` is usually a pseudo-header sum. A buffer that already contains a correct
    checksum yields 0 (verification, RFC 1071 §1).
    """
    return finish(raw_sum(data) + initial)


def verify(data: Buffer, initial: int = 0) -> bool:
    """True when ``data`` (with its checksum field in place) sums to all ones."""
    return fold(raw_sum(data) + initial) == MASK16


# Pseudo headers (not complemented sums)


def pseudo_header_sum_v4(src: bytes, dst: bytes, protocol: int, length: int) -> int:
    """Sum of the IPv4 pseudo header of TCP (RFC 793 §3.1) and UDP (RFC 768):
    source, destination, zero, protocol, TCP/UDP length.

    A length over 65535 (a Linux BIG TCP packet, IPv4 total length 0) is added as a
    number, as Linux ``csum_tcpudp_nofold`` does with its 32-bit length; for any length
    the 16-bit field can hold this is the RFC pseudo header."""
    if len(src) != 4 or len(dst) != 4:
        raise ValueError("IPv4 addresses are 4 bytes")
    if not 0 <= protocol <= 0xFF or length < 0:
        raise ValueError("protocol is 8 bits and length non-negative")
    addr = int.from_bytes(src, "big") + int.from_bytes(dst, "big")
    return fold(addr + protocol + length)


def pseudo_header_sum_v6(src: bytes, dst: bytes, next_header: int, length: int) -> int:
    """Sum of the IPv6 pseudo header (RFC 8200 §8.1): source, destination (the final
    destination when a Routing header is present), 32-bit upper-layer packet length,
    three zero bytes and the next header value."""
    if len(src) != 16 or len(dst) != 16:
        raise ValueError("IPv6 addresses are 16 bytes")
    if not 0 <= next_header <= 0xFF or not 0 <= length <= 0xFFFFFFFF:
        raise ValueError("next header is 8 bits and length 32 bits")
    addr = int.from_bytes(src, "big") + int.from_bytes(dst, "big")
    return fold(addr + (length >> 16) + (length & MASK16) + next_header)


# Batched numpy sums


_U8_MASK = np.uint64(0xFF)
_U8_SHIFT = np.uint64(8)
_M16 = np.uint64(0xFFFF)
_S16 = np.uint64(16)


def fold_array(values: npt.NDArray[Any]) -> U64Array:
    """Fold every element of an integer array to 16 bits with end-around carry (0 only
    for 0), as :func:`fold` does for one integer."""
    v = np.asarray(values, dtype=np.uint64)
    v = (v & _M16) + (v >> _S16)
    v = (v & _M16) + (v >> _S16)
    v = (v & _M16) + (v >> _S16)
    return (v & _M16) + (v >> _S16)


def swap16_array(values: npt.NDArray[Any]) -> U64Array:
    v = np.asarray(values, dtype=np.uint64)
    return ((v & _U8_MASK) << _U8_SHIFT) | ((v >> _U8_SHIFT) & _U8_MASK)


def _rows_u8(rows: npt.NDArray[Any]) -> U8Array:
    if not isinstance(rows, np.ndarray):
        raise ValueError("rows must be a numpy array")
    if rows.dtype != np.uint8 or rows.ndim != 2:
        raise ValueError("rows must be a 2-D uint8 array")
    return rows


def sum_rows_le(rows: U8Array) -> U64Array:
    """Unfolded sums of the *little-endian* 16-bit words of every row.

    The hot path of the segmentation engine: the caller folds, adds its terms in the
    same little-endian domain and swaps once. Rows must have an even length and a
    contiguous last axis (a column slice of a C-contiguous array is fine); an odd row
    length is handled by :func:`sum_rows`.
    """
    width = rows.shape[1]
    if width == 0:
        return np.zeros(rows.shape[0], dtype=np.uint64)
    words = rows.view("<u2")
    if width <= 131070:
        # 65535 words of at most 0xFFFF each fit in 32 bits: accumulate in uint32.
        return np.asarray(words.sum(axis=1, dtype=np.uint32), dtype=np.uint64)
    return np.asarray(words.sum(axis=1, dtype=np.uint64), dtype=np.uint64)  # pragma: no cover


def sum_rows(rows: npt.NDArray[Any]) -> U64Array:
    """Folded ones' complement sums (big-endian words, zero-padded) of every row of a
    2-D ``uint8`` array, in one batched call."""
    arr = _rows_u8(rows)
    if arr.shape[1] % 2 or arr.strides[1] != 1:
        width = arr.shape[1] + (arr.shape[1] % 2)
        padded = np.zeros((arr.shape[0], width), dtype=np.uint8)
        padded[:, : arr.shape[1]] = arr
        arr = padded
    return swap16_array(fold_array(sum_rows_le(arr)))


def checksum_rows(rows: npt.NDArray[Any], initial: int | npt.NDArray[Any] = 0) -> U64Array:
    """Internet checksums of every row (``initial``: one sum, or one per row)."""
    sums = sum_rows(rows) + np.asarray(initial, dtype=np.uint64)
    return (~fold_array(sums)) & np.uint64(MASK16)


def sum_ranges(data: Buffer, ranges: Sequence[tuple[int, int]]) -> list[int]:
    """Folded sums of the byte ranges ``[start, end)`` of one buffer, each summed as if it
    were a buffer of its own (its first byte is the high byte of its first word).

    One prefix sum over the buffer serves every range, so many ranges cost little more
    than one pass.
    """
    view = _as_bytes_view(data)
    n = len(view)
    for start, end in ranges:
        if not 0 <= start <= end <= n:
            raise ValueError(f"range [{start}, {end}) is outside a buffer of {n} bytes")
    if not ranges:
        return []
    arr = np.frombuffer(view, dtype=np.uint8)
    padded = np.zeros(n + (n & 1) + 2, dtype=np.uint8)
    padded[:n] = arr
    words = padded.view(">u2").astype(np.uint64)
    prefix = np.concatenate(([np.uint64(0)], np.cumsum(words, dtype=np.uint64)))
    out: list[int] = []
    for start, end in ranges:
        if start == end:
            out.append(0)
            continue
        out.append(_range_sum(prefix, padded, start, end))
    return out


def _range_sum(prefix: U64Array, padded: U8Array, start: int, end: int) -> int:
    # Words are aligned on even offsets of the buffer. For an even start the range's own
    # words are the buffer's words (minus the low byte of the last one when end is
    # odd). For an odd start every byte sits in the other half of its word: the range
    # sum is the byte swap of the aligned sum of [start - 1, end) without byte start-1.
    lo_word = (start & ~1) // 2
    hi_word = (end + 1) // 2
    total = int(prefix[hi_word]) - int(prefix[lo_word])
    if end & 1:
        total -= int(padded[end])  # low byte of the last word is beyond the range
    if start & 1:
        total -= int(padded[start - 1]) << 8
        return swap16(fold(total))
    return fold(total)
