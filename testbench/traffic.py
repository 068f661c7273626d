"""Deterministic test traffic: numbered Ethernet frames of mixed sizes, a sender that
pumps them into a driver as ring space allows, and a checker that compares what arrives
byte for byte."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

from stack.device import NetworkDevice, RxFrame
from stack.wire.ethernet import HEADER_LEN, MIN_FRAME, EtherType, build_frame

_SEQ = struct.Struct("!IH")  # sequence number, stream id
_MAX_FRAME = 1514


def frame_sizes(count: int, seed: int, max_frame: int = _MAX_FRAME) -> list[int]:
    """Mixed sizes: a third minimum-size, a third full-size, a third anywhere between
    (the shape of real traffic: ACKs, full segments, the rest)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        kind = rng.randrange(3)
        if kind == 0:
            out.append(MIN_FRAME)
        elif kind == 1:
            out.append(max_frame)
        else:
            out.append(rng.randint(MIN_FRAME, max_frame))
    return out


@dataclass
class Stream:
    """One direction of numbered frames from ``src`` to ``dst``."""

    stream_id: int
    src: bytes
    dst: bytes
    sizes: list[int]
    seed: int

    def frame(self, seq: int) -> bytes:
        size = self.sizes[seq]
        head = _SEQ.pack(seq, self.stream_id)
        rng = random.Random(self.seed * 1_000_003 + self.stream_id * 65_537 + seq)
        body = rng.randbytes(size - HEADER_LEN - len(head))
        return build_frame(self.dst, self.src, EtherType.LOCAL_EXPERIMENTAL_1, head + body)

    def __len__(self) -> int:
        return len(self.sizes)


@dataclass
class Sender:
    """Feeds a stream into a device as fast as its ring accepts (an idle hook of the
    event loop), one notification per batch."""

    stream: Stream
    device: NetworkDevice
    next_seq: int = 0
    batches: int = 0

    @property
    def done(self) -> bool:
        return self.next_seq >= len(self.stream)

    def pump(self) -> bool:
        sent = 0
        while not self.done and self.device.transmit(self.stream.frame(self.next_seq)):
            self.next_seq += 1
            sent += 1
        if sent:
            self.device.flush()
            self.batches += 1
        return sent > 0


@dataclass
class Checker:
    """Compares received frames with the stream they belong to."""

    stream: Stream
    received: int = 0
    exact: int = 0
    corrupt: int = 0
    duplicates: int = 0
    foreign: int = 0
    seen: set[int] = field(default_factory=set)

    def check(self, frames: list[RxFrame]) -> None:
        for rx in frames:
            self.received += 1
            data = rx.data
            if len(data) < HEADER_LEN + _SEQ.size:
                self.foreign += 1
                continue
            seq, stream_id = _SEQ.unpack_from(data, HEADER_LEN)
            if stream_id != self.stream.stream_id or seq >= len(self.stream):
                self.foreign += 1
                continue
            if seq in self.seen:
                self.duplicates += 1
                continue
            if data == self.stream.frame(seq):
                self.seen.add(seq)
                self.exact += 1
            else:
                self.corrupt += 1

    @property
    def missing(self) -> int:
        return len(self.stream) - len(self.seen)

    @property
    def mismatches(self) -> int:
        """Frames that did not arrive exactly once and byte-exact."""
        return self.missing + self.corrupt + self.duplicates + self.foreign

    def as_dict(self) -> dict[str, int]:
        return {
            "expected": len(self.stream),
            "received": self.received,
            "exact": self.exact,
            "missing": self.missing,
            "corrupt": self.corrupt,
            "duplicates": self.duplicates,
            "foreign": self.foreign,
            "mismatches": self.mismatches,
        }
