"""One TCP connection as a sans-IO state machine (RFC 9293 with RFC 5961, RFC 7323,
RFC 2018/6675, RFC 6298, RFC 5681/6582, RFC 9438), emitting TSO-sized segments when the
device can segment them (smoltcp PR 1148).

Loss recovery beyond RFC 6675 lives in small modules this one drives: PRR for the window
during recovery (:mod:`stack.tcp.prr`, RFC 6937), RACK's time-based loss detection and
the tail loss probe (:mod:`stack.tcp.rack`, :mod:`stack.tcp.tlp`, RFC 8985), and the
undo of spurious reductions (:mod:`stack.tcp.undo`, RFC 2883 / 3522 / 3708).

Feed it segments with :meth:`TcpConnection.on_segment`, call :meth:`TcpConnection.poll`
after every input (a segment, ``send``, ``recv``, ``shutdown``, ``close``, ``abort``) and
at :meth:`TcpConnection.next_deadline`; ``poll`` returns everything to transmit. Time is
the caller's ``now`` in integer nanoseconds.

Sequence positions inside are unwrapped integers (:mod:`stack.tcp.seq`): ``snd_una``,
``snd_nxt``, ``snd_max``, ``rcv_nxt`` grow without wrapping from the ISN / IRS; the wire
value is the position modulo 2**32. ``snd_max`` is the highest position ever sent (RFC
6675's HighData); ``snd_nxt`` falls back to ``snd_una`` after a retransmission timeout
(go-back-N, RFC 5681 §3.1 with RFC 6675 §5.1's use of SACK information to skip what the
receiver holds).
"""

from __future__ import annotations

from stack.tcp import seq as sq
from stack.tcp.config import TcpConfig
from stack.tcp.congestion import CongestionControl, make_congestion_control
from stack.tcp.counters import TcpCounters
from stack.tcp.options import (
    MIN_PEER_MSS,
    TIMESTAMPS_OVERHEAD,
    SynOptions,
    find_timestamps,
    options_length,
    sack_blocks,
    segment_options,
    syn_options,
    window_shift_for,
)
from stack.tcp.prr import Prr
from stack.tcp.rack import Rack
from stack.tcp.receive_buffer import ReceiveBuffer
from stack.tcp.rtt import RttEstimator
from stack.tcp.sack import DUP_THRESH, Scoreboard, dsack_range, report_blocks
from stack.tcp.segment import Outgoing, Segment
from stack.tcp.send_buffer import SendBuffer
from stack.tcp.state import (
    FIN_STATES,
    RECEIVING,
    SENDING,
    TcpError,
    TcpState,
)
from stack.tcp.tlp import TlpEpisode, TlpOutcome, pto
from stack.tcp.undo import UndoEpisode
from stack.wire.ecn import Ecn
from stack.wire.tcp import TcpFlags, TcpOption, TimestampsOption

__all__ = ["Outgoing", "Segment", "TcpConnection", "TcpCounters", "TcpError", "TcpState",
           "rst_for"]

_ACK = TcpFlags.ACK
_SYN = TcpFlags.SYN
_FIN = TcpFlags.FIN
_RST = TcpFlags.RST
_PSH = TcpFlags.PSH
_URG = TcpFlags.URG
_ECE = TcpFlags.ECE
_CWR = TcpFlags.CWR
_ECN_SETUP = TcpFlags.ECE | TcpFlags.CWR

NS_PER_MS = 1_000_000
PAWS_IDLE_NS = 24 * 86_400 * 1_000_000_000
"""RFC 7323 §5.5: TS.Recent older than 24 days is invalid."""
MAX_SEGMENTS_PER_POLL = 1 << 16
"""Bound of the transmit loop in one poll."""
MAX_SACK_BLOCKS = 4
MAX_SACK_BLOCKS_WITH_TS = 3
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


class TcpConnection:
    """One end of a TCP connection (RFC 9293 §3.3 TCB plus the extensions' state)."""

    def __init__(self, local_port: int, remote_port: int, config: TcpConfig, *, isn: int,
                 now: int) -> None:
        for port in (local_port, remote_port):
            if not 0 <= port <= 0xFFFF:
                raise ValueError(f"port {port} out of range")
        if not 0 <= isn <= sq.MASK:
            raise ValueError(f"isn {isn} is not a 32-bit value")
        self.local_port = local_port
        self.remote_port = remote_port
        self.config = config
        self.state = TcpState.CLOSED
        self.error: TcpError | None = None
        self.counters = TcpCounters()
        self._opened = False
        self._passive = False
        self._max_segment_payload = config.max_segment_payload
        self._path_mss: int | None = None
        # Send sequence space (RFC 9293 §3.3.1), unwrapped.
        self.iss = isn
        self.snd_una = isn
        self.snd_nxt = isn
        self.snd_max = isn
        self.snd_wnd = 0
        self.max_snd_wnd = 0
        self._snd_wl1 = 0
        self._snd_wl2 = isn
        self._send_buf = SendBuffer(config.send_buffer)
        self._buf_seq = isn + 1
        """Position of the first byte in the send buffer."""
        self._fin_queued = False
        self._rd_closed = False
        self._snd_up = isn
        """SND.UP: the position after the last urgent octet queued (RFC 9293 §3.8.5);
        urgent mode while SND.UNA < SND.UP."""
        self._rcv_up: int | None = None
        """RCV.UP: the position after the last urgent octet the peer announced."""
        # Receive sequence space.
        self.irs = 0
        self._rcv = ReceiveBuffer(config.receive_buffer, 0)
        self._rcv_adv = 0
        """Right edge of the window we advertised (never moves left: RFC 9293 §3.8.6.2.2)."""
        self._syn_window = 0
        self._rcv_fin: int | None = None
        self._fin_received = False
        self._sack_recent: list[tuple[int, int]] = []
        self._dsack: tuple[int, int] | None = None
        """A duplicate range to report first in the next ACK's SACK option (RFC 2883)."""
        # Negotiated options.
        self.peer_mss = config.default_mss
        self.window_scaling = False
        self.snd_wscale = 0
        self.rcv_wscale = 0
        self.ts_enabled = False
        self.sack_enabled = False
        self._ts_recent = 0
        self._ts_recent_at = now
        self._last_ack_sent = 0
        # RTT, retransmission, congestion.
        self._rtt = RttEstimator(config.rto_initial_ns, config.rto_min_ns, config.rto_max_ns)
        self._cc: CongestionControl = make_congestion_control(
            config.congestion, self.eff_mss, config.initial_window_segments)
        self._timing: tuple[int, int] | None = None
        """Karn's algorithm (RFC 6298 §3): (position whose ACK ends the sample, send time)."""
        self._retries = 0
        self._handshake_retransmitted = False
        self._dupacks = 0
        self._in_recovery = False
        self._recover = isn
        self._high_rxt = isn
        self._fast_rtx = False
        self._partial_acked = False
        self._rescue_rxt: int | None = None
        """RescueRxt of RFC 6675 §4: the recovery point when this episode's rescue
        retransmission went (None: not yet)."""
        self._scoreboard = Scoreboard()
        self._undo: UndoEpisode | None = None
        """The last window reduction, while it may still be found spurious."""
        self._rto_undo_check = False
        """A timeout's first acceptable ACK is still to come (RFC 3522 §3 step 4)."""
        self._prr = Prr()
        self._rack = Rack(isn)
        self._rack_at: int | None = None
        """RACK's reordering timer (RFC 8985 §6.3)."""
        self._pto_at: int | None = None
        """The tail loss probe timer (RFC 8985 §7.2)."""
        self._tlp: TlpEpisode | None = None
        self._sent_new_data = False
        self._reno_sacked = 0
        """Without SACK: bytes taken as delivered above SND.UNA, one SMSS a duplicate
        ACK (RFC 6937 §3's estimate of DeliveredData and pipe without SACK)."""
        self._flight_peak = 0
        self._flight_peak_prev = 0
        self._round_end = isn
        # ECN (RFC 3168 §6.1).
        self.ecn_enabled = False
        """Both ends agreed on ECN in the handshake (RFC 3168 §6.1.1)."""
        self._syn_ecn = False
        """Our last SYN asked for ECN (ECE and CWR set)."""
        self._ece_pending = False
        """Receiver: a CE mark was seen; ECE goes on every ACK until the peer's CWR."""
        self._cwr_pending = False
        """Sender: the window was reduced for ECE; CWR goes on the next new data."""
        self._ecn_recover = isn
        """SND.MAX at the last ECE reduction: no other until SND.UNA passes it (once per
        window of data, RFC 3168 §6.1.2)."""
        self._cwr = False
        """Sender: an ECE reduction under way, paced by PRR until SND.UNA passes
        ``_ecn_recover`` (RFC 6937 §1 covers reductions for ECN too; Linux's CWR state)."""
        # Receiver ACK state.
        self._ack_now = False
        self._unacked_bytes = 0
        self._read_since_ack = False
        # Timers (absolute ns, None when stopped).
        self._rto_at: int | None = None
        self._delack_at: int | None = None
        self._persist_at: int | None = None
        self._time_wait_at: int | None = None
        self._fin_wait2_at: int | None = None
        self._persist_backoff = 0
        self._probes_unanswered = 0
        self._probe_outstanding = False
        self._keepalive_probes = 0
        self._last_keepalive = now
        self._last_rcv = now
        self._rst_queue: list[Segment] = []
        self._last_invalid_ack: int | None = None

    # ------------------------------------------------------------------ properties
    @property
    def rcv_nxt(self) -> int:
        return self._rcv.rcv_nxt

    @property
    def eff_mss(self) -> int:
        """Eff.snd.MSS (RFC 9293 §3.7.1): min(peer MSS, our MSS) less the timestamps
        option every segment carries (1448 for 1460 with timestamps); the SMSS of
        congestion control and the segment size of TSO."""
        return self._send_mss() - (TIMESTAMPS_OVERHEAD if self.ts_enabled else 0)

    def _send_mss(self) -> int:
        """The largest TCP payload plus options a segment may carry: the peer's MSS, ours,
        and what the path MTU leaves (RFC 1191, RFC 8201)."""
        mss = min(self.peer_mss, self.config.mss)
        return mss if self._path_mss is None else min(mss, self._path_mss)

    @property
    def path_mss(self) -> int | None:
        """The MSS the path MTU allows, once an ICMP error taught it (None: the link's)."""
        return self._path_mss

    @property
    def cwnd(self) -> int:
        return self._cc.cwnd

    @property
    def ssthresh(self) -> int:
        return self._cc.ssthresh

    @property
    def congestion_control(self) -> CongestionControl:
        return self._cc

    @property
    def rtt(self) -> RttEstimator:
        return self._rtt

    @property
    def scoreboard(self) -> Scoreboard:
        return self._scoreboard

    @property
    def in_recovery(self) -> bool:
        return self._in_recovery

    @property
    def ack_pending(self) -> bool:
        """An ACK is due at once (out-of-order data, a filled gap, a window edge...): the
        caller should poll before handing over the next segment (RFC 5681 §4.2)."""
        return self._ack_now

    @property
    def readable(self) -> int:
        return self._rcv.readable

    @property
    def send_space(self) -> int:
        if self._fin_queued or self.state not in _SEND_OPEN:
            return 0
        return self._send_buf.free

    @property
    def send_queued(self) -> int:
        """Bytes written and not yet acknowledged."""
        return len(self._send_buf)

    @property
    def receive_queued(self) -> int:
        """Bytes held out of order (waiting for a hole to fill)."""
        return self._rcv.ooo_bytes

    @property
    def eof(self) -> bool:
        return self._fin_received and self._rcv.readable == 0

    @property
    def is_closed(self) -> bool:
        return self.state is TcpState.CLOSED

    @property
    def max_segment_payload(self) -> int:
        return self._max_segment_payload

    def set_max_segment_payload(self, n: int) -> None:
        if n < 0:
            raise ValueError("max_segment_payload must not be negative")
        self._max_segment_payload = n

    # ------------------------------------------------------------------ ICMP errors
    def icmp_seq_acceptable(self, seq: int) -> bool:
        """RFC 5927 §4.1: an ICMP error is believed only when the TCP sequence number it
        quotes is of data in flight, SND.UNA <= SEG.SEQ < SND.NXT (our SYN in SYN-SENT)."""
        if self.state in (TcpState.CLOSED, TcpState.LISTEN):
            return False
        at = sq.unwrap(seq, self.snd_una)
        if self.state is TcpState.SYN_SENT:
            return at == self.iss
        return self.snd_una <= at < self.snd_max

    def on_path_mtu(self, mss: int, now: int) -> bool:
        """The path carries TCP segments of at most ``mss`` octets of payload and options
        (the path MTU less the IP and TCP headers). A reduction resends what is in
        flight at the new size at once, without a congestion response: the segments were
        dropped for their size, not for congestion (RFC 1191 §6.5, RFC 8201 §5.4, Linux
        ``tcp_simple_retransmit``). Returns whether the segment size changed."""
        mss = max(mss, MIN_PEER_MSS)
        if mss >= self._send_mss():
            return False
        self._path_mss = mss
        self.counters.pmtu_reductions += 1
        if self.state in SENDING and self.snd_max > self.snd_una:
            self.snd_nxt = self.snd_una
            self._rack.reset(self.snd_una, self.snd_max)
            self._timing = None  # Karn: the resent data gives no RTT sample
            self._rto_at = now + self._rtt.rto
        return True

    def on_icmp_error(self, *, hard: bool) -> None:
        """Another ICMP error about this connection (RFC 1122 §4.2.3.9 as RFC 5461 refines
        it): a hard error (protocol or port unreachable) ends a connection still opening;
        anything else is a soft error, counted, the connection going on."""
        if hard and self.state is TcpState.SYN_SENT:
            self._fail("unreachable")
            return
        self.counters.icmp_soft_errors += 1

    # ------------------------------------------------------------------ user calls
    def connect(self, now: int) -> None:
        """Active OPEN (RFC 9293 §3.10.1): CLOSED → SYN-SENT; poll emits the SYN."""
        if self.state is not TcpState.CLOSED or self._opened:
            raise ValueError(f"connect in state {self.state.name}")
        self._opened = True
        self.state = TcpState.SYN_SENT
        self._last_rcv = now

    def listen(self) -> None:
        """Passive OPEN for this connection's port pair: CLOSED → LISTEN."""
        if self.state is not TcpState.CLOSED or self._opened:
            raise ValueError(f"listen in state {self.state.name}")
        self._opened = True
        self._passive = True
        self.state = TcpState.LISTEN

    @classmethod
    def accept_syn(cls, syn: Segment, config: TcpConfig, *, isn: int, now: int) -> TcpConnection:
        """Passive open from a listener's SYN (RFC 9293 §3.10.7.2) → SYN-RECEIVED; poll
        emits the SYN-ACK. ValueError when ``syn`` is not a SYN without ACK and RST."""
        if not syn.flags & _SYN or syn.flags & (_ACK | _RST):
            raise ValueError("accept_syn needs a SYN without ACK or RST")
        conn = cls(syn.dport, syn.sport, config, isn=isn, now=now)
        conn.listen()
        conn.on_segment(syn, now)
        if conn.state is not TcpState.SYN_RECEIVED:  # pragma: no cover - guarded above
            raise ValueError("not an acceptable SYN")
        return conn

    def send(self, data: bytes | bytearray | memoryview, *, urgent: bool = False) -> int:
        """Queue ``data``; returns how many bytes the send buffer took. ``urgent``: the
        bytes taken are urgent data (RFC 9293 §3.8.5): segments up to them carry URG and
        an urgent pointer to the octet after the last one. Raises the connection's
        :class:`TcpError` after a failure, ValueError when our send side is shut down or
        the connection was never opened (RFC 9293 §3.10.2)."""
        if self.error is not None:
            raise self.error
        if self._fin_queued:
            raise ValueError("the send side is shut down")
        if self.state not in _SEND_OPEN:
            if self.state is TcpState.CLOSED and self._opened:
                raise TcpError("closed")
            raise ValueError(f"send in state {self.state.name}")
        taken = self._send_buf.write(data)
        if urgent and taken:
            self._snd_up = self._data_end()
        return taken

    @property
    def urgent_mark(self) -> int | None:
        """Bytes the application can read before the end of the urgent data the peer
        sent (RFC 9293 §3.8.5: the TCP tells the application there is urgent data ahead
        of what it has read); None when there is none ahead. The urgent octets come
        inline, in order, with the rest."""
        if self._rcv_up is None:
            return None
        # the next octet the application reads (RCV.NXT counts the FIN once it came)
        read_at = self._rcv.rcv_nxt - self._rcv.readable - (1 if self._fin_received else 0)
        ahead = self._rcv_up - read_at
        return ahead if ahead > 0 else None

    def recv(self, max_bytes: int = -1) -> bytes:
        """In-order received bytes (all of them when ``max_bytes`` < 0)."""
        data = self._rcv.read(max_bytes)
        if data:
            self._read_since_ack = True
        return data

    def shutdown(self, now: int) -> None:
        """Close our send side: a FIN follows the queued data (RFC 9293 §3.10.4)."""
        if self.state is TcpState.LISTEN:
            self._to_closed()
            return
        if self.state is TcpState.CLOSED or self._fin_queued:
            return
        self._fin_queued = True
        if self.state is TcpState.ESTABLISHED:
            self.state = TcpState.FIN_WAIT_1
        elif self.state is TcpState.CLOSE_WAIT:
            self.state = TcpState.LAST_ACK
        # SYN-SENT / SYN-RECEIVED: the FIN waits for ESTABLISHED.

    def close(self, now: int) -> None:
        """RFC 9293 CLOSE: shutdown, and no more receiving. Unread data, or data arriving
        later, resets the connection (RFC 1122 §4.2.2.13; RFC 9293 §3.6 half-duplex
        close)."""
        if self.state in (TcpState.CLOSED, TcpState.LISTEN, TcpState.SYN_SENT):
            self._to_closed()
            return
        self._rd_closed = True
        if self._rcv.readable > 0 or self._rcv.ooo_bytes > 0:
            self.abort(now)
            return
        self.shutdown(now)
        self._arm_fin_wait2(now)

    def _arm_fin_wait2(self, now: int) -> None:
        timeout = self.config.fin_wait2_timeout_ns
        if (self.state is TcpState.FIN_WAIT_2 and self._rd_closed and timeout is not None
                and self._fin_wait2_at is None):
            self._fin_wait2_at = now + timeout

    def abort(self, now: int) -> None:
        """RFC 9293 ABORT (§3.10.5): send a RST where the peer has state, then CLOSED."""
        if self.state in (TcpState.SYN_RECEIVED, TcpState.ESTABLISHED, TcpState.FIN_WAIT_1,
                          TcpState.FIN_WAIT_2, TcpState.CLOSE_WAIT):
            self._queue_rst(self._snd_seq_for_rst())
        self._to_closed()

    # ------------------------------------------------------------------ time
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

    # ------------------------------------------------------------------ output
    def poll(self, now: int) -> list[Outgoing]:
        """Run expired timers and return everything to send now."""
        out: list[Outgoing] = []
        if self.state is not TcpState.CLOSED:
            self._run_timers(now, out)
        self._flush_rsts(out)
        if self.state is TcpState.CLOSED or self.state is TcpState.LISTEN:
            return out
        if self.state in (TcpState.SYN_SENT, TcpState.SYN_RECEIVED):
            if self.snd_nxt == self.iss:
                self._send_syn(out, now)
        elif self.state in SENDING:
            self._sent_new_data = False
            self._send_data(out, now)
            if self._sent_new_data:
                self._arm_pto(now, restart=True)
            self._arm_persist(now)
        self._send_ack_if_due(out, now)
        return out

    def _flush_rsts(self, out: list[Outgoing]) -> None:
        for rst in self._rst_queue:
            self._emit(out, rst, None)
        self._rst_queue.clear()

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
    def _data_end(self) -> int:
        return self._buf_seq + len(self._send_buf)

    def _fin_seq(self) -> int | None:
        return self._data_end() if self._fin_queued else None

    def _flight(self) -> int:
        """Bytes in flight outside SACK recovery: sent, not acknowledged, not SACKed."""
        flight = self.snd_nxt - self.snd_una
        if self._scoreboard.sacked_bytes:
            flight -= self._scoreboard.sacked_in(self.snd_una, self.snd_nxt)
        return max(flight, 0)

    def _pipe(self) -> int:
        return self._scoreboard.pipe(self.snd_una, self.snd_max, self._high_rxt, self.eff_mss,
                                     self._rack_floor(), dupthresh=not self._rack_on())

    def _reno_pipe(self) -> int:
        """Without SACK: what is in flight less what duplicate ACKs said left the
        network (RFC 6937 §3), and less the segment at SND.UNA while it is taken as lost
        and not yet retransmitted (as RFC 6675's pipe counts a lost segment again only
        once it is retransmitted)."""
        flight = self.snd_nxt - self.snd_una
        if self._fast_rtx:
            flight -= min(self.eff_mss, flight)
        return max(flight - self._reno_sacked, 0)

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

    # ------------------------------------------------------------------ input
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

    def _established(self, now: int) -> None:
        self.state = TcpState.ESTABLISHED
        if self._handshake_retransmitted:
            # RFC 6298 §5.7 and RFC 5681 §3.1: after a lost SYN, RTO = 3 s, IW = 1 SMSS.
            self._rtt.syn_timed_out()
            self._cc.cwnd = self.eff_mss
        self._retries = 0
        self._last_rcv = now
        if self._fin_queued:
            self.state = TcpState.FIN_WAIT_1

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
    def _rack_on(self) -> bool:
        return self.sack_enabled and self.config.rack

    def _rack_floor(self) -> int | None:
        """RACK's lost boundary, for RFC 6675's pipe and NextSeg (None: nothing)."""
        rack = self._rack
        if self._rack_on() and rack.lost_end > self.snd_una and rack.active(self.snd_una):
            return rack.lost_end
        return None

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
        """RFC 2883: data below RCV.NXT that we already had — a retransmission the sender
        need not have made, or a duplicate from the network — goes into a D-SACK block."""
        rcv_nxt = self._rcv.rcv_nxt
        if seq < rcv_nxt and self.sack_enabled and self.config.dsack:
            self._dsack = (seq, min(seq + length, rcv_nxt))
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

    def _enter_time_wait(self, now: int) -> None:
        self.state = TcpState.TIME_WAIT
        self._fin_wait2_at = None
        self._time_wait_at = now + self.config.time_wait_ns
        self._rto_at = None
        self._rack_at = None
        self._pto_at = None
        self._persist_at = None

    # ------------------------------------------------------------------ endings
    def _to_closed(self) -> None:
        self.state = TcpState.CLOSED
        self._rto_at = None
        self._rack_at = None
        self._pto_at = None
        self._delack_at = None
        self._persist_at = None
        self._time_wait_at = None
        self._fin_wait2_at = None
        self._ack_now = False
        self._fast_rtx = False

    def _fail(self, reason: str) -> None:
        self.error = TcpError(reason)
        self._to_closed()
        self._send_buf.consume(len(self._send_buf))


_SEND_OPEN = frozenset({TcpState.SYN_SENT, TcpState.SYN_RECEIVED, TcpState.ESTABLISHED,
                        TcpState.CLOSE_WAIT})
"""States in which the application may still queue data."""
