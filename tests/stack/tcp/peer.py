"""A scripted peer for exact-value tests: it crafts the segments a real peer would send
to one :class:`TcpConnection` and remembers what the connection sent it."""

from __future__ import annotations

from dataclasses import dataclass, field

from stack.tcp.config import TcpConfig
from stack.tcp.connection import TcpConnection
from stack.tcp.segment import Outgoing, Segment
from stack.tcp.state import TcpState
from stack.wire.tcp import (
    MssOption,
    NopOption,
    SackOption,
    SackPermittedOption,
    TcpFlags,
    TcpOption,
    TimestampsOption,
    WindowScaleOption,
)

ACK = TcpFlags.ACK
SYN = TcpFlags.SYN
FIN = TcpFlags.FIN
RST = TcpFlags.RST
PSH = TcpFlags.PSH
MASK = 0xFFFFFFFF
SEC = 1_000_000_000
MS = 1_000_000

LOCAL_PORT = 40000
PEER_PORT = 80


def segments(outs: list[Outgoing]) -> list[Segment]:
    return [o.segment for o in outs]


def ts_of(seg: Segment) -> TimestampsOption | None:
    for opt in seg.options:
        if isinstance(opt, TimestampsOption):
            return opt
    return None


def sack_of(seg: Segment) -> tuple[tuple[int, int], ...]:
    for opt in seg.options:
        if isinstance(opt, SackOption):
            return opt.blocks
    return ()


@dataclass
class Peer:
    """The far end, scripted. ``nxt`` is its next sequence number, ``rcv`` the next one
    it expects from the connection (its RCV.NXT), both 32-bit wire values."""

    conn: TcpConnection
    isn: int = 900_000
    mss: int | None = 1460
    window_shift: int | None = 7
    sack: bool = True
    timestamps: bool = True
    window: int = 0xFFFF
    tsval: int = 77
    nxt: int = 0
    rcv: int = 0
    ts_recent: int = 0
    received: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        self.nxt = self.isn

    # -- what the connection sent
    def take(self, outs: list[Outgoing]) -> list[Segment]:
        segs = segments(outs)
        for seg in segs:
            ts = ts_of(seg)
            if ts is not None:
                self.ts_recent = ts.tsval
        return segs

    def syn_options(self) -> tuple[TcpOption, ...]:
        opts: list[TcpOption] = []
        if self.mss is not None:
            opts.append(MssOption(self.mss))
        if self.sack:
            opts.append(SackPermittedOption())
        if self.timestamps:
            opts.append(TimestampsOption(self.tsval, self.ts_recent))
        if self.window_shift is not None:
            opts += [NopOption(), WindowScaleOption(self.window_shift)]
        return tuple(opts)

    def seg(self, flags: TcpFlags = ACK, payload: bytes = b"", *, seq: int | None = None,
            ack: int | None = None, window: int | None = None,
            sack: tuple[tuple[int, int], ...] = (), options: tuple[TcpOption, ...] | None = None,
            tsval: int | None = None) -> Segment:
        if options is None:
            opts: list[TcpOption] = []
            if self.timestamps:
                opts += [NopOption(), NopOption(),
                         TimestampsOption(self.tsval if tsval is None else tsval,
                                          self.ts_recent)]
            if sack:
                opts += [NopOption(), NopOption(), SackOption(sack)]
            options = tuple(opts)
        return Segment(sport=PEER_PORT, dport=LOCAL_PORT,
                       seq=(self.nxt if seq is None else seq) & MASK,
                       ack=(self.rcv if ack is None else ack) & MASK, flags=flags,
                       window=self.window if window is None else window, options=options,
                       payload=payload)

    def send(self, now: int, flags: TcpFlags = ACK, payload: bytes = b"", *,
             seq: int | None = None, ack: int | None = None, window: int | None = None,
             sack: tuple[tuple[int, int], ...] = (), options: tuple[TcpOption, ...] | None = None,
             tsval: int | None = None) -> Segment:
        """Hand a segment to the connection; ``nxt`` advances unless ``seq`` is given."""
        seg = self.seg(flags, payload, seq=seq, ack=ack, window=window, sack=sack,
                       options=options, tsval=tsval)
        if seq is None:
            self.nxt = (self.nxt + seg.seg_len) & MASK
        self.conn.on_segment(seg, now)
        return seg

    def ack_all(self, now: int, segs: list[Segment], *, window: int | None = None,
                sack: tuple[tuple[int, int], ...] = ()) -> Segment:
        """Acknowledge everything in ``segs`` (the highest end)."""
        for s in segs:
            end = (s.seq + s.seg_len) & MASK
            if (end - self.rcv) & MASK < 1 << 31:
                self.rcv = end
        return self.send(now, window=window, sack=sack)


def client(config: TcpConfig | None = None, *, isn: int = 1000, now: int = SEC) -> TcpConnection:
    return TcpConnection(LOCAL_PORT, PEER_PORT, config or TcpConfig(), isn=isn, now=now)


def established(config: TcpConfig | None = None, *, now: int = SEC, isn: int = 1000,
                mss: int | None = 1460, window_shift: int | None = 7, sack: bool = True,
                timestamps: bool = True, window: int = 0xFFFF) -> tuple[TcpConnection, Peer]:
    """An active-open connection brought to ESTABLISHED by a scripted peer (the SYN-ACK
    carries the peer's options; the final ACK is drained)."""
    conn = client(config, isn=isn, now=now)
    peer = Peer(conn, mss=mss, window_shift=window_shift, sack=sack, timestamps=timestamps,
                window=window)
    conn.connect(now)
    syn = peer.take(conn.poll(now))[0]
    peer.rcv = (syn.seq + 1) & MASK
    peer.send(now, SYN | ACK, options=peer.syn_options())
    peer.take(conn.poll(now))
    return conn, peer


def passive(config: TcpConfig | None = None, *, now: int = SEC, isn: int = 5000,
            timestamps: bool = True) -> tuple[TcpConnection, Peer]:
    """A passive-open connection in SYN-RECEIVED (its SYN-ACK drained by the peer)."""
    probe = Peer(client(), timestamps=timestamps)
    syn = probe.seg(SYN, options=probe.syn_options(), ack=0)
    conn = TcpConnection.accept_syn(syn, config or TcpConfig(), isn=isn, now=now)
    peer = Peer(conn, timestamps=timestamps)
    peer.nxt = (peer.isn + 1) & MASK
    synack = peer.take(conn.poll(now))[0]
    peer.rcv = (synack.seq + 1) & MASK
    return conn, peer


def to_state(state: TcpState, config: TcpConfig | None = None, *,
             now: int = SEC) -> tuple[TcpConnection, Peer]:
    """A connection driven by a scripted peer into ``state`` (any but LISTEN/CLOSED)."""
    if state is TcpState.SYN_SENT:
        conn = client(config, now=now)
        peer = Peer(conn)
        conn.connect(now)
        syn = peer.take(conn.poll(now))[0]
        peer.rcv = (syn.seq + 1) & MASK
        return conn, peer
    if state is TcpState.SYN_RECEIVED:
        return passive(config, now=now)
    conn, peer = established(config, now=now)
    if state in (TcpState.FIN_WAIT_1, TcpState.FIN_WAIT_2, TcpState.CLOSING,
                 TcpState.TIME_WAIT):
        conn.shutdown(now)
        fin = peer.take(conn.poll(now))
        if state is TcpState.FIN_WAIT_2:
            peer.ack_all(now, fin)
        elif state is TcpState.CLOSING:
            peer.send(now, FIN | ACK)
        elif state is TcpState.TIME_WAIT:
            peer.rcv = (peer.rcv + 1) & MASK
            peer.send(now, FIN | ACK)
        peer.take(conn.poll(now))
    elif state in (TcpState.CLOSE_WAIT, TcpState.LAST_ACK):
        peer.send(now, FIN | ACK)
        peer.take(conn.poll(now))
        if state is TcpState.LAST_ACK:
            conn.shutdown(now)
            peer.take(conn.poll(now))
    assert conn.state is state, (conn.state, state)
    return conn, peer


def exchange(a: TcpConnection, b: TcpConnection, now: int) -> list[tuple[str, Segment]]:
    """Deliver everything each side emits to the other until both are quiet."""
    log: list[tuple[str, Segment]] = []
    for _ in range(50):
        out_a = segments(a.poll(now))
        out_b = segments(b.poll(now))
        if not out_a and not out_b:
            return log
        for seg in out_a:
            log.append(("a", seg))
            b.on_segment(seg, now)
        for seg in out_b:
            log.append(("b", seg))
            a.on_segment(seg, now)
    raise AssertionError("no quiet point")
