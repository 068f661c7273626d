"""The device's hash engine: which hash applies to a received frame, the Toeplitz hash
over it, and the RSS queue choice.

- Hash type selection: virtio-v1.2 §5.1.6.4.3 "Hash calculation for incoming packets"
  (``spec.NET_HASH``) with its subsections for IPv4 (§5.1.6.4.3.2), IPv6 without
  extension headers (§5.1.6.4.3.3) and IPv6 with extension headers (§5.1.6.4.3.4); the
  type bits are ``HashType`` (§5.1.6.4.3.1), the reported values ``HashReport``
  (§5.1.6.4.4).
- The hash function: Toeplitz, the only one VIRTIO_NET_F_RSS offers (§5.1.6.5.7), as
  Microsoft's RSS defines it ("RSS Hashing Functions"; the same in the Intel 82599
  datasheet §7.1.2.8).
- Queue choice: §5.1.6.5.7.3 "Device Requirements: RSS processing".

Decisions where the spec is silent, each following the reference implementations:

- Fragments (§5.1.6.4.3.2 "the packet has a TCP header"): an IPv4 packet with MF set or
  a non-zero fragment offset, and an IPv6 packet with a Fragment header, never gets a
  TCP/UDP type, not even the first fragment that does carry the transport header. All
  fragments of one datagram must hash alike, or they would land on different queues:
  Microsoft's "RSS Hashing Types" requires NDIS_HASH_IPV4 for fragmented packets
  "including the first fragment"; QEMU's ``eth_get_protocols`` (net/eth.c) does the same,
  for any IPv6 Fragment header, atomic ones included (Linux's flow dissector likewise
  marks any Fragment header ``FLOW_DIS_IS_FRAGMENT`` and reads no ports behind it unless
  asked to parse first fragments).
- "Has a TCP header" means the 20-byte fixed header lies inside the IP packet (the IPv4
  total length / IPv6 payload length, clipped to the frame) and its data offset is at
  least 5; "has a UDP header", its 8 bytes do. IPv4 total length 0 and IPv6 payload
  length 0 mean "up to the end of the frame" (Linux BIG TCP and RFC 2675 jumbograms).
- The _EX types apply only to IPv6 packets that have extension headers, as
  §5.1.6.4.3.3/§5.1.6.4.3.4 are worded (QEMU's ``virtio_net_get_hash_type`` also uses
  them for IPv6 packets without any; there the _EX hash equals the plain one but the
  report differs). Extension headers are those of RFC 8200 §4 / RFC 7045 §2: hop-by-hop,
  routing, fragment, destination options, AH, mobility (RFC 6275), HIP (RFC 7401) and
  shim6 (RFC 5533), crossed; ESP counts as one but ends the walk (nothing after it is
  readable).
- The _EX addresses: the Home Address option (type 0xC9, length 16, RFC 6275 §6.3) of a
  destination options header for the source; the address of a type 2 routing header
  (Hdr Ext Len 2, Segments Left 1, RFC 6275 §6.4.1; QEMU checks the same) for the
  destination; the first one found of each. An option list that runs past its header
  ends the search in that header.
- VLAN: up to two 802.1Q / 802.1ad tags are crossed (QEMU's limit, as in
  ``emulator.offload.parse``).
- Malformed frames never raise: a bad or truncated IP header gives no hash; a truncated
  transport header or extension header chain gives the best lower-layer type the
  enabled types allow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache, reduce
from operator import getitem, xor

from emulator.offload.parse import MAX_VLAN_TAGS, VLAN_TYPES
from stack.wire import ipv4, ipv6, tcp, udp
from stack.wire.ethernet import HEADER_LEN as ETH_HLEN
from stack.wire.ethernet import VLAN_TAG_LEN, EtherType
from stack.wire.ipv4 import IpProtocol
from stack.wire.ipv6 import ExtHeader
from virtio.constants import HashReport, HashType

RSS_KEY_SIZE_MAX = 40
"""rss_max_key_size (§5.1.4 config layout): Microsoft's 40-byte key; the spec requires at
least 40 when VIRTIO_NET_F_RSS is offered."""
RSS_TABLE_LENGTH_MAX = 128
"""rss_max_indirection_table_length (§5.1.4)."""
SUPPORTED_HASH_TYPES = (
    HashType.IPV4 | HashType.TCPV4 | HashType.UDPV4
    | HashType.IPV6 | HashType.TCPV6 | HashType.UDPV6
    | HashType.IP_EX | HashType.TCP_EX | HashType.UDP_EX
)
"""Every type of §5.1.6.4.3.1: the engine implements all nine."""
DEFAULT_KEY = bytes.fromhex(
    "6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa"
)
"""The 40-byte key of Microsoft's RSS verification suite ("Verifying the RSS Hash
Calculation"; Intel 82599 datasheet §7.1.2.8.3)."""

HOME_ADDRESS_OPTION = 0xC9
"""Home Address destination option (RFC 6275 §6.3), 16 bytes of data."""
ROUTING_TYPE_2 = 2
"""Type 2 Routing Header (RFC 6275 §6.4): one address, Hdr Ext Len 2, Segments Left 1."""
EXT_MOBILITY, EXT_HIP, EXT_SHIM6 = 135, 139, 140
"""Extension headers of RFC 7045 §2 beyond those of ``stack.wire.ipv6.ExtHeader``; all
three use the 8-octet length encoding of RFC 8200 §4.3."""


# ---------------------------------------------------------------------------------------
# Toeplitz hash


@lru_cache(maxsize=16)
def _toeplitz_tables(key: bytes) -> tuple[tuple[int, ...], ...]:
    """Per input byte position i (0 .. len(key) - 5) and byte value v, the XOR of the
    32-bit key windows that v's set bits select: bit b (MSB first) of input byte i
    selects the window starting at key bit 8*i + b."""
    nbits = len(key) * 8
    k = int.from_bytes(key, "big")
    tables: list[tuple[int, ...]] = []
    for i in range(len(key) - 4):
        # windows[j]: the window for the bit of value 0x80 >> j.
        windows = [(k >> (nbits - 32 - 8 * i - j)) & 0xFFFFFFFF for j in range(8)]
        by_bit = {0x80 >> j: w for j, w in enumerate(windows)}
        table = [0] * 256
        for v in range(1, 256):
            low = v & -v
            table[v] = table[v ^ low] ^ by_bit[low]
        tables.append(tuple(table))
    return tuple(tables)


def toeplitz(key: bytes, data: bytes) -> int:
    """The 32-bit Toeplitz hash of ``data`` under ``key`` (Microsoft "RSS Hashing
    Functions": for each input bit set, left to right, XOR in the leftmost 32 bits of the
    key, shifted left once per input bit).

    ValueError if ``len(key) < len(data) + 4`` (the key must cover every window). Cost:
    one table lookup per input byte; the tables are built once per key and cached.
    """
    if len(key) < len(data) + 4:
        raise ValueError(
            f"a Toeplitz key of {len(key)} bytes is too short for {len(data)} bytes of input "
            f"(needs {len(data) + 4})")
    tables = _toeplitz_tables(key if type(key) is bytes else bytes(key))
    # XOR of tables[i][data[i]], all in C: map stops at the shorter of the two.
    return reduce(xor, map(getitem, tables, data), 0)


# ---------------------------------------------------------------------------------------
# Hash type selection


@dataclass(frozen=True, slots=True)
class HashInput:
    """The hash that applies to a packet (§5.1.6.4.4 report value) and the bytes hashed:
    source address, destination address[, source port, destination port], in network
    byte order."""

    report: HashReport
    data: bytes


_SUPPORTED = int(SUPPORTED_HASH_TYPES)
_T_IPV4, _T_TCPV4, _T_UDPV4 = int(HashType.IPV4), int(HashType.TCPV4), int(HashType.UDPV4)
_T_IPV6, _T_TCPV6, _T_UDPV6 = int(HashType.IPV6), int(HashType.TCPV6), int(HashType.UDPV6)
_T_IP_EX, _T_TCP_EX, _T_UDP_EX = int(HashType.IP_EX), int(HashType.TCP_EX), int(HashType.UDP_EX)
_V4_TYPES = _T_IPV4 | _T_TCPV4 | _T_UDPV4
_V6_TYPES = _T_IPV6 | _T_TCPV6 | _T_UDPV6 | _T_IP_EX | _T_TCP_EX | _T_UDP_EX
_EX_TYPES = _T_IP_EX | _T_TCP_EX | _T_UDP_EX

_R_IPV4, _R_TCPV4, _R_UDPV4 = HashReport.IPV4, HashReport.TCPV4, HashReport.UDPV4
_R_IPV6, _R_TCPV6, _R_UDPV6 = HashReport.IPV6, HashReport.TCPV6, HashReport.UDPV6
_R_IPV6_EX, _R_TCPV6_EX, _R_UDPV6_EX = (HashReport.IPV6_EX, HashReport.TCPV6_EX,
                                        HashReport.UDPV6_EX)

_ETH_IPV4, _ETH_IPV6 = int(EtherType.IPV4), int(EtherType.IPV6)
_TCP, _UDP = int(IpProtocol.TCP), int(IpProtocol.UDP)
_V4_HLEN, _V6_HLEN = ipv4.HEADER_LEN, ipv6.HEADER_LEN
_TCP_HLEN, _UDP_HLEN = tcp.HEADER_LEN, udp.HEADER_LEN
_TCP_DOFF = tcp.OFF_DATA_OFFSET
_V4_FRAG_BITS = ipv4.FLAG_MF | ipv4.FRAG_OFFSET_MASK
_V6_FRAG_OFFSET = ipv6.FRAG_OFFSET_MASK
_FRAGMENT, _AH, _ESP = int(ExtHeader.FRAGMENT), int(ExtHeader.AH), int(ExtHeader.ESP)
_ROUTING, _DEST_OPTS = int(ExtHeader.ROUTING), int(ExtHeader.DEST_OPTS)
_CROSSED = frozenset({int(ExtHeader.HOP_BY_HOP), _ROUTING, _FRAGMENT, _AH, _DEST_OPTS,
                      EXT_MOBILITY, EXT_HIP, EXT_SHIM6})
"""Extension headers the walk crosses (RFC 7045 §2 less ESP)."""
_EXTENSION = _CROSSED | {_ESP}
"""Next-header values that make a packet one "with extension header" (§5.1.6.4.3.4)."""

_Frame = bytes | bytearray | memoryview


def hash_input(frame: _Frame, types: HashType) -> HashInput | None:
    """Which hash applies to an Ethernet frame (802.1Q-tagged frames included) under the
    enabled ``types``, and what is hashed (§5.1.6.4.3); None when no enabled type applies
    (the device reports VIRTIO_NET_HASH_REPORT_NONE, §5.1.6.4.4).

    Never raises on any bytes: a frame that is not IPv4/IPv6, or whose IP header is
    truncated or malformed (version, IHL), gives None; a truncated transport header or
    extension header chain gives the best lower-layer type that is enabled (no TCP header
    means no TCP type, §5.1.6.4.3.2). Bits of ``types`` outside §5.1.6.4.3.1 are ignored.
    """
    t = int(types) & _SUPPORTED
    n = len(frame)
    if not t or n < ETH_HLEN:
        return None
    ethertype = (frame[ETH_HLEN - 2] << 8) | frame[ETH_HLEN - 1]
    off = ETH_HLEN
    tags = 0
    while ethertype in VLAN_TYPES:
        if tags == MAX_VLAN_TAGS or off + VLAN_TAG_LEN > n:
            return None
        ethertype = (frame[off + 2] << 8) | frame[off + 3]
        off += VLAN_TAG_LEN
        tags += 1
    if ethertype == _ETH_IPV4:
        return _ipv4(frame, off, n, t) if t & _V4_TYPES else None
    if ethertype == _ETH_IPV6:
        return _ipv6(frame, off, n, t) if t & _V6_TYPES else None
    return None


def _has_tcp(frame: _Frame, l4: int, end: int) -> bool:
    """A TCP header lies in [l4, end): its 20 fixed bytes, with a data offset >= 5."""
    return l4 + _TCP_HLEN <= end and frame[l4 + _TCP_DOFF] >> 4 >= 5


def _ipv4(frame: _Frame, off: int, n: int, t: int) -> HashInput | None:
    """§5.1.6.4.3.2 (``spec.NET_HASH_IPV4``): TCPv4 if enabled and the packet has a TCP
    header, else UDPv4 if enabled and it has a UDP header, else IPv4 if enabled, else no
    hash."""
    if off + _V4_HLEN > n:
        return None
    ver_ihl = frame[off]
    ihl = (ver_ihl & 0xF) * 4
    if ver_ihl >> 4 != ipv4.VERSION or ihl < _V4_HLEN or off + ihl > n:
        return None
    addrs = bytes(frame[off + ipv4.OFF_SRC : off + ipv4.OFF_DST + 4])
    flags_frag = (frame[off + ipv4.OFF_FLAGS_FRAG] << 8) | frame[off + ipv4.OFF_FLAGS_FRAG + 1]
    if t & (_T_TCPV4 | _T_UDPV4) and not flags_frag & _V4_FRAG_BITS:
        # Not a fragment (module docstring): the transport header may be used.
        total = (frame[off + ipv4.OFF_TOTAL_LEN] << 8) | frame[off + ipv4.OFF_TOTAL_LEN + 1]
        end = n if total == 0 else min(n, off + total)
        proto = frame[off + ipv4.OFF_PROTOCOL]
        l4 = off + ihl
        if proto == _TCP:
            if t & _T_TCPV4 and _has_tcp(frame, l4, end):
                return HashInput(_R_TCPV4, addrs + bytes(frame[l4 : l4 + 4]))
        elif proto == _UDP and t & _T_UDPV4 and l4 + _UDP_HLEN <= end:
            return HashInput(_R_UDPV4, addrs + bytes(frame[l4 : l4 + 4]))
    if t & _T_IPV4:
        return HashInput(_R_IPV4, addrs)
    return None


def _home_address(frame: _Frame, start: int, length: int) -> bytes | None:
    """The Home Address option's address in the destination options header at
    ``start`` (RFC 6275 §6.3), if it holds one."""
    pos, end = start + 2, start + length
    while pos < end:
        opt = frame[pos]
        if opt == ipv6.OPT_PAD1:
            pos += 1
            continue
        if pos + 2 > end:
            return None
        olen = frame[pos + 1]
        if pos + 2 + olen > end:
            return None
        if opt == HOME_ADDRESS_OPTION and olen == 16:
            return bytes(frame[pos + 2 : pos + 18])
        pos += 2 + olen
    return None


def _routing_type2_address(frame: _Frame, start: int, length: int) -> bytes | None:
    """The address of a Type 2 Routing Header at ``start`` (RFC 6275 §6.4.1: Hdr Ext Len
    2, Routing Type 2, Segments Left 1, then 4 reserved bytes and the home address)."""
    if length != 24 or frame[start + 2] != ROUTING_TYPE_2 or frame[start + 3] != 1:
        return None
    return bytes(frame[start + 8 : start + 24])


def _ipv6(frame: _Frame, off: int, n: int, t: int) -> HashInput | None:
    """IPv6 packets without extension headers (§5.1.6.4.3.3, ``spec.NET_HASH_IPV6``) and
    with them (§5.1.6.4.3.4, ``spec.NET_HASH_IPV6_EX``)."""
    if off + _V6_HLEN > n or frame[off] >> 4 != ipv6.VERSION:
        return None
    plen = (frame[off + ipv6.OFF_PAYLOAD_LEN] << 8) | frame[off + ipv6.OFF_PAYLOAD_LEN + 1]
    nxt = frame[off + ipv6.OFF_NEXT_HEADER]
    end = n if plen == 0 else min(n, off + _V6_HLEN + plen)
    src = bytes(frame[off + ipv6.OFF_SRC : off + ipv6.OFF_SRC + 16])
    dst = bytes(frame[off + ipv6.OFF_DST : off + ipv6.OFF_DST + 16])
    pos = off + _V6_HLEN
    if nxt not in _EXTENSION:
        return _ipv6_plain(frame, t, src + dst, nxt, pos, end=end)
    # Walk the extension headers (RFC 8200 §4): the upper-layer protocol and its offset,
    # whether this is a fragment, and the Mobile IPv6 addresses of §5.1.6.4.3.4.
    home: bytes | None = None
    rt2: bytes | None = None
    fragment = False
    proto = -1  # unknown: the chain is truncated or leaves the readable part
    while True:
        if nxt not in _CROSSED:
            proto = nxt
            break
        if pos + 2 > end:
            break
        if nxt == _FRAGMENT:
            length = ipv6.FRAGMENT_HEADER_LEN
        elif nxt == _AH:
            length = (frame[pos + 1] + 2) * 4  # RFC 4302 §2.2
        else:
            length = (frame[pos + 1] + 1) * 8  # RFC 8200 §4.3-4.6
        if pos + length > end:
            break
        if nxt == _FRAGMENT:
            fragment = True
            offset = ((frame[pos + ipv6.FRAG_OFF_OFFSET_FLAGS] << 8)
                      | frame[pos + ipv6.FRAG_OFF_OFFSET_FLAGS + 1]) & _V6_FRAG_OFFSET
            if offset:
                break  # a later fragment: what follows is payload, not headers
        elif nxt == _DEST_OPTS:
            if home is None:
                home = _home_address(frame, pos, length)
        elif nxt == _ROUTING and rt2 is None:
            rt2 = _routing_type2_address(frame, pos, length)
        nxt = frame[pos]
        pos += length
    if fragment:
        proto = -1  # no transport type for any fragment (module docstring)
    if t & _EX_TYPES:
        # §5.1.6.4.3.4: the home address (else the source address) and the type 2
        # routing header's address (else the destination address).
        ex_addrs = (home or src) + (rt2 or dst)
        if proto == _TCP:
            if t & _T_TCP_EX and _has_tcp(frame, pos, end):
                return HashInput(_R_TCPV6_EX, ex_addrs + bytes(frame[pos : pos + 4]))
        elif proto == _UDP and t & _T_UDP_EX and pos + _UDP_HLEN <= end:
            return HashInput(_R_UDPV6_EX, ex_addrs + bytes(frame[pos : pos + 4]))
        if t & _T_IP_EX:
            return HashInput(_R_IPV6_EX, ex_addrs)
    # §5.1.6.4.3.4 "Else skip IPv6 extension headers and calculate the hash as defined
    # for an IPv6 packet without extension headers".
    return _ipv6_plain(frame, t, src + dst, proto, pos, end=end)


def _ipv6_plain(frame: _Frame, t: int, addrs: bytes, proto: int, l4: int, *,
                end: int) -> HashInput | None:
    """§5.1.6.4.3.3 (``spec.NET_HASH_IPV6``): TCPv6 if enabled and the packet has a TCP
    header, else UDPv6 if enabled and it has a UDP header, else IPv6 if enabled, else no
    hash."""
    if proto == _TCP:
        if t & _T_TCPV6 and _has_tcp(frame, l4, end):
            return HashInput(_R_TCPV6, addrs + bytes(frame[l4 : l4 + 4]))
    elif proto == _UDP and t & _T_UDPV6 and l4 + _UDP_HLEN <= end:
        return HashInput(_R_UDPV6, addrs + bytes(frame[l4 : l4 + 4]))
    if t & _T_IPV6:
        return HashInput(_R_IPV6, addrs)
    return None


def packet_hash(frame: _Frame, types: HashType, key: bytes) -> tuple[int, HashReport]:
    """(hash_value, report) for a received frame (§5.1.6.4.3, §5.1.6.4.4);
    ``(0, HashReport.NONE)`` when no enabled type applies.

    Never raises. A key shorter than the selected input needs (the input plus 4 bytes) is
    extended with zero bytes to RSS_KEY_SIZE_MAX, as a device holding the key in a zeroed
    ``rss_max_key_size`` array does (QEMU's ``VirtioNetRssData.key``).
    """
    found = hash_input(frame, types)
    if found is None:
        return 0, HashReport.NONE
    data = found.data
    if len(key) < len(data) + 4:
        key = bytes(key).ljust(RSS_KEY_SIZE_MAX, b"\0")
    return toeplitz(key, data), found.report


def select_queue(hash_value: int, report: HashReport, table: Sequence[int],
                 unclassified_queue: int) -> int:
    """The 0-based receive queue for a packet, §5.1.6.5.7.3 RSS processing: a packet
    whose hash was not calculated (report NONE) goes to ``unclassified_queue``; any
    other to ``table[hash_value & (len(table) - 1)]`` (indirection_table_mask + 1 =
    len(table) entries, a power of two, §5.1.6.5.7.2).

    ValueError when the table is empty or its length is not a power of two (the caller
    validates RSS_CONFIG before installing a table).
    """
    size = len(table)
    if size == 0 or size & (size - 1):
        raise ValueError(f"indirection table length {size} is not a power of two")
    if report == HashReport.NONE:
        return unclassified_queue
    return table[hash_value & (size - 1)]
