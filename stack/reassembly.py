"""IP fragment reassembly for IPv4 (RFC 791 §3.2, RFC 815) and IPv6 (RFC 8200 §4.5), sans-IO.

A :class:`Reassembler` holds the datagrams in progress, keyed as the RFCs say: source,
destination, protocol and identification for IPv4 (RFC 791 §3.2), source, destination and
identification for IPv6 (RFC 8200 §4.5). Each datagram keeps the data it has as sorted,
disjoint, non-adjacent runs of bytes; the gaps between them (and after the last, up to the
length the last fragment announced) are RFC 815's hole list, so the datagram is complete
when one run covers ``[0, total)``.

Overlaps:

- IPv4: a fragment whose overlap with data already held carries the same bytes is
  accepted (retransmitted or re-fragmented copies); one that carries different bytes
  drops the whole datagram (counted in ``overlaps``) — the conflicting-overlap attacks
  (RFC 1858 §4, RFC 3128) must not get to choose what the upper layer sees.
- IPv6: any overlap discards the whole datagram silently (RFC 5722 §4, RFC 8200 §4.5),
  except an exact duplicate of a fragment already received (same offset, length and
  bytes), which is dropped alone ("may choose to detect this case", RFC 8200 §4.5).

A fragment with M set whose length is not a multiple of 8, or whose data would end past
65535 bytes, raises :class:`FragmentError` (a :class:`WireError`): RFC 8200 §4.5 has the
IPv6 receiver answer both with a parameter problem, whose pointer :attr:`FragmentError.field`
names. The oversized one (the "ping of death") also drops the datagram it belonged to.

Time: every datagram is abandoned ``timeout_ns`` after its first-arriving fragment (RFC
8200 §4.5 says 60 s; RFC 791's timer is reset per fragment up to the TTL, RFC 1122 §3.3.2
recommends a fixed 60-120 s; the default here is Linux's 30 s). :meth:`Reassembler.expire`
applies it (the caller runs it from a timer at :meth:`Reassembler.next_deadline`); the
datagrams that timed out after fragment zero arrived are kept for
:meth:`Reassembler.expired_first_fragments`, so the caller can send ICMP time exceeded,
code 1, quoting that fragment (RFC 792, RFC 8200 §4.5).

Memory is bounded: when a new datagram would exceed ``max_datagrams`` or held bytes
would exceed ``max_bytes``, the oldest datagrams are evicted (counted in ``evicted``).
"""

from __future__ import annotations

import bisect
import dataclasses
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from stack.wire.ipv4 import FLAG_MF, FRAG_UNIT, MAX_PACKET_LEN, Ipv4Header
from stack.wire.ipv6 import ExtHeader, FragmentHeader, Ipv6Header
from virtio.errors import WireError

MAX_V6_PAYLOAD = 0xFFFF
"""RFC 8200 §4.5: the reassembled packet's Payload Length must not exceed 65535. The
unfragmentable extension headers count too but are not known here, so a fragment is
refused when its data alone would end past this."""


class FragmentError(WireError):
    """A fragment that can never be part of a valid datagram (RFC 8200 §4.5).

    ``field`` is where an IPv6 receiver's ICMP parameter problem (code 0) points:
    ``"payload_length"`` (the fragment's Payload Length field: M set and a length that is
    not a multiple of 8) or ``"fragment_offset"`` (the Fragment Offset field: the data
    would end past 65535 bytes)."""

    def __init__(self, message: str, *, field: Literal["payload_length", "fragment_offset"]
                 ) -> None:
        super().__init__(message)
        self.field = field


@dataclass(slots=True)
class ReassemblyCounters:
    fragments: int = 0
    """Fragments pushed (atomic IPv6 fragments not included)."""
    reassembled: int = 0
    """Datagrams completed and returned."""
    atomic: int = 0
    """IPv6 atomic fragments (offset 0, M clear) returned at once (RFC 6946)."""
    duplicates: int = 0
    """Fragments that brought nothing new (IPv4: identical data already held; IPv6: an
    exact duplicate), dropped alone."""
    timeouts: int = 0
    """Datagrams abandoned at the reassembly timeout."""
    overlaps: int = 0
    """Datagrams dropped for an overlap (IPv4 conflicting, IPv6 any)."""
    too_big: int = 0
    """Fragments (and their datagrams) dropped for ending past 65535 bytes."""
    malformed: int = 0
    """Fragments with M set and a length not a multiple of 8, and datagrams dropped for
    fragments that disagree on where the datagram ends."""
    evicted: int = 0
    """Datagrams dropped to stay within ``max_datagrams`` / ``max_bytes``."""


@dataclass(frozen=True, slots=True)
class Reassembled:
    """A completed IPv4 datagram: the first fragment's header (flags without MF, offset 0,
    total length of the whole datagram, ``checksum=None`` so emit recomputes it, RFC 791
    §3.2: the first fragment's header is the datagram's) and the whole payload."""

    header: Ipv4Header
    payload: bytes


@dataclass(frozen=True, slots=True)
class ExpiredDatagram:
    """A datagram that timed out after its fragment zero arrived: what an ICMP time
    exceeded (code 1) about it needs (RFC 792, RFC 8200 §4.5, RFC 4443 §3.3)."""

    version: int
    src: bytes
    """The sender, where the ICMP error goes."""
    dst: bytes
    first_fragment: bytes
    """Fragment zero as a packet, IP header first: the bytes to quote. IPv4: re-emitted
    header and data. IPv6: the headers given to :meth:`Reassembler.push_v6` as
    ``packet``, or when none were given, a synthesized IPv6 header (hop limit 0, no
    extension headers before the fragment header) and the fragment header."""


class _Insert(Enum):
    OK = "ok"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


_Key = tuple[int, bytes, bytes, int, int]
"""(IP version, src, dst, protocol (-1 for IPv6), identification)."""


@dataclass(slots=True)
class _Datagram:
    created: int
    runs: list[tuple[int, bytearray]] = field(default_factory=list)
    spans: set[tuple[int, int]] = field(default_factory=set)
    """IPv6: the (offset, end) of each fragment received, to tell exact duplicates."""
    total: int | None = None
    """Payload length, once the fragment with M clear arrived."""
    held: int = 0
    first_header: Ipv4Header | None = None
    first_next_header: int = -1
    first_prefix: bytes | None = None
    """Fragment zero's bytes before its data (its headers), for the time-exceeded quote."""
    first_len: int = 0

    def complete(self) -> bool:
        return (self.total is not None and len(self.runs) == 1 and self.runs[0][0] == 0
                and len(self.runs[0][1]) == self.total)

    def insert(self, start: int, data: bytes, *, v6: bool) -> tuple[_Insert, int]:
        """Merge ``data`` at ``start`` into the runs: the outcome and the change in bytes
        held."""
        end = start + len(data)
        if start == end:
            return _Insert.OK, 0
        runs = self.runs
        # Runs touching [start, end]: overlapping or adjacent (both orderings agree, as
        # the runs are disjoint and sorted).
        i = bisect.bisect_left(runs, start, key=lambda r: r[0] + len(r[1]))
        j = bisect.bisect_right(runs, end, key=lambda r: r[0])
        touching = runs[i:j]
        overlapped = covered = False
        for rs, rd in touching:
            re = rs + len(rd)
            lo, hi = max(start, rs), min(end, re)
            if hi > lo:
                overlapped = True
                if rd[lo - rs:hi - rs] != data[lo - start:hi - start]:
                    return _Insert.CONFLICT, 0
                covered = covered or (rs <= start and end <= re)
        if v6 and overlapped:
            # RFC 5722 §4: any overlap discards the datagram; an exact duplicate of one
            # fragment (its bytes just compared equal) is dropped alone (RFC 8200 §4.5).
            return (_Insert.DUPLICATE if (start, end) in self.spans else _Insert.CONFLICT), 0
        if covered:
            return _Insert.DUPLICATE, 0
        if v6:
            self.spans.add((start, end))
        old = sum(len(rd) for _, rd in touching)
        if len(touching) == 1 and touching[0][0] + len(touching[0][1]) == start:
            touching[0][1].extend(data)  # the in-order case: append to the run before
            return _Insert.OK, len(data)
        new_start = min([start, *(rs for rs, _ in touching)])
        new_end = max([end, *(rs + len(rd) for rs, rd in touching)])
        buf = bytearray(new_end - new_start)
        for rs, rd in touching:
            buf[rs - new_start:rs - new_start + len(rd)] = rd
        buf[start - new_start:end - new_start] = data
        runs[i:j] = [(new_start, buf)]
        return _Insert.OK, len(buf) - old


class Reassembler:
    """Fragment reassembly for both IP versions, bounded in time and memory."""

    def __init__(
        self,
        *,
        timeout_ns: int = 30_000_000_000,
        max_datagrams: int = 64,
        max_bytes: int = 4 << 20,
    ) -> None:
        if timeout_ns <= 0 or max_datagrams <= 0 or max_bytes <= 0:
            raise ValueError("reassembly timeout and bounds must be positive")
        self.timeout_ns = timeout_ns
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.counters = ReassemblyCounters()
        self._datagrams: OrderedDict[_Key, _Datagram] = OrderedDict()
        self._held = 0
        self._expired: deque[ExpiredDatagram] = deque(maxlen=max_datagrams)

    # -- state ------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Datagrams in progress."""
        return len(self._datagrams)

    @property
    def held_bytes(self) -> int:
        return self._held

    def next_deadline(self) -> int | None:
        """When the oldest datagram in progress times out (None: nothing in progress)."""
        if not self._datagrams:
            return None
        return min(d.created for d in self._datagrams.values()) + self.timeout_ns

    # -- IPv4 ---------------------------------------------------------------------------
    def push_v4(self, header: Ipv4Header, payload: bytes, now: int) -> bytes | None:
        """Add one IPv4 fragment (``payload``: its data, ``header.payload_len`` bytes);
        the whole upper-layer payload once the datagram is complete, else None. A header
        that is not a fragment's gives its payload back at once. See
        :meth:`push_v4_datagram` for the first fragment's header too."""
        done = self.push_v4_datagram(header, payload, now)
        return None if done is None else done.payload

    def push_v4_datagram(
        self, header: Ipv4Header, payload: bytes, now: int
    ) -> Reassembled | None:
        """:meth:`push_v4`, returning the datagram's header (the first fragment's, RFC
        791 §3.2) with the payload."""
        if not header.is_fragment:
            return Reassembled(header, bytes(payload))
        key: _Key = (4, header.src, header.dst, header.protocol, header.ident)
        offset = header.frag_offset * FRAG_UNIT
        limit = MAX_PACKET_LEN - header.header_len
        dg = self._push(key, offset, payload, header.more_fragments, now, limit=limit, v6=False)
        if dg is None:
            return None
        if offset == 0 and dg.first_header is None:
            dg.first_header = header
            dg.first_len = len(payload)
            dg.first_prefix = header.emit()
            self._account(dg, len(dg.first_prefix))
        if not self._finish(key, dg):
            return None
        first = dg.first_header
        assert first is not None  # run 0 starts at 0: fragment zero arrived
        data = bytes(dg.runs[0][1])
        if first.header_len + len(data) > MAX_PACKET_LEN:
            self.counters.too_big += 1
            return None
        self.counters.reassembled += 1
        whole = dataclasses.replace(first, total_length=first.header_len + len(data),
                                    flags=first.flags & ~FLAG_MF, frag_offset=0, checksum=None)
        return Reassembled(whole, data)

    # -- IPv6 ---------------------------------------------------------------------------
    def push_v6(
        self,
        src: bytes,
        dst: bytes,
        frag: FragmentHeader,
        payload: bytes,
        now: int,
        *,
        packet: bytes | None = None,
    ) -> tuple[int, bytes] | None:
        """Add one IPv6 fragment (``payload``: the fragmentable part after the fragment
        header); ``(next header of fragment zero, reassembled payload)`` once complete,
        else None. An atomic fragment (offset 0, M clear) is returned at once without
        touching fragments in progress with its identification (RFC 6946 §4).

        ``packet``: optionally the whole received packet (IPv6 header first, ending with
        ``payload``); kept for fragment zero so that a time-exceeded error quotes it as
        it was received."""
        if frag.offset == 0 and not frag.more:
            self.counters.atomic += 1
            return frag.next_header, bytes(payload)
        key: _Key = (6, src, dst, -1, frag.ident)
        dg = self._push(key, frag.offset, payload, frag.more, now, limit=MAX_V6_PAYLOAD,
                        v6=True)
        if dg is None:
            return None
        if frag.offset == 0 and dg.first_next_header < 0:
            dg.first_next_header = frag.next_header
            dg.first_len = len(payload)
            if packet is not None:
                if len(packet) < len(payload):
                    raise ValueError("packet must end with the fragment's payload")
                dg.first_prefix = bytes(packet[:len(packet) - len(payload)])
            else:
                dg.first_prefix = Ipv6Header(src, dst, ExtHeader.FRAGMENT, 8 + len(payload),
                                             hop_limit=0).emit() + frag.emit()
            self._account(dg, len(dg.first_prefix))
        if not self._finish(key, dg):
            return None
        self.counters.reassembled += 1
        return dg.first_next_header, bytes(dg.runs[0][1])

    # -- time ---------------------------------------------------------------------------
    def expire(self, now: int) -> int:
        """Abandon every datagram whose first fragment arrived ``timeout_ns`` or more
        before ``now``; the number abandoned. Those whose fragment zero had arrived are
        queued for :meth:`expired_first_fragments`."""
        stale = [k for k, d in self._datagrams.items() if now - d.created >= self.timeout_ns]
        for key in stale:
            self._time_out(key, self._datagrams[key])
        return len(stale)

    def expired_first_fragments(self) -> list[ExpiredDatagram]:
        """The datagrams timed out (by :meth:`expire`, or found stale by a push) since the
        last call whose fragment zero had arrived, oldest first; the queue is emptied. It
        keeps at most ``max_datagrams`` (the newest) between calls."""
        out = list(self._expired)
        self._expired.clear()
        return out

    # -- internals ----------------------------------------------------------------------
    def _push(
        self, key: _Key, offset: int, payload: bytes, more: bool, now: int, *, limit: int,
        v6: bool,
    ) -> _Datagram | None:
        """Common fragment handling: the datagram the fragment went into, or None when
        the fragment (or its datagram) was dropped."""
        self.counters.fragments += 1
        end = offset + len(payload)
        if more and len(payload) % FRAG_UNIT:
            self.counters.malformed += 1
            raise FragmentError(f"fragment of {len(payload)} bytes with more fragments to "
                                "come is not a multiple of 8", field="payload_length")
        if end > limit:
            self.counters.too_big += 1
            self._drop(key)
            raise FragmentError(f"fragment ending at byte {end} would make the datagram "
                                f"longer than {limit} bytes", field="fragment_offset")
        dg = self._datagrams.get(key)
        if dg is not None and now - dg.created >= self.timeout_ns:
            self._time_out(key, dg)
            dg = None
        if dg is None:
            while len(self._datagrams) >= self.max_datagrams:
                self._evict_oldest()
            dg = _Datagram(created=now)
            self._datagrams[key] = dg
        # The last fragment fixes the length; every fragment must agree with it (RFC 791
        # §3.2; Linux ip_frag_queue drops the queue on disagreement).
        held_end = dg.runs[-1][0] + len(dg.runs[-1][1]) if dg.runs else 0
        if not more:
            if (dg.total is not None and dg.total != end) or held_end > end:
                self.counters.malformed += 1
                self._drop(key)
                return None
            dg.total = end
        elif dg.total is not None and end > dg.total:
            self.counters.malformed += 1
            self._drop(key)
            return None
        outcome, grown = dg.insert(offset, bytes(payload), v6=v6)
        if outcome is _Insert.CONFLICT:
            self.counters.overlaps += 1
            self._drop(key)
            return None
        if outcome is _Insert.DUPLICATE:
            self.counters.duplicates += 1
        self._account(dg, grown)
        while self._held > self.max_bytes:
            if self._evict_oldest() == key:
                return None
        return dg

    def _finish(self, key: _Key, dg: _Datagram) -> bool:
        """Remove ``dg`` if it is complete (and still held after the memory bound)."""
        if key not in self._datagrams or not dg.complete():
            return False
        self._drop(key)
        return True

    def _account(self, dg: _Datagram, grown: int) -> None:
        dg.held += grown
        self._held += grown

    def _drop(self, key: _Key) -> _Datagram | None:
        dg = self._datagrams.pop(key, None)
        if dg is not None:
            self._held -= dg.held
        return dg

    def _evict_oldest(self) -> _Key:
        key = next(iter(self._datagrams))
        self._drop(key)
        self.counters.evicted += 1
        return key

    def _time_out(self, key: _Key, dg: _Datagram) -> None:
        self._drop(key)
        self.counters.timeouts += 1
        if dg.first_prefix is None or not dg.runs or dg.runs[0][0] != 0:
            return
        first = dg.first_prefix + bytes(dg.runs[0][1][:dg.first_len])
        self._expired.append(ExpiredDatagram(key[0], key[1], key[2], first))
