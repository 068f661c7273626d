"""Retransmission timeout: RFC 6298.

SRTT and RTTVAR from RTT samples (§2), RTO = SRTT + max(G, K*RTTVAR) clamped to
[rto_min, rto_max] (§2.4, §2.5), exponential backoff on expiry (§5.5) until the next
valid sample (Karn's algorithm, §3: the caller never samples a retransmitted segment
unless timestamps make the sample unambiguous, RFC 7323 §4). All values are integer
nanoseconds; the EWMA uses exact integer arithmetic (floor), so tests can compute the
expected values by hand.
"""

from __future__ import annotations

CLOCK_GRANULARITY_NS = 1_000_000
"""G of RFC 6298 §2: the timestamps clock ticks in milliseconds (RFC 7323 §5.4)."""
K = 4
SYN_FALLBACK_RTO_NS = 3_000_000_000
"""RFC 6298 §5.7: after a SYN timeout without an RTT sample, RTO restarts at 3 s."""
_MAX_BACKOFF = 62


class RttEstimator:
    """SRTT, RTTVAR and the (backed-off) RTO of one connection."""

    def __init__(self, initial_ns: int, min_ns: int, max_ns: int) -> None:
        self.min_ns = min_ns
        self.max_ns = max_ns
        self.srtt: int | None = None
        self.rttvar: int | None = None
        self.base_rto = initial_ns
        """The RTO before backoff: the initial value (§2.1) until the first sample."""
        self.backoff = 0
        """How many times the timer expired since the last valid sample (§5.5)."""
        self.samples = 0

    @property
    def rto(self) -> int:
        """The current RTO, backoff included, never above rto_max (§5.5, §2.5)."""
        return min(self.base_rto << min(self.backoff, _MAX_BACKOFF), self.max_ns)

    def sample(self, rtt_ns: int) -> None:
        """Take one RTT measurement R (§2.2, §2.3) and clear the backoff."""
        r = max(0, rtt_ns)
        if self.srtt is None or self.rttvar is None:
            self.srtt = r
            self.rttvar = r // 2
        else:
            # RTTVAR <- (1 - beta) * RTTVAR + beta * |SRTT - R'|, beta = 1/4 (RTTVAR first)
            self.rttvar = (3 * self.rttvar + abs(self.srtt - r)) // 4
            # SRTT <- (1 - alpha) * SRTT + alpha * R', alpha = 1/8
            self.srtt = (7 * self.srtt + r) // 8
        rto = self.srtt + max(CLOCK_GRANULARITY_NS, K * self.rttvar)
        self.base_rto = min(max(rto, self.min_ns), self.max_ns)
        self.backoff = 0
        self.samples += 1

    def back_off(self) -> None:
        """The retransmission timer expired: RTO <- RTO * 2 (§5.5)."""
        if self.rto < self.max_ns:
            self.backoff += 1

    def syn_timed_out(self) -> None:
        """§5.7: a SYN timed out before any sample; data transfer starts with RTO = 3 s."""
        if self.srtt is None:
            self.base_rto = min(max(self.base_rto, SYN_FALLBACK_RTO_NS), self.max_ns)
        self.backoff = 0
