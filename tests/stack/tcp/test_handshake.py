"""Opening connections (RFC 9293 §3.5, §3.10.7.2-3) with the SYN options of RFC 9293
§3.7.1 (MSS), RFC 7323 (window scale, timestamps) and RFC 2018 (SACK-permitted)."""

from __future__ import annotations

import pytest

from stack.tcp.config import TcpConfig
from stack.tcp.connection import TcpConnection, TcpState
from stack.tcp.segment import Segment
from stack.wire.tcp import (
    MssOption,
    NopOption,
    SackPermittedOption,
    TcpFlags,
    TimestampsOption,
    WindowScaleOption,
)
from tests.stack.tcp.peer import (
    ACK,
    LOCAL_PORT,
    PEER_PORT,
    RST,
    SEC,
    SYN,
    Peer,
    client,
    established,
    exchange,
    segments,
)

FULL_SYN_OPTIONS = (MssOption(1460), SackPermittedOption(), TimestampsOption(1000, 0),
                    NopOption(), WindowScaleOption(7))


def test_active_open_segments_exactly() -> None:
    conn = client(isn=1000)
    conn.connect(SEC)
    assert conn.state is TcpState.SYN_SENT
    [syn] = segments(conn.poll(SEC))
    # TSval is the millisecond clock: 1 s → 1000; a 4 MiB buffer needs shift 7.
    assert syn == Segment(LOCAL_PORT, PEER_PORT, 1000, 0, SYN, 65535, FULL_SYN_OPTIONS)
    assert conn.next_deadline() == SEC + SEC  # initial RTO, RFC 6298 §2.1
    peer = Peer(conn)
    peer.take([])
    peer.ts_recent = 1000
    peer.rcv = 1001
    now = SEC + 5_000_000
    peer.send(now, SYN | ACK, options=peer.syn_options())
    assert conn.state is TcpState.ESTABLISHED
    [ack] = segments(conn.poll(now))
    # The window is scaled from here on: 4 MiB >> 7 = 32768.
    assert ack == Segment(LOCAL_PORT, PEER_PORT, 1001, 900_001, ACK, 32768,
                          (NopOption(), NopOption(), TimestampsOption(1005, 77)))
    assert (conn.eff_mss, conn.snd_wscale, conn.rcv_wscale) == (1448, 7, 7)
    assert conn.ts_enabled and conn.sack_enabled
    assert conn.snd_wnd == 65535  # the SYN-ACK's window is never scaled (RFC 7323 §2.2)
    assert conn.rtt.srtt == 5_000_000  # RTTM from the SYN-ACK's TSecr
    assert conn.next_deadline() is None


def test_passive_open_segments_exactly() -> None:
    syn = Segment(PEER_PORT, LOCAL_PORT, 900_000, 0, SYN, 29200,
                  (MssOption(1400), SackPermittedOption(), TimestampsOption(77, 0), NopOption(),
                   WindowScaleOption(9)))
    conn = TcpConnection.accept_syn(syn, TcpConfig(), isn=5000, now=2 * SEC)
    assert conn.state is TcpState.SYN_RECEIVED
    [synack] = segments(conn.poll(2 * SEC))
    assert synack == Segment(LOCAL_PORT, PEER_PORT, 5000, 900_001, SYN | ACK, 65535,
                             (MssOption(1460), SackPermittedOption(), TimestampsOption(2000, 77),
                              NopOption(), WindowScaleOption(7)))
    final = Segment(PEER_PORT, LOCAL_PORT, 900_001, 5001, ACK, 100,
                    (NopOption(), NopOption(), TimestampsOption(78, 2000)))
    conn.on_segment(final, 2 * SEC + 3_000_000)
    assert conn.state is TcpState.ESTABLISHED
    assert conn.snd_wnd == 100 << 9  # scaled now
    assert conn.eff_mss == 1400 - 12
    assert conn.poll(2 * SEC + 3_000_000) == []


@pytest.mark.parametrize(
    ("cfg", "options"),
    [
        (TcpConfig(timestamps=False),
         (MssOption(1460), NopOption(), NopOption(), SackPermittedOption(), NopOption(),
          WindowScaleOption(7))),
        (TcpConfig(sack=False),
         (MssOption(1460), NopOption(), NopOption(), TimestampsOption(1000, 0), NopOption(),
          WindowScaleOption(7))),
        (TcpConfig(window_scaling=False),
         (MssOption(1460), SackPermittedOption(), TimestampsOption(1000, 0))),
        (TcpConfig(window_scaling=False, sack=False, timestamps=False, mss=8960),
         (MssOption(8960),)),
        (TcpConfig(receive_buffer=65535), (MssOption(1460), SackPermittedOption(),
                                           TimestampsOption(1000, 0), NopOption(),
                                           WindowScaleOption(0))),
    ],
)
def test_syn_options_follow_the_config(cfg: TcpConfig, options: tuple[object, ...]) -> None:
    conn = client(cfg)
    conn.connect(SEC)
    [syn] = segments(conn.poll(SEC))
    assert syn.options == options
    assert len(syn.header().emit()) % 4 == 0


def test_synack_carries_only_what_the_syn_offered() -> None:
    syn = Segment(PEER_PORT, LOCAL_PORT, 1, 0, SYN, 8192, (MssOption(1460),))
    conn = TcpConnection.accept_syn(syn, TcpConfig(), isn=7, now=0)
    [synack] = segments(conn.poll(0))
    assert synack.options == (MssOption(1460),)
    assert not (conn.ts_enabled or conn.sack_enabled or conn.window_scaling)
    assert conn.eff_mss == 1460


def test_mss_negotiation_and_effective_mss() -> None:
    conn, _ = established(mss=1460)
    assert conn.eff_mss == 1448  # 1460 less NOP NOP TS
    conn, _ = established(mss=1460, timestamps=False)
    assert conn.eff_mss == 1460
    conn, _ = established(mss=9000)
    assert conn.eff_mss == 1448  # our own MSS bounds it
    conn, _ = established(mss=1200)
    assert conn.eff_mss == 1188
    conn, _ = established(mss=None)  # no MSS option: RFC 9293 §3.7.1 default 536
    assert conn.eff_mss == 536 - 12
    conn, _ = established(TcpConfig(default_mss=1220), mss=None, timestamps=False)
    assert conn.eff_mss == 1220
    conn, _ = established(mss=1)  # nonsense MSS is raised to a floor
    assert conn.eff_mss == 64 - 12


def test_window_scaling_arithmetic() -> None:
    conn, peer = established(window_shift=3)
    assert conn.snd_wscale == 3 and conn.rcv_wscale == 7
    peer.send(SEC, window=1000)
    assert conn.snd_wnd == 8000  # SEG.WND << Snd.Wind.Shift
    peer.send(SEC, window=0xFFFF)
    assert conn.snd_wnd == 0xFFFF << 3
    # Our window: 4 MiB >> 7 = 32768 units of 128. 1000 unread bytes: the right edge
    # stays where it was (no shrinking, RFC 9293 §3.8.6.2.2), the field rounded up.
    peer.send(SEC, payload=b"x" * 1000)
    [ack] = segments(conn.poll(SEC + 100_000_000))  # delayed ACK
    edge = 1000 + 128 * -(-(4 * 1024 * 1024 - 1000) // 128)  # relative to the first byte
    assert ack.window == 32761 and edge == 1000 + 32761 * 128
    # Reading 1000 bytes frees less than an MSS: receiver SWS avoidance keeps the edge.
    conn.recv()
    peer.send(SEC + 200_000_000, payload=b"y" * 2000)
    [ack] = segments(conn.poll(SEC + 300_000_000))
    assert ack.window == -(-(edge - 3000) // 128) == 32746
    # Reading the 2000 frees 2896 beyond the edge (≥ 1 MSS): the whole buffer is offered.
    conn.recv()
    peer.send(SEC + 400_000_000, payload=b"z" * 10)
    [ack] = segments(conn.poll(SEC + 500_000_000))
    assert ack.window == (4 * 1024 * 1024 - 10) >> 7


def test_window_shift_is_capped_at_14() -> None:
    conn, _ = established(window_shift=15)
    assert conn.snd_wscale == 14  # RFC 7323 §2.3


def test_no_window_scaling_unless_both_offer() -> None:
    conn, peer = established(TcpConfig(window_scaling=False), window_shift=7)
    assert (conn.snd_wscale, conn.rcv_wscale) == (0, 0)
    peer.send(SEC, window=1000)
    assert conn.snd_wnd == 1000
    conn, _ = established(window_shift=None)
    assert not conn.window_scaling and conn.rcv_wscale == 0


def test_simultaneous_open() -> None:
    a = TcpConnection(1111, 2222, TcpConfig(), isn=100, now=0)
    b = TcpConnection(2222, 1111, TcpConfig(), isn=300, now=0)
    a.connect(0)
    b.connect(0)
    [syn_a] = segments(a.poll(0))
    [syn_b] = segments(b.poll(0))
    a.on_segment(syn_b, 0)  # RFC 9293 Figure 8, lines 3-4
    b.on_segment(syn_a, 0)
    assert a.state is b.state is TcpState.SYN_RECEIVED
    [synack_a] = segments(a.poll(0))
    [synack_b] = segments(b.poll(0))
    assert (synack_a.seq, synack_a.ack, synack_a.flags) == (100, 301, SYN | ACK)
    assert (synack_b.seq, synack_b.ack, synack_b.flags) == (300, 101, SYN | ACK)
    a.on_segment(synack_b, 1)
    b.on_segment(synack_a, 1)
    assert a.state is b.state is TcpState.ESTABLISHED
    assert a.ts_enabled and a.sack_enabled and a.snd_wscale == 7
    assert a.send(b"hello") == 5
    log = exchange(a, b, 2)
    assert b.recv() == b"hello"
    assert [who for who, _ in log] == ["a"]
    assert b.next_deadline() == 2 + 40_000_000  # the delayed ACK
    [ack] = segments(b.poll(2 + 40_000_000))
    assert ack.ack == 106 and ack.flags == ACK


def test_syn_retries_then_timeout() -> None:
    conn = client(isn=1, now=0)
    conn.connect(0)
    sent = [(0, segments(conn.poll(0)))]
    for _ in range(20):
        deadline = conn.next_deadline()
        if deadline is None:
            break
        sent.append((deadline, segments(conn.poll(deadline))))
    times = [t for t, segs in sent if segs]
    # RTO 1 s doubling (RFC 6298 §5.5): retransmissions at 1, 3, 7, 15, 31, 63 s.
    assert times == [0, 1 * SEC, 3 * SEC, 7 * SEC, 15 * SEC, 31 * SEC, 63 * SEC]
    assert all(segs[0].flags == SYN and segs[0].seq == 1 for t, segs in sent if segs)
    assert sent[-1][0] == 127 * SEC and conn.state is TcpState.CLOSED
    assert conn.error is not None and conn.error.reason == "timeout"
    assert conn.counters.timeouts == 6 and conn.counters.retransmitted_segments == 6


def test_lost_syn_means_three_second_rto_and_one_segment_window() -> None:
    conn = client(TcpConfig(timestamps=False), isn=1, now=0)
    conn.connect(0)
    conn.poll(0)
    conn.poll(SEC)  # the SYN is retransmitted
    peer = Peer(conn, timestamps=False)
    peer.rcv = 2
    peer.send(SEC + 10_000_000, SYN | ACK, options=peer.syn_options())
    assert conn.state is TcpState.ESTABLISHED
    assert conn.rtt.rto == 3 * SEC  # RFC 6298 §5.7: no sample (Karn) after a SYN timeout
    assert conn.cwnd == conn.eff_mss == 1460  # RFC 5681 §3.1: IW = 1 segment


def test_lost_synack_is_sent_again_on_the_duplicate_syn() -> None:
    syn = Segment(PEER_PORT, LOCAL_PORT, 900_000, 0, SYN, 8192, (MssOption(1460),))
    conn = TcpConnection.accept_syn(syn, TcpConfig(), isn=5000, now=0)
    [first] = segments(conn.poll(0))
    conn.on_segment(syn, 500_000_000)
    [again] = segments(conn.poll(500_000_000))
    assert again.flags == SYN | ACK and again.seq == first.seq == 5000
    # And by the timer: the SYN-ACK's RTO is 1 s from its first transmission.
    [timer] = segments(conn.poll(SEC))
    assert timer.flags == SYN | ACK and conn.counters.timeouts == 1


def test_synack_with_bad_ack_gets_a_reset() -> None:
    conn = client(isn=1000)
    conn.connect(SEC)
    conn.poll(SEC)
    bad = Segment(PEER_PORT, LOCAL_PORT, 5, 999, SYN | ACK, 100)
    conn.on_segment(bad, SEC)
    [rst] = segments(conn.poll(SEC))
    assert rst == Segment(LOCAL_PORT, PEER_PORT, 999, 0, RST, 0)  # <SEQ=SEG.ACK><CTL=RST>
    assert conn.state is TcpState.SYN_SENT


def test_accept_syn_rejects_non_syn() -> None:
    with pytest.raises(ValueError):
        TcpConnection.accept_syn(Segment(1, 2, 3, 4, TcpFlags.ACK, 0), TcpConfig(), isn=0, now=0)


def test_data_queued_before_established_goes_after_the_handshake() -> None:
    conn = client(isn=1000)
    conn.connect(SEC)
    assert conn.send(b"early") == 5
    conn.poll(SEC)
    peer = Peer(conn)
    peer.ts_recent = 1000
    peer.rcv = 1001
    peer.send(SEC, SYN | ACK, options=peer.syn_options())
    [seg] = segments(conn.poll(SEC))
    assert seg.payload == b"early" and seg.seq == 1001 and seg.flags == ACK | TcpFlags.PSH


def test_data_and_fin_on_the_synack() -> None:
    conn = client(isn=1000)
    conn.connect(SEC)
    conn.poll(SEC)
    peer = Peer(conn)
    peer.ts_recent = 1000
    peer.rcv = 1001
    peer.send(SEC, SYN | ACK | TcpFlags.FIN, b"greetings", options=peer.syn_options())
    assert conn.state is TcpState.CLOSE_WAIT
    assert conn.recv() == b"greetings" and conn.eof
    [ack] = segments(conn.poll(SEC))
    assert ack.ack == 900_000 + 1 + 9 + 1


def test_shutdown_before_established_sends_fin_after_the_handshake() -> None:
    conn = client(isn=1000)
    conn.connect(SEC)
    conn.send(b"bye")
    conn.shutdown(SEC)
    [syn] = segments(conn.poll(SEC))
    assert syn.flags == SYN
    peer = Peer(conn)
    peer.ts_recent = 1000
    peer.rcv = 1001
    peer.send(SEC, SYN | ACK, options=peer.syn_options())
    assert conn.state is TcpState.FIN_WAIT_1
    [seg] = segments(conn.poll(SEC))
    assert seg.payload == b"bye" and seg.flags == ACK | TcpFlags.PSH | TcpFlags.FIN


def test_bad_ack_in_syn_received_gets_a_reset() -> None:
    syn = Segment(PEER_PORT, LOCAL_PORT, 900_000, 0, SYN, 8192, (MssOption(1460),))
    conn = TcpConnection.accept_syn(syn, TcpConfig(), isn=5000, now=0)
    conn.poll(0)
    conn.on_segment(Segment(PEER_PORT, LOCAL_PORT, 900_001, 4000, ACK, 100), 1)
    [rst] = segments(conn.poll(1))
    assert rst == Segment(LOCAL_PORT, PEER_PORT, 4000, 0, RST, 0)
    assert conn.state is TcpState.SYN_RECEIVED


def test_listen_state_answers_like_rfc_9293_3_10_7_2() -> None:
    conn = client(isn=1)
    conn.listen()
    conn.on_segment(Segment(PEER_PORT, LOCAL_PORT, 5, 77, ACK, 100), 0)
    [rst] = segments(conn.poll(0))
    assert rst == Segment(LOCAL_PORT, PEER_PORT, 77, 0, RST, 0)
    conn.on_segment(Segment(PEER_PORT, LOCAL_PORT, 5, 0, RST, 100), 0)
    assert conn.poll(0) == [] and conn.state is TcpState.LISTEN
    conn.on_segment(Segment(PEER_PORT, LOCAL_PORT, 5, 0, SYN, 100), 0)
    assert conn.state is TcpState.SYN_RECEIVED
    [synack] = segments(conn.poll(0))
    assert (synack.seq, synack.ack, synack.flags) == (1, 6, SYN | ACK)
