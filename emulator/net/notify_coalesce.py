"""Used buffer notification coalescing (NOTF_COAL, virtio-v1.3 §5.1.6.5.9).

Per virtqueue the device holds back the used buffer notification until ``max_packets``
packets were placed or ``max_usecs`` passed since the first of them, whichever comes
first; with either parameter 0 it notifies after every packet ("Operation"). New
parameters take effect at once: a queue whose condition is met under them notifies
immediately ("Notifications When Coalescing Parameters Change"). Suppression by the
driver (NO_INTERRUPT / used_event) still applies on top; that is the device's job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

NS_PER_USEC = 1_000


@dataclass
class _QueueState:
    max_packets: int = 0
    max_usecs: int = 0
    pending: int = 0
    timer_generation: int = 0
    timer_armed: bool = False

    @property
    def coalescing(self) -> bool:
        return self.max_packets > 0 and self.max_usecs > 0


class NotifyCoalescer:
    """Decides, per queue, whether a batch of used buffers is notified now or later.

    ``call_later(delay_ns, fn)`` is the device's timer service; without one there is no
    way to notify later, so every batch is notified at once. ``fire(queue)`` is called
    when a held-back notification is due.
    """

    def __init__(
        self,
        call_later: Callable[[int, Callable[[], object]], object] | None,
        fire: Callable[[int], None],
    ) -> None:
        self._call_later = call_later
        self._fire = fire
        self._queues: dict[int, _QueueState] = {}
        self.deferred = 0
        """Batches whose notification was held back."""

    def reset(self) -> None:
        self._queues.clear()

    def params(self, queue: int) -> tuple[int, int]:
        """(max_packets, max_usecs) of ``queue``."""
        state = self._queues.get(queue)
        return (0, 0) if state is None else (state.max_packets, state.max_usecs)

    def configure(self, queues: Iterable[int], max_packets: int, max_usecs: int) -> list[int]:
        """Set the parameters of ``queues``; return the queues whose notification is due
        under the new parameters (the caller notifies them)."""
        due: list[int] = []
        for queue in queues:
            state = self._queues.setdefault(queue, _QueueState())
            state.max_packets, state.max_usecs = max_packets, max_usecs
            if state.pending and (not state.coalescing or state.pending >= max_packets):
                self._clear(state)
                due.append(queue)
        return due

    def packets(self, queue: int, count: int) -> bool:
        """``count`` packets were placed in ``queue``: True when the notification
        condition is met now."""
        state = self._queues.get(queue)
        if state is None or not state.coalescing or self._call_later is None:
            return True
        state.pending += count
        if state.pending >= state.max_packets:
            self._clear(state)
            return True
        self.deferred += 1
        if not state.timer_armed:
            state.timer_armed = True
            generation = state.timer_generation

            def expire() -> None:
                if state.timer_generation != generation or not state.pending:
                    return
                self._clear(state)
                self._fire(queue)

            self._call_later(state.max_usecs * NS_PER_USEC, expire)
        return False

    @staticmethod
    def _clear(state: _QueueState) -> None:
        state.pending = 0
        state.timer_armed = False
        state.timer_generation += 1
