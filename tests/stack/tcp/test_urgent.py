"""Urgent data (RFC 9293 §3.8.5, §3.10.7.4 sixth step; RFC 6093): URG with the pointer
to the octet after the urgent data on every segment up to it while in urgent mode, no
TSO then (a device copies the pointer unchanged into every segment); on receive RCV.UP
and a mark telling the application how far the urgent data reaches."""

from __future__ import annotations

from dataclasses import replace

from stack.tcp.config import TcpConfig
from stack.wire.tcp import TcpFlags
from tests.stack.tcp.peer import ACK, MASK, MS, PSH, SEC, established

URG = TcpFlags.URG
MSS = 1448
TSO = 65483


def test_urgent_segments_point_past_the_urgent_octet() -> None:
    conn, peer = established(TcpConfig(max_segment_payload=TSO, nagle=False), now=SEC)
    conn.send(b"a" * 3000)
    conn.send(b"!", urgent=True)
    segs = peer.take(conn.poll(SEC))
    # urgent mode: MSS-sized segments, no TSO, each pointing at the octet after "!"
    assert [(len(s.payload), s.flags, s.urgent) for s in segs] == [
        (MSS, ACK | URG, 3001), (MSS, ACK | URG, 3001 - MSS), (105, ACK | PSH | URG, 105)]
    assert conn.counters.urgent_out == 3
    peer.ack_all(SEC + MS, segs)
    conn.send(b"b" * 5000)  # urgent data acknowledged: urgent mode over, TSO again
    [out] = conn.poll(SEC + MS)
    assert out.segment.flags & URG == 0 and out.segment.urgent == 0
    assert out.segment_size == MSS


def test_a_retransmission_in_urgent_mode_keeps_the_pointer() -> None:
    conn, peer = established(now=SEC)
    conn.send(b"x" * 10, urgent=True)
    [first] = peer.take(conn.poll(SEC))
    [again] = peer.take(conn.poll(SEC + conn.rtt.rto))
    assert (again.seq, again.flags & URG, again.urgent) == (first.seq, URG, 10)


def test_the_receiver_marks_how_far_the_urgent_data_reaches() -> None:
    conn, peer = established(now=SEC)
    assert conn.urgent_mark is None
    seg = replace(peer.seg(ACK | URG, b"hello!"), urgent=6)
    peer.nxt = (peer.nxt + 6) & MASK
    conn.on_segment(seg, SEC)
    assert conn.urgent_mark == 6 and conn.counters.urgent_in == 1
    peer.send(SEC, ACK, b" more")
    assert conn.urgent_mark == 6  # still ahead of what was read
    assert conn.recv() == b"hello! more"  # inline, in order
    assert conn.urgent_mark is None


def test_the_mark_still_counts_from_the_read_position_after_the_fin() -> None:
    conn, peer = established(now=SEC)
    peer.send(SEC, ACK | URG | TcpFlags.FIN, b"data!")  # urgent pointer 0 here
    conn2, peer2 = established(now=SEC)
    seg = replace(peer2.seg(ACK | URG | TcpFlags.FIN, b"data!"), urgent=5)
    peer2.nxt = (peer2.nxt + 6) & MASK
    conn2.on_segment(seg, SEC)
    assert conn2.eof is False and conn2.urgent_mark == 5
    assert conn.urgent_mark is None  # a pointer of 0 marks nothing ahead
