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

Faults come from one ``random.Random`` per direction, seeded from ``seed`` and the
direction's name. Every frame sent draws the same seven numbers in the same order (loss,
duplicate, reorder, corrupt, corrupt position, corrupt mask, jitter) whatever happens to
it, and an eighth (CE mark) when ``ce_mark`` is set, so the fate of the n-th frame
depends only on the seed, the configuration and n. A perfect wire (every
probability 0, no jitter) draws nothing.

Counting (per sending port): each frame sent ends in exactly one of ``lost``,
``queue_drops``, ``delivered``, ``undeliverable`` or is still pending; a duplicate copy
adds one to ``duplicated`` and then ends in ``delivered`` or ``undeliverable`` too. So once
nothing is pending: ``delivered + undeliverable == sent - lost - queue_drops + duplicated``.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import NamedTuple

from emulator.backends.base import Receiver
from stack.wire.ecn import mark_ce

__all__ = ["FaultConfig", "Wire", "WireCounters", "WirePort"]

_NS_PER_S = 1_000_000_000
TX_HEADROOM = 1024
"""Frames of queue a port keeps free when it says it is ready: one 64 KB packet
segmented at a 64-byte MSS."""


@dataclass(frozen=True)
class FaultConfig:
    """What goes wrong on the wire; every probability is drawn once per frame."""

    loss: float = 0.0
    """Probability a frame is dropped (it still occupies the link while serialized)."""
    duplicate: float = 0.0
    """Probability a frame is delivered twice (the copy arrives right after it)."""
    reorder: float = 0.0
    """Probability a frame is held back by ``reorder_delay_ns``, so later frames overtake it."""
    reorder_delay_ns: int = 50_000
    corrupt: float = 0.0
    """Probability one byte of the frame is flipped (xor with a nonzero mask)."""
    jitter_ns: int = 0
    """Uniform extra delay in ``[0, jitter_ns]`` added to every frame."""
    ce_mark: float = 0.0
    """Probability an ECN-capable IP packet (ECT(0) or ECT(1)) is marked CE, as a
    congested router does instead of dropping it (RFC 3168 §5); Not-ECT frames pass
    unchanged. Drawn after the seven other numbers, only when above 0."""

    @property
    def perfect(self) -> bool:
        """No fault can fire: every frame is delivered, in order, unchanged."""
        return not (self.loss or self.duplicate or self.reorder or self.corrupt
                    or self.jitter_ns or self.ce_mark)

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder", "corrupt", "ce_mark"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"FaultConfig.{name} must be a number, got {value!r}")
            if not 0.0 <= value <= 1.0:  # also rejects NaN
                raise ValueError(f"FaultConfig.{name} must be in [0, 1], got {value!r}")
        for name in ("reorder_delay_ns", "jitter_ns"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"FaultConfig.{name} must be an int, got {value!r}")
            if value < 0:
                raise ValueError(f"FaultConfig.{name} must be >= 0, got {value!r}")


@dataclass
class WireCounters:
    """Counters of one direction, kept on the sending port."""

    sent: int = 0
    delivered: int = 0
    """Frames (including duplicate copies) the far receiver accepted."""
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0
    ce_marked: int = 0
    """ECN-capable frames marked CE (RFC 3168 §5)."""
    queue_drops: int = 0
    undeliverable: int = 0
    """Frames that arrived where no receiver was set, or whose receiver returned False."""
    bytes_sent: int = 0
    bytes_delivered: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


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
        self._rng = random.Random(f"vnetbench.wire:{seed}:{name}")
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
        faults: FaultConfig = FaultConfig(),  # frozen, so sharing the default is safe
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
        self.faults = faults
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
        faults = self.faults
        counters = port.counters
        counters.sent += 1
        counters.bytes_sent += len(frame)
        perfect = faults.perfect  # nothing can fire: no numbers to draw
        if not perfect:
            rng = port._rng
            # Fixed draw order per frame (see the module docstring).
            u_loss, u_dup, u_reorder, u_corrupt, u_pos, u_mask, u_jitter = (
                rng.random() for _ in range(7))
            u_ce = rng.random() if faults.ce_mark else 1.0
        if port._in_flight >= self.queue_limit:
            counters.queue_drops += 1
            return
        start = max(self._clock(), port._busy_until)
        port._busy_until = start + self.serialization_ns(len(frame))
        deliver_at = port._busy_until + self.latency_ns
        if perfect:
            self._enqueue(port, deliver_at, frame)
            return
        if u_loss < faults.loss:
            counters.lost += 1
            return
        if u_corrupt < faults.corrupt and frame:
            damaged = bytearray(frame)
            position = min(int(u_pos * len(frame)), len(frame) - 1)
            damaged[position] ^= 1 + min(int(u_mask * 255), 254)
            frame = bytes(damaged)
            counters.corrupted += 1
        if u_ce < faults.ce_mark:
            marked = mark_ce(frame)
            if marked is not None:
                frame = marked
                counters.ce_marked += 1
        deliver_at += min(math.floor(u_jitter * (faults.jitter_ns + 1)), faults.jitter_ns)
        if u_reorder < faults.reorder:
            deliver_at += faults.reorder_delay_ns
            counters.reordered += 1
        self._enqueue(port, deliver_at, frame)
        if u_dup < faults.duplicate and port._in_flight < self.queue_limit:
            counters.duplicated += 1
            self._enqueue(port, deliver_at, frame)

    def _enqueue(self, port: WirePort, deliver_at: int, frame: bytes) -> None:
        heapq.heappush(self._queue, _Pending(deliver_at, self._seq, port, frame))
        self._seq += 1
        port._in_flight += 1
