"""RACK-TLP (RFC 8985): time-based loss detection and the tail loss probe, on exact
virtual times. The connection's first RTT is 10 ms (the SYN-ACK comes 10 ms after the
SYN), so SRTT = min_RTT = 10 ms: RACK's reordering window is min_RTT/4 = 2.5 ms while no
reordering has been seen and fewer than DupThresh segments are SACKed, and the probe
timeout is 2*SRTT + 2 ms with two segments or more in flight."""

from __future__ import annotations

import pytest

from stack.tcp.config import TcpConfig
from stack.tcp.connection import TcpConnection
from stack.tcp.rack import REO_WND_PERSIST, Rack
from stack.tcp.segment import Segment
from stack.tcp.tlp import pto
from tests.stack.tcp.peer import ACK, MASK, MS, SEC, SYN, Peer, client, segments

T0 = SEC
RTT = 10 * MS
US = 1_000


def connected(config: TcpConfig | None = None) -> tuple[TcpConnection, Peer, int]:
    """An active open whose SYN-ACK takes one RTT; returns the time it is established."""
    conn = client(config or TcpConfig(congestion="reno"), now=T0)
    peer = Peer(conn)
    conn.connect(T0)
    syn = peer.take(conn.poll(T0))[0]
    peer.rcv = (syn.seq + 1) & MASK
    t = T0 + RTT
    peer.send(t, SYN | ACK, options=peer.syn_options())
    peer.take(conn.poll(t))
    peer.send(t)  # the scaled window
    assert conn.rtt.srtt == RTT
    return conn, peer, t


def flight(n: int, config: TcpConfig | None = None, *,
           queued: int | None = None) -> tuple[TcpConnection, Peer, list[Segment], int]:
    conn, peer, t = connected(config)
    conn.send(b"r" * (queued if queued is not None else n) * conn.eff_mss)
    segs = peer.take(conn.poll(t))
    assert len(segs) == n
    return conn, peer, segs, t


# -- RACK (RFC 8985 §6) -----------------------------------------------------------------
def sack_second(conn: TcpConnection, peer: Peer, segs: list[Segment], t: int) -> None:
    """One RTT later segment 1 is SACKed, segment 0 missing."""
    una, mss = segs[0].seq, conn.eff_mss
    peer.send(t + RTT, ack=una, sack=((una + mss, una + 2 * mss),))


def test_rack_marks_a_loss_when_the_reordering_window_expires() -> None:
    """Segment 1, sent with segment 0, is delivered at t + 10 ms: segment 0 is lost once
    RACK.rtt (10 ms) + reo_wnd (2.5 ms) have passed since it was sent, at t + 12.5 ms —
    with a single segment SACKed, long before DupThresh or the RTO would act."""
    conn, peer, segs, t = flight(10)
    sack_second(conn, peer, segs, t)
    assert segments(conn.poll(t + RTT)) == []
    assert conn.next_deadline() == t + RTT + 2500 * US  # RACK's reordering timer
    assert segments(conn.poll(t + RTT + 2500 * US - 1)) == []
    [rtx] = segments(conn.poll(t + RTT + 2500 * US))
    assert rtx.seq == segs[0].seq and conn.in_recovery
    c = conn.counters
    assert (c.rack_losses_detected, c.fast_retransmits, c.timeouts) == (1, 1, 0)


def test_reordering_within_the_window_retransmits_nothing() -> None:
    """Segment 0 arrives 1 ms after segment 1, inside the 2.5 ms window: no loss."""
    conn, peer, segs, t = flight(10)
    sack_second(conn, peer, segs, t)
    peer.send(t + RTT + MS, ack=(segs[0].seq + 2 * conn.eff_mss) & MASK)
    for at in (t + RTT + MS, t + RTT + 2500 * US, t + RTT + 10 * MS):
        assert segments(conn.poll(at)) == []
    c = conn.counters
    assert (c.rack_losses_detected, c.retransmitted_segments, c.fast_retransmits) == (0, 0, 0)


@pytest.mark.parametrize("rack", [True, False], ids=["rack", "dupthresh"])
def test_with_rack_dupthresh_no_longer_starts_recovery_once_reordering_is_seen(
        rack: bool) -> None:
    """Segment 0 arrives after segment 1 (reordering seen); then segments 3, 4 and 5
    are SACKed above a hole at 2. DupThresh (RFC 6675, rack off) starts recovery at the
    third SACK; with RACK on only RACK marks losses, as in Linux: segment 2 goes once
    RACK.rtt (12 ms, the latest delivered segment's) + reo_wnd (2.5 ms) have passed
    since it was sent — reordering up to that much costs nothing."""
    cfg = TcpConfig(congestion="reno", rack=rack, tlp=False)
    conn, peer, segs, t = flight(10, cfg)
    una, mss = segs[0].seq, conn.eff_mss
    sack_second(conn, peer, segs, t)
    peer.send(t + RTT + MS, ack=(una + 2 * mss) & MASK)  # 0 came after 1
    at = t + RTT + 2 * MS
    for n in (1, 2, 3):
        peer.send(at, ack=(una + 2 * mss) & MASK,
                  sack=(((una + 3 * mss) & MASK, (una + (3 + n) * mss) & MASK),))
    if not rack:
        [rtx] = segments(conn.poll(at))
        assert rtx.seq == (una + 2 * mss) & MASK and conn.in_recovery
        return
    assert segments(conn.poll(at)) == [] and not conn.in_recovery
    assert conn.next_deadline() == t + RTT + 2 * MS + 2500 * US
    [rtx] = segments(conn.poll(t + RTT + 2 * MS + 2500 * US))
    assert rtx.seq == (una + 2 * mss) & MASK and conn.in_recovery
    assert conn.counters.rack_losses_detected == 1


def test_without_rack_one_sack_marks_nothing() -> None:
    conn, peer, segs, t = flight(10, TcpConfig(congestion="reno", rack=False, tlp=False))
    sack_second(conn, peer, segs, t)
    assert segments(conn.poll(t + RTT + 2500 * US)) == []
    assert conn.next_deadline() == t + 200 * MS  # only the retransmission timer
    assert conn.counters.rack_losses_detected == 0


def test_reordering_window_rfc8985_step4() -> None:
    """min_RTT/4 times the multiplier, at most SRTT; 0 before any reordering in recovery
    or with DupThresh SACKed; a D-SACK round raises the multiplier, 16 recoveries without
    one bring it back."""
    rack = Rack(0)
    rack.on_send(1000, 0)
    rack.on_send(2000, 0)
    rack.on_delivered([(1000, 2000)], 0, 8 * MS)  # min_RTT 8 ms
    assert rack.min_rtt == 8 * MS and not rack.reordering_seen
    assert rack.reo_wnd(in_recovery=False, dupthresh_sacked=False, srtt=RTT) == 2 * MS
    assert rack.reo_wnd(in_recovery=True, dupthresh_sacked=False, srtt=RTT) == 0
    assert rack.reo_wnd(in_recovery=False, dupthresh_sacked=True, srtt=RTT) == 0
    rack.on_delivered([(0, 1000)], 0, 9 * MS)  # below RACK.fack, never retransmitted
    assert rack.reordering_seen
    assert rack.reo_wnd(in_recovery=True, dupthresh_sacked=True, srtt=RTT) == 2 * MS
    rack.on_dsack(snd_una=2000, snd_nxt=5000)
    rack.on_dsack(snd_una=3000, snd_nxt=6000)  # the same round: no second step
    assert rack.reo_wnd_mult == 2
    assert rack.reo_wnd(in_recovery=False, dupthresh_sacked=False, srtt=RTT) == 4 * MS
    assert rack.reo_wnd(in_recovery=False, dupthresh_sacked=False, srtt=3 * MS) == 3 * MS
    rack.on_dsack(snd_una=5000, snd_nxt=7000)  # the next round
    assert rack.reo_wnd_mult == 3
    for _ in range(REO_WND_PERSIST):
        rack.on_recovery_exit()
    assert rack.reo_wnd_mult == 1


# -- TLP (RFC 8985 §7) ------------------------------------------------------------------
def test_tail_loss_probe_repairs_a_lost_tail_without_a_timeout() -> None:
    """Four segments; the ACK of the first two comes at t + 10 ms (PTO restarted: 2 in
    flight, so 2*SRTT + 2 ms = 22 ms); segment 3 is lost and segment 2's ACK is held by
    the receiver. At t + 32 ms the probe resends the last segment; its ACK covers
    everything. The next ACK beyond the probe, without a D-SACK for it, says the probe
    repaired a loss: the window is reduced as for a fast recovery (Reno: ssthresh =
    max(FlightSize 2 segments / 2, 2 SMSS))."""
    conn, peer, segs, t = flight(4)
    mss = conn.eff_mss
    assert conn.next_deadline() == t + 2 * RTT + 2 * MS  # PTO, before the RTO
    peer.ack_all(t + RTT, segs[:2])
    assert conn.next_deadline() == t + RTT + 2 * RTT + 2 * MS
    pto_at = t + 32 * MS
    assert segments(conn.poll(pto_at - 1)) == []
    [probe] = peer.take(conn.poll(pto_at))
    assert probe.seq == segs[3].seq and probe.payload == segs[3].payload
    c = conn.counters
    assert (c.tlp_probes, c.timeouts, c.retransmitted_segments) == (1, 0, 1)
    peer.ack_all(pto_at + RTT, segs)
    assert conn.snd_una == conn.snd_max and c.tlp_recoveries == 0  # not yet known
    conn.send(b"n" * mss)
    [more] = peer.take(conn.poll(pto_at + RTT))
    peer.ack_all(pto_at + 2 * RTT, [more])
    assert c.tlp_recoveries == 1 and conn.ssthresh == 2 * mss and conn.cwnd == 2 * mss
    assert (c.timeouts, c.fast_retransmits) == (0, 0)


def test_without_tlp_the_same_tail_waits_for_the_timeout() -> None:
    conn, peer, segs, t = flight(4, TcpConfig(congestion="reno", tlp=False))
    peer.ack_all(t + RTT, segs[:2])
    assert segments(conn.poll(t + 32 * MS)) == []
    rto_at = t + RTT + 200 * MS
    assert conn.next_deadline() == rto_at
    [rtx] = segments(conn.poll(rto_at))
    assert rtx.seq == segs[2].seq and conn.counters.timeouts == 1
    assert conn.cwnd == conn.eff_mss and conn.counters.tlp_probes == 0


def test_a_probe_sends_new_data_when_there_is_some() -> None:
    """cwnd (10 segments) holds back the other 4 queued; no ACK for 2*SRTT + 2 ms: the
    probe is one new segment, past cwnd, not a retransmission."""
    conn, _, segs, t = flight(10, queued=14)
    [probe] = segments(conn.poll(t + 22 * MS))
    assert probe.seq == (segs[-1].seq + conn.eff_mss) & MASK
    c = conn.counters
    assert (c.tlp_probes, c.retransmitted_segments) == (1, 0)
    assert conn.next_deadline() == t + 22 * MS + conn.rtt.rto  # one probe, then the RTO


def test_a_dsack_for_the_probe_means_no_loss() -> None:
    """The tail was only late: the probe's copy is reported in a D-SACK, no reduction."""
    conn, peer, segs, t = flight(4)
    peer.ack_all(t + RTT, segs[:2])
    [probe] = segments(conn.poll(t + 32 * MS))
    end = (segs[3].seq + conn.eff_mss) & MASK
    ssthresh = conn.ssthresh
    peer.send(t + 40 * MS, ack=end)  # the originals
    peer.send(t + 42 * MS, ack=end, sack=((probe.seq, end),))  # and the probe's copy
    conn.send(b"n" * conn.eff_mss)
    [more] = peer.take(conn.poll(t + 42 * MS))
    peer.ack_all(t + 52 * MS, [more])
    c = conn.counters
    assert (c.tlp_probes, c.tlp_recoveries, c.dsacks_in) == (1, 0, 1)
    assert conn.ssthresh == ssthresh


def test_rack_finds_a_lost_retransmission_without_a_timeout() -> None:
    """Segment 0 is lost and so is its retransmission (sent at t + 10 ms). New data
    sent during recovery at t + 20 ms is SACKed at t + 30 ms: the retransmission was
    sent before it and RACK.rtt (10 ms) + reo_wnd (0 in recovery) have passed since, so
    it goes again then — RFC 6675 alone would wait for the RTO at t + 200 ms."""
    conn, peer, segs, t = flight(10, queued=20)
    s, mss = [x.seq for x in segs], conn.eff_mss
    peer.send(t + RTT, ack=s[0], sack=((s[1], s[4]),))  # 3 SACKed: recovery
    [rtx] = segments(conn.poll(t + RTT))
    assert rtx.seq == s[0] and conn.in_recovery
    peer.send(t + 2 * RTT, ack=s[0], sack=((s[1], (s[9] + mss) & MASK),))
    new = segments(conn.poll(t + 2 * RTT))  # PRR lets new data go
    assert new and all(x.seq == (s[9] + (i + 1) * mss) & MASK for i, x in enumerate(new))
    losses = conn.counters.rack_losses_detected
    end = (new[0].seq + mss) & MASK
    peer.send(t + 3 * RTT, ack=s[0], sack=((s[1], end),))  # the first new one arrives
    again = segments(conn.poll(t + 3 * RTT))
    assert again[0].seq == s[0]
    c = conn.counters
    assert c.rack_losses_detected == losses + 1 and c.timeouts == 0
    assert c.retransmitted_segments == 2 and c.fast_retransmits == 1


def test_pto_with_one_segment_in_flight_waits_for_a_delayed_ack_and_the_rto_caps_it() -> None:
    """§7.2: one segment (less than two full ones) in flight: PTO = 2*SRTT + WCDelAckT
    = 220 ms, later than the RTO (200 ms, rto_min): the probe goes at the RTO's time
    instead of the timeout, and the retransmission timer starts again after it."""
    assert pto(RTT, 1448, 1448, 200 * MS) == 220 * MS
    assert pto(RTT, 2 * 1448, 1448, 200 * MS) == 22 * MS
    assert pto(None, 1448, 1448, 200 * MS) == SEC
    conn, _, segs, t = flight(1)
    assert conn.rtt.rto == 200 * MS and conn.next_deadline() == t + 200 * MS
    [probe] = segments(conn.poll(t + 200 * MS))
    assert probe.seq == segs[0].seq
    c = conn.counters
    assert (c.tlp_probes, c.timeouts) == (1, 0) and conn.cwnd == 10 * conn.eff_mss
    assert conn.next_deadline() == t + 400 * MS  # the RTO, no second probe


def test_a_late_dsack_takes_back_the_probes_reduction() -> None:
    """The probe's reduction is an undo episode holding the probe: a D-SACK for it that
    comes after the episode ended restores cwnd and ssthresh exactly."""
    conn, peer, segs, t = flight(4)
    mss = conn.eff_mss
    ssthresh = conn.ssthresh
    peer.ack_all(t + RTT, segs[:2])
    cwnd = conn.cwnd  # slow start grew it by the two segments (and no further after)
    [probe] = peer.take(conn.poll(t + 32 * MS))
    peer.ack_all(t + 42 * MS, segs)
    conn.send(b"n" * mss)
    [more] = peer.take(conn.poll(t + 42 * MS))
    peer.ack_all(t + 52 * MS, [more])  # beyond the probe, no D-SACK: a repaired loss
    assert conn.counters.tlp_recoveries == 1 and conn.ssthresh == 2 * mss
    end = (more.seq + mss) & MASK
    peer.send(t + 53 * MS, ack=end, sack=((probe.seq, (probe.seq + mss) & MASK),))
    c = conn.counters
    assert (c.dsacks_in, c.undos) == (1, 1)
    assert conn.cwnd == cwnd and conn.ssthresh == ssthresh
