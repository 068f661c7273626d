"""A faulty link in front of a real backend (emulator/backends/faults.py): the wire's
fault model, per direction, with delays through the event loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.backends.base import FlowControl, OffloadReceiver, OffloadSource, Receiver
from emulator.backends.faults import FaultConfig, FaultModel, FaultyBackend, WireCounters
from testbench.loop import EventLoop
from virtio.constants import NetHdrFlag
from virtio.net_hdr import NetHdr


@dataclass
class FakeTap:
    """A backend with a tap's optional parts: offload source, real-time peer, pacing."""

    sent: list[bytes] = field(default_factory=list)
    receiver: Receiver | None = None
    offload_receiver: OffloadReceiver | None = None
    ready_check: Callable[[], bool] | None = None
    polls: list[int] = field(default_factory=list)

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)

    def set_receiver(self, receiver: Receiver | None) -> None:
        self.receiver = receiver

    def set_offload_receiver(self, receiver: OffloadReceiver | None) -> None:
        self.offload_receiver = receiver

    def set_ready_check(self, ready: Callable[[], bool] | None) -> None:
        self.ready_check = ready

    def poll(self, now: int) -> int:
        self.polls.append(now)
        return 3

    def wait(self, timeout: float) -> bool:
        return timeout > 1

    def fileno(self) -> int:
        return 7

    def next_deadline(self) -> int | None:
        return 123


@dataclass
class Plain:
    """A backend with nothing optional."""

    sent: list[bytes] = field(default_factory=list)

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)

    def set_receiver(self, receiver: Receiver | None) -> None:
        pass


def numbered(i: int, size: int = 100) -> bytes:
    return i.to_bytes(4, "big") + bytes(size - 4)


def wrap(faults: FaultConfig, seed: int = 1) -> tuple[FaultyBackend, FakeTap, EventLoop,
                                                      list[tuple[int, bytes]]]:
    loop = EventLoop()
    tap = FakeTap()
    link = FaultyBackend(tap, faults, seed=seed, call_later=loop.call_later)
    got: list[tuple[int, bytes]] = []

    def device(frame: bytes) -> bool:
        got.append((loop.now, frame))
        return True

    link.set_receiver(device)
    return link, tap, loop, got


def test_a_perfect_link_passes_everything_at_once_in_order() -> None:
    link, tap, loop, got = wrap(FaultConfig())
    frames = [numbered(i) for i in range(50)]
    for f in frames:
        link.send(f)
    assert tap.receiver is not None
    for f in frames:
        assert tap.receiver(f) is True
    assert tap.sent == frames
    assert got == [(0, f) for f in frames]
    assert loop.next_event_time() is None  # nothing delayed
    for c in (link.outbound_counters, link.inbound_counters):
        assert (c.sent, c.delivered, c.lost, c.bytes_delivered) == (50, 50, 0, 5000)


def test_each_direction_follows_the_wire_fault_model_of_its_seed_and_name() -> None:
    faults = FaultConfig(loss=0.2, duplicate=0.1, corrupt=0.1)
    link, tap, _, got = wrap(faults, seed=9)
    frames = [numbered(i) for i in range(300)]
    expect_out = FaultModel(faults, 9, "outbound", WireCounters())
    expect_in = FaultModel(faults, 9, "inbound", WireCounters())
    want_out: list[bytes] = []
    want_in: list[bytes] = []
    for f in frames:
        for model, wanted in ((expect_out, want_out), (expect_in, want_in)):
            fate = model.fate(f)
            if not fate.lost:
                wanted.extend([fate.frame] * (2 if fate.duplicate else 1))
    assert tap.receiver is not None
    for f in frames:
        link.send(f)
        tap.receiver(f)
    assert tap.sent == want_out
    assert [frame for _, frame in got] == want_in
    assert want_out != want_in  # separate streams
    c, e = link.outbound_counters, expect_out.counters
    assert (c.lost, c.corrupted) == (e.lost, e.corrupted) and c.lost > 0
    # the link's own accounting: every frame sent ends delivered or lost, copies added
    for c in (link.outbound_counters, link.inbound_counters):
        assert c.delivered == c.sent - c.lost + c.duplicated


def test_exact_counters_for_a_fixed_seed() -> None:
    # Golden: what this model (the wire's draw order, stream "outbound" of seed 42) gave
    # when FaultyBackend was written; a change means seeded interop runs replay
    # differently.
    faults = FaultConfig(loss=0.1, duplicate=0.1, reorder=0.1, corrupt=0.1,
                         jitter_ns=300, reorder_delay_ns=4_000)
    link, tap, loop, _ = wrap(faults, seed=42)
    for i in range(500):
        link.send(numbered(i))
    loop.run_until_idle()
    assert link.outbound_counters.as_dict() == {
        "sent": 500, "delivered": 508, "lost": 42, "duplicated": 50, "reordered": 51,
        "corrupted": 48, "ce_marked": 0, "queue_drops": 0, "undeliverable": 0,
        "bytes_sent": 50_000, "bytes_delivered": 50_800,
    }
    assert len(tap.sent) == 508


def test_a_reordered_frame_arrives_reorder_delay_later_after_the_next_ones() -> None:
    faults = FaultConfig(reorder=0.5, reorder_delay_ns=2_000_000)
    link, tap, loop, got = wrap(faults, seed=3)
    assert tap.receiver is not None
    for i in range(20):
        tap.receiver(numbered(i))
    held = link.inbound_counters.reordered
    assert 0 < held < 20
    assert len(got) == 20 - held and all(t == 0 for t, _ in got)
    loop.run_until_idle()
    assert len(got) == 20
    late = got[20 - held:]
    assert all(t == 2_000_000 for t, _ in late)
    assert sorted(f for _, f in got) == [numbered(i) for i in range(20)]


def test_corruption_flips_one_byte_of_plain_frames_only() -> None:
    faults = FaultConfig(corrupt=1.0)
    link, tap, _, got = wrap(faults)
    offloaded: list[tuple[bytes, NetHdr]] = []

    def offload(frame: bytes, hdr: NetHdr) -> bool:
        offloaded.append((frame, hdr))
        return True

    link.set_offload_receiver(offload)
    assert tap.receiver is not None and tap.offload_receiver is not None
    frame = numbered(5, 200)
    hdr = NetHdr(flags=int(NetHdrFlag.NEEDS_CSUM), csum_start=34, csum_offset=16)
    assert tap.receiver(frame) is True
    assert tap.offload_receiver(frame, hdr) is True
    damaged = got[0][1]
    assert len(damaged) == len(frame)
    assert sum(a != b for a, b in zip(damaged, frame, strict=True)) == 1
    assert offloaded == [(frame, hdr)]  # checksummed after the link: never damaged
    assert link.inbound_counters.corrupted == 1
    link.send(frame)
    assert sum(a != b for a, b in zip(tap.sent[0], frame, strict=True)) == 1


def test_the_observer_is_told_every_fate_in_both_directions() -> None:
    seen: list[tuple[str, bytes, bool]] = []
    loop = EventLoop()
    tap = FakeTap()
    link = FaultyBackend(tap, FaultConfig(loss=0.5), seed=4, call_later=loop.call_later,
                         observer=lambda way, frame, fate: seen.append((way, frame, fate.lost)))
    link.set_receiver(lambda frame: True)
    assert tap.receiver is not None
    for i in range(40):
        link.send(numbered(i))
        tap.receiver(numbered(i))
    assert [(w, f) for w, f, _ in seen] == [
        (w, numbered(i)) for i in range(40) for w in ("outbound", "inbound")]
    assert sum(lost for w, _, lost in seen if w == "outbound") == link.outbound_counters.lost
    assert sum(lost for w, _, lost in seen if w == "inbound") == link.inbound_counters.lost
    assert 0 < link.outbound_counters.lost < 40


def test_a_lost_inbound_frame_counts_as_taken_by_the_link() -> None:
    link, tap, _, got = wrap(FaultConfig(loss=1.0))
    assert tap.receiver is not None
    assert tap.receiver(numbered(1)) is True
    assert got == [] and link.inbound_counters.lost == 1


def test_a_refused_frame_is_undeliverable() -> None:
    link, tap, _, _ = wrap(FaultConfig())
    link.set_receiver(lambda frame: False)
    assert tap.receiver is not None
    assert tap.receiver(numbered(1)) is False
    assert link.inbound_counters.undeliverable == 1


def test_the_wrapped_backends_own_parts_pass_through() -> None:
    link, tap, _, _ = wrap(FaultConfig())
    assert isinstance(link, OffloadSource) and isinstance(link, FlowControl)
    assert link.poll(55) == 3 and tap.polls == [55]
    assert link.wait(2.0) is True and link.wait(0.5) is False
    assert link.fileno() == 7 and link.next_deadline() == 123
    link.set_ready_check(lambda: True)
    assert tap.ready_check is not None and tap.ready_check()
    assert link.tx_ready()


def test_a_backend_without_those_parts_says_so() -> None:
    link = FaultyBackend(Plain(), FaultConfig(), seed=0, call_later=EventLoop().call_later)
    with pytest.raises(TypeError, match="Plain has no poll"):
        link.poll(0)
    link.send(b"x" * 60)
    assert isinstance(link.inner, Plain) and link.inner.sent == [b"x" * 60]


probability = st.floats(0.0, 1.0, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(
    faults=st.builds(FaultConfig, loss=probability, duplicate=probability, reorder=probability,
                     reorder_delay_ns=st.integers(0, 100_000), corrupt=probability,
                     jitter_ns=st.integers(0, 50_000), ce_mark=probability),
    seed=st.integers(-(2**64), 2**64),
    frames=st.lists(st.tuples(st.booleans(), st.binary(max_size=200)), max_size=80),
)
def test_any_frames_any_faults_every_frame_accounted(
        faults: FaultConfig, seed: int, frames: list[tuple[bool, bytes]]) -> None:
    """Whatever the faults and the frames (empty, runts, garbage): nothing raises, and
    once the delayed frames are out each direction has handed over exactly what was
    sent, less what was lost, plus the duplicates — no frame invented or mislaid."""
    loop = EventLoop()
    tap = FakeTap()
    link = FaultyBackend(tap, faults, seed=seed, call_later=loop.call_later)
    got: list[bytes] = []

    def device(frame: bytes) -> bool:
        got.append(frame)
        return True

    link.set_receiver(device)
    assert tap.receiver is not None
    for outbound, frame in frames:
        if outbound:
            link.send(frame)
        else:
            tap.receiver(frame)
    loop.run_until_idle(max_steps=10_000)
    for c, handed in ((link.outbound_counters, len(tap.sent)), (link.inbound_counters, len(got))):
        assert c.delivered == handed == c.sent - c.lost + c.duplicated
        assert c.undeliverable == 0
    assert link.outbound_counters.sent + link.inbound_counters.sent == len(frames)
