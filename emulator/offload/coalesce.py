"""Receive coalescing (GUEST_TSO4 / GUEST_TSO6 / GUEST_ECN, RSC_EXT): the inverse of the
transmit segmentation engine, modelled on Linux GRO (net/core/gro.c ``dev_gro_receive``,
net/ipv4/af_inet.c ``inet_gro_receive``, net/ipv6/ip6_offload.c ``ipv6_gro_receive``,
net/ipv4/tcp_offload.c ``tcp_gro_receive`` / ``tcp_gro_complete``) and on what the
virtio spec asks of a device that writes coalesced packets (§5.1.6.4 Processing of
Incoming Packets, §5.1.6.4.1 Device Requirements).

A sans-IO object: :meth:`Coalescer.push` takes one frame from the wire and returns what
must go to the driver now, :meth:`Coalescer.flush` ends the batch (NAPI poll end).

Which segments merge (as Linux ``tcp_gro_receive`` and its IP layers):

- same flow: Ethernet header, addresses, ports; up to :data:`MAX_FLOWS` flows are held
  at once (Linux ``MAX_GRO_SKBS``), the oldest flushed to make room;
- the headers of the new segment equal the first segment's byte for byte except IPv4
  total length / ID / header checksum, IPv6 payload length, TCP sequence number,
  checksum and the CWR/PSH/FIN flags. This covers Linux's checks: TOS (with the ECN/CE
  bits), TTL / hop limit, DF, IPv6 version/class/flow label, the ack number, the
  ``tcp_flag_word`` (data offset, flags and the window: Linux flushes on a window change
  too), and the TCP options byte for byte (so timestamps must be equal). The urgent
  pointer is compared as well (stricter than Linux, which ignores it without URG), so
  that re-segmenting reproduces every segment;
- IPv4: no options (Linux requires ``0x45``), not a fragment, a valid header checksum,
  and the ID the previous segment's + 1, or, when DF is set, equal to it (Linux's fixed
  ID / "mangleid" case; virtio has no way to tell the driver, see the round-trip note);
- the sequence number continues the held data; the payload is not larger than the
  first segment's (gso_size = the first segment's payload); the IP length stays within
  ``max_size``; the new segment has no CWR (CWR starts a new packet, RFC 3168 §6.1.2);
- the TCP checksum verifies (pseudo header included) and the IP length matches the
  frame exactly (Linux flushes on a tot_len mismatch, e.g. Ethernet padding).

When a segment cannot join its held flow, the flow is flushed first; the segment then
starts a new one if it can (payload, no PSH/FIN/SYN/RST/URG, CWR only with GUEST_ECN),
otherwise it goes out alone. A segment carrying PSH or FIN, or smaller than gso_size,
is merged as the last one and the flow flushed. SYN, RST and URG segments are never
merged. A segment whose checksum fails goes out alone, without flushing its flow (Linux
``tcp4_gro_receive``: ``goto flush`` with no packet to flush).

What is written for a packet of more than one segment (Linux ``tcp_gro_complete`` then
``virtio_net_hdr_from_skb``, the tap/vhost path to a guest): the first segment's headers
with IPv4 total length / IPv6 payload length updated, the IPv4 header checksum
recomputed, the last segment's PSH/FIN OR-ed into the flags, and the TCP checksum field
holding the pseudo-header sum over the full TCP length (not complemented): a partial
checksum, ``flags = NEEDS_CSUM``, ``csum_start`` = the TCP header offset,
``csum_offset`` = 16. Linux's virtio-net receive path (``virtio_net_hdr_to_skb``)
turns NEEDS_CSUM into CHECKSUM_PARTIAL, which its TCP accepts as verified
(§5.1.6.4: the checksums have been validated, the packet's checksum is incomplete).
``gso_type`` is TCPV4 / TCPV6, with ECN when the first segment has CWR (only under
GUEST_ECN), ``gso_size`` the first segment's payload, ``hdr_len`` all headers.
With RSC_EXT (``rsc_info``) the flags are ``NEEDS_CSUM | RSC_INFO``, ``csum_start`` the
number of coalesced segments and ``csum_offset`` the number of duplicate ACKs
(§5.1.6.4.1: the checksum is still incomplete; the driver finds the TCP header itself).

A packet of one segment goes out unchanged with ``gso_type`` NONE and DATA_VALID when
its checksum verified (and GUEST_CSUM is on). Anything else (not TCP or UDP, bad IP
headers or checksums, VLAN-tagged frames) is passed through with its bytes unchanged and
flags 0; TCP of a disabled kind too, with DATA_VALID when its checksum verified.

Duplicate ACKs (``rsc_info`` only): a pure ACK (no payload, flags exactly ACK) of a held
flow whose headers match (same ack number and window), whose sequence number is the
next expected one and whose IPv4 ID follows the chain is absorbed into the held packet
and counted in ``csum_offset``, as Windows RSC (which RSC_EXT exists for) does; the
driver re-creates them from the count. Should the flow end with a single data segment,
the absorbed ACKs are sent out again unchanged after it, so nothing is lost. Without
``rsc_info`` a pure ACK flushes its flow and passes alone (Linux).

Round trip: segmenting a coalesced packet with its header (strict profile) gives back
the original segments byte for byte, except the IPv4 ID of a flow coalesced in the
fixed-ID case (DF set, all IDs equal): segmentation increments the ID per segment, as
virtio has no flag for Linux's SKB_GSO_TCP_FIXEDID. Absorbed duplicate ACKs are not
re-created by segmentation either (only counted).

UDP (GUEST_USO4 / GUEST_USO6, Linux ``udp_gro_receive_segment``): datagrams of one flow
with equal headers (but for the lengths, IPv4 ID and checksums) and a verified, non-zero
checksum merge while each payload is at most the first one's; a shorter one is merged as
the last; at most :data:`UDP_GRO_CNT_MAX` datagrams. The merged packet: UDP length
updated, the UDP checksum field holding the pseudo-header sum, ``gso_type`` UDP_L4,
``csum_offset`` 6. With ``rsc_info`` it carries RSC_INFO too, as §5.1.6.4.1 words it for
every gso_type other than NONE. UDP with USO disabled passes through unchanged
with DATA_VALID (its checksum verified, as TCP of a disabled kind); zero-checksum UDP
with flags 0.

Not implemented: BIG TCP (packets over 65535 bytes), GRO of tunnels, VLAN tags
(tagged frames pass through unchanged).

When: the packets a frame ends up in are returned by the :meth:`Coalescer.push` that
takes it, or by a later push or :meth:`Coalescer.flush` while it is held, with one
exception. The next segment of a held TCP flow is merged on trust: every check but its
TCP checksum done, the checksums of all such segments are verified later, one numpy
pass per flow, before anything else happens (before a push that does not merge on
trust, before a merged packet goes out, at flush). Should one fail, the merges since
everything was last verified are undone and their segments pushed again, verified one
by one: the packets, and their order, are exactly those of verifying every segment as
it arrives (the failing one goes out alone with flags 0, its flow going on without
it), only the failing segment comes out later: from the next call that returns
anything, instead of its own push (which returned nothing, with ``last_held`` True).
Merging on trust is what makes the receive path fast enough; a corrupted segment is
rare and costs the re-verification of its window.

Implementation: an untagged IPv4 (IHL 5) or IPv6 (no extension header) TCP segment is
read with one ``struct`` call; its headers are compared with its flow's first as a few
integers (and the TCP options as bytes), its IPv4 header checksum checked from the
three fields that may differ from the first's (total length, ID, checksum). The TCP
checksum of a frame verified on arrival comes from one ``int.from_bytes`` modulo 0xFFFF
(the addresses of the pseudo header precede the TCP header). Everything else (VLAN
tags, IPv4 options, IPv6 extension headers, UDP, anything failing a check) takes the
general path through ``locate()``. The merged payload is copied out of the numpy rows
its checksums were verified in. The configuration is fixed for a coalescer's life.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from operator import itemgetter

import numpy as np
import numpy.typing as npt

from emulator.offload.parse import L3_IPV4, L3_IPV6, locate
from stack.wire import ipv4, ipv6, tcp, udp
from stack.wire.checksum import U8Array, fold, internet_checksum, raw_sum
from stack.wire.ethernet import HEADER_LEN as ETH_HLEN
from stack.wire.ethernet import EtherType
from stack.wire.ipv4 import IpProtocol
from stack.wire.tcp import TcpFlags
from virtio.constants import GSO_ECN, GsoType, NetHdrFlag
from virtio.net_hdr import NetHdr

MAX_FLOWS = 8
"""Flows held at once (Linux MAX_GRO_SKBS); the oldest is flushed to make room."""
MAX_IP_LEN = 0xFFFF
UDP_GRO_CNT_MAX = 64
"""Linux include/net/udp.h: the most datagrams UDP GRO merges into one packet."""

_TCP, _UDP = int(IpProtocol.TCP), int(IpProtocol.UDP)
_FIN, _SYN, _RST, _PSH, _ACK, _URG, _CWR = (int(TcpFlags.FIN), int(TcpFlags.SYN),
                                            int(TcpFlags.RST), int(TcpFlags.PSH),
                                            int(TcpFlags.ACK), int(TcpFlags.URG),
                                            int(TcpFlags.CWR))
_NEVER_MERGED = _SYN | _RST | _URG
_LAST = _PSH | _FIN
_NOT_MERGED = _NEVER_MERGED | _CWR
_NOT_STARTED = _NEVER_MERGED | _LAST
_SIG_FLAG_MASK = 0xFF & ~(_CWR | _PSH | _FIN)
_NEEDS_CSUM, _DATA_VALID, _RSC_INFO = (int(NetHdrFlag.NEEDS_CSUM), int(NetHdrFlag.DATA_VALID),
                                       int(NetHdrFlag.RSC_INFO))
_GSO_TCPV4, _GSO_TCPV6, _GSO_USO = int(GsoType.TCPV4), int(GsoType.TCPV6), int(GsoType.UDP_L4)
_ECN = int(GSO_ECN)
_V4_TOTAL, _V4_IDENT, _V4_CSUM = ipv4.OFF_TOTAL_LEN, ipv4.OFF_IDENT, ipv4.OFF_CHECKSUM
_V4_DF, _V4_MF, _V4_FRAG = ipv4.FLAG_DF, ipv4.FLAG_MF, ipv4.FRAG_OFFSET_MASK
_V6_PLEN = ipv6.OFF_PAYLOAD_LEN
_TCP_SEQ, _TCP_FLAGS, _TCP_CSUM = tcp.OFF_SEQ, tcp.OFF_FLAGS, tcp.OFF_CHECKSUM
_TCP_PORTS_LEN = tcp.OFF_SEQ
_TCP_HLEN = tcp.HEADER_LEN
_U16 = struct.Struct("!H")
_TCP_CSUM_OFFSET = tcp.OFF_CHECKSUM
_UDP_LEN, _UDP_CSUM = udp.OFF_LENGTH, udp.OFF_CHECKSUM
_UDP_KEY = bytes([_UDP])
"""Ends the key of a UDP flow (a TCP key has nothing there)."""
_PASS = NetHdr()
_VALID = NetHdr(flags=_DATA_VALID)
_HEADERS: dict[tuple[int, int, int, int, int, int], NetHdr] = {}
"""The headers of merged packets, made once (NetHdr is an immutable value)."""
_HEADERS_KEPT = 256
_M16 = 0xFFFF

# The fast path reads an untagged frame by absolute offset.
_MACS = 2 * 6
_L3 = ETH_HLEN
_L4_V4 = _L3 + ipv4.HEADER_LEN
_L4_V6 = _L3 + ipv6.HEADER_LEN
_ADDR_V4 = _L3 + ipv4.OFF_SRC
_ADDR_V6 = _L3 + ipv6.OFF_SRC
_FAST_V4 = struct.Struct("!12sHHHHIH12sIQ2xH")
"""MAC addresses; ethertype; IPv4 version/IHL + TOS, total length, ID, flags/fragment
offset + TTL + protocol (one word), header checksum; addresses and ports;
TCP sequence number; ack number + data offset + flags + window (one word); the TCP
checksum skipped; urgent pointer. Ends where the TCP options begin."""
_FAST_V6 = struct.Struct("!12sHIHH36sIQ2xH")
"""MAC addresses; ethertype; IPv6 version/class/flow label, payload length, next header
+ hop limit; addresses and ports; then as :data:`_FAST_V4`."""
_V4_VARYING = struct.Struct("!2xHH4xH")
"""From the IPv4 header: total length, ID, header checksum."""
_FAST_V4_END = _L4_V4 + _TCP_HLEN
_FAST_V6_END = _L4_V6 + _TCP_HLEN
_ETH_V4, _ETH_V6 = int(EtherType.IPV4), int(EtherType.IPV6)
_ETH_V4_HI, _ETH_V6_HI = _ETH_V4 >> 8, _ETH_V6 >> 8
_V4_VERSION_IHL5 = 0x45
_V4_NOT_FIRST_FRAGMENT = (_V4_MF | _V4_FRAG) << 16
_V4_DF_WORD = _V4_DF << 16
_WORD_SIG_MASK = ~((_CWR | _PSH | _FIN) << 16) & 0xFFFFFFFFFFFFFFFF
"""Ack number, data offset, flags and window as one word, without CWR/PSH/FIN."""

_from_bytes = int.from_bytes
_BATCH_MIN = 6
"""Frames of one length and kind verified with numpy at once from this many (fewer: one
by one)."""


@dataclass(frozen=True)
class CoalesceConfig:
    """What the driver negotiated: GUEST_TSO4 (``tcp4``), GUEST_TSO6 (``tcp6``),
    GUEST_ECN (``ecn``), GUEST_USO4 / GUEST_USO6 (``uso4``, ``uso6``),
    RSC_EXT (``rsc_info``), GUEST_CSUM (``guest_csum``: without it the device sets
    flags to zero, §5.1.6.4.1, and may not coalesce). ``max_size``: the largest IP packet
    (header included) the coalescer builds."""

    tcp4: bool
    tcp6: bool
    ecn: bool
    uso4: bool = False
    uso6: bool = False
    max_size: int = MAX_IP_LEN
    rsc_info: bool = False
    guest_csum: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.max_size <= MAX_IP_LEN:
            raise ValueError(f"max_size must be in 1..{MAX_IP_LEN}, not {self.max_size}")
        if (self.tcp4 or self.tcp6 or self.uso4 or self.uso6) and not self.guest_csum:
            raise ValueError("GUEST_TSO4/TSO6/USO4/USO6 need GUEST_CSUM")
        if self.ecn and not (self.tcp4 or self.tcp6):
            raise ValueError("GUEST_ECN needs GUEST_TSO4 or GUEST_TSO6")


@dataclass(frozen=True)
class Coalesced:
    """One packet for the driver: the frame and the virtio_net_hdr the device writes for
    it (``num_buffers`` left 0: buffer placement fills it in). ``segments``: how many
    wire frames it carries; ``dup_acks``: duplicate ACKs absorbed into it."""

    frame: bytes
    hdr: NetHdr
    segments: int = 1
    dup_acks: int = 0


_FastSig = tuple[int, int, int, int]
_Saved = tuple[int, bool | None, int, int, int, int]


class _Flow:
    """A held packet: its first frame (``head``), all its frames (payloads follow the
    headers) and what the next segment is checked against."""

    __slots__ = ("block", "dup_acks", "fast_sig", "fixed_id", "frames", "head", "head_flags",
                 "hlen", "ip_len", "ip_words", "key", "l4", "last_flags", "last_ident", "mss",
                 "next_seq", "options", "pseudo_addr", "saved", "sig", "udp", "v6")

    def __init__(self, frame: bytes, key: bytes, *, v6: bool, udp: bool, l4: int, hlen: int,
                 seq: int, flags: int, ident: int, fast_sig: _FastSig | None,
                 sig: bytes | None, pseudo_addr: int) -> None:
        payload = len(frame) - hlen
        self.head = frame
        self.key = key
        self.v6 = v6
        self.udp = udp
        self.l4 = l4
        self.hlen = hlen
        self.mss = payload
        self.next_seq = (seq + payload) & 0xFFFFFFFF
        self.last_ident = ident
        self.fixed_id: bool | None = None
        """None until a second IPv4 segment tells whether IDs increment or stay fixed."""
        self.frames = [frame]
        self.ip_len = hlen - ETH_HLEN + payload
        """The IP length of the packet so far."""
        self.head_flags = flags
        self.last_flags = flags
        self.dup_acks: list[bytes] = []
        self.fast_sig = fast_sig
        """The fast path's header fields (None for a flow the general path started)."""
        self.options = frame[l4 + _TCP_HLEN:hlen] if fast_sig is not None else b""
        self.sig = sig
        """The masked header copy of the general path (made when first needed)."""
        self.pseudo_addr = pseudo_addr
        """Sum of the pseudo header without the length (-1: not computed yet)."""
        self.saved: _Saved | None = None
        """The state before the first unverified frame of the pending window."""
        self.block: tuple[int, U8Array] | None = None
        """Frames ``frames[i:i + len(rows)]`` as the rows of the array their checksums were
        verified in (``(i, rows)``): the payloads are copied out of it in one go."""
        self.ip_words = 0 if v6 or fast_sig is None else sum(_V4_VARYING.unpack_from(frame, _L3))
        """IPv4 total length + ID + header checksum of the (verified) first frame: a
        segment whose IPv4 header differs from it in these fields alone (what the fast
        path's comparison leaves) verifies when its three have the same sum modulo
        0xFFFF."""

    def signature(self) -> bytes:
        if self.sig is None:
            self.sig = _signature(self.head, self.l4, self.hlen, self.v6, self.udp)
        return self.sig


class Coalescer:
    """Linux-GRO-like receive coalescing for one receive queue (see the module text)."""

    def __init__(self, config: CoalesceConfig) -> None:
        self._config = config
        self._max_size = config.max_size
        self._flows: dict[bytes, _Flow] = {}
        self._pending: list[bytes] = []
        """Frames held unverified since the state was last known exact, in push order."""
        self._touched: list[_Flow] = []
        """The flows those frames went into (each saved as it was before them)."""
        self.last_held = False
        """Whether the frame of the last :meth:`push` is held (merged into or starting
        a held flow, or absorbed as a duplicate ACK); when False it is in the last
        packet that push returned."""

    def push(self, frame: bytes) -> list[Coalesced]:
        if type(frame) is not bytes:
            frame = bytes(frame)
        n = len(frame)
        # The fast path: untagged IPv4 (IHL 5) or IPv6 (no extension header) TCP, read
        # with one struct call. Whatever fails a check here goes the general way.
        if n >= _FAST_V4_END and frame[12] == _ETH_V4_HI:
            (macs, eth, first, total, ident, second, ip_csum, ports, seq, word,
             urg) = _FAST_V4.unpack_from(frame)
            if eth != _ETH_V4 or total != n - _L3:
                return self._push_exact(frame)
            v6 = False
            l4 = _L4_V4
            ip_words = total + ident + ip_csum
        elif n >= _FAST_V6_END and frame[12] == _ETH_V6_HI:
            macs, eth, first, plen, second, ports, seq, word, urg = _FAST_V6.unpack_from(frame)
            if eth != _ETH_V6 or plen != n - _L4_V6:
                return self._push_exact(frame)
            v6 = True
            l4 = _L4_V6
            ident = ip_words = 0
        else:
            return self._push_exact(frame)
        # The version, IHL, protocol, fragment offset and data offset checks come
        # below; a segment of a held flow passes them, its fields being the first's.
        fast_sig = (first, second, word & _WORD_SIG_MASK, urg)
        hlen = l4 + ((word >> 26) & 0x3C)
        key = macs + ports
        flags = (word >> 16) & 0xFF
        payload = n - hlen
        flows = self._flows
        flow = flows.get(key)
        # The common case is taken on trust: the next segment of a held flow. Its
        # checksums are verified before anything else happens (:meth:`_settle`), the
        # merges unwound and redone one by one should one fail.
        # (A held fast-path flow is of a kind the driver negotiated: the configuration
        # does not change.)
        if flow is not None and (flow.fast_sig == fast_sig and 0 < payload <= flow.mss
                and not flags & _NOT_MERGED and seq == flow.next_seq
                and (hlen == l4 + _TCP_HLEN or frame[l4 + _TCP_HLEN:hlen] == flow.options)
                and flow.ip_len + payload <= self._max_size
                and not (ip_words - flow.ip_words) % _M16):
            if v6:
                if flow.saved is None:
                    self._save(flow)
            else:  # the IPv4 ID, incrementing or fixed with DF (see _ident_mode)
                last, fixed = flow.last_ident, flow.fixed_id
                if ident == (last + 1) & 0xFFFF and fixed is not True:
                    mode = False
                elif ident == last and second & _V4_DF_WORD and fixed is not False:
                    mode = True
                else:
                    return self._push_verified(frame, key, v6, l4, hlen, seq, flags, ident,
                                               bool(second & _V4_DF_WORD), fast_sig)
                if flow.saved is None:
                    self._save(flow)
                flow.fixed_id = mode
                flow.last_ident = ident
            flow.frames.append(frame)
            flow.ip_len += payload
            flow.next_seq = (seq + payload) & 0xFFFFFFFF
            self._pending.append(frame)
            if flags & _LAST or payload < flow.mss:
                # The packet is complete. (Only the PSH/FIN of the last segment matter in
                # last_flags, so it is not kept up to date before.)
                flow.last_flags = flags
                redone = self._settle()
                if redone is not None:
                    return redone
                del flows[key]
                self.last_held = False
                return self._emit(flow)
            self.last_held = True
            return []
        if (hlen < l4 + _TCP_HLEN or hlen > n or (
                (first >> 28 != 6 or second >> 8 != _TCP) if v6
                else (first >> 8 != _V4_VERSION_IHL5 or second & 0xFF != _TCP
                      or second & _V4_NOT_FIRST_FRAGMENT))):
            return self._push_exact(frame)
        return self._push_verified(frame, key, v6, l4, hlen, seq, flags, ident,
                                   bool(second & _V4_DF_WORD), fast_sig)

    def flush(self) -> list[Coalesced]:
        held = self.last_held
        out = self._settle() or []
        self.last_held = held
        for flow in self._flows.values():
            out.extend(self._emit(flow))
        self._flows.clear()
        return out

    @property
    def held(self) -> int:
        """Number of flows currently held."""
        return len(self._flows)

    @property
    def config(self) -> CoalesceConfig:
        """What the driver negotiated, fixed for the coalescer's life (a new
        negotiation gets a new coalescer)."""
        return self._config

    # -- internals ------------------------------------------------------------------

    def _settle(self) -> list[Coalesced] | None:
        """Verify the frames held on trust. None when they all pass (or there are none):
        the state is what verifying each on arrival would have made it. Otherwise the
        state goes back to what it was before the first of them and they are pushed
        again, verified one by one; what that returns is returned (it includes the
        frame that failed, at least)."""
        pending = self._pending
        if not pending:
            return None
        touched = self._touched
        verified = all(_flow_verifies(flow) for flow in touched)
        for flow in touched:
            saved = flow.saved
            flow.saved = None
            if verified or saved is None:
                continue
            count, flow.fixed_id, flow.last_ident, flow.next_seq, flow.ip_len, \
                flow.last_flags = saved
            del flow.frames[count:]
            flow.block = None
        touched.clear()
        if verified:
            pending.clear()
            return None
        frames = pending.copy()
        pending.clear()
        out: list[Coalesced] = []
        for frame in frames:
            self.last_held = False
            out.extend(self._push_general(frame))
        return out

    def _save(self, flow: _Flow) -> None:
        """Keep what a flow is before the first frame merged into it on trust."""
        flow.saved = (len(flow.frames), flow.fixed_id, flow.last_ident, flow.next_seq,
                      flow.ip_len, flow.last_flags)
        self._touched.append(flow)

    def _push_exact(self, frame: bytes) -> list[Coalesced]:
        """Any frame, after settling what is pending, through the general path."""
        out = self._settle() or []
        self.last_held = False
        out.extend(self._push_general(frame))
        return out

    def _push_verified(  # noqa: PLR0917 - the fields the fast path read, positionally
            self, frame: bytes, key: bytes, v6: bool, l4: int, hlen: int, seq: int, flags: int,
            ident: int, df: bool, fast_sig: _FastSig) -> list[Coalesced]:
        """A frame the fast path read but does not take on trust: settle what is pending,
        verify the frame, then decide as the module text says."""
        out = self._settle() or []
        self.last_held = False
        if not _fast_verifies(frame, v6):
            out.extend(self._push_general(frame))  # out alone, as the general path decides
            return out
        out.extend(self._offer(frame, key, v6=v6, is_udp=False, l4=l4, hlen=hlen, seq=seq,
                               flags=flags, ident=ident, df=df, fast_sig=fast_sig, sig=None,
                               pseudo_addr=-1))
        return out

    def _push_general(self, frame: bytes) -> list[Coalesced]:
        """Any frame, parsed with ``locate()`` and verified: what is not a coalescing
        candidate (TCP or UDP with verified checksums) goes out alone."""
        lay = locate(frame)
        proto = lay.l4_proto
        if lay.problem is not None or proto not in (_TCP, _UDP) or lay.l2_len != ETH_HLEN:
            return [Coalesced(frame, _PASS)]
        n = len(frame)
        l3, l4, thl = lay.l3_off, lay.l4_off, lay.l4_hdr_len
        is_udp = proto == _UDP
        if is_udp:
            if (thl != udp.HEADER_LEN or lay.udp_len != n - l4
                    or frame[l4 + _UDP_CSUM:l4 + 8] == b"\0\0"):
                return [Coalesced(frame, _PASS)]
        elif thl < tcp.HEADER_LEN or l4 + thl > n:
            return [Coalesced(frame, _PASS)]
        hlen = l4 + thl
        if lay.l3 == L3_IPV4:
            if (lay.ip_version != 4 or lay.v4_total != n - l3
                    or lay.v4_flags_frag & (_V4_MF | _V4_FRAG)):
                return [Coalesced(frame, _PASS)]
            if internet_checksum(memoryview(frame)[l3:l4]) != 0:
                return [Coalesced(frame, _PASS)]
            v6 = False
            addr = _from_bytes(lay.src, "big") + _from_bytes(lay.dst, "big")
        elif lay.l3 == L3_IPV6:
            if lay.ip_version != 6 or lay.v6_plen != n - l3 - ipv6.HEADER_LEN or lay.jumbo_hbh:
                return [Coalesced(frame, _PASS)]
            v6 = True
            addr = _from_bytes(lay.src, "big") + _from_bytes(lay.final_dst, "big")
        else:
            return [Coalesced(frame, _PASS)]
        l4_len = n - l4
        pseudo_addr = fold(addr + proto)
        if fold(raw_sum(memoryview(frame)[l4:]) + pseudo_addr + (l4_len >> 16)
                + (l4_len & 0xFFFF)) != 0xFFFF:
            return [Coalesced(frame, _PASS)]
        if not v6 and lay.v4_ihl != ipv4.HEADER_LEN:
            # Linux inet_gro_receive coalesces only 0x45 headers; the checksum verified.
            return [Coalesced(frame, _VALID if self.config.guest_csum else _PASS)]
        key = frame[:_MACS] + lay.src + lay.dst + frame[l4:l4 + _TCP_PORTS_LEN]
        return self._offer(frame, key + _UDP_KEY if is_udp else key, v6=v6, is_udp=is_udp,
                           l4=l4, hlen=hlen, seq=lay.tcp_seq, flags=lay.tcp_flags,
                           ident=lay.v4_ident, df=bool(lay.v4_flags_frag & _V4_DF),
                           fast_sig=None, sig=_signature(frame, l4, hlen, v6, is_udp),
                           pseudo_addr=pseudo_addr)

    def _offer(self, frame: bytes, key: bytes, *, v6: bool, is_udp: bool, l4: int, hlen: int,
               seq: int, flags: int, ident: int, df: bool, fast_sig: _FastSig | None,
               sig: bytes | None, pseudo_addr: int) -> list[Coalesced]:
        """A verified coalescing candidate (a TCP segment or UDP datagram; ``seq`` and
        ``flags`` 0 for UDP): merge it, hold it or send it out."""
        cfg = self.config
        if not ((cfg.uso6 if v6 else cfg.uso4) if is_udp else (cfg.tcp6 if v6 else cfg.tcp4)):
            # A kind the driver did not negotiate: verified, so DATA_VALID.
            return [Coalesced(frame, _VALID if cfg.guest_csum else _PASS)]
        payload = len(frame) - hlen
        flows = self._flows
        flow = flows.get(key)
        out: list[Coalesced]
        if flow is not None:
            flow_sig = flow.fast_sig
            if fast_sig is not None and flow_sig is not None:
                # The key holds the MAC and IP addresses and the ports; the fields are
                # all the other header bytes but for the TCP options.
                same = fast_sig == flow_sig and (
                    hlen == l4 + _TCP_HLEN or frame[l4 + _TCP_HLEN:hlen] == flow.options)
            else:
                if sig is None:
                    sig = _signature(frame, l4, hlen, v6, is_udp)
                same = sig == flow.signature()
            if same:
                if (payload and payload <= flow.mss
                        and (is_udp or (not flags & _NOT_MERGED and seq == flow.next_seq))
                        and flow.ip_len + payload <= cfg.max_size):
                    mode = None if v6 else _ident_mode(flow, ident, df)
                    if v6 or mode is not None:
                        flow.fixed_id = mode
                        flow.last_ident = ident
                        flow.frames.append(frame)
                        flow.ip_len += payload
                        flow.next_seq = (flow.next_seq + payload) & 0xFFFFFFFF
                        flow.last_flags = flags
                        if (flags & _LAST or payload < flow.mss
                                or (is_udp and len(flow.frames) >= UDP_GRO_CNT_MAX)):
                            del flows[key]
                            return self._emit(flow)
                        self.last_held = True
                        return []
                if cfg.rsc_info and not payload and flags == _ACK and seq == flow.next_seq:
                    mode = None if v6 else _ident_mode(flow, ident, df)
                    if v6 or mode is not None:
                        flow.fixed_id = mode
                        flow.last_ident = ident
                        flow.dup_acks.append(frame)
                        self.last_held = True
                        return []
            del flows[key]
            out = self._emit(flow)
        else:
            out = []
        if not payload or flags & _NOT_STARTED or (flags & _CWR and not cfg.ecn):
            out.append(Coalesced(frame, _VALID))
            return out
        if len(flows) >= MAX_FLOWS:
            oldest = next(iter(flows))
            out.extend(self._emit(flows.pop(oldest)))
        flows[key] = _Flow(frame, key, v6=v6, udp=is_udp, l4=l4, hlen=hlen, seq=seq,
                           flags=flags, ident=ident, fast_sig=fast_sig, sig=sig,
                           pseudo_addr=pseudo_addr)
        self.last_held = True
        return out

    def _emit(self, flow: _Flow) -> list[Coalesced]:
        head = flow.head
        frames = flow.frames
        segments = len(frames)
        if segments == 1:
            out = [Coalesced(head, _VALID)]
            out.extend(Coalesced(f, _VALID) for f in flow.dup_acks)
            return out
        hlen, l4, ip_len = flow.hlen, flow.l4, flow.ip_len
        buf = bytearray(head[:hlen])
        if flow.v6:
            _U16.pack_into(buf, ETH_HLEN + _V6_PLEN, ip_len - ipv6.HEADER_LEN)
        else:
            _U16.pack_into(buf, ETH_HLEN + _V4_TOTAL, ip_len)
            _U16.pack_into(buf, ETH_HLEN + _V4_CSUM, 0)
            _U16.pack_into(buf, ETH_HLEN + _V4_CSUM,
                           ~fold(_from_bytes(buf[ETH_HLEN:l4], "big")) & _M16)
        if not flow.udp:
            buf[l4 + _TCP_FLAGS] |= flow.last_flags & _LAST
        l4_len = ip_len + ETH_HLEN - l4
        pseudo_addr = flow.pseudo_addr
        if pseudo_addr < 0:  # a fast-path flow: TCP, addresses just before the TCP header
            pseudo_addr = fold(_from_bytes(head[_ADDR_V6 if flow.v6 else _ADDR_V4:l4], "big")
                               + _TCP)
        seed = fold(pseudo_addr + (l4_len >> 16) + (l4_len & 0xFFFF))
        if flow.udp:
            _U16.pack_into(buf, l4 + _UDP_LEN, l4_len)
            _U16.pack_into(buf, l4 + _UDP_CSUM, seed)
            gso, csum_offset = _GSO_USO, _UDP_CSUM
        else:
            _U16.pack_into(buf, l4 + _TCP_CSUM, seed)
            gso, csum_offset = (_GSO_TCPV6 if flow.v6 else _GSO_TCPV4), _TCP_CSUM_OFFSET
            if flow.head_flags & _CWR:
                gso |= _ECN
        payload = itemgetter(slice(hlen, None))
        if flow.block is None:
            frame = b"".join([buf, *map(payload, frames)])
        else:
            start, rows = flow.block
            end = start + len(rows)
            frame = b"".join([buf, *map(payload, frames[:start]), rows[:, hlen:].tobytes(),
                              *map(payload, frames[end:])])
        dups = len(flow.dup_acks)
        if self.config.rsc_info:
            fields = (_NEEDS_CSUM | _RSC_INFO, gso, hlen, flow.mss, segments, dups)
        else:
            fields = (_NEEDS_CSUM, gso, hlen, flow.mss, l4, csum_offset)
        hdr = _HEADERS.get(fields)
        if hdr is None:
            if len(_HEADERS) >= _HEADERS_KEPT:
                _HEADERS.clear()
            hdr = _HEADERS[fields] = NetHdr(*fields)
        return [Coalesced(frame, hdr, segments, dups)]


def _ident_mode(flow: _Flow, ident: int, df: bool) -> bool | None:
    """Whether an IPv4 ID continues the flow: the fixed-ID mode it implies (False:
    incrementing, True: fixed), or None when it does not."""
    inc = ident == (flow.last_ident + 1) & 0xFFFF
    fixed = df and ident == flow.last_ident
    if flow.fixed_id is None:
        return False if inc else (True if fixed else None)
    if flow.fixed_id:
        return True if fixed else None
    return False if inc else None


def _signature(frame: bytes, l4: int, hlen: int, v6: bool, is_udp: bool) -> bytes:
    """The headers with the fields that may differ between merged segments zeroed (IPv4
    total length, ID and header checksum, IPv6 payload length, TCP sequence number and
    checksum, CWR/PSH/FIN; UDP length and checksum)."""
    l3 = ETH_HLEN
    sig = bytearray(frame[:hlen])
    if v6:
        sig[l3 + _V6_PLEN:l3 + _V6_PLEN + 2] = b"\0\0"
    else:
        sig[l3 + _V4_TOTAL:l3 + _V4_IDENT + 2] = b"\0\0\0\0"
        sig[l3 + _V4_CSUM:l3 + _V4_CSUM + 2] = b"\0\0"
    if is_udp:
        sig[l4 + _UDP_LEN:l4 + _UDP_CSUM + 2] = b"\0\0\0\0"
    else:
        sig[l4 + _TCP_SEQ:l4 + _TCP_SEQ + 4] = b"\0\0\0\0"
        sig[l4 + _TCP_FLAGS] &= _SIG_FLAG_MASK
        sig[l4 + _TCP_CSUM:l4 + _TCP_CSUM + 2] = b"\0\0"
    return bytes(sig)


# -- checksums of the frames the fast path reads -------------------------------------------
#
# Such a frame is untagged IPv4 (IHL 5) or IPv6 without extension headers carrying TCP,
# its lengths already checked. Its IP addresses run straight into the TCP header, so
# the bytes from the source address to the end are the pseudo header's addresses and
# the segment: the segment verifies when their sum plus the protocol and the TCP length
# is 0 modulo 0xFFFF (the sum is never 0 here, so "0xFFFF after folding" is the same).


def _fast_verifies(frame: bytes, v6: bool) -> bool:
    """Whether the fast-path frame's IPv4 header checksum and TCP checksum verify."""
    if v6:
        return _tcp_verifies(frame, _ADDR_V6, len(frame) - _L4_V6)
    return (not _from_bytes(frame[_L3:_L4_V4], "big") % _M16
            and _tcp_verifies(frame, _ADDR_V4, len(frame) - _L4_V4))


def _tcp_verifies(frame: bytes, addresses: int, l4_len: int) -> bool:
    """The TCP checksum, from one integer of the frame from the source address on: its
    value modulo 0xFFFF is the sum of its 16-bit words (``2**16 ≡ 1``; an odd length
    pads a zero byte: times 256)."""
    residue = _from_bytes(frame[addresses:], "big") % _M16
    if l4_len & 1:
        residue <<= 8
    return not (residue + _TCP + l4_len) % _M16


def _flow_verifies(flow: _Flow) -> bool:
    """Whether the TCP checksums of the frames merged into a fast-path flow on trust all
    verify (their IPv4 headers were, on arrival: see ``_Flow.ip_words``). Each but
    the last is a full segment (a shorter one is merged only as the last: the packet
    goes out then), so they are the rows of one numpy array when there are enough."""
    assert flow.saved is not None
    start = flow.saved[0]
    frames = flow.frames[start:]
    v6 = flow.v6
    length = flow.hlen + flow.mss
    addresses, l4 = (_ADDR_V6, _L4_V6) if v6 else (_ADDR_V4, _L4_V4)
    last = frames[-1]
    if len(last) != length:
        if not _tcp_verifies(last, addresses, len(last) - l4):
            return False
        del frames[-1]
    if len(frames) < _BATCH_MIN:
        return all(_tcp_verifies(f, addresses, length - l4) for f in frames)
    rows = _rows(frames, length)
    flow.block = (start, rows)
    return _rows_verify(rows, v6)


def _rows(frames: list[bytes], length: int) -> U8Array:
    return np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(len(frames), length)


def _row_sums(rows: U8Array, start: int, end: int) -> npt.NDArray[np.uint32]:
    """The sums of the little-endian 16-bit words of the columns ``start:end`` (an even
    width) of every row. A fast-path frame is at most 65,589 bytes (its IP length is 16
    bits), 32,795 words, so the sums fit 32 bits."""
    sums: npt.NDArray[np.uint32] = rows[:, start:end].view("<u2").sum(axis=1, dtype=np.uint32)
    return sums


def _rows_verify(rows: U8Array, v6: bool) -> bool:
    """:func:`_tcp_verifies` for every row (a frame) at once. The sums are of the
    little-endian words: ``LE ≡ 256 · BE (mod 0xFFFF)``, so a big-endian sum ``s`` is 0
    modulo 0xFFFF exactly when its little-endian sum is, and ``s + c`` when the
    little-endian sum plus ``256 · c`` is (a last odd byte is the low byte of its
    little-endian word)."""
    length = rows.shape[1]
    addresses, l4 = (_ADDR_V6, _L4_V6) if v6 else (_ADDR_V4, _L4_V4)
    even = addresses + ((length - addresses) & ~1)
    sums = _row_sums(rows, addresses, even)
    if even < length:
        sums += rows[:, even]
    constant = 256 * (_TCP + length - l4)
    # For the usual few dozen rows, checking the residues in Python is quicker than
    # three more numpy calls.
    return not any((s + constant) % _M16 for s in sums.tolist())
