"""Segment arrival at a TCP connection (RFC 9293 §3.10.7) in every state: the handshake,
the acceptability test with PAWS (RFC 7323) and RFC 5961's checks, the receive side
(segment text, out-of-order data, D-SACK, delayed ACKs, FIN) and ECN's receiver side."""

from __future__ import annotations

from stack.tcp import seq as sq
from stack.tcp.congestion import make_congestion_control
from stack.tcp.options import MIN_PEER_MSS, SynOptions, find_timestamps, window_shift_for
from stack.tcp.receive_buffer import ReceiveBuffer
from stack.tcp.segment import Segment
from stack.tcp.state import RECEIVING, TcpState
from stack.tcp.tcb import _ACK, _CWR, _ECE, _ECN_SETUP, _FIN, _RST, _SYN, _URG
from stack.tcp.timers import _Timers
from stack.wire.ecn import Ecn
from stack.wire.tcp import TcpFlags, TimestampsOption

PAWS_IDLE_NS = 24 * 86_400 * 1_000_000_000
"""RFC 7323 §5.5: TS.Recent older than 24 days is invalid."""
_RECENT_SACK_RANGES = 4


def rst_for(seg: Segment) -> Segment | None:
    """RFC 9293 §3.10.7.1: the reset that answers ``seg`` sent to a CLOSED port (or a
    segment a listener cannot take); None when ``seg`` is itself a reset."""
    if seg.flags & _RST:
        return None
    if seg.flags & _ACK:
        return Segment(sport=seg.dport, dport=seg.sport, seq=seg.ack & sq.MASK, ack=0,
                       flags=_RST, window=0)
    return Segment(sport=seg.dport, dport=seg.sport, seq=0,
                   ack=(seg.seq + seg.seg_len) & sq.MASK, flags=_RST | _ACK, window=0)


class _Input(_Timers):
    """Segment arrival."""

    def on_segment(self, seg: Segment, now: int) -> None:
        """Segment arrival (RFC 9293 §3.10.7) in every state. Never raises for any
        segment; responses come out of the next poll()."""
        c = self.counters
        c.segments_in += 1
        c.bytes_in += len(seg.payload)
        if seg.flags & _RST:
            c.resets_in += 1
        if seg.sport != self.remote_port or seg.dport != self.local_port:
            return
        state = self.state
        if state is TcpState.CLOSED:
            rst = rst_for(seg)
            if rst is not None:
                self._rst_queue.append(rst)
        elif state is TcpState.LISTEN:
            self._on_listen(seg, now)
        elif state is TcpState.SYN_SENT:
            self._on_syn_sent(seg, now)
        else:
            self._on_other(seg, now)

    def _negotiate(self, syn: Segment, now: int) -> None:
        """Options of the peer's SYN: MSS (RFC 9293 §3.7.1), window scale (RFC 7323 §2.2,
        both must offer it), SACK-permitted (RFC 2018 §2), timestamps (RFC 7323 §3.2)."""
        cfg = self.config
        opts = SynOptions.parse(syn.options)
        mss = opts.mss if opts.mss is not None else cfg.default_mss
        self.peer_mss = max(mss, MIN_PEER_MSS)
        if cfg.window_scaling and opts.window_shift is not None:
            self.window_scaling = True
            self.snd_wscale = opts.window_shift
            self.rcv_wscale = window_shift_for(cfg.receive_buffer)
        self.sack_enabled = cfg.sack and opts.sack_permitted
        if cfg.timestamps and opts.timestamps is not None:
            self.ts_enabled = True
            self._ts_recent = opts.timestamps.tsval
            self._ts_recent_at = now
        self.irs = syn.seq & sq.MASK
        self._rcv = ReceiveBuffer(cfg.receive_buffer, self.irs + 1)
        self._last_ack_sent = self.irs + 1
        self._cc = make_congestion_control(cfg.congestion, self.eff_mss,
                                           cfg.initial_window_segments)

    def _on_listen(self, seg: Segment, now: int) -> None:
        """RFC 9293 §3.10.7.2."""
        flags = seg.flags
        if flags & _RST:
            return
        if flags & _ACK:
            self._queue_rst(sq.unwrap(seg.ack, 0))
            return
        if not flags & _SYN:
            return
        self._negotiate(seg, now)
        # RFC 3168 §6.1.1: the peer asks for ECN with ECE and CWR on its SYN.
        self.ecn_enabled = self.config.ecn != "off" and flags & _ECN_SETUP == _ECN_SETUP
        self._rcv_adv = self._rcv.rcv_nxt
        self.snd_wnd = seg.window  # the window of a SYN is never scaled (RFC 7323 §2.2)
        self.max_snd_wnd = self.snd_wnd
        self._snd_wl1 = self.irs
        self._snd_wl2 = self.iss
        self.state = TcpState.SYN_RECEIVED
        self._last_rcv = now
        # Data on the SYN is not kept (the peer retransmits it after the handshake).

    def _on_syn_sent(self, seg: Segment, now: int) -> None:
        """RFC 9293 §3.10.7.3 (with RFC 5961 §3: a RST must acknowledge our SYN)."""
        flags = seg.flags
        ack: int | None = None
        if flags & _ACK:
            ack = sq.unwrap(seg.ack, self.snd_una)
            if ack <= self.iss or ack > self.snd_max:
                if not flags & _RST:
                    self._queue_rst(ack)
                return
        if flags & _RST:
            if ack is not None:
                self._fail("refused")
            return
        if not flags & _SYN:
            return
        self._negotiate(seg, now)
        self._rcv_adv = self._rcv.rcv_nxt + self._syn_window
        self.snd_wnd = seg.window
        self.max_snd_wnd = self.snd_wnd
        self._snd_wl1 = self.irs
        self._snd_wl2 = ack if ack is not None else self.iss
        self._last_rcv = now
        if ack is None:
            # Simultaneous open (RFC 9293 Figure 8): SYN-RECEIVED, our SYN again with ACK.
            self.state = TcpState.SYN_RECEIVED
            self.snd_nxt = self.iss
            return
        # RFC 3168 §6.1.1: the peer agreed to our ECN-setup SYN with ECE (and no CWR).
        self.ecn_enabled = self._syn_ecn and flags & _ECN_SETUP == _ECE
        self._take_rtt_sample(seg, ack, now)
        self.snd_una = ack
        self._rto_at = None
        self._retries = 0
        self._established(now)
        self._ack_now = True
        if seg.payload or flags & _FIN:
            self._process_text(seg, self.irs, now)

    def _acceptable(self, seq: int, seg_len: int) -> bool:
        """RFC 9293 §3.10.7.4 first step: the acceptability table."""
        rcv_nxt = self._rcv.rcv_nxt
        wnd = max(self._rcv_adv - rcv_nxt, 0)
        if seg_len == 0:
            return seq == rcv_nxt if wnd == 0 else rcv_nxt <= seq < rcv_nxt + wnd
        if wnd == 0:
            return False
        last = seq + seg_len - 1
        return rcv_nxt <= seq < rcv_nxt + wnd or rcv_nxt <= last < rcv_nxt + wnd

    def _on_other(self, seg: Segment, now: int) -> None:
        """RFC 9293 §3.10.7.4: SYN-RECEIVED and the synchronized states."""
        flags = seg.flags
        rcv_nxt = self._rcv.rcv_nxt
        seq = sq.unwrap(seg.seq, rcv_nxt)
        syn_window = False
        if flags & _SYN and self.state is TcpState.SYN_RECEIVED and seq == self.irs:
            if not flags & (_ACK | _RST):
                self.snd_nxt = self.iss  # our SYN-ACK was lost: send it again now
                return
            if flags & _ACK and not flags & _RST:
                # The peer's SYN-ACK in a simultaneous open: its SYN is old news here.
                seq += 1
                flags &= ~_SYN
                syn_window = True
        ts = find_timestamps(seg.options) if self.ts_enabled else None
        if self.ts_enabled and not flags & _RST:
            if ts is None:
                self.counters.paws_drops += 1  # RFC 7323 §3.2: SHOULD drop silently
                return
            if self._paws_rejects(ts, now):
                self.counters.paws_drops += 1
                if seg.payload and not flags & _SYN:
                    # Typically the original of a segment whose retransmission came
                    # first (reordering): the ACK reports it in a D-SACK block, so the
                    # sender can tell its retransmission was needless (RFC 2883; Linux
                    # tcp_send_dupack for a PAWS-rejected segment).
                    self._note_duplicate(seq, len(seg.payload))
                self._answer_invalid(seg, flags, now)  # RFC 7323 §5.3 R1
                return
        seg_len = len(seg.payload) + (1 if flags & _SYN else 0) + (1 if flags & _FIN else 0)
        if not self._acceptable(seq, seg_len):
            if flags & _RST:
                return
            if seg.payload and not flags & _SYN:
                self._note_duplicate(seq, len(seg.payload))
            if self._answer_invalid(seg, flags, now) and flags & _SYN:
                self.counters.challenge_acks += 1
            if (self.state is TcpState.TIME_WAIT and flags & _FIN
                    and seq + seg_len == self._rcv.rcv_nxt):
                self._time_wait_at = now + self.config.time_wait_ns  # retransmitted FIN
            elif (not flags & _SYN and flags & _ACK and seq == rcv_nxt
                  and self._rcv_adv <= rcv_nxt):
                # Zero receive window: still take the ACK (RFC 9293 §3.10.7.4).
                self._on_ack_field(seg, seq, now, syn_window, flags)
            return
        if ts is not None and seq <= self._last_ack_sent and sq.ge(ts.tsval, self._ts_recent):
            self._ts_recent = ts.tsval  # RFC 7323 §4.3 (2)
            self._ts_recent_at = now
        self._last_rcv = now
        self._keepalive_probes = 0
        self._probes_unanswered = 0
        # Second: RST (RFC 5961 §3.2).
        if flags & _RST:
            if seq == rcv_nxt:
                self._on_reset()
            elif self._answer_invalid(seg, flags, now):
                self.counters.challenge_acks += 1
            return
        # Fourth: SYN in a synchronized state (RFC 5961 §4.2): challenge ACK.
        if flags & _SYN:
            if self._answer_invalid(seg, flags, now):
                self.counters.challenge_acks += 1
            return
        if self.ecn_enabled:
            self._ecn_receive(seg, flags)
        # Fifth: ACK.
        if not flags & _ACK:
            return
        if not self._on_ack_field(seg, seq, now, syn_window, flags):
            return
        # Sixth: URG (RFC 9293 §3.10.7.4): RCV.UP <- max(RCV.UP, SEG.UP); the data itself
        # is delivered inline and urgent_mark tells the application how far it reaches.
        if flags & _URG and self.state in RECEIVING:
            self.counters.urgent_in += 1
            up = seq + seg.urgent
            if self._rcv_up is None or up > self._rcv_up:
                self._rcv_up = up
        self._process_text(seg, seq, now, flags)

    def _ecn_receive(self, seg: Segment, flags: TcpFlags) -> None:
        """RFC 3168 §6.1.3: CWR from the sender ends the ECE echo; a CE mark starts it
        (in that order, so a segment with both keeps it going). The first CE is
        acknowledged at once, as Linux does, so the sender hears of it within an RTT."""
        if flags & _CWR:
            self._ece_pending = False
        if seg.ecn == Ecn.CE:
            self.counters.ecn_ce_in += 1
            if not self._ece_pending:
                self._ack_now = True
            self._ece_pending = True

    def _paws_rejects(self, ts: TimestampsOption, now: int) -> bool:
        """RFC 7323 §5.3 R1 with §5.5: a TSval older than TS.Recent by more than
        ``paws_window`` ticks, unless TS.Recent is more than 24 days old."""
        if now - self._ts_recent_at > PAWS_IDLE_NS:
            self._ts_recent = ts.tsval
            self._ts_recent_at = now
            return False
        return sq.lt(ts.tsval, self._ts_recent - self.config.paws_window)

    def _on_reset(self) -> None:
        state = self.state
        if state is TcpState.SYN_RECEIVED:
            self._fail("reset" if self._passive else "refused")
        elif state in (TcpState.CLOSING, TcpState.LAST_ACK, TcpState.TIME_WAIT):
            self._to_closed()
        else:
            self._fail("reset")

    def _process_text(self, seg: Segment, seq: int, now: int,
                      flags: TcpFlags | None = None) -> None:
        """Seventh (segment text) and eighth (FIN) steps of RFC 9293 §3.10.7.4."""
        flags = seg.flags if flags is None else flags
        payload = seg.payload
        data_seq = seq + (1 if flags & _SYN else 0)
        fin_pos = data_seq + len(payload) if flags & _FIN else None
        if payload and self.state in RECEIVING:
            if self._rd_closed:
                # RFC 1122 §4.2.2.13: data after CLOSE is lost; say so with a RST.
                self._queue_rst(self.snd_max)
                self._to_closed()
                return
            self._receive(data_seq, payload, now)
        elif payload:
            self._ack_now = True
        rcv_nxt = self._rcv.rcv_nxt
        if (fin_pos is not None and not self._fin_received
                and rcv_nxt <= fin_pos <= self._rcv_adv):
            self._rcv_fin = fin_pos  # the FIN waits for the data before it
            self._ack_now = True
        if self._rcv_fin is not None and self._rcv_fin == rcv_nxt:
            self._process_fin(now)

    def _receive(self, data_seq: int, payload: bytes, now: int) -> None:
        rcv = self._rcv
        self._note_duplicate(data_seq, len(payload))
        start = max(data_seq, rcv.rcv_nxt)
        end = min(data_seq + len(payload), self._rcv_adv)
        if end <= start:
            self._ack_now = True
            return
        data = payload[start - data_seq : end - data_seq]
        if end < data_seq + len(payload):
            self._ack_now = True  # trimmed at the window's edge
        result = rcv.insert(start, data)
        if result.out_of_order:
            self.counters.out_of_order_segments += 1
            self._sack_recent.insert(0, (start, end))
            del self._sack_recent[_RECENT_SACK_RANGES:]
            self._ack_now = True  # RFC 5681 §4.2: immediately for out-of-order data
            return
        if result.filled_hole or rcv.ooo_bytes:
            self._ack_now = True  # RFC 5681 §4.2: a segment filling (part of) a gap
            return
        if not self.config.delayed_ack:
            self._ack_now = True
            return
        # RFC 9293 §3.8.6.3 / RFC 5681 §4.2: ACK at least every second full-sized
        # segment (a coalesced segment counts as the segments it holds), else within
        # the delayed-ACK time.
        self._unacked_bytes += result.advanced
        if self._unacked_bytes >= 2 * self.eff_mss:
            self._ack_now = True
        elif self._delack_at is None:
            self._delack_at = now + self.config.delayed_ack_ns

    def _note_duplicate(self, seq: int, length: int) -> None:
        """RFC 2883: data we already had — a retransmission the sender need not have
        made, or a duplicate from the network — goes into a D-SACK block: below RCV.NXT
        (§4.1), or above it when the out-of-order queue holds all of it (§4.2; the SACK
        block holding it follows in the same ACK, as Linux's tcp_data_queue_ofo does)."""
        if not (self.sack_enabled and self.config.dsack):
            return
        rcv = self._rcv
        end = seq + length
        if seq < rcv.rcv_nxt:
            self._dsack = (seq, min(end, rcv.rcv_nxt))
            self.counters.dsacks_out += 1
        elif rcv.holds_out_of_order(seq, end):
            self._dsack = (seq, end)
            self.counters.dsacks_out += 1

    def _process_fin(self, now: int) -> None:
        self._rcv.rcv_nxt += 1
        self._rcv_fin = None
        self._fin_received = True
        self._ack_now = True
        state = self.state
        if state in (TcpState.SYN_RECEIVED, TcpState.ESTABLISHED):
            self.state = TcpState.CLOSE_WAIT
        elif state is TcpState.FIN_WAIT_1:
            fin_seq = self._fin_seq()
            if fin_seq is not None and self.snd_una > fin_seq:
                self._enter_time_wait(now)
            else:
                self.state = TcpState.CLOSING
        elif state is TcpState.FIN_WAIT_2:
            self._enter_time_wait(now)
