"""Resets (RFC 9293 §3.10.7, RFC 5961 §3/§4 challenge ACKs), ACK acceptability (RFC 5961
§5), PAWS (RFC 7323 §5) and the acceptability table (RFC 9293 §3.10.7.4)."""

from __future__ import annotations

import pytest

from stack.tcp.config import TcpConfig
from stack.tcp.connection import TcpError, TcpState
from stack.tcp.segment import Segment
from stack.wire.tcp import NopOption, TimestampsOption
from tests.stack.tcp.peer import (
    ACK,
    LOCAL_PORT,
    MASK,
    MS,
    PEER_PORT,
    PSH,
    RST,
    SEC,
    SYN,
    established,
    segments,
    to_state,
)

T0 = SEC
S = TcpState


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (S.SYN_RECEIVED, "reset"),
        (S.ESTABLISHED, "reset"),
        (S.FIN_WAIT_1, "reset"),
        (S.FIN_WAIT_2, "reset"),
        (S.CLOSE_WAIT, "reset"),
        (S.CLOSING, None),
        (S.LAST_ACK, None),
        (S.TIME_WAIT, None),
    ],
)
def test_rst_at_rcv_nxt_closes_in_each_state(state: TcpState, reason: str | None) -> None:
    conn, peer = to_state(state, now=T0)
    peer.send(T0 + 1, RST)
    assert conn.state is S.CLOSED
    assert (conn.error.reason if conn.error else None) == reason
    assert conn.next_deadline() is None
    assert conn.poll(T0 + 1) == []  # no reply to a RST
    if reason is not None:
        with pytest.raises(TcpError):
            conn.send(b"x")


def test_rst_in_syn_sent_must_ack_our_syn() -> None:
    conn, peer = to_state(S.SYN_SENT, now=T0)
    peer.send(T0, RST, seq=0)  # no ACK: ignored (RFC 9293 §3.10.7.3)
    assert conn.state is S.SYN_SENT
    peer.send(T0, RST | ACK, ack=999)  # does not acknowledge the SYN: ignored
    assert conn.state is S.SYN_SENT
    peer.send(T0, RST | ACK, ack=1001)
    assert conn.state is S.CLOSED and conn.error is not None
    assert conn.error.reason == "refused"


@pytest.mark.parametrize("state", [S.ESTABLISHED, S.FIN_WAIT_2, S.CLOSE_WAIT, S.TIME_WAIT])
def test_in_window_rst_off_rcv_nxt_gets_a_challenge_ack(state: TcpState) -> None:
    conn, peer = to_state(state, now=T0)
    peer.send(T0 + 1, RST, seq=peer.nxt + 10)
    assert conn.state is state  # RFC 5961 §3.2
    [ack] = segments(conn.poll(T0 + 1))
    assert (ack.flags, ack.seq, ack.ack) == (ACK, conn.snd_max & MASK, peer.nxt)
    assert conn.counters.challenge_acks == 1


def test_rst_outside_the_window_is_dropped_silently() -> None:
    conn, peer = established(now=T0)
    peer.send(T0, RST, seq=peer.nxt - 1)
    peer.send(T0, RST, seq=peer.nxt + (1 << 30))
    assert conn.state is S.ESTABLISHED and conn.poll(T0) == []


def test_syn_in_synchronized_state_gets_a_challenge_ack() -> None:
    conn, peer = established(now=T0)
    peer.send(T0, SYN, seq=12345, ack=0)
    assert conn.state is S.ESTABLISHED
    [ack] = segments(conn.poll(T0))
    # RFC 5961 §4.2: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>
    assert (ack.flags, ack.seq, ack.ack) == (ACK, 1001, 900_001)
    later = T0 + 600 * MS  # past the throttle (RFC 5961 §7)
    peer.send(later, SYN | ACK, seq=peer.nxt)  # in window too: same answer
    [again] = segments(conn.poll(later))
    assert again.flags == ACK and conn.state is S.ESTABLISHED
    assert conn.counters.challenge_acks == 2


def test_answers_to_invalid_segments_without_data_are_throttled() -> None:
    """RFC 5961 §7 (Linux tcp_invalid_ratelimit, 500 ms per connection): a burst of
    SYNs, off-sequence RSTs and out-of-window ACKs gets one ACK; the rest are counted
    as suppressed. Out-of-window data is always answered (no ACK loop is made of
    data); after the interval the next one is answered again."""
    conn, peer = established(now=T0)
    peer.send(T0, SYN, seq=12345, ack=0)
    peer.send(T0 + MS, RST, seq=peer.nxt + 10)
    peer.send(T0 + 2 * MS, ACK, seq=peer.nxt - 100)
    peer.send(T0 + 3 * MS, ACK, ack=5000)  # acknowledges data never sent
    assert len(segments(conn.poll(T0 + 3 * MS))) == 1
    assert conn.counters.challenge_acks == 1 and conn.counters.invalid_acks_suppressed == 3
    peer.send(T0 + 4 * MS, ACK, b"old", seq=peer.nxt - 10)
    assert len(segments(conn.poll(T0 + 4 * MS))) == 1  # data: answered
    peer.send(T0 + 501 * MS, SYN, seq=12345, ack=0)
    assert len(segments(conn.poll(T0 + 501 * MS))) == 1
    assert conn.counters.challenge_acks == 2


def test_ack_of_unsent_data_is_answered_and_dropped() -> None:
    conn, peer = established(now=T0)
    peer.send(T0, PSH | ACK, b"data", ack=5000)  # RFC 9293 §3.10.7.4: ACK something not sent
    assert conn.readable == 0
    [ack] = segments(conn.poll(T0))
    assert (ack.flags, ack.seq, ack.ack) == (ACK, 1001, 900_001)
    assert conn.snd_una == 1001


def test_ack_too_old_is_dropped() -> None:
    conn, peer = established(now=T0)
    # RFC 5961 §5.2: SEG.ACK below SND.UNA - MAX.SND.WND
    peer.send(T0, PSH | ACK, b"data", ack=1001 - 65535 - 1)
    assert conn.readable == 0
    assert segments(conn.poll(T0))[0].ack == 900_001


def test_unacceptable_segment_gets_an_ack() -> None:
    conn, peer = established(now=T0)
    peer.send(T0, ACK, b"old", seq=peer.nxt - 10)  # entirely before RCV.NXT
    [ack] = segments(conn.poll(T0))
    assert ack.ack == 900_001 and conn.readable == 0


def test_paws_drops_old_timestamps() -> None:
    conn, peer = established(now=T0)
    peer.send(T0, ACK, b"a", tsval=1000)
    assert conn.recv() == b"a"
    # RFC 7323 §5.3 R1: TSval < TS.Recent fails, beyond the window of one tick that
    # Linux allows (TCP_PAWS_WINDOW): 998 is dropped, 999 would pass
    peer.send(T0, ACK, b"b", tsval=998)
    assert conn.readable == 0 and conn.counters.paws_drops == 1
    [ack] = segments(conn.poll(T0))
    assert ack.ack == 900_002
    # Across the 32-bit wrap 5 is after 0xFFFFFFF0.
    peer.send(T0, ACK, b"c", tsval=0xFFFFFFF0, seq=900_002)
    peer.send(T0, ACK, b"d", tsval=5)
    assert conn.recv() == b""  # 0xFFFFFFF0 is before 1000 (mod 2**32 it is "less")
    peer.nxt = 900_002
    peer.send(T0, ACK, b"e", tsval=2000)
    assert conn.recv() == b"e"


@pytest.mark.parametrize(("window", "accepted"), [(1, True), (0, False)])
def test_a_segment_one_tick_older_passes_paws_within_the_window(window: int,
                                                              accepted: bool) -> None:
    """The peer sends "a" and "b" in one tick (TSval 1000); "a" is lost and resent a
    tick later (TSval 1001), and arrives — in order, so TS.Recent becomes 1001 (RFC 7323
    §4.3) — before the delayed original "b". Linux lets "b", one tick older, through
    (TCP_PAWS_WINDOW); with ``paws_window=0`` the RFC's rule as written drops new data
    and the peer must send it again."""
    conn, peer = established(TcpConfig(paws_window=window), now=T0)
    a = peer.seg(ACK, b"a", tsval=1000)  # lost
    b = peer.seg(ACK, b"b", tsval=1000, seq=(a.seq + 1) & MASK)  # delayed
    peer.send(T0, ACK, b"a", seq=a.seq, tsval=1001)  # the retransmission of "a"
    assert conn.recv() == b"a"
    conn.on_segment(b, T0)
    assert conn.counters.paws_drops == (0 if accepted else 1)
    assert conn.recv() == (b"b" if accepted else b"")


def test_paws_does_not_apply_after_24_days_idle() -> None:
    conn, peer = established(now=T0)
    peer.send(T0, ACK, b"a", tsval=1000)
    later = T0 + 25 * 86_400 * SEC  # RFC 7323 §5.5
    peer.send(later, ACK, b"b", tsval=10)
    assert conn.recv() == b"ab"


def test_segments_without_timestamps_are_dropped_once_negotiated() -> None:
    conn, peer = established(now=T0)
    seg = Segment(PEER_PORT, LOCAL_PORT, peer.nxt, peer.rcv, ACK, 100, (), b"no-ts")
    conn.on_segment(seg, T0)
    assert conn.readable == 0 and conn.poll(T0) == []  # RFC 7323 §3.2: silently
    with_ts = Segment(PEER_PORT, LOCAL_PORT, peer.nxt, peer.rcv, ACK, 100,
                      (NopOption(), NopOption(), TimestampsOption(80, 0)), b"ts")
    conn.on_segment(with_ts, T0)
    assert conn.recv() == b"ts"


def test_segment_for_other_ports_is_ignored() -> None:
    conn, peer = established(now=T0)
    seg = peer.seg(ACK, b"x")
    conn.on_segment(Segment(1, 2, seg.seq, seg.ack, ACK, 1, seg.options, b"x"), T0)
    assert conn.readable == 0 and conn.counters.segments_in == 2  # SYN-ACK and this
