"""Proportional Rate Reduction (RFC 6937): the congestion window during fast recovery.

Without PRR the window drops to ssthresh at once when recovery starts (RFC 6675 §5
step 4.2), so the sender falls silent for half an RTT and then sends in a burst, or
NewReno inflates it by one SMSS a duplicate ACK (RFC 6582 §3.2). PRR instead lets the
data go out in proportion to what the receiver reports delivered: over the recovery
round the sender sends ssthresh/RecoverFS of what was delivered, so it arrives at
ssthresh at the end of recovery with an ACK clock intact. When losses have brought pipe
below ssthresh, the slow-start reduction bound (PRR-SSRB, §3, what Linux runs) lets the
window grow back toward ssthresh at most one SMSS faster than delivery, as slow start
would.

The connection tells :class:`Prr` the flight size when recovery starts
(:meth:`Prr.start`), every byte it sends during recovery (:meth:`Prr.on_sent`) and, on
every ACK during recovery, the data newly delivered (the change in SND.UNA plus the
change in SACKed bytes, §3; without SACK each duplicate ACK counts as one SMSS delivered,
as the RFC allows); :meth:`Prr.on_ack` returns the window, pipe + sndcnt. All sizes are
bytes.

When recovery ends the window is ssthresh (§3) with SACK. Without SACK the connection
keeps RFC 6582 §3.2 step 6's min(ssthresh, FlightSize + SMSS): the flight at the full ACK
can be far below ssthresh there, and on the seeded lossy, reordering links of the tests
cwnd = ssthresh made bursts that cost NewReno many needless partial-ACK retransmissions.
"""

from __future__ import annotations


class Prr:
    """The state of RFC 6937 §3 for one recovery episode."""

    def __init__(self) -> None:
        self.recover_fs = 0
        """RecoverFS: FlightSize (SND.NXT - SND.UNA) when recovery started."""
        self.delivered = 0
        """prr_delivered: data the receiver reported delivered since recovery started."""
        self.out = 0
        """prr_out: data sent since recovery started, retransmissions included."""
        self.ssrb = False
        """Whether the last :meth:`on_ack` used the slow-start reduction bound."""

    def start(self, recover_fs: int) -> None:
        """Recovery begins (RFC 6937 §3 "at the beginning of recovery")."""
        self.recover_fs = recover_fs
        self.delivered = 0
        self.out = 0
        self.ssrb = False

    def on_sent(self, nbytes: int) -> None:
        """§3 "on any data transmission or retransmission": prr_out += data sent."""
        self.out += nbytes

    def on_ack(self, delivered: int, *, pipe: int, ssthresh: int, smss: int) -> int:
        """§3 "on every ACK during recovery": the new cwnd = pipe + sndcnt.

        - pipe > ssthresh (proportional part): sndcnt = CEIL(prr_delivered * ssthresh /
          RecoverFS) - prr_out;
        - otherwise PRR-SSRB (§3): sndcnt = MIN(ssthresh - pipe,
          MAX(prr_delivered - prr_out, DeliveredData) + SMSS);

        never below zero."""
        self.delivered += delivered
        if pipe > ssthresh:
            self.ssrb = False
            fs = max(self.recover_fs, 1)
            sndcnt = -(-(self.delivered * ssthresh) // fs) - self.out
        else:
            self.ssrb = True
            limit = max(self.delivered - self.out, delivered) + smss
            sndcnt = min(ssthresh - pipe, limit)
        return pipe + max(sndcnt, 0)
