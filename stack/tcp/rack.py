"""RACK: time-based loss detection (RFC 8985 §6), for connections that negotiated SACK.

A segment is lost when a segment sent after it has been delivered (cumulatively ACKed or
SACKed) and more than RACK.rtt + RACK.reo_wnd has passed since it was sent (§6.2 step
5): a loss is declared after a reordering window of time, not after DupThresh segments,
so a lost retransmission or a short flight still gets detected, and reordering within
the window costs nothing.

What this implementation keeps and what it leaves out:

- **Transmission times** are kept for original transmissions only: a log of
  (end, time) pairs in sequence order, which is also time order, since new data goes out
  in sequence. So the segments "sent before" the most recently delivered one form a
  prefix of the log, and so do the expired ones: each detection is two binary searches.
  Lost marks are a boundary, like RFC 6675's IsLost (:mod:`stack.tcp.sack`): every
  un-SACKed octet below :attr:`Rack.lost_end` is lost.
- **Retransmissions** are not in the log: RACK.xmit_ts is only advanced by newly
  delivered octets never retransmitted (at or above HighRxt), which settles §6.2 step
  1's ambiguity by never taking a sample from a retransmission. Retransmissions have
  their own small record (:meth:`Rack.on_retransmit`), asked about the one that holds
  SND.UNA (:meth:`Rack.head_retransmitted_at`, :meth:`Rack.retransmission_lost_at`):
  once data sent after it is delivered and RACK.rtt + reo_wnd has passed, it was lost
  and goes again — the lost retransmission that blocks the cumulative ACK, which RFC
  6675 alone leaves to the retransmission timer. A lost retransmission above SND.UNA
  is found when SND.UNA reaches it.
- **Reordering window** (§6.2 step 4): min_RTT/4 times a multiplier, at most SRTT;
  zero when no reordering has been seen and the sender is in recovery or DupThresh
  segments are SACKed (so RACK then acts like DupThresh). A round that sees a D-SACK
  raises the multiplier (the round ends when SND.UNA passes SND.NXT of the D-SACK), and
  16 recoveries without one bring it back to 1. min_RTT is the least RACK.rtt seen on
  the connection (RFC 8985 suggests a windowed minimum; a connection here is short).
- **Reordering seen** (§6.2 step 3): a newly delivered original octet below the
  highest delivered one (RACK.fack).
- After a retransmission timeout, and after a path-MTU reduction, the sender goes back
  N and the log no longer says when the octets in flight were sent: detection rests
  (:attr:`Rack.hold`) until SND.UNA passes SND.MAX of that moment.

With RACK on (it needs SACK), RACK alone marks losses and starts recovery, as in Linux
(RFC 8985 §3.4 explains what counting duplicate ACKs misses): before any reordering is
seen its window is 0 once DupThresh segments are SACKed, so it acts as DupThresh would;
once reordering is seen, segments delivered out of order within the window cost nothing.
Against the Linux kernel over a link adding up to 200 µs of jitter this took our
retransmissions for 8 MB from 740 (all needless: DupThresh firing on reordering) to 0.
With RACK off, RFC 6675's DupThresh rule marks and starts recovery.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

REO_WND_PERSIST = 16
"""§6.2 step 4: recoveries after which a raised reordering window goes back to 1."""
_COMPACT = 4096
MAX_RETRANSMISSIONS = 4096
"""Bound on the retransmission record; the oldest go first."""


class Rack:
    """RACK state of one connection (RFC 8985 §5.2's variables)."""

    def __init__(self, snd_una: int) -> None:
        self._ends: list[int] = []
        self._times: list[int] = []
        self._head = 0
        self.xmit_ts: int | None = None
        """RACK.xmit_ts: send time of the most recently sent octet delivered."""
        self.end_seq = snd_una
        """RACK.end_seq: the end of that segment."""
        self.rtt = 0
        """RACK.rtt: the RTT measured from it."""
        self.min_rtt: int | None = None
        self.fack = snd_una
        """RACK.fack: the highest octet delivered, plus one."""
        self.reordering_seen = False
        self.reo_wnd_mult = 1
        self.reo_wnd_persist = REO_WND_PERSIST
        self.dsack_round: int | None = None
        self.lost_end = snd_una
        """Every un-SACKed octet below this is lost (monotone until :meth:`reset`)."""
        self.hold = snd_una
        """Detection rests while SND.UNA is below this (after going back N)."""
        self._rtx: list[tuple[int, int, int]] = []
        """(start, end, time) of retransmissions above SND.UNA, in the order sent."""

    # -- the log
    def on_send(self, end: int, now: int) -> None:
        """New data up to ``end`` left at ``now``."""
        if self._ends and end <= self._ends[-1]:
            return
        self._ends.append(end)
        self._times.append(now)

    def on_retransmit(self, start: int, end: int, now: int) -> None:
        """``[start, end)`` was sent again at ``now``."""
        if end > start:
            if len(self._rtx) >= MAX_RETRANSMISSIONS:
                del self._rtx[0]
            self._rtx.append((start, end, now))

    def head_retransmitted_at(self, snd_una: int) -> int | None:
        """When the octet at SND.UNA was last retransmitted (None: not recorded)."""
        times = [t for start, end, t in self._rtx if start <= snd_una < end]
        return max(times) if times else None

    def advance(self, snd_una: int) -> None:
        """Forget what the cumulative ACK covers."""
        if self._rtx:
            self._rtx = [r for r in self._rtx if r[1] > snd_una]
        head = bisect_right(self._ends, snd_una, self._head)
        self._head = head
        if head >= _COMPACT:
            del self._ends[:head]
            del self._times[:head]
            self._head = 0

    def reset(self, snd_una: int, snd_max: int) -> None:
        """A retransmission timeout or a path-MTU reduction: the sender goes back N;
        marks are dropped and detection rests until SND.UNA reaches ``snd_max``."""
        self.lost_end = snd_una
        self.hold = snd_max
        self._rtx.clear()

    def active(self, snd_una: int) -> bool:
        return snd_una >= self.hold

    # -- §6.2 steps 1-4 on an ACK
    def on_delivered(self, ranges: list[tuple[int, int]], high_rxt: int, now: int) -> None:
        """Octets newly delivered by an ACK (cumulatively or by SACK, each range not
        delivered before). Those at or above ``high_rxt`` were never retransmitted:
        they may show reordering and advance RACK.xmit_ts / end_seq / rtt."""
        top = None
        for start, hi in ranges:
            lo = max(start, high_rxt)
            if hi <= lo:
                continue
            if hi < self.fack:
                self.reordering_seen = True  # §6.2 step 3
            if top is None or hi > top:
                top = hi
        if top is None:
            return
        self.fack = max(self.fack, top)
        i = bisect_left(self._ends, top, self._head)
        if i >= len(self._ends):
            return
        t, end = self._times[i], self._ends[i]
        if self.xmit_ts is None or t > self.xmit_ts or (t == self.xmit_ts and end > self.end_seq):
            self.xmit_ts = t
            self.end_seq = end
            self.rtt = now - t
            if self.min_rtt is None or self.rtt < self.min_rtt:
                self.min_rtt = self.rtt

    def on_dsack(self, snd_una: int, snd_nxt: int) -> None:
        """§6.2 step 4: the first D-SACK of a round widens the reordering window."""
        if self.dsack_round is not None and snd_una >= self.dsack_round:
            self.dsack_round = None
        if self.dsack_round is None:
            self.dsack_round = snd_nxt
            self.reo_wnd_mult += 1
            self.reo_wnd_persist = REO_WND_PERSIST

    def on_recovery_exit(self) -> None:
        """§6.2 step 4: a recovery ended without widening the window."""
        self.reo_wnd_persist -= 1
        if self.reo_wnd_persist <= 0:
            self.reo_wnd_mult = 1

    def reo_wnd(self, *, in_recovery: bool, dupthresh_sacked: bool, srtt: int | None) -> int:
        """§6.2 step 4: RACK.reo_wnd."""
        if not self.reordering_seen and (in_recovery or dupthresh_sacked):
            return 0
        min_rtt = self.min_rtt or 0
        wnd = min_rtt * self.reo_wnd_mult // 4
        return min(wnd, srtt) if srtt is not None else wnd

    def segments_between(self, lo: int, hi: int, snd_una: int) -> list[tuple[int, int]]:
        """The logged segments ending in ``(lo, hi]``, as ranges (clipped to SND.UNA)."""
        ends = self._ends
        i = bisect_right(ends, lo, self._head)
        out: list[tuple[int, int]] = []
        while i < len(ends) and ends[i] <= hi:
            start = ends[i - 1] if i > self._head else snd_una
            out.append((max(start, snd_una), ends[i]))
            i += 1
        return out

    def retransmission_lost_at(self, sent_at: int, reo_wnd: int) -> int | None:
        """§6.2 step 5 for a retransmission sent at ``sent_at``: once an original sent
        at or after it has been delivered (RACK.xmit_ts >= sent_at: new data goes after
        a retransmission), it is lost at sent_at + RACK.rtt + reo_wnd. None: nothing sent
        after it has been delivered yet."""
        if self.xmit_ts is None or self.xmit_ts < sent_at:
            return None
        return sent_at + self.rtt + reo_wnd

    # -- §6.2 step 5
    def detect(self, now: int, reo_wnd: int) -> int | None:
        """Mark lost every original segment sent before RACK's delivered one and sent
        more than RACK.rtt + reo_wnd ago (raising :attr:`lost_end`). Returns when the
        next of those segments expires (the RACK reordering timer, §6.3), or None."""
        if self.xmit_ts is None:
            return None
        head = self._head
        before = bisect_left(self._ends, self.end_seq, head)  # sent before RACK's segment
        expired = bisect_right(self._times, now - self.rtt - reo_wnd, head, before)
        if expired > head:
            self.lost_end = max(self.lost_end, self._ends[expired - 1])
        if before > expired:
            # RFC 8985 takes the latest expiry of the segments still waiting.
            return self._times[before - 1] + self.rtt + reo_wnd
        return None
