"""The receive buffer: in-order bytes waiting for the application, and out-of-order
ranges waiting for the holes below them to fill (RFC 9293 §3.10.7.4, seventh step).

Positions are unwrapped sequence numbers (:mod:`stack.tcp.seq`). The connection trims
every segment to the window it advertised before inserting it, which bounds both parts
by the receive buffer size (plus less than one window-scale unit; see
:meth:`~stack.tcp.connection.TcpConnection`).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass

MAX_OOO_RANGES = 4096
"""Bound on the out-of-order ranges held: a segment that would open another range beyond
it is dropped (the sender retransmits it), so a peer cannot make reassembly quadratic."""


@dataclass(slots=True)
class Inserted:
    """What one insertion did."""

    advanced: int = 0
    """How far RCV.NXT moved."""
    out_of_order: bool = False
    """The data starts above RCV.NXT (queued, not yet deliverable)."""
    filled_hole: bool = False
    """Out-of-order data was queued before and some of it is now in order."""


class ReceiveBuffer:
    def __init__(self, capacity: int, rcv_nxt: int = 0) -> None:
        self.capacity = capacity
        self.rcv_nxt = rcv_nxt
        self._ready = bytearray()
        self._head = 0
        self._ooo_starts: list[int] = []
        self._ooo_ends: list[int] = []
        self._ooo_data: list[bytearray] = []
        self.ooo_bytes = 0

    @property
    def readable(self) -> int:
        return len(self._ready) - self._head

    @property
    def ooo_ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._ooo_starts, self._ooo_ends, strict=True))

    def holds_out_of_order(self, seq: int, end: int) -> bool:
        """Whether ``[seq, end)`` (above RCV.NXT) is already held in one out-of-order
        range."""
        i = bisect_right(self._ooo_starts, seq) - 1
        return i >= 0 and self._ooo_ends[i] >= end > seq

    def read(self, max_bytes: int = -1) -> bytes:
        n = self.readable if max_bytes < 0 else min(max_bytes, self.readable)
        if n <= 0:
            return b""
        out = bytes(self._ready[self._head : self._head + n])
        self._head += n
        if self._head == len(self._ready):
            self._ready.clear()
            self._head = 0
        elif self._head >= 1 << 16 and self._head * 2 >= len(self._ready):
            del self._ready[: self._head]
            self._head = 0
        return out

    def insert(self, seq: int, data: bytes) -> Inserted:
        """Store ``data`` starting at position ``seq`` (already trimmed to the window:
        ``seq >= rcv_nxt`` is not required, older bytes are skipped)."""
        result = Inserted()
        if seq < self.rcv_nxt:
            data = data[self.rcv_nxt - seq :]
            seq = self.rcv_nxt
        if not data:
            return result
        if seq > self.rcv_nxt:
            result.out_of_order = True
            self._queue(seq, data)
            return result
        had_ooo = bool(self._ooo_starts)
        self._ready += data
        self.rcv_nxt += len(data)
        result.advanced = len(data)
        # Pull queued ranges that are now in order (bounded by the number of ranges).
        while self._ooo_starts and self._ooo_starts[0] <= self.rcv_nxt:
            start = self._ooo_starts.pop(0)
            self._ooo_ends.pop(0)
            chunk = self._ooo_data.pop(0)
            self.ooo_bytes -= len(chunk)
            skip = self.rcv_nxt - start
            if skip < len(chunk):
                self._ready += memoryview(chunk)[skip:]
                self.rcv_nxt += len(chunk) - skip
                result.advanced += len(chunk) - skip
        result.filled_hole = had_ooo
        return result

    def _queue(self, seq: int, data: bytes) -> None:
        starts, ends, chunks = self._ooo_starts, self._ooo_ends, self._ooo_data
        end = seq + len(data)
        # Ranges touching [seq, end]: those ending at or after seq and starting at or
        # before end.
        lo = bisect_left(ends, seq)
        hi = bisect_right(starts, end)
        if lo >= hi:
            if len(starts) >= MAX_OOO_RANGES:
                return
            starts.insert(lo, seq)
            ends.insert(lo, end)
            chunks.insert(lo, bytearray(data))
            self.ooo_bytes += len(data)
            return
        if hi - lo == 1 and starts[lo] <= seq and ends[lo] >= end:
            return  # already held
        if hi - lo == 1 and ends[lo] == seq:
            chunks[lo] += data  # the common case: extends the range at its end
            ends[lo] = end
            self.ooo_bytes += len(data)
            return
        new_start = min(seq, starts[lo])
        new_end = max(end, ends[hi - 1])
        merged = bytearray(new_end - new_start)
        merged[seq - new_start : end - new_start] = data
        for i in range(lo, hi):
            s = starts[i] - new_start
            merged[s : s + len(chunks[i])] = chunks[i]
            self.ooo_bytes -= len(chunks[i])
        del starts[lo:hi]
        del ends[lo:hi]
        del chunks[lo:hi]
        starts.insert(lo, new_start)
        ends.insert(lo, new_end)
        chunks.insert(lo, merged)
        self.ooo_bytes += len(merged)
