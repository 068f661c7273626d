"""Property tests: any sequence of segments (flag combinations, sequence and
acknowledgment numbers near and far, huge and zero windows, option garbage that parsed,
payloads) thrown at a connection in any state, interleaved with the application's calls
and polls, never raises and never breaks the connection's invariants."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stack.tcp.config import TcpConfig
from stack.tcp.connection import TcpConnection, TcpError, TcpState
from stack.tcp.segment import Segment
from stack.wire.tcp import (
    MssOption,
    NopOption,
    SackOption,
    SackPermittedOption,
    TcpFlags,
    TcpOption,
    TimestampsOption,
    UnknownOption,
    WindowScaleOption,
)
from tests.stack.tcp.peer import LOCAL_PORT, MASK, PEER_PORT, SEC, client, to_state

STATES = [s for s in TcpState if s not in (TcpState.LISTEN, TcpState.CLOSED)]
CONFIGS = [
    TcpConfig(),
    TcpConfig(max_segment_payload=65483, congestion="reno", receive_buffer=8000,
              send_buffer=20_000),
    TcpConfig(sack=False, timestamps=False, window_scaling=False, nagle=False,
              delayed_ack=False, keepalive_idle_ns=SEC, keepalive_interval_ns=SEC // 10,
              receive_buffer=3000),
]

u32 = st.integers(0, MASK)
near = st.integers(-70_000, 70_000)


def options() -> st.SearchStrategy[tuple[TcpOption, ...]]:
    one: st.SearchStrategy[TcpOption] = st.one_of(
        st.just(NopOption()),
        st.builds(MssOption, st.integers(0, 0xFFFF)),
        st.builds(WindowScaleOption, st.integers(0, 255)),
        st.just(SackPermittedOption()),
        st.builds(TimestampsOption, u32, u32),
        st.builds(SackOption, st.lists(st.tuples(u32, u32), min_size=1, max_size=4)
                  .map(tuple)),
        st.builds(UnknownOption, st.integers(9, 255), st.binary(max_size=6)),
    )
    return st.lists(one, max_size=4).map(tuple)


def timestamps_and_sack(una: int) -> st.SearchStrategy[tuple[TcpOption, ...]]:
    """Plausible options: timestamps and SACK blocks near SND.UNA."""
    def build(tsval: int, tsecr: int, blocks: tuple[tuple[int, int], ...]
              ) -> tuple[TcpOption, ...]:
        opts: tuple[TcpOption, ...] = (NopOption(), NopOption(), TimestampsOption(tsval, tsecr))
        if blocks:
            opts += (NopOption(), NopOption(), SackOption(blocks))
        return opts
    edge = near.map(lambda d: (una + d) & MASK)
    return st.builds(build, st.integers(0, 10_000), st.integers(0, 10_000),
                     st.lists(st.tuples(edge, edge), max_size=3).map(tuple))


@st.composite
def segment_for(draw: st.DrawFn, conn: TcpConnection) -> Segment:
    """A segment aimed near the connection's sequence spaces (or anywhere)."""
    rcv = conn.rcv_nxt & MASK
    una = conn.snd_una & MASK
    seq = draw(st.one_of(u32, near.map(lambda d: (rcv + d) & MASK)))
    ack = draw(st.one_of(u32, near.map(lambda d: (una + d) & MASK)))
    flags = TcpFlags(draw(st.integers(0, 0xFF)))
    opts = draw(st.one_of(options(), timestamps_and_sack(una)))
    payload = draw(st.one_of(st.just(b""), st.binary(max_size=64),
                             st.integers(1, 4000).map(bytes)))
    window = draw(st.one_of(st.just(0), st.just(0xFFFF), st.integers(0, 0xFFFF)))
    return Segment(PEER_PORT, LOCAL_PORT, seq, ack, flags, window, opts, payload,
                   draw(st.integers(0, 0xFFFF)))


def check_invariants(conn: TcpConnection, now: int) -> None:
    assert conn.snd_una <= conn.snd_nxt <= conn.snd_max
    fin = 1 if conn.state in (TcpState.FIN_WAIT_1, TcpState.FIN_WAIT_2, TcpState.CLOSING,
                              TcpState.LAST_ACK, TcpState.TIME_WAIT) else 0
    assert conn.snd_max <= conn.snd_una + conn.send_queued + fin + 1 or conn.is_closed
    assert conn.send_queued <= conn.config.send_buffer
    assert conn.readable + conn.receive_queued <= conn.config.receive_buffer + (1 << 14)
    assert conn.eff_mss > 0 and conn.cwnd >= conn.eff_mss
    deadline = conn.next_deadline()
    assert deadline is None or deadline > now, (deadline, now)


def check_output(conn: TcpConnection, now: int) -> None:
    limit = max(conn.max_segment_payload, conn.eff_mss)
    for out in conn.poll(now):
        seg = out.segment
        assert len(seg.header().emit()) <= 60
        assert 0 <= seg.seq <= MASK and 0 <= seg.ack <= MASK and 0 <= seg.window <= 0xFFFF
        assert len(seg.payload) <= limit
        if out.segment_size is not None:
            assert 0 < out.segment_size < len(seg.payload)
        assert (seg.sport, seg.dport) == (LOCAL_PORT, PEER_PORT)
    check_invariants(conn, now)


ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("segment"), st.integers(0, 50_000_000)),
        st.tuples(st.just("send"), st.integers(0, 30_000)),
        st.tuples(st.just("recv"), st.integers(-1, 5000)),
        st.tuples(st.just("time"), st.integers(0, 5 * SEC)),
        st.tuples(st.just("deadline"), st.just(0)),
        st.tuples(st.just("shutdown"), st.just(0)),
        st.tuples(st.just("close"), st.just(0)),
        st.tuples(st.just("abort"), st.just(0)),
    ),
    min_size=1, max_size=40,
)


def drive(conn: TcpConnection, data: st.DataObject, actions: list[tuple[str, int]]) -> None:
    now = 2 * SEC
    for kind, arg in actions:
        if kind == "segment":
            now += arg
            conn.on_segment(data.draw(segment_for(conn)), now)
        elif kind == "send":
            try:
                taken = conn.send(bytes(arg))
                assert 0 <= taken <= arg
            except (ValueError, TcpError):
                pass
        elif kind == "recv":
            assert len(conn.recv(arg)) <= (conn.config.receive_buffer + (1 << 14))
        elif kind == "time":
            now += arg
        elif kind == "deadline":
            deadline = conn.next_deadline()
            if deadline is not None:
                now = max(now, deadline)
        elif kind == "shutdown":
            conn.shutdown(now)
        elif kind == "close":
            conn.close(now)
        else:
            conn.abort(now)
        check_output(conn, now)


@pytest.mark.parametrize("state", STATES, ids=[s.name for s in STATES])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=st.sampled_from(CONFIGS), actions=ACTIONS, data=st.data())
def test_random_segments_in_every_state(state: TcpState, config: TcpConfig,
                                        actions: list[tuple[str, int]],
                                        data: st.DataObject) -> None:
    conn, _ = to_state(state, config, now=SEC)
    check_invariants(conn, SEC)
    drive(conn, data, actions)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(CONFIGS), ACTIONS, st.data())
def test_random_segments_to_listen_and_closed(config: TcpConfig,
                                              actions: list[tuple[str, int]],
                                              data: st.DataObject) -> None:
    listening = client(config, now=SEC)
    listening.listen()
    drive(listening, data, actions)
    closed = client(config, now=SEC)
    drive(closed, data, actions)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFF), u32, u32, st.integers(0, 0xFFFF),
                          st.binary(max_size=10)), min_size=1, max_size=20))
def test_many_segments_in_established_keep_invariants(
        segs: list[tuple[int, int, int, int, bytes]]) -> None:
    conn, peer = to_state(TcpState.ESTABLISHED, now=SEC)
    conn.send(b"x" * 50_000)
    now = SEC
    check_output(conn, now)
    for flags, seq, ack, window, payload in segs:
        now += 1_000_000
        conn.on_segment(peer.seg(TcpFlags(flags), payload, seq=seq, ack=ack, window=window), now)
        check_output(conn, now)
