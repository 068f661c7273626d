"""The sender: Nagle (RFC 9293 §3.7.4), sender SWS avoidance (§3.8.6.2.1), zero-window
probing with the persist timer (§3.8.6.1), keep-alives (§3.8.4) and the retransmission
timer (RFC 6298 §5)."""

from __future__ import annotations

from stack.tcp.config import TcpConfig
from stack.tcp.connection import TcpState
from tests.stack.tcp.peer import ACK, MS, PSH, RST, SEC, established, segments

T0 = SEC


def test_nagle_holds_small_segments_while_data_is_unacknowledged() -> None:
    conn, peer = established(now=T0)
    conn.send(b"a")
    [first] = segments(conn.poll(T0))
    assert first.payload == b"a"
    conn.send(b"b")
    assert conn.poll(T0) == []
    conn.send(b"c")
    assert conn.poll(T0) == []
    peer.ack_all(T0 + MS, [first])
    [second] = segments(conn.poll(T0 + MS))
    assert second.payload == b"bc" and second.flags == ACK | PSH


def test_nagle_off_sends_every_write() -> None:
    conn, _ = established(TcpConfig(nagle=False), now=T0)
    payloads = []
    for chunk in (b"a", b"b", b"c"):
        conn.send(chunk)
        payloads += [s.payload for s in segments(conn.poll(T0))]
    assert payloads == [b"a", b"b", b"c"]


def test_nagle_lets_full_segments_go() -> None:
    conn, _ = established(now=T0)
    conn.send(b"a")
    conn.poll(T0)
    conn.send(b"x" * 3000)
    sizes = [len(s.payload) for s in segments(conn.poll(T0))]
    assert sizes == [1448, 1448]  # the 104-byte tail waits for the ACK


def test_sender_sws_avoidance_and_override() -> None:
    conn, peer = established(now=T0)
    peer.send(T0, window=1000 >> 7)  # 896 bytes (scaled), largest window seen 64 KiB
    conn.send(b"q" * 5000)
    assert conn.poll(T0) == []  # less than an MSS and less than half the max window
    deadline = conn.next_deadline()
    assert deadline == T0 + conn.rtt.rto
    [seg] = segments(conn.poll(deadline))  # the override (persist) timer sends what fits
    assert len(seg.payload) == 896


def test_zero_window_persist_probes_back_off_and_reopen() -> None:
    conn, peer = established(TcpConfig(tlp=False), now=T0)  # the RTO, not a probe, at the end
    rto = conn.rtt.rto
    assert rto == 200 * MS  # srtt 0 from the handshake, floored at rto_min
    conn.send(b"p" * 20_000)
    first = segments(conn.poll(T0))
    peer.ack_all(T0 + MS, first, window=0)
    assert conn.snd_wnd == 0
    assert conn.poll(T0 + MS) == []
    times = []
    t = T0 + MS
    for _ in range(5):
        deadline = conn.next_deadline()
        assert deadline is not None
        t = deadline
        [probe] = segments(conn.poll(t))
        assert len(probe.payload) == 1 and probe.seq == peer.rcv
        times.append(t - T0 - MS)
        peer.send(t + MS, window=0)  # the receiver answers: window still closed
        assert conn.poll(t + MS) == []
    # Backoff doubles from the RTO: 200, 600 (=200+400), 1400, 3000, 6200 ms.
    assert times == [200 * MS, 600 * MS, 1400 * MS, 3000 * MS, 6200 * MS]
    assert conn.counters.zero_window_probes == 5
    assert conn.state is TcpState.ESTABLISHED and conn.counters.fast_retransmits == 0
    # The window opens: data flows again, starting with the probed octet.
    peer.send(t + 2 * MS, window=0xFFFF)
    out = segments(conn.poll(t + 2 * MS))
    assert out[0].seq == peer.rcv and sum(len(s.payload) for s in out) > 1000
    assert conn.next_deadline() == t + 2 * MS + rto  # RTO, not persist


def test_zero_window_probes_unanswered_time_out() -> None:
    conn, peer = established(TcpConfig(data_retries=3), now=T0)
    conn.send(b"p" * 20_000)
    peer.ack_all(T0, segments(conn.poll(T0)), window=0)
    conn.poll(T0)
    probes = 0
    for _ in range(10):
        deadline = conn.next_deadline()
        if deadline is None:
            break
        probes += len(conn.poll(deadline))
    assert probes == 3 and conn.error is not None and conn.error.reason == "timeout"


def test_keepalive_probes_then_death() -> None:
    cfg = TcpConfig(keepalive_idle_ns=10 * SEC, keepalive_interval_ns=1 * SEC,
                    keepalive_probes=3)
    conn, peer = established(cfg, now=T0)
    assert conn.next_deadline() == T0 + 10 * SEC
    [probe] = segments(conn.poll(T0 + 10 * SEC))
    # SEG.SEQ = SND.NXT - 1, no data: the peer answers with an ACK (RFC 9293 §3.8.4)
    assert probe.seq == 1000 and probe.payload == b"" and probe.flags == ACK
    assert conn.next_deadline() == T0 + 11 * SEC
    peer.send(T0 + 10 * SEC + MS)  # answered
    assert conn.next_deadline() == T0 + 20 * SEC + MS
    t = T0 + 20 * SEC + MS
    sent = []
    for _ in range(5):
        deadline = conn.next_deadline()
        if deadline is None:
            break
        sent.append((deadline - t, [s.flags for s in segments(conn.poll(deadline))]))
    assert sent == [(0, [ACK]), (SEC, [ACK]), (2 * SEC, [ACK]), (3 * SEC, [RST])]
    assert conn.error is not None and conn.error.reason == "timeout"
    assert conn.counters.keepalives == 4


def test_no_keepalive_by_default() -> None:
    conn, _ = established(now=T0)
    assert conn.next_deadline() is None


def test_rto_backoff_doubling_and_rto_max() -> None:
    conn, _ = established(TcpConfig(rto_max_ns=1 * SEC, data_retries=6, tlp=False), now=T0)
    conn.send(b"d" * 100)
    [orig] = segments(conn.poll(T0))
    times = []
    for _ in range(10):
        deadline = conn.next_deadline()
        if deadline is None:
            break
        out = segments(conn.poll(deadline))
        times.append(deadline - T0)
        if out:
            assert out[0].seq == orig.seq and out[0].payload == orig.payload
    # 200 ms doubling, capped at rto_max = 1 s; 6 retransmissions, then the timeout.
    assert times == [200 * MS, 600 * MS, 1400 * MS, 2400 * MS, 3400 * MS, 4400 * MS,
                     5400 * MS]
    assert conn.error is not None and conn.error.reason == "timeout"
    assert conn.counters.timeouts == 6 and conn.counters.retransmitted_segments == 6


def test_rto_from_karn_samples_without_timestamps() -> None:
    conn, peer = established(TcpConfig(timestamps=False), timestamps=False, now=T0)
    # Handshake sample: 0 → RTO floored at 200 ms.
    conn.send(b"a" * 100)
    seg = segments(conn.poll(T0))
    peer.ack_all(T0 + 100 * MS, seg)
    conn.send(b"b" * 100)
    seg = segments(conn.poll(T0 + 100 * MS))
    peer.ack_all(T0 + 300 * MS, seg)  # R = 200 ms
    # SRTT: 0 → (7*0 + 100)/8 = 12.5 → (7*12.5 + 200)/8 = 35.9375 ms
    # RTTVAR: 0 → (3*0 + |0 - 100|)/4 = 25 → (3*25 + |12.5 - 200|)/4 = 65.625 ms
    assert conn.rtt.samples == 3
    assert conn.rtt.srtt == 35_937_500 and conn.rtt.rttvar == 65_625_000
    assert conn.rtt.rto == 35_937_500 + 4 * 65_625_000  # 298.4375 ms


def test_karn_no_sample_from_a_retransmission() -> None:
    conn, peer = established(TcpConfig(timestamps=False, tlp=False), timestamps=False, now=T0)
    conn.send(b"a" * 100)
    seg = segments(conn.poll(T0))
    rtx = segments(conn.poll(T0 + 200 * MS))
    assert rtx[0].seq == seg[0].seq
    samples = conn.rtt.samples
    peer.ack_all(T0 + 250 * MS, rtx)
    assert conn.rtt.samples == samples and conn.rtt.backoff == 1  # RFC 6298 §3 / §5


def test_window_shrunk_to_zero_under_data_in_flight_is_probed_not_timed_out() -> None:
    conn, peer = established(TcpConfig(data_retries=2), now=T0)
    conn.send(b"k" * 5000)
    sent = segments(conn.poll(T0))
    peer.send(T0 + MS, window=0)  # nothing acknowledged, the window closed
    t = T0 + MS
    for _ in range(6):
        deadline = conn.next_deadline()
        assert deadline is not None
        t = deadline
        out = segments(conn.poll(t))
        assert [len(s.payload) for s in out] == [1] and out[0].seq == sent[0].seq
        peer.send(t + MS, window=0)  # the peer is alive: no timeout (RFC 9293 §3.8.6.1)
    assert conn.error is None and conn.state is TcpState.ESTABLISHED
    peer.send(t + 2 * MS, window=0xFFFF)
    [again] = segments(conn.poll(t + 2 * MS))
    # From SND.UNA again, within the loss window of one segment (RFC 5681 §3.1).
    assert again.seq == sent[0].seq and len(again.payload) == 1448 == conn.cwnd
