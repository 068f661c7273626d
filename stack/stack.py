"""The stack: an :class:`~stack.interface.Interface` plus TCP and UDP over it, polled on
the caller's clock (sans-IO, like smoltcp's ``Interface::poll``).

TCP output uses the device's segmentation when it offers it for the IP version (the
smoltcp PR 1148 design): each connection may emit one packet of up to the device's
largest segmentable packet, bounded by the congestion and peer windows, with a segment
size (the effective MSS) in the transmit metadata and a partial checksum; the device cuts
it into MSS-sized segments (virtio HOST_TSO4/6, §5.1.6.2). Without it, MSS-sized
segments, with or without checksum offload.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
from dataclasses import dataclass, field, replace

from stack.device import NetworkDevice
from stack.icmp_errors import IcmpError, parse_icmp_error
from stack.interface import Interface, InterfaceConfig, Packet
from stack.sockets import Datagram, TcpListener, TcpSocket, UdpSocket
from stack.tcp.config import TcpConfig
from stack.tcp.connection import TcpConnection, TcpState, rst_for
from stack.tcp.segment import Segment
from stack.wire import icmpv4, icmpv6
from stack.wire.ipv4 import IpProtocol
from stack.wire.tcp import TcpFlags, TcpHeader
from stack.wire.udp import UdpHeader
from virtio.errors import WireError

_TCP_CSUM = 16
_UDP_CSUM = 6
MAX_TCP_HEADER = 60


@dataclass(frozen=True)
class StackConfig:
    interface: InterfaceConfig
    tcp: TcpConfig = field(default_factory=TcpConfig)
    tso: bool = True
    """Use the device's TCP segmentation when it offers it."""
    mss: int | None = None
    """The MSS to advertise; None: the link MTU minus the IP and TCP headers."""
    ephemeral_ports: tuple[int, int] = (49152, 65535)
    isn_secret: bytes = b"vnetbench"
    udp_queue: int = 1024


@dataclass
class StackCounters:
    tcp_segments_in: int = 0
    tcp_packets_out: int = 0
    tcp_tso_packets_out: int = 0
    tcp_resets_out: int = 0
    udp_in: int = 0
    udp_out: int = 0
    udp_no_port: int = 0
    icmp_errors_in: int = 0
    """ICMP errors about a TCP or UDP packet of ours."""
    pmtu_updates: int = 0
    """Times an ICMP error lowered the path MTU of a destination."""
    port_unreachables_out: int = 0
    echo_replies_in: int = 0
    drops: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1


def _parse_addr(addr: str | bytes) -> bytes:
    return addr if isinstance(addr, bytes) else ipaddress.ip_address(addr).packed


class Stack:
    """A host's TCP/IP stack over one network device."""

    def __init__(self, device: NetworkDevice, config: StackConfig) -> None:
        self.config = config
        self.iface = Interface(device, config.interface)
        self.iface.tcp_handler = self._tcp_in
        self.iface.udp_handler = self._udp_in
        self.iface.icmp_error_handler = self._icmp_in
        self.counters = StackCounters()
        self.now = 0
        self._conns: dict[tuple[bytes, int, bytes, int], TcpSocket] = {}
        self._listeners: dict[int, TcpListener] = {}
        self._udp: dict[int, UdpSocket] = {}
        self._next_port = config.ephemeral_ports[0]
        self._awake: set[TcpSocket] = set()
        self.echo_replies: list[tuple[bytes, int, int, bytes]] = []
        """(source, ident, seq, data) of echo replies received."""

    # -- the clock -------------------------------------------------------------------
    def poll(self, now: int) -> int | None:
        """Receive, run timers, send; returns the next time the stack wants a poll."""
        self.now = now
        iface = self.iface
        iface.poll_rx(now)
        iface.poll_timers(now)
        self._tcp_out(now)
        iface.flush()
        return self.next_deadline()

    def next_deadline(self) -> int | None:
        times = [t for t in (s.conn.next_deadline() for s in self._conns.values())
                 if t is not None]
        iface = self.iface.next_deadline()
        if iface is not None:
            times.append(iface)
        return min(times) if times else None

    def wake(self, sock: TcpSocket) -> None:
        """The application did something that may produce output."""
        self._awake.add(sock)

    # -- TCP -------------------------------------------------------------------------
    def _tcp_config(self, remote: bytes) -> TcpConfig:
        v6 = len(remote) == 16
        mss = self.config.mss or self.iface.mtu - (60 if v6 else 40)
        # the MSS to assume when the peer sends none: 536 / 1220 (RFC 9293 §3.7.1)
        cfg = replace(self.config.tcp, mss=mss, default_mss=1220 if v6 else 536)
        limit = self.iface.segmentation_max(v6) if self.config.tso else None
        if limit is not None:
            cfg = replace(cfg, max_segment_payload=limit - (40 if v6 else 20) - MAX_TCP_HEADER,
                          tso_ecn=self.iface.caps.segmentation.tcp_ecn)
        return cfg

    def _isn(self, local: bytes, lport: int, remote: bytes, rport: int) -> int:
        """RFC 6528: a clock (4 µs ticks) plus a keyed hash of the connection's 4-tuple."""
        h = hashlib.blake2s(local + remote + struct.pack("!HH", lport, rport),
                            key=self.config.isn_secret[:32], digest_size=4).digest()
        return (int.from_bytes(h, "big") + self.now // 4000) & 0xFFFFFFFF

    def _ephemeral(self, remote: bytes, rport: int) -> int:
        lo, hi = self.config.ephemeral_ports
        for _ in range(hi - lo + 1):
            port = self._next_port
            self._next_port = lo if port >= hi else port + 1
            if not any(k[1] == port and k[2] == remote and k[3] == rport for k in self._conns):
                return port
        raise OSError("no free ephemeral port")

    def tcp_connect(self, addr: str | bytes, port: int, *, local_port: int | None = None,
                    config: TcpConfig | None = None) -> TcpSocket:
        remote = _parse_addr(addr)
        local = self.iface.source_for(remote)
        lport = local_port or self._ephemeral(remote, port)
        cfg = config or self._tcp_config(remote)
        conn = TcpConnection(lport, port, cfg, isn=self._isn(local, lport, remote, port),
                             now=self.now)
        conn.connect(self.now)
        sock = TcpSocket(self, conn, (local, lport), (remote, port))
        self._conns[(local, lport, remote, port)] = sock
        self._apply_path_mtu(sock)
        self.wake(sock)
        return sock

    def tcp_listen(self, port: int, *, backlog: int = 128) -> TcpListener:
        if port in self._listeners:
            raise OSError(f"port {port} is already listening")
        listener = TcpListener(self, port, backlog)
        self._listeners[port] = listener
        return listener

    def _tcp_in(self, packet: Packet) -> None:
        self.counters.tcp_segments_in += 1
        try:
            header = TcpHeader.parse(packet.data)
        except WireError:
            self.counters.drop("tcp-malformed")
            return
        seg = Segment.from_header(header, packet.data[header.header_len:], ecn=packet.ecn)
        key = (packet.dst, header.dst_port, packet.src, header.src_port)
        sock = self._conns.get(key)
        if sock is None:
            listener = self._listeners.get(header.dst_port)
            flags = header.flags
            if (listener is not None and flags & TcpFlags.SYN
                    and not flags & (TcpFlags.ACK | TcpFlags.RST)):
                if listener.full:
                    self.counters.drop("tcp-accept-queue-full")
                    return
                conn = TcpConnection.accept_syn(
                    seg, self._tcp_config(packet.src),
                    isn=self._isn(packet.dst, header.dst_port, packet.src, header.src_port),
                    now=self.now)
                sock = TcpSocket(self, conn, (packet.dst, header.dst_port),
                                 (packet.src, header.src_port))
                sock.listener = listener
                listener.pending.add(sock)
                self._conns[key] = sock
                self._apply_path_mtu(sock)
                self.wake(sock)
                return
            rst = rst_for(seg)
            if rst is not None:
                self.counters.tcp_resets_out += 1
                self.iface.send_ip(packet.src, IpProtocol.TCP, rst.header().emit() + rst.payload,
                                   csum_offset=_TCP_CSUM, src_addr=packet.dst)
            return
        conn = sock.conn
        if conn.ack_pending:
            # The previous segment of this batch asked for an immediate ACK (it was out
            # of order, filled a gap, or was the second full-sized one): send it before
            # this one changes what it says, as RFC 5681 §4.2 asks and Linux does per
            # received skb. One ACK for a whole batch would be a stretch ACK (RFC 2525
            # §2.13) and would carry three SACK blocks at most (RFC 2018 §4: the first
            # for the segment that triggered it): a fourth new block would never be
            # reported, and the sender would resend data we hold.
            self._send_from(key, sock, self.now)
        before = conn.state
        conn.on_segment(seg, self.now)
        self.wake(sock)
        established = sock.conn.state is TcpState.ESTABLISHED
        if sock.listener is not None and established and before is not TcpState.ESTABLISHED:
            sock.listener._established(sock)
            sock.listener = None

    def _tcp_out(self, now: int) -> None:
        for key, sock in list(self._conns.items()):
            deadline = sock.conn.next_deadline()
            if sock not in self._awake and (deadline is None or deadline > now):
                continue
            self._send_from(key, sock, now)

    def _send_from(self, key: tuple[bytes, int, bytes, int], sock: TcpSocket,
                   now: int) -> None:
        """What the connection has to send now, onto the interface (later, when the
        interface has a backlog)."""
        iface = self.iface
        counters = self.counters
        if iface.backlog:
            self._awake.add(sock)
            return
        self._awake.discard(sock)
        conn = sock.conn
        remote = sock.remote[0]
        for out in conn.poll(now):
            seg = out.segment
            l4 = seg.header().emit() + seg.payload
            counters.tcp_packets_out += 1
            if out.segment_size is not None:
                counters.tcp_tso_packets_out += 1
            iface.send_ip(remote, IpProtocol.TCP, l4, csum_offset=_TCP_CSUM,
                          segment_size=out.segment_size, src_addr=sock.local[0],
                          ecn=out.ecn)
        if conn.state is TcpState.CLOSED and conn.next_deadline() is None:
            del self._conns[key]
            if sock.listener is not None:  # reset before the handshake completed
                sock.listener.pending.discard(sock)
                sock.listener = None

    # -- UDP, RFC 768 ----------------------------------------------------------------
    def udp_bind(self, port: int = 0) -> UdpSocket:
        if port == 0:
            port = self._ephemeral(b"", 0)
        if port in self._udp:
            raise OSError(f"UDP port {port} is in use")
        sock = UdpSocket(self, port, self.config.udp_queue)
        self._udp[port] = sock
        return sock

    def send_udp(self, sport: int, addr: str | bytes, dport: int, data: bytes) -> bool:
        dst = _parse_addr(addr)
        l4 = UdpHeader(sport, dport, 8 + len(data)).emit() + data
        self.counters.udp_out += 1
        ok = self.iface.send_ip(dst, IpProtocol.UDP, l4, csum_offset=_UDP_CSUM)
        self.iface.flush()
        return ok

    def _udp_in(self, packet: Packet) -> None:
        try:
            header = UdpHeader.parse(packet.data)
        except WireError:
            self.counters.drop("udp-malformed")
            return
        sock = self._udp.get(header.dst_port)
        if sock is None:
            self.counters.udp_no_port += 1
            if self.iface.send_unreachable(packet):
                self.counters.port_unreachables_out += 1
            return
        self.counters.udp_in += 1
        sock._push(Datagram(bytes(packet.data[8:header.length]), (packet.src, header.src_port),
                            (packet.dst, header.dst_port)))

    # -- ICMP echo -------------------------------------------------------------------
    def ping(self, addr: str | bytes, ident: int, seq: int, data: bytes = b"") -> bool:
        dst = _parse_addr(addr)
        if len(dst) == 4:
            msg4 = icmpv4.echo_request(ident, seq, data)
            ok = self.iface.send_ip(dst, IpProtocol.ICMP, msg4.emit())
        else:
            src = self.iface.source_for(dst)
            msg6 = icmpv6.echo_request(ident, seq, data)
            ok = self.iface.send_ip(dst, IpProtocol.ICMPV6, msg6.emit(src, dst), src_addr=src)
        self.iface.flush()
        return ok

    def _icmp_in(self, src: bytes, kind: int, payload: bytes) -> None:
        if kind in (icmpv4.Icmpv4Type.ECHO_REPLY, icmpv6.Icmpv6Type.ECHO_REPLY) and len(payload) >= 8:
            ident, seq = struct.unpack_from("!HH", payload, 4)
            self.counters.echo_replies_in += 1
            self.echo_replies.append((src, ident, seq, payload[8:]))
            return
        error = parse_icmp_error(len(src) == 16, payload)
        if error is None:
            return
        self.counters.icmp_errors_in += 1
        self._icmp_error(error)

    def _icmp_error(self, error: IcmpError) -> None:
        """An ICMP error about a TCP segment of ours: believed only when it quotes data
        in flight (RFC 5927 §4.1); "too big" lowers the path MTU of the destination and
        the segment size of every connection to it (RFC 1191 §6.5, RFC 8201 §5); the
        others are hard or soft errors for the connection (RFC 1122 §4.2.3.9, RFC 5461)."""
        sock = None
        if error.protocol == IpProtocol.TCP:
            sock = self._conns.get((error.src, error.sport, error.dst, error.dport))
        if sock is None or not sock.conn.icmp_seq_acceptable(error.seq):
            self.counters.drop("icmp-error-unmatched")
            return
        if not error.too_big:
            sock.conn.on_icmp_error(hard=error.hard)
            self.wake(sock)
            return
        iface = self.iface
        if iface.pmtu.learn(error.dst, error.path_mtu(), iface.mtu, self.now) is None:
            return
        self.counters.pmtu_updates += 1
        for (_, _, remote, _), other in self._conns.items():
            if remote == error.dst:
                self._apply_path_mtu(other)

    def _apply_path_mtu(self, sock: TcpSocket) -> None:
        remote = sock.remote[0]
        mtu = self.iface.path_mtu(remote)
        if mtu < self.iface.mtu:
            sock.conn.on_path_mtu(mtu - (40 if len(remote) == 16 else 20) - 20, self.now)
            self.wake(sock)
