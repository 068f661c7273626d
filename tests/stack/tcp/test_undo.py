"""Undoing spurious window reductions: D-SACKs showing every retransmission of an
episode was a duplicate (RFC 2883 §5, RFC 3708), and Eifel detection with timestamps
(RFC 3522) after a fast retransmit or a timeout. Reno, 10 segments in flight, the first
"lost" — in fact only delayed."""

from __future__ import annotations

import copy

from stack.tcp.config import TcpConfig
from stack.tcp.congestion import INFINITE_SSTHRESH, Cubic
from stack.tcp.connection import TcpConnection
from stack.tcp.segment import Segment
from tests.stack.tcp.peer import MASK, MS, SEC, Peer, established, segments, ts_of

T0 = SEC


def flight(timestamps: bool, *, undo: bool = True,
           tlp: bool = True) -> tuple[TcpConnection, Peer, list[Segment]]:
    # (No rescue retransmission of the tail during recovery: one more to D-SACK.)
    cfg = TcpConfig(congestion="reno", timestamps=timestamps, undo=undo,
                    rescue_retransmit=False, tlp=tlp)
    conn, peer = established(cfg, timestamps=timestamps, now=T0)
    peer.send(T0)  # the scaled window, so the duplicate ACKs below carry the same one
    mss = conn.eff_mss
    conn.send(b"u" * 10 * mss)
    segs = peer.take(conn.poll(T0))  # the peer's TS.Recent: the originals' TSval
    assert len(segs) == 10 and conn.cwnd == 10 * mss
    return conn, peer, segs


def fast_retransmit(conn: TcpConnection, peer: Peer, segs: list[Segment]) -> Segment:
    """SACKs for segments 1-3: recovery, segment 0 resent; ssthresh 5 segments."""
    una, mss = segs[0].seq, conn.eff_mss
    for j in range(1, 4):
        peer.send(T0 + (10 + j) * MS, ack=una, sack=((una + mss, una + (j + 1) * mss),))
    [rtx] = segments(conn.poll(T0 + 13 * MS))
    assert rtx.seq == una and conn.in_recovery and conn.ssthresh == 5 * mss
    return rtx


def test_dsack_of_the_only_retransmission_restores_cwnd_and_ssthresh() -> None:
    conn, peer, segs = flight(False)
    mss = conn.eff_mss
    una = segs[0].seq
    fast_retransmit(conn, peer, segs)
    end = (una + 10 * mss) & MASK
    # The original arrives (reordered): everything is acknowledged, recovery ends with
    # cwnd = ssthresh (PRR, RFC 6937).
    peer.send(T0 + 20 * MS, ack=end, sack=())
    assert not conn.in_recovery and conn.cwnd == conn.ssthresh == 5 * mss
    # The retransmission arrives too: the receiver reports it in a D-SACK block below
    # the cumulative ACK (RFC 2883 §4.1).
    peer.send(T0 + 21 * MS, ack=end, sack=((una, una + mss),))
    assert conn.cwnd == 10 * mss and conn.ssthresh == INFINITE_SSTHRESH
    c = conn.counters
    assert (c.dsacks_in, c.spurious_retransmits_detected, c.undos) == (1, 1, 1)


def test_undo_needs_a_dsack_for_every_retransmission() -> None:
    conn, peer, segs = flight(False)
    mss = conn.eff_mss
    una = segs[0].seq
    s = [x.seq for x in segs]
    fast_retransmit(conn, peer, segs)
    # Segment 5 is late too: more SACKs above it (6-9) make it lost, and it goes again.
    t = T0 + 14 * MS
    out: list[Segment] = []
    for j in range(6, 10):
        t += MS
        peer.send(t, ack=una, sack=((s[6], s[j] + mss), (s[1], s[4])))
        out += segments(conn.poll(t))
    assert [x.seq for x in out] == [s[4], s[5]]  # segment 4 too: never SACKed
    assert conn.counters.retransmitted_segments == 3
    end = (una + 10 * mss) & MASK
    peer.send(t + MS, ack=end)  # the originals arrive
    peer.send(t + 2 * MS, ack=end, sack=((s[0], s[1]),))  # duplicate of segment 0
    peer.send(t + 3 * MS, ack=end, sack=((s[5], s[6]),))  # and of segment 5
    assert conn.counters.undos == 0 and conn.cwnd == 5 * mss  # segment 4 is in doubt
    peer.send(t + 4 * MS, ack=end, sack=((s[4], s[5]),))
    assert conn.counters.undos == 1 and conn.cwnd == 10 * mss
    assert conn.ssthresh == INFINITE_SSTHRESH and conn.counters.dsacks_in == 3


def test_a_dsack_for_data_never_retransmitted_undoes_nothing() -> None:
    """A duplicate made by the network, not by us."""
    conn, peer, segs = flight(False)
    mss = conn.eff_mss
    una = segs[0].seq
    fast_retransmit(conn, peer, segs)
    end = (una + 10 * mss) & MASK
    peer.send(T0 + 20 * MS, ack=end)
    peer.send(T0 + 21 * MS, ack=end, sack=((una + 3 * mss, una + 4 * mss),))
    c = conn.counters
    assert (c.dsacks_in, c.spurious_retransmits_detected, c.undos) == (1, 0, 0)
    assert conn.cwnd == 5 * mss


def test_eifel_undoes_a_spurious_fast_retransmit_at_the_end_of_recovery() -> None:
    """The ACK ending recovery echoes the originals' TSval (T0), older than the
    retransmission's (T0 + 13 ms): it was sent for the original (RFC 3522 §3)."""
    conn, peer, segs = flight(True)
    mss = conn.eff_mss
    fast_retransmit(conn, peer, segs)
    peer.send(T0 + 20 * MS, ack=(segs[0].seq + 10 * mss) & MASK)
    assert conn.cwnd == 10 * mss and conn.ssthresh == INFINITE_SSTHRESH
    c = conn.counters
    assert (c.spurious_retransmits_detected, c.undos, c.dsacks_in) == (1, 1, 0)


def test_no_undo_when_the_ack_echoes_the_retransmission() -> None:
    conn, peer, segs = flight(True)
    mss = conn.eff_mss
    ts = ts_of(fast_retransmit(conn, peer, segs))
    assert ts is not None
    peer.ts_recent = ts.tsval  # the retransmission filled the hole
    peer.send(T0 + 20 * MS, ack=(segs[0].seq + 10 * mss) & MASK)
    assert conn.cwnd == conn.ssthresh == 5 * mss and conn.counters.undos == 0


def spurious_timeout(undo: bool) -> tuple[TcpConnection, Peer, list[Segment], int]:
    conn, peer, segs = flight(True, undo=undo, tlp=False)  # a timeout, not a probe
    deadline = conn.next_deadline()
    assert deadline is not None
    [rto] = segments(conn.poll(deadline))
    assert rto.seq == segs[0].seq and conn.counters.timeouts == 1
    assert conn.cwnd == conn.eff_mss and conn.ssthresh == 5 * conn.eff_mss
    # The ACK of the originals, late: it echoes their TSval.
    peer.send(deadline + MS, ack=(segs[0].seq + 5 * conn.eff_mss) & MASK)
    return conn, peer, segs, deadline


def test_eifel_undoes_a_spurious_timeout_and_stops_going_back() -> None:
    conn, _, _, deadline = spurious_timeout(True)
    mss = conn.eff_mss
    assert conn.cwnd == 10 * mss and conn.ssthresh == INFINITE_SSTHRESH
    assert conn.counters.undos == 1 and conn.counters.spurious_retransmits_detected == 1
    # Segments 5-9 are still in flight: nothing is resent (RFC 4015's SND.NXT = SND.MAX).
    assert segments(conn.poll(deadline + MS)) == []
    assert conn.snd_nxt == conn.snd_max and conn.counters.retransmitted_segments == 1


def test_undo_switched_off_still_counts_the_spurious_timeout() -> None:
    conn, _, _, deadline = spurious_timeout(False)
    mss = conn.eff_mss
    assert conn.counters.spurious_retransmits_detected == 1 and conn.counters.undos == 0
    # Slow start from 1 SMSS: + 2 SMSS for the five acknowledged (RFC 3465 L = 2).
    assert conn.ssthresh == 5 * mss and conn.cwnd == 3 * mss
    # Go-back-N resumes from the new SND.UNA.
    assert [s.seq for s in segments(conn.poll(deadline + MS))] == [
        (conn.snd_una + i * mss) & MASK for i in range(3)]


def test_cubic_undo_restores_its_own_state() -> None:
    """RFC 9438 §4.9: W_max and the epoch come back with cwnd and ssthresh."""
    cc = Cubic(1000)
    cc.cwnd = 50_000
    cc.ssthresh = 40_000
    cc.w_max = 60.0
    prior = copy.copy(cc)
    cc.on_loss(T0, 50_000)
    assert cc.w_max == 50 * (1 + 0.7) / 2 and cc.ssthresh == 35_000  # fast convergence
    cc.undo(prior)
    assert (cc.cwnd, cc.ssthresh, cc.w_max, cc.epoch_start) == (50_000, 40_000, 60.0, None)
