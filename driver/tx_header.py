"""The virtio_net_hdr the driver puts in front of a frame it transmits (§5.1.6.2).

The stack hands down a frame and :class:`stack.device.TxMeta` (segment size, checksum
start and offset); the driver turns that into the header the negotiated features allow,
like Linux's ``virtio_net_hdr_from_skb``: NEEDS_CSUM with csum_start/csum_offset for a
partial checksum (needs CSUM), gso_type TCPV4/TCPV6/UDP_L4 from the packet's own headers
with gso_size and hdr_len for segmentation (needs HOST_TSO4/HOST_TSO6/HOST_USO, and
HOST_ECN when the first segment carries CWR). Asking for an offload that was not
negotiated is the caller's error (``ValueError``): a driver must not send it (§5.1.6.2.1).
"""

from __future__ import annotations

from stack.device import TxMeta
from stack.wire import ipv6
from stack.wire.ethernet import EthernetHeader, EtherType
from stack.wire.ipv4 import IpProtocol, Ipv4Header
from stack.wire.tcp import OFF_DATA_OFFSET, OFF_FLAGS, TcpFlags
from stack.wire.udp import HEADER_LEN as UDP_HEADER_LEN
from virtio.constants import GSO_ECN, FeatureBit, GsoType, NetHdrFlag
from virtio.errors import WireError
from virtio.features import FeatureSet
from virtio.net_hdr import NetHdr

F = FeatureBit
PLAIN = NetHdr()
"""flags 0, gso_type NONE, num_buffers 0 (§5.1.6.2.1: the driver sets num_buffers to 0)."""


def _l4(frame: bytes) -> tuple[int, int, int]:
    """IP version, L4 protocol and L4 offset of an Ethernet frame (WireError if it has
    no IPv4/IPv6 header the driver can read)."""
    eth = EthernetHeader.parse(frame)
    at = eth.length
    if eth.ethertype == EtherType.IPV4:
        ip4 = Ipv4Header.parse(frame[at:], allow_zero_length=True)
        return 4, ip4.protocol, at + ip4.header_len
    if eth.ethertype == EtherType.IPV6:
        ip6 = ipv6.Ipv6Header.parse(frame[at:], allow_zero_length=True)
        chain = ipv6.walk_extension_headers(frame, ip6.next_header, at + ipv6.HEADER_LEN)
        return 6, chain.upper_protocol, chain.upper_offset
    raise WireError(f"ethertype {eth.ethertype:#06x} carries no IP packet to offload")


def build_tx_header(frame: bytes, meta: TxMeta | None, negotiated: FeatureSet) -> NetHdr:
    """The header for ``frame``; ``ValueError`` when ``meta`` asks for an offload the
    negotiated features do not allow or that does not fit the packet."""
    if meta is None or (meta.segment_size is None and meta.csum_start is None):
        return PLAIN
    if (meta.csum_start is None) != (meta.csum_offset is None):
        raise ValueError("csum_start and csum_offset go together")
    flags = 0
    csum_start = csum_offset = 0
    if meta.csum_start is not None and meta.csum_offset is not None:
        if F.CSUM not in negotiated:
            raise ValueError("checksum offload asked for, but CSUM was not negotiated")
        if (meta.csum_start < 0 or meta.csum_offset < 0
                or meta.csum_start + meta.csum_offset + 2 > len(frame)):
            raise ValueError(f"checksum field at {meta.csum_start}+{meta.csum_offset} is "
                             f"outside the {len(frame)}-byte frame")
        flags = int(NetHdrFlag.NEEDS_CSUM)
        csum_start, csum_offset = meta.csum_start, meta.csum_offset
    if meta.segment_size is None:
        return NetHdr(flags=flags, csum_start=csum_start, csum_offset=csum_offset)
    if not flags:
        raise ValueError("segmentation needs a partial checksum (csum_start/csum_offset): "
                         "gso_type other than NONE requires NEEDS_CSUM (§5.1.6.2.1)")
    if meta.segment_size <= 0:
        raise ValueError(f"segment size {meta.segment_size} must be positive")
    try:
        version, proto, l4 = _l4(frame)
    except WireError as exc:
        raise ValueError(f"cannot segment this frame: {exc}") from exc
    if proto == IpProtocol.TCP:
        gso = int(GsoType.TCPV4 if version == 4 else GsoType.TCPV6)
        need = F.HOST_TSO4 if version == 4 else F.HOST_TSO6
        if l4 + 20 > len(frame):
            raise ValueError("TCP header truncated")
        hdr_len = l4 + (frame[l4 + OFF_DATA_OFFSET] >> 4) * 4
        if frame[l4 + OFF_FLAGS] & TcpFlags.CWR:
            if F.HOST_ECN not in negotiated:
                raise ValueError("CWR set on a TSO packet, but HOST_ECN was not negotiated")
            gso |= GSO_ECN
    elif proto == IpProtocol.UDP:
        gso, need, hdr_len = int(GsoType.UDP_L4), F.HOST_USO, l4 + UDP_HEADER_LEN
    else:
        raise ValueError(f"IP protocol {proto} cannot be segmented")
    if need not in negotiated:
        raise ValueError(f"segmentation asked for, but {need.name} was not negotiated")
    return NetHdr(flags=flags, gso_type=gso, hdr_len=hdr_len, gso_size=meta.segment_size,
                  csum_start=csum_start, csum_offset=csum_offset)
