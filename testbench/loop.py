"""The event loop on a virtual clock (DESIGN.md, "Event loop").

Sans-IO components (wires, devices, stacks) never read a clock; this loop owns ``now``
(virtual nanoseconds, starting at 0) and drives them. At each instant it runs, in order:

1. soon callbacks, FIFO;
2. due timers, by time then scheduling order (the soon callbacks a timer queues run
   before the next timer);
3. due sources (``next_deadline() <= now``), in registration order;
4. idle hooks, when nothing above was runnable; if any returns True, back to 1.

When nothing is runnable and no hook did work, ``now`` jumps to the earliest timer or
source deadline. Each callback run, timer fired, source polled or idle hook called is one
step. Time never goes backwards: a timer or deadline in the past fires at ``now``.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from typing import Protocol

__all__ = ["EventLoop", "LoopBoundExceeded", "TimedSource", "Timer"]


class TimedSource(Protocol):
    def next_deadline(self) -> int | None: ...

    def poll(self, now: int) -> int: ...


class LoopBoundExceeded(RuntimeError):
    """The loop hit its step or virtual-time bound; work was still pending."""


class Timer:
    """A callback scheduled at a virtual time; :meth:`cancel` before it fires to drop it."""

    __slots__ = ("cancelled", "fn", "when")

    def __init__(self, when: int, fn: Callable[[], object]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<Timer at {self.when}{state}>"


class EventLoop:
    def __init__(self) -> None:
        self.now = 0
        self.steps = 0
        self._soon: deque[Callable[[], object]] = deque()
        self._timers: list[tuple[int, int, Timer]] = []
        self._timer_seq = 0
        self._sources: list[TimedSource] = []
        self._idle_hooks: list[Callable[[], bool]] = []

    def clock(self) -> int:
        return self.now

    def call_soon(self, fn: Callable[[], object]) -> None:
        self._soon.append(fn)

    def call_at(self, when: int, fn: Callable[[], object]) -> Timer:
        timer = Timer(when, fn)
        heapq.heappush(self._timers, (when, self._timer_seq, timer))
        self._timer_seq += 1
        return timer

    def call_later(self, delay: int, fn: Callable[[], object]) -> Timer:
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        return self.call_at(self.now + delay, fn)

    def add_source(self, source: TimedSource) -> None:
        self._sources.append(source)

    def add_idle_hook(self, fn: Callable[[], bool]) -> None:
        self._idle_hooks.append(fn)

    def run_until_idle(self, *, max_steps: int = 1_000_000, max_time: int | None = None) -> int:
        """Run until nothing is left; return the steps executed. Raises
        :class:`LoopBoundExceeded` if more than ``max_steps`` steps would run or the next
        event lies beyond ``max_time``."""
        return self._run(max_steps, max_time, stop_at_limit=False)

    def run_for(self, duration: int, *, max_steps: int = 1_000_000) -> int:
        """Run everything due up to ``now + duration``, then leave ``now`` there."""
        if duration < 0:
            raise ValueError(f"duration must be >= 0, got {duration}")
        end = self.now + duration
        executed = self._run(max_steps, end, stop_at_limit=True)
        self.now = end
        return executed

    def _run(self, max_steps: int, limit: int | None, *, stop_at_limit: bool) -> int:
        executed = 0

        def step() -> None:
            nonlocal executed
            if executed >= max_steps:
                raise LoopBoundExceeded(
                    f"step bound hit: max_steps={max_steps} steps ran and work is still "
                    f"pending at virtual time {self.now} ns"
                )
            executed += 1
            self.steps += 1

        # Bounded by max_steps: every pass that does not return runs at least one step,
        # except a time advance, which is always followed by a due timer or source.
        while True:
            if self._soon:
                step()
                self._soon.popleft()()
                continue
            timer = self._pop_due_timer()
            if timer is not None:
                step()
                timer.fn()
                continue
            due = [s for s in self._sources if self._is_due(s.next_deadline())]
            for source in due:
                step()
                source.poll(self.now)
            if due:
                if len(self._sources) == 1 and not self._idle_hooks:
                    self._follow(due[0], step, limit)
                continue
            did_work = False
            for hook in list(self._idle_hooks):
                step()
                did_work = hook() or did_work
            if did_work:
                continue
            when = self._next_time()
            if when is None:
                return executed
            if limit is not None and when > limit:
                if stop_at_limit:
                    return executed
                raise LoopBoundExceeded(
                    f"virtual time bound hit: next event at {when} ns is past "
                    f"max_time={limit} ns (now={self.now} ns, {executed} steps ran)"
                )
            self.now = max(self.now, when)

    def _follow(self, source: TimedSource, step: Callable[[], None], limit: int | None) -> None:
        """Keep polling the only source at its next deadlines while nothing else would
        run before them: no soon callback, no timer due earlier or at the same time
        (timers go first at an instant), no idle hook. Exactly what the general loop
        does in that case, without its bookkeeping per delivered frame."""
        timers = self._timers
        while not self._soon:
            deadline = source.next_deadline()
            if deadline is None or (limit is not None and deadline > limit):
                return
            self._drop_cancelled()
            if timers and timers[0][0] <= max(self.now, deadline):
                return
            step()
            self.now = max(self.now, deadline)
            source.poll(self.now)

    def next_event_time(self) -> int | None:
        """Virtual time of the earliest timer or source deadline (None: nothing
        scheduled); soon callbacks are not counted (they run at ``now``)."""
        return self._next_time()

    def _is_due(self, deadline: int | None) -> bool:
        return deadline is not None and deadline <= self.now

    def _drop_cancelled(self) -> None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)

    def _pop_due_timer(self) -> Timer | None:
        self._drop_cancelled()
        if self._timers and self._timers[0][0] <= self.now:
            return heapq.heappop(self._timers)[2]
        return None

    def _next_time(self) -> int | None:
        self._drop_cancelled()
        times = [d for s in self._sources if (d := s.next_deadline()) is not None]
        if self._timers:
            times.append(self._timers[0][0])
        return min(times) if times else None
