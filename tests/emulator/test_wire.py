"""The in-memory wire: timing model, faults, counters, reproducibility."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.backends.base import Backend
from emulator.backends.wire import FaultConfig, Wire, WireCounters
from stack.wire.ecn import Ecn, frame_ecn
from testbench.packets import tcp_packet

GBPS = 1_000_000_000


@dataclass
class Clock:
    now: int = 0

    def __call__(self) -> int:
        return self.now


@dataclass
class Sink:
    """A receiver that records (arrival time, frame) and accepts unless told otherwise."""

    clock: Clock
    accept: bool = True
    got: list[tuple[int, bytes]] = field(default_factory=list)

    def __call__(self, frame: bytes) -> bool:
        self.got.append((self.clock.now, frame))
        return self.accept


def make(
    *, rate_bps: int = GBPS, latency_ns: int = 1_000, **kwargs: object
) -> tuple[Wire, Clock, Sink, Sink]:
    clock = Clock()
    wire = Wire(clock, rate_bps=rate_bps, latency_ns=latency_ns, **kwargs)  # type: ignore[arg-type]
    at_a, at_b = Sink(clock), Sink(clock)
    wire.a.set_receiver(at_a)
    wire.b.set_receiver(at_b)
    return wire, clock, at_a, at_b


def drain(wire: Wire, clock: Clock, *, until: int | None = None) -> int:
    """Poll the wire at each of its deadlines (up to ``until``), as the event loop would."""
    for polls in range(100_000):
        deadline = wire.next_deadline()
        if deadline is None or (until is not None and deadline > until):
            return polls
        clock.now = max(clock.now, deadline)
        assert wire.poll(clock.now) >= 1
    raise AssertionError("wire never drained")


def numbered(i: int, size: int = 100) -> bytes:
    return i.to_bytes(4, "big") + bytes(size - 4)


def assert_accounted(c: WireCounters, pending: int = 0) -> None:
    assert c.delivered + c.undeliverable + pending == (c.sent - c.lost - c.queue_drops + c.duplicated)


# --- timing ---------------------------------------------------------------------------------


def test_backend_protocol() -> None:
    wire, *_ = make()
    ends: tuple[Backend, Backend] = (wire.a, wire.b)
    assert ends[0] is not ends[1]
    assert wire.a.peer is wire.b and wire.b.peer is wire.a


def test_1500_bytes_at_1gbps_arrive_after_serialization_plus_latency() -> None:
    wire, _, _, at_b = make(latency_ns=1_000)
    wire.a.send(bytes(1500))
    assert wire.pending() == 1
    assert wire.next_deadline() == 12_000 + 1_000
    assert wire.poll(12_999) == 0
    assert at_b.got == []
    assert wire.poll(13_000) == 1
    assert at_b.got == [(0, bytes(1500))]  # the sink records the clock, still 0 here
    assert wire.pending() == 0 and wire.next_deadline() is None


def test_serialization_rounds_up() -> None:
    wire = Wire(Clock(), rate_bps=10 * GBPS)
    assert wire.serialization_ns(1) == 1  # 0.8 ns
    assert wire.serialization_ns(1500) == 1_200
    assert wire.serialization_ns(0) == 0
    assert Wire(Clock(), rate_bps=3).serialization_ns(1) == 2_666_666_667


def test_back_to_back_frames_serialize_one_after_another() -> None:
    wire, clock, _, at_b = make(latency_ns=1_000)
    for i in range(3):
        wire.a.send(numbered(i, 1500))
    clock.now = 5_000  # link still busy with frame 2: this one starts at 36_000
    wire.a.send(numbered(3, 1500))
    drain(wire, clock)
    assert [t for t, _ in at_b.got] == [13_000, 25_000, 37_000, 49_000]
    assert [f[:4] for _, f in at_b.got] == [numbered(i)[:4] for i in range(4)]
    clock.now = 100_000  # idle link: starts right away
    wire.a.send(bytes(1500))
    drain(wire, clock)
    assert at_b.got[-1][0] == 113_000


def test_directions_are_independent() -> None:
    wire, clock, at_a, at_b = make(latency_ns=500)
    wire.a.send(bytes(1500))
    wire.a.send(bytes(1500))
    wire.b.send(bytes(125))
    drain(wire, clock)
    assert [t for t, _ in at_b.got] == [12_500, 24_500]
    assert [t for t, _ in at_a.got] == [1_500]
    assert wire.a.counters.as_dict() == {
        "sent": 2, "delivered": 2, "lost": 0, "duplicated": 0, "reordered": 0,
        "corrupted": 0, "ce_marked": 0, "queue_drops": 0, "undeliverable": 0,
        "bytes_sent": 3000, "bytes_delivered": 3000,
    }  # fmt: skip
    assert wire.b.counters.sent == 1 and wire.b.counters.bytes_delivered == 125


def test_equal_delivery_times_keep_send_order() -> None:
    clock = Clock()
    wire = Wire(clock, rate_bps=GBPS)
    order: list[str] = []

    def tag(label: str) -> Callable[[bytes], bool]:
        def receive(frame: bytes) -> bool:
            order.append(f"{label}@{clock.now}")
            return True

        return receive

    wire.b.set_receiver(tag("a->b"))
    wire.a.set_receiver(tag("b->a"))
    wire.a.send(bytes(100))
    wire.b.send(bytes(100))
    wire.a.send(b"")  # zero-length, queued behind the first: also arrives at 1_800
    drain(wire, clock)
    assert order == ["a->b@1800", "b->a@1800", "a->b@1800"]


def test_delivered_frame_is_an_independent_bytes_copy() -> None:
    wire, clock, _, at_b = make()
    frame = bytearray(b"hello world")
    wire.a.send(frame)  # type: ignore[arg-type]  # a bytes-like the device might pass
    frame[0] = ord("J")
    drain(wire, clock)
    assert at_b.got[0][1] == b"hello world"
    assert type(at_b.got[0][1]) is bytes


def test_frames_sent_by_a_receiver_wait_for_the_next_poll() -> None:
    clock = Clock()
    wire = Wire(clock, rate_bps=GBPS, latency_ns=0)
    seen: list[tuple[str, int]] = []

    def echo(frame: bytes) -> bool:
        seen.append(("b", clock.now))
        wire.b.send(b"")  # zero-length, zero latency: due immediately
        return True

    def sink(frame: bytes) -> bool:
        seen.append(("a", clock.now))
        return True

    wire.b.set_receiver(echo)
    wire.a.set_receiver(sink)
    wire.a.send(b"")
    assert wire.poll(0) == 1  # the echo is not delivered within the same poll
    assert wire.next_deadline() == 0
    assert wire.poll(0) == 1
    assert seen == [("b", 0), ("a", 0)]


# --- receivers ------------------------------------------------------------------------------


def test_no_receiver_is_undeliverable() -> None:
    clock = Clock()
    wire = Wire(clock, rate_bps=GBPS)
    wire.a.send(bytes(64))
    assert drain(wire, clock) == 1
    c = wire.a.counters
    assert (c.sent, c.delivered, c.undeliverable, c.bytes_delivered) == (1, 0, 1, 0)
    assert_accounted(c)


def test_receiver_returning_false_is_undeliverable() -> None:
    wire, clock, _, at_b = make()
    at_b.accept = False
    wire.a.send(bytes(64))
    drain(wire, clock)
    assert len(at_b.got) == 1
    c = wire.a.counters
    assert (c.delivered, c.undeliverable, c.bytes_delivered) == (0, 1, 0)


def test_set_receiver_none_detaches() -> None:
    wire, clock, _, at_b = make()
    wire.b.set_receiver(None)
    wire.a.send(bytes(64))
    drain(wire, clock)
    assert at_b.got == [] and wire.a.counters.undeliverable == 1


# --- queue limit ----------------------------------------------------------------------------


def test_queue_limit_tail_drops_and_recovers() -> None:
    wire, clock, _, at_b = make(queue_limit=3)
    for i in range(5):
        wire.a.send(numbered(i))
    wire.b.send(bytes(10))  # the other direction has its own limit
    assert wire.pending() == 4
    c = wire.a.counters
    assert (c.sent, c.queue_drops) == (5, 2)
    assert wire.b.counters.queue_drops == 0
    drain(wire, clock)
    assert [f[:4] for _, f in at_b.got] == [numbered(i)[:4] for i in range(3)]
    wire.a.send(numbered(9))
    drain(wire, clock)
    assert (c.sent, c.delivered, c.queue_drops) == (6, 4, 2)
    assert_accounted(c)


# --- faults ---------------------------------------------------------------------------------


def run_faults(faults: FaultConfig, *, seed: int = 7, n: int = 200) -> tuple[Wire, Sink]:
    wire, clock, _, at_b = make(faults=faults, seed=seed)
    for i in range(n):
        wire.a.send(numbered(i))
    drain(wire, clock)
    assert wire.pending() == 0
    assert_accounted(wire.a.counters)
    return wire, at_b


def test_loss() -> None:
    wire, at_b = run_faults(FaultConfig(loss=0.25))
    c = wire.a.counters
    assert (c.sent, c.lost, c.delivered) == (200, LOSS_LOST, 200 - LOSS_LOST)
    assert len(at_b.got) == c.delivered
    # Survivors keep their order and their serialization slot (lost frames used the link).
    ids = [int.from_bytes(f[:4], "big") for _, f in at_b.got]
    assert ids == sorted(ids)
    assert all(t == 1_000 + 800 * (i + 1) for (t, _), i in zip(at_b.got, ids, strict=True))


def test_total_loss() -> None:
    wire, at_b = run_faults(FaultConfig(loss=1.0), n=10)
    assert wire.a.counters.lost == 10 and at_b.got == []


def test_duplicate() -> None:
    wire, at_b = run_faults(FaultConfig(duplicate=0.1))
    c = wire.a.counters
    assert (c.duplicated, c.delivered) == (DUP_DUPLICATED, 200 + DUP_DUPLICATED)
    ids = [int.from_bytes(f[:4], "big") for _, f in at_b.got]
    assert ids == sorted(ids)  # a copy arrives right after its original
    assert len(ids) - len(set(ids)) == c.duplicated


def test_reorder() -> None:
    wire, at_b = run_faults(FaultConfig(reorder=0.1, reorder_delay_ns=5_000))
    c = wire.a.counters
    assert (c.reordered, c.delivered) == (REORDER_REORDERED, 200)
    ids = [int.from_bytes(f[:4], "big") for _, f in at_b.got]
    assert ids != sorted(ids) and sorted(ids) == list(range(200))
    times = [t for t, _ in at_b.got]
    assert times == sorted(times)
    held = {i for (t, _), i in zip(at_b.got, ids, strict=True) if t != 1_000 + 800 * (i + 1)}
    assert len(held) == c.reordered
    assert all(t == 6_000 + 800 * (i + 1) for (t, _), i in zip(at_b.got, ids, strict=True) if i in held)


def test_corrupt_flips_exactly_one_byte_and_spares_the_sender() -> None:
    clock = Clock()
    wire = Wire(clock, rate_bps=GBPS, faults=FaultConfig(corrupt=0.2), seed=7)
    sink = Sink(clock)
    wire.b.set_receiver(sink)
    originals = [bytes(range(i % 7, i % 7 + 100)) for i in range(200)]
    buffers = [bytearray(o) for o in originals]
    for buf in buffers:
        wire.a.send(buf)  # type: ignore[arg-type]
    drain(wire, clock)
    assert buffers == originals  # the sender's bytes are untouched
    changed = 0
    for orig, (_, frame) in zip(originals, sink.got, strict=True):
        diff = [k for k in range(100) if orig[k] != frame[k]]
        assert len(frame) == len(orig) and len(diff) <= 1
        changed += len(diff)
    assert changed == wire.a.counters.corrupted == CORRUPT_CORRUPTED


def test_corrupt_leaves_empty_frames_alone() -> None:
    wire, clock, _, at_b = make(faults=FaultConfig(corrupt=1.0))
    wire.a.send(b"")
    wire.a.send(b"x")
    drain(wire, clock)
    assert at_b.got[0][1] == b"" and at_b.got[1][1] != b"x"
    assert wire.a.counters.corrupted == 1


def test_jitter_stays_within_bounds() -> None:
    _, at_b = run_faults(FaultConfig(jitter_ns=2_000))
    extra = [t - (1_000 + 800 * (int.from_bytes(f[:4], "big") + 1)) for t, f in at_b.got]
    assert all(0 <= e <= 2_000 for e in extra)
    assert len(set(extra)) > 50
    assert sum(extra) == JITTER_SUM
    times = [t for t, _ in at_b.got]
    assert times == sorted(times)


def test_all_faults_together_exact_counters() -> None:
    faults = FaultConfig(
        loss=0.1, duplicate=0.1, reorder=0.1, corrupt=0.1, jitter_ns=300, reorder_delay_ns=4_000
    )
    wire, _ = run_faults(faults, seed=42, n=500)
    assert wire.a.counters.as_dict() == ALL_FAULTS_COUNTERS


# Exact values for the fixed seeds above: the draw order is part of the wire's contract
# (seed -> run), so a change here means recorded scenarios will replay differently.
LOSS_LOST = 52
DUP_DUPLICATED = 13
REORDER_REORDERED = 31
CORRUPT_CORRUPTED = 40
JITTER_SUM = 214_314
ALL_FAULTS_COUNTERS = {
    "sent": 500, "delivered": 498, "lost": 51, "duplicated": 49, "reordered": 46,
    "corrupted": 43, "ce_marked": 0, "queue_drops": 0, "undeliverable": 0,
    "bytes_sent": 50_000, "bytes_delivered": 49_800,
}  # fmt: skip


# --- reproducibility ------------------------------------------------------------------------

NOISY = FaultConfig(loss=0.2, duplicate=0.2, reorder=0.2, corrupt=0.2, jitter_ns=1_000)


def trace(seed: int) -> list[tuple[int, bytes]]:
    return run_faults(NOISY, seed=seed, n=100)[1].got


def test_same_seed_same_run() -> None:
    assert trace(3) == trace(3)


def test_different_seed_different_run() -> None:
    assert trace(3) != trace(4)


def test_directions_draw_from_separate_streams() -> None:
    wire, clock, at_a, at_b = make(faults=NOISY, seed=5)
    for i in range(50):
        wire.a.send(numbered(i))
        wire.b.send(numbered(i))
    drain(wire, clock)
    assert [f for _, f in at_a.got] != [f for _, f in at_b.got]
    # ...and one direction's traffic does not disturb the other's fates.
    wire2, clock2, _, at_b2 = make(faults=NOISY, seed=5)
    for i in range(50):
        wire2.a.send(numbered(i))
    drain(wire2, clock2)
    assert [f for _, f in at_b2.got] == [f for _, f in at_b.got]


# --- configuration errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"loss": -0.1},
        {"loss": 1.5},
        {"duplicate": 2.0},
        {"reorder": -1e-9},
        {"corrupt": float("nan")},
        {"reorder_delay_ns": -1},
        {"jitter_ns": -5},
    ],
)
def test_bad_fault_config(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        FaultConfig(**kwargs)  # type: ignore[arg-type]


def test_fault_config_wrong_types() -> None:
    with pytest.raises(TypeError):
        FaultConfig(loss="0.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        FaultConfig(jitter_ns=1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"rate_bps": 0}, {"latency_ns": -1}, {"queue_limit": 0}])
def test_bad_wire_config(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Wire(Clock(), **kwargs)  # type: ignore[arg-type]


# --- property -------------------------------------------------------------------------------

probability = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(
    faults=st.builds(
        FaultConfig,
        loss=probability,
        duplicate=probability,
        reorder=probability,
        reorder_delay_ns=st.integers(0, 100_000),
        corrupt=probability,
        jitter_ns=st.integers(0, 50_000),
    ),
    seed=st.integers(-(2**64), 2**64),
    rate_bps=st.integers(1_000_000, 100 * GBPS),
    latency_ns=st.integers(0, 100_000),
    queue_limit=st.integers(1, 64),
    sends=st.lists(st.tuples(st.integers(0, 20_000), st.booleans(), st.integers(0, 1600)), max_size=120),
)
def test_every_frame_accounted_once_and_deliveries_in_time_order(
    *,
    faults: FaultConfig,
    seed: int,
    rate_bps: int,
    latency_ns: int,
    queue_limit: int,
    sends: list[tuple[int, bool, int]],
) -> None:
    clock = Clock()
    wire = Wire(
        clock,
        rate_bps=rate_bps,
        latency_ns=latency_ns,
        faults=faults,
        seed=seed,
        queue_limit=queue_limit,
    )
    arrivals: list[int] = []
    per_source = {"a": 0, "b": 0}

    def receiver(source: str) -> Callable[[bytes], bool]:
        def receive(frame: bytes) -> bool:
            arrivals.append(clock.now)
            per_source[source] += 1
            return len(frame) % 3 != 0  # some refusals, to exercise undeliverable

        return receive

    wire.b.set_receiver(receiver("a"))
    wire.a.set_receiver(receiver("b"))
    now = 0
    for gap, on_a, size in sends:
        now += gap
        drain(wire, clock, until=now)
        clock.now = now
        (wire.a if on_a else wire.b).send(bytes(size))
    drain(wire, clock)

    assert arrivals == sorted(arrivals)
    for port, name in ((wire.a, "a"), (wire.b, "b")):
        c = port.counters
        assert c.sent == sum(1 for _, on_a, _ in sends if on_a == (name == "a"))
        assert c.bytes_sent == sum(s for _, on_a, s in sends if on_a == (name == "a"))
        assert_accounted(c)
        assert c.delivered + c.undeliverable == per_source[name]
        assert 0 <= c.corrupted <= c.sent - c.lost - c.queue_drops
        assert c.reordered <= c.sent and c.duplicated <= c.sent
        assert all(v >= 0 for v in c.as_dict().values())


# --- CE marking (RFC 3168 §5) and the perfect wire's fast path ------------------------------


def test_ce_mark_marks_ect_packets_only() -> None:
    wire, clock, _, at_b = make(faults=FaultConfig(ce_mark=1.0))
    ect = tcp_packet(200, mss=None, tos=Ecn.ECT0).frame
    plain = tcp_packet(200, mss=None).frame
    wire.a.send(ect)
    wire.a.send(plain)
    drain(wire, clock)
    (_, first), (_, second) = at_b.got
    assert frame_ecn(first) == Ecn.CE and second == plain
    assert wire.a.counters.ce_marked == 1 and wire.a.counters.delivered == 2
    assert not FaultConfig(ce_mark=0.5).perfect and FaultConfig().perfect


def test_ce_mark_is_checked() -> None:
    with pytest.raises(ValueError, match="ce_mark must be in"):
        FaultConfig(ce_mark=1.5)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(60, 9000), st.integers(0, 20_000)), min_size=1,
                max_size=40))
def test_a_perfect_wire_delivers_as_a_faulty_wire_whose_faults_never_fire(
        sends: list[tuple[int, int]]) -> None:
    """The perfect wire skips the fault draws; what arrives, and when, is what the full
    path gives when no fault fires."""
    results = []
    for faults in (FaultConfig(), FaultConfig(loss=1e-300)):
        wire, clock, _, at_b = make(faults=faults, latency_ns=500)
        for i, (size, gap) in enumerate(sends):
            clock.now += gap
            drain(wire, clock, until=clock.now)
            wire.a.send(numbered(i, size))
        drain(wire, clock)
        results.append((at_b.got, wire.a.counters))
    assert results[0] == results[1]
