"""Closing (RFC 9293 §3.6): active, passive and simultaneous close, TIME-WAIT."""

from __future__ import annotations

from stack.tcp.config import TcpConfig
from stack.tcp.connection import TcpConnection, TcpState
from stack.tcp.segment import Segment
from stack.wire.tcp import NopOption, TimestampsOption
from tests.stack.tcp.peer import (
    ACK,
    FIN,
    LOCAL_PORT,
    PEER_PORT,
    PSH,
    RST,
    SEC,
    established,
    exchange,
    segments,
)

T0 = SEC


def ts(val: int, ecr: int) -> tuple[NopOption, NopOption, TimestampsOption]:
    return (NopOption(), NopOption(), TimestampsOption(val, ecr))


def test_active_close_and_time_wait_exactly() -> None:
    conn, peer = established(now=T0)
    conn.shutdown(T0)
    assert conn.state is TcpState.FIN_WAIT_1
    [fin] = segments(conn.poll(T0))
    assert fin == Segment(LOCAL_PORT, PEER_PORT, 1001, 900_001, FIN | ACK, 32768, ts(1000, 77))
    peer.rcv = 1002
    peer.send(T0 + 1000, ACK)
    assert conn.state is TcpState.FIN_WAIT_2
    peer.send(T0 + 2000, FIN | ACK)
    assert conn.state is TcpState.TIME_WAIT
    [ack] = segments(conn.poll(T0 + 2000))
    assert ack == Segment(LOCAL_PORT, PEER_PORT, 1002, 900_002, ACK, 32768, ts(1000, 77))
    # 2*MSL = 60 s (Linux TCP_TIMEWAIT_LEN).
    assert conn.next_deadline() == T0 + 2000 + 60 * SEC
    assert conn.poll(T0 + 2000 + 60 * SEC - 1) == [] and conn.state is TcpState.TIME_WAIT
    # A retransmitted FIN is acknowledged again and restarts the 2MSL timer.
    peer.send(T0 + 30 * SEC, FIN | ACK, seq=900_001)
    [again] = segments(conn.poll(T0 + 30 * SEC))
    assert (again.seq, again.ack, again.flags) == (1002, 900_002, ACK)
    assert conn.next_deadline() == T0 + 90 * SEC
    assert conn.poll(T0 + 90 * SEC) == []
    assert conn.state is TcpState.CLOSED and conn.error is None
    assert conn.next_deadline() is None


def test_passive_close() -> None:
    conn, peer = established(now=T0)
    peer.send(T0, PSH | ACK, b"bye")
    peer.send(T0, FIN | ACK)
    assert conn.state is TcpState.CLOSE_WAIT
    [ack] = segments(conn.poll(T0))  # the FIN is acknowledged at once
    assert ack.ack == 900_005
    assert not conn.eof and conn.recv() == b"bye" and conn.eof
    conn.send(b"reply")
    conn.shutdown(T0)
    assert conn.state is TcpState.LAST_ACK
    [seg] = segments(conn.poll(T0))
    assert seg.payload == b"reply" and seg.flags == ACK | PSH | FIN  # FIN rides on the data
    peer.rcv = 1001 + 5 + 1
    peer.send(T0 + 1, ACK)
    assert conn.state is TcpState.CLOSED and conn.error is None
    assert conn.next_deadline() is None


def test_simultaneous_close() -> None:
    a = TcpConnection(1111, 2222, TcpConfig(), isn=100, now=0)
    b = TcpConnection(2222, 1111, TcpConfig(), isn=300, now=0)
    a.connect(0)
    exchange_first = segments(a.poll(0))
    b = TcpConnection.accept_syn(exchange_first[0], TcpConfig(), isn=300, now=0)
    exchange(a, b, 0)
    assert a.state is b.state is TcpState.ESTABLISHED
    a.shutdown(SEC)
    b.shutdown(SEC)
    [fin_a] = segments(a.poll(SEC))
    [fin_b] = segments(b.poll(SEC))
    a.on_segment(fin_b, SEC)  # the FINs cross
    b.on_segment(fin_a, SEC)
    assert a.state is b.state is TcpState.CLOSING
    [ack_a] = segments(a.poll(SEC))
    [ack_b] = segments(b.poll(SEC))
    assert ack_a.flags == ack_b.flags == ACK
    a.on_segment(ack_b, SEC)
    b.on_segment(ack_a, SEC)
    assert a.state is b.state is TcpState.TIME_WAIT
    assert a.next_deadline() == b.next_deadline() == SEC + 60 * SEC


def test_fin_waits_for_the_data_before_it() -> None:
    conn, peer = established(now=T0)
    start = peer.nxt
    peer.send(T0, FIN | ACK, b"world", seq=start + 5)  # data and FIN ahead of a hole
    assert conn.state is TcpState.ESTABLISHED and conn.readable == 0
    peer.send(T0, ACK, b"hello", seq=start)
    assert conn.state is TcpState.CLOSE_WAIT
    assert conn.recv() == b"helloworld" and conn.eof


def test_close_with_unread_data_resets() -> None:
    conn, peer = established(now=T0)
    peer.send(T0, ACK, b"unread")
    conn.close(T0)  # RFC 1122 §4.2.2.13: data would be lost, so RST
    [rst] = segments(conn.poll(T0))
    assert rst.flags == RST and rst.seq == 1001
    assert conn.state is TcpState.CLOSED


def test_data_after_close_resets() -> None:
    conn, peer = established(now=T0)
    conn.close(T0)
    [fin] = segments(conn.poll(T0))
    assert fin.flags == FIN | ACK
    peer.send(T0 + 1, ACK, b"late data")
    [rst] = segments(conn.poll(T0 + 1))
    assert rst.flags == RST and conn.state is TcpState.CLOSED


def test_abort_sends_rst_and_closed_answers_with_rst() -> None:
    conn, peer = established(now=T0)
    conn.send(b"pending")
    conn.abort(T0)
    [rst] = segments(conn.poll(T0))
    assert rst == Segment(LOCAL_PORT, PEER_PORT, 1001, 0, RST, 0)
    assert conn.is_closed and conn.error is None and conn.next_deadline() is None
    peer.send(T0 + 1, ACK, b"more", ack=1001)
    [reply] = segments(conn.poll(T0 + 1))
    assert reply == Segment(LOCAL_PORT, PEER_PORT, 1001, 0, RST, 0)  # RFC 9293 §3.10.7.1


def test_close_before_established() -> None:
    conn, _ = established(now=T0)
    fresh = TcpConnection(1, 2, TcpConfig(), isn=0, now=0)
    fresh.close(0)
    assert fresh.is_closed
    conn.shutdown(T0)
    conn.shutdown(T0)  # idempotent
    assert conn.state is TcpState.FIN_WAIT_1


def test_a_closed_connection_gives_up_fin_wait_2_after_the_timeout() -> None:
    """Linux tcp_fin_timeout: after close() (not a half-close) a peer that never sends
    its FIN does not hold the connection for ever: after 60 s it is reset."""
    conn, peer = established(now=T0)
    conn.close(T0)
    [fin] = segments(conn.poll(T0))
    peer.rcv = (fin.seq + 1) & 0xFFFFFFFF
    peer.send(T0 + 1000, ACK)
    assert conn.state is TcpState.FIN_WAIT_2
    assert conn.next_deadline() == T0 + 1000 + 60 * SEC
    assert conn.poll(T0 + 1000 + 60 * SEC - 1) == []
    [rst] = segments(conn.poll(T0 + 1000 + 60 * SEC))
    assert (rst.seq, rst.ack, rst.flags) == (1002, 900_001, RST | ACK)
    assert conn.state is TcpState.CLOSED and conn.counters.fin_wait2_timeouts == 1
    assert conn.next_deadline() is None


def test_a_half_closed_connection_waits_in_fin_wait_2() -> None:
    conn, peer = established(now=T0)
    conn.shutdown(T0)
    [fin] = segments(conn.poll(T0))
    peer.rcv = (fin.seq + 1) & 0xFFFFFFFF
    peer.send(T0 + 1000, ACK)
    assert conn.state is TcpState.FIN_WAIT_2 and conn.next_deadline() is None
    peer.send(T0 + 120 * SEC, ACK | PSH, b"still talking")
    assert conn.recv() == b"still talking" and conn.state is TcpState.FIN_WAIT_2


def test_the_fin_wait_2_timer_stops_when_the_fin_comes() -> None:
    conn, peer = established(TcpConfig(fin_wait2_timeout_ns=5 * SEC), now=T0)
    conn.close(T0)
    [fin] = segments(conn.poll(T0))
    peer.rcv = (fin.seq + 1) & 0xFFFFFFFF
    peer.send(T0 + 1000, ACK)
    assert conn.next_deadline() == T0 + 1000 + 5 * SEC
    peer.send(T0 + 2 * SEC, FIN | ACK)
    assert conn.state is TcpState.TIME_WAIT
    assert conn.next_deadline() == T0 + 2 * SEC + 60 * SEC


def test_close_after_a_half_close_starts_the_fin_wait_2_timer() -> None:
    conn, peer = established(now=T0)
    conn.shutdown(T0)
    [fin] = segments(conn.poll(T0))
    peer.rcv = (fin.seq + 1) & 0xFFFFFFFF
    peer.send(T0 + 1000, ACK)
    assert conn.next_deadline() is None
    conn.close(T0 + 5 * SEC)
    assert conn.state is TcpState.FIN_WAIT_2
    assert conn.next_deadline() == T0 + 65 * SEC
