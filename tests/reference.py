"""Independent reference implementations the tests check the project's code against —
written from the RFC text, never sharing code with what they check."""

from __future__ import annotations


def rfc1071_loop(data: bytes) -> int:
    """The Internet checksum's ones'-complement sum (not complemented): RFC 1071 §4.1,
    the reference C loop, transcribed."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


def rfc1071_sum(data: bytes) -> int:
    """The same sum, fast for long buffers: the buffer as one big-endian integer is
    congruent to the sum of its 16-bit words modulo 0xFFFF (RFC 1071 §2(C), deferred
    carries)."""
    if len(data) < 256:
        return rfc1071_loop(data)
    value = int.from_bytes(data + b"\0" * (len(data) % 2), "big")
    return 0 if value == 0 else (value - 1) % 0xFFFF + 1
