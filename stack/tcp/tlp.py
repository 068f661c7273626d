"""Tail Loss Probe (RFC 8985 §7), for connections that negotiated SACK.

When the last segments of a flight are lost no ACK comes back to trigger fast recovery,
and without a probe the sender waits for the retransmission timer (at least 200 ms here,
and a window collapsed to one segment after it). TLP sends a probe after a probe timeout
(PTO) of about two RTTs without ACKs: one segment of new data when there is some and the
peer's window takes it, else the last segment sent again. Its ACK, with SACK, lets
fast recovery (RACK, :mod:`stack.tcp.rack`, or DupThresh) repair the rest.

Choices, with the sections they follow:

- §7.2 PTO = 2*SRTT, plus WCDelAckT (``TcpConfig.tlp_delayed_ack_ns``) when the flight
  is below two full-sized segments: a receiver may hold its ACK for less than two
  (RFC 5681 §4.2 / RFC 9293 §3.8.6.3), which is how "one segment in flight" reads with
  segments of any size; otherwise plus 2 ms of timer slack, as Linux. 1 s before an RTT
  is measured. Never later than the retransmission timer would fire.
- §7.2 arming: after new data is sent and on ACKs that advance SND.UNA, while data is in
  flight, not in loss recovery, nothing is SACKed and no duplicate ACK is pending (Linux
  arms it in the Open state only), no probe is outstanding and no timeout recovery is
  going on.
- §7.3 one probe per episode: another waits until the first's episode ends.
- §7.4 detection: when an ACK covers the probe, the episode ends. A probe of new data
  proves nothing. A retransmitted probe that a D-SACK reports was a duplicate: there was
  no loss. Otherwise the probe repaired a loss, and the window is reduced as for a
  fast recovery (§7.4.2), counted in ``tlp_recoveries``; if a D-SACK for the probe comes
  later, the undo machinery (:mod:`stack.tcp.undo`) takes the reduction back.
"""

from __future__ import annotations

from enum import Enum

NO_RTT_PTO_NS = 1_000_000_000
"""§7.2: the PTO before an RTT sample."""
TIMER_SLACK_NS = 2_000_000
"""Added to 2*SRTT when no delayed-ACK allowance is (Linux ``TCP_TIMEOUT_MIN``, 2 ms):
a PTO never equals the RTT twice over exactly, nor zero on a path without delay."""


def pto(srtt: int | None, flight: int, smss: int, delayed_ack_ns: int) -> int:
    """§7.2's PTO in nanoseconds (before the cap at the retransmission timer)."""
    if srtt is None:
        return NO_RTT_PTO_NS
    return 2 * srtt + (delayed_ack_ns if flight < 2 * smss else TIMER_SLACK_NS)


class TlpOutcome(Enum):
    NO_LOSS = "no-loss"
    """The episode ended and shows no loss (new data probed, or both copies arrived)."""
    REPAIRED = "repaired"
    """The probe filled a hole: a loss the sender must answer (§7.4.2)."""


class TlpEpisode:
    """An outstanding probe (RFC 8985 §5.3's TLP.end_seq and TLP.is_retrans)."""

    def __init__(self, start: int, end: int, *, is_retrans: bool, flight: int) -> None:
        self.start = start
        """Where the probe's data began."""
        self.end_seq = end
        """TLP.end_seq: SND.NXT after the probe."""
        self.is_retrans = is_retrans
        self.flight = flight
        """FlightSize when the probe went (for the congestion response)."""

    def dsacked_by(self, lo: int, hi: int) -> bool:
        """A D-SACK ``[lo, hi)`` covers the retransmitted probe."""
        return self.is_retrans and lo < self.end_seq and hi > self.start

    def on_ack(self, ack: int, *, advanced: bool, dsack: tuple[int, int] | None,
               sack_info: bool) -> TlpOutcome | None:
        """§7.4, as Linux ``tcp_process_tlp_ack`` reads it, for an ACK at or beyond
        TLP.end_seq: a probe of new data proves nothing; a D-SACK for the probe, or a
        pure duplicate ACK of its end (SND.UNA not moved, no SACK), means the original
        arrived too; an ACK beyond the probe without either means the probe repaired a
        loss. Otherwise (the ACK of the probe itself, which also covers an original that
        may have arrived), wait for the next ACK. None: the episode goes on."""
        if ack < self.end_seq:
            return None
        if not self.is_retrans or (dsack is not None and self.dsacked_by(*dsack)):
            return TlpOutcome.NO_LOSS
        if ack > self.end_seq:
            return TlpOutcome.REPAIRED
        if not advanced and not sack_info:
            return TlpOutcome.NO_LOSS
        return None
