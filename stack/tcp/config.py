"""Per-connection TCP settings. Defaults follow Linux where the RFCs leave a choice."""

from __future__ import annotations

from dataclasses import dataclass

CONGESTION_CONTROLS = ("cubic", "reno")
ECN_MODES = ("off", "passive", "on")


@dataclass(frozen=True)
class TcpConfig:
    mss: int = 1460
    """The MSS we advertise and our receive limit (RFC 9293 §3.7.1); the interface sets it
    from the MTU (MTU - 40 for IPv4, - 60 for IPv6)."""
    send_buffer: int = 4 << 20
    receive_buffer: int = 4 << 20
    window_scaling: bool = True
    """RFC 7323 §2."""
    sack: bool = True
    """RFC 2018 (and RFC 6675 loss recovery)."""
    timestamps: bool = True
    """RFC 7323 §3-§5 (RTTM and PAWS)."""
    nagle: bool = True
    """RFC 9293 §3.7.4."""
    delayed_ack: bool = True
    delayed_ack_ns: int = 40_000_000
    """Linux's minimum delayed-ACK time; RFC 9293 §3.8.6.3 allows up to 500 ms."""
    congestion: str = "cubic"
    """"cubic" (RFC 9438) or "reno" (RFC 5681 with NewReno, RFC 6582)."""
    initial_window_segments: int = 10
    """RFC 6928."""
    rto_initial_ns: int = 1_000_000_000
    rto_min_ns: int = 200_000_000
    """Linux's 200 ms; RFC 6298 §2.4 says 1 s."""
    rto_max_ns: int = 120_000_000_000
    syn_retries: int = 6
    """SYN (and SYN-ACK) retransmissions before the connection times out."""
    data_retries: int = 15
    """Consecutive retransmission timeouts (or unanswered persist probes) before the
    connection times out (Linux tcp_retries2)."""
    time_wait_ns: int = 60_000_000_000
    """2*MSL (Linux TCP_TIMEWAIT_LEN)."""
    fin_wait2_timeout_ns: int | None = 60_000_000_000
    """How long a connection the application closed waits in FIN-WAIT-2 for the peer's
    FIN before it is reset (Linux ``tcp_fin_timeout``; RFC 9293 sets no limit, and a
    peer that never closes would hold the state forever). None: wait for ever. A
    connection only shut down for sending (half-close) waits regardless."""
    keepalive_idle_ns: int | None = None
    """RFC 9293 §3.8.4; None: no keep-alives."""
    keepalive_interval_ns: int = 75_000_000_000
    keepalive_probes: int = 9
    zero_window_probe: bool = True
    """RFC 9293 §3.8.6.1 persist timer."""
    max_segment_payload: int = 0
    """TSO: the largest payload of one emitted segment (0: no TSO). The caller derives it
    from the device's segmentation capability (e.g. 65535 - IP - TCP headers)."""
    tso_win_divisor: int = 3
    """TSO deferral (Linux ``tcp_tso_win_divisor``): with TSO, new data waits for a full
    packet's room or 1/divisor of the window while ACKs are due; 0 turns deferral off."""
    invalid_ack_interval_ns: int = 500_000_000
    """At most one ACK per this interval in answer to invalid segments without data
    (out of window, failing PAWS, acknowledging unsent data) and for challenge ACKs
    (RFC 5961 §7's throttle, per connection as Linux ``tcp_invalid_ratelimit``): two
    ends that each find the other's ACKs invalid must not ACK each other for ever.
    0: no limit."""
    paws_window: int = 1
    """How many ticks of the peer's timestamps clock an arriving TSval may lag TS.Recent
    and still pass PAWS (Linux TCP_PAWS_WINDOW is 1): segments reordered within one tick
    of a coarse (millisecond) clock are not thrown away. 0: RFC 7323 §5.3 R1 as written
    (any older TSval fails)."""
    dsack: bool = True
    """RFC 2883: report a duplicate segment in the first SACK block of the next ACK (when
    SACK was negotiated), so the sender can tell a spurious retransmission."""
    limited_transmit: bool = True
    """RFC 3042: on the first and second duplicate ACK, send one new segment each beyond
    cwnd (the receiver's window permitting), so a small window still gets the third
    duplicate ACK that starts fast retransmit."""
    prr: bool = True
    """Proportional Rate Reduction (RFC 6937, Linux's default): during fast recovery the
    window follows the data the receiver reports delivered, spreading the reduction to
    ssthresh over the recovery round, with the slow-start reduction bound (PRR-SSRB,
    §3) when pipe falls below ssthresh; without it, cwnd = ssthresh at once (RFC 6675
    §5) or NewReno's inflation (RFC 6582 §3.2)."""
    rescue_retransmit: bool = True
    """RFC 6675 §4 NextSeg() rule (4): once per SACK recovery episode, when nothing else
    may go, retransmit the highest un-SACKed segment (a lost tail gets repaired without
    waiting for the retransmission timer). On as the RFC's SHOULD; Linux has no rescue
    retransmission (the tail loss probe, which does not run during recovery, and the
    timer cover it there)."""
    undo: bool = True
    """Undo a spurious window reduction (Linux ``tcp_try_undo_*``): when D-SACKs (RFC
    2883, RFC 3708) show every retransmission of an episode was unnecessary, or the
    timestamps of an acceptable ACK show it was sent for an original transmission
    (Eifel detection, RFC 3522), cwnd and ssthresh go back to their values before the
    episode (RFC 9438 §4.9 for CUBIC's own state)."""
    rack: bool = True
    """RACK (RFC 8985 §6): time-based loss detection with a reordering window of
    min_rtt/4 adapted by D-SACKs, alongside RFC 6675's DupThresh rule; only with SACK."""
    tlp: bool = True
    """Tail Loss Probe (RFC 8985 §7): a probe segment after PTO = 2*SRTT without ACKs, so
    a lost tail is repaired by fast recovery instead of a retransmission timeout; only
    with SACK."""
    tlp_delayed_ack_ns: int = 200_000_000
    """WCDelAckT of RFC 8985 §7.2: the worst-case delayed-ACK time added to the PTO when
    the receiver may legitimately hold its ACK."""
    ecn: str = "passive"
    """Explicit Congestion Notification (RFC 3168 §6.1), as Linux's ``tcp_ecn``: "on"
    asks for it on active opens and accepts it (1), "passive" accepts it when the peer
    asks (2, Linux's default), "off" never uses it (0)."""
    tso_ecn: bool = False
    """The device segments a TSO packet carrying CWR correctly, CWR on its first
    segment only (virtio HOST_ECN, §5.1.6.2; Linux NETIF_F_TSO_ECN). Without it a
    segment with CWR goes out alone, one MSS long. The stack sets it from the device."""
    default_mss: int = 536
    """The send MSS assumed when the peer's SYN has no MSS option (RFC 9293 §3.7.1: 536
    for IPv4; an IPv6 interface sets 1220)."""

    def __post_init__(self) -> None:
        if not 32 <= self.mss <= 65495:
            raise ValueError(f"mss {self.mss} out of range")
        if not 64 <= self.default_mss <= 65495:
            raise ValueError(f"default_mss {self.default_mss} out of range")
        if self.send_buffer < 1 or self.receive_buffer < 1:
            raise ValueError("buffers must hold at least one byte")
        if self.receive_buffer > 1 << 30:
            raise ValueError("receive_buffer beyond 2**30 cannot be advertised (RFC 7323 §2.3)")
        if self.congestion not in CONGESTION_CONTROLS:
            raise ValueError(f"congestion {self.congestion!r} not one of {CONGESTION_CONTROLS}")
        if self.initial_window_segments < 1:
            raise ValueError("initial_window_segments must be positive")
        if not 0 < self.rto_min_ns <= self.rto_initial_ns <= self.rto_max_ns:
            raise ValueError("need 0 < rto_min_ns <= rto_initial_ns <= rto_max_ns")
        if self.delayed_ack_ns <= 0 or self.time_wait_ns < 0 or self.keepalive_interval_ns <= 0:
            raise ValueError("timer values must be positive")
        if self.fin_wait2_timeout_ns is not None and self.fin_wait2_timeout_ns <= 0:
            raise ValueError("fin_wait2_timeout_ns must be positive")
        if self.keepalive_idle_ns is not None and self.keepalive_idle_ns <= 0:
            raise ValueError("keepalive_idle_ns must be positive")
        if self.syn_retries < 0 or self.data_retries < 0 or self.keepalive_probes < 1:
            raise ValueError("retry counts must not be negative")
        if self.tso_win_divisor < 0:
            raise ValueError("tso_win_divisor must not be negative")
        if self.paws_window < 0:
            raise ValueError("paws_window must not be negative")
        if self.invalid_ack_interval_ns < 0:
            raise ValueError("invalid_ack_interval_ns must not be negative")
        if self.ecn not in ECN_MODES:
            raise ValueError(f"ecn {self.ecn!r} not one of {ECN_MODES}")
        if self.tlp_delayed_ack_ns < 0:
            raise ValueError("tlp_delayed_ack_ns must not be negative")
        if self.max_segment_payload < 0:
            raise ValueError("max_segment_payload must not be negative")
