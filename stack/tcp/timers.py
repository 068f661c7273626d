"""A TCP connection's timers: retransmission timeout (RFC 6298), persist (zero-window
probes), keep-alive, RACK's reordering timer and the tail loss probe (RFC 8985), FIN-WAIT-2
and TIME-WAIT, and :meth:`~stack.tcp.timers._Timers.next_deadline` over all of them."""

from __future__ import annotations

from stack.tcp.recovery import _Recovery
from stack.tcp.segment import Outgoing
from stack.tcp.state import SENDING, TcpState
from stack.tcp.tcb import _ACK
from stack.tcp.tlp import TlpEpisode


class _Timers(_Recovery):
    """Timer expiry."""

    def next_deadline(self) -> int | None:
        """The earliest running timer: retransmission, delayed ACK, persist, keep-alive,
        TIME-WAIT, RACK reordering or tail loss probe. Call poll() at that time (or
        earlier)."""
        if self.state is TcpState.CLOSED:
            return None
        times = [t for t in (self._rto_at, self._delack_at, self._persist_at,
                             self._time_wait_at, self._fin_wait2_at, self._keepalive_at(),
                             self._rack_at, self._pto_at)
                 if t is not None]
        return min(times) if times else None

    def _keepalive_at(self) -> int | None:
        idle = self.config.keepalive_idle_ns
        if (idle is None or self.state not in (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT)
                or self.snd_max != self.snd_una or self._data_end() != self.snd_una):
            return None
        if self._keepalive_probes == 0:
            return self._last_rcv + idle
        return self._last_keepalive + self.config.keepalive_interval_ns

    def _run_timers(self, now: int, out: list[Outgoing]) -> None:
        if self._time_wait_at is not None and now >= self._time_wait_at:
            self._to_closed()
            return
        if self._fin_wait2_at is not None and now >= self._fin_wait2_at:
            # Linux tcp_keepalive_timer for an orphaned FIN-WAIT-2: reset and forget.
            self.counters.fin_wait2_timeouts += 1
            self._queue_rst(self.snd_max, self._rcv.rcv_nxt)
            self._to_closed()
            return
        if self._rack_at is not None and now >= self._rack_at:
            self._rack_at = None
            self._rack_detect(now)
            self._rack_may_recover(now)
        if self._pto_at is not None and now >= self._pto_at:
            self._on_pto(now, out)
        if self._rto_at is not None and now >= self._rto_at:
            self._on_rto(now, out)
            if self.state is TcpState.CLOSED:
                return
        if self._persist_at is not None and now >= self._persist_at:
            self._on_persist(now, out)
            if self.state is TcpState.CLOSED:
                return
        ka = self._keepalive_at()
        if ka is not None and now >= ka:
            self._on_keepalive(now, out)

    # -- persist (RFC 9293 §3.8.6.1)
    def _arm_persist(self, now: int) -> None:
        """Nothing is in flight and queued data cannot go (the peer's window is closed or
        too small for SWS avoidance): the persist timer makes sure the window is probed."""
        if (not self.config.zero_window_probe or self._persist_at is not None
                or self._data_end() <= self.snd_nxt or self._rto_at is not None):
            return  # (data in flight: the retransmission timer covers it)
        self._persist_at = now + self._persist_interval()

    def _persist_interval(self) -> int:
        rto = self._rtt.rto
        return min(rto << min(self._persist_backoff, 62), self.config.rto_max_ns)

    def _on_persist(self, now: int, out: list[Outgoing]) -> None:
        self._persist_at = None
        if self.state not in SENDING or self._data_end() <= self.snd_una:
            return
        opts = self._options(now)
        seg_size, max_payload = self._payload_limits(opts)
        if self.snd_wnd > 0 and self.snd_una == self.snd_max:
            # SWS override timeout (RFC 9293 §3.8.6.2.1): send what the window takes.
            size = min(self.snd_wnd, self._data_end() - self.snd_una, max_payload)
            self._transmit(out, self.snd_una, size, now, opts=opts, seg_size=seg_size)
            return
        if self._probes_unanswered >= self.config.data_retries:
            self._fail("timeout")
            return
        # Zero window: probe with one octet of new data (or the same octet again).
        self._probe_outstanding = True
        self._probes_unanswered += 1
        self.counters.zero_window_probes += 1
        self._transmit(out, self.snd_una, 1, now, opts=opts, seg_size=seg_size, probe=True)
        self._persist_backoff += 1
        self._persist_at = now + self._persist_interval()

    # -- keep-alive (RFC 9293 §3.8.4)
    def _on_keepalive(self, now: int, out: list[Outgoing]) -> None:
        if self._keepalive_probes >= self.config.keepalive_probes:
            self._queue_rst(self.snd_max)
            self._fail("timeout")
            return
        self._keepalive_probes += 1
        self._last_keepalive = now
        self.counters.keepalives += 1
        seg = self._segment(self.snd_una - 1, _ACK, b"", self._options(now, sack=False))
        self._emit(out, seg, None)

    # -- retransmission timeout (RFC 6298 §5)
    def _on_rto(self, now: int, out: list[Outgoing]) -> None:
        self._rto_at = None
        handshake = self.state in (TcpState.SYN_SENT, TcpState.SYN_RECEIVED)
        if not handshake and self.snd_max == self.snd_una:
            return
        limit = self.config.syn_retries if handshake else self.config.data_retries
        zero_window = not handshake and self.snd_wnd == 0
        peer_alive = zero_window and now - self._last_rcv < self.config.rto_max_ns
        if self._retries >= limit and not peer_alive:
            self._fail("timeout")
            return
        if not peer_alive:
            self._retries += 1
        self.counters.timeouts += 1
        self._rtt.back_off()
        self._timing = None
        if handshake:
            self._handshake_retransmitted = True
            self.snd_nxt = self.iss
            self._rto_at = now + self._rtt.rto
            return
        # RFC 5681 §3.1 (cwnd = loss window), RFC 6582 / RFC 6675 §5.1 (RecoveryPoint =
        # HighData, no new recovery until it is acknowledged), RFC 2018 §8 (forget SACKs).
        self._start_undo(timeout=True)
        self._rto_undo_check = True
        self._rack.reset(self.snd_una, self.snd_max)
        self._rack_at = None
        self._pto_at = None
        self._tlp = None
        self._cc.on_timeout(now, self.snd_nxt - self.snd_una)
        self._in_recovery = False
        self._cwr = False
        self._recover = self.snd_max
        self._dupacks = 0
        self._reno_sacked = 0
        self._fast_rtx = False
        self._scoreboard.clear()
        self._high_rxt = self.snd_una
        self.snd_nxt = self.snd_una
        self._rto_at = now + self._rtt.rto
        if zero_window and self._data_end() > self.snd_una:
            # The peer shrank its window to zero under our data: probe with one octet
            # (resent with the rest when the window opens), and do not give up while the
            # peer answers (RFC 9293 §3.8.6.1).
            self._probe_outstanding = True
            opts = self._options(now)
            seg_size, _ = self._payload_limits(opts)
            self._transmit(out, self.snd_una, 1, now, opts=opts, seg_size=seg_size)

    # -- tail loss probe (RFC 8985 §7.3)
    def _on_pto(self, now: int, out: list[Outgoing]) -> None:
        """RFC 8985 §7.3: the probe — one segment of new data when there is some and
        the peer's window takes it, else the last segment sent — then the
        retransmission timer again."""
        self._pto_at = None
        if not (self.state in SENDING and self.snd_max > self.snd_una
                and not self._in_recovery and self._tlp is None):
            return
        opts = self._options(now)
        seg_size, _ = self._payload_limits(opts)
        smss = min(self.eff_mss, seg_size)
        flight = self.snd_max - self.snd_una
        data_end = self._data_end()
        room = min(data_end - self.snd_nxt, self.snd_una + self.snd_wnd - self.snd_nxt)
        if self.snd_nxt == self.snd_max and room > 0:
            start = self.snd_nxt
            self._transmit(out, start, min(room, smss), now, opts=opts, seg_size=seg_size)
            is_retrans = False
        else:
            top = min(self.snd_max, data_end)
            start = max(top - smss, self.snd_una)
            fin_seq = self._fin_seq()
            if top <= start and not (fin_seq is not None and fin_seq < self.snd_max):
                return
            self._transmit(out, start, max(top - start, 0), now, opts=opts, seg_size=seg_size)
            is_retrans = True
        self._tlp = TlpEpisode(start, self.snd_max, is_retrans=is_retrans, flight=flight)
        self._rto_at = now + self._rtt.rto
        self.counters.tlp_probes += 1
