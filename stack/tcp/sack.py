"""Selective acknowledgments: the sender's scoreboard with the RFC 6675 loss-recovery
queries (IsLost, pipe, NextSeg), and the receiver's choice of blocks to report
(RFC 2018 §4).

Positions are unwrapped sequence numbers (see :mod:`stack.tcp.seq`); ranges are
half-open ``[start, end)``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

DUP_THRESH = 3
"""RFC 6675 §2 / RFC 5681 §3.2: DupThresh."""
MAX_BLOCKS = 4096
"""Bound on the scoreboard's ranges: a peer SACKing many tiny ranges cannot make it (and
the per-ACK work on it) grow without limit; SACK information beyond it is ignored."""


class Scoreboard:
    """The SACKed ranges above SND.UNA, merged and sorted (RFC 6675 §3)."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self.sacked_bytes = 0

    def __len__(self) -> int:
        return len(self._starts)

    @property
    def blocks(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))

    @property
    def highest(self) -> int | None:
        """The end of the highest SACKed range (RFC 6675's "highest octet SACKed" + 1)."""
        return self._ends[-1] if self._ends else None

    def clear(self) -> None:
        self._starts.clear()
        self._ends.clear()
        self.sacked_bytes = 0

    def add(self, start: int, end: int) -> int:
        """Mark ``[start, end)`` SACKed; returns how many bytes were newly SACKed."""
        if end <= start:
            return 0
        starts, ends = self._starts, self._ends
        lo = bisect_left(ends, start)  # first range ending at or after start
        hi = bisect_right(starts, end)  # ranges from lo to hi-1 touch [start, end]
        if lo < hi:
            covered = sum(min(ends[i], end) - max(starts[i], start)
                          for i in range(lo, hi) if ends[i] > start and starts[i] < end)
            new = (end - start) - covered
            start = min(start, starts[lo])
            end = max(end, ends[hi - 1])
            removed = sum(ends[i] - starts[i] for i in range(lo, hi))
            del starts[lo:hi]
            del ends[lo:hi]
            self.sacked_bytes -= removed
        else:
            if len(starts) >= MAX_BLOCKS:
                return 0
            new = end - start
        starts.insert(lo, start)
        ends.insert(lo, end)
        self.sacked_bytes += end - start
        return new

    def advance(self, snd_una: int) -> None:
        """Forget everything below the cumulative ACK."""
        starts, ends = self._starts, self._ends
        n = bisect_right(ends, snd_una)
        if n:
            self.sacked_bytes -= sum(ends[i] - starts[i] for i in range(n))
            del starts[:n]
            del ends[:n]
        if starts and starts[0] < snd_una:
            self.sacked_bytes -= snd_una - starts[0]
            starts[0] = snd_una

    def is_sacked(self, seq: int) -> bool:
        i = bisect_right(self._starts, seq) - 1
        return i >= 0 and seq < self._ends[i]

    def sacked_in(self, start: int, end: int) -> int:
        """SACKed bytes within ``[start, end)``."""
        if end <= start:
            return 0
        total = 0
        i = max(bisect_right(self._starts, start) - 1, 0)
        for j in range(i, len(self._starts)):
            s, e = self._starts[j], self._ends[j]
            if s >= end:
                break
            if e > start:
                total += min(e, end) - max(s, start)
        return total

    def skip_sacked(self, seq: int) -> int:
        """``seq``, or the end of the SACKed range that holds it."""
        i = bisect_right(self._starts, seq) - 1
        if i >= 0 and seq < self._ends[i]:
            return self._ends[i]
        return seq

    def next_sacked_start(self, seq: int) -> int | None:
        """The start of the first SACKed range above ``seq``."""
        i = bisect_right(self._starts, seq)
        return self._starts[i] if i < len(self._starts) else None

    def lost_below(self, smss: int, floor: int | None = None, *,
                   dupthresh: bool = True) -> int | None:
        """The boundary of RFC 6675's IsLost: an un-SACKed octet below the returned
        position is lost, one above is not. IsLost(S) holds when DupThresh discontiguous
        SACKed ranges, or more than (DupThresh - 1) * SMSS SACKed bytes, lie above S; both
        only grow as S falls, so one boundary answers for every octet. ``floor``: a
        boundary from another detector (RACK, :mod:`stack.tcp.rack`) — the higher of the
        two, or the only one without ``dupthresh``. None: nothing is lost."""
        if not dupthresh:
            return floor
        above = 0
        boundary = floor
        for count, j in enumerate(range(len(self._starts) - 1, -1, -1), start=1):
            above += self._ends[j] - self._starts[j]
            if count >= DUP_THRESH or above > (DUP_THRESH - 1) * smss:
                start = self._starts[j]
                return start if boundary is None or start > boundary else boundary
        return boundary

    def is_lost(self, seq: int, smss: int) -> bool:
        boundary = self.lost_below(smss)
        return boundary is not None and seq < boundary and not self.is_sacked(seq)

    def unsacked_ranges(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of ``[start, end)`` not SACKed, in order."""
        out: list[tuple[int, int]] = []
        seq = start
        while seq < end:
            hole = self.next_hole(seq, end)
            if hole is None:
                break
            out.append(hole)
            seq = hole[1]
        return out

    def pipe(self, snd_una: int, snd_max: int, high_rxt: int, smss: int,
             lost_floor: int | None = None, *, dupthresh: bool = True) -> int:
        """RFC 6675 §4 SetPipe(): over the octets in ``[snd_una, snd_max)`` not SACKed,
        count one for each not lost and one more for each retransmitted (below
        ``high_rxt``). ``lost_floor`` and ``dupthresh`` as in :meth:`lost_below`."""
        unsacked = (snd_max - snd_una) - self.sacked_in(snd_una, snd_max)
        boundary = self.lost_below(smss, lost_floor, dupthresh=dupthresh)
        if boundary is None or boundary <= snd_una:
            lost = 0
        else:
            lost = (boundary - snd_una) - self.sacked_in(snd_una, boundary)
        rxt_end = min(max(high_rxt, snd_una), snd_max)
        retransmitted = (rxt_end - snd_una) - self.sacked_in(snd_una, rxt_end)
        return unsacked - lost + retransmitted

    def last_hole(self, snd_una: int, snd_max: int) -> tuple[int, int] | None:
        """The highest un-SACKed range in ``[snd_una, snd_max)`` (it holds the highest
        outstanding un-SACKed octet of RFC 6675 NextSeg rule (4)); None when all of it
        is SACKed."""
        starts, ends = self._starts, self._ends
        end, below = snd_max, len(ends) - 1
        if below >= 0 and ends[below] >= snd_max:
            end = starts[below]
            below -= 1
        start = max(ends[below] if below >= 0 else snd_una, snd_una)
        return (start, end) if end > start else None

    def next_hole(self, seq: int, limit: int) -> tuple[int, int] | None:
        """The first un-SACKed range at or after ``seq`` and below ``limit``."""
        seq = self.skip_sacked(seq)
        if seq >= limit:
            return None
        nxt = self.next_sacked_start(seq)
        end = limit if nxt is None else min(nxt, limit)
        return (seq, end) if end > seq else None


def dsack_range(blocks: list[tuple[int, int]], ack: int) -> tuple[int, int] | None:
    """The sender's reading of RFC 2883 §4: the first SACK block of an ACK (``blocks``
    unwrapped, in the order received) reports a duplicate when it lies below the
    cumulative ACK, or within the second block. That range, else None."""
    if not blocks:
        return None
    lo, hi = blocks[0]
    if hi <= lo:
        return None
    if hi <= ack:
        return lo, hi
    if len(blocks) > 1 and blocks[1][0] <= lo and hi <= blocks[1][1]:
        return lo, hi
    return None


def report_blocks(ooo: list[tuple[int, int]], recent: list[tuple[int, int]],
                  max_blocks: int) -> list[tuple[int, int]]:
    """RFC 2018 §4: the SACK blocks a receiver reports, up to ``max_blocks``.

    ``ooo`` is the out-of-order data held (merged ranges above RCV.NXT), ``recent`` the
    ranges of the latest out-of-order arrivals, most recent first. The first block holds
    the most recently received segment; the following ones repeat the most recently
    reported; the rest of the queue fills any space left, lowest first.
    """
    out: list[tuple[int, int]] = []
    starts = [s for s, _ in ooo]
    for r_start, _ in recent:
        i = bisect_right(starts, r_start) - 1
        if i >= 0 and r_start < ooo[i][1] and ooo[i] not in out:
            out.append(ooo[i])
            if len(out) >= max_blocks:
                return out
    for block in ooo:
        if len(out) >= max_blocks:
            break
        if block not in out:
            out.append(block)
    return out
