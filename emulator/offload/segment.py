"""Transmit offload: check a virtio_net_hdr against its frame and a device profile, then
complete the checksum or cut the packet into segments (TSO4/TSO6 with ECN, USO, UFO).

``segment_packet`` is the rich entry point (segments plus notes), ``segment`` returns
only the frames to put on the wire. Both raise :class:`OffloadError` — naming the rule,
its reference and the stage ("reject": refused outright, "drop": dropped during
segmentation) — for what the profile refuses.

Segmentation builds every segment in one preallocated ``uint8`` array (kept per thread
and reused while the geometry repeats): the replicated headers are broadcast into all
rows, the payload is copied as a 2-D reshape (the ragged last segment separately), the
fields equal in all full segments are set once in the header template, the per-segment
ones (IPv4 ID and header checksum, TCP sequence number) are written as numpy columns, the
transport checksums of all rows come from one ``np.add.reduceat`` over the array, and the
segments are cut out of it by one ``struct`` unpack. Everything else is integer
arithmetic modulo 0xFFFF (see stack/wire/checksum.py).

Per packet the cost is mostly fixed overhead (a numpy call costs about a microsecond, as
much as copying a few kilobytes), so the common case is kept short: the header checks
that cannot fire for a well-formed TSO header are skipped as a whole (any packet that
might break a rule takes the full, ordered checks), scalars stay plain ints, and each
per-segment column is one native numpy operation.

Where the three engines of :mod:`emulator.profiles` legitimately differ (whose bytes a
profile reproduces), the code says so next to the difference.
"""

from __future__ import annotations

import struct
import threading
import zlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from emulator.offload.checksum import (
    FULL_LENGTH,
    OTHER,
    ZERO_LENGTH,
    classify_seed_at,
    complete_at,
    pseudo_sum,
    qemu_sw_csum,
)
from emulator.offload.parse import (
    L3_IPV4,
    L3_IPV6,
    Layout,
    locate,
    unfragmentable_len_linux,
    unfragmentable_len_rfc,
)
from emulator.offload.rules import RULES, Note, OffloadError
from emulator.profiles import STRICT, Action, Engine, Profile, SeedPolicy
from stack.wire import ipv4, ipv6, tcp, udp
from stack.wire.checksum import (
    fold,
    raw_sum,
)
from stack.wire.ethernet import HEADER_LEN as ETH_HLEN
from stack.wire.ipv4 import IpProtocol
from stack.wire.tcp import TcpFlags
from virtio.constants import GSO_ECN, GsoType, NetHdrFlag
from virtio.net_hdr import NetHdr

U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]

# Plain ints on the hot path: enum arithmetic (IntFlag &, ~) costs microseconds a call.
_NONE, _TCPV4, _UFO, _TCPV6, _USO = (int(GsoType.NONE), int(GsoType.TCPV4), int(GsoType.UDP),
                                     int(GsoType.TCPV6), int(GsoType.UDP_L4))
_ECN = int(GSO_ECN)
_NEEDS_CSUM = int(NetHdrFlag.NEEDS_CSUM)
_P_TCP, _P_UDP, _P_FRAG = int(IpProtocol.TCP), int(IpProtocol.UDP), int(IpProtocol.IPV6_FRAG)
KNOWN_GSO = frozenset({_TCPV4, _UFO, _TCPV6, _USO})
TCP_KINDS = frozenset({_TCPV4, _TCPV6})
GSO_BY_FRAGS = 0xFFFF
"""Linux's special gso_size (include/linux/netdevice.h), refused by virtio_net_hdr_to_skb."""
UDP_MAX_SEGMENTS = 128
"""Linux include/linux/udp.h (1 << 7 since 6.10): the USO segment limit."""
GRO_LEGACY_MAX_SIZE = 65536
"""Above this IP length Linux strips a BIG TCP jumbo hop-by-hop header."""
MAX_IP_LEN = 0xFFFF
NH_MIN_V4 = ipv4.HEADER_LEN
NH_MIN_V6 = ipv6.HEADER_LEN

UNCHANGED = "unchanged"
CHECKSUMMED = "checksummed"
SEGMENTED = "segmented"
UNSEGMENTED = "unsegmented"
"""A GSO packet sent as one frame without rewriting its headers (Linux "too small")."""

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
# Header field offsets as plain module constants for the per-packet path.
_V4_TOTAL, _V4_IDENT, _V4_FLAGS_FRAG, _V4_CSUM = (
    ipv4.OFF_TOTAL_LEN, ipv4.OFF_IDENT, ipv4.OFF_FLAGS_FRAG, ipv4.OFF_CHECKSUM)
_V6_PLEN, _V6_HLEN = ipv6.OFF_PAYLOAD_LEN, ipv6.HEADER_LEN
_TCP_FLAGS, _TCP_CSUM, _UDP_LEN, _UDP_CSUM = (
    tcp.OFF_FLAGS, tcp.OFF_CHECKSUM, udp.OFF_LENGTH, udp.OFF_CHECKSUM)
_FIN_PSH = int(TcpFlags.FIN | TcpFlags.PSH)
_CWR = int(TcpFlags.CWR)
_M16 = np.uint64(0xFFFF)


@dataclass(slots=True)
class SegmentResult:
    """What the engine put on the wire and what it recorded on the way (``notes``: the
    rules the profile fixed, or allowed although the driver broke the spec)."""

    frames: list[bytes]
    notes: tuple[Note, ...]
    seed: str | None
    """"full-length", "zero-length", "other", or None (no NEEDS_CSUM, or the checksum is
    not a TCP/UDP one)."""
    path: str
    """"unchanged", "checksummed", "segmented" or "unsegmented"."""
    profile: str
    gso_size: int = 0

    @property
    def segments(self) -> int:
        return len(self.frames)

    def rules(self) -> list[str]:
        return [n.rule for n in self.notes]


class _Job(NamedTuple):
    """One packet on its way through the UFO segmenter."""

    frame: bytes | bytearray | memoryview
    hdr: NetHdr
    lay: Layout
    ctx: _Ctx
    kind: int
    ecn: bool
    needs: bool
    mss: int


_GSO_L3: dict[int, int] = {_TCPV4: L3_IPV4, _TCPV6: L3_IPV6}

# Enum members bound once: reading ``Engine.LINUX`` goes through the enum's descriptor on
# every access, which the per-packet path would pay dozens of times.
_E_SPEC, _E_LINUX, _E_QEMU = Engine.SPEC, Engine.LINUX, Engine.QEMU
_A_REJECT, _A_DROP, _A_FIX = Action.REJECT, Action.DROP, Action.FIX
_ADJUST = SeedPolicy.ADJUST
_BUFFERS = (bytes, bytearray, memoryview)


class _Ctx:
    """Collects notes; turns a fired rule into the profile's action."""

    __slots__ = ("notes", "profile")

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.notes: list[Note] = []

    def fire(self, name: str, detail: str) -> Action:
        r = RULES[name]
        act = self.profile.action(name)
        if act is _A_REJECT or act is _A_DROP:
            raise OffloadError(f"{name}: {detail}", rule=name, section=r.reference,
                               stage=act.value, notes=tuple(self.notes))
        if act is _A_FIX or r.violation:
            self.notes.append(Note(name, r.ref, act, detail))
        return act

    def fatal(self, name: str, detail: str) -> None:
        """A rule after which there is nothing to segment: a profile that allows it still
        cannot send anything, so the packet is dropped."""
        act = self.fire(name, detail)
        r = RULES[name]
        raise OffloadError(f"{name}: {detail} (nothing to segment; the {act.value} of "
                           f"profile {self.profile.name!r} cannot apply)", rule=name,
                           section=r.reference, stage="drop", notes=tuple(self.notes))


def segment(frame: bytes | bytearray | memoryview, hdr: NetHdr,
            profile: Profile = STRICT) -> list[bytes]:
    """The frames to put on the wire for ``frame`` (an Ethernet frame without the virtio
    header) sent with ``hdr``: unchanged (no offload), checksummed (NEEDS_CSUM) or
    segmented (gso_type). Raises :class:`OffloadError` for what ``profile`` refuses."""
    return _offload(frame, hdr, profile)[0]


def segment_packet(
    frame: bytes | bytearray | memoryview,
    hdr: NetHdr,
    profile: Profile = STRICT,
    *,
    hdrlen_exact: bool = False,
    ipv6_frag_id: int | None = None,
    hdr_size: int = 12,
) -> SegmentResult:
    """Like :func:`segment`, with the notes the device records in its conformance
    monitor (the seed convention, what the profile fixed or allowed against the spec).

    ``hdrlen_exact``: VIRTIO_NET_F_GUEST_HDRLEN was negotiated, so hdr_len must be exact
    (§5.1.6.2.1). ``ipv6_frag_id``: the Identification of IPv6 fragment headers UFO
    inserts (default: derived from the addresses and ports; Linux picks a random one).
    ``hdr_size``: the size of the virtio_net_hdr the frame came with (10, 12 or 20); Linux
    compares hdr_len with what follows the first 10 bytes of it, so hdr_len may exceed
    the frame by ``hdr_size - 10`` bytes.
    """
    frames, ctx, seed, path, gso_size = _offload(
        frame, hdr, profile, hdrlen_exact=hdrlen_exact, ipv6_frag_id=ipv6_frag_id,
        hdr_size=hdr_size)
    return SegmentResult(frames, tuple(ctx.notes), seed, path, profile.name, gso_size)


_Outcome = tuple[list[bytes], _Ctx, str | None, str, int]
"""frames, the notes' collector, seed convention, path, gso_size (0 when unsegmented)."""


def _offload(frame: bytes | bytearray | memoryview, hdr: NetHdr, profile: Profile, *,
             hdrlen_exact: bool = False, ipv6_frag_id: int | None = None,
             hdr_size: int = 12) -> _Outcome:
    if hdr_size not in (10, 12, 20):
        raise ValueError(f"virtio_net_hdr size must be 10, 12 or 20, not {hdr_size}")
    # The common case checked inline; anything else gets the full argument check (which
    # raises, or passes for e.g. a bytearray frame or a Profile subclass).
    if not (type(hdr) is NetHdr and type(profile) is Profile
            and (type(frame) is bytes or type(frame) is bytearray)
            and 0 <= hdr.flags <= 0xFF and 0 <= hdr.gso_type <= 0xFF
            and 0 <= hdr.hdr_len <= 0xFFFF and 0 <= hdr.gso_size <= 0xFFFF
            and 0 <= hdr.csum_start <= 0xFFFF and 0 <= hdr.csum_offset <= 0xFFFF):
        _check_arguments(frame, hdr, profile)
    ctx = _Ctx(profile)
    engine = profile.engine
    n = len(frame)
    gso_type = hdr.gso_type
    kind = gso_type & ~_ECN
    ecn = bool(gso_type & _ECN)
    flags = hdr.flags
    if type(flags) is not int and isinstance(flags, int):
        flags = int(flags)  # a NetHdrFlag: IntFlag's & is a Python-level method
    needs = bool(flags & _NEEDS_CSUM)
    cs, co = hdr.csum_start, hdr.csum_offset
    mss = hdr.gso_size
    hdr_len = hdr.hdr_len
    gso = kind != _NONE
    is_tcp = kind in TCP_KINDS

    if is_tcp:
        thlen = tcp.HEADER_LEN
    elif gso:
        thlen = udp.HEADER_LEN
    else:
        thlen = 0
    nh_min = NH_MIN_V6 if kind == _TCPV6 else NH_MIN_V4

    # The common TSO header (NEEDS_CSUM, the TCP checksum offset, csum_start past the
    # minimal IP header and the TCP header inside the frame, a usable gso_size, hdr_len
    # within the frame): none of the checks below can fire, so they are skipped.
    if not (is_tcp and needs and co == _TCP_CSUM and 0 < mss < GSO_BY_FRAGS
            and nh_min <= cs and cs + thlen <= n
            and (cs + co + 2 if cs + co + 2 > hdr_len else hdr_len) <= n + hdr_size - 10):
        # Header against frame, in the order Linux checks on write(): tun_get_user and
        # tun_vnet_hdr_get, then __virtio_net_hdr_to_skb.
        eff_hdr_len = (cs + co + 2 if cs + co + 2 > hdr_len else hdr_len) if needs else hdr_len
        if needs and cs + co + 2 > n:
            ctx.fatal("csum-outside-frame", f"checksum field at {cs}+{co} in a {n}-byte frame")
        if eff_hdr_len > n + hdr_size - 10:
            # tun_vnet_hdr_get checks hdr_len before skipping the header's bytes past the
            # 10-byte struct virtio_net_hdr (num_buffers, hash fields).
            ctx.fire("hdr-len-beyond-frame", f"hdr_len {eff_hdr_len} > frame length {n} + "
                     f"{hdr_size - 10}")
        if n < ETH_HLEN:
            ctx.fire("frame-too-short", f"{n}-byte frame")
        if 0 < eff_hdr_len < ETH_HLEN:
            ctx.fire("hdr-len-below-ethernet", f"hdr_len {eff_hdr_len}")
        if gso_type != _NONE:
            if gso and kind not in KNOWN_GSO:
                ctx.fatal("gso-type-unknown", f"gso_type {gso_type:#04x}")
            if not gso:
                ctx.fire("ecn-without-gso", "gso_type is NONE | ECN")
            if kind == _USO and engine is _E_QEMU:
                ctx.fatal("gso-type-unsupported", "UDP_L4 (USO)")
            if gso and mss == 0:
                ctx.fatal("gso-size-zero", f"gso_type {gso_type:#04x} with gso_size 0")
        if needs:
            if cs < nh_min:
                ctx.fire("csum-start-below-ip-minimum", f"csum_start {cs} < {nh_min}")
            if gso and cs + thlen > n:
                ctx.fatal("transport-header-truncated",
                          f"csum_start {cs} + {thlen}-byte header > {n}-byte frame")
        elif gso:
            if kind == _USO:
                ctx.fire("uso-without-needs-csum", "flags lack NEEDS_CSUM")
            else:
                ctx.fire("gso-without-needs-csum", "flags lack NEEDS_CSUM; the device computes "
                         "the pseudo header itself")
            if nh_min + thlen > n:
                ctx.fatal("transport-header-truncated", f"{n}-byte frame")
        if is_tcp:
            if needs and co != tcp.OFF_CHECKSUM:
                ctx.fire("csum-offset-tcp", f"csum_offset {co}")
        elif kind == _USO:
            if needs and co != udp.OFF_CHECKSUM:
                ctx.fire("csum-offset-uso", f"csum_offset {co}")
            p_off = (cs if needs else nh_min) + thlen
            if n - p_off > mss * UDP_MAX_SEGMENTS:
                ctx.fire("uso-too-many-segments",
                         f"{n - p_off} bytes > {UDP_MAX_SEGMENTS} x gso_size {mss}")
            if ecn:
                ctx.fire("uso-ecn", "UDP_L4 | ECN")
        elif kind == _UFO:
            if needs and co != udp.OFF_CHECKSUM:
                ctx.fire("csum-offset-ufo", f"csum_offset {co}")
            if ecn:
                ctx.fire("ufo-ecn", "UDP | ECN")
        if gso and mss == GSO_BY_FRAGS:
            ctx.fire("gso-size-by-frags", "gso_size 0xFFFF")

    lay = locate(frame)

    if not gso:
        return _no_gso(frame, hdr, lay, ctx, needs)

    if engine is _E_LINUX:
        # "Too small packets are not really GSO ones": Linux decides from csum_start (or
        # the minimal IP header) plus the minimal transport header, before parsing.
        p_off = (cs if needs else nh_min) + thlen
        nh_off = p_off - thlen if kind == _UFO else p_off
        if n - nh_off <= mss:
            ctx.fire("gso-single-segment",
                     f"{n - nh_off} bytes after offset {nh_off} fit in gso_size {mss}: sent "
                     "unsegmented")
            seed = _seed_notes(frame, lay, ctx, cs, co) if needs else None
            frames = [complete_at(frame, cs, co)] if needs else [bytes(frame)]
            return frames, ctx, seed, UNSEGMENTED, mss

    if is_tcp and needs and co == _TCP_CSUM and _tcp_packet_clean(
            lay, kind=kind, ecn=ecn, cs=cs, mss=mss, hdr_len=hdr_len, hdrlen_exact=hdrlen_exact):
        # The seed at the TCP checksum (classify_seed_at's first test inline): the
        # pseudo-header sum of the full transport length is the common convention.
        zero = (int.from_bytes(lay.src, "big") + _P_TCP + int.from_bytes(lay.dst, "big"))
        if _U16.unpack_from(frame, cs + co)[0] % 0xFFFF == (zero + n - cs) % 0xFFFF:
            seed = FULL_LENGTH
        else:
            seed = _seed_notes(frame, lay, ctx, cs, co)
    else:
        _check_packet(hdr, lay, ctx, kind=kind, ecn=ecn, needs=needs, hdrlen_exact=hdrlen_exact)
        seed = _seed_notes(frame, lay, ctx, cs, co) if needs else None

    if kind == _UFO:
        frames = _ufo(_Job(frame, hdr, lay, ctx, kind, ecn, needs, mss), ipv6_frag_id)
    else:
        frames = _segment_l4(frame, hdr, lay, ctx, is_tcp=is_tcp, needs=needs, mss=mss,
                             seed=seed)
    return frames, ctx, seed, SEGMENTED, mss


def _check_arguments(frame: object, hdr: object, profile: object) -> None:
    if not isinstance(frame, _BUFFERS):
        raise ValueError(f"frame must be bytes-like, not {type(frame).__name__}")
    if not isinstance(hdr, NetHdr):
        raise ValueError(f"hdr must be a NetHdr, not {type(hdr).__name__}")
    if not isinstance(profile, Profile):
        raise ValueError(f"profile must be a Profile, not {type(profile).__name__}")
    if not (0 <= hdr.flags <= 0xFF and 0 <= hdr.gso_type <= 0xFF
            and 0 <= hdr.hdr_len <= 0xFFFF and 0 <= hdr.gso_size <= 0xFFFF
            and 0 <= hdr.csum_start <= 0xFFFF and 0 <= hdr.csum_offset <= 0xFFFF):
        raise ValueError(f"virtio_net_hdr field out of range: {hdr}")
    if isinstance(frame, memoryview) and (frame.ndim != 1 or frame.itemsize != 1):
        raise ValueError("frame must be a flat byte buffer")


# --- No segmentation -------------------------------------------------------------------


def _no_gso(frame: bytes | bytearray | memoryview, hdr: NetHdr, lay: Layout, ctx: _Ctx,
            needs: bool) -> _Outcome:
    engine = ctx.profile.engine
    cs, co = hdr.csum_start, hdr.csum_offset
    if engine is _E_QEMU:
        # net_tx_pkt_send_custom, GSO NONE: net_tx_pkt_do_sw_csum, then
        # net_tx_pkt_fix_ip6_payload_len (payload length 0 set from its parse).
        if needs and lay.problem in ("ip-header-truncated", "ipv4-ihl-invalid",
                                     "ipv6-exthdr-truncated"):
            ctx.fatal(lay.problem, "QEMU cannot parse the headers to checksum them")
        seed = _seed_notes(frame, lay, ctx, cs, co) if needs else None
        out = bytearray(frame)
        if needs:
            qemu_sw_csum(out, lay, cs, co)
        if lay.l3 == L3_IPV6 and lay.problem is None and lay.v6_plen == 0:
            plen = lay.frame_len - lay.l4_off
            if plen <= MAX_IP_LEN:
                _U16.pack_into(out, lay.l3_off + ipv6.OFF_PAYLOAD_LEN, plen)
                ctx.fire("ip-length-mismatch", f"IPv6 payload length 0 set to {plen}")
        path = CHECKSUMMED if needs else UNCHANGED
        return [bytes(out)], ctx, seed, path, 0
    if not needs:
        return [bytes(frame)], ctx, None, UNCHANGED, 0
    seed = _seed_notes(frame, lay, ctx, cs, co)
    override = None
    if seed in (ZERO_LENGTH, OTHER) and ctx.profile.action(
            "csum-seed-zero-length" if seed == ZERO_LENGTH else "csum-seed-other") is _A_FIX:
        override = pseudo_sum(lay, lay.l4_len)
    return [complete_at(frame, cs, co, seed=override)], ctx, seed, CHECKSUMMED, 0


def _seed_notes(frame: bytes | bytearray | memoryview, lay: Layout, ctx: _Ctx, cs: int,
                co: int) -> str | None:
    seed = classify_seed_at(frame, lay, cs, co)
    if seed == ZERO_LENGTH:
        ctx.fire("csum-seed-zero-length",
                 f"seed is the pseudo-header sum of length 0, not {lay.l4_len}")
    elif seed == OTHER:
        pos = cs + co
        ctx.fire("csum-seed-other",
                 f"seed {_U16.unpack_from(frame, pos)[0]:#06x} matches no pseudo header")
    return seed


# --- Checks at segmentation time ----------------------------------------------------------


_PROBLEM_RULE = {"frame-too-short": "gso-not-ip"}
_V4_FRAGMENT = ipv4.FLAG_MF | ipv4.FRAG_OFFSET_MASK


def _tcp_packet_clean(lay: Layout, *, kind: int, ecn: bool, cs: int, mss: int, hdr_len: int,
                      hdrlen_exact: bool) -> bool:
    """True when none of the rules :func:`_check_packet` applies to a TSO packet with
    NEEDS_CSUM fires (the common case): IP as announced by gso_type and the ethertype,
    no IPv4 options or fragment bits, IP length fields matching the frame (no BIG TCP),
    a valid TCP header at csum_start, more payload than gso_size, no CWR without the
    ECN bit, hdr_len as the driver must set it. Anything else goes through the full
    check, which records or refuses it."""
    if lay.problem is not None or lay.l4_proto != _P_TCP or lay.hbh_not_first:
        return False
    ip_len = lay.frame_len - lay.l3_off
    if kind == _TCPV4:
        if (lay.l3 != L3_IPV4 or lay.ip_version != 4 or lay.v4_ihl != ipv4.HEADER_LEN
                or lay.v4_flags_frag & _V4_FRAGMENT or ip_len > MAX_IP_LEN
                or lay.v4_total != ip_len):
            return False
    elif (lay.l3 != L3_IPV6 or lay.ip_version != 6 or lay.jumbo_hbh
            or ip_len - ipv6.HEADER_LEN > MAX_IP_LEN or lay.v6_plen != ip_len - ipv6.HEADER_LEN):
        return False
    l4 = lay.l4_off
    doff = lay.l4_hdr_len
    headers = l4 + doff
    return (cs == l4 and doff >= tcp.HEADER_LEN and lay.frame_len - headers > mss
            and (ecn or not lay.tcp_flags & _CWR)
            and (hdr_len == headers if hdrlen_exact else hdr_len >= headers))


def _check_packet(hdr: NetHdr, lay: Layout, ctx: _Ctx, *, kind: int, ecn: bool, needs: bool,
                  hdrlen_exact: bool) -> None:
    engine = ctx.profile.engine
    mss = hdr.gso_size
    problem = lay.problem
    if problem is not None:
        ctx.fatal(_PROBLEM_RULE.get(problem, problem),
                  f"cannot segment: {problem} (ethertype {lay.ethertype:#06x})")
    l3 = lay.l3
    v4 = l3 == L3_IPV4
    if lay.ip_version != (4 if v4 else 6):
        ctx.fire("ip-version-mismatch", f"version {lay.ip_version} in ethertype "
                 f"{lay.ethertype:#06x}")
    l4_proto = lay.l4_proto
    if l4_proto == _P_FRAG:
        ctx.fatal("ipv6-fragment-header", "the packet is already a fragment")
    is_tcp = kind in TCP_KINDS
    want_l3 = _GSO_L3.get(kind)
    want_l4 = _P_TCP if is_tcp else _P_UDP
    if (want_l3 is not None and l3 != want_l3) or l4_proto != want_l4:
        ctx.fatal("gso-type-mismatch", f"gso_type {hdr.gso_type:#04x} on IPv{l3} "
                  f"protocol {l4_proto}")
    if lay.hbh_not_first:
        ctx.fire("ipv6-hop-by-hop-not-first", "hop-by-hop header after another header")
    if v4:
        if lay.v4_ihl > ipv4.HEADER_LEN:
            ctx.fire("ipv4-options", f"IHL {lay.v4_ihl // 4}")
        if lay.v4_flags_frag & (ipv4.FLAG_MF | ipv4.FRAG_OFFSET_MASK) and kind != _UFO:
            ctx.fire("ipv4-fragment", f"flags/offset {lay.v4_flags_frag:#06x}")
    _check_lengths(lay, ctx)

    l4 = lay.l4_off
    n = lay.frame_len
    if is_tcp:
        if l4 + tcp.HEADER_LEN > n:
            ctx.fatal("transport-header-truncated", f"TCP header at {l4} in {n} bytes")
        doff = lay.l4_hdr_len
        if doff < tcp.HEADER_LEN:
            ctx.fatal("tcp-data-offset-invalid", f"data offset {doff // 4}")
        if needs and hdr.csum_start != l4:
            ctx.fatal("csum-start-not-transport", f"csum_start {hdr.csum_start}, TCP header "
                      f"at {l4}")
        if l4 + doff > n:
            ctx.fatal("tcp-header-truncated", f"{doff}-byte TCP header at {l4} in {n} bytes")
        payload = n - l4 - doff
        if engine is _E_LINUX and payload <= mss:
            ctx.fatal("gso-payload-within-mss", f"payload {payload} <= gso_size {mss} once "
                      f"the {doff}-byte TCP header is counted")
        if lay.tcp_flags & _CWR and not ecn:
            ctx.fire("cwr-without-ecn", "CWR set, gso_type lacks the ECN bit")
    else:
        if l4 + udp.HEADER_LEN > n:
            ctx.fatal("transport-header-truncated", f"UDP header at {l4} in {n} bytes")
        udp_total = n - l4
        if kind == _USO:
            if engine is _E_LINUX and udp_total <= udp.HEADER_LEN + mss:
                ctx.fatal("gso-payload-within-mss",
                          f"UDP payload {udp_total - 8} <= gso_size {mss}")
            if needs and hdr.csum_start != l4:
                ctx.fatal("csum-start-not-transport", f"csum_start {hdr.csum_start}, UDP "
                          f"header at {l4}")
        else:
            if engine is _E_LINUX and udp_total <= mss:
                ctx.fatal("gso-payload-within-mss", f"UDP datagram {udp_total} <= gso_size {mss}")
            if needs and hdr.csum_start != l4:
                ctx.fire("ufo-csum-start-not-transport",
                         f"csum_start {hdr.csum_start}, UDP header at {l4}")
        if lay.udp_len != udp_total and not (lay.udp_len == 0 and udp_total > udp.MAX_LENGTH):
            ctx.fire("udp-length-mismatch", f"length field {lay.udp_len}, datagram {udp_total}")
        if kind == _UFO:
            _check_ufo(lay, ctx, mss)
    headers = l4 + lay.l4_hdr_len
    hdr_len = hdr.hdr_len
    if hdrlen_exact and hdr_len != headers:
        ctx.fire("hdr-len-inexact", f"hdr_len {hdr_len}, headers {headers}")
    elif hdr_len < headers:
        ctx.fire("hdr-len-short", f"hdr_len {hdr_len} < headers {headers}")
    if engine is not _E_LINUX:
        payload = n - headers if kind != _UFO else n - l4
        if payload <= mss:
            ctx.fire("gso-single-segment", f"payload {payload} fits in gso_size {mss}")


def _check_lengths(lay: Layout, ctx: _Ctx) -> None:
    ip_len = lay.frame_len - lay.l3_off
    if lay.l3 == L3_IPV4:
        big = ip_len > MAX_IP_LEN
        expected, field_value = ip_len, lay.v4_total
        what = "IPv4 total length"
    else:
        big = ip_len - ipv6.HEADER_LEN > MAX_IP_LEN
        expected, field_value = ip_len - ipv6.HEADER_LEN, lay.v6_plen
        what = "IPv6 payload length"
    if big and not ctx.profile.big_packets:
        ctx.fatal("ip-packet-too-big", f"{ip_len}-byte IP packet")
    if big and field_value == 0:
        pass  # the length-0 convention for packets over 64 KiB (Linux BIG TCP)
    elif field_value != expected:
        ctx.fire("ip-length-mismatch", f"{what} {field_value}, frame holds {expected}")
    if lay.l3 == L3_IPV6 and lay.jumbo_hbh and ip_len > GRO_LEGACY_MAX_SIZE:
        ctx.fire("ipv6-jumbo-hop-by-hop", "jumbo hop-by-hop header removed from the segments")


def _check_ufo(lay: Layout, ctx: _Ctx, mss: int) -> None:
    if mss < ipv4.FRAG_UNIT:
        ctx.fire("ufo-gso-size-too-small", f"gso_size {mss}")
    if mss % ipv4.FRAG_UNIT:
        ctx.fire("ufo-gso-size-unaligned", f"gso_size {mss} is not a multiple of 8")
    if lay.l3 == L3_IPV4:
        if lay.v4_flags_frag & (ipv4.FLAG_MF | ipv4.FRAG_OFFSET_MASK):
            ctx.fire("ipv4-fragment", f"flags/offset {lay.v4_flags_frag:#06x}")
        if lay.v4_flags_frag & ipv4.FLAG_DF:
            ctx.fire("ufo-dont-fragment", "DF set")
    else:
        ctx.fire("ufo-ipv6", "UFO of an IPv6 datagram")
        if _fragmentable_exthdr_len(lay, ctx.profile.engine):
            ctx.fire("ufo-ipv6-fragmentable-exthdr", "extension headers after the "
                     "unfragmentable part")


def _fragmentable_exthdr_len(lay: Layout, engine: Engine) -> int:
    total = lay.l4_off - lay.l3_off - ipv6.HEADER_LEN
    if engine is Engine.LINUX:
        return total - unfragmentable_len_linux(lay)
    return total - unfragmentable_len_rfc(lay)


# --- TCP and USO segmentation -------------------------------------------------------------
#
# Arithmetic used below (see stack.wire.checksum): the folded ones' complement sum of a
# positive integer x is fold(x) = (x - 1) % 0xFFFF + 1, so a checksum is
# 0xFFFE - (x - 1) % 0xFFFF; and summing little-endian words instead of big-endian ones
# multiplies the sum by 256 modulo 0xFFFF (a byte swap). So a big-endian term t is added
# to little-endian row sums as 256 * t, and the checksum is stored little-endian.

def _segment_l4(frame: bytes | bytearray | memoryview, hdr: NetHdr, lay: Layout, ctx: _Ctx,
                *, is_tcp: bool, needs: bool, mss: int, seed: str | None) -> list[bytes]:
    profile = ctx.profile
    engine = profile.engine
    l3_t, l4_off, n = lay.l3_off, lay.l4_off, lay.frame_len
    thl = lay.l4_hdr_len
    v4 = lay.l3 == L3_IPV4
    hdr_end = l4_off + thl

    # Replicated headers: L2, L3 (options / extension headers), the transport header.
    stripped: bytearray | None = None
    if not v4 and lay.jumbo_hbh and n - l3_t > GRO_LEGACY_MAX_SIZE and (
            profile.action("ipv6-jumbo-hop-by-hop") is _A_FIX):
        # ipv6_hopopt_jumbo_remove: the 8-byte hop-by-hop header goes, nexthdr becomes TCP.
        l3 = bytearray(frame[l3_t:l4_off])
        l3 = l3[: ipv6.HEADER_LEN] + l3[ipv6.HEADER_LEN + 8:]
        l3[ipv6.OFF_NEXT_HEADER] = IpProtocol.TCP
        stripped = bytearray(frame[:l3_t]) + l3 + bytearray(frame[l4_off:hdr_end])
        l4_t = l3_t + len(l3)
    else:
        l4_t = l4_off
    tlen = l4_t + thl
    l3_len = l4_t - l3_t
    csum_t = l4_t + (_TCP_CSUM if is_tcp else _UDP_CSUM)

    data_len = n - hdr_end
    count = (data_len + mss - 1) // mss if data_len > 0 else 1
    cut = (count - 1) * mss
    rest = data_len - cut  # payload of the last segment
    seg_full = thl + mss  # transport length of every segment but the last
    seg_last = thl + rest

    key = (count, mss, tlen, l3_t if v4 else -1, l4_t, csum_t, is_tcp)
    plan: _Plan
    try:
        plan = _PLAN_CACHE.plans[key]
    except (AttributeError, KeyError):
        plan = _plan(key)
    # The template is built in the plan's buffer (a bytearray shared with a numpy array).
    template = plan.template
    template[:] = frame[:hdr_end] if stripped is None else stripped
    pad, lastrow = plan.pad, plan.last_mv

    # Fields equal in all full segments go into the template; the last segment (shorter,
    # other flags) is patched afterwards, per-segment columns are written with numpy.
    _U16.pack_into(template, csum_t, 0)
    if v4:
        # The sum of the IPv4 header with total length, ID and checksum zeroed (raw_sum of
        # a header this short is the header as one big-endian integer; each field sits at
        # an even offset, so removing it subtracts its value modulo 0xFFFF; the
        # version/IHL byte keeps the sum positive). The template's ID and checksum are
        # left as they are: every row gets its own below.
        ip_base = (int.from_bytes(template[l3_t:l4_t], "big") - lay.v4_total - lay.v4_ident
                   - _U16.unpack_from(template, l3_t + _V4_CSUM)[0] - 1) % 0xFFFF + 1
        _U16.pack_into(template, l3_t + _V4_TOTAL, (l3_len + seg_full) & 0xFFFF)
    else:
        ip_base = 0
        _U16.pack_into(template, l3_t + _V6_PLEN, (l3_len - _V6_HLEN + seg_full) & 0xFFFF)
    flags = lay.tcp_flags
    # (first, middle, last) segment flags. Linux tcp_gso_segment and the RFCs: FIN and
    # PSH only on the last segment, CWR only on the first (RFC 3168 §6.1.2). QEMU
    # net_tx_pkt_tcp_fragment_init clears FIN and PSH in the header it copies to every
    # segment, the last one included.
    middle = flags & ~(_FIN_PSH | _CWR)
    if engine is _E_QEMU:
        first, last = flags & ~_FIN_PSH, middle
    elif count == 1:
        first = middle = last = flags
    else:
        first, last = flags & ~_FIN_PSH, flags & ~_CWR
    if is_tcp:
        template[l4_t + _TCP_FLAGS] = middle
    else:
        _U16.pack_into(template, l4_t + _UDP_LEN, seg_full & 0xFFFF)

    # Everything per packet that is plain integer arithmetic comes first, then the numpy
    # work on the array (interleaving Python work with the array passes costs more).
    if profile.seed is _ADJUST and needs and (
            seed not in (ZERO_LENGTH, OTHER)
            or profile.action("csum-seed-zero-length" if seed == ZERO_LENGTH
                              else "csum-seed-other") is not _A_FIX):
        # Linux keeps the driver's seed and adds the length change: tcp_gso_segment adds
        # (segment length - skb->len), __udp_gso_segment (new length - uh->len).
        seed_value = _U16.unpack_from(frame, hdr.csum_start + hdr.csum_offset)[0]
        old_len = n - l4_off if is_tcp else lay.udp_len
        base = seed_value + (-old_len) % 0xFFFF
    else:
        # Recomputed per segment. Linux (tcp4/6_gso_segment without CHECKSUM_PARTIAL) and
        # QEMU use the IPv6 header's destination; the spec (RFC 8200 §8.1) the final one.
        base = pseudo_sum(lay, 0, final_destination=engine is _E_SPEC)
    # Transport checksums come from one np.add.reduceat over the array, which sums from
    # each row's transport header to the next one's: all but the last sum also hold the
    # next row's L2 + L3 prefix, constant (an IPv4 header with its checksum sums to 0 mod
    # 0xFFFF) but for the next-to-last sum, which holds the last row's prefix. The prefix
    # (pad zeros, L2 and, for IPv6, the L3 headers of a full row) as a sum of
    # little-endian words: the template starts on an even column.
    prefix = int.from_bytes(template[:l3_t if v4 else l4_t], "little") % 0xFFFF
    # checksum = 0xFFFE - (sum + k - 1) % 0xFFFF = (0xFFFF - k - sum) mod 0xFFFF, kept
    # positive by adding a multiple of 0xFFFF (the plan's bound) at least any sum: row i
    # gets (c_i + bound - sum_i) % 0xFFFF, c_i depending on the row's length and prefix.
    # The c_i (+ bound) are kept with the plan while they repeat (same flow and lengths).
    ckey = (base, prefix, rest, l3_len)
    if ckey != plan.ckey:
        k_full = 256 * (base + seg_full)
        bound = plan.bound
        cbase = plan.cbase
        cbase.fill((0xFFFF - k_full + prefix) % 0xFFFF + bound)
        cbase[count - 1] = (0xFFFF - 256 * (base + seg_last)) % 0xFFFF + bound
        if count > 1 and not v4:
            # The last row's payload length differs (a big-endian field at an even
            # column: 256 times its value, little-endian).
            plen_delta = ((l3_len - _V6_HLEN + seg_last) & 0xFFFF) - (
                (l3_len - _V6_HLEN + seg_full) & 0xFFFF)
            cbase[count - 2] = (0xFFFF - k_full + prefix + 256 * plen_delta) % 0xFFFF + bound
        plan.ckey = ckey

    top = count - 1
    v4_fast = False
    if v4:
        id0 = lay.v4_ident
        k = ip_base + l3_len + seg_full - 1
        # checksum_i = 0xFFFE - (k + id0 + i) % 0xFFFF = (a0 - i) mod 0xFFFF
        a0 = 0xFFFE - (k + id0) % 0xFFFF
        if id0 + top <= 0xFFFF and a0 >= top:
            # Neither the ID nor the checksum wraps: bytes 4..11 of the IPv4 header (ID,
            # flags/offset, TTL, protocol, checksum) as one big-endian 64-bit column,
            # row i = row 0 + i * (2**48 - 1): ID + i, checksum - i. (numpy is fastest on
            # native contiguous operands: compute there, then copy into the column.)
            v4_fast = True
            mid = _U32.unpack_from(template, l3_t + _V4_FLAGS_FRAG)[0]
            plan.v4_base.fill((id0 << 48) | (mid << 16) | a0)
        tot_last = (l3_len + seg_last) & 0xFFFF
        # ~fold(x) for x > 0 (ip_base is positive)
        v4_csum_last = 0xFFFE - (ip_base + tot_last + ((id0 + top) & 0xFFFF) - 1) % 0xFFFF
    if is_tcp:
        # uint32 arithmetic wraps the sequence numbers.
        plan.seq_base.fill(lay.tcp_seq)
    if v4_fast or is_tcp:
        # Both columns (row 0 + i * step) in one native addition.
        np.add(plan.col_base, plan.col_steps, out=plan.col_tmp)

    plan.fill(frame, hdr_end, rest)

    if v4:
        if v4_fast:
            assert plan.v4_col is not None
            plan.v4_col[:] = plan.v4_tmp
        else:
            _v4_columns(plan, id0, k, count)
        _U16.pack_into(lastrow, pad + l3_t + _V4_TOTAL, tot_last)
        _U16.pack_into(lastrow, pad + l3_t + _V4_CSUM, v4_csum_last)
    else:
        _U16.pack_into(lastrow, pad + l3_t + _V6_PLEN, (l3_len - _V6_HLEN + seg_last) & 0xFFFF)
    if is_tcp:
        assert plan.seq_col is not None
        plan.seq_col[:] = plan.seq_tmp  # the uint32 column keeps the low 32 bits
        at = pad + l4_t + _TCP_FLAGS
        if first != middle:
            plan.out[0, at] = first
        if count > 1:
            lastrow[at] = last
    else:
        _U16.pack_into(lastrow, pad + l4_t + _UDP_LEN, seg_last & 0xFFFF)

    sums = np.add.reduceat(plan.flat, plan.starts, dtype=plan.sum_dtype, out=plan.sums)
    cvec = plan.cvec
    np.subtract(plan.cbase, sums, out=cvec)
    np.remainder(cvec, plan.m16, out=cvec)
    if (not is_tcp or engine is _E_QEMU) and np.count_nonzero(cvec) != count:
        # UDP: 0 is sent as 0xFFFF (RFC 768; Linux CSUM_MANGLED_0). QEMU's
        # net_checksum_finish_nozero does the same for TCP.
        cvec[cvec == 0] = 0xFFFF
    plan.csum_col[:] = cvec
    return plan.frames(rest)


def _v4_columns(plan: _Plan, id0: int, k: int, count: int) -> None:
    """IPv4 ID and header checksum columns when one of them wraps."""
    assert plan.ident_col is not None and plan.ipc_col is not None
    tmp = plan.tmp
    np.add(plan.index, id0, out=tmp)
    plan.ident_col[:] = tmp  # the assignment wraps at 16 bits
    if id0 + count <= 0x10000:
        # checksum_i = 0xFFFE - (k + id0 + i) % 0xFFFF = (0xFFFE - k - id0 - i) mod 0xFFFF
        np.subtract(0xFFFE - (k + id0) % 0xFFFF + 0xFFFF, plan.index, out=tmp)
    else:
        np.bitwise_and(tmp, 0xFFFF, out=tmp)
        np.subtract(0xFFFE + 0xFFFF * 2 - k % 0xFFFF, tmp, out=tmp)
    np.remainder(tmp, 0xFFFF, out=tmp)
    plan.ipc_col[:] = tmp


class _Shape(NamedTuple):
    """The geometry of a segmented packet: what a :class:`_Plan` is kept for."""

    segments: int
    mss: int
    tlen: int
    l3_t: int
    """IPv4 header offset in the template (-1 for IPv6: no per-segment ID/checksum)."""
    l4_t: int
    csum_t: int
    is_tcp: bool


class _Plan:
    """The output array of one segment geometry, the numpy views of its per-segment
    columns and the header template, kept per thread and reused while the geometry
    repeats (a TCP stream sends many super-packets of the same shape): row i =
    [pad][template][payload chunk i][0...]. The row stride is a multiple of 4 and the
    transport header 4-byte aligned, so the checksummed part of a row is whole 16-bit
    words."""

    __slots__ = (
        "bound",
        "cbase",
        "ckey",
        "col_base",
        "col_steps",
        "col_tmp",
        "count",
        "csum_col",
        "cvec",
        "flat",
        "full_view",
        "hdr_view",
        "ident_col",
        "index",
        "ipc_col",
        "last_mv",
        "last_row",
        "m16",
        "mss",
        "out",
        "out_mv",
        "pad",
        "seq_base",
        "seq_col",
        "seq_tmp",
        "start",
        "starts",
        "stride",
        "sum_dtype",
        "sums",
        "tail",
        "template",
        "template_arr",
        "tlen",
        "tmp",
        "unpackers",
        "v4_base",
        "v4_col",
        "v4_tmp",
    )

    def __init__(self, shape: _Shape) -> None:
        count, mss, tlen, l3_t, l4_t, csum_t, is_tcp = shape
        pad = -l4_t % 4
        width = pad + tlen + mss
        stride = width + (-width % 4)
        out = np.zeros((count, stride), dtype=np.uint8)
        start = pad + tlen
        self.out, self.count, self.mss, self.pad, self.tlen = out, count, mss, pad, tlen
        self.stride, self.start = stride, start
        self.template = bytearray(tlen)
        self.template_arr = np.frombuffer(self.template, dtype=np.uint8)
        self.hdr_view = out[:, pad:start]
        self.full_view = out[:count - 1, start:start + mss]
        self.last_row = out[count - 1]
        self.last_mv = memoryview(self.last_row)
        self.tail = start
        """The end of the payload the last row holds (zeros after it)."""
        self.index = np.arange(count, dtype=np.int64)
        self.tmp = np.empty(count, dtype=np.int64)
        self.ident_col: npt.NDArray[np.uint16] | None = None
        self.ipc_col: npt.NDArray[np.uint16] | None = None
        self.v4_col: npt.NDArray[np.uint64] | None = None
        # The IPv4 and sequence number columns as one native uint64 vector of 2 * count:
        # first half IPv4 bytes 4..11 (row i: + i * (2**48 - 1)), second half the sequence
        # number (row i: + i * mss, reduced modulo 2**32 by the column's uint32).
        steps = self.index.astype(np.uint64)
        self.col_steps = np.concatenate((steps * np.uint64((1 << 48) - 1), steps * np.uint64(mss)))
        self.col_base = np.zeros(2 * count, dtype=np.uint64)
        self.col_tmp = np.empty(2 * count, dtype=np.uint64)
        self.v4_base, self.seq_base = self.col_base[:count], self.col_base[count:]
        self.v4_tmp, self.seq_tmp = self.col_tmp[:count], self.col_tmp[count:]
        if l3_t >= 0:
            at = pad + l3_t
            self.ident_col = out[:, at + ipv4.OFF_IDENT:at + ipv4.OFF_IDENT + 2].view(">u2")[:, 0]
            self.ipc_col = out[:, at + ipv4.OFF_CHECKSUM:at + ipv4.OFF_CHECKSUM + 2].view(
                ">u2")[:, 0]
            self.v4_col = out[:, at + ipv4.OFF_IDENT:at + ipv4.OFF_IDENT + 8].view(">u8")[:, 0]
        self.seq_col: npt.NDArray[np.uint32] | None = None
        if is_tcp:
            at = pad + l4_t + tcp.OFF_SEQ
            self.seq_col = out[:, at:at + 4].view(">u4")[:, 0]
        self.csum_col = out[:, pad + csum_t:pad + csum_t + 2].view("<u2")[:, 0]
        self.flat = out.reshape(-1).view("<u2")
        self.starts = (self.index * stride + pad + l4_t) // 2
        # A row sum covers at most stride / 2 words of 16 bits: with the bound (a
        # multiple of 0xFFFF at least any sum) added, uint32 holds it up to this stride.
        self.sum_dtype = np.uint32 if stride <= 120000 else np.uint64
        self.bound = stride // 2 * 0xFFFF
        self.sums = np.empty(count, dtype=self.sum_dtype)
        self.cvec = np.empty(count, dtype=self.sum_dtype)
        self.cbase = np.empty(count, dtype=self.sum_dtype)
        self.ckey: tuple[int, int, int, int] | None = None
        self.m16 = np.full(count, 0xFFFF, dtype=self.sum_dtype)
        self.unpackers: dict[int, struct.Struct] = {}
        self.out_mv = out.reshape(-1).data

    def fill(self, frame: bytes | bytearray | memoryview, data_off: int, rest: int) -> None:
        """Copy the template into every row and the payload chunks after it (``rest``
        bytes in the last row)."""
        count, mss, start = self.count, self.mss, self.start
        self.hdr_view[...] = self.template_arr
        direct = type(frame) is bytes or type(frame) is bytearray
        if count > 1:
            cut = (count - 1) * mss
            if direct:
                self.full_view[...] = np.ndarray((count - 1, mss), np.uint8, frame, data_off)
            else:
                self.full_view[...] = np.frombuffer(frame, dtype=np.uint8, count=cut,
                                                    offset=data_off).reshape(count - 1, mss)
            data_off += cut
        end = start + rest
        if rest:
            if direct:
                self.last_mv[start:end] = memoryview(frame)[data_off:data_off + rest]
            else:
                self.last_row[start:end] = np.frombuffer(frame, dtype=np.uint8, count=rest,
                                                         offset=data_off)
        if self.tail > end:
            self.last_row[end:self.tail] = 0
        self.tail = end

    def frames(self, rest: int) -> list[bytes]:
        """The segments as bytes: one struct unpack straight from the array (a format of
        "skip the padding, take a segment" per row, kept per payload length of the last
        row) rather than a copy of the whole array sliced 45 times."""
        unpack = self.unpackers.get(rest)
        if unpack is None:
            if self.count > _STRUCT_MAX_ROWS:
                return self._sliced_frames(rest)
            if len(self.unpackers) >= _UNPACKERS_PER_PLAN:
                self.unpackers.clear()
            full = self.tlen + self.mss
            row = f"{full}s{self.stride - full}x" if self.stride > full else f"{full}s"
            fmt = f"{self.pad}x{row * (self.count - 1)}{self.tlen + rest}s"
            unpack = self.unpackers[rest] = struct.Struct(fmt)
        return list(unpack.unpack_from(self.out_mv))

    def _sliced_frames(self, rest: int) -> list[bytes]:
        big = self.out.tobytes()
        stride, pad, length = self.stride, self.pad, self.tlen + self.mss
        out = [big[i * stride + pad:i * stride + pad + length] for i in range(self.count - 1)]
        start = (self.count - 1) * stride + pad
        out.append(big[start:start + self.tlen + rest])
        return out


_STRUCT_MAX_ROWS = 4096
"""Above this many segments the frames are sliced from one copy of the array instead (a
struct format per row would be long to compile for a geometry that is rarely reused)."""
_UNPACKERS_PER_PLAN = 16


_PLAN_CACHE = threading.local()
_PLAN_CACHE_SIZE = 8


def _plan(key: tuple[int, int, int, int, int, int, bool]) -> _Plan:
    cache: dict[tuple[int, int, int, int, int, int, bool], _Plan] | None = getattr(
        _PLAN_CACHE, "plans", None)
    if cache is None:
        cache = _PLAN_CACHE.plans = {}
    plan = cache.get(key)
    if plan is None:
        shape = _Shape(*key)
        if len(cache) >= _PLAN_CACHE_SIZE:
            del cache[next(iter(cache))]
        if shape.segments * (shape.tlen + shape.mss) > _PLAN_MAX_BYTES:
            return _Plan(shape)
        plan = cache[key] = _Plan(shape)
    return plan


_PLAN_MAX_BYTES = 1 << 20
"""Geometries larger than this are built afresh each time rather than kept."""


def _col16(out: U8, col: int) -> npt.NDArray[np.uint16]:
    return out[:, col:col + 2].view(">u2")


class _Rows:
    """All segments in one array: row i = [pad][template][data chunk i][zeros], the row
    stride a multiple of 4 and the column ``align_at`` of the template 4-byte aligned (so
    the checksummed region is a whole number of 16-bit words from an aligned start)."""

    __slots__ = ("count", "lengths", "out", "pad", "stride", "tlen")

    def __init__(self, frame: bytes | bytearray | memoryview, template: bytearray | bytes,
                 data_off: int, data_len: int, chunk: int, *, align_at: int = 0) -> None:
        tlen = len(template)
        count = max(1, -(-data_len // chunk))
        full = data_len // chunk
        pad = -align_at % 4
        width = pad + tlen + chunk
        stride = width + (-width % 4)
        out = np.empty((count, stride), dtype=np.uint8)
        if pad:
            out[:, :pad] = 0
        out[:, pad:pad + tlen] = np.frombuffer(template, dtype=np.uint8)
        if stride > width:
            out[:, width:] = 0
        data = np.frombuffer(frame, dtype=np.uint8, count=data_len, offset=data_off)
        start = pad + tlen
        if full:
            out[:full, start:start + chunk] = data[:full * chunk].reshape(full, chunk)
        rest = data_len - (count - 1) * chunk
        if count > full:
            out[full, start:start + rest] = data[full * chunk:]
            out[full, start + rest:width] = 0
        self.out, self.count, self.pad, self.stride, self.tlen = out, count, pad, stride, tlen
        self.lengths = [tlen + chunk] * (count - 1) + [tlen + rest]

    def frames(self) -> list[bytes]:
        big = self.out.tobytes()
        stride, pad = self.stride, self.pad
        return [big[i * stride + pad:i * stride + pad + length]
                for i, length in enumerate(self.lengths)]

    def data_lengths(self) -> npt.NDArray[np.uint64]:
        return np.asarray(self.lengths, dtype=np.uint64) - np.uint64(self.tlen)


# --- UFO ----------------------------------------------------------------------------------


def _ufo(job: _Job, frag_id: int | None) -> list[bytes]:
    frame, lay, ctx, mss = job.frame, job.lay, job.ctx, job.mss
    profile = ctx.profile
    engine = profile.engine
    l4_off, n = lay.l4_off, lay.frame_len
    # One UDP checksum over the whole datagram, computed from scratch (Linux
    # udp4/6_ufo_fragment; QEMU net_tx_pkt_do_sw_csum before fragmenting), 0 -> 0xFFFF.
    datagram = bytearray(frame[l4_off:n])
    datagram[udp.OFF_CHECKSUM:udp.OFF_CHECKSUM + 2] = b"\0\0"
    pseudo = pseudo_sum(lay, len(datagram), final_destination=engine is Engine.SPEC)
    csum = (~fold(raw_sum(datagram) + pseudo) & 0xFFFF) or 0xFFFF
    _U16.pack_into(datagram, udp.OFF_CHECKSUM, csum)

    chunk = mss
    if engine is Engine.QEMU or profile.action("ufo-gso-size-unaligned") is Action.FIX:
        chunk = mss & ~7  # QEMU IP_FRAG_ALIGN_SIZE
    if chunk <= 0:
        ctx.fatal("ufo-gso-size-too-small", f"fragments of {chunk} bytes")
    if lay.l3 == L3_IPV4:
        return _ufo_v4(job, datagram, chunk)
    return _ufo_v6(job, datagram, chunk, frag_id)


def _ufo_v4(job: _Job, datagram: bytearray, chunk: int) -> list[bytes]:
    frame, lay, ctx = job.frame, job.lay, job.ctx
    engine = ctx.profile.engine
    l3_t = lay.l2_len
    template = bytearray(frame[:lay.l4_off])
    for off in (ipv4.OFF_TOTAL_LEN, ipv4.OFF_FLAGS_FRAG, ipv4.OFF_CHECKSUM):
        _U16.pack_into(template, l3_t + off, 0)
    base = fold(raw_sum(memoryview(template)[l3_t:lay.l4_off]))
    rows = _Rows(datagram, template, 0, len(datagram), chunk)
    out, count, pad = rows.out, rows.count, rows.pad
    offsets = np.arange(count, dtype=np.uint64) * np.uint64(chunk)
    more = np.full(count, ipv4.FLAG_MF, dtype=np.uint64)
    more[-1] = 0
    if engine is Engine.LINUX or ctx.profile.action("ufo-dont-fragment") is Action.FIX:
        # inet_gso_segment: frag_off = htons(offset >> 3) | MF, DF and the reserved bit
        # overwritten; an offset beyond 13 bits runs into the flag bits as in the kernel.
        kept = 0
    else:
        # QEMU net_tx_pkt_udp_fragment_fix keeps the original flags but MF.
        kept = lay.v4_flags_frag & ~(ipv4.FRAG_OFFSET_MASK | ipv4.FLAG_MF)
    frag = ((offsets >> np.uint64(3)) | more | np.uint64(kept)) & _M16
    tot = rows.data_lengths() + np.uint64(lay.v4_ihl)
    ip_csum = 0xFFFE - (tot + frag + np.uint64(base + 0xFFFF - 1)) % np.uint64(0xFFFF)
    _col16(out, pad + l3_t + ipv4.OFF_TOTAL_LEN)[:, 0] = tot
    _col16(out, pad + l3_t + ipv4.OFF_FLAGS_FRAG)[:, 0] = frag
    _col16(out, pad + l3_t + ipv4.OFF_CHECKSUM)[:, 0] = ip_csum
    return rows.frames()


def _ufo_v6(job: _Job, datagram: bytearray, chunk: int, frag_id: int | None) -> list[bytes]:
    frame, lay, ctx = job.frame, job.lay, job.ctx
    linux = ctx.profile.engine is Engine.LINUX
    l3_off, l4_off = lay.l3_off, lay.l4_off
    unfrag = unfragmentable_len_linux(lay) if linux else unfragmentable_len_rfc(lay)
    split = l3_off + ipv6.HEADER_LEN + unfrag
    # The next-header byte that will point at the fragment header.
    prev = l3_off + ipv6.OFF_NEXT_HEADER
    for h in lay.ext_headers:
        if h.offset + h.length <= split:
            prev = h.offset
    if frag_id is None:
        frag_id = zlib.crc32(lay.src + lay.dst + bytes(datagram[:4])) & 0xFFFFFFFF
    frag_hdr = ipv6.FragmentHeader(frame[prev], 0, False, frag_id).emit()
    # Linux replicates the extension headers after the split point into every fragment
    # (they were pulled as headers before skb_segment); the spec engine drops such
    # packets (rule ufo-ipv6-fragmentable-exthdr), so for it this part is empty.
    rest = bytes(frame[split:l4_off]) if linux else b""
    template = bytearray(frame[:split]) + frag_hdr + rest
    template[prev] = ipv6.ExtHeader.FRAGMENT
    rows = _Rows(datagram, template, 0, len(datagram), chunk)
    out, count, pad = rows.out, rows.count, rows.pad
    plen = rows.data_lengths() + np.uint64(len(template) - lay.l2_len - ipv6.HEADER_LEN)
    _col16(out, pad + l3_off + ipv6.OFF_PAYLOAD_LEN)[:, 0] = plen & _M16
    more = np.full(count, ipv6.FRAG_MF, dtype=np.uint64)
    more[-1] = 0
    if linux:
        # ipv6_gso_segment: offset += payload_len - 8 (every extension header counted),
        # frag_off = htons(offset) | MF, the low bits not masked.
        steps = plen - np.uint64(ipv6.FRAGMENT_HEADER_LEN)
        offsets = np.concatenate(([np.uint64(0)], np.cumsum(steps[:-1], dtype=np.uint64)))
        values = (offsets & _M16) | more
    else:
        offsets = np.arange(count, dtype=np.uint64) * np.uint64(chunk)
        values = (offsets & np.uint64(ipv6.FRAG_OFFSET_MASK)) | more
    _col16(out, pad + split + ipv6.FRAG_OFF_OFFSET_FLAGS)[:, 0] = values
    return rows.frames()
