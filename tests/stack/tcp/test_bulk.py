"""Bulk transfers end to end over the simulated link: byte-exact delivery for every
combination of congestion control, SACK, timestamps and TSO, over a clean link and a
lossy one (1% loss, duplication and reordering from a seeded RNG), with the
retransmissions accounted for."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.tcp.config import TcpConfig
from stack.tcp.connection import TcpState
from tests.stack.tcp.harness import MS, LinkConfig, Pair, transfer

TSO = 65535 - 20 - 60


def payload(n: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    return rng.randbytes(n)


@dataclass
class Result:
    pair: Pair
    dropped_original_bytes: int


def run(*, congestion: str, sack: bool, timestamps: bool, tso: bool, lossy: bool,
        size: int, reverse: int = 0, seed: int = 3, coalesce: bool = False) -> Result:
    cfg = TcpConfig(congestion=congestion, sack=sack, timestamps=timestamps,
                    max_segment_payload=TSO if tso else 0)
    link = LinkConfig(delay_ns=2 * MS, bandwidth_bps=2_000_000_000, mtu=1500,
                      coalesce=coalesce, batch_ns=200_000 if coalesce else 0)
    if lossy:
        link.loss = 0.01
        link.duplicate = 0.01
        link.reorder = 0.01
    pair = Pair(cfg, cfg, link, seed=seed)
    pair.connect()
    data = payload(size)
    back = payload(reverse, seed=11)
    got_b, got_a = transfer(pair, data, reverse=back, max_steps=1_000_000)
    assert hashlib.sha256(got_b).digest() == hashlib.sha256(data).digest()
    assert got_a == back
    # Both ends close cleanly (TIME-WAIT included, on virtual time).
    b = pair.server
    assert pair.run(lambda: pair.a.is_closed and b.is_closed, max_steps=100_000)
    assert pair.a.error is None and b.error is None
    # Every data byte lost on its first transmission was sent again.
    highest = None
    dropped = 0
    for wire in pair.ab.log:
        seg = wire.segment
        if not seg.payload:
            continue
        end = seg.seq + len(seg.payload)
        first = highest is None or (seg.seq - highest) & 0xFFFFFFFF < 1 << 31
        if first:
            highest = end & 0xFFFFFFFF
            if wire.dropped:
                dropped += len(seg.payload)
    return Result(pair, dropped)


MATRIX = [
    pytest.param(cc, sack, ts, tso, id=f"{cc}-{'sack' if sack else 'nosack'}-"
                 f"{'ts' if ts else 'nots'}-{'tso' if tso else 'notso'}")
    for cc in ("reno", "cubic")
    for sack in (True, False)
    for ts in (True, False)
    for tso in (True, False)
]


@pytest.mark.parametrize(("congestion", "sack", "timestamps", "tso"), MATRIX)
def test_clean_link(congestion: str, sack: bool, timestamps: bool, tso: bool) -> None:
    r = run(congestion=congestion, sack=sack, timestamps=timestamps, tso=tso, lossy=False,
            size=2 << 20)
    c = r.pair.a.counters
    assert c.retransmitted_segments == 0 and c.timeouts == 0 and c.fast_retransmits == 0
    mss = 1448 if timestamps else 1460
    outgoing = r.pair.ab.outgoing
    if tso:
        assert c.tso_segments_out > 0
        assert all(o.segment_size == mss for o in outgoing if o.segment_size is not None)
        assert max(len(o.segment.payload) for o in outgoing) > mss
    else:
        assert c.tso_segments_out == 0
        assert all(len(o.segment.payload) <= mss and o.segment_size is None for o in outgoing)
    assert all(len(w.segment.payload) <= mss for w in r.pair.ab.log)


@pytest.mark.parametrize(("congestion", "sack", "timestamps", "tso"), MATRIX)
def test_lossy_link(congestion: str, sack: bool, timestamps: bool, tso: bool) -> None:
    r = run(congestion=congestion, sack=sack, timestamps=timestamps, tso=tso, lossy=True,
            size=2 << 20, reverse=50_000)
    c = r.pair.a.counters
    assert r.pair.ab.dropped > 0 and r.dropped_original_bytes > 0
    # Each original transmission that was dropped forced a retransmission of its bytes;
    # anything beyond that is spurious (reordering, duplicates, go-back-N after an RTO).
    assert c.retransmitted_segments > 0
    assert c.retransmitted_bytes >= r.dropped_original_bytes
    assert c.fast_retransmits + c.timeouts > 0
    if sack:
        assert c.sack_blocks_in > 0 and c.sack_recovered_bytes > 0
    else:
        assert c.sack_blocks_in == 0 and c.sack_recovered_bytes == 0


def test_five_megabytes_clean_with_tso() -> None:
    r = run(congestion="cubic", sack=True, timestamps=True, tso=True, lossy=False,
            size=5 << 20)
    c = r.pair.a.counters
    assert c.bytes_out == 5 << 20 and c.retransmitted_segments == 0
    assert c.tso_segments_out > 0


def test_five_megabytes_lossy_with_tso_and_coalescing_receiver() -> None:
    r = run(congestion="cubic", sack=True, timestamps=True, tso=True, lossy=True,
            size=5 << 20, reverse=200_000, coalesce=True, seed=5)
    c = r.pair.a.counters
    assert c.retransmitted_bytes >= r.dropped_original_bytes > 0
    assert r.pair.server.counters.bytes_in > 0


def test_five_megabytes_lossy_newreno_without_options() -> None:
    r = run(congestion="reno", sack=False, timestamps=False, tso=False, lossy=True,
            size=5 << 20, seed=8)
    c = r.pair.a.counters
    assert c.retransmitted_bytes >= r.dropped_original_bytes > 0
    assert c.fast_retransmits > 0 and c.sack_recovered_bytes == 0


def test_wraparound_of_sequence_numbers() -> None:
    cfg = TcpConfig(max_segment_payload=TSO)
    pair = Pair(cfg, cfg, LinkConfig(delay_ns=MS, loss=0.01), a_isn=0xFFFF_0000,
                b_isn=0xFFFF_FF00, seed=9)
    pair.connect()
    data = payload(300_000)
    got, back = transfer(pair, data, reverse=payload(100_000, 2))
    assert got == data and back == payload(100_000, 2)
    assert pair.a.snd_una > 1 << 32  # unwrapped positions passed the 32-bit wrap
    assert pair.a.state in (TcpState.TIME_WAIT, TcpState.FIN_WAIT_2, TcpState.CLOSING,
                            TcpState.FIN_WAIT_1, TcpState.LAST_ACK, TcpState.CLOSED)


@settings(max_examples=15, deadline=None)
@given(st.data())
def test_random_configs_and_links_deliver_exactly(data: st.DataObject) -> None:
    """Any mix of options, buffers, MSS and TSO limits on each side, over any of the
    link's faults: both directions arrive byte-exact and both ends close."""
    def config() -> TcpConfig:
        return TcpConfig(
            mss=data.draw(st.sampled_from([100, 536, 1460, 8960])),
            send_buffer=data.draw(st.sampled_from([3000, 20_000, 1 << 20])),
            receive_buffer=data.draw(st.sampled_from([1000, 5000, 65535, 1 << 20])),
            window_scaling=data.draw(st.booleans()), sack=data.draw(st.booleans()),
            timestamps=data.draw(st.booleans()), nagle=data.draw(st.booleans()),
            delayed_ack=data.draw(st.booleans()),
            congestion=data.draw(st.sampled_from(["reno", "cubic"])),
            max_segment_payload=data.draw(st.sampled_from([0, 5000, 65000])))
    link = LinkConfig(delay_ns=data.draw(st.sampled_from([100_000, 2 * MS, 20 * MS])),
                      bandwidth_bps=data.draw(st.sampled_from([None, 100_000_000])),
                      loss=data.draw(st.sampled_from([0.0, 0.02, 0.1])),
                      duplicate=data.draw(st.sampled_from([0.0, 0.02])),
                      reorder=data.draw(st.sampled_from([0.0, 0.05])),
                      coalesce=data.draw(st.booleans()))
    pair = Pair(config(), config(), link, seed=data.draw(st.integers(0, 1000)),
                a_isn=data.draw(st.integers(0, 0xFFFFFFFF)),
                b_isn=data.draw(st.integers(0, 0xFFFFFFFF)))
    pair.connect()
    forward = payload(data.draw(st.sampled_from([0, 1, 1000, 30_000])), seed=1)
    back = payload(data.draw(st.sampled_from([0, 10, 10_000])), seed=2)
    got_b, got_a = transfer(pair, forward, reverse=back, max_steps=300_000)
    assert got_b == forward and got_a == back
    b = pair.server
    assert pair.run(lambda: pair.a.is_closed and b.is_closed, max_steps=100_000)
    assert pair.a.error is None and b.error is None
