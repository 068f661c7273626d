"""An in-memory network for TCP tests: two connections exchanging segments over a
simulated link with delay, bandwidth, seeded loss / duplication / reordering, the
device's TSO split on transmit and (optionally) receive coalescing; a driver loop on
virtual time that always advances to the earliest timer or arrival, bounded in steps."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from stack.tcp.config import TcpConfig
from stack.tcp.connection import TcpConnection
from stack.tcp.segment import Outgoing, Segment
from stack.tcp.state import TcpState
from stack.wire.tcp import TcpFlags, emit_options

MS = 1_000_000
US = 1_000
IP_TCP_HEADERS = 40


def split_tso(out: Outgoing) -> list[Segment]:
    """What a device does with a TSO segment: wire segments of ``segment_size`` payload
    bytes, each with a copy of the header (and its options), sequence numbers advanced,
    PSH and FIN only on the last (CWR only on the first)."""
    seg = out.segment
    size = out.segment_size
    if size is None or len(seg.payload) <= size:
        return [seg]
    parts: list[Segment] = []
    n = len(seg.payload)
    for off in range(0, n, size):
        last = off + size >= n
        flags = seg.flags
        if not last:
            flags &= ~(TcpFlags.PSH | TcpFlags.FIN)
        if off:
            flags &= ~TcpFlags.CWR
        parts.append(replace(seg, seq=(seg.seq + off) & 0xFFFFFFFF, flags=flags,
                             payload=seg.payload[off : off + size]))
    return parts


def coalesce(segments: list[Segment]) -> list[Segment]:
    """Receive coalescing (GRO/LRO): merge in-order data segments of one flow that arrive
    together and agree on everything but sequence number, payload and PSH on the last."""
    out: list[Segment] = []
    for seg in segments:
        if out and seg.payload:
            prev = out[-1]
            plain = TcpFlags.ACK
            if (prev.payload and prev.flags == plain and seg.flags & ~TcpFlags.PSH == plain
                    and (prev.seq + len(prev.payload)) & 0xFFFFFFFF == seg.seq
                    and prev.ack == seg.ack and prev.window == seg.window
                    and prev.options == seg.options):
                out[-1] = replace(prev, flags=seg.flags, payload=prev.payload + seg.payload)
                continue
        out.append(seg)
    return out


@dataclass
class LinkConfig:
    delay_ns: int = 1 * MS
    bandwidth_bps: int | None = None
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_extra_ns: int = 3 * MS
    coalesce: bool = False
    batch_ns: int = 0
    """Deliver arrivals at multiples of this (interrupt moderation); with ``coalesce``
    the segments of one batch are merged like GRO does."""
    mtu: int | None = None
    """When set, a wire segment longer than this (IP+TCP+payload) is an error."""


@dataclass
class Wire:
    """What crossed the link (after the TSO split), for assertions."""

    time: int
    segment: Segment
    dropped: bool = False


class Link:
    """One direction of the link."""

    def __init__(self, config: LinkConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        self._queue: list[tuple[int, int, Segment]] = []
        self._counter = 0
        self._busy_until = 0
        self.log: list[Wire] = []
        self.outgoing: list[Outgoing] = []
        self.dropped = 0
        self.duplicated = 0
        self.reordered = 0

    def send(self, outs: list[Outgoing], now: int) -> None:
        cfg = self.config
        for out in outs:
            self.outgoing.append(out)
            for seg in split_tso(out):
                size = IP_TCP_HEADERS + len(emit_options(seg.options)) + len(seg.payload)
                if cfg.mtu is not None and size > cfg.mtu:
                    raise AssertionError(f"wire segment of {size} bytes exceeds MTU {cfg.mtu}")
                start = max(now, self._busy_until)
                if cfg.bandwidth_bps:
                    self._busy_until = start + size * 8 * 1_000_000_000 // cfg.bandwidth_bps
                else:
                    self._busy_until = start
                arrival = self._busy_until + cfg.delay_ns
                if cfg.loss and self.rng.random() < cfg.loss:
                    self.dropped += 1
                    self.log.append(Wire(now, seg, dropped=True))
                    continue
                self.log.append(Wire(now, seg))
                if cfg.reorder and self.rng.random() < cfg.reorder:
                    self.reordered += 1
                    arrival += self.rng.randint(1, cfg.reorder_extra_ns)
                self._push(arrival, seg)
                if cfg.duplicate and self.rng.random() < cfg.duplicate:
                    self.duplicated += 1
                    self._push(arrival + self.rng.randint(0, cfg.reorder_extra_ns), seg)

    def _push(self, arrival: int, seg: Segment) -> None:
        batch = self.config.batch_ns
        if batch:
            arrival = -(-arrival // batch) * batch
        self._counter += 1
        heapq.heappush(self._queue, (arrival, self._counter, seg))

    def next_arrival(self) -> int | None:
        return self._queue[0][0] if self._queue else None

    def pop_due(self, now: int) -> list[Segment]:
        out: list[Segment] = []
        while self._queue and self._queue[0][0] <= now:
            out.append(heapq.heappop(self._queue)[2])
        if self.config.coalesce:
            out = coalesce(out)
        return out


@dataclass
class Pair:
    """Connection ``a`` (active opener) and ``b`` (passive, created by the listener when
    the SYN arrives) over two links."""

    a_config: TcpConfig
    b_config: TcpConfig
    link: LinkConfig = field(default_factory=LinkConfig)
    reverse_link: LinkConfig | None = None
    seed: int = 1
    a_isn: int = 1000
    b_isn: int = 5000
    a_port: int = 40000
    b_port: int = 80
    now: int = 0
    on_step: Callable[[Pair], None] | None = None

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.ab = Link(self.link, rng)
        self.ba = Link(self.reverse_link or self.link, rng)
        self.a = TcpConnection(self.a_port, self.b_port, self.a_config, isn=self.a_isn,
                               now=self.now)
        self.b: TcpConnection | None = None
        self.steps = 0

    def connect(self) -> None:
        self.a.connect(self.now)

    def _deliver_to_b(self, seg: Segment) -> None:
        if self.b is None:
            if seg.flags & TcpFlags.SYN and not seg.flags & (TcpFlags.ACK | TcpFlags.RST):
                self.b = TcpConnection.accept_syn(seg, self.b_config, isn=self.b_isn,
                                                  now=self.now)
            return
        self.b.on_segment(seg, self.now)

    def flush(self) -> None:
        self.ab.send(self.a.poll(self.now), self.now)
        if self.b is not None:
            self.ba.send(self.b.poll(self.now), self.now)

    def next_time(self) -> int | None:
        times = [self.a.next_deadline(), self.ab.next_arrival(), self.ba.next_arrival()]
        if self.b is not None:
            times.append(self.b.next_deadline())
        present = [t for t in times if t is not None]
        return min(present) if present else None

    def run(self, until: Callable[[], bool], *, max_steps: int = 200_000,
            max_time: int | None = None) -> bool:
        """Advance until ``until()`` holds (True), nothing is left to happen or
        ``max_time`` passes (False); AssertionError beyond ``max_steps``."""
        for _ in range(max_steps):
            self.steps += 1
            if self.on_step is not None:
                self.on_step(self)
            self.flush()
            if until():
                return True
            t = self.next_time()
            if t is None or (max_time is not None and t > max_time):
                if max_time is not None:
                    self.now = max(self.now, max_time)
                return until()
            self.now = max(self.now, t)
            for seg in self.ba.pop_due(self.now):
                self.a.on_segment(seg, self.now)
            for seg in self.ab.pop_due(self.now):
                self._deliver_to_b(seg)
        raise AssertionError(f"no result after {max_steps} steps (t={self.now})")

    def established(self) -> bool:
        return (self.a.state is TcpState.ESTABLISHED and self.b is not None
                and self.b.state is TcpState.ESTABLISHED)

    @property
    def server(self) -> TcpConnection:
        assert self.b is not None
        return self.b


def transfer(pair: Pair, data: bytes, *, reverse: bytes = b"", chunk: int = 1 << 16,
             max_steps: int = 400_000, close: bool = True) -> tuple[bytes, bytes]:
    """Send ``data`` from a to b (and ``reverse`` from b to a), shut both send sides down
    and run until both ends saw EOF; returns what each side received (b's, a's)."""
    got_b = bytearray()
    got_a = bytearray()
    sent = {"a": 0, "b": 0}

    def pump(p: Pair) -> None:
        for name, conn, payload in (("a", p.a, data), ("b", p.b, reverse)):
            if conn is None or conn.is_closed:
                continue
            try:
                while sent[name] < len(payload) and conn.send_space > 0:
                    n = conn.send(payload[sent[name] : sent[name] + chunk])
                    if n == 0:
                        break
                    sent[name] += n
            except ValueError:
                pass
            if close and sent[name] >= len(payload) and conn.send_space > 0:
                conn.shutdown(p.now)
        got_b.extend(p.b.recv() if p.b is not None else b"")
        got_a.extend(p.a.recv())

    pair.on_step = pump
    pair.run(lambda: pair.b is not None and pair.b.eof and pair.a.eof
             and len(got_b) == len(data) and len(got_a) == len(reverse), max_steps=max_steps)
    pair.on_step = None
    return bytes(got_b), bytes(got_a)
