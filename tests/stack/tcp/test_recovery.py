"""Loss recovery: fast retransmit on the third duplicate ACK (RFC 5681 §3.2), NewReno
partial ACKs (RFC 6582) without SACK, and SACK-based recovery (RFC 6675) that retransmits
exactly the holes. The NewReno window tests run without PRR (``prr=False``), the window
RFC 6582 itself defines; test_prr.py has the window under RFC 6937."""

from __future__ import annotations

from stack.tcp.config import TcpConfig
from stack.tcp.connection import TcpConnection
from stack.tcp.segment import Segment
from tests.stack.tcp.peer import MS, SEC, Peer, established, segments

T0 = SEC


def newreno() -> tuple[TcpConnection, Peer, list[Segment]]:
    conn, peer = established(TcpConfig(congestion="reno", timestamps=False, sack=False,
                                       prr=False),
                             timestamps=False, sack=False, now=T0)
    assert conn.eff_mss == 1460 and conn.cwnd == 14_600
    conn.send(bytes(range(256)) * 57 + b"x" * 8)  # 14600 bytes: 10 segments
    segs = segments(conn.poll(T0))
    assert [len(s.payload) for s in segs] == [1460] * 10
    return conn, peer, segs


def test_fast_retransmit_after_exactly_three_dup_acks() -> None:
    conn, peer, segs = newreno()
    peer.ack_all(T0 + 10 * MS, segs[:1])  # segment 1 (index 1) lost
    assert conn.poll(T0 + 10 * MS) == []
    for i in range(2):
        peer.send(T0 + (11 + i) * MS)
        assert conn.poll(T0 + (11 + i) * MS) == [], f"dup ack {i + 1} must not retransmit"
    assert conn.counters.dup_acks_in == 2
    peer.send(T0 + 13 * MS)
    [rtx] = segments(conn.poll(T0 + 13 * MS))
    assert rtx.seq == segs[1].seq and rtx.payload == segs[1].payload
    assert conn.counters.fast_retransmits == 1 and conn.counters.dup_acks_in == 3
    # FlightSize 9 segments = 13140: ssthresh 6570, cwnd = ssthresh + 3*SMSS (RFC 6582)
    assert conn.ssthresh == 6570 and conn.cwnd == 6570 + 3 * 1460
    peer.send(T0 + 14 * MS)  # a further dup ACK inflates cwnd by one SMSS
    assert conn.cwnd == 6570 + 4 * 1460


def test_newreno_partial_ack_then_full_ack() -> None:
    conn, peer, segs = newreno()
    peer.ack_all(T0 + 10 * MS, segs[:1])  # segments 1 and 4 lost
    for i in range(3):
        peer.send(T0 + (11 + i) * MS)
    [rtx1] = segments(conn.poll(T0 + 13 * MS))
    assert rtx1.seq == segs[1].seq
    cwnd = conn.cwnd  # 10950
    # Partial ACK: up to the second hole (acks segments 1-3: 4380 bytes).
    peer.ack_all(T0 + 20 * MS, segs[:4])
    assert conn.in_recovery
    assert conn.cwnd == cwnd - 4380 + 1460  # deflate by the acked amount, add back SMSS
    [rtx2] = segments(conn.poll(T0 + 20 * MS))  # the next hole goes at once
    assert rtx2.seq == segs[4].seq and rtx2.payload == segs[4].payload
    # Full ACK: RFC 6582 step 6 option (1): min(ssthresh, max(FlightSize, SMSS) + SMSS).
    peer.ack_all(T0 + 30 * MS, segs)
    assert not conn.in_recovery
    assert conn.cwnd == min(6570, 1460 + 1460)
    assert conn.counters.retransmitted_segments == 2
    assert conn.counters.fast_retransmits == 1


def test_no_second_fast_retransmit_for_the_same_window() -> None:
    conn, peer, segs = newreno()
    peer.ack_all(T0 + 10 * MS, segs[:1])
    for i in range(6):
        peer.send(T0 + (11 + i) * MS)
    conn.poll(T0 + 20 * MS)
    assert conn.counters.fast_retransmits == 1


def test_sack_recovery_retransmits_exactly_the_holes() -> None:
    # Without the rescue retransmission (NextSeg rule (4)), which would resend the tail
    # segment 9 while its SACK is still on the way: test_rescue_retransmission below.
    cfg = TcpConfig(congestion="reno", rescue_retransmit=False)
    conn, peer = established(cfg, now=T0)
    mss = conn.eff_mss
    assert mss == 1448
    conn.send(b"s" * (10 * mss))
    segs = segments(conn.poll(T0))
    assert len(segs) == 10
    start = [s.seq for s in segs]

    def sack_for(received: list[int]) -> tuple[tuple[int, int], ...]:
        # Blocks of received segments above the hole, most recent first (RFC 2018).
        blocks: list[tuple[int, int]] = []
        for i in sorted(received):
            if blocks and blocks[-1][1] == start[i]:
                blocks[-1] = (blocks[-1][0], start[i] + mss)
            else:
                blocks.append((start[i], start[i] + mss))
        latest = max(received)
        blocks.sort(key=lambda b: not (b[0] <= start[latest] < b[1]))
        return tuple(blocks[:3])

    peer.ack_all(T0 + 10 * MS, segs[:2])  # segments 2 and 5 are lost
    t = T0 + 10 * MS
    retransmitted: list[int] = []
    got: list[int] = []
    for i in (3, 4, 6, 7, 8, 9):
        got.append(i)
        t += MS
        peer.send(t, sack=sack_for(got))
        retransmitted += [s.seq for s in segments(conn.poll(t))]
    assert conn.counters.fast_retransmits == 1
    assert retransmitted == [start[2], start[5]]
    # Both retransmissions arrive: everything is acknowledged.
    peer.ack_all(t + 10 * MS, segs)
    assert not conn.in_recovery and conn.snd_una == conn.snd_max
    assert conn.counters.retransmitted_segments == 2
    assert conn.counters.sack_recovered_bytes == 2 * mss
    assert conn.counters.sack_blocks_in > 0


def test_sack_recovery_enters_on_islost_before_three_dupacks() -> None:
    conn, peer = established(TcpConfig(congestion="reno"), now=T0)
    mss = conn.eff_mss
    conn.send(b"s" * (10 * mss))
    segs = segments(conn.poll(T0))
    una = segs[0].seq
    # One ACK SACKing 4 segments above the first: more than (DupThresh-1)*SMSS above it.
    peer.send(T0 + MS, ack=una, sack=((una + mss, una + 5 * mss),))
    out = segments(conn.poll(T0 + MS))
    assert conn.counters.fast_retransmits == 1 and out[0].seq == una


def test_sack_rule3_retransmits_an_unsacked_segment_before_it_counts_as_lost() -> None:
    # RFC 6675's rules alone (RACK would find segment 2 lost on the first SACK: the
    # scripted handshake measured an RTT of 0, so its window min(min_RTT/4, SRTT) is 0).
    conn, peer = established(TcpConfig(congestion="reno", rack=False), now=T0)
    mss = conn.eff_mss
    conn.send(b"r" * (10 * mss))
    segs = segments(conn.poll(T0))
    s = [x.seq for x in segs]
    peer.ack_all(T0 + MS, segs[:2])  # segments 2 and 7 are lost
    t = T0 + MS
    out = []
    for sack in (((s[3], s[4]),), ((s[3], s[5]),), ((s[3], s[6]),), ((s[3], s[7]),)):
        t += MS
        peer.send(t, sack=sack)  # segments 3, 4, 5, 6 arrive
        out += segments(conn.poll(t))
    assert [x.seq for x in out] == [s[2]]  # the third duplicate ACK: fast retransmit
    t += MS
    peer.send(t, sack=((s[8], s[9]), (s[3], s[7])))
    # Segment 7 has only one SACKed segment above it, so it is not "lost" (IsLost), but
    # cwnd - pipe allows a segment and there is no new data: NextSeg rule (3).
    [rule3] = segments(conn.poll(t))
    assert rule3.seq == s[7]


def test_no_fast_retransmit_for_data_sent_before_a_timeout() -> None:
    conn, peer, segs = newreno()
    deadline = conn.next_deadline()
    assert deadline is not None
    [rto] = segments(conn.poll(deadline))  # RTO: recover = HighData
    assert rto.seq == segs[0].seq and conn.counters.timeouts == 1
    peer.ack_all(deadline + MS, segs[:1])
    conn.poll(deadline + MS)
    for i in range(4):
        peer.send(deadline + (2 + i) * MS)  # duplicate ACKs for data from before the RTO
    conn.poll(deadline + 10 * MS)
    assert conn.counters.fast_retransmits == 0  # RFC 6582 §3.2 step 2


def test_limited_transmit_sends_one_new_segment_per_early_dup_ack() -> None:
    """RFC 3042: with unsent data queued, the first and second duplicate ACKs each let
    one new segment go beyond cwnd; cwnd does not change; the third starts fast
    retransmit as usual (RFC 5681 §3.2)."""
    conn, peer = established(TcpConfig(congestion="reno", timestamps=False, sack=False),
                             timestamps=False, sack=False, now=T0)
    conn.send(b"L" * 20 * 1460)
    segs = segments(conn.poll(T0))
    assert len(segs) == 10 and conn.cwnd == 14_600
    peer.ack_all(T0 + 10 * MS, segs[:1])  # segment 1 lost
    sent = segments(conn.poll(T0 + 10 * MS))  # slow start: the ACK opens two slots
    assert [len(s.payload) for s in sent] == [1460, 1460] and conn.cwnd == 14_600 + 1460
    new = []
    for i in range(2):
        peer.send(T0 + (11 + i) * MS)  # duplicate ACK i + 1
        [seg] = segments(conn.poll(T0 + (11 + i) * MS))
        new.append(seg)
    assert [s.seq for s in new] == [(sent[-1].seq + 1460 * (i + 1)) & 0xFFFFFFFF for i in range(2)]
    assert conn.cwnd == 14_600 + 1460 and conn.counters.limited_transmits == 2
    assert conn.counters.fast_retransmits == 0
    peer.send(T0 + 13 * MS)  # the third: fast retransmit of the hole
    [rtx] = segments(conn.poll(T0 + 13 * MS))
    assert rtx.seq == segs[1].seq and conn.counters.fast_retransmits == 1


def test_limited_transmit_can_be_switched_off() -> None:
    conn, peer = established(TcpConfig(congestion="reno", timestamps=False, sack=False,
                                       limited_transmit=False),
                             timestamps=False, sack=False, now=T0)
    conn.send(b"L" * 20 * 1460)
    segs = segments(conn.poll(T0))
    peer.ack_all(T0 + 10 * MS, segs[:1])
    conn.poll(T0 + 10 * MS)
    for i in range(2):
        peer.send(T0 + (11 + i) * MS)
        assert conn.poll(T0 + (11 + i) * MS) == []
    assert conn.counters.limited_transmits == 0


def rescue_run(rescue: bool) -> tuple[TcpConnection, Peer, list[int], list[list[int]]]:
    """Segments 2 and 9 (the tail) of ten lost; SACKs for 3 … 8 come one an ACK."""
    conn, peer = established(TcpConfig(congestion="reno", rescue_retransmit=rescue), now=T0)
    mss = conn.eff_mss
    conn.send(b"t" * (10 * mss))
    segs = segments(conn.poll(T0))
    s = [x.seq for x in segs]
    peer.ack_all(T0 + MS, segs[:2])
    t = T0 + MS
    sent: list[list[int]] = []
    for i in range(4, 10):  # segments 3 … i - 1 SACKed
        t += MS
        peer.send(t, sack=((s[3], s[i]),))
        sent.append([x.seq for x in segments(conn.poll(t))])
    return conn, peer, s, sent


def test_rescue_retransmission_repairs_a_lost_tail_in_recovery() -> None:
    """RFC 6675 NextSeg rule (4). Recovery starts on the third SACK (segments 3-5) and
    resends segment 2; ssthresh = 4 segments (FlightSize 8 / 2), pipe is 4 then, so
    PRR-SSRB lets nothing more go on the fourth SACK (pipe 4 = ssthresh) and one segment
    on the fifth (pipe 3): no hole is lost, no new data, nothing un-SACKed below the
    highest SACK: the rescue resends the tail, segment 9, once in the episode."""
    conn, peer, s, sent = rescue_run(True)
    assert sent == [[], [], [s[2]], [], [s[9]], []]
    c = conn.counters
    assert c.rescue_retransmits == 1 and c.fast_retransmits == 1
    t = T0 + 20 * MS
    peer.send(t, ack=s[9])  # segment 2's retransmission arrived: a partial ACK
    assert conn.in_recovery and segments(conn.poll(t)) == []  # no second rescue
    peer.send(t + MS, ack=(s[9] + conn.eff_mss) & 0xFFFFFFFF)  # the rescue arrived
    assert not conn.in_recovery and conn.snd_una == conn.snd_max
    assert c.timeouts == 0 and c.retransmitted_segments == 2


def test_without_rescue_a_lost_tail_in_recovery_waits_for_the_timer() -> None:
    conn, peer, s, sent = rescue_run(False)
    assert sent == [[], [], [s[2]], [], [], []]
    peer.send(T0 + 20 * MS, ack=s[9])
    deadline = conn.next_deadline()
    assert deadline is not None
    assert segments(conn.poll(deadline - 1)) == []
    [rto] = segments(conn.poll(deadline))
    assert rto.seq == s[9] and conn.counters.timeouts == 1
    assert conn.counters.rescue_retransmits == 0
