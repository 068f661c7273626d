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

The class is built in layers, one module each, each subclassing the one before:
:mod:`stack.tcp.tcb` (the connection's state, shared queries and state changes),
:mod:`stack.tcp.output` (segments out), :mod:`stack.tcp.recovery` (ACKs of our data and
loss recovery), :mod:`stack.tcp.timers` and :mod:`stack.tcp.input` (segments in); this
module adds the public calls and :meth:`TcpConnection.poll`.
"""

from __future__ import annotations

from stack.tcp import seq as sq
from stack.tcp.config import TcpConfig
from stack.tcp.congestion import CongestionControl
from stack.tcp.counters import TcpCounters
from stack.tcp.input import _Input, rst_for
from stack.tcp.options import MIN_PEER_MSS
from stack.tcp.rtt import RttEstimator
from stack.tcp.sack import Scoreboard
from stack.tcp.segment import Outgoing, Segment
from stack.tcp.state import SENDING, TcpError, TcpState
from stack.tcp.tcb import _ACK, _RST, _SYN

__all__ = ["Outgoing", "Segment", "TcpConnection", "TcpCounters", "TcpError", "TcpState",
           "rst_for"]


class TcpConnection(_Input):
    """One end of a TCP connection (RFC 9293 §3.3 TCB plus the extensions' state)."""

    # ------------------------------------------------------------------ properties
    @property
    def rcv_nxt(self) -> int:
        return self._rcv.rcv_nxt

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

    def abort(self, now: int) -> None:
        """RFC 9293 ABORT (§3.10.5): send a RST where the peer has state, then CLOSED."""
        if self.state in (TcpState.SYN_RECEIVED, TcpState.ESTABLISHED, TcpState.FIN_WAIT_1,
                          TcpState.FIN_WAIT_2, TcpState.CLOSE_WAIT):
            self._queue_rst(self._snd_seq_for_rst())
        self._to_closed()

    # ------------------------------------------------------------------ poll
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


_SEND_OPEN = frozenset({TcpState.SYN_SENT, TcpState.SYN_RECEIVED, TcpState.ESTABLISHED,
                        TcpState.CLOSE_WAIT})
"""States in which the application may still queue data."""
