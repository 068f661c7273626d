"""Send and receive buffers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stack.tcp.receive_buffer import MAX_OOO_RANGES, ReceiveBuffer
from stack.tcp.send_buffer import SendBuffer


def test_send_buffer_bounds_and_consume() -> None:
    buf = SendBuffer(10)
    assert buf.write(b"abcdefghijkl") == 10 and buf.free == 0
    assert buf.peek(2, 3) == b"cde" and buf.peek(8, 5) == b"ij"
    buf.consume(4)
    assert len(buf) == 6 and buf.peek(0, 2) == b"ef" and buf.write(b"xyz") == 3
    assert buf.peek(0, 100) == b"efghijxyz"


def test_receive_in_order_out_of_order_and_holes() -> None:
    rb = ReceiveBuffer(100, 1000)
    r = rb.insert(1005, b"fghij")
    assert r.out_of_order and rb.rcv_nxt == 1000 and rb.ooo_ranges == [(1005, 1010)]
    r = rb.insert(1000, b"abcde")
    assert r.filled_hole and r.advanced == 10 and rb.read() == b"abcdefghij"
    rb.insert(1020, b"uv")
    rb.insert(1012, b"mn")
    rb.insert(1013, b"nopqrstu")  # overlaps both queued ranges
    assert rb.ooo_ranges == [(1012, 1022)]
    rb.insert(1010, b"kl")
    assert rb.read() == b"klmnopqrstuv" and rb.ooo_bytes == 0


@given(st.permutations(range(20)), st.integers(1, 7))
def test_any_arrival_order_reassembles(order: list[int], size: int) -> None:
    data = bytes(range(256))[: 20 * size]
    rb = ReceiveBuffer(10_000, 0)
    for i in order:
        rb.insert(i * size, data[i * size : (i + 1) * size])
        rb.insert(i * size, data[i * size : (i + 1) * size])  # duplicates are harmless
    assert rb.read() == data and rb.ooo_bytes == 0


def test_out_of_order_ranges_are_bounded() -> None:
    rb = ReceiveBuffer(1 << 20, 0)
    for i in range(MAX_OOO_RANGES + 50):
        rb.insert(2 * i + 1, b"x")  # one byte, one hole, again and again
    assert len(rb.ooo_ranges) == MAX_OOO_RANGES
    rb.insert(0, b"y")
    assert rb.rcv_nxt == 2 and rb.read() == b"yx"
