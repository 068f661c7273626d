"""An in-memory Ethernet wire linking two devices (DESIGN.md, "Backend").

A :class:`Wire` has two ends, :attr:`Wire.a` and :attr:`Wire.b`; each is a
:class:`~emulator.backends.base.Backend`. A frame sent on one end is delivered to the
receiver registered on the other end once it has been serialized at ``rate_bps`` and has
propagated for ``latency_ns`` (plus jitter and the reorder hold, when those faults fire).

The wire is sans-IO: it never reads a clock. Senders are time-stamped with the injected
``clock`` (virtual nanoseconds) and frames leave only when the owner calls
:meth:`Wire.poll` with the current time; :meth:`Wire.next_deadline` says when that is next
needed (the testbench event loop treats a wire as a timed source).

Model, per direction::

    start      = max(now, busy_until)                   # the link sends one frame at a time
    busy_until = start + ceil(len * 8 * 1e9 / rate_bps)
    deliver_at = busy_until + latency_ns + jitter + (reorder_delay_ns if held back)

Faults come from one :class:`~emulator.backends.faults.FaultModel` per direction, seeded
from ``seed`` and the direction's name: the fate of the n-th frame depends only on the
seed, the configuration and n (a frame dropped for want of queue room still draws). A
perfect wire (every probability 0, no jitter) draws nothing.

Counting (per sending port): each frame sent ends in exactly one of ``lost``,
``queue_drops``, ``delivered``, ``undeliverable`` or is still pending; a duplicate copy
adds one to ``duplicated`` and then ends in ``delivered`` or ``undeliverable`` too. So once
nothing is pending: ``delivered + undeliverable == sent - lost - queue_drops + duplicated``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import NamedTuple

from emulator.backends.base import Receiver
from emulator.backends.faults import PERFECT, FaultConfig, FaultModel, WireCounters

__all__ = ["FaultConfig", "Wire", "WireCounters", "WirePort"]

_NS_PER_S = 1_000_000_000
TX_HEADROOM = 1024
"""Frames of queue a port keeps free when it says it is ready: one 64 KB packet
segmented at a 64-byte MSS."""


class _Pending(NamedTuple):
    deliver_at: int
    seq: int
    source: WirePort
    frame: bytes


class WirePort:
    """One end of a :class:`Wire`; implements the ``Backend`` protocol."""

    def __init__(self, wire: Wire, name: str, seed: int) -> None:
        self.name = name
        self.counters = WireCounters()
        self._wire = wire
        self._faults = FaultModel(wire.faults, seed, name, self.counters)
        self._receiver: Receiver | None = None
        self._busy_until = 0
        self._in_flight = 0
        self._on_ready: Callable[[], None] | None = None
        self.peer: WirePort = self  # set by Wire once both ends exist

    def send(self, frame: bytes) -> None:
        """Put one frame on the wire towards the peer port."""
        self._wire._transmit(self, bytes(frame))

    def set_receiver(self, receiver: Receiver | None) -> None:
        """Register the callable that frames arriving at this port are handed to."""
        self._receiver = receiver

    # FlowControl
    def tx_ready(self) -> bool:
        """Room for another packet: fewer than ``queue_limit - TX_HEADROOM`` frames in
        flight (the headroom takes a 64 KB packet cut into segments of 64 bytes)."""
        return self._in_flight < self._wire.tx_threshold

    def on_tx_ready(self, callback: Callable[[], None] | None) -> None:
        self._on_ready = callback

    def __repr__(self) -> str:
        return f"<WirePort {self.name} -> {self.peer.name}>"


class Wire:
    """Two :class:`WirePort` ends joined by a point-to-point link with optional faults."""

    def __init__(
        self,
        clock: Callable[[], int],
        *,
        rate_bps: int = 10_000_000_000,
        latency_ns: int = 1_000,
        faults: FaultConfig = PERFECT,
        seed: int = 0,
        queue_limit: int = 4096,
    ) -> None:
        if rate_bps <= 0:
            raise ValueError(f"rate_bps must be > 0, got {rate_bps}")
        if latency_ns < 0:
            raise ValueError(f"latency_ns must be >= 0, got {latency_ns}")
        if queue_limit < 1:
            raise ValueError(f"queue_limit must be >= 1, got {queue_limit}")
        self._clock = clock
        self.rate_bps = rate_bps
        self.latency_ns = latency_ns
        self._fault_config = faults
        self._perfect = faults.perfect
        self.seed = seed
        self.queue_limit = queue_limit
        self.tx_threshold = max(1, queue_limit - TX_HEADROOM)
        """In-flight frames at which a port stops being :meth:`WirePort.tx_ready`."""
        self.a = WirePort(self, "a", seed)
        self.b = WirePort(self, "b", seed)
        self.a.peer = self.b
        self.b.peer = self.a
        self._queue: list[_Pending] = []
        self._seq = 0

    @property
    def faults(self) -> FaultConfig:
        """What goes wrong on this wire (change it with :meth:`set_faults`)."""
        return self._fault_config

    def set_faults(self, faults: FaultConfig) -> None:
        """From now on, frames meet ``faults`` (both directions); each direction's random
        stream goes on where it was, so a run stays reproducible from its seed."""
        self._fault_config = faults
        self._perfect = faults.perfect  # read per frame: kept beside the config it derives from
        for port in (self.a, self.b):
            port._faults.faults = faults

    def serialization_ns(self, length: int) -> int:
        """Time the link needs to put ``length`` bytes on the wire (rounded up)."""
        return -(-(length * 8 * _NS_PER_S) // self.rate_bps)

    def next_deadline(self) -> int | None:
        """Virtual time of the earliest pending delivery, or None when nothing is pending."""
        return self._queue[0].deliver_at if self._queue else None

    def pending(self) -> int:
        return len(self._queue)

    def poll(self, now: int) -> int:
        """Deliver every frame due at or before ``now``, in delivery-time order (ties: send
        order). Returns how many frames arrived (accepted or not). Frames sent by a receiver
        during this call wait for the next poll, so a zero-delay ping-pong cannot spin here."""
        limit_seq = self._seq
        arrived = 0
        queue = self._queue
        while queue and queue[0].deliver_at <= now and queue[0].seq < limit_seq:
            item = heapq.heappop(queue)
            source = item.source
            source._in_flight -= 1
            arrived += 1
            if source._on_ready is not None and source._in_flight < self.tx_threshold:
                ready, source._on_ready = source._on_ready, None
                ready()  # what the sender sends now waits for the next poll
            receiver = source.peer._receiver
            counters = source.counters
            if receiver is not None and receiver(item.frame):
                counters.delivered += 1
                counters.bytes_delivered += len(item.frame)
            else:
                counters.undeliverable += 1
        return arrived

    def _transmit(self, port: WirePort, frame: bytes) -> None:
        counters = port.counters
        counters.sent += 1
        counters.bytes_sent += len(frame)
        # nothing can fire on a perfect wire: no numbers to draw
        draws = None if self._perfect else port._faults.draw()
        if port._in_flight >= self.queue_limit:
            counters.queue_drops += 1
            return
        start = max(self._clock(), port._busy_until)
        port._busy_until = start + self.serialization_ns(len(frame))
        deliver_at = port._busy_until + self.latency_ns
        if draws is None:
            self._enqueue(port, deliver_at, frame)
            return
        fate = port._faults.apply(frame, draws)
        if fate.lost:
            return
        deliver_at += fate.delay_ns
        self._enqueue(port, deliver_at, fate.frame)
        if fate.duplicate and port._in_flight < self.queue_limit:
            counters.duplicated += 1
            self._enqueue(port, deliver_at, fate.frame)

    def _enqueue(self, port: WirePort, deliver_at: int, frame: bytes) -> None:
        heapq.heappush(self._queue, _Pending(deliver_at, self._seq, port, frame))
        self._seq += 1
        port._in_flight += 1
