"""The neighbour cache: IP address → link-layer address, for ARP (RFC 826, RFC 1122
§2.3.2.1) and NDP (RFC 4861 §7.3) alike.

A simplified RFC 4861 §7.3.2 state machine, the same for both families:

- INCOMPLETE: a solicitation was sent; packets for the address wait in a bounded queue
  (RFC 1122 §2.3.2.2: "at least one"; RFC 4861 §7.2.2: a small queue). The solicitation
  is repeated every ``retrans_ns`` up to ``max_solicit`` times (RFC 4861
  MAX_MULTICAST_SOLICIT = 3, RetransTimer = 1 s); then the entry and its queue go and
  the drops are counted (the caller may answer with ICMP host unreachable).
- REACHABLE: confirmed (a reply or advertisement) within ``reachable_ns`` (ReachableTime,
  30 s).
- STALE: older than that; still used, and the next use sends a fresh solicitation
  (Linux's DELAY/PROBE folded into one step) that must be answered within
  ``max_solicit`` retries, or the entry goes.

Sans-IO: the cache says what to solicit; the interface sends it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum


class NeighborState(Enum):
    INCOMPLETE = "incomplete"
    REACHABLE = "reachable"
    STALE = "stale"


@dataclass
class NeighborCounters:
    solicitations: int = 0
    resolved: int = 0
    failed: int = 0
    """Entries given up after max_solicit unanswered solicitations."""
    queued: int = 0
    dropped: int = 0
    """Packets dropped: queue full, or their neighbour never answered."""


@dataclass
class _Entry:
    state: NeighborState
    mac: bytes = b""
    confirmed_at: int = 0
    solicited_at: int = 0
    solicits: int = 0
    probing: bool = False
    pending: list[object] = field(default_factory=list)


@dataclass(frozen=True)
class NeighborConfig:
    reachable_ns: int = 30_000_000_000
    retrans_ns: int = 1_000_000_000
    max_solicit: int = 3
    pending_limit: int = 16
    """Packets held per unresolved neighbour (Linux unres_qlen_bytes is ~100 KB)."""
    max_entries: int = 1024


class NeighborCache:
    """One family's cache (addresses are packed bytes)."""

    def __init__(self, config: NeighborConfig | None = None) -> None:
        self.config = config or NeighborConfig()
        self.counters = NeighborCounters()
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()

    def lookup(self, ip: bytes, now: int) -> bytes | None:
        """The link-layer address to use now, or None (resolve first)."""
        entry = self._entries.get(ip)
        if entry is None or entry.state is NeighborState.INCOMPLETE:
            return None
        if entry.state is NeighborState.REACHABLE and now - entry.confirmed_at > self.config.reachable_ns:
            entry.state = NeighborState.STALE
        return entry.mac

    def state(self, ip: bytes) -> NeighborState | None:
        entry = self._entries.get(ip)
        return None if entry is None else entry.state

    def needs_probe(self, ip: bytes, now: int) -> bool:
        """A STALE entry was used: start re-confirming it (one solicitation now)."""
        entry = self._entries.get(ip)
        if entry is None or entry.state is not NeighborState.STALE or entry.probing:
            return False
        entry.probing = True
        entry.solicits = 1
        entry.solicited_at = now
        self.counters.solicitations += 1
        return True

    def queue(self, ip: bytes, packet: object, now: int) -> bool:
        """Hold ``packet`` until ``ip`` resolves. True when a solicitation must be sent
        now (a new entry); False when it joined an existing wait (or was dropped)."""
        entry = self._entries.get(ip)
        fresh = entry is None
        if entry is None:
            entry = _Entry(NeighborState.INCOMPLETE, solicited_at=now, solicits=1)
            self._entries[ip] = entry
            self.counters.solicitations += 1
            self._evict()
        if len(entry.pending) >= self.config.pending_limit:
            entry.pending.pop(0)  # the oldest goes, as Linux's unres queue does
            self.counters.dropped += 1
        entry.pending.append(packet)
        self.counters.queued += 1
        return fresh

    def update(self, ip: bytes, mac: bytes, now: int, *, confirmed: bool = True) -> list[object]:
        """An answer (or any packet that tells us the mapping): the entry becomes
        REACHABLE (``confirmed``: a reply / solicited advertisement) or STALE (learnt in
        passing, RFC 4861 §7.2.3), and the packets waiting for it are returned."""
        entry = self._entries.get(ip)
        if entry is None:
            if not confirmed:
                entry = _Entry(NeighborState.STALE, mac=mac)
                self._entries[ip] = entry
                self._evict()
            else:
                entry = _Entry(NeighborState.REACHABLE, mac=mac, confirmed_at=now)
                self._entries[ip] = entry
                self._evict()
            return []
        if entry.state is NeighborState.INCOMPLETE:
            self.counters.resolved += 1
        entry.mac = mac
        if confirmed or entry.state is NeighborState.INCOMPLETE:
            entry.state = NeighborState.REACHABLE if confirmed else NeighborState.STALE
            entry.confirmed_at = now
        entry.probing = False
        entry.solicits = 0
        pending, entry.pending = entry.pending, []
        self._entries.move_to_end(ip)
        return pending

    def poll(self, now: int) -> tuple[list[bytes], list[object]]:
        """Timers: addresses to solicit again, and packets dropped because their
        neighbour never answered."""
        resend: list[bytes] = []
        dropped: list[object] = []
        cfg = self.config
        for ip in list(self._entries):
            entry = self._entries[ip]
            waiting = entry.state is NeighborState.INCOMPLETE or entry.probing
            if not waiting or now - entry.solicited_at < cfg.retrans_ns:
                continue
            if entry.solicits >= cfg.max_solicit:
                del self._entries[ip]
                self.counters.failed += 1
                self.counters.dropped += len(entry.pending)
                dropped.extend(entry.pending)
                continue
            entry.solicits += 1
            entry.solicited_at = now
            self.counters.solicitations += 1
            resend.append(ip)
        return resend, dropped

    def next_deadline(self) -> int | None:
        times = [e.solicited_at + self.config.retrans_ns for e in self._entries.values()
                 if e.state is NeighborState.INCOMPLETE or e.probing]
        return min(times) if times else None

    def _evict(self) -> None:
        while len(self._entries) > self.config.max_entries:
            _, entry = self._entries.popitem(last=False)
            self.counters.dropped += len(entry.pending)
