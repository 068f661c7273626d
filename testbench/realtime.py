"""Drive an :class:`~testbench.loop.EventLoop` on real time while a real peer (a Linux
tap, later QEMU) is attached (DESIGN.md, "Event loop": real-time mode).

The loop's clock is virtual and jumps to the next event whenever nothing is runnable;
with a real peer that would fire retransmission and delayed-ACK timers long before
their time. :class:`RealTimeRunner` instead ties ``loop.now`` to ``time.monotonic_ns()``
(as an offset from the loop's time when the runner was made) and repeats:

1. move ``loop.now`` to the current real time (forward only);
2. poll the peer: the frames it queued go to the device, whose interrupts queue work;
3. run everything due at that time (:meth:`EventLoop.run_for` with 0, which never jumps
   ahead): the loop's order puts the work the frames brought (soon callbacks) before
   the timers that fell due meanwhile, so when the stack was busy for longer than its
   retransmission timeout the ACKs waiting in the tap are seen before the timer fires —
   no spurious retransmission caused by our own slowness;
4. wait on the peer's file descriptor until a frame arrives or the loop's next timer or
   source deadline is due, at most ``max_wait_s`` (not at all when the poll found
   frames: more may be queued).

Everything stays bounded: :meth:`run_until` by a wall-clock timeout, each pass of the
loop by ``max_steps``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from testbench.loop import EventLoop

__all__ = ["RealTimePeer", "RealTimeRunner"]


class RealTimePeer(Protocol):
    """A peer whose frames arrive in real time (e.g. :class:`emulator.backends.tap.TapBackend`)."""

    def poll(self, now: int) -> int:
        """Hand every frame queued so far to the device; how many."""
        ...

    def wait(self, timeout: float) -> bool:
        """Block at most ``timeout`` seconds until a frame is queued."""
        ...


class RealTimeRunner:
    """Run ``loop`` on the real clock with ``peer`` attached."""

    def __init__(self, loop: EventLoop, peer: RealTimePeer, *, max_wait_s: float = 0.05,
                 max_steps: int = 1_000_000) -> None:
        if max_wait_s <= 0:
            raise ValueError(f"max_wait_s must be > 0, got {max_wait_s}")
        self.loop = loop
        self.peer = peer
        self.max_wait_s = max_wait_s
        self.max_steps = max_steps
        self._origin = time.monotonic_ns() - loop.now
        self.passes = 0
        self.frames_polled = 0

    def real_now(self) -> int:
        """The current real time on the loop's clock (ns)."""
        return time.monotonic_ns() - self._origin

    def step(self) -> int:
        """One pass: set the clock, poll the peer, run what is due, wait for the next
        frame or deadline. Returns the number of frames polled."""
        self.passes += 1
        loop = self.loop
        loop.now = max(loop.now, self.real_now())
        polled = self.peer.poll(loop.now)
        self.frames_polled += polled
        loop.run_for(0, max_steps=self.max_steps)
        if polled == 0:
            self.peer.wait(self._wait_s())
        return polled

    def _wait_s(self) -> float:
        nxt = self.loop.next_event_time()
        if nxt is None:
            return self.max_wait_s
        return min(self.max_wait_s, max(0.0, (nxt - self.real_now()) / 1e9))

    def run_until(self, done: Callable[[], object], timeout_s: float) -> bool:
        """Step until ``done()`` is true (True) or ``timeout_s`` wall seconds passed
        (False)."""
        end = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() >= end:
                return bool(done())
            self.step()
        return True

    def run_for(self, seconds: float) -> None:
        """Step for ``seconds`` of wall time (timers keep firing, the peer keeps being
        served)."""
        self.run_until(lambda: False, seconds)
