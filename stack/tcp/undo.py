"""Detecting spurious retransmissions and undoing the window reduction they caused.

A fast retransmit or a retransmission timeout reduces cwnd and ssthresh on the belief that
data was lost. When the data was only reordered or delayed, the reduction was for nothing
and the sender can return to where it was (Linux ``tcp_try_undo_*``; RFC 3708 detects,
RFC 4015 responds, in spirit). Two kinds of evidence are used:

- **D-SACK** (RFC 2883, RFC 3708): the receiver reports every duplicate it got in a
  D-SACK block. When D-SACKs have covered every byte retransmitted in the episode, each
  retransmission arrived as a second copy: none was needed.
- **Eifel detection** (RFC 3522 §3), with timestamps: an acceptable ACK whose TSecr is
  older than the TSval of the episode's first retransmission was sent for an original
  transmission, so the retransmission was not needed to get it. As in Linux, it is asked
  on the first acceptable ACK after a timeout (RFC 3522's rule) and on the ACK that ends
  fast recovery (the receiver's TS.Recent only moves forward, so an echo that old means
  no retransmission ever advanced its left edge).

:class:`UndoEpisode` holds one episode: the controller as it was before the reduction
(a copy, restored by :meth:`~stack.tcp.congestion.CongestionControl.undo`), the ranges
retransmitted since, and the first retransmission's timestamp. The connection starts an
episode on each reduction, reports retransmissions and D-SACK blocks, and asks
:meth:`UndoEpisode.eifel` at the two points above. An episode stays open after recovery
ends (D-SACKs for the last retransmissions come after it) until the next one starts.
"""

from __future__ import annotations

import copy

from stack.tcp import seq as sq
from stack.tcp.congestion import CongestionControl

MAX_RETRANSMISSIONS = 1024
"""Bound on the ranges remembered for one episode; past it the episode cannot be undone
by D-SACKs (the record would be incomplete)."""


class UndoEpisode:
    """One window reduction that may still turn out spurious."""

    def __init__(self, cc: CongestionControl, marker: int, end: int) -> None:
        self.prior = copy.copy(cc)
        """The controller (cwnd, ssthresh, its own state) before the reduction."""
        self.marker = marker
        """SND.UNA when the episode started (Linux ``undo_marker``)."""
        self.end = end
        """SND.MAX when it started (raised by a timeout within it): only retransmissions
        of data below it belong to the episode (not, say, a later tail loss probe)."""
        self._ranges: list[list[int]] = []
        """[start, end, bytes not yet D-SACKed] of each retransmission."""
        self._pending = 0
        """Retransmitted bytes no D-SACK has covered yet."""
        self._overflow = False
        self.first_tsval: int | None = None
        """TSval of the episode's first retransmission (RFC 3522's RetransmitTS)."""

    @property
    def retransmitted(self) -> bool:
        return bool(self._ranges) or self._overflow

    def on_retransmit(self, start: int, end: int, tsval: int | None) -> None:
        """Bytes ``[start, end)`` were sent again."""
        end = min(end, self.end)
        if end <= start or start < self.marker:
            return
        if self.first_tsval is None and tsval is not None:
            self.first_tsval = tsval
        if len(self._ranges) >= MAX_RETRANSMISSIONS:
            self._overflow = True
            return
        self._ranges.append([start, end, end - start])
        self._pending += end - start

    def on_dsack(self, start: int, end: int) -> bool:
        """A D-SACK reported ``[start, end)`` received twice: each retransmission it
        overlaps is that much less in doubt (once per retransmission, so a range sent
        three times needs two D-SACKs). True when every retransmitted byte is now
        D-SACKed: the whole episode was spurious."""
        if self._overflow or not self._ranges:
            return False
        for rng in self._ranges:
            lo, hi, left = rng
            overlap = min(hi, end) - max(lo, start)
            if overlap > 0 and left > 0:
                taken = min(overlap, left)
                rng[2] = left - taken
                self._pending -= taken
        return self._pending == 0

    def eifel(self, tsecr: int | None) -> bool:
        """RFC 3522 §3 step (4): the acceptable ACK echoes a timestamp older than the
        first retransmission's, so it was sent for an original transmission."""
        return (self.first_tsval is not None and tsecr is not None and tsecr != 0
                and sq.lt(tsecr, self.first_tsval))
