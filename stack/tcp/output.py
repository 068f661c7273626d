"""What a TCP connection sends: segment building (options, the window field), ACKs, the
handshake's SYN, and data — new data under the send, congestion and receive windows
(TSO deferral, Nagle, sender-side SWS avoidance, RFC 3042 limited transmit), fast
retransmission and RFC 6675's NextSeg during recovery (rules (1), (3), (4))."""

from __future__ import annotations

from stack.tcp import seq as sq
from stack.tcp.options import options_length, segment_options, syn_options, window_shift_for
from stack.tcp.sack import report_blocks
from stack.tcp.segment import Outgoing, Segment
from stack.tcp.state import FIN_STATES, RECEIVING, TcpState
from stack.tcp.tcb import _ACK, _CWR, _ECE, _ECN_SETUP, _FIN, _PSH, _RST, _SYN, _URG, _Tcb
from stack.wire.ecn import Ecn
from stack.wire.tcp import TcpFlags, TcpOption, TimestampsOption

NS_PER_MS = 1_000_000
MAX_SEGMENTS_PER_POLL = 1 << 16
"""Bound of the transmit loop in one poll."""
MAX_SACK_BLOCKS = 4
MAX_SACK_BLOCKS_WITH_TS = 3


class _Output(_Tcb):
    """Segment building and transmission."""

    def _flush_rsts(self, out: list[Outgoing]) -> None:
        for rst in self._rst_queue:
            self._emit(out, rst, None)
        self._rst_queue.clear()

    def _emit(self, out: list[Outgoing], seg: Segment, segment_size: int | None,
              ecn: int = 0) -> None:
        c = self.counters
        c.segments_out += 1
        c.bytes_out += len(seg.payload)
        if segment_size is not None:
            c.tso_segments_out += 1
        if seg.flags & _RST:
            c.resets_out += 1
        out.append(Outgoing(seg, segment_size, ecn))

    def _tsval(self, now: int) -> int:
        """RFC 7323 §5.4: a millisecond timestamps clock (from the caller's ``now``)."""
        return (now // NS_PER_MS) & sq.MASK

    def _options(self, now: int, *, sack: bool = True) -> tuple[TcpOption, ...]:
        ts = TimestampsOption(self._tsval(now), self._ts_recent) if self.ts_enabled else None
        blocks: list[tuple[int, int]] = []
        if sack and self.sack_enabled and (self._rcv.ooo_bytes or self._dsack is not None):
            limit = MAX_SACK_BLOCKS_WITH_TS if self.ts_enabled else MAX_SACK_BLOCKS
            ranges = report_blocks(self._rcv.ooo_ranges, self._sack_recent, limit)
            if self._dsack is not None:  # RFC 2883 §4: the duplicate first
                ranges = [self._dsack, *ranges[:limit - 1]]
            blocks = [(sq.wrap(a), sq.wrap(b)) for a, b in ranges]
        return segment_options(ts, blocks)

    def _select_window(self) -> int:
        """The window field to send, applying receiver-side SWS avoidance and never
        shrinking the offered window (RFC 9293 §3.8.6.2.2; rounded up to the scale unit,
        as Linux does, so the right edge never moves left)."""
        buf = self.config.receive_buffer
        rcv_nxt = self._rcv.rcv_nxt
        free = max(buf - self._rcv.readable, 0)
        cur = max(self._rcv_adv - rcv_nxt, 0)
        win = free if free - cur >= min(buf // 2, self.eff_mss) else cur
        shift = self.rcv_wscale
        field = win >> shift
        if (field << shift) < cur:
            field = (cur + (1 << shift) - 1) >> shift
        field = min(field, 0xFFFF)
        self._rcv_adv = max(self._rcv_adv, rcv_nxt + (field << shift))
        return field

    def _segment(self, seq: int, flags: TcpFlags, payload: bytes,
                 options: tuple[TcpOption, ...], urgent: int = 0) -> Segment:
        ack = 0
        if flags & _ACK:
            ack = sq.wrap(self._rcv.rcv_nxt)
            self._ack_sent()
            if self._ece_pending and not flags & _RST:
                flags |= _ECE  # RFC 3168 §6.1.3: until the peer's CWR
        window = self._select_window() if not flags & _RST else 0
        return Segment(sport=self.local_port, dport=self.remote_port, seq=sq.wrap(seq), ack=ack,
                       flags=flags, window=window, options=options, payload=payload,
                       urgent=urgent)

    def _ack_sent(self) -> None:
        self._dsack = None  # reported once, in this ACK (RFC 2883 §4 (1))
        self._ack_now = False
        self._read_since_ack = False
        self._delack_at = None
        self._unacked_bytes = 0
        self._last_ack_sent = self._rcv.rcv_nxt

    def _queue_rst(self, seq: int, ack: int | None = None) -> None:
        flags = _RST if ack is None else _RST | _ACK
        self._rst_queue.append(Segment(sport=self.local_port, dport=self.remote_port,
                                       seq=sq.wrap(seq), ack=sq.wrap(ack or 0), flags=flags,
                                       window=0))

    def _snd_seq_for_rst(self) -> int:
        return self.snd_max

    def _ack_seq(self) -> int:
        """SEQ of a pure ACK: SND.NXT (RFC 9293), taken as the highest position sent so the
        peer finds it acceptable after a go-back-N retransmission, or SND.UNA against a
        zero window (a zero-window probe octet may sit beyond it)."""
        return self.snd_max if self.snd_wnd > 0 else self.snd_una

    def _send_ack_if_due(self, out: list[Outgoing], now: int) -> None:
        if self.state in (TcpState.SYN_SENT, TcpState.CLOSED, TcpState.LISTEN):
            return
        delack_due = self._delack_at is not None and now >= self._delack_at
        if not (self._ack_now or delack_due or self._window_update_due()):
            return
        if delack_due and not self._ack_now:
            self.counters.delayed_acks += 1
        seg = self._segment(self._ack_seq(), _ACK, b"", self._options(now))
        self._emit(out, seg, None)

    def _window_update_due(self) -> bool:
        """Open the window with an ACK when it at least doubles (and was at most half the
        buffer), as Linux's tcp_cleanup_rbuf does; SWS rules as in _select_window."""
        if self.state not in RECEIVING or self._fin_received or not self._read_since_ack:
            return False
        buf = self.config.receive_buffer
        cur = max(self._rcv_adv - self._rcv.rcv_nxt, 0)
        if 2 * cur > buf:
            return False
        free = max(buf - self._rcv.readable, 0)
        if free - cur < min(buf // 2, self.eff_mss):
            return False
        new = min(free >> self.rcv_wscale, 0xFFFF) << self.rcv_wscale
        return new > cur and new >= 2 * cur

    def _answer_invalid(self, seg: Segment, flags: TcpFlags, now: int) -> bool:
        """ACK an invalid segment (RFC 9293 §3.10.7.4, RFC 5961 challenge ACKs) unless
        one was sent less than ``invalid_ack_interval_ns`` ago and the segment carries no
        data (a data segment always gets its ACK: no ACK loop is made of data; Linux
        ``tcp_oow_rate_limited``). Whether the ACK goes."""
        interval = self.config.invalid_ack_interval_ns
        if interval and (not seg.payload or flags & (_SYN | _RST)):
            last = self._last_invalid_ack
            if last is not None and now - last < interval:
                self.counters.invalid_acks_suppressed += 1
                return False
            self._last_invalid_ack = now
        self._ack_now = True
        return True

    # -- handshake
    def _send_syn(self, out: list[Outgoing], now: int) -> None:
        cfg = self.config
        retransmit = self.snd_max > self.iss
        window = min(max(cfg.receive_buffer - self._rcv.readable, 0), 0xFFFF)
        if self.state is TcpState.SYN_SENT:
            ts = TimestampsOption(self._tsval(now), 0) if cfg.timestamps else None
            opts = syn_options(mss=cfg.mss, sack=cfg.sack, timestamps=ts,
                               window_shift=window_shift_for(cfg.receive_buffer)
                               if cfg.window_scaling else None)
            # RFC 3168 §6.1.1: an ECN-setup SYN has ECE and CWR; a retransmitted SYN goes
            # without them, in case a middlebox drops ECN-setup SYNs (§6.1.1.1, as Linux).
            self._syn_ecn = cfg.ecn == "on" and not retransmit
            flags = _SYN | _ECN_SETUP if self._syn_ecn else _SYN
            seg = Segment(sport=self.local_port, dport=self.remote_port, seq=sq.wrap(self.iss),
                          ack=0, flags=flags, window=window, options=opts)
            self._syn_window = window
        else:
            ts = (TimestampsOption(self._tsval(now), self._ts_recent) if self.ts_enabled
                  else None)
            opts = syn_options(mss=cfg.mss, sack=self.sack_enabled, timestamps=ts,
                               window_shift=self.rcv_wscale if self.window_scaling else None)
            # RFC 3168 §6.1.1: an ECN-setup SYN-ACK has ECE but not CWR.
            flags = _SYN | _ACK | _ECE if self.ecn_enabled else _SYN | _ACK
            seg = Segment(sport=self.local_port, dport=self.remote_port, seq=sq.wrap(self.iss),
                          ack=sq.wrap(self._rcv.rcv_nxt), flags=flags, window=window,
                          options=opts)
            self._ack_sent()
            self._rcv_adv = max(self._rcv_adv, self._rcv.rcv_nxt + window)
        self.snd_nxt = self.iss + 1
        self.snd_max = max(self.snd_max, self.snd_nxt)
        if retransmit:
            self.counters.retransmitted_segments += 1
            self._timing = None
        elif self._timing is None:
            self._timing = (self.iss + 1, now)
        if self._rto_at is None:
            self._rto_at = now + self._rtt.rto
        self._emit(out, seg, None)

    # -- data
    def _payload_limits(self, options: tuple[TcpOption, ...]) -> tuple[int, int]:
        """(payload per wire segment with these options, largest payload of one emitted
        segment: the TSO limit when above the former)."""
        per_segment = max(self._send_mss() - options_length(options), 1)
        tso = self._max_segment_payload
        return per_segment, (tso if tso > per_segment else per_segment)

    def _send_data(self, out: list[Outgoing], now: int) -> None:
        for _ in range(MAX_SEGMENTS_PER_POLL):
            if not self._send_one(out, now):
                break

    def _send_one(self, out: list[Outgoing], now: int) -> bool:
        """Emit one segment if anything may go; False when nothing more can."""
        smss = self.eff_mss
        opts = self._options(now)
        seg_size, max_payload = self._payload_limits(opts)
        if self._fast_rtx:
            self._fast_rtx = False
            return self._retransmit_head(out, now, opts, seg_size)
        sack_recovery = self._in_recovery and self.sack_enabled
        if sack_recovery:
            room = self._cc.cwnd - self._pipe()
            if room < smss:
                return False
            boundary = self._scoreboard.lost_below(smss, self._rack_floor(),
                                                   dupthresh=not self._rack_on())
            start = max(self._high_rxt, self.snd_una)
            hole = self._scoreboard.next_hole(start, boundary) if boundary is not None else None
            if hole is not None:  # RFC 6675 NextSeg rule (1)
                return self._retransmit_hole(out, now, hole, room=room, opts=opts,
                                             seg_size=seg_size, max_payload=max_payload)
            flight = self._pipe()
        elif self._in_recovery and self.config.prr:
            flight = self._reno_pipe()
        else:
            flight = self._flight()
        # New data, or resending after a timeout (skipping what the peer SACKed).
        seq = self.snd_nxt
        if seq < self.snd_max and self._scoreboard.sacked_bytes:
            seq = min(self._scoreboard.skip_sacked(seq), self.snd_max)
            self.snd_nxt = seq
        avail = self._data_end() - seq
        if avail <= 0:
            if self._send_fin(out, now, opts):
                return True
            return self._rule3_or_4(out, now, opts, seg_size) if sack_recovery else False
        if self._snd_up > seq:
            # Urgent mode: each segment carries its own urgent pointer, which a device
            # would copy unchanged into every segment of a TSO packet — so none.
            max_payload = seg_size
        if self._cwr_pending and not self.config.tso_ecn and seq >= self.snd_max:
            # The device cannot segment a packet carrying CWR (no HOST_ECN): the CWR
            # segment goes out alone, as Linux does without NETIF_F_TSO_ECN.
            max_payload = seg_size
        wnd_room = self.snd_una + self.snd_wnd - seq
        cwnd_room = self._cc.cwnd - flight
        limited = False
        if (cwnd_room < smss and 0 < self._dupacks < 3 and not self._in_recovery
                and seq >= self.snd_max and self.config.limited_transmit):
            # RFC 3042: one new segment per duplicate ACK, at most two beyond cwnd;
            # cwnd itself is not changed. The bound is on the data outstanding (§2:
            # FlightSize <= cwnd + 2*SMSS), SACKed bytes included: with SACK the
            # segments SACKed already let one new segment go per duplicate ACK.
            room = self._cc.cwnd + self._dupacks * smss - (self.snd_nxt - self.snd_una)
            if room >= min(smss, avail):
                cwnd_room, max_payload, limited = min(room, smss), min(max_payload, smss), True
        limit = min(avail, wnd_room, cwnd_room, max_payload)
        retransmit = seq < self.snd_max
        if retransmit:
            nxt = self._scoreboard.next_sacked_start(seq)
            if nxt is not None:
                limit = min(limit, nxt - seq)
        if limit <= 0:
            return self._rule3_or_4(out, now, opts, seg_size) if sack_recovery else False
        if (not retransmit and not self._in_recovery and not limited and self._tso_defers(
                limit, avail=avail, flight=flight, seg_size=seg_size, max_payload=max_payload)):
            return False
        size = limit
        if size < seg_size:
            if not retransmit and not self._small_segment_ok(size, avail):
                return self._rule3_or_4(out, now, opts, seg_size) if sack_recovery else False
        elif size < avail:
            size -= size % seg_size  # not the tail: whole segments only
        elif size % seg_size and self._nagle_holds():
            size -= size % seg_size  # the small tail waits for the ACK (Nagle)
        self._transmit(out, seq, size, now, opts=opts, seg_size=seg_size)
        if limited:
            self.counters.limited_transmits += 1
        return True

    def _tso_defers(self, limit: int, *, avail: int, flight: int, seg_size: int,
                    max_payload: int) -> bool:
        """TSO deferral (Linux ``tcp_tso_should_defer``): with segmentation offload,
        more data queued than the windows let go now, and data in flight whose ACKs will
        open them further, wait rather than send a small packet — unless the room is a
        full TSO packet or at least 1/``tso_win_divisor`` of the smaller window. Keeps
        the packets the device segments large (fewer descriptors and notifications per
        byte). Never with nothing in flight (no ACK would come to end the wait)."""
        divisor = self.config.tso_win_divisor
        if not divisor or max_payload <= seg_size or flight <= 0 or limit >= avail:
            return False
        if limit >= max_payload - max_payload % seg_size:
            return False
        chunk = min(self.snd_wnd, self._cc.cwnd) // divisor
        if limit >= chunk:
            return False
        self.counters.tso_deferrals += 1
        return True

    def _small_segment_ok(self, size: int, avail: int) -> bool:
        """Sender-side SWS avoidance (RFC 9293 §3.8.6.2.1) with Nagle (§3.7.4): a segment
        below Eff.snd.MSS goes when it carries all queued data or at least half the largest
        window the peer offered, and (Nagle) nothing is unacknowledged or we are closing."""
        if not (size == avail or (self.max_snd_wnd > 0 and size >= self.max_snd_wnd // 2)):
            return False
        return not self._nagle_holds()

    def _nagle_holds(self) -> bool:
        return self.config.nagle and self.snd_nxt > self.snd_una and not self._fin_queued

    def _transmit(self, out: list[Outgoing], seq: int, length: int, now: int, *,
                  opts: tuple[TcpOption, ...], seg_size: int, probe: bool = False) -> int:
        """Send ``length`` bytes from position ``seq`` (FIN added when they end the queued
        data and the send side is shut); returns the payload size sent."""
        payload = self._send_buf.peek(seq - self._buf_seq, length)
        end = seq + len(payload)
        data_end = self._data_end()
        flags = _ACK
        if payload and end == data_end:
            flags |= _PSH
        fin = (self._fin_queued and end == data_end and self.state in FIN_STATES and not probe)
        if fin:
            flags |= _FIN
        seq_end = end + (1 if fin else 0)
        retransmit = seq < self.snd_max
        if self._in_recovery or self._cwr:
            self._prr.on_sent(len(payload))
        if retransmit:
            self.counters.retransmitted_segments += 1
            self.counters.retransmitted_bytes += max(min(end, self.snd_max) - seq, 0)
            if self._undo is not None and not probe:
                self._undo.on_retransmit(seq, min(seq_end, self.snd_max),
                                         self._tsval(now) if self.ts_enabled else None)
            if not probe and self._rack_on():
                self._rack.on_retransmit(seq, min(seq_end, self.snd_max), now)
            if self._timing is not None and seq < self._timing[0]:
                self._timing = None  # Karn: the sample would be ambiguous
        elif self._timing is None:
            self._timing = (seq_end, now)
        ecn = Ecn.NOT_ECT
        if self.ecn_enabled and payload and not retransmit and not probe:
            # RFC 3168 §6.1.4-§6.1.5: ECT(0) on new data only, never on retransmissions,
            # window probes or pure ACKs; CWR on the first new data after a reduction.
            ecn = Ecn.ECT0
            if self._cwr_pending:
                self._cwr_pending = False
                flags |= _CWR
                self.counters.ecn_cwr_out += 1
        if seq_end > self.snd_max:
            if self.sack_enabled and self.config.rack:
                self._rack.on_send(seq_end, now)  # RFC 8985 §6.1: the send time
            if not probe:
                self._sent_new_data = True
        if seq <= self.snd_nxt:
            self.snd_nxt = max(self.snd_nxt, seq_end)
        self.snd_max = max(self.snd_max, seq_end)
        if not probe and self._rto_at is None:
            self._rto_at = now + self._rtt.rto
        self._flight_peak = max(self._flight_peak, self.snd_nxt - self.snd_una)
        urgent = 0
        if self._snd_up > seq and self._snd_up > self.snd_una:
            # RFC 9293 §3.8.5: URG and the offset of the octet after the urgent data
            # (at most 0xFFFF: the pointer then only says urgent data lies ahead)
            flags |= _URG
            urgent = min(self._snd_up - seq, 0xFFFF)
            self.counters.urgent_out += 1
        seg = self._segment(seq, flags, payload, opts, urgent)
        self._emit(out, seg, seg_size if len(payload) > seg_size else None, ecn)
        return len(payload)

    def _send_fin(self, out: list[Outgoing], now: int, opts: tuple[TcpOption, ...]) -> bool:
        fin_seq = self._fin_seq()
        if fin_seq is None or self.state not in FIN_STATES or self.snd_nxt != fin_seq:
            return False
        self._transmit(out, fin_seq, 0, now, opts=opts, seg_size=1)
        return True

    def _retransmit_head(self, out: list[Outgoing], now: int, opts: tuple[TcpOption, ...],
                         seg_size: int) -> bool:
        """Fast retransmit (RFC 5681 §3.2 step 2, RFC 6582 partial ACK, RFC 6675 §5 step
        4.3): one segment from SND.UNA."""
        start = self.snd_una
        limit = min(self.eff_mss, self._data_end() - start, seg_size)
        nxt = self._scoreboard.next_sacked_start(start)
        if nxt is not None:
            limit = min(limit, nxt - start)
        if limit > 0:
            sent = self._transmit(out, start, limit, now, opts=opts, seg_size=seg_size)
            self._high_rxt = max(self._high_rxt, start + sent)
            if self.sack_enabled:
                self.counters.sack_recovered_bytes += sent
            return True
        fin_seq = self._fin_seq()
        if fin_seq is not None and fin_seq == start and self.snd_max > fin_seq:
            self._transmit(out, fin_seq, 0, now, opts=opts, seg_size=seg_size)
            self._high_rxt = max(self._high_rxt, fin_seq + 1)
            return True
        return False

    def _retransmit_hole(self, out: list[Outgoing], now: int, hole: tuple[int, int], *,
                         room: int, opts: tuple[TcpOption, ...], seg_size: int,
                         max_payload: int) -> bool:
        """RFC 6675 NextSeg rule (1): the lowest lost un-SACKed range above HighRxt, as many
        whole segments as cwnd - pipe allows (one TSO segment when the device can)."""
        start, end = hole
        smss = self.eff_mss
        allowed = max(room - room % smss, smss)
        length = min(end - start, allowed, max_payload, self._data_end() - start)
        if length <= 0:
            fin_seq = self._fin_seq()
            if fin_seq is not None and start == fin_seq and self.snd_max > fin_seq:
                self._transmit(out, fin_seq, 0, now, opts=opts, seg_size=seg_size)
                self._high_rxt = fin_seq + 1
                return True
            self._high_rxt = max(self._high_rxt, end)
            return True
        if length > seg_size and length < end - start:
            length -= length % seg_size
        sent = self._transmit(out, start, length, now, opts=opts, seg_size=seg_size)
        self._high_rxt = start + sent
        self.counters.sack_recovered_bytes += sent
        return True

    def _rule3_or_4(self, out: list[Outgoing], now: int, opts: tuple[TcpOption, ...],
                    seg_size: int) -> bool:
        """RFC 6675 NextSeg rules (3), then (4) when (1)-(3) found nothing to send."""
        return self._rule3(out, now, opts, seg_size) or self._rescue(out, now, opts, seg_size)

    def _rescue(self, out: list[Outgoing], now: int, opts: tuple[TcpOption, ...],
                seg_size: int) -> bool:
        """RFC 6675 §4 NextSeg rule (4), the rescue retransmission: once per recovery
        episode (HighACK > RescueRxt, RescueRxt then set to RecoveryPoint), one segment
        of at most SMSS ending at the highest un-SACKed octet outstanding. HighRxt is not
        moved (so pipe does not count it). A lost tail, which no SACK above it can ever
        mark lost, is resent without waiting for the retransmission timer."""
        if not self.config.rescue_retransmit or (
                self._rescue_rxt is not None and self.snd_una <= self._rescue_rxt):
            return False
        hole = self._scoreboard.last_hole(self.snd_una, self.snd_max)
        if hole is None:
            return False
        start, end = hole
        data_end = self._data_end()
        start = max(start, min(end, data_end) - min(seg_size, self.eff_mss))
        length = min(end, data_end) - start
        fin_seq = self._fin_seq()
        if length <= 0 and not (fin_seq is not None and start == fin_seq < self.snd_max):
            return False
        self._rescue_rxt = self._recover
        sent = self._transmit(out, start, max(length, 0), now, opts=opts, seg_size=seg_size)
        self.counters.rescue_retransmits += 1
        self.counters.sack_recovered_bytes += sent
        return True

    def _rule3(self, out: list[Outgoing], now: int, opts: tuple[TcpOption, ...],
               seg_size: int) -> bool:
        """RFC 6675 NextSeg rule (3): with nothing lost and no new data to send, one
        segment of un-SACKed data below the highest SACKed octet."""
        highest = self._scoreboard.highest
        if highest is None:
            return False
        hole = self._scoreboard.next_hole(max(self._high_rxt, self.snd_una), highest)
        if hole is None:
            return False
        start, end = hole
        length = min(end - start, seg_size, self._data_end() - start)
        if length <= 0:
            return False
        sent = self._transmit(out, start, length, now, opts=opts, seg_size=seg_size)
        self._high_rxt = start + sent
        self.counters.sack_recovered_bytes += sent
        return True
