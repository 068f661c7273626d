"""TSO emission (smoltcp PR 1148): one segment of up to min(max_segment_payload, usable
cwnd, usable peer window, queued bytes), whole MSS multiples unless it is the tail, with
``segment_size`` = the effective MSS."""

from __future__ import annotations

from stack.tcp.config import TcpConfig
from tests.stack.tcp.harness import split_tso
from tests.stack.tcp.peer import ACK, FIN, MS, PSH, SEC, established

T0 = SEC
TSO = 65535 - 20 - 32  # IPv4 header and a TCP header with timestamps: 65483
MSS = 1448


def test_slow_start_grows_tso_segments_to_the_64k_limit() -> None:
    """Without deferral (tso_win_divisor 0) every burst goes at once."""
    conn, peer = established(TcpConfig(max_segment_payload=TSO, congestion="reno",
                                       tso_win_divisor=0), now=T0)
    peer.send(T0, window=0xFFFF)  # 8 MiB window (shift 7)
    conn.send(b"t" * (4 << 20))
    rounds = []
    t = T0
    for _ in range(30):
        outs = conn.poll(t)
        assert all(o.segment_size == (MSS if len(o.segment.payload) > MSS else None)
                   for o in outs)
        rounds.append([len(o.segment.payload) for o in outs])
        t += MS
        peer.ack_all(t, [o.segment for o in outs])  # one stretch ACK for the whole burst
    # IW = 10 segments; each ACK adds L = 2*SMSS (RFC 3465 §2.2). A burst is
    # min(cwnd, window, 64K) per segment: 65483 rounded down to whole segments is
    # 45 * 1448 = 65160; a cwnd beyond that goes out in several segments.
    for i, sizes in enumerate(rounds):
        cwnd = 14480 + 2896 * i
        full, rest = divmod(cwnd, 65160)
        assert sizes == [65160] * full + ([rest] if rest else []), i
    assert rounds[0] == [14480] and rounds[17] == [63712] and rounds[18] == [65160, 1448]
    # Options (timestamps) are in the one header; the device copies them.
    assert len(conn.poll(t)[0].segment.options) == 3


def test_peer_window_limits_the_tso_segment() -> None:
    conn, peer = established(TcpConfig(max_segment_payload=TSO), now=T0)
    peer.send(T0, window=12000 >> 7)  # 11904 bytes, below the initial cwnd of 14480
    conn.send(b"w" * 100_000)
    [out] = conn.poll(T0)
    assert len(out.segment.payload) == 8 * MSS  # 11584, a whole number of segments
    assert out.segment_size == MSS and out.segment.flags == ACK


def test_tail_of_queued_data_is_not_rounded() -> None:
    conn, _ = established(TcpConfig(max_segment_payload=TSO), now=T0)
    conn.send(b"z" * 3000)
    [out] = conn.poll(T0)
    assert len(out.segment.payload) == 3000 and out.segment_size == MSS
    assert out.segment.flags == ACK | PSH
    wire = split_tso(out)
    assert [len(s.payload) for s in wire] == [1448, 1448, 104]
    assert [s.flags for s in wire] == [ACK, ACK, ACK | PSH]


def test_nagle_holds_the_tail_while_data_is_in_flight() -> None:
    conn, peer = established(TcpConfig(max_segment_payload=TSO), now=T0)
    conn.send(b"a")
    first = conn.poll(T0)
    conn.send(b"b" * 5000)
    [out] = conn.poll(T0)
    assert len(out.segment.payload) == 3 * MSS  # 904 bytes wait for the ACK
    peer.ack_all(T0 + MS, [first[0].segment, out.segment])
    [tail] = conn.poll(T0 + MS)
    assert len(tail.segment.payload) == 5000 - 3 * MSS and tail.segment_size is None


def test_fin_rides_on_the_last_tso_segment() -> None:
    conn, _ = established(TcpConfig(max_segment_payload=TSO), now=T0)
    conn.send(b"f" * 10_000)
    conn.shutdown(T0)
    [out] = conn.poll(T0)
    assert len(out.segment.payload) == 10_000 and out.segment.flags == ACK | PSH | FIN
    wire = split_tso(out)
    assert all(not s.flags & FIN for s in wire[:-1]) and wire[-1].flags == ACK | PSH | FIN


def test_without_tso_payloads_are_at_most_the_effective_mss() -> None:
    conn, peer = established(TcpConfig(max_segment_payload=0), now=T0)
    peer.send(T0, window=0xFFFF)
    conn.send(b"n" * 100_000)
    outs = conn.poll(T0)
    assert [len(o.segment.payload) for o in outs] == [MSS] * 10
    assert all(o.segment_size is None for o in outs)
    # A TSO limit at or below the MSS means no TSO either.
    conn.set_max_segment_payload(MSS)
    peer.ack_all(T0 + MS, [o.segment for o in outs])
    assert all(len(o.segment.payload) <= MSS and o.segment_size is None
               for o in conn.poll(T0 + MS))


def test_tso_limit_can_change() -> None:
    conn, _ = established(TcpConfig(max_segment_payload=TSO, tso_win_divisor=0), now=T0)
    conn.set_max_segment_payload(4 * MSS + 100)
    conn.send(b"c" * 100_000)
    outs = conn.poll(T0)
    assert [len(o.segment.payload) for o in outs] == [4 * MSS, 4 * MSS, 2 * MSS]


def test_retransmissions_after_a_timeout_grow_to_tso_size() -> None:
    conn, peer = established(TcpConfig(max_segment_payload=TSO, congestion="reno", tlp=False),
                             now=T0)
    conn.send(b"r" * 14480)
    [orig] = conn.poll(T0)
    assert len(orig.segment.payload) == 14480
    deadline = conn.next_deadline()
    assert deadline is not None
    [first] = conn.poll(deadline)  # cwnd = 1 SMSS: one segment from SND.UNA
    assert len(first.segment.payload) == MSS and first.segment_size is None
    peer.take([first])  # the ACK echoes the retransmission's timestamp: not spurious
    peer.ack_all(deadline + MS, [first.segment])
    [second] = conn.poll(deadline + MS)  # slow start: 2 SMSS in one TSO segment
    assert len(second.segment.payload) == 2 * MSS and second.segment_size == MSS
    assert second.segment.seq == first.segment.seq + MSS
    assert conn.counters.retransmitted_bytes == 3 * MSS


def test_tso_deferral_waits_for_a_larger_packet() -> None:
    """Linux tcp_tso_should_defer: with data in flight, room for less than a full TSO
    packet and less than a third of the window waits for the next ACK; then the bigger
    packet goes. With nothing in flight the sender never waits."""
    conn, peer = established(TcpConfig(max_segment_payload=TSO, congestion="reno"), now=T0)
    peer.send(T0, window=0xFFFF)
    conn.send(b"d" * (4 << 20))
    t = T0
    rounds = []
    for _ in range(30):
        outs = conn.poll(t)
        rounds.append([len(o.segment.payload) for o in outs])
        t += MS
        peer.ack_all(t, [o.segment for o in outs])
    # the 1448-byte tail of round 18 (cwnd 66608) waits and rides in round 19's packets
    assert rounds[18] == [65160]
    assert conn.counters.tso_deferrals > 0
    assert rounds[19:29] == [[65160]] * 10 and rounds[29] == [65160, 33304]
    fresh, _ = established(TcpConfig(max_segment_payload=TSO), now=T0)
    fresh.send(b"x" * 100)  # nothing in flight: no deferral
    [out] = fresh.poll(T0)
    assert len(out.segment.payload) == 100 and fresh.counters.tso_deferrals == 0
