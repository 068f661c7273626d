"""What goes wrong on a link, decided per frame from a seeded random stream: shared by
the in-memory :class:`~emulator.backends.wire.Wire` and by :class:`FaultyBackend`, which
puts the same faults between a device and a real backend (a Linux tap), so a real peer's
TCP meets loss, reordering, duplication and corruption too.

Every frame draws the same seven numbers in the same order (loss, duplicate, reorder,
corrupt, corrupt position, corrupt mask, jitter) whatever happens to it, and an eighth
(CE mark) when ``ce_mark`` is set, so the fate of the n-th frame depends only on the
seed, the configuration and n. A perfect configuration (every probability 0, no jitter)
draws nothing.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from emulator.backends.base import Backend, FlowControl, OffloadReceiver, OffloadSource, Receiver
from stack.wire.ecn import mark_ce
from virtio.net_hdr import NetHdr

__all__ = ["PERFECT", "Fate", "FateObserver", "FaultConfig", "FaultModel", "FaultyBackend", "WireCounters"]


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


PERFECT = FaultConfig()
"""A link where nothing goes wrong."""


@dataclass
class WireCounters:
    """Counters of one direction of a link, kept by its sending side."""

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


@dataclass(frozen=True)
class Fate:
    """What happens to one frame: lost, or delivered (``frame``, perhaps damaged or
    marked) after ``delay_ns`` more than a clean frame would take, perhaps twice."""

    lost: bool
    frame: bytes
    delay_ns: int = 0
    duplicate: bool = False


class FaultModel:
    """One direction's faults: a seeded stream of draws, counted in ``counters``."""

    def __init__(self, faults: FaultConfig, seed: int | str, name: str,
                 counters: WireCounters) -> None:
        self.faults = faults
        self.counters = counters
        self._rng = random.Random(f"vnetbench.wire:{seed}:{name}")

    def draw(self) -> tuple[float, ...]:
        """The numbers of one frame, in the fixed order (see the module text); drawn
        even for a frame the link then drops for want of queue room."""
        rng = self._rng
        draws = tuple(rng.random() for _ in range(7))
        return (*draws, rng.random() if self.faults.ce_mark else 1.0)

    def apply(self, frame: bytes, draws: tuple[float, ...]) -> Fate:
        """The fate of ``frame`` from its draws; counts what fired."""
        faults = self.faults
        counters = self.counters
        u_loss, u_dup, u_reorder, u_corrupt, u_pos, u_mask, u_jitter, u_ce = draws
        if u_loss < faults.loss:
            counters.lost += 1
            return Fate(True, frame)
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
        delay = min(math.floor(u_jitter * (faults.jitter_ns + 1)), faults.jitter_ns)
        if u_reorder < faults.reorder:
            delay += faults.reorder_delay_ns
            counters.reordered += 1
        return Fate(False, frame, delay, u_dup < faults.duplicate)

    def fate(self, frame: bytes) -> Fate:
        """Draw and apply: the whole decision for one frame."""
        return self.apply(frame, self.draw())


CallLater = Callable[[int, Callable[[], object]], object]
FateObserver = Callable[[str, bytes, Fate], None]
"""Told of every frame's fate: ("outbound" or "inbound", the frame as it came, its fate)."""


class FaultyBackend:
    """Wraps a backend (a :class:`~emulator.backends.tap.TapBackend`) and puts a faulty
    link between it and the device, seeded per direction like a :class:`Wire`:
    ``outbound`` (device → network) and ``inbound`` (network → device). A delayed frame
    (reorder, jitter) goes on through ``call_later`` (the event loop's, on real time
    under :class:`~testbench.realtime.RealTimeRunner`).

    Frames the network hands over with offload work left undone (a tap's GSO packets
    and partial checksums) can be lost, duplicated and delayed but are never corrupted:
    their checksum is completed after the link, so damage there would go unseen — not
    what a faulty link does. Everything else (polling, waiting, readiness, pacing) is
    the wrapped backend's."""

    def __init__(self, inner: Backend, faults: FaultConfig, *, seed: int,
                 call_later: CallLater, observer: FateObserver | None = None) -> None:
        self.inner = inner
        self.observer = observer
        self.faults = faults
        self.outbound_counters = WireCounters()
        self.inbound_counters = WireCounters()
        self._out = FaultModel(faults, seed, "outbound", self.outbound_counters)
        self._in = FaultModel(faults, seed, "inbound", self.inbound_counters)
        self._call_later = call_later
        self._receiver: Receiver | None = None
        self._offload_receiver: OffloadReceiver | None = None
        inner.set_receiver(self._arrive)

    # towards the network
    def send(self, frame: bytes) -> None:
        frame = bytes(frame)
        fate = self._out.fate(frame)
        self._pass("outbound", self.outbound_counters, frame, fate, self._put)

    def _put(self, frame: bytes) -> bool:
        self.outbound_counters.delivered += 1
        self.outbound_counters.bytes_delivered += len(frame)
        self.inner.send(frame)
        return True

    def _pass(self, way: str, counters: WireCounters, frame: bytes, fate: Fate,
              hand: Callable[[bytes], bool]) -> bool:
        """Count the frame, tell the observer, and hand over what the fate leaves (a
        copy more when duplicated, later when delayed); whether the last copy handed
        over now was taken (True when lost or delayed: the link took it)."""
        counters.sent += 1
        counters.bytes_sent += len(frame)
        if self.observer is not None:
            self.observer(way, frame, fate)
        if fate.lost:
            return True
        copies = 2 if fate.duplicate else 1
        counters.duplicated += copies - 1
        taken = True
        for _ in range(copies):
            if fate.delay_ns:
                self._call_later(fate.delay_ns, partial(hand, fate.frame))
            else:
                taken = hand(fate.frame)
        return taken

    # towards the device
    def set_receiver(self, receiver: Receiver | None) -> None:
        self._receiver = receiver

    def set_offload_receiver(self, receiver: OffloadReceiver | None) -> None:
        self._offload_receiver = receiver
        if isinstance(self.inner, OffloadSource):
            self.inner.set_offload_receiver(None if receiver is None else self._arrive_offloaded)

    def _arrive(self, frame: bytes) -> bool:
        return self._inbound(bytes(frame), None)

    def _arrive_offloaded(self, frame: bytes, hdr: NetHdr) -> bool:
        return self._inbound(bytes(frame), hdr)

    def _inbound(self, frame: bytes, hdr: NetHdr | None) -> bool:
        draws = self._in.draw()
        if hdr is not None:  # no corruption of what is checksummed after the link
            draws = (*draws[:3], 1.0, *draws[4:])
        fate = self._in.apply(frame, draws)
        return self._pass("inbound", self.inbound_counters, frame, fate,
                          partial(self._hand_over, hdr=hdr))

    def _hand_over(self, frame: bytes, *, hdr: NetHdr | None) -> bool:
        counters = self.inbound_counters
        if hdr is None:
            receiver = self._receiver
            ok = receiver is not None and receiver(frame)
        else:
            offload = self._offload_receiver
            ok = offload is not None and offload(frame, hdr)
        if ok:
            counters.delivered += 1
            counters.bytes_delivered += len(frame)
        else:
            counters.undeliverable += 1
        return ok

    # what the wrapped backend does, passed through
    def tx_ready(self) -> bool:
        return not isinstance(self.inner, FlowControl) or self.inner.tx_ready()

    def on_tx_ready(self, callback: Callable[[], None] | None) -> None:
        if isinstance(self.inner, FlowControl):
            self.inner.on_tx_ready(callback)

    # a real-time peer's side (RealTimeRunner), the wrapped backend's
    def poll(self, now: int) -> int:
        frames: int = self._inner_call("poll", now)
        return frames

    def wait(self, timeout: float) -> bool:
        return bool(self._inner_call("wait", timeout))

    def fileno(self) -> int:
        fd: int = self._inner_call("fileno")
        return fd

    def next_deadline(self) -> int | None:
        deadline: int | None = self._inner_call("next_deadline")
        return deadline

    def set_ready_check(self, ready: Callable[[], bool] | None) -> None:
        self._inner_call("set_ready_check", ready)

    def _inner_call(self, name: str, *args: object) -> Any:  # the wrapped backend's own type
        method = getattr(self.inner, name, None)
        if method is None:
            raise TypeError(f"{type(self.inner).__name__} has no {name}()")
        return method(*args)

    def counters(self) -> dict[str, dict[str, int]]:
        return {"outbound": self.outbound_counters.as_dict(),
                "inbound": self.inbound_counters.as_dict()}
