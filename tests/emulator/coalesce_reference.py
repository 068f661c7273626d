"""Frozen reference: a verbatim copy of ``emulator/offload/coalesce.py`` before its fast
path (the straightforward per-segment implementation: ``locate()``, a masked signature
copy per segment, the checksum of every segment verified on push).

The differential tests in ``test_coalesce.py`` run it side by side with the optimised
module on random streams and require identical outputs. Do not edit it to follow
changes of the module: it is the specification the fast path is held to (the module's
docstring describes the behaviour).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from emulator.offload.parse import L3_IPV4, L3_IPV6, locate
from stack.wire import ipv4, ipv6, tcp, udp
from stack.wire.checksum import fold, internet_checksum, raw_sum
from stack.wire.ethernet import HEADER_LEN as ETH_HLEN
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
_U16 = struct.Struct("!H")
_TCP_CSUM_OFFSET = tcp.OFF_CHECKSUM
_UDP_LEN, _UDP_CSUM = udp.OFF_LENGTH, udp.OFF_CHECKSUM
_PASS = NetHdr()


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


@dataclass(slots=True)
class _Seg:
    """A TCP segment or UDP datagram that passed the checks a coalescing candidate
    needs (``seq`` and ``flags`` are 0 for UDP)."""

    frame: bytes
    key: bytes
    sig: bytes
    v6: bool
    udp: bool
    l4_off: int
    hlen: int
    payload: int
    seq: int
    flags: int
    ident: int
    df: bool
    pseudo_addr: int
    """Sum of the pseudo header without the length (addresses and protocol)."""


@dataclass(slots=True)
class _Flow:
    head: _Seg
    mss: int
    next_seq: int
    last_ident: int
    fixed_id: bool | None = None
    """None until a second IPv4 segment tells whether IDs increment or stay fixed."""
    parts: list[memoryview] = field(default_factory=list)
    payload: int = 0
    segments: int = 1
    last_flags: int = 0
    dup_acks: list[bytes] = field(default_factory=list)


class Coalescer:
    """Linux-GRO-like receive coalescing for one receive queue (see the module text)."""

    def __init__(self, config: CoalesceConfig) -> None:
        self.config = config
        self._flows: dict[bytes, _Flow] = {}
        self.last_held = False
        """Whether the frame of the last :meth:`push` is held (merged into or starting
        a held flow, or absorbed as a duplicate ACK); when False it is in the last
        packet that push returned."""

    def push(self, frame: bytes) -> list[Coalesced]:
        self.last_held = False
        frame = bytes(frame)
        cfg = self.config
        out: list[Coalesced] = []
        seg, valid = _inspect(frame)
        if seg is None:
            flags = _DATA_VALID if valid and cfg.guest_csum else 0
            return [Coalesced(frame, NetHdr(flags=flags) if flags else _PASS)]
        if seg.udp:
            if not (cfg.uso6 if seg.v6 else cfg.uso4):  # verified, like TCP of a kind off
                return [Coalesced(frame, NetHdr(flags=_DATA_VALID) if cfg.guest_csum else _PASS)]
        elif not (cfg.tcp6 if seg.v6 else cfg.tcp4):
            return [Coalesced(frame, NetHdr(flags=_DATA_VALID) if cfg.guest_csum else _PASS)]
        flow = self._flows.get(seg.key)
        if flow is not None:
            if self._try_merge(flow, seg):
                if (seg.flags & _LAST or seg.payload < flow.mss
                        or (seg.udp and flow.segments >= UDP_GRO_CNT_MAX)):
                    del self._flows[seg.key]
                    out.extend(self._emit(flow))
                else:
                    self.last_held = True
                return out
            if self._try_dup_ack(flow, seg):
                self.last_held = True
                return out
            del self._flows[seg.key]
            out.extend(self._emit(flow))
        if (seg.payload == 0 or seg.flags & (_NEVER_MERGED | _LAST)
                or (seg.flags & _CWR and not cfg.ecn)):
            out.append(Coalesced(frame, NetHdr(flags=_DATA_VALID)))
            return out
        if len(self._flows) >= MAX_FLOWS:
            oldest = next(iter(self._flows))
            out.extend(self._emit(self._flows.pop(oldest)))
        self._flows[seg.key] = _Flow(head=seg, mss=seg.payload,
                                     next_seq=(seg.seq + seg.payload) & 0xFFFFFFFF,
                                     last_ident=seg.ident,
                                     parts=[memoryview(frame)[seg.hlen:]],
                                     payload=seg.payload, last_flags=seg.flags)
        self.last_held = True
        return out

    def flush(self) -> list[Coalesced]:
        out: list[Coalesced] = []
        for flow in self._flows.values():
            out.extend(self._emit(flow))
        self._flows.clear()
        return out

    @property
    def held(self) -> int:
        """Number of flows currently held."""
        return len(self._flows)

    # -- internals ------------------------------------------------------------------

    def _ident_ok(self, flow: _Flow, seg: _Seg) -> bool | None:
        """Whether ``seg``'s IPv4 ID continues the flow: the fixed-ID mode it implies
        (False: incrementing, True: fixed), or None when it does not."""
        if seg.v6:
            return False
        inc = seg.ident == (flow.last_ident + 1) & 0xFFFF
        fixed = seg.df and seg.ident == flow.last_ident
        if flow.fixed_id is None:
            return False if inc else (True if fixed else None)
        if flow.fixed_id:
            return True if fixed else None
        return False if inc else None

    def _try_merge(self, flow: _Flow, seg: _Seg) -> bool:
        if seg.payload == 0 or seg.payload > flow.mss or seg.sig != flow.head.sig:
            return False
        if not seg.udp and (seg.flags & (_NEVER_MERGED | _CWR) or seg.seq != flow.next_seq):
            return False
        if flow.head.hlen - ETH_HLEN + flow.payload + seg.payload > self.config.max_size:
            return False
        mode = self._ident_ok(flow, seg)
        if mode is None:
            return False
        flow.fixed_id = None if seg.v6 else mode
        flow.last_ident = seg.ident
        flow.parts.append(memoryview(seg.frame)[seg.hlen:])
        flow.payload += seg.payload
        flow.next_seq = (flow.next_seq + seg.payload) & 0xFFFFFFFF
        flow.segments += 1
        flow.last_flags = seg.flags
        return True

    def _try_dup_ack(self, flow: _Flow, seg: _Seg) -> bool:
        if not self.config.rsc_info or seg.payload or seg.flags != _ACK:
            return False
        if seg.seq != flow.next_seq or seg.sig != flow.head.sig:
            return False
        mode = self._ident_ok(flow, seg)
        if mode is None:
            return False
        flow.fixed_id = None if seg.v6 else mode
        flow.last_ident = seg.ident
        flow.dup_acks.append(seg.frame)
        return True

    def _emit(self, flow: _Flow) -> list[Coalesced]:
        head = flow.head
        if flow.segments == 1:
            out = [Coalesced(head.frame, NetHdr(flags=_DATA_VALID))]
            out.extend(Coalesced(f, NetHdr(flags=_DATA_VALID)) for f in flow.dup_acks)
            return out
        buf = bytearray(head.frame[:head.hlen])
        buf += b"".join(flow.parts)
        l3 = ETH_HLEN
        l4 = head.l4_off
        ip_len = len(buf) - l3
        if head.v6:
            _U16.pack_into(buf, l3 + _V6_PLEN, ip_len - ipv6.HEADER_LEN)
        else:
            _U16.pack_into(buf, l3 + _V4_TOTAL, ip_len)
            _U16.pack_into(buf, l3 + _V4_CSUM, 0)
            _U16.pack_into(buf, l3 + _V4_CSUM, internet_checksum(buf[l3:l4]))
        if not head.udp:
            buf[l4 + _TCP_FLAGS] |= flow.last_flags & _LAST
        l4_len = len(buf) - l4
        seed = fold(head.pseudo_addr + (l4_len >> 16) + (l4_len & 0xFFFF))
        if head.udp:
            _U16.pack_into(buf, l4 + _UDP_LEN, l4_len)
            _U16.pack_into(buf, l4 + _UDP_CSUM, seed)
            gso, csum_offset = _GSO_USO, _UDP_CSUM
        else:
            _U16.pack_into(buf, l4 + _TCP_CSUM, seed)
            gso, csum_offset = (_GSO_TCPV6 if head.v6 else _GSO_TCPV4), _TCP_CSUM_OFFSET
            if head.flags & _CWR:
                gso |= _ECN
        dups = len(flow.dup_acks)
        if self.config.rsc_info:
            hdr = NetHdr(flags=_NEEDS_CSUM | _RSC_INFO, gso_type=gso, hdr_len=head.hlen,
                         gso_size=flow.mss, csum_start=flow.segments, csum_offset=dups)
        else:
            hdr = NetHdr(flags=_NEEDS_CSUM, gso_type=gso, hdr_len=head.hlen,
                         gso_size=flow.mss, csum_start=l4, csum_offset=csum_offset)
        return [Coalesced(bytes(buf), hdr, flow.segments, dups)]


def _inspect(frame: bytes) -> tuple[_Seg | None, bool]:
    """(A coalescing candidate: TCP or UDP with verified checksums, or None; whether a
    non-candidate is TCP with a verified checksum: an IPv4 header with options, which
    Linux does not coalesce, goes out alone with DATA_VALID)."""
    lay = locate(frame)
    proto = lay.l4_proto
    if lay.problem is not None or proto not in (_TCP, _UDP) or lay.l2_len != ETH_HLEN:
        return None, False
    n = len(frame)
    l3, l4, thl = lay.l3_off, lay.l4_off, lay.l4_hdr_len
    is_udp = proto == _UDP
    if is_udp:
        if thl != udp.HEADER_LEN or lay.udp_len != n - l4 or frame[l4 + _UDP_CSUM:l4 + 8] == b"\0\0":
            return None, False
    elif thl < tcp.HEADER_LEN or l4 + thl > n:
        return None, False
    hlen = l4 + thl
    if lay.l3 == L3_IPV4:
        if (lay.ip_version != 4 or lay.v4_total != n - l3
                or lay.v4_flags_frag & (_V4_MF | _V4_FRAG)):
            return None, False
        if internet_checksum(memoryview(frame)[l3:l4]) != 0:
            return None, False
        v6 = False
        addr = int.from_bytes(lay.src, "big") + int.from_bytes(lay.dst, "big")
    elif lay.l3 == L3_IPV6:
        if lay.ip_version != 6 or lay.v6_plen != n - l3 - ipv6.HEADER_LEN or lay.jumbo_hbh:
            return None, False
        v6 = True
        addr = int.from_bytes(lay.src, "big") + int.from_bytes(lay.final_dst, "big")
    else:
        return None, False
    l4_len = n - l4
    pseudo_addr = fold(addr + proto)
    if fold(raw_sum(memoryview(frame)[l4:]) + pseudo_addr + (l4_len >> 16)
            + (l4_len & 0xFFFF)) != 0xFFFF:
        return None, False
    if not v6 and lay.v4_ihl != ipv4.HEADER_LEN:
        return None, True  # Linux inet_gro_receive coalesces only 0x45 headers
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
    key = bytes(frame[:ETH_HLEN]) + lay.src + lay.dst + frame[l4:l4 + _TCP_PORTS_LEN]
    return _Seg(frame=frame, key=bytes([proto]) + key, sig=bytes(sig), v6=v6, udp=is_udp,
                l4_off=l4, hlen=hlen, payload=n - hlen, seq=lay.tcp_seq, flags=lay.tcp_flags,
                ident=lay.v4_ident, df=bool(lay.v4_flags_frag & _V4_DF),
                pseudo_addr=pseudo_addr), True
