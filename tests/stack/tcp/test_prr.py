"""Proportional Rate Reduction (RFC 6937) during fast recovery, with and without SACK.

The worked example (ours, in the manner of the RFC's appendix): a window of 20 segments
of 1460 bytes, 40 queued, the first segment lost. The first two duplicate ACKs send two
new segments (Limited Transmit, RFC 3042, or the room the SACKed segments left), so
FlightSize and RecoverFS are 22 segments when the third duplicate ACK starts recovery;
Reno's ssthresh is 11 segments. Every duplicate ACK j (j = 3 … 21) reports one more
segment delivered, so prr_delivered is j - 2 and pipe, before the sending on that ACK,
is 22 + (new segments sent so far) - j.

- While pipe > ssthresh, sndcnt = ceil(prr_delivered * 11 / 22) - prr_out, in bytes
  as the RFC has it: the fast retransmit on ACK 3 (sndcnt one segment), then half a
  segment of budget an ACK. Segments go whole, so the half left on ACK 5 waits for ACK 6:
  one new segment on every even ACK 6 … 14, half the delivery rate (ssthresh /
  RecoverFS).
- On ACK 16 pipe = 22 + 5 - 16 = 11 = ssthresh: PRR-SSRB, sndcnt = min(ssthresh - pipe,
  …) = 0. On ACKs 17 … 21 pipe = 10: sndcnt = min(1, max(prr_delivered - prr_out, 1)
  + 1) = 1 segment each, holding pipe at ssthresh. prr_out ends at 11 segments.
- The ACK of the retransmission ends recovery with cwnd = ssthresh (11 segments).

Without SACK the same numbers come out: each duplicate ACK counts as one segment
delivered, and pipe leaves out the segment at SND.UNA until it is retransmitted.
"""

from __future__ import annotations

import pytest

from stack.tcp.config import TcpConfig
from stack.tcp.connection import TcpConnection
from stack.tcp.prr import Prr
from stack.tcp.segment import Segment
from tests.stack.tcp.peer import MASK, MS, SEC, Peer, established, segments

T0 = SEC
S = 1460
SSTHRESH = 11 * S
# Segments sent on duplicate ACK j = 3 … 21 (index j - 3), worked out above.
EXPECTED = [1, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 1, 1, 1, 1, 1]


def start(sack: bool, prr: bool = True) -> tuple[TcpConnection, Peer, list[Segment]]:
    # DupThresh starts recovery, as the example counts (RACK would start it on the first
    # SACK: the scripted handshake measured an RTT of 0, so its reordering window,
    # min(min_RTT/4, SRTT), is 0).
    cfg = TcpConfig(congestion="reno", timestamps=False, sack=sack,
                    initial_window_segments=20, prr=prr, rack=False)
    conn, peer = established(cfg, timestamps=False, sack=sack, now=T0)
    assert conn.eff_mss == S and conn.cwnd == 20 * S
    peer.send(T0)  # the scaled window, so the duplicate ACKs below carry the same one
    conn.send(b"p" * 40 * S)
    segs = segments(conn.poll(T0))
    assert len(segs) == 20
    return conn, peer, segs


def run_example(sack: bool, prr: bool = True) -> tuple[TcpConnection, Peer, list[Segment],
                                                      list[list[Segment]]]:
    conn, peer, segs = start(sack, prr)
    una = segs[0].seq
    per_ack: list[list[Segment]] = []
    for j in range(1, 22):  # duplicate ACK j: segments 1 … j have arrived
        t = T0 + (10 + j) * MS
        sack_blocks = ((una + S, (una + (j + 1) * S) & MASK),) if sack else ()
        peer.send(t, ack=una, sack=sack_blocks)
        per_ack.append(segments(conn.poll(t)))
    return conn, peer, segs, per_ack


@pytest.mark.parametrize("sack", [True, False], ids=["sack", "nosack"])
def test_prr_sends_in_proportion_then_ssrb(sack: bool) -> None:
    conn, peer, segs, per_ack = run_example(sack)
    una = segs[0].seq
    # One new segment on each of duplicate ACKs 1 and 2: Limited Transmit without SACK;
    # with SACK the SACKed segment itself left room in the window.
    assert [len(p) for p in per_ack[:2]] == [1, 1]
    assert conn.counters.limited_transmits == (0 if sack else 2)
    assert [len(p) for p in per_ack[2:]] == EXPECTED
    sent = [s for p in per_ack[2:] for s in p]
    # The first is the fast retransmit of the lost segment, the rest new data in order.
    assert sent[0].seq == una and len(sent[0].payload) == S
    assert [s.seq for s in sent[1:]] == [(una + (22 + i) * S) & MASK for i in range(10)]
    assert conn.ssthresh == SSTHRESH and conn.in_recovery
    assert conn.cwnd == SSTHRESH  # on ACK 21: pipe 10 + sndcnt 1
    c = conn.counters
    assert c.fast_retransmits == 1 and c.retransmitted_segments == 1
    assert c.prr_recoveries == 1 and c.prr_ssrb_acks == 6  # ACKs 16 … 21
    # The retransmission arrives: everything up to the recovery point is acknowledged.
    t = T0 + 40 * MS
    peer.send(t, ack=(una + 22 * S) & MASK)
    assert not conn.in_recovery and conn.cwnd == SSTHRESH and conn.ssthresh == SSTHRESH


def test_without_prr_sack_recovery_sets_cwnd_to_ssthresh_at_once() -> None:
    """The RFC 6675 §5 behaviour PRR replaces: cwnd = ssthresh on entry, so nothing
    new goes until cwnd - pipe reaches a segment (ACK 12: pipe 22 - 12 = 10)."""
    conn, _, _, per_ack = run_example(True, prr=False)
    counts = [len(p) for p in per_ack[2:]]
    assert counts[0] == 1  # the fast retransmit
    assert conn.counters.prr_recoveries == 0
    # cwnd 11 segments against pipe 19 after the retransmission: silence for eight
    # ACKs, then one segment per ACK.
    assert counts == [1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]


def test_prr_nosack_partial_ack_retransmits_the_next_hole() -> None:
    """Without SACK a partial ACK (RFC 6582 §3.2 step 5) still retransmits the next hole
    at once; the ACK's delivered data (all but the retransmission were counted by their
    duplicate ACKs) drives PRR."""
    conn, peer, segs = start(False)
    una = segs[0].seq
    for j in range(1, 4):  # segments 0 and 5 lost: duplicate ACKs for 1, 2, 3
        peer.send(T0 + (10 + j) * MS, ack=una)
    [rtx] = segments(conn.poll(T0 + 13 * MS))
    assert rtx.seq == una and conn.in_recovery
    # Partial ACK up to segment 5 (the retransmission and segments 1 … 4).
    peer.send(T0 + 20 * MS, ack=(una + 5 * S) & MASK)
    out = segments(conn.poll(T0 + 20 * MS))
    assert out[0].seq == (una + 5 * S) & MASK and conn.in_recovery
    assert conn.counters.retransmitted_segments == 2


def test_prr_unit_formulas() -> None:
    """RFC 6937 §3 directly: the proportional part rounds up, SSRB adds one SMSS to the
    larger of the unsent budget and this ACK's delivery, capped by ssthresh - pipe."""
    prr = Prr()
    prr.start(10_000)
    assert prr.on_ack(1000, pipe=8000, ssthresh=5000, smss=1000) == 8000 + 500
    prr.on_sent(500)
    assert prr.on_ack(1, pipe=7000, ssthresh=5000, smss=1000) == 7000 + 1  # ceil
    assert not prr.ssrb
    prr.on_sent(1)
    # pipe 2000 <= ssthresh: min(3000, max(1001 + 2000 - 501, 2000) + 1000)
    assert prr.on_ack(2000, pipe=2000, ssthresh=5000, smss=1000) == 2000 + 3000
    assert prr.ssrb
    assert prr.on_ack(100, pipe=4900, ssthresh=5000, smss=1000) == 5000
    # ceil(3201 * 5000 / 10000) - 501
    assert prr.on_ack(100, pipe=6000, ssthresh=5000, smss=1000) == 6000 + 1100
