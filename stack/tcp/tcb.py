"""The state of one TCP connection (the TCB of RFC 9293 §3.3 plus the extensions' state)
and the small queries and state changes all of
:class:`~stack.tcp.connection.TcpConnection` shares.

``TcpConnection`` is a chain of classes, each in its own module and each building on the
one before: :class:`_Tcb` (here) → :class:`~stack.tcp.output._Output` (what goes out) →
:class:`~stack.tcp.recovery._Recovery` (ACKs of our data, loss recovery) →
:class:`~stack.tcp.timers._Timers` → :class:`~stack.tcp.input._Input` (segment arrival) →
:class:`~stack.tcp.connection.TcpConnection` (the public calls). A method sits in the
lowest class every caller of it can see.
"""

from __future__ import annotations

from stack.tcp import seq as sq
from stack.tcp.config import TcpConfig
from stack.tcp.congestion import CongestionControl, make_congestion_control
from stack.tcp.counters import TcpCounters
from stack.tcp.options import TIMESTAMPS_OVERHEAD
from stack.tcp.prr import Prr
from stack.tcp.rack import Rack
from stack.tcp.receive_buffer import ReceiveBuffer
from stack.tcp.rtt import RttEstimator
from stack.tcp.sack import Scoreboard
from stack.tcp.segment import Segment
from stack.tcp.send_buffer import SendBuffer
from stack.tcp.state import TcpError, TcpState
from stack.tcp.tlp import TlpEpisode
from stack.tcp.undo import UndoEpisode
from stack.wire.tcp import TcpFlags

_ACK = TcpFlags.ACK
_SYN = TcpFlags.SYN
_FIN = TcpFlags.FIN
_RST = TcpFlags.RST
_PSH = TcpFlags.PSH
_URG = TcpFlags.URG
_ECE = TcpFlags.ECE
_CWR = TcpFlags.CWR
_ECN_SETUP = TcpFlags.ECE | TcpFlags.CWR


class _Tcb:
    """The connection's variables (send and receive sequence spaces, negotiated options,
    RTT, congestion and recovery state, ECN, timers) and what is computed from them."""

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

    # ------------------------------------------------------------------ shared queries
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

    def _rack_on(self) -> bool:
        return self.sack_enabled and self.config.rack

    def _rack_floor(self) -> int | None:
        """RACK's lost boundary, for RFC 6675's pipe and NextSeg (None: nothing)."""
        rack = self._rack
        if self._rack_on() and rack.lost_end > self.snd_una and rack.active(self.snd_una):
            return rack.lost_end
        return None

    # ------------------------------------------------------------------ state changes
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

    def _arm_fin_wait2(self, now: int) -> None:
        timeout = self.config.fin_wait2_timeout_ns
        if (self.state is TcpState.FIN_WAIT_2 and self._rd_closed and timeout is not None
                and self._fin_wait2_at is None):
            self._fin_wait2_at = now + timeout

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
