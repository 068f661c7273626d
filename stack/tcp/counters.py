"""Per-connection counters."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TcpCounters:
    segments_in: int = 0
    segments_out: int = 0
    """Outgoing values returned by poll (a TSO segment counts once)."""
    bytes_in: int = 0
    """Payload bytes of the segments handed to on_segment."""
    bytes_out: int = 0
    """Payload bytes sent, retransmissions included."""
    retransmitted_segments: int = 0
    retransmitted_bytes: int = 0
    fast_retransmits: int = 0
    """Loss-recovery episodes entered on duplicate ACKs / SACK (RFC 5681 §3.2, RFC 6675)."""
    timeouts: int = 0
    """Retransmission-timer expiries (RFC 6298 §5.4), the handshake's included."""
    dup_acks_in: int = 0
    sack_blocks_in: int = 0
    sack_recovered_bytes: int = 0
    """Bytes retransmitted during SACK loss recovery (RFC 6675 NextSeg)."""
    tso_segments_out: int = 0
    """Outgoing values with a segment size (the device segments them)."""
    tso_deferrals: int = 0
    """Times new data waited for a larger TSO packet (Linux tcp_tso_should_defer)."""
    zero_window_probes: int = 0
    keepalives: int = 0
    fin_wait2_timeouts: int = 0
    """Closed connections reset after waiting ``fin_wait2_timeout_ns`` for the peer's FIN."""
    resets_in: int = 0
    resets_out: int = 0
    out_of_order_segments: int = 0
    delayed_acks: int = 0
    """Pure ACKs sent because the delayed-ACK timer expired."""
    challenge_acks: int = 0
    """RFC 5961 challenge ACKs (in-window RST not at RCV.NXT, SYN in a synchronized
    state)."""
    dsacks_out: int = 0
    """Duplicate segments reported in a D-SACK block (RFC 2883)."""
    limited_transmits: int = 0
    """New segments sent beyond cwnd on the first two duplicate ACKs (RFC 3042)."""
    urgent_in: int = 0
    """Segments that arrived with URG (RFC 9293 §3.8.5)."""
    urgent_out: int = 0
    """Segments sent with URG."""
    ecn_ce_in: int = 0
    """Segments that arrived marked CE (RFC 3168 §5) on an ECN connection."""
    ecn_ece_in: int = 0
    """ACKs that arrived with ECE (the peer saw CE)."""
    ecn_reductions: int = 0
    """Congestion-window reductions in response to ECE, at most one per window of data
    (RFC 3168 §6.1.2)."""
    ecn_cwr_out: int = 0
    """Segments sent with CWR (RFC 3168 §6.1.2)."""
    pmtu_reductions: int = 0
    """Times an ICMP "fragmentation needed" / "packet too big" lowered the segment size
    (RFC 1191 §6.5, RFC 8201 §5.4)."""
    icmp_soft_errors: int = 0
    """ICMP errors about this connection that did not end it (RFC 5461)."""
    invalid_acks_suppressed: int = 0
    """ACKs not sent in answer to invalid segments within ``invalid_ack_interval_ns`` of
    the previous one (RFC 5961 §7)."""
    paws_drops: int = 0
    """Segments dropped by PAWS (RFC 7323 §5) or for lacking timestamps (§3.2)."""
    prr_recoveries: int = 0
    """Fast-recovery episodes whose window Proportional Rate Reduction set (RFC 6937)."""
    prr_ssrb_acks: int = 0
    """ACKs in recovery on which pipe was at or below ssthresh, so the slow-start
    reduction bound (PRR-SSRB, RFC 6937 §3) limited the sending."""
    rescue_retransmits: int = 0
    """RFC 6675 §4 NextSeg() rule (4) rescue retransmissions (at most one an episode)."""
    dsacks_in: int = 0
    """D-SACK blocks received (RFC 2883 §4: below the cumulative ACK or inside the
    second block)."""
    spurious_retransmits_detected: int = 0
    """Retransmission episodes found unnecessary: every retransmission D-SACKed (RFC
    3708) or an acceptable ACK echoing a timestamp older than the first retransmission
    (Eifel, RFC 3522)."""
    undos: int = 0
    """Window reductions undone after a spurious retransmission was detected."""
    rack_losses_detected: int = 0
    """Segments (as sent: a TSO segment counts once) that RACK marked lost with
    un-SACKed data in them (RFC 8985 §6.2 step 5), on an ACK or at its reordering
    timer."""
    tlp_probes: int = 0
    """Tail loss probes sent at the probe timeout (RFC 8985 §7.3)."""
    tlp_recoveries: int = 0
    """Probes that repaired a loss: an ACK beyond the probe with no D-SACK for it
    (RFC 8985 §7.4), answered with a window reduction."""
