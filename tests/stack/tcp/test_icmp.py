"""TCP and ICMP errors: RFC 5927 §4.1 (believe only an error quoting data in flight),
path MTU reductions (RFC 1191 §6.5, RFC 8201 §5.4: resend at the new size at once, no
congestion response) and hard/soft errors (RFC 1122 §4.2.3.9, RFC 5461)."""

from __future__ import annotations

import pytest

from stack.tcp.config import TcpConfig
from stack.tcp.connection import TcpState
from stack.tcp.state import TcpError
from tests.stack.tcp.peer import MASK, MS, SEC, client, established

MSS = 1448
TSO = 65483


def test_only_an_error_quoting_data_in_flight_is_believed() -> None:
    conn, _peer = established()
    assert not conn.icmp_seq_acceptable(conn.snd_una & MASK)  # nothing in flight
    conn.send(b"x" * 3000)
    conn.poll(SEC)
    una, nxt = conn.snd_una, conn.snd_max
    assert nxt - una == 2 * MSS  # the 104-byte tail waits (Nagle)
    assert conn.icmp_seq_acceptable(una & MASK)
    assert conn.icmp_seq_acceptable((nxt - 1) & MASK)
    assert not conn.icmp_seq_acceptable(nxt & MASK)
    assert not conn.icmp_seq_acceptable((una - 1) & MASK)


def test_a_syn_is_matched_by_its_iss() -> None:
    conn = client(isn=1000)
    conn.connect(SEC)
    conn.poll(SEC)
    assert conn.icmp_seq_acceptable(1000) and not conn.icmp_seq_acceptable(1001)


def test_a_smaller_path_mtu_resends_what_is_in_flight_at_the_new_size() -> None:
    conn, peer = established(TcpConfig(congestion="reno"))
    conn.send(b"p" * 20_000)
    first = peer.take(conn.poll(SEC))
    assert [len(s.payload) for s in first] == [MSS] * 10
    cwnd, ssthresh = conn.cwnd, conn.ssthresh
    # "fragmentation needed", next-hop MTU 1280: 1240 octets of TCP payload and options
    assert conn.on_path_mtu(1280 - 40, SEC + MS)
    assert conn.eff_mss == 1240 - 12 and conn.path_mss == 1240
    resent = peer.take(conn.poll(SEC + MS))
    # cwnd (bytes) unchanged; the flight is resent from SND.UNA in 1228-byte segments
    assert (conn.cwnd, conn.ssthresh) == (cwnd, ssthresh)
    assert [len(s.payload) for s in resent] == [1228] * 11 + [14480 - 11 * 1228]
    assert resent[0].seq == first[0].seq
    c = conn.counters
    assert c.pmtu_reductions == 1 and c.retransmitted_segments == 12
    assert c.fast_retransmits == 0 and c.timeouts == 0
    assert not conn.on_path_mtu(1300 - 40, SEC + 2 * MS)  # no increase from an error
    assert conn.path_mss == 1240


def test_tso_keeps_going_with_the_smaller_segment_size() -> None:
    conn, peer = established(TcpConfig(max_segment_payload=TSO, tso_win_divisor=0))
    conn.send(b"t" * 100_000)
    peer.take(conn.poll(SEC))
    conn.on_path_mtu(1240, SEC + MS)
    outs = conn.poll(SEC + MS)
    # the 14480 bytes in flight again: one TSO packet of whole 1228-byte segments, then
    # the rest of the window
    assert [(len(o.segment.payload), o.segment_size) for o in outs] == [
        (11 * 1228, 1228), (14480 - 11 * 1228, None)]


def test_a_hard_error_ends_an_opening_connection() -> None:
    conn = client()
    conn.connect(SEC)
    conn.poll(SEC)
    conn.on_icmp_error(hard=True)
    assert conn.state is TcpState.CLOSED
    assert isinstance(conn.error, TcpError) and conn.error.reason == "unreachable"


@pytest.mark.parametrize("hard", [True, False])
def test_errors_in_a_synchronized_state_are_soft(hard: bool) -> None:
    conn, _ = established()
    conn.on_icmp_error(hard=hard)
    assert conn.state is TcpState.ESTABLISHED and conn.counters.icmp_soft_errors == 1


def test_a_tiny_mtu_is_clamped() -> None:
    conn, _ = established()
    conn.on_path_mtu(10, SEC)
    assert conn.path_mss == 64


def test_peer_without_timestamps_uses_the_whole_mss() -> None:
    conn, _ = established(timestamps=False)
    conn.on_path_mtu(1240, SEC)
    assert conn.eff_mss == 1240
