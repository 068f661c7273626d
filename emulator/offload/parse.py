"""Locate the L2, L3 and L4 headers of a frame the driver handed to the device.

The device never trusts the virtio_net_hdr for this (§5.1.6.2.2: hdr_len is only a
hint, csum_start is what the driver claims): it parses the frame itself, the way Linux's
GSO layer (``skb_network_protocol``, ``inet_gso_segment``, ``ipv6_gso_pull_exthdrs``) and
QEMU's ``net_tx_pkt_parse_headers`` do. Parsing never raises: a structural problem is
recorded as the name of the rule it breaks (``problem``), which matters only when the
packet is to be segmented.

Offsets and field positions come from ``stack.wire``; this is the hot path, so it reads
fields with ``struct`` rather than building header objects.
"""

from __future__ import annotations

import struct

from stack.wire import ipv4, ipv6, tcp, udp
from stack.wire.ethernet import HEADER_LEN as ETH_HLEN
from stack.wire.ethernet import VLAN_TAG_LEN, EtherType
from stack.wire.ipv4 import IpProtocol
from stack.wire.ipv6 import ExtHeader
from virtio.errors import WireError

ETHERTYPE_QINQ = 0x88A8
"""IEEE 802.1ad service tag (QEMU's ETH_P_DVLAN), crossed like an 802.1Q tag."""
VLAN_TYPES = frozenset({int(EtherType.VLAN), ETHERTYPE_QINQ})
MAX_VLAN_TAGS = 2
"""QEMU parses at most two tags (net_tx_pkt_parse_headers); so do we."""

L3_NONE = 0
L3_IPV4 = 4
L3_IPV6 = 6

GSO_EXTHDRS = frozenset({int(ExtHeader.HOP_BY_HOP), int(ExtHeader.ROUTING),
                         int(ExtHeader.DEST_OPTS)})
"""Extension headers segmentation crosses (Linux ipv6_gso_pull_exthdrs: the headers with
INET6_PROTO_GSO_EXTHDR, and hop-by-hop). A fragment header, AH or ESP ends the walk."""

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_V4 = struct.Struct("!BBHHHBBH4s4s")
_V6 = struct.Struct("!IHBB16s16s")


class Layout:
    """Where the headers of one frame are, and the fields the offload engines need."""

    __slots__ = (
        "dst",
        "ethertype",
        "ext_headers",
        "final_dst",
        "frame_len",
        "hbh_not_first",
        "ip_version",
        "jumbo_hbh",
        "l2_len",
        "l3",
        "l3_off",
        "l4_hdr_len",
        "l4_off",
        "l4_proto",
        "problem",
        "src",
        "tcp_flags",
        "tcp_seq",
        "udp_len",
        "v4_flags_frag",
        "v4_ident",
        "v4_ihl",
        "v4_total",
        "v6_next",
        "v6_plen",
    )

    def __init__(self, frame_len: int) -> None:
        self.frame_len = frame_len
        self.l2_len = 0
        self.ethertype = -1
        self.l3 = L3_NONE
        self.l3_off = 0
        self.problem: str | None = None
        self.ip_version = 0
        self.v4_ihl = 0
        self.v4_total = 0
        self.v4_ident = 0
        self.v4_flags_frag = 0
        self.v6_plen = 0
        self.v6_next = 0
        self.ext_headers: tuple[ipv6.ExtensionHeaderRef, ...] = ()
        self.hbh_not_first = False
        self.jumbo_hbh = False
        self.src = b""
        self.dst = b""
        self.final_dst = b""
        self.l4_proto = -1
        self.l4_off = 0
        self.l4_hdr_len = 0
        """TCP: data offset * 4 (0 when the header is truncated or invalid); UDP: 8."""
        self.tcp_flags = 0
        self.tcp_seq = 0
        self.udp_len = 0

    @property
    def l3_len(self) -> int:
        """Bytes from the start of the IP header to the transport header."""
        return self.l4_off - self.l3_off

    @property
    def headers_len(self) -> int:
        """Ethernet + IP (+ extension headers) + transport header: what hdr_len should be."""
        return self.l4_off + self.l4_hdr_len

    @property
    def l4_len(self) -> int:
        """Bytes from the transport header to the end of the frame."""
        return self.frame_len - self.l4_off

    @property
    def ip_len(self) -> int:
        """Bytes from the IP header to the end of the frame."""
        return self.frame_len - self.l3_off


_ETH_IPV4, _ETH_IPV6 = int(EtherType.IPV4), int(EtherType.IPV6)
_TCP, _UDP = int(IpProtocol.TCP), int(IpProtocol.UDP)
_V4_HLEN, _V6_HLEN = ipv4.HEADER_LEN, ipv6.HEADER_LEN
_TCP_HLEN, _UDP_HLEN = tcp.HEADER_LEN, udp.HEADER_LEN
_TCP_SEQ, _TCP_FLAGS, _TCP_DOFF = tcp.OFF_SEQ, tcp.OFF_FLAGS, tcp.OFF_DATA_OFFSET
_UDP_LEN = udp.OFF_LENGTH
_HOP_BY_HOP, _ROUTING = int(ExtHeader.HOP_BY_HOP), int(ExtHeader.ROUTING)


def locate(frame: bytes | bytearray | memoryview) -> Layout:
    n = len(frame)
    if n >= ETH_HLEN + _V4_HLEN and _U16.unpack_from(frame, ETH_HLEN - 2)[0] == _ETH_IPV4:
        lay = _locate_plain_v4(frame, n)
        if lay is not None:
            return lay
    lay = Layout(n)
    if n < ETH_HLEN:
        lay.problem = "frame-too-short"
        return lay
    off = ETH_HLEN
    ethertype = _U16.unpack_from(frame, ETH_HLEN - 2)[0]
    tags = 0
    while ethertype in VLAN_TYPES:
        if tags == MAX_VLAN_TAGS or off + VLAN_TAG_LEN > n:
            lay.problem = "gso-not-ip"
            lay.l2_len = off
            return lay
        ethertype = _U16.unpack_from(frame, off + 2)[0]
        off += VLAN_TAG_LEN
        tags += 1
    lay.l2_len = off
    lay.ethertype = ethertype
    lay.l3_off = off
    if ethertype == _ETH_IPV4:
        _locate_v4(frame, lay)
    elif ethertype == _ETH_IPV6:
        _locate_v6(frame, lay)
    else:
        lay.problem = "gso-not-ip"
        lay.l4_off = off
    if lay.problem is None:
        _locate_l4(frame, lay)
    return lay


_new_layout = object.__new__


def _locate_plain_v4(frame: bytes | bytearray | memoryview, n: int) -> Layout | None:
    """The common case in one pass: an untagged IPv4 frame whose header (IHL >= 5) lies
    in the frame; every field set once to what :func:`locate` would find. None for
    anything else (the general path)."""
    ver_ihl, _tos, total, ident, flags_frag, _ttl, proto, _csum, src, dst = _V4.unpack_from(
        frame, ETH_HLEN)
    ihl = (ver_ihl & 0xF) * 4
    l4 = ETH_HLEN + ihl
    if ihl < _V4_HLEN or l4 > n:
        return None
    lay: Layout = _new_layout(Layout)
    lay.frame_len = n
    lay.l2_len = lay.l3_off = ETH_HLEN
    lay.ethertype = _ETH_IPV4
    lay.l3 = L3_IPV4
    lay.problem = None
    lay.ip_version = ver_ihl >> 4
    lay.v4_ihl = ihl
    lay.v4_total = total
    lay.v4_ident = ident
    lay.v4_flags_frag = flags_frag
    lay.v6_plen = lay.v6_next = 0
    lay.ext_headers = ()
    lay.hbh_not_first = lay.jumbo_hbh = False
    lay.src = src
    lay.dst = lay.final_dst = dst
    lay.l4_proto = proto
    lay.l4_off = l4
    lay.l4_hdr_len = lay.tcp_flags = lay.tcp_seq = lay.udp_len = 0
    _locate_l4(frame, lay)
    return lay


def _locate_v4(frame: bytes | bytearray | memoryview, lay: Layout) -> None:
    off = lay.l3_off
    lay.l4_off = off
    if off + _V4_HLEN > lay.frame_len:
        lay.problem = "ip-header-truncated"
        return
    ver_ihl, _tos, total, ident, flags_frag, _ttl, proto, _csum, src, dst = _V4.unpack_from(
        frame, off)
    lay.l3 = L3_IPV4
    lay.ip_version = ver_ihl >> 4
    ihl = (ver_ihl & 0xF) * 4
    lay.v4_ihl = ihl
    lay.v4_total = total
    lay.v4_ident = ident
    lay.v4_flags_frag = flags_frag
    lay.src = src  # unpacked "4s" fields are bytes already
    lay.dst = lay.final_dst = dst
    lay.l4_proto = proto
    if ihl < _V4_HLEN:
        lay.problem = "ipv4-ihl-invalid"
        return
    if off + ihl > lay.frame_len:
        lay.problem = "ip-header-truncated"
        return
    lay.l4_off = off + ihl


def _locate_v6(frame: bytes | bytearray | memoryview, lay: Layout) -> None:
    off = lay.l3_off
    lay.l4_off = off
    if off + _V6_HLEN > lay.frame_len:
        lay.problem = "ip-header-truncated"
        return
    vtf, plen, nxt, _hops, src, dst = _V6.unpack_from(frame, off)
    lay.l3 = L3_IPV6
    lay.ip_version = vtf >> 28
    lay.v6_plen = plen
    lay.v6_next = nxt
    lay.src = src
    lay.dst = lay.final_dst = dst
    if nxt not in GSO_EXTHDRS:
        # No extension header to cross (what walk_extension_headers would find too).
        lay.l4_proto = nxt
        lay.l4_off = off + _V6_HLEN
        return
    view = memoryview(frame)[off:] if not isinstance(frame, memoryview) else frame[off:]
    try:
        chain = ipv6.walk_extension_headers(view, nxt, ipv6.HEADER_LEN, kinds=GSO_EXTHDRS)
    except WireError:  # a truncated extension header
        lay.problem = "ipv6-exthdr-truncated"
        lay.l4_off = lay.frame_len
        return
    refs = tuple(
        ipv6.ExtensionHeaderRef(h.kind, h.offset + off, h.length, h.next_header)
        for h in chain.headers
    )
    lay.ext_headers = refs
    lay.l4_proto = chain.upper_protocol
    lay.l4_off = off + chain.upper_offset
    for i, h in enumerate(refs):
        if h.kind == _HOP_BY_HOP and i > 0:
            lay.hbh_not_first = True
        if h.kind == _ROUTING:
            final = ipv6.routing_final_destination(frame, h)
            if final is not None:
                lay.final_dst = final
    if refs and refs[0].kind == _HOP_BY_HOP and refs[0].length == 8:
        first = refs[0].offset
        # Linux ipv6_has_hopopt_jumbo: an 8-byte hop-by-hop header holding exactly the
        # Jumbo Payload option, followed by TCP (the BIG TCP layout).
        lay.jumbo_hbh = (frame[first + 2] == ipv6.OPT_JUMBO and frame[first + 1] == 0
                         and refs[0].next_header == _TCP)


def _locate_l4(frame: bytes | bytearray | memoryview, lay: Layout) -> None:
    off = lay.l4_off
    n = lay.frame_len
    proto = lay.l4_proto
    if proto == _TCP:
        if off + _TCP_HLEN <= n:
            lay.tcp_seq = _U32.unpack_from(frame, off + _TCP_SEQ)[0]
            lay.tcp_flags = frame[off + _TCP_FLAGS]
            lay.l4_hdr_len = (frame[off + _TCP_DOFF] >> 4) * 4
    elif proto == _UDP and off + _UDP_HLEN <= n:
        lay.l4_hdr_len = _UDP_HLEN
        lay.udp_len = _U16.unpack_from(frame, off + _UDP_LEN)[0]


def unfragmentable_len_linux(lay: Layout) -> int:
    """Bytes of IPv6 extension headers before the point where Linux inserts a fragment
    header (net/ipv6/output_core.c ip6_find_1stfragopt: hop-by-hop, routing and
    destination options up to a destination options header that follows a routing
    header)."""
    found_routing = False
    end = lay.l3_off + ipv6.HEADER_LEN
    for h in lay.ext_headers:
        if h.kind == ExtHeader.ROUTING:
            found_routing = True
        elif h.kind == ExtHeader.DEST_OPTS and found_routing:
            break
        end = h.offset + h.length
    return end - lay.l3_off - ipv6.HEADER_LEN


def unfragmentable_len_rfc(lay: Layout) -> int:
    """Bytes of IPv6 extension headers in the Unfragmentable Part (RFC 8200 §4.5):
    hop-by-hop and routing headers, and destination options that precede a routing
    header."""
    end = lay.l3_off + ipv6.HEADER_LEN
    routing_at = max((i for i, h in enumerate(lay.ext_headers) if h.kind == ExtHeader.ROUTING),
                     default=-1)
    for i, h in enumerate(lay.ext_headers):
        if h.kind in (ExtHeader.HOP_BY_HOP, ExtHeader.ROUTING) or (
                h.kind == ExtHeader.DEST_OPTS and i < routing_at):
            end = h.offset + h.length
        else:
            break
    return end - lay.l3_off - ipv6.HEADER_LEN
