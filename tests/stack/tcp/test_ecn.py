"""Explicit Congestion Notification in TCP (RFC 3168 §6.1): the ECN-setup handshake,
ECT(0) on new data only, the receiver's ECE echo until CWR, the sender's once-per-window
reduction, and CWR on a TSO packet only when the device handles it (virtio HOST_ECN)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from stack.tcp.config import TcpConfig
from stack.tcp.connection import TcpConnection, TcpState
from stack.wire.ecn import Ecn
from stack.wire.tcp import TcpFlags
from tests.stack.tcp.peer import ACK, MASK, MS, PSH, SEC, SYN, Peer, client

ECE = TcpFlags.ECE
CWR = TcpFlags.CWR
MSS = 1448  # 1460 minus the timestamps option
TSO = 65483


def ecn_established(config: TcpConfig | None = None, *,
                    synack: TcpFlags = SYN | ACK | ECE) -> tuple[TcpConnection, Peer]:
    """An active open with ``ecn="on"`` answered by ``synack``."""
    conn = client(config or TcpConfig(ecn="on", congestion="reno"))
    peer = Peer(conn)
    conn.connect(SEC)
    syn = peer.take(conn.poll(SEC))[0]
    peer.rcv = (syn.seq + 1) & MASK
    peer.send(SEC, synack, options=peer.syn_options())
    peer.take(conn.poll(SEC))
    return conn, peer


def send_data(peer: Peer, now: int, payload: bytes, *, ecn: int = Ecn.ECT0,
              flags: TcpFlags = ACK) -> None:
    """The peer sends data in an IP packet with ECN codepoint ``ecn``."""
    seg = replace(peer.seg(flags, payload), ecn=ecn)
    peer.nxt = (peer.nxt + len(payload)) & MASK
    peer.conn.on_segment(seg, now)


# -- the handshake, RFC 3168 §6.1.1 ----------------------------------------------------
def test_ecn_setup_syn_carries_ece_and_cwr_and_the_syn_ack_ece_alone() -> None:
    conn = client(TcpConfig(ecn="on"))
    conn.connect(SEC)
    [syn] = conn.poll(SEC)
    assert syn.segment.flags == SYN | ECE | CWR
    assert syn.ecn == Ecn.NOT_ECT  # a SYN is never ECT
    conn, _ = ecn_established()
    assert conn.state is TcpState.ESTABLISHED and conn.ecn_enabled


@pytest.mark.parametrize("synack", [SYN | ACK, SYN | ACK | ECE | CWR])
def test_a_syn_ack_without_ece_alone_leaves_ecn_off(synack: TcpFlags) -> None:
    conn, _ = ecn_established(synack=synack)
    assert conn.state is TcpState.ESTABLISHED and not conn.ecn_enabled


def test_the_default_does_not_ask() -> None:
    conn = client()
    conn.connect(SEC)
    assert conn.poll(SEC)[0].segment.flags == SYN


@pytest.mark.parametrize(("mode", "syn_flags", "agreed"), [
    ("passive", SYN | ECE | CWR, True),
    ("on", SYN | ECE | CWR, True),
    ("off", SYN | ECE | CWR, False),
    ("passive", SYN | ECE, False),
    ("passive", SYN, False),
])
def test_passive_open_agrees_only_to_an_ecn_setup_syn(mode: str, syn_flags: TcpFlags,
                                                       agreed: bool) -> None:
    probe = Peer(client())
    syn = probe.seg(syn_flags, options=probe.syn_options(), ack=0)
    conn = TcpConnection.accept_syn(syn, TcpConfig(ecn=mode), isn=5000, now=SEC)
    [synack] = conn.poll(SEC)
    assert conn.ecn_enabled is agreed
    assert synack.segment.flags == (SYN | ACK | ECE if agreed else SYN | ACK)
    assert synack.ecn == Ecn.NOT_ECT


def test_a_retransmitted_syn_drops_the_ecn_setup() -> None:
    """§6.1.1.1: a middlebox may drop ECN-setup SYNs; the retransmission goes plain."""
    conn = client(TcpConfig(ecn="on"))
    conn.connect(SEC)
    assert conn.poll(SEC)[0].segment.flags == SYN | ECE | CWR
    [again] = conn.poll(SEC + conn.rtt.rto)
    assert again.segment.flags == SYN
    peer = Peer(conn)
    peer.rcv = (again.segment.seq + 1) & MASK
    peer.send(2 * SEC, SYN | ACK | ECE, options=peer.syn_options())
    assert conn.state is TcpState.ESTABLISHED and not conn.ecn_enabled


def test_ecn_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="ecn 'yes' not one of"):
        TcpConfig(ecn="yes")


# -- ECT marking, §6.1.4-§6.1.5 ---------------------------------------------------------
def test_new_data_is_ect0_pure_acks_and_retransmissions_are_not() -> None:
    # No tail loss probe: the retransmission here is the timeout's.
    conn, peer = ecn_established(TcpConfig(ecn="on", congestion="reno", tlp=False))
    conn.send(b"d" * 2 * MSS)
    outs = conn.poll(SEC)
    assert [(len(o.segment.payload), o.ecn) for o in outs] == [(MSS, Ecn.ECT0)] * 2
    send_data(peer, SEC, b"x" * 100)
    t = SEC + 50 * MS  # the delayed ACK
    [ack] = conn.poll(t)
    assert ack.segment.payload == b"" and ack.ecn == Ecn.NOT_ECT
    [rtx] = conn.poll(SEC + conn.rtt.rto)  # nothing was acknowledged: RTO
    assert len(rtx.segment.payload) == MSS and rtx.ecn == Ecn.NOT_ECT
    assert conn.counters.retransmitted_segments == 1


def test_without_ecn_nothing_is_ect_and_marks_are_ignored() -> None:
    conn, peer = ecn_established(synack=SYN | ACK)
    conn.send(b"d" * 100)
    assert [o.ecn for o in conn.poll(SEC)] == [Ecn.NOT_ECT]
    send_data(peer, SEC, b"x" * 100, ecn=Ecn.CE)
    peer.rcv = (peer.rcv + 100) & MASK
    peer.send(SEC, ACK | ECE)
    [ack] = conn.poll(SEC + 50 * MS)
    assert not ack.segment.flags & ECE
    assert conn.counters.ecn_ce_in == conn.counters.ecn_reductions == 0


# -- the receiver, §6.1.3 ---------------------------------------------------------------
def test_ce_is_echoed_at_once_and_on_every_ack_until_cwr() -> None:
    conn, peer = ecn_established()
    send_data(peer, SEC, b"a" * 1000, ecn=Ecn.CE)
    [ack] = conn.poll(SEC)  # no delayed ACK for the first CE
    assert ack.segment.flags == ACK | ECE
    send_data(peer, SEC + MS, b"b" * 1000)
    send_data(peer, SEC + MS, b"c" * 1000)
    [ack] = conn.poll(SEC + MS + 50 * MS)  # the delayed ACK
    assert ack.segment.flags == ACK | ECE
    send_data(peer, SEC + 2 * MS, b"d" * 1000, flags=ACK | CWR)
    [ack] = conn.poll(SEC + 2 * MS + 50 * MS)
    assert ack.segment.flags == ACK
    assert conn.counters.ecn_ce_in == 1
    assert conn.recv() == b"a" * 1000 + b"b" * 1000 + b"c" * 1000 + b"d" * 1000


def test_a_segment_with_cwr_and_ce_keeps_the_echo_going() -> None:
    conn, peer = ecn_established()
    send_data(peer, SEC, b"a" * 100, ecn=Ecn.CE)
    conn.poll(SEC)
    send_data(peer, SEC + MS, b"b" * 100, ecn=Ecn.CE, flags=ACK | CWR)
    [ack] = conn.poll(SEC + 50 * MS)
    assert ack.segment.flags == ACK | ECE
    assert conn.counters.ecn_ce_in == 2


# -- the sender, §6.1.2 -----------------------------------------------------------------
def test_ece_reduces_the_window_once_and_cwr_goes_on_the_next_new_data() -> None:
    # without PRR the window drops to ssthresh at once (RFC 3168 §6.1.2 as written)
    conn, peer = ecn_established(TcpConfig(ecn="on", congestion="reno", prr=False))
    conn.send(b"s" * 200_000)
    burst = peer.take(conn.poll(SEC))
    assert len(burst) == 10 and conn.cwnd == 14480  # IW 10 (RFC 6928)
    t = SEC + MS
    peer.ack_all(t, burst[:1])  # slow start: cwnd 15928; then ECE on the same ACK
    peer.send(t, ACK | ECE)
    flight = 9 * MSS  # sent and not acknowledged when the ECE arrived
    assert conn.ssthresh == flight // 2 and conn.cwnd == flight // 2  # RFC 5681 eq. (4)
    assert conn.counters.ecn_ece_in == 1 and conn.counters.ecn_reductions == 1
    # More ECE for the same window: no second reduction.
    peer.ack_all(t, burst[:5])
    peer.send(t, ACK | ECE)
    peer.ack_all(t, burst)  # everything sent before the reduction, still with ECE
    peer.send(t, ACK | ECE)
    assert conn.counters.ecn_ece_in == 3 and conn.counters.ecn_reductions == 1
    outs = conn.poll(t)
    assert [o.segment.flags & CWR for o in outs] == [CWR] + [0] * (len(outs) - 1)
    assert conn.counters.ecn_cwr_out == 1
    # ECE acknowledging data sent after the reduction (the CWR segment): a new mark.
    peer.ack_all(t + MS, [o.segment for o in outs][:1])
    peer.send(t + MS, ACK | ECE)
    assert conn.counters.ecn_reductions == 2


def test_with_prr_the_ece_reduction_is_paced_by_what_is_delivered() -> None:
    """RFC 6937 §1 applies PRR to an ECN reduction too (Linux's CWR state): ssthresh is
    set at the ECE, and the window comes down to it over the round as the data in
    flight is delivered, instead of at once; it is ssthresh when the last byte in flight
    at the ECE is acknowledged."""
    conn, peer = ecn_established()  # prr on (the default), Reno
    conn.send(b"s" * 200_000)
    burst = peer.take(conn.poll(SEC))
    assert len(burst) == 10
    t = SEC + MS
    peer.ack_all(t, burst[:1])  # slow start: cwnd 15928
    peer.send(t, ACK | ECE)
    flight = 9 * MSS
    ssthresh = flight // 2  # 6516
    assert (conn.ssthresh, conn.cwnd) == (ssthresh, 15928)
    assert conn.counters.ecn_reductions == 1
    # 4 segments delivered, 5 still in flight (pipe 7240 > ssthresh): sndcnt =
    # ceil(prr_delivered * ssthresh / RecoverFS) - prr_out = ceil(5792 / 2) - 0 = 2896
    peer.ack_all(t, burst[:5])
    assert conn.cwnd == 5 * MSS + 2896
    # the rest delivered: pipe 0, PRR-SSRB gives ssthresh - pipe, and the reduction
    # ends (SND.UNA passed the point recorded at the ECE): cwnd = ssthresh
    peer.ack_all(t, burst)
    assert (conn.cwnd, conn.ssthresh) == (ssthresh, ssthresh)
    outs = conn.poll(t)
    assert [len(o.segment.payload) for o in outs] == [MSS] * 4  # 5792 <= 6516 < 7240
    assert [o.segment.flags & CWR for o in outs] == [CWR, 0, 0, 0]


def test_new_data_sent_during_the_ece_round_counts_against_prr() -> None:
    """RFC 6937 §3 prr_out counts every byte sent during the round, so what the
    not-yet-reduced window let out right after the ECE is taken from the next sends."""
    conn, peer = ecn_established()
    conn.send(b"s" * 200_000)
    burst = peer.take(conn.poll(SEC))
    t = SEC + MS
    # one ACK for the first segment, with ECE (a separate duplicate ACK would also let
    # Limited Transmit send): slow start makes cwnd 15928 (11 MSS), 9 MSS in flight
    peer.rcv = (burst[0].seq + MSS) & MASK
    peer.send(t, ACK | ECE)
    new = peer.take(conn.poll(t))  # the window still has room for 2 MSS
    assert [len(s.payload) for s in new] == [MSS, MSS] and new[0].flags & CWR
    # 4 delivered, pipe 7 MSS (10136) > ssthresh 6516: sndcnt = ceil(5792 * 6516 /
    # 13032) - prr_out 2896 = 0: cwnd = pipe, nothing more goes
    peer.ack_all(t, burst[:5])
    assert conn.cwnd == 7 * MSS
    assert peer.take(conn.poll(t)) == []
    # the rest of the burst: pipe 2896, PRR-SSRB min(6516 - 2896, ...) = 3620, and
    # the round is over (SND.UNA passed the ECE point): cwnd = ssthresh
    peer.ack_all(t, burst)
    assert conn.cwnd == conn.ssthresh == 9 * MSS // 2


def test_a_loss_during_the_ece_round_goes_on_with_the_same_reduction() -> None:
    """Fast recovery starting while the ECE reduction is under way does not halve the
    window again (RFC 3168 §6.1.2: once per window; Linux enters Recovery from CWR
    without a second reduction): same ssthresh, one reduction, the lost segment resent."""
    conn, peer = ecn_established()
    assert conn.sack_enabled
    conn.send(b"s" * 200_000)
    burst = peer.take(conn.poll(SEC))
    t = SEC + MS
    peer.ack_all(t, burst[:1])
    peer.send(t, ACK | ECE)
    ssthresh = 9 * MSS // 2
    assert conn.ssthresh == ssthresh
    una = burst[1].seq  # lost; 2, 3 and 4 arrive
    for n in (3, 4, 5):
        peer.send(t, ack=una, sack=((burst[2].seq, (burst[2].seq + (n - 2) * MSS) & MASK),))
    assert conn.in_recovery and conn.counters.fast_retransmits == 1
    assert conn.ssthresh == ssthresh and conn.counters.ecn_reductions == 1
    assert conn.counters.prr_recoveries == 1
    resent = peer.take(conn.poll(t))
    assert resent[0].seq == una and len(resent[0].payload) == MSS


@pytest.mark.parametrize("tso_ecn", [False, True])
def test_cwr_on_a_tso_packet_only_when_the_device_handles_it(tso_ecn: bool) -> None:
    """virtio HOST_ECN (§5.1.6.2): the device copies CWR to the first segment only.
    Without it the CWR segment goes alone, one MSS long, and the rest as TSO."""
    conn, peer = ecn_established(TcpConfig(ecn="on", congestion="reno",
                                           max_segment_payload=TSO, tso_ecn=tso_ecn,
                                           tso_win_divisor=0))
    conn.send(b"s" * 400_000)
    [first] = peer.take(conn.poll(SEC))
    assert len(first.payload) == 10 * MSS
    t = SEC + MS
    peer.ack_all(t, [first])
    peer.send(t, ACK | ECE)  # cwnd 15928 -> the flight at the ACK was 0: 2 * MSS
    peer.window = 0xFFFF
    outs = conn.poll(t)
    sizes = [(len(o.segment.payload), o.segment_size, bool(o.segment.flags & CWR))
             for o in outs]
    if tso_ecn:
        assert sizes == [(2 * MSS, MSS, True)]
    else:
        assert sizes == [(MSS, None, True), (MSS, None, False)]
    assert all(o.ecn == Ecn.ECT0 for o in outs)
    assert not any(o.segment.flags & PSH for o in outs)
