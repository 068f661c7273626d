"""Congestion control behind a small interface: Reno (RFC 5681 with appropriate byte
counting, RFC 3465) and CUBIC (RFC 9438).

The connection owns loss *detection* and *recovery* (fast retransmit, NewReno partial ACKs
RFC 6582, SACK recovery RFC 6675); a controller only decides the window: it is told about
newly acknowledged bytes outside recovery (:meth:`on_ack`), a loss detected by duplicate
ACKs or SACK (:meth:`on_loss`), a retransmission timeout (:meth:`on_timeout`) and the end
of a recovery episode (:meth:`on_recovery_end`). NewReno's temporary window inflation and
deflation during recovery (RFC 6582 §3.2) writes :attr:`cwnd` directly. All sizes are
bytes; times are integer nanoseconds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

INFINITE_SSTHRESH = 1 << 62
"""RFC 5681 §3.1: the initial ssthresh "SHOULD be set arbitrarily high"."""


def initial_window(smss: int, segments: int) -> int:
    """RFC 6928 §2, generalised to ``segments`` (10 in the RFC):
    IW = min(segments*MSS, max(2*MSS, segments*1460))."""
    return min(segments * smss, max(2 * smss, segments * 1460))


class CongestionControl(ABC):
    """The window a sender may have in flight."""

    name: str = ""

    def __init__(self, smss: int, initial_window_segments: int = 10, *,
                 abc_limit_segments: int = 2) -> None:
        if smss <= 0:
            raise ValueError("smss must be positive")
        self.smss = smss
        self._cwnd = float(initial_window(smss, initial_window_segments))
        self.ssthresh = INFINITE_SSTHRESH
        self.abc_limit = abc_limit_segments * smss if abc_limit_segments > 0 else 0
        """RFC 3465 §2.2 L in bytes (2*SMSS); 0: no limit."""

    @property
    def cwnd(self) -> int:
        return int(self._cwnd)

    @cwnd.setter
    def cwnd(self, value: int) -> None:
        self._cwnd = float(max(value, self.smss))

    @property
    def in_slow_start(self) -> bool:
        return self._cwnd < self.ssthresh

    def _slow_start(self, acked: int) -> None:
        """RFC 5681 §3.1 with RFC 3465 §2.2: cwnd += min(N, L)."""
        inc = min(acked, self.abc_limit) if self.abc_limit else acked
        self._cwnd += inc

    def _reduced_ssthresh(self, flight_size: int, numerator: int, denominator: int) -> int:
        return max(flight_size * numerator // denominator, 2 * self.smss)

    @abstractmethod
    def on_ack(self, acked: int, rtt_ns: int | None, now: int) -> None:
        """``acked`` bytes were newly and cumulatively acknowledged outside loss recovery
        while the sender was congestion-window limited; ``rtt_ns`` is the smoothed RTT."""

    @abstractmethod
    def on_loss(self, now: int, flight_size: int) -> None:
        """Loss detected by duplicate ACKs / SACK: set ssthresh, cwnd = ssthresh."""

    @abstractmethod
    def on_timeout(self, now: int, flight_size: int) -> None:
        """Retransmission timeout: set ssthresh, cwnd = 1 SMSS (RFC 5681 §3.1 loss window)."""

    def on_recovery_end(self, now: int) -> None:  # noqa: B027 - optional hook
        """Fast recovery ended (the recovery point was acknowledged)."""

    def undo(self, prior: CongestionControl) -> None:
        """A congestion event turned out spurious (:mod:`stack.tcp.undo`): go back to
        ``prior``, a copy of this controller taken before the event — ssthresh and the
        controller's own state as they were (RFC 9438 §4.9 for CUBIC's W_max, K and
        epoch), cwnd the larger of the two (Linux ``tcp_undo_cwnd_reduction``: a window
        that grew since is kept)."""
        if type(prior) is not type(self):
            raise ValueError("undo to a different controller")
        cwnd = max(self._cwnd, prior._cwnd)
        self.__dict__.update(vars(prior))
        self._cwnd = cwnd


class Reno(CongestionControl):
    """RFC 5681 §3.1 slow start and congestion avoidance with byte counting (RFC 3465):
    in congestion avoidance ``bytes_acked`` accumulates and cwnd grows by SMSS each time
    it reaches cwnd."""

    name = "reno"

    def __init__(self, smss: int, initial_window_segments: int = 10, *,
                 abc_limit_segments: int = 2) -> None:
        super().__init__(smss, initial_window_segments, abc_limit_segments=abc_limit_segments)
        self.bytes_acked = 0

    def on_ack(self, acked: int, rtt_ns: int | None, now: int) -> None:
        if acked <= 0:
            return
        if self.in_slow_start:
            self._slow_start(acked)
            return
        self.bytes_acked += acked
        if self.bytes_acked >= self._cwnd:
            self.bytes_acked -= int(self._cwnd)
            self._cwnd += self.smss

    def on_loss(self, now: int, flight_size: int) -> None:
        # RFC 5681 §3.2 step 2 (equation 4): ssthresh = max(FlightSize / 2, 2*SMSS)
        self.ssthresh = self._reduced_ssthresh(flight_size, 1, 2)
        self._cwnd = float(self.ssthresh)
        self.bytes_acked = 0

    def on_timeout(self, now: int, flight_size: int) -> None:
        self.ssthresh = self._reduced_ssthresh(flight_size, 1, 2)
        self._cwnd = float(self.smss)
        self.bytes_acked = 0


CUBIC_C = 0.4
CUBIC_BETA = 0.7
CUBIC_ALPHA = 3 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA)
"""RFC 9438 §4.3: the Reno-friendly additive increase factor for β = 0.7."""


class Cubic(CongestionControl):
    """RFC 9438. Windows in the formulas are in segments (cwnd / SMSS), time in seconds.

    - §4.2: W_cubic(t) = C*(t - K)**3 + W_max, K = cbrt((W_max - cwnd_epoch) / C), t the
      time since the congestion-avoidance epoch began.
    - §4.3: Reno-friendly estimate W_est += α_cubic * acked_segments / cwnd (α_cubic =
      3(1-β)/(1+β) until W_est reaches cwnd_prior, 1 after); cwnd = W_est when W_cubic(t)
      is below it.
    - §4.4/§4.5: target = W_cubic(t + RTT) clamped to [cwnd, 1.5*cwnd]; cwnd grows by
      (target - cwnd)/cwnd per acknowledged segment (the RFC's per-ACK rule scaled by the
      segments the ACK covers, so stretch ACKs grow the window alike).
    - §4.6: on loss ssthresh = max(FlightSize*β, 2*SMSS), cwnd = ssthresh;
      §4.7 fast convergence; §4.8: on timeout cwnd = 1 SMSS and the next epoch starts with
      K = 0 and W_max = the cwnd at its start. Slow start is RFC 5681's (§4.10).
    """

    name = "cubic"

    def __init__(self, smss: int, initial_window_segments: int = 10, *,
                 abc_limit_segments: int = 2, fast_convergence: bool = True) -> None:
        super().__init__(smss, initial_window_segments, abc_limit_segments=abc_limit_segments)
        self.fast_convergence = fast_convergence
        self.w_max: float | None = None
        """W_max in segments (None until the first congestion event)."""
        self.k = 0.0
        self.epoch_start: int | None = None
        self.cwnd_epoch = 0.0
        self.w_est = 0.0
        self.cwnd_prior = 0.0
        self.alpha = CUBIC_ALPHA
        self._after_timeout = False

    def w_cubic(self, t: float) -> float:
        """RFC 9438 Figure 1, in segments, for ``t`` seconds into the epoch."""
        w_max = self.w_max if self.w_max is not None else self.cwnd_epoch
        return CUBIC_C * (t - self.k) ** 3 + w_max

    def _start_epoch(self, now: int) -> None:
        self.epoch_start = now
        cwnd = self._cwnd / self.smss
        self.cwnd_epoch = cwnd
        self.w_est = cwnd
        if self._after_timeout or self.w_max is None or self.w_max <= cwnd:
            # §4.8 after a timeout (and, as Linux does, before any congestion event or when
            # cwnd already passed W_max): K = 0 and W_max = the cwnd at the epoch's start.
            self.k = 0.0
            self.w_max = cwnd
        else:
            self.k = ((self.w_max - cwnd) / CUBIC_C) ** (1 / 3)
        self._after_timeout = False

    def on_ack(self, acked: int, rtt_ns: int | None, now: int) -> None:
        if acked <= 0:
            return
        if self.in_slow_start:
            self._slow_start(acked)
            return
        if self.epoch_start is None:
            self._start_epoch(now)
        assert self.epoch_start is not None
        smss = self.smss
        cwnd = self._cwnd / smss
        segments = acked / smss
        t = (now - self.epoch_start) / 1e9
        rtt = (rtt_ns or 0) / 1e9
        target = self.w_cubic(t + rtt)
        target = min(max(target, cwnd), 1.5 * cwnd)
        self.w_est += self.alpha * segments / cwnd
        if self.w_est >= self.cwnd_prior:
            self.alpha = 1.0
        if self.w_cubic(t) < self.w_est:
            new = max(self.w_est, cwnd)
        else:
            new = cwnd + (target - cwnd) / cwnd * segments
        self._cwnd = max(new * smss, float(smss))

    def _congestion_event(self, flight_size: int) -> None:
        cwnd = self._cwnd / self.smss
        if self.fast_convergence and self.w_max is not None and cwnd < self.w_max:
            self.w_max = cwnd * (1 + CUBIC_BETA) / 2
        else:
            self.w_max = cwnd
        self.cwnd_prior = cwnd
        self.ssthresh = self._reduced_ssthresh(flight_size, 7, 10)  # β = 0.7
        self.epoch_start = None
        self.alpha = CUBIC_ALPHA

    def on_loss(self, now: int, flight_size: int) -> None:
        self._congestion_event(flight_size)
        self._cwnd = float(self.ssthresh)

    def on_timeout(self, now: int, flight_size: int) -> None:
        self._congestion_event(flight_size)
        self._cwnd = float(self.smss)
        self._after_timeout = True

    def on_recovery_end(self, now: int) -> None:
        self.epoch_start = None


def make_congestion_control(name: str, smss: int, initial_window_segments: int,
                            abc_limit_segments: int = 2) -> CongestionControl:
    if name == "reno":
        return Reno(smss, initial_window_segments, abc_limit_segments=abc_limit_segments)
    if name == "cubic":
        return Cubic(smss, initial_window_segments, abc_limit_segments=abc_limit_segments)
    raise ValueError(f"unknown congestion control {name!r}")
