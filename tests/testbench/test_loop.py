"""The virtual-time event loop: ordering, cancel, idle hooks, bounds, run_for, a wire."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from emulator.backends.wire import Wire, WirePort
from testbench.loop import EventLoop, LoopBoundExceeded, TimedSource


class ListSource:
    """A timed source with fixed deadlines; records the times it was polled at."""

    def __init__(self, deadlines: list[int], log: list[str] | None = None, name: str = "src"):
        self.deadlines = sorted(deadlines)
        self.polled: list[int] = []
        self.log = log
        self.name = name

    def next_deadline(self) -> int | None:
        return self.deadlines[0] if self.deadlines else None

    def poll(self, now: int) -> int:
        self.polled.append(now)
        done = 0
        while self.deadlines and self.deadlines[0] <= now:
            self.deadlines.pop(0)
            done += 1
        if self.log is not None:
            self.log.append(f"{self.name}@{now}")
        return done


def recorder(loop: EventLoop, log: list[str]) -> Callable[[str], Callable[[], None]]:
    def make(tag: str) -> Callable[[], None]:
        return lambda: log.append(f"{tag}@{loop.now}")

    return make


def test_empty_loop_is_idle_at_once() -> None:
    loop = EventLoop()
    assert loop.run_until_idle() == 0
    assert (loop.now, loop.steps, loop.clock()) == (0, 0, 0)


def test_soon_runs_fifo_before_timers_and_sources() -> None:
    loop = EventLoop()
    log: list[str] = []
    rec = recorder(loop, log)
    loop.add_source(ListSource([0], log))
    loop.call_at(0, rec("timer"))
    loop.call_soon(rec("soon1"))
    loop.call_soon(rec("soon2"))
    assert loop.run_until_idle() == 4
    assert log == ["soon1@0", "soon2@0", "timer@0", "src@0"]


def test_timers_fire_by_time_then_scheduling_order() -> None:
    loop = EventLoop()
    log: list[str] = []
    rec = recorder(loop, log)
    loop.call_at(300, rec("c"))
    loop.call_at(100, rec("a1"))
    loop.call_later(100, rec("a2"))
    loop.call_at(200, rec("b"))
    loop.run_until_idle()
    assert log == ["a1@100", "a2@100", "b@200", "c@300"]
    assert loop.now == 300


def test_soon_queued_by_a_timer_runs_before_the_next_timer_at_that_time() -> None:
    loop = EventLoop()
    log: list[str] = []
    rec = recorder(loop, log)

    def first() -> None:
        log.append(f"t1@{loop.now}")
        loop.call_soon(rec("soon"))
        loop.call_later(0, rec("t3"))

    loop.call_at(50, first)
    loop.call_at(50, rec("t2"))
    loop.run_until_idle()
    assert log == ["t1@50", "soon@50", "t2@50", "t3@50"]


def test_timers_fire_before_sources_due_at_the_same_time() -> None:
    loop = EventLoop()
    log: list[str] = []
    rec = recorder(loop, log)
    early = ListSource([10, 30], log, "early")
    late = ListSource([30], log, "late")
    loop.add_source(early)
    loop.add_source(late)
    loop.call_at(30, rec("timer"))
    loop.call_at(20, rec("timer"))
    loop.run_until_idle()
    assert log == ["early@10", "timer@20", "timer@30", "early@30", "late@30"]
    assert early.polled == [10, 30] and late.polled == [30]


def test_cancelled_timer_neither_fires_nor_advances_time() -> None:
    loop = EventLoop()
    log: list[str] = []
    rec = recorder(loop, log)
    loop.call_at(10, rec("kept"))
    dropped = loop.call_at(1_000, rec("dropped"))
    also = loop.call_at(10, rec("also-dropped"))
    dropped.cancel()
    also.cancel()
    assert dropped.cancelled and "cancelled" in repr(dropped)
    assert loop.run_until_idle() == 1
    assert log == ["kept@10"]
    assert loop.now == 10


def test_timer_can_cancel_a_later_one() -> None:
    loop = EventLoop()
    log: list[str] = []
    later = loop.call_at(20, recorder(loop, log)("later"))
    loop.call_at(10, later.cancel)
    loop.run_until_idle()
    assert log == [] and loop.now == 10


def test_time_never_goes_backwards() -> None:
    loop = EventLoop()
    log: list[str] = []
    rec = recorder(loop, log)
    loop.call_at(100, lambda: loop.call_at(5, rec("past")))
    loop.add_source(ListSource([50, 70]))
    loop.run_until_idle()
    assert log == ["past@100"]
    assert loop.now == 100


def test_call_later_rejects_negative_delay() -> None:
    loop = EventLoop()
    with pytest.raises(ValueError, match="delay"):
        loop.call_later(-1, lambda: None)
    with pytest.raises(ValueError, match="duration"):
        loop.run_for(-1)


def test_idle_hooks_run_only_when_nothing_is_runnable() -> None:
    loop = EventLoop()
    log: list[str] = []
    rec = recorder(loop, log)
    budget = [3]

    def pump() -> bool:
        log.append(f"idle@{loop.now}")
        if budget[0] == 0:
            return False
        budget[0] -= 1
        loop.call_later(10, rec("sent"))
        return True

    loop.add_idle_hook(pump)
    loop.call_soon(rec("soon"))
    loop.call_at(0, rec("timer"))
    loop.run_until_idle()
    # A hook that did work is asked again before time advances; time advances only once
    # every hook returns False, and hooks run again at each new instant.
    assert log == [
        "soon@0", "timer@0",
        "idle@0", "idle@0", "idle@0", "idle@0",
        "sent@10", "sent@10", "sent@10", "idle@10",
    ]  # fmt: skip
    assert loop.now == 10


def test_idle_hook_order_exact() -> None:
    loop = EventLoop()
    log: list[str] = []
    calls = [0]

    def hook() -> bool:
        calls[0] += 1
        log.append(f"idle@{loop.now}")
        if calls[0] == 1:
            loop.call_soon(lambda: log.append(f"pumped@{loop.now}"))
            return True
        return False

    loop.add_idle_hook(hook)
    loop.call_at(5, lambda: log.append("t@5"))
    assert loop.run_until_idle() == 5
    assert log == ["idle@0", "pumped@0", "idle@0", "t@5", "idle@5"]


def test_step_bound_raises_with_a_clear_message() -> None:
    loop = EventLoop()

    def forever() -> None:
        loop.call_soon(forever)

    loop.call_soon(forever)
    with pytest.raises(LoopBoundExceeded, match=r"step bound.*max_steps=100.*time 0") as info:
        loop.run_until_idle(max_steps=100)
    assert isinstance(info.value, RuntimeError)
    assert loop.steps == 100
    # The loop stays usable: the pending callback is still there.
    with pytest.raises(LoopBoundExceeded):
        loop.run_until_idle(max_steps=5)
    assert loop.steps == 105


def test_exactly_max_steps_of_work_does_not_raise() -> None:
    loop = EventLoop()
    for _ in range(5):
        loop.call_soon(lambda: None)
    assert loop.run_until_idle(max_steps=5) == 5


def test_a_source_that_never_makes_progress_hits_the_step_bound() -> None:
    loop = EventLoop()
    stuck = ListSource([7])
    stuck.poll = lambda now: 0  # type: ignore[method-assign]
    loop.add_source(stuck)
    with pytest.raises(LoopBoundExceeded, match="max_steps=50"):
        loop.run_until_idle(max_steps=50)
    assert loop.now == 7


def test_time_bound_raises_with_a_clear_message() -> None:
    loop = EventLoop()
    ticks: list[int] = []

    def tick() -> None:
        ticks.append(loop.now)
        loop.call_later(1_000, tick)

    loop.call_soon(tick)
    with pytest.raises(LoopBoundExceeded, match=r"virtual time bound.*11000 ns.*max_time=10500 ns"):
        loop.run_until_idle(max_time=10_500)
    assert loop.now == 10_000
    assert ticks == list(range(0, 10_001, 1_000))


def test_run_for_stops_at_the_horizon_and_moves_time_there() -> None:
    loop = EventLoop()
    log: list[str] = []
    rec = recorder(loop, log)
    for t in (100, 200, 250, 300):
        loop.call_at(t, rec("t"))
    assert loop.run_for(250) == 3
    assert log == ["t@100", "t@200", "t@250"] and loop.now == 250
    assert loop.run_for(100) == 1
    assert log[-1] == "t@300" and loop.now == 350
    assert loop.run_for(1_000) == 0
    assert loop.now == 1_350


def test_run_for_respects_the_step_bound() -> None:
    loop = EventLoop()

    def forever() -> None:
        loop.call_soon(forever)

    loop.call_soon(forever)
    with pytest.raises(LoopBoundExceeded, match="max_steps=10"):
        loop.run_for(1_000, max_steps=10)


def test_a_raising_callback_propagates_and_the_loop_stays_consistent() -> None:
    loop = EventLoop()
    log: list[str] = []
    rec = recorder(loop, log)

    def boom() -> None:
        raise KeyError("boom")

    loop.call_at(10, boom)
    loop.call_at(10, rec("after"))
    loop.call_at(20, rec("later"))
    with pytest.raises(KeyError, match="boom"):
        loop.run_until_idle()
    assert loop.now == 10 and loop.steps == 1
    loop.run_until_idle()
    assert log == ["after@10", "later@20"]
    assert loop.steps == 3


def test_steps_accumulate_across_runs() -> None:
    loop = EventLoop()
    loop.call_soon(lambda: None)
    assert loop.run_until_idle() == 1
    loop.call_later(5, lambda: None)
    loop.call_later(6, lambda: None)
    assert loop.run_until_idle() == 2
    assert loop.steps == 3


# --- a wire on the loop ---------------------------------------------------------------------


def test_wire_driven_by_the_loop_delivers_at_the_right_virtual_times() -> None:
    loop = EventLoop()
    wire = Wire(loop.clock, rate_bps=1_000_000_000, latency_ns=1_000)
    source: TimedSource = wire
    loop.add_source(source)
    at_a: list[tuple[int, bytes]] = []
    at_b: list[tuple[int, bytes]] = []

    def receive_b(frame: bytes) -> bool:
        at_b.append((loop.now, frame))
        if frame.startswith(b"ping"):
            wire.b.send(b"pong" + bytes(121))  # 125 bytes: 1000 ns on the wire
        return True

    def receive_a(frame: bytes) -> bool:
        at_a.append((loop.now, frame))
        return True

    wire.a.set_receiver(receive_a)
    wire.b.set_receiver(receive_b)
    loop.call_at(0, lambda: wire.a.send(b"big1" + bytes(1496)))
    loop.call_at(0, lambda: wire.a.send(b"big2" + bytes(1496)))
    loop.call_at(2_000, lambda: wire.b.send(b"back" + bytes(496)))
    loop.call_at(30_000, lambda: wire.a.send(b"ping" + bytes(121)))
    loop.run_until_idle(max_time=1_000_000)

    assert [(t, f[:4]) for t, f in at_b] == [(13_000, b"big1"), (25_000, b"big2"),
                                            (32_000, b"ping")]  # fmt: skip
    assert [(t, f[:4]) for t, f in at_a] == [(7_000, b"back"), (34_000, b"pong")]
    assert loop.now == 34_000
    assert wire.pending() == 0
    assert wire.a.counters.delivered == 3 and wire.b.counters.delivered == 2


def test_wire_on_the_loop_with_zero_latency_echo_is_bounded() -> None:
    loop = EventLoop()
    wire = Wire(loop.clock, latency_ns=0)
    loop.add_source(wire)

    def echo_from(port: WirePort) -> Callable[[bytes], bool]:
        def receive(frame: bytes) -> bool:
            port.send(frame)  # echo forever, in zero time
            return True

        return receive

    wire.a.set_receiver(echo_from(wire.a))
    wire.b.set_receiver(echo_from(wire.b))
    loop.call_soon(lambda: wire.a.send(b""))
    with pytest.raises(LoopBoundExceeded, match="max_steps=1000"):
        loop.run_until_idle(max_steps=1_000)
    assert loop.now == 0


def test_a_lone_source_is_followed_in_the_same_order_as_the_general_loop() -> None:
    """With one source and no idle hooks the loop follows the source from deadline to
    deadline; timers due before or at a deadline, and soon callbacks a poll queues,
    still run first, and the step count is the same as one step per event."""
    log: list[str] = []
    loop = EventLoop()
    src = ListSource([10, 20, 20, 30, 40, 50], log)
    loop.add_source(src)
    mark = recorder(loop, log)
    loop.call_at(30, mark("timer"))  # at a source deadline: the timer goes first
    loop.call_at(45, mark("timer"))
    orig_poll = src.poll

    def poll(now: int) -> int:
        if now == 20:
            loop.call_soon(mark("soon"))  # as an interrupt would
        return orig_poll(now)

    src.poll = poll  # type: ignore[method-assign]
    steps = loop.run_until_idle()
    assert log == ["src@10", "src@20", "soon@20", "timer@30", "src@30", "src@40",
                   "timer@45", "src@50"]
    assert steps == 8 and loop.now == 50


def test_following_a_lone_source_stops_at_the_run_for_horizon() -> None:
    loop = EventLoop()
    src = ListSource([5, 10, 15, 20])
    loop.add_source(src)
    loop.run_for(12)
    assert src.polled == [5, 10] and loop.now == 12
    loop.run_for(100)
    assert src.polled == [5, 10, 15, 20]


def test_next_event_time_is_the_earliest_timer_or_deadline() -> None:
    loop = EventLoop()
    assert loop.next_event_time() is None
    loop.add_source(ListSource([70]))
    loop.call_at(50, lambda: None).cancel()
    loop.call_at(60, lambda: None)
    assert loop.next_event_time() == 60
