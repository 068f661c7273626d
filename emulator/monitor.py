"""The conformance monitor: every spec rule the device saw broken, with its reference.

The device checks the driver (ring layout, status sequence, register use, net headers)
and, where it can, itself. Each broken rule becomes one :class:`Record`: who broke it,
a stable short rule name, the spec reference, what the device did about it, and the
virtual time (the clock is injected; the monitor never reads a real clock).
DESIGN.md, "Errors say who is at fault".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from virtio.errors import DriverProtocolError, ProtocolError

DRIVER = "driver"
"""The driver broke a rule the device checked."""
DEVICE = "device"
"""The device broke a rule."""


@dataclass(frozen=True, slots=True)
class Record:
    """One broken rule."""

    who: str
    rule: str
    reference: str
    detail: str
    time: int
    queue: int | None = None
    descriptor: int | None = None
    action: str = ""
    """What the device did: "needs-reset", "dropped", "ignored", "refused" (or "")."""
    packet: str | None = None
    """The packet involved, when there is one: its length and first bytes in hex
    (:func:`describe_packet`)."""

    def __str__(self) -> str:
        where = ""
        if self.queue is not None:
            where += f" q{self.queue}"
        if self.descriptor is not None:
            where += f" desc {self.descriptor}"
        action = f" -> {self.action}" if self.action else ""
        packet = f" [packet {self.packet}]" if self.packet else ""
        return (
            f"[{self.time} ns] {self.who} broke {self.rule}{where}{action}: "
            f"{self.detail} ({self.reference}){packet}"
        )

    def as_dict(self) -> dict[str, Any]:
        """The record as plain JSON-able values."""
        return {
            "who": self.who, "rule": self.rule, "reference": self.reference,
            "detail": self.detail, "time": self.time, "queue": self.queue,
            "descriptor": self.descriptor, "action": self.action, "packet": self.packet,
        }


PACKET_HEAD = 34
"""Bytes of a packet kept in a record: Ethernet + a 20-byte IPv4 header."""


def describe_packet(packet: bytes | bytearray | memoryview) -> str:
    """A short, stable description of a packet: ``"<len> bytes <hex of the first 34>"``."""
    data = bytes(packet[:PACKET_HEAD])
    more = "..." if len(packet) > PACKET_HEAD else ""
    return f"{len(packet)} bytes {data.hex()}{more}"


REPORT_LINES = 20
"""Records listed one per line in :meth:`Monitor.summary`."""


class Monitor:
    """Collects :class:`Record` s in the order they happen."""

    def __init__(self, clock: Callable[[], int] = lambda: 0) -> None:
        self.clock = clock
        self.records: list[Record] = []

    def record(
        self,
        who: str,
        rule: str,
        reference: str,
        detail: str,
        *,
        queue: int | None = None,
        descriptor: int | None = None,
        action: str = "",
        packet: bytes | bytearray | memoryview | None = None,
    ) -> Record:
        if who not in (DRIVER, DEVICE):
            raise ValueError(f"who must be {DRIVER!r} or {DEVICE!r}, not {who!r}")
        summary = describe_packet(packet) if packet is not None else None
        rec = Record(who, rule, reference, detail, self.clock(), queue, descriptor, action,
                     summary)
        self.records.append(rec)
        return rec

    def record_error(
        self,
        err: ProtocolError,
        *,
        queue: int | None = None,
        descriptor: int | None = None,
        action: str = "",
        packet: bytes | bytearray | memoryview | None = None,
    ) -> Record:
        """Record a caught protocol error. A :class:`DriverProtocolError` is the device's
        fault; any other :class:`ProtocolError` seen by the device (a
        ``DeviceProtocolError``) is the driver's."""
        who = DEVICE if isinstance(err, DriverProtocolError) else DRIVER
        return self.record(
            who, err.rule, err.reference, str(err),
            queue=queue, descriptor=descriptor, action=action, packet=packet,
        )

    def rules(self) -> list[str]:
        """The rule names, in order (with repeats)."""
        return [r.rule for r in self.records]

    def count(self, rule: str) -> int:
        return sum(1 for r in self.records if r.rule == rule)

    def report(self) -> str:
        """One line per record, or "no violations"."""
        if not self.records:
            return "no violations"
        return "\n".join(str(r) for r in self.records)

    def summary(self) -> str:
        """The report: a count per (who, rule) then one line per record (at most
        :data:`REPORT_LINES`, the rest counted)."""
        if not self.records:
            return "no violations"
        counts = Counter((r.who, r.rule) for r in self.records)
        lines = [f"{len(self.records)} violation(s):"]
        lines += [f"  {n} x {who} broke {rule}" for (who, rule), n in counts.items()]
        lines += [f"  {r}" for r in self.records[:REPORT_LINES]]
        if len(self.records) > REPORT_LINES:
            lines.append(f"  ... {len(self.records) - REPORT_LINES} more")
        return "\n".join(lines)

    def report_dict(self) -> dict[str, Any]:
        """The report as JSON-able data: totals per rule and every record."""
        return {
            "violations": len(self.records),
            "rules": dict(Counter(r.rule for r in self.records)),
            "records": [r.as_dict() for r in self.records],
        }

    # assertions for tests
    def assert_clean(self) -> None:
        """AssertionError (with the report) unless nothing was recorded."""
        if self.records:
            raise AssertionError(f"expected no violations, got:\n{self.summary()}")

    def assert_violation(self, rule: str, *, count: int | None = None,
                         who: str | None = None) -> list[Record]:
        """The records of ``rule`` (by ``who`` when given); AssertionError with the
        report when there is none, or not exactly ``count``."""
        found = [r for r in self.records if r.rule == rule and (who is None or r.who == who)]
        if not found or (count is not None and len(found) != count):
            wanted = "at least one" if count is None else str(count)
            by = f" by {who}" if who else ""
            raise AssertionError(
                f"expected {wanted} {rule!r} record(s){by}, got {len(found)}:\n"
                f"{self.summary()}"
            )
        return found

    def assert_only(self, *rules: str) -> None:
        """AssertionError unless every record is of one of ``rules``."""
        other = [r for r in self.records if r.rule not in rules]
        if other:
            raise AssertionError(
                f"expected only {sorted(rules)}, also got {sorted({r.rule for r in other})}:"
                f"\n{self.summary()}"
            )

    def clear(self) -> None:
        self.records.clear()

    def __len__(self) -> int:
        return len(self.records)
