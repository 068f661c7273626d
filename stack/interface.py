"""The network interface: Ethernet, ARP, IPv4, IPv6, NDP and ICMP echo over one
:class:`~stack.device.NetworkDevice` (DESIGN.md, "stack/").

Receive: every frame the device hands up is demultiplexed by EtherType (RFC 894), IP
packets are checked (version, lengths, header checksum, destination), fragments are
reassembled (stack/reassembly.py), ARP and NDP update the neighbour cache and are
answered, ICMP echo requests are answered, and TCP / UDP payloads go to the handlers the
stack registers, with what the device said about the checksum.

Transmit: the stack hands over a transport header + payload with its checksum field at a
known offset; the interface picks the source address, routes (on-link or via the
gateway), resolves the next hop (queuing the packet meanwhile) and builds the frame.

Checksum policy from the device's capabilities (smoltcp's ``ChecksumCapabilities``):

- transmit: with ``tx_partial`` the transport checksum field gets the pseudo-header sum
  over the full transport length and the device completes it (virtio NEEDS_CSUM,
  §5.1.6.2); otherwise the interface computes it;
- segmentation: a TCP packet larger than the MTU goes down whole with a segment size
  only when the device segments that IP version (``SegmentationCapabilities``); it is
  never IP-fragmented. IPv4 total length: the real length, or 0 above 65535 bytes
  (``ipv4_big_length``: "fallback" as smoltcp PR 1148, or "zero" for every segmented
  packet — the convention some Intel devices expect);
- receive: DATA_VALID (``csum_verified``) and a partial checksum (``csum_partial``: the
  data came from a local sender or was coalesced by the device, §5.1.6.4) are trusted;
  anything else is verified in software and dropped (counted) when wrong.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from stack.device import DeviceCapabilities, NetworkDevice, RxFrame, TxMeta
from stack.icmp_errors import PathMtuCache
from stack.neighbor import NeighborCache, NeighborConfig
from stack.reassembly import Reassembler
from stack.wire import arp, icmpv4, icmpv6, ndp
from stack.wire.checksum import internet_checksum, pseudo_header_sum_v4, pseudo_header_sum_v6
from stack.wire.ethernet import BROADCAST, HEADER_LEN, EtherType
from stack.wire.ipv4 import FLAG_DF, IpProtocol, Ipv4Header
from stack.wire.ipv6 import ExtHeader, FragmentHeader, Ipv6Header, walk_extension_headers
from virtio.errors import WireError

ETH_HEADER = struct.Struct("!6s6sH")
IPV4_FIXED = struct.Struct("!BBHHHBBH4s4s")
IPV6_FIXED = struct.Struct("!IHBB16s16s")
_V4_HEADER = 20
_V6_HEADER = 40
ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")

L4Handler = Callable[["Packet"], None]


@dataclass(frozen=True, slots=True)
class Packet:
    """A transport payload that arrived for us."""

    src: bytes
    dst: bytes
    protocol: int
    data: bytes
    """The transport header and payload."""
    checksum_ok: bool
    """Verified by the device (DATA_VALID), partial from a trusted source, or verified
    here; the handlers drop nothing for checksums themselves."""
    segment_size: int | None = None
    """Set when the device coalesced several wire segments into this packet."""
    hop_limit: int = 64
    ip_packet: bytes | memoryview = b""
    """The IP packet as received (a view, not a copy), for quoting in ICMP errors."""
    ecn: int = 0
    """The ECN codepoint of its IP header (RFC 3168 §5; 0 for a reassembled packet)."""


@dataclass(frozen=True)
class InterfaceConfig:
    mac: bytes
    ipv4: str | None = None
    """Address with prefix, e.g. "10.0.0.1/24"."""
    gateway4: str | None = None
    ipv6: tuple[str, ...] = ()
    """Global addresses with prefix; the link-local address comes from the MAC."""
    gateway6: str | None = None
    ttl: int = 64
    ipv4_big_length: str = "fallback"
    """IPv4 total length of a segmented packet: "fallback" (0 only above 65535) or "zero"
    (0 for every packet handed down for segmentation)."""
    neighbor: NeighborConfig = field(default_factory=NeighborConfig)
    reassembly_timeout_ns: int = 30_000_000_000
    tx_backlog: int = 4096
    """Frames held while the device ring is full; beyond that they are dropped."""

    def __post_init__(self) -> None:
        if len(self.mac) != 6:
            raise ValueError("a MAC address is 6 bytes")
        if self.ipv4_big_length not in ("fallback", "zero"):
            raise ValueError('ipv4_big_length is "fallback" or "zero"')


@dataclass
class InterfaceCounters:
    rx_frames: int = 0
    tx_frames: int = 0
    tx_segmented: int = 0
    """Packets handed to the device for segmentation (TSO)."""
    tx_csum_offloaded: int = 0
    rx_csum_trusted: int = 0
    rx_csum_verified: int = 0
    rx_reassembled: int = 0
    echo_replies: int = 0
    tx_backlogged: int = 0
    drops: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1


@dataclass(frozen=True, slots=True)
class _Queued:
    frame_tail: bytes
    """The IP packet (the Ethernet header is added once the MAC is known)."""
    ethertype: int
    meta: TxMeta | None


class Interface:
    """One interface of the stack over ``device``."""

    def __init__(self, device: NetworkDevice, config: InterfaceConfig) -> None:
        self.device = device
        self.config = config
        self.mac = config.mac
        self.counters = InterfaceCounters()
        self.caps: DeviceCapabilities = device.capabilities()
        self.ipv4: ipaddress.IPv4Interface | None = (
            ipaddress.IPv4Interface(config.ipv4) if config.ipv4 else None)
        self.addr4 = self.ipv4.ip.packed if self.ipv4 else b""
        self.gateway4 = ipaddress.IPv4Address(config.gateway4).packed if config.gateway4 else b""
        self.link_local = ndp.link_local_from_mac(config.mac)
        self.ipv6 = [ipaddress.IPv6Interface(a) for a in config.ipv6]
        self.addrs6 = [self.link_local] + [a.ip.packed for a in self.ipv6]
        self.gateway6 = ipaddress.IPv6Address(config.gateway6).packed if config.gateway6 else b""
        self.solicited = {ndp.solicited_node_multicast(a) for a in self.addrs6}
        self.arp = NeighborCache(config.neighbor)
        self.nd = NeighborCache(config.neighbor)
        self.reassembler = Reassembler(timeout_ns=config.reassembly_timeout_ns)
        self.pmtu = PathMtuCache()
        """Path MTUs that ICMP errors reported (RFC 1191, RFC 8201)."""
        self.tcp_handler: L4Handler | None = None
        self.udp_handler: L4Handler | None = None
        self.icmp_error_handler: Callable[[bytes, int, bytes], None] | None = None
        """ICMP messages the interface does not answer itself (echo replies, errors):
        (source, type, the message bytes)."""
        self._ident = 0
        self._backlog: deque[tuple[bytes, TxMeta | None]] = deque()
        self._unflushed = 0
        self.now = 0

    # -- configuration ---------------------------------------------------------------
    def refresh_capabilities(self) -> None:
        self.caps = self.device.capabilities()

    @property
    def mtu(self) -> int:
        return self.caps.mtu

    def path_mtu(self, dst: bytes) -> int:
        """The MTU toward ``dst``: the link's, or less when an ICMP error said so."""
        learned = self.pmtu.get(dst, self.now)
        return self.mtu if learned is None else min(learned, self.mtu)

    def segmentation_max(self, v6: bool) -> int | None:
        seg = self.caps.segmentation
        limit = seg.tcp_ipv6_max if v6 else seg.tcp_ipv4_max
        return limit if limit is not None and self.caps.checksum.tx_partial else None

    def is_local(self, addr: bytes) -> bool:
        return addr == self.addr4 if len(addr) == 4 else addr in self.addrs6

    def source_for(self, dst: bytes) -> bytes:
        """Our address to send to ``dst`` from (link-local for link-local peers)."""
        if len(dst) == 4:
            if not self.addr4:
                raise ValueError("no IPv4 address configured")
            return self.addr4
        if dst[:2] == b"\xfe\x80" or not self.ipv6:
            return self.link_local
        return self.addrs6[1]

    # -- receive ---------------------------------------------------------------------
    def poll_rx(self, now: int) -> int:
        """Process every frame the device has for us; returns how many."""
        self.now = now
        frames = self.device.receive()
        for rx in frames:
            self.counters.rx_frames += 1
            try:
                self._receive(rx)
            except WireError:
                self.counters.drop("malformed")
        return len(frames)

    def _receive(self, rx: RxFrame) -> None:
        data = rx.data
        if len(data) < HEADER_LEN:
            self.counters.drop("runt")
            return
        dst = data[0:6]
        if dst != self.mac and not dst[0] & 1:
            self.counters.drop("not-for-us")
            return
        ethertype = data[12] << 8 | data[13]
        if ethertype == EtherType.IPV4:
            self._receive_v4(rx, data)
        elif ethertype == EtherType.IPV6:
            self._receive_v6(rx, data)
        elif ethertype == EtherType.ARP:
            self._receive_arp(data)
        else:
            self.counters.drop("ethertype")

    def _trusted(self, rx: RxFrame) -> bool:
        if rx.csum_verified or rx.csum_partial:
            self.counters.rx_csum_trusted += 1
            return True
        return False

    def _receive_v4(self, rx: RxFrame, frame: bytes) -> None:
        if not self.addr4:
            self.counters.drop("no-ipv4")
            return
        packet = memoryview(frame)[HEADER_LEN:]
        header = Ipv4Header.parse(packet, verify_checksum=not rx.csum_verified,
                                  allow_zero_length=rx.segment_size is not None)
        if header.dst not in (self.addr4, b"\xff\xff\xff\xff") and not (
                self.ipv4 and header.dst == self.ipv4.network.broadcast_address.packed):
            self.counters.drop("ipv4-not-ours")
            return
        end = header.total_length or len(packet)
        payload = bytes(packet[header.header_len:end])
        if header.is_fragment:
            whole = self.reassembler.push_v4(header, payload, self.now)
            if whole is None:
                return
            payload = whole
            self.counters.rx_reassembled += 1
            rx = RxFrame(data=b"")  # the device's checksum verdicts were per fragment
        raw = packet[:end] if not header.is_fragment else b""
        ecn = header.tos & 0b11 if not header.is_fragment else 0
        self._deliver(rx, header.src, header.dst, header.protocol, payload, hops=header.ttl,
                      raw=raw, ecn=ecn)

    def _receive_v6(self, rx: RxFrame, frame: bytes) -> None:
        packet = memoryview(frame)[HEADER_LEN:]
        header = Ipv6Header.parse(packet, allow_zero_length=rx.segment_size is not None)
        dst = header.dst
        if dst not in self.addrs6 and dst not in self.solicited and dst != ALL_NODES:
            self.counters.drop("ipv6-not-ours")
            return
        end = _V6_HEADER + header.payload_length if header.payload_length else len(packet)
        packet = packet[:end]
        proto, offset = header.next_header, _V6_HEADER
        if proto in (ExtHeader.HOP_BY_HOP, ExtHeader.ROUTING, ExtHeader.DEST_OPTS,
                     ExtHeader.FRAGMENT):
            chain = walk_extension_headers(packet, proto)
            frag = chain.find(ExtHeader.FRAGMENT)
            if frag is not None:
                fh = FragmentHeader.parse(packet[frag.offset:])
                done = self.reassembler.push_v6(header.src, dst, fh,
                                                bytes(packet[frag.offset + 8:]), self.now)
                if done is None:
                    return
                proto, payload = done
                self.counters.rx_reassembled += 1
                self._deliver(RxFrame(data=b""), header.src, dst, proto, payload,
                              hops=header.hop_limit)
                return
            proto, offset = chain.upper_protocol, chain.upper_offset
        self._deliver(rx, header.src, dst, proto, bytes(packet[offset:]), hops=header.hop_limit,
                      raw=packet, ecn=header.traffic_class & 0b11)

    def _deliver(self, rx: RxFrame, src: bytes, dst: bytes, proto: int, payload: bytes, *,
                 hops: int, raw: bytes | memoryview = b"", ecn: int = 0) -> None:
        """Hand a transport payload (``src``, ``dst``: IP addresses, ``hops``: TTL or
        hop limit) to its handler, or answer ICMP."""
        if proto in (IpProtocol.TCP, IpProtocol.UDP):
            handler = self.tcp_handler if proto == IpProtocol.TCP else self.udp_handler
            if handler is None:
                self.counters.drop("no-handler")
                return
            ok = self._trusted(rx) or self._verify_l4(src, dst, proto, payload)
            if not ok:
                self.counters.drop("l4-checksum")
                return
            handler(Packet(src, dst, proto, payload, True, rx.segment_size, hops, raw, ecn))
        elif proto == IpProtocol.ICMP and len(src) == 4:
            self._receive_icmp4(src, dst, payload)
        elif proto == IpProtocol.ICMPV6 and len(src) == 16:
            self._receive_icmp6(src, dst, payload, hops)
        else:
            self.counters.drop("protocol")

    def _verify_l4(self, src: bytes, dst: bytes, proto: int, l4: bytes) -> bool:
        self.counters.rx_csum_verified += 1
        if proto == IpProtocol.UDP and len(src) == 4 and len(l4) >= 8 and l4[6:8] == b"\0\0":
            return True  # RFC 768: no checksum
        seed = (pseudo_header_sum_v4(src, dst, proto, len(l4)) if len(src) == 4
                else pseudo_header_sum_v6(src, dst, proto, len(l4)))
        return internet_checksum(l4, seed) == 0

    # -- ARP, RFC 826 ----------------------------------------------------------------
    def _receive_arp(self, frame: bytes) -> None:
        packet = arp.ArpPacket.parse(frame[HEADER_LEN:])
        if not self.addr4:
            return
        for_us = packet.target_ip == self.addr4
        # RFC 826 "merge": update an existing entry; add one when the packet is for us
        if for_us or self.arp.state(packet.sender_ip) is not None:
            pending = self.arp.update(packet.sender_ip, packet.sender_mac, self.now,
                                      confirmed=packet.op == arp.ArpOp.REPLY or for_us)
            self._send_pending(pending, packet.sender_mac)
        if for_us and packet.op == arp.ArpOp.REQUEST:
            reply = arp.reply_to(packet, self.mac)
            self._send_frame(packet.sender_mac, EtherType.ARP, reply.emit(), None)

    def _solicit4(self, ip: bytes) -> None:
        request = arp.request(self.mac, self.addr4, ip)
        self._send_frame(BROADCAST, EtherType.ARP, request.emit(), None)

    # -- ICMP ------------------------------------------------------------------------
    def _receive_icmp4(self, src: bytes, dst: bytes, payload: bytes) -> None:
        msg = icmpv4.Icmpv4Message.parse(payload)
        if msg.type == icmpv4.Icmpv4Type.ECHO_REQUEST and dst == self.addr4:
            reply = icmpv4.echo_reply(msg)
            self.counters.echo_replies += 1
            self.send_ip(src, IpProtocol.ICMP, reply.emit())
        elif self.icmp_error_handler is not None:
            self.icmp_error_handler(src, msg.type, payload)

    def _receive_icmp6(self, src: bytes, dst: bytes, payload: bytes, hops: int) -> None:
        msg = icmpv6.Icmpv6Message.parse(payload, src, dst)
        kind = msg.type
        if kind == icmpv6.Icmpv6Type.NEIGHBOR_SOLICITATION:
            ndp.validate_ns(msg, src, dst, hops)
            ns = ndp.NeighborSolicitation.from_message(msg)
            if ns.target not in self.addrs6:
                return
            if ns.source_lladdr is not None and any(src):
                pending = self.nd.update(src, ns.source_lladdr, self.now, confirmed=False)
                self._send_pending(pending, ns.source_lladdr)
            solicited = any(src)
            target = src if solicited else ALL_NODES  # RFC 4861 §7.2.4
            na = ndp.NeighborAdvertisement(ns.target, router=False, solicited=solicited,
                                           override=True, target_lladdr=self.mac)
            body = na.to_message().emit(ns.target, target)
            if not solicited:
                self._send_ipv6_frame(ndp.multicast_mac(target), ns.target, target,
                                      IpProtocol.ICMPV6, body, hop_limit=255)
            elif ns.source_lladdr is not None:
                self._send_ipv6_frame(ns.source_lladdr, ns.target, target,
                                      IpProtocol.ICMPV6, body, hop_limit=255)
            else:  # unicast NS without a source option: resolve the sender first
                ip = IPV6_FIXED.pack(6 << 28, len(body), IpProtocol.ICMPV6, 255, ns.target,
                                     target)
                self._route(target, EtherType.IPV6, ip + body, None)
        elif kind == icmpv6.Icmpv6Type.NEIGHBOR_ADVERTISEMENT:
            ndp.validate_na(msg, src, dst, hops)
            na = ndp.NeighborAdvertisement.from_message(msg)
            if na.target_lladdr is not None:
                pending = self.nd.update(na.target, na.target_lladdr, self.now,
                                         confirmed=na.solicited)
                self._send_pending(pending, na.target_lladdr)
        elif kind == icmpv6.Icmpv6Type.ECHO_REQUEST and dst in self.addrs6:
            reply = icmpv6.echo_reply(msg)
            self.counters.echo_replies += 1
            self.send_ip(src, IpProtocol.ICMPV6, reply.emit(dst, src), src_addr=dst)
        elif self.icmp_error_handler is not None:
            self.icmp_error_handler(src, kind, payload)

    def send_unreachable(self, packet: Packet, *, port: bool = True) -> bool:
        """ICMP destination unreachable (port, or protocol) about a packet we received
        (RFC 1122 §3.2.2.1, RFC 4443 §3.1), unless the rules for ICMP errors forbid it
        (a broadcast or multicast destination, an ICMP error, ...)."""
        raw = packet.ip_packet
        if not raw:
            return False
        if len(packet.src) == 4:
            if not icmpv4.may_send_error(raw) or packet.dst != self.addr4:
                return False
            code4 = icmpv4.UnreachableCode.PORT if port else icmpv4.UnreachableCode.PROTOCOL
            return self.send_ip(packet.src, IpProtocol.ICMP,
                                icmpv4.dest_unreachable(code4, raw).emit())
        code6 = icmpv6.DestUnreachableCode.PORT_UNREACHABLE
        if not icmpv6.may_send_error(raw, icmpv6.Icmpv6Type.DEST_UNREACHABLE, code6):
            return False
        msg = icmpv6.dest_unreachable(code6, raw)
        return self.send_ip(packet.src, IpProtocol.ICMPV6, msg.emit(packet.dst, packet.src),
                            src_addr=packet.dst)

    def _solicit6(self, ip: bytes) -> None:
        target_group = ndp.solicited_node_multicast(ip)
        src = self.source_for(ip)
        ns = ndp.NeighborSolicitation(ip, source_lladdr=self.mac)
        self._send_ipv6_frame(ndp.multicast_mac(target_group), src, target_group,
                              IpProtocol.ICMPV6, ns.to_message().emit(src, target_group),
                              hop_limit=255)

    # -- transmit --------------------------------------------------------------------
    def next_ident(self) -> int:
        self._ident = (self._ident + 1) & 0xFFFF
        return self._ident

    def send_ip(
        self,
        dst: bytes,
        protocol: int,
        l4: bytes | bytearray,
        *,
        csum_offset: int | None = None,
        segment_size: int | None = None,
        src_addr: bytes | None = None,
        ecn: int = 0,
    ) -> bool:
        """Send a transport packet. ``csum_offset``: where the transport checksum field
        is (None: ``l4`` is complete, e.g. ICMP). ``segment_size``: payload bytes per
        segment when the device must segment (TSO); ``l4`` may then exceed the MTU.
        ``ecn``: the ECN codepoint of the IP header (RFC 3168 §5; DSCP stays 0)."""
        if not 0 <= ecn <= 3:
            raise ValueError(f"ECN codepoint {ecn} is not two bits")
        v6 = len(dst) == 16
        src = src_addr or self.source_for(dst)
        length = len(l4)
        if csum_offset is not None:
            l4 = bytearray(l4)
            l4[csum_offset:csum_offset + 2] = b"\0\0"
            seed = (pseudo_header_sum_v6(src, dst, protocol, length) if v6
                    else pseudo_header_sum_v4(src, dst, protocol, length))
        meta: TxMeta | None = None
        ip_header_len = _V6_HEADER if v6 else _V4_HEADER
        if segment_size is not None:
            if self.segmentation_max(v6) is None or csum_offset is None:
                raise ValueError("the device does not segment this packet")
            meta = TxMeta(segment_size, HEADER_LEN + ip_header_len, csum_offset)
            self.counters.tx_segmented += 1
        if csum_offset is not None:
            if self.caps.checksum.tx_partial:
                struct.pack_into("!H", l4, csum_offset, seed)
                if meta is None:
                    meta = TxMeta(None, HEADER_LEN + ip_header_len, csum_offset)
                self.counters.tx_csum_offloaded += 1
            else:
                check = internet_checksum(l4, seed)
                if protocol == IpProtocol.UDP and check == 0:
                    check = 0xFFFF  # RFC 768
                struct.pack_into("!H", l4, csum_offset, check)
        total = ip_header_len + length
        if segment_size is None and total > self.mtu:
            self.counters.drop("exceeds-mtu")  # no IP fragmentation of our own packets
            return False
        if v6:
            plen = length if length <= 0xFFFF else 0
            ip = IPV6_FIXED.pack(6 << 28 | ecn << 20, plen, protocol, self.config.ttl, src, dst)
            ethertype = EtherType.IPV6
        else:
            if segment_size is not None and (self.config.ipv4_big_length == "zero"
                                             or total > 0xFFFF):
                tot = 0
            else:
                tot = total
            raw = bytearray(IPV4_FIXED.pack(0x45, ecn, tot, self.next_ident(), FLAG_DF,
                                            self.config.ttl, protocol, 0, src, dst))
            struct.pack_into("!H", raw, 10, internet_checksum(raw))
            ip = bytes(raw)
            ethertype = EtherType.IPV4
        return self._route(dst, ethertype, ip + bytes(l4), meta)

    def _send_ipv6_frame(self, mac: bytes, src: bytes, dst: bytes, protocol: int, l4: bytes,
                         *, hop_limit: int) -> None:
        ip = IPV6_FIXED.pack(6 << 28, len(l4), protocol, hop_limit, src, dst)
        self._send_frame(mac, EtherType.IPV6, ip + l4, None)

    def _route(self, dst: bytes, ethertype: int, packet: bytes, meta: TxMeta | None) -> bool:
        """Next hop: on-link, or the gateway; resolve it and send (or queue)."""
        v6 = len(dst) == 16
        if v6:
            if dst[0] == 0xFF:
                return self._send_frame(ndp.multicast_mac(dst), ethertype, packet, meta)
            on_link = dst[:2] == b"\xfe\x80" or any(
                ipaddress.IPv6Address(dst) in a.network for a in self.ipv6)
            hop = dst if on_link else self.gateway6
            cache = self.nd
        else:
            if dst == b"\xff\xff\xff\xff":
                return self._send_frame(BROADCAST, ethertype, packet, meta)
            on_link = self.ipv4 is not None and ipaddress.IPv4Address(dst) in self.ipv4.network
            hop = dst if on_link else self.gateway4
            cache = self.arp
        if not hop:
            self.counters.drop("no-route")
            return False
        mac = cache.lookup(hop, self.now)
        if mac is not None:
            if cache.needs_probe(hop, self.now):
                self._solicit6(hop) if v6 else self._solicit4(hop)
            return self._send_frame(mac, ethertype, packet, meta)
        if cache.queue(hop, _Queued(packet, ethertype, meta), self.now):
            self._solicit6(hop) if v6 else self._solicit4(hop)
        return True

    def _send_pending(self, pending: list[object], mac: bytes) -> None:
        for item in pending:
            assert isinstance(item, _Queued)
            self._send_frame(mac, item.ethertype, item.frame_tail, item.meta)

    def _send_frame(self, dst_mac: bytes, ethertype: int, payload: bytes,
                    meta: TxMeta | None) -> bool:
        frame = ETH_HEADER.pack(dst_mac, self.mac, ethertype) + payload
        if self._backlog:
            return self._hold(frame, meta)
        if not self.device.transmit(frame, meta):
            return self._hold(frame, meta)
        self.counters.tx_frames += 1
        self._unflushed += 1
        return True

    def _hold(self, frame: bytes, meta: TxMeta | None) -> bool:
        if len(self._backlog) >= self.config.tx_backlog:
            self.counters.drop("tx-backlog-full")
            return False
        self._backlog.append((frame, meta))
        self.counters.tx_backlogged += 1
        return True

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    def flush(self) -> None:
        """Push held frames while the device takes them, then notify it once."""
        backlog = self._backlog
        while backlog:
            frame, meta = backlog[0]
            if not self.device.transmit(frame, meta):
                break
            backlog.popleft()
            self.counters.tx_frames += 1
            self._unflushed += 1
        if self._unflushed:
            self._unflushed = 0
            self.device.flush()

    # -- timers ----------------------------------------------------------------------
    def poll_timers(self, now: int) -> None:
        self.now = now
        for cache, solicit in ((self.arp, self._solicit4), (self.nd, self._solicit6)):
            resend, dropped = cache.poll(now)
            for ip in resend:
                solicit(ip)
            for _ in dropped:
                self.counters.drop("neighbor-unreachable")
        if self.reassembler.expire(now):
            # RFC 792 / RFC 8200 §4.5: time exceeded (fragment reassembly) to the sender
            # of a datagram whose first fragment arrived
            for gone in self.reassembler.expired_first_fragments():
                if gone.version == 4 and self.addr4:
                    msg4 = icmpv4.time_exceeded(icmpv4.TimeExceededCode.REASSEMBLY,
                                                gone.first_fragment)
                    self.send_ip(gone.src, IpProtocol.ICMP, msg4.emit())
                elif gone.version == 6:
                    src = self.source_for(gone.src)
                    msg6 = icmpv6.time_exceeded(icmpv6.TimeExceededCode.REASSEMBLY,
                                                gone.first_fragment)
                    self.send_ip(gone.src, IpProtocol.ICMPV6, msg6.emit(src, gone.src),
                                 src_addr=src)

    def next_deadline(self) -> int | None:
        times = [t for t in (self.arp.next_deadline(), self.nd.next_deadline(),
                             self.reassembler.next_deadline()) if t is not None]
        return min(times) if times else None
