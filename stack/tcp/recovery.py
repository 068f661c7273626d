"""The sending side's handling of an ACK (RFC 9293 §3.10.7.4 fifth step): SACK blocks,
RTT samples, window updates, duplicate ACKs, and the loss recovery they drive — fast
recovery (RFC 5681, RFC 6582, RFC 6675), and the glue to PRR (:mod:`stack.tcp.prr`),
RACK and TLP (:mod:`stack.tcp.rack`, :mod:`stack.tcp.tlp`), the undo of spurious
reductions (:mod:`stack.tcp.undo`) and ECN's congestion signal (RFC 3168 §6.1.2)."""

from __future__ import annotations

from stack.tcp import seq as sq
from stack.tcp.options import find_timestamps, sack_blocks
from stack.tcp.output import NS_PER_MS, _Output
from stack.tcp.sack import DUP_THRESH, dsack_range
from stack.tcp.segment import Segment
from stack.tcp.state import SENDING, TcpState
from stack.tcp.tcb import _ECE, _FIN, _SYN
from stack.tcp.tlp import TlpOutcome, pto
from stack.tcp.undo import UndoEpisode
from stack.wire.tcp import TcpFlags


class _Recovery(_Output):
    """ACK processing and loss recovery."""

    def _on_ack_field(self, seg: Segment, seq: int, now: int, syn_window: bool,
                      flags: TcpFlags) -> bool:
        """RFC 9293 §3.10.7.4 fifth step; False when processing of the segment stops."""
        ack = sq.unwrap(seg.ack, self.snd_una)
        if self.state is TcpState.SYN_RECEIVED:
            if not self.snd_una < ack <= self.snd_max:
                self._queue_rst(ack)
                return False
            self._established(now)
            self._snd_wl1 = seq - 1  # the window of this ACK is taken below
        # RFC 5961 §5.2: ACK acceptability (and RFC 9293: ACK of unsent data).
        if ack > self.snd_max or ack < self.snd_una - self.max_snd_wnd:
            self._answer_invalid(seg, flags, now)
            return False
        shift = 0 if syn_window else self.snd_wscale
        wnd = seg.window << shift
        delivered_before = self._delivered_mark()
        old_una = self.snd_una
        new_sacked = 0
        rack = self._rack_on()
        delivered: list[tuple[int, int]] = []
        dsack: tuple[int, int] | None = None
        blocks = sack_blocks(seg.options) if self.sack_enabled else []
        if blocks:
            self.counters.sack_blocks_in += len(blocks)
            una = self.snd_una
            dsack = dsack_range([(sq.unwrap(a, una), sq.unwrap(b, una)) for a, b in blocks[:2]],
                                ack)
            if dsack is not None:
                self._on_dsack(*dsack, now)
            for left, right in blocks:
                lo = sq.unwrap(left, self.snd_una)
                hi = sq.unwrap(right, self.snd_una)
                lo, hi = max(lo, ack, self.snd_una), min(hi, self.snd_max)
                if lo < hi:
                    if rack:
                        delivered += self._scoreboard.unsacked_ranges(lo, hi)
                    new_sacked += self._scoreboard.add(lo, hi)
        if rack:
            if ack > self.snd_una:
                delivered += self._scoreboard.unsacked_ranges(self.snd_una, ack)
            if delivered:
                self._rack.on_delivered(delivered, self._high_rxt, now)
        if ack > self.snd_una:
            self._on_new_ack(seg, ack, now)
        elif ack == self.snd_una and self.snd_max > self.snd_una and not self._probe_outstanding:
            if blocks:
                dup = new_sacked > 0  # RFC 6675 §2 DupAck
            else:  # RFC 5681 §2 duplicate acknowledgment
                dup = (not seg.payload and not flags & (_SYN | _FIN) and wnd == self.snd_wnd)
            if dup:
                self._on_dup_ack(now)
        if rack:
            self._rack_detect(now)
            self._rack_may_recover(now)
        if self._tlp is not None:
            self._tlp_on_ack(ack, old_una, dsack, new_sacked > 0 or bool(blocks), now)
        if (self._in_recovery or self._cwr) and self.config.prr:
            self._prr_on_ack(self._delivered_mark() - delivered_before)
        if self._cwr and self.snd_una >= self._ecn_recover:
            self._end_cwr(now)
        if flags & _ECE and self.ecn_enabled:
            self._on_ece(now)
        # Window update (RFC 9293 fifth step).
        if self.snd_una <= ack <= self.snd_max and (
                self._snd_wl1 < seq or (self._snd_wl1 == seq and self._snd_wl2 <= ack)):
            self._update_window(wnd, seq, ack)
        self._arm_pto(now, restart=self.snd_una > old_una)
        # Our FIN acknowledged?
        fin_seq = self._fin_seq()
        fin_acked = fin_seq is not None and self.snd_una > fin_seq
        state = self.state
        if fin_acked:
            if state is TcpState.FIN_WAIT_1:
                self.state = TcpState.FIN_WAIT_2
                self._arm_fin_wait2(now)
            elif state is TcpState.CLOSING:
                self._enter_time_wait(now)
            elif state is TcpState.LAST_ACK:
                self._to_closed()
                return False
        return True

    def _on_dsack(self, lo: int, hi: int, now: int) -> None:
        """A D-SACK: RACK widens its reordering window (RFC 8985 §6.2 step 4); when it
        completes the proof that every retransmission of the last episode was a
        duplicate, that episode was spurious (RFC 3708)."""
        self.counters.dsacks_in += 1
        if self._rack_on():
            self._rack.on_dsack(self.snd_una, self.snd_nxt)
        if self._undo is not None and self._undo.on_dsack(lo, hi):
            self._spurious(now)

    def _start_undo(self, timeout: bool) -> None:
        """A window reduction: remember the controller as it was (a timeout inside an
        episode not yet over keeps the state from before the episode, as Linux does)."""
        undo = self._undo
        if timeout and undo is not None and self.snd_una < self._recover:
            undo.end = max(undo.end, self.snd_max)
            return
        self._undo = UndoEpisode(self._cc, self.snd_una, self.snd_max)

    def _spurious(self, now: int) -> None:
        """Every retransmission of the episode was unnecessary: undo its reduction
        (TcpConfig.undo), leave recovery, and stop resending what is in flight (the Eifel
        response of RFC 4015: SND.NXT = SND.MAX after a spurious timeout). A loss still
        hidden in the window may start a new recovery (RecoveryPoint back to SND.UNA)."""
        undo = self._undo
        self._undo = None
        self._rto_undo_check = False
        if undo is None:
            return
        self.counters.spurious_retransmits_detected += 1
        if not self.config.undo:
            return
        self._cc.undo(undo.prior)
        self.counters.undos += 1
        self._in_recovery = False
        self._fast_rtx = False
        self._reno_sacked = 0
        self._recover = self.snd_una
        self.snd_nxt = max(self.snd_nxt, self.snd_max)

    def _tsecr(self, seg: Segment) -> int | None:
        ts = find_timestamps(seg.options) if self.ts_enabled else None
        return None if ts is None else ts.tsecr

    def _take_rtt_sample(self, seg: Segment, ack: int, now: int) -> None:
        """RTTM (RFC 7323 §4.1) from TSecr, else Karn's timed segment (RFC 6298 §3)."""
        ts = find_timestamps(seg.options) if self.ts_enabled else None
        if ts is not None and ts.tsecr != 0:
            rtt_ms = (self._tsval(now) - ts.tsecr) & sq.MASK
            if rtt_ms * NS_PER_MS <= self.config.rto_max_ns:
                self._rtt.sample(rtt_ms * NS_PER_MS)
                self._timing = None
                return
        if self._timing is not None and ack >= self._timing[0]:
            self._rtt.sample(now - self._timing[1])
            self._timing = None

    def _on_new_ack(self, seg: Segment, ack: int, now: int) -> None:
        smss = self.eff_mss
        old_una = self.snd_una
        data_acked = min(ack, self._data_end()) - self._buf_seq
        if data_acked > 0:
            self._send_buf.consume(data_acked)
            self._buf_seq += data_acked
        self._take_rtt_sample(seg, ack, now)
        self.snd_una = ack
        self.snd_nxt = max(self.snd_nxt, ack)
        self._scoreboard.advance(ack)
        self._rack.advance(ack)
        self._retries = 0
        self._probes_unanswered = 0
        self._persist_backoff = 0
        if self._probe_outstanding and ack >= self.snd_max:
            self._probe_outstanding = False
        # RFC 6298 §5.2 / §5.3.
        if ack >= self.snd_max:
            self._rto_at = None
        elif not (self._in_recovery and not self.sack_enabled and self._partial_acked):
            self._rto_at = now + self._rtt.rto
        # Was the sender cwnd-limited (RFC 7661 in spirit, Linux tcp_is_cwnd_limited)?
        peak = max(self._flight_peak, self._flight_peak_prev)
        cwnd = self._cc.cwnd
        limited = (cwnd < 2 * peak) if self._cc.in_slow_start else (peak + 2 * smss >= cwnd)
        if ack >= self._round_end:
            self._flight_peak_prev = self._flight_peak
            self._flight_peak = self.snd_nxt - self.snd_una
            self._round_end = self.snd_max
        acked = ack - old_una
        if self._in_recovery:
            if ack >= self._recover:
                if self.config.prr and self.sack_enabled:
                    self._cc.cwnd = self._cc.ssthresh  # RFC 6937 §3: recovery ends
                elif not self.sack_enabled:
                    # RFC 6582 §3.2 step 6, option (1), with PRR too: without SACK the
                    # flight at the full ACK can be far below ssthresh, and cwnd =
                    # ssthresh would release the difference in one burst.
                    flight = self.snd_max - ack
                    self._cc.cwnd = min(self._cc.ssthresh, max(flight, smss) + smss)
                else:
                    self._cc.cwnd = min(self._cc.cwnd, self._cc.ssthresh)
                self._in_recovery = False
                self._reno_sacked = 0
                self._rack.on_recovery_exit()
                self._cc.on_recovery_end(now)
                if self._undo is not None and self._undo.eifel(self._tsecr(seg)):
                    self._spurious(now)  # the holes were filled by the originals
            elif not self.sack_enabled:
                # RFC 6582 §3.2 step 5: partial ACK: the next hole goes at once.
                self._fast_rtx = True
                if self.config.prr:
                    # The ACK covers the retransmission and segments whose duplicate
                    # ACKs were counted as delivered already (RFC 6937 §3).
                    self._reno_sacked = max(self._reno_sacked - max(acked - smss, 0), 0)
                    if not self._partial_acked:
                        self._partial_acked = True
                        self._rto_at = now + self._rtt.rto
                    self._dupacks = 0
                    return
                deflated = self._cc.cwnd - acked + (smss if acked >= smss else 0)
                self._cc.cwnd = deflated
                if not self._partial_acked:
                    self._partial_acked = True
                    self._rto_at = now + self._rtt.rto
        else:
            self._reno_sacked = 0
            if limited and data_acked > 0 and not self._cwr:  # no growth while reducing
                self._cc.on_ack(data_acked, self._rtt.srtt, now)
        if self._rto_undo_check:
            # RFC 3522 §3: the first acceptable ACK after a timeout (never in recovery:
            # none starts before SND.UNA passes the timeout's recovery point).
            self._rto_undo_check = False
            if self._undo is not None and self._undo.eifel(self._tsecr(seg)):
                self._spurious(now)
        self._dupacks = 0

    def _on_dup_ack(self, now: int) -> None:
        self._dupacks += 1
        self.counters.dup_acks_in += 1
        if not self.sack_enabled:
            # One more segment has left the network (RFC 6937 §3 without SACK), never
            # more than all but one SMSS of what is in flight.
            self._reno_sacked = min(self._reno_sacked + self.eff_mss,
                                    max(self.snd_max - self.snd_una - self.eff_mss, 0))
        if self._in_recovery:
            if not self.sack_enabled and not self.config.prr:
                self._cc.cwnd = self._cc.cwnd + self.eff_mss  # RFC 6582 step 4 inflation
            return
        if self.snd_una < self._recover:
            return  # RFC 6582 §3.2 step 2 / RFC 6675 §5.1: still in the previous episode
        if self._rack_on():
            return  # RACK alone marks losses and starts recovery (_rack_may_recover)
        lost = self.sack_enabled and self._scoreboard.is_lost(self.snd_una, self.eff_mss)
        if self._dupacks >= 3 or lost:
            self._enter_recovery(now)

    def _enter_recovery(self, now: int) -> None:
        """RFC 5681 §3.2 steps 2-3 / RFC 6582 §3.2 step 2-3 / RFC 6675 §5 step 4."""
        self._in_recovery = True
        self._recover = self.snd_max
        if self.snd_una > self._ecn_recover:  # not reduced for ECE in this window already
            self._start_undo(timeout=False)
            self._cc.on_loss(now, self.snd_max - self.snd_una)
        else:
            self._undo = None
        if self._cwr:
            # Already reducing for ECE: the recovery goes on with that reduction and its
            # PRR round, as Linux enters Recovery from CWR without a second one.
            self._cwr = False
            self.counters.prr_recoveries += 1
        elif self.config.prr:
            self._prr.start(self.snd_max - self.snd_una)  # RecoverFS (RFC 6937 §3)
            self.counters.prr_recoveries += 1
        elif not self.sack_enabled:
            self._cc.cwnd = self._cc.ssthresh + 3 * self.eff_mss
        self._high_rxt = self.snd_una
        self._rescue_rxt = None
        self._tlp = None  # the recovery's reduction answers for the probe too
        self._pto_at = None
        self._fast_rtx = True
        self._partial_acked = False
        self._timing = None
        self.counters.fast_retransmits += 1

    def _delivered_mark(self) -> int:
        """SND.UNA plus the bytes known delivered above it (SACKed, or estimated from
        duplicate ACKs without SACK): its change over an ACK is RFC 6937's
        DeliveredData."""
        return self.snd_una + self._scoreboard.sacked_bytes + self._reno_sacked

    def _prr_on_ack(self, delivered: int) -> None:
        """RFC 6937 §3 on an ACK during recovery that reported data delivered (as Linux,
        an ACK reporting nothing delivered leaves the window alone)."""
        if delivered <= 0:
            return
        pipe = self._pipe() if self.sack_enabled else self._reno_pipe()
        self._cc.cwnd = self._prr.on_ack(delivered, pipe=pipe, ssthresh=self._cc.ssthresh,
                                         smss=self.eff_mss)
        if self._prr.ssrb:
            self.counters.prr_ssrb_acks += 1

    # -- RACK (RFC 8985 §6) and TLP (§7); the logic is in stack.tcp.rack / stack.tcp.tlp
    def _rack_detect(self, now: int) -> None:
        """RFC 8985 §6.2 step 5 with the reordering window of step 4; arms the
        reordering timer (§6.3)."""
        rack = self._rack
        if not self._rack_on() or not rack.active(self.snd_una) or self.snd_max <= self.snd_una:
            self._rack_at = None
            return
        smss = self.eff_mss
        before = max(rack.lost_end, self.snd_una)
        reo_wnd = rack.reo_wnd(
            in_recovery=self._in_recovery, srtt=self._rtt.srtt,
            dupthresh_sacked=self._scoreboard.sacked_bytes > (DUP_THRESH - 1) * smss)
        self._rack_at = rack.detect(now, reo_wnd)
        if rack.lost_end > before:
            for lo, hi in rack.segments_between(before, rack.lost_end, self.snd_una):
                if self._scoreboard.sacked_in(lo, hi) < hi - lo:
                    self.counters.rack_losses_detected += 1
        sent_at = rack.head_retransmitted_at(self.snd_una) if self._in_recovery else None
        if sent_at is not None and not self._fast_rtx:
            lost_at = rack.retransmission_lost_at(sent_at, reo_wnd)
            if lost_at is not None and now >= lost_at:
                # The retransmission at SND.UNA was lost too: it goes again at once.
                self._fast_rtx = True
                self.counters.rack_losses_detected += 1
            elif lost_at is not None and (self._rack_at is None or lost_at < self._rack_at):
                self._rack_at = lost_at

    def _rack_may_recover(self, now: int) -> None:
        """RACK marked data lost outside recovery: fast recovery starts (RFC 8985 §6.2
        with RFC 6675 §5 step 4), unless the data belongs to the window of the last one
        (RFC 6582 §3.2 step 2 / RFC 6675 §5.1)."""
        if (self._in_recovery or self.snd_una < self._recover
                or self.snd_max <= self.snd_una or self._rack_floor() is None):
            return
        self._enter_recovery(now)

    def _arm_pto(self, now: int, *, restart: bool) -> None:
        """RFC 8985 §7.2: (re)start the probe timeout after new data or an ACK that
        advanced SND.UNA (``restart``), cancel it when a probe may not go."""
        if not (self.config.tlp and self.sack_enabled and self.state in SENDING
                and self.snd_max > self.snd_una and not self._in_recovery
                and self._tlp is None and not self._scoreboard.sacked_bytes
                and not self._dupacks and self._rack.active(self.snd_una)
                and not self._probe_outstanding and self.snd_wnd > 0):
            self._pto_at = None
            return
        if not restart and self._pto_at is not None:
            return
        at = now + pto(self._rtt.srtt, self.snd_max - self.snd_una, self.eff_mss,
                       self.config.tlp_delayed_ack_ns)
        if self._rto_at is not None:
            at = min(at, self._rto_at)
        self._pto_at = at

    def _tlp_on_ack(self, ack: int, old_una: int, dsack: tuple[int, int] | None,
                    sack_info: bool, now: int) -> None:
        """RFC 8985 §7.4 (decided by :meth:`TlpEpisode.on_ack`): a probe that repaired a
        loss reduces the window as a fast recovery would, under an undo episode holding
        the probe, so a D-SACK that comes later takes the reduction back."""
        tlp = self._tlp
        if tlp is None:
            return
        outcome = tlp.on_ack(ack, advanced=ack > old_una, dsack=dsack, sack_info=sack_info)
        if outcome is None:
            return
        self._tlp = None
        if outcome is TlpOutcome.REPAIRED:
            undo = UndoEpisode(self._cc, tlp.start, tlp.end_seq)
            undo.on_retransmit(tlp.start, tlp.end_seq, None)
            self._undo = undo
            self._cc.on_loss(now, tlp.flight)
            self._cc.on_recovery_end(now)
            self.counters.tlp_recoveries += 1

    # -- the peer's window
    def _update_window(self, wnd: int, seq: int, ack: int) -> None:
        self.snd_wnd = wnd
        self._snd_wl1 = seq
        self._snd_wl2 = ack
        self.max_snd_wnd = max(self.max_snd_wnd, wnd)
        if wnd > 0:
            if self._persist_at is not None or self._probe_outstanding:
                self._persist_at = None
                self._persist_backoff = 0
            if self._probe_outstanding and self.snd_una < self.snd_max:
                self.snd_nxt = self.snd_una  # the probe octet goes again with the rest
            self._probe_outstanding = False

    # -- ECN, sender side (RFC 3168 §6.1.2)
    def _on_ece(self, now: int) -> None:
        """RFC 3168 §6.1.2: ECE from the receiver is a congestion signal without a loss:
        ssthresh and cwnd reduced as for a loss (RFC 9438 §4.6 for CUBIC), at most once
        per window of data, not during loss recovery (already reduced), and CWR on the
        next new data segment."""
        self.counters.ecn_ece_in += 1
        if self._in_recovery or self.snd_una <= self._ecn_recover:
            # Still the window reduced last time: an ACK that covers data sent after the
            # reduction also covers the CWR segment, so ECE on it is a new CE mark.
            return
        flight = self.snd_max - self.snd_una
        prior = self._cc.cwnd
        self._cc.on_loss(now, flight)
        if self.config.prr and flight > 0:
            # The new ssthresh now, the window brought down to it over the round by PRR
            # as the data in flight is delivered (RFC 6937 §1; Linux tcp_enter_cwr), not
            # at once: no silence while the flight drains.
            self._cc.cwnd = prior
            self._prr.start(flight)
            self._cwr = True
        else:
            self._cc.on_recovery_end(now)
        self._ecn_recover = self.snd_max
        self._cwr_pending = True
        self.counters.ecn_reductions += 1

    def _end_cwr(self, now: int) -> None:
        """The data in flight at the ECE reduction is acknowledged: the window is
        ssthresh (RFC 6937 §3, as at the end of recovery; Linux
        tcp_end_cwnd_reduction)."""
        self._cwr = False
        self._cc.cwnd = self._cc.ssthresh
        self._cc.on_recovery_end(now)
