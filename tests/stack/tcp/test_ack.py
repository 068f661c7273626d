"""The receiver's ACKs: delayed ACKs (RFC 9293 §3.8.6.3, RFC 5681 §4.2), immediate ACKs
for out-of-order data and hole filling, SACK blocks (RFC 2018 §4)."""

from __future__ import annotations

from stack.tcp.config import TcpConfig
from tests.stack.tcp.peer import ACK, MASK, MS, SEC, established, sack_of, segments

T0 = SEC
FULL = 1448


def test_delayed_ack_after_40ms() -> None:
    conn, peer = established(now=T0)
    peer.send(T0, ACK, b"x" * FULL)
    assert conn.poll(T0) == []
    assert conn.next_deadline() == T0 + 40 * MS
    assert conn.poll(T0 + 40 * MS - 1) == []
    [ack] = segments(conn.poll(T0 + 40 * MS))
    assert ack.ack == 900_001 + FULL and conn.counters.delayed_acks == 1
    assert conn.next_deadline() is None


def test_ack_every_second_full_segment() -> None:
    conn, peer = established(now=T0)
    peer.send(T0, ACK, b"a" * FULL)
    assert conn.poll(T0) == []
    peer.send(T0 + MS, ACK, b"b" * FULL)
    [ack] = segments(conn.poll(T0 + MS))
    assert ack.ack == 900_001 + 2 * FULL and conn.counters.delayed_acks == 0
    peer.send(T0 + 2 * MS, ACK, b"c" * FULL)
    assert conn.poll(T0 + 2 * MS) == []  # counting starts again
    assert conn.next_deadline() == T0 + 42 * MS


def test_coalesced_segment_counts_as_its_segments() -> None:
    conn, peer = established(now=T0)
    peer.send(T0, ACK, b"g" * (3 * FULL))  # what receive coalescing hands up
    [ack] = segments(conn.poll(T0))
    assert ack.ack == 900_001 + 3 * FULL


def test_small_segments_wait_for_the_timer() -> None:
    conn, peer = established(now=T0)
    for i in range(5):
        peer.send(T0 + i * MS, ACK, b"s" * 100)
        assert conn.poll(T0 + i * MS) == []
    assert conn.next_deadline() == T0 + 40 * MS  # from the first unacknowledged segment
    [ack] = segments(conn.poll(T0 + 40 * MS))
    assert ack.ack == 900_501


def test_out_of_order_acked_at_once_with_sack_and_hole_fill_too() -> None:
    conn, peer = established(now=T0)
    base = peer.nxt
    peer.send(T0, ACK, b"2" * 100, seq=base + 100)
    [ack] = segments(conn.poll(T0))
    assert ack.ack == base and sack_of(ack) == ((base + 100, base + 200),)
    peer.send(T0, ACK, b"4" * 100, seq=base + 300)
    [ack] = segments(conn.poll(T0))
    # RFC 2018 §4: the block with the most recent segment first.
    assert sack_of(ack) == ((base + 300, base + 400), (base + 100, base + 200))
    peer.send(T0, ACK, b"1" * 100, seq=base)  # fills the first hole
    [ack] = segments(conn.poll(T0))
    assert ack.ack == base + 200 and sack_of(ack) == ((base + 300, base + 400),)
    assert conn.counters.out_of_order_segments == 2
    peer.send(T0, ACK, b"3" * 100, seq=base + 200)
    [ack] = segments(conn.poll(T0))
    assert ack.ack == base + 400 and sack_of(ack) == ()
    assert conn.recv() == b"1" * 100 + b"2" * 100 + b"3" * 100 + b"4" * 100


def test_at_most_three_sack_blocks_with_timestamps_four_without() -> None:
    for ts, limit in ((True, 3), (False, 4)):
        conn, peer = established(now=T0, timestamps=ts)
        base = peer.nxt
        for i in range(6):
            peer.send(T0, ACK, b"z" * 10, seq=base + 20 * (i + 1))
        ack = segments(conn.poll(T0))[-1]
        blocks = sack_of(ack)
        assert len(blocks) == limit
        assert blocks[0] == (base + 120, base + 130)  # most recent first
        assert len(ack.header().emit()) <= 60


def test_no_delayed_ack_when_disabled() -> None:
    conn, peer = established(TcpConfig(delayed_ack=False), now=T0)
    peer.send(T0, ACK, b"x")
    [ack] = segments(conn.poll(T0))
    assert ack.ack == 900_002


def test_window_update_when_the_application_reads() -> None:
    conn, peer = established(TcpConfig(receive_buffer=10_000, window_scaling=False), now=T0,
                             window_shift=None)
    peer.send(T0, ACK, b"f" * 10_000, window=0xFFFF)
    [ack] = segments(conn.poll(T0))
    assert ack.window == 0 and ack.ack == 900_001 + 10_000
    peer.send(T0, ACK, b"x", window=0xFFFF)  # beyond a zero window: not taken
    [again] = segments(conn.poll(T0))
    assert again.window == 0 and conn.readable == 10_000
    conn.recv(1000)  # less than an MSS freed: no update (receiver SWS avoidance)
    assert conn.poll(T0 + 1) == []
    conn.recv(4000)
    [update] = segments(conn.poll(T0 + 2))
    assert update.window == 5000 and update.ack == 900_001 + 10_000


def test_a_duplicate_segment_is_reported_in_a_dsack_block_once() -> None:
    """RFC 2883 §4: the first SACK block of the next ACK reports the duplicate range
    (here below the cumulative ACK); the ACK after that has none."""
    conn, peer = established(now=SEC)
    first = peer.send(SEC, ACK, b"a" * FULL)
    peer.send(SEC, ACK, b"b" * FULL)
    [ack] = peer.take(conn.poll(SEC))  # two full-sized segments: the ACK goes at once
    assert sack_of(ack) == ()
    conn.on_segment(first, SEC + MS)  # the first one again: a duplicate
    [dup_ack] = peer.take(conn.poll(SEC + MS))
    assert sack_of(dup_ack) == ((first.seq, (first.seq + FULL) & MASK),)
    assert dup_ack.ack == (first.seq + 2 * FULL) & MASK
    assert conn.counters.dsacks_out == 1
    peer.send(SEC + 2 * MS, ACK, b"c" * FULL)
    peer.send(SEC + 2 * MS, ACK, b"d" * FULL)
    [later] = peer.take(conn.poll(SEC + 2 * MS))
    assert sack_of(later) == ()


def test_a_dsack_goes_first_before_the_out_of_order_blocks() -> None:
    conn, peer = established(now=SEC)
    first = peer.send(SEC, ACK, b"a" * 500)
    conn.poll(SEC + 50 * MS)
    hole = peer.nxt
    peer.nxt = (peer.nxt + 500) & MASK  # 500 bytes lost
    peer.send(SEC + 60 * MS, ACK, b"c" * 500)  # out of order
    conn.poll(SEC + 60 * MS)
    conn.on_segment(first, SEC + 70 * MS)
    [ack] = peer.take(conn.poll(SEC + 70 * MS))
    ooo = ((hole + 500) & MASK, (hole + 1000) & MASK)
    assert sack_of(ack) == ((first.seq, (first.seq + 500) & MASK), ooo)


def test_an_old_original_dropped_by_paws_is_reported_in_a_dsack_block() -> None:
    """Reordering: the retransmission of a segment arrives first (newer timestamp, fills
    the hole), the delayed original afterwards with an older TSval. PAWS rejects it
    (RFC 7323 §5.3 R1), and the ACK it gets reports it as a duplicate (RFC 2883), so the
    sender learns its retransmission was needless — as Linux's tcp_send_dupack does."""
    conn, peer = established(now=SEC)
    original = peer.seg(ACK, b"a" * 500, tsval=100)  # delayed in the network
    peer.nxt = (peer.nxt + 500) & MASK
    peer.send(SEC, ACK, b"b" * 500, tsval=101)  # out of order: a hole at the original
    conn.poll(SEC)
    peer.send(SEC + MS, ACK, b"a" * 500, seq=original.seq, tsval=102)  # the retransmission
    conn.poll(SEC + MS)
    assert conn.readable == 1000
    conn.on_segment(original, SEC + 2 * MS)  # TSval 100 < TS.Recent 102
    assert conn.counters.paws_drops == 1
    [ack] = peer.take(conn.poll(SEC + 2 * MS))
    assert sack_of(ack) == ((original.seq, (original.seq + 500) & MASK),)
    assert ack.ack == (original.seq + 1000) & MASK
    assert conn.counters.dsacks_out == 1


def test_an_out_of_order_duplicate_is_reported_before_the_block_holding_it() -> None:
    """RFC 2883 §4.2: a duplicate of data held above the cumulative ACK goes in the
    first SACK block, and the SACK block that holds it comes next."""
    conn, peer = established(now=SEC)
    peer.send(SEC, ACK, b"a" * 500)
    conn.poll(SEC + 50 * MS)
    hole = peer.nxt
    peer.nxt = (peer.nxt + 500) & MASK  # 500 bytes lost
    ooo = peer.send(SEC + 60 * MS, ACK, b"c" * 500)
    peer.send(SEC + 60 * MS, ACK, b"d" * 500)
    conn.poll(SEC + 60 * MS)
    held = ((hole + 500) & MASK, (hole + 1500) & MASK)
    conn.on_segment(ooo, SEC + 70 * MS)  # "c" again
    [ack] = peer.take(conn.poll(SEC + 70 * MS))
    assert ack.ack == hole
    assert sack_of(ack) == ((ooo.seq, (ooo.seq + 500) & MASK), held)
    assert conn.counters.dsacks_out == 1
    # a segment that overlaps held data only in part is new data, not a duplicate
    peer.send(SEC + 80 * MS, ACK, b"e" * 1000, seq=(hole + 1000) & MASK)
    [ack] = peer.take(conn.poll(SEC + 80 * MS))
    assert conn.counters.dsacks_out == 1
    assert sack_of(ack)[0] == ((hole + 500) & MASK, (hole + 2000) & MASK)


def test_no_dsack_without_sack() -> None:
    conn, peer = established(now=SEC, sack=False)
    first = peer.send(SEC, ACK, b"a" * 500)
    conn.poll(SEC + 50 * MS)
    conn.on_segment(first, SEC + 60 * MS)
    [ack] = peer.take(conn.poll(SEC + 60 * MS))
    assert sack_of(ack) == () and conn.counters.dsacks_out == 0
