"""Sequence-number arithmetic modulo 2**32 (RFC 9293 §3.4).

On the wire sequence numbers, acknowledgment numbers and timestamps are 32-bit values
compared modulo 2**32: ``a`` is "less than" ``b`` when ``(b - a) mod 2**32`` lies in
``(0, 2**31)``. Inside :class:`~stack.tcp.connection.TcpConnection` positions in the
sequence space are *unwrapped*: plain, ever-growing Python integers that start at the
ISN. :func:`unwrap` maps a 32-bit value from a received segment onto the unwrapped
position nearest to a reference point (RCV.NXT or SND.UNA), and :func:`wrap` maps back.
So every comparison inside the connection is an ordinary integer comparison, and the
modular rules live here only.
"""

from __future__ import annotations

MOD = 1 << 32
MASK = MOD - 1
HALF = 1 << 31


def wrap(position: int) -> int:
    """The 32-bit wire value of an unwrapped position."""
    return position & MASK


def diff(a: int, b: int) -> int:
    """``a - b`` for 32-bit sequence numbers: the signed distance in ``[-2**31, 2**31)``."""
    d = (a - b) & MASK
    return d - MOD if d >= HALF else d


def lt(a: int, b: int) -> bool:
    """``a < b`` modulo 2**32 (RFC 9293 §3.4)."""
    return diff(a, b) < 0


def le(a: int, b: int) -> bool:
    return diff(a, b) <= 0


def gt(a: int, b: int) -> bool:
    return diff(a, b) > 0


def ge(a: int, b: int) -> bool:
    return diff(a, b) >= 0


def add(a: int, n: int) -> int:
    """``a + n`` modulo 2**32."""
    return (a + n) & MASK


def unwrap(value: int, reference: int) -> int:
    """The unwrapped position whose 32-bit value is ``value`` and that lies nearest to the
    unwrapped ``reference`` (within ``[-2**31, 2**31)`` of it)."""
    return reference + diff(value, wrap(reference))
