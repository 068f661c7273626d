"""The conformance report of a test: the monitor records of every emulated host in it,
with assertions (``assert_clean``, ``assert_violation``) whose failure message is the
report itself."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from emulator.monitor import Monitor, Record

__all__ = ["Conformance", "HostRecord"]

REPORT_LINES = 20


@dataclass(frozen=True)
class HostRecord:
    host: str
    record: Record

    def __str__(self) -> str:
        return f"{self.host}: {self.record}"


@dataclass
class Conformance:
    """What the conformance monitors of a test's hosts recorded."""

    monitors: dict[str, Monitor] = field(default_factory=dict)

    def watch(self, host: str, monitor: Monitor) -> None:
        self.monitors[host] = monitor

    @property
    def records(self) -> list[HostRecord]:
        return [HostRecord(h, r) for h, m in self.monitors.items() for r in m.records]

    def rules(self) -> list[str]:
        """The rule names in order (with repeats), across hosts."""
        return [r.record.rule for r in self.records]

    def __len__(self) -> int:
        return sum(len(m.records) for m in self.monitors.values())

    def report(self) -> str:
        """A count per (host, who, rule), then one line per record (the first 20)."""
        records = self.records
        if not records:
            return "no violations"
        counts = Counter((r.host, r.record.who, r.record.rule) for r in records)
        lines = [f"{len(records)} violation(s):"]
        lines += [f"  {n} x {host}: {who} broke {rule}" for (host, who, rule), n in counts.items()]
        lines += [f"  {r}" for r in records[:REPORT_LINES]]
        if len(records) > REPORT_LINES:
            lines.append(f"  ... {len(records) - REPORT_LINES} more")
        return "\n".join(lines)

    def assert_clean(self) -> None:
        """AssertionError with the report unless no rule was broken."""
        if len(self):
            raise AssertionError(f"expected no violations, got {self.report()}")

    def assert_violation(self, rule: str, *, count: int | None = None, who: str | None = None,
                         host: str | None = None) -> list[HostRecord]:
        """The records of ``rule`` (by ``who``, "driver" or "device", on ``host`` when
        given); AssertionError with the report when there is none, or not ``count``."""
        found = [r for r in self.records if r.record.rule == rule
                 and (who is None or r.record.who == who) and (host is None or r.host == host)]
        if not found or (count is not None and len(found) != count):
            wanted = "at least one" if count is None else f"exactly {count}"
            raise AssertionError(
                f"expected {wanted} {rule!r} record(s), got {len(found)}: {self.report()}")
        return found

    def assert_only(self, *rules: str) -> None:
        """AssertionError unless every record is of one of ``rules``."""
        other = sorted({r.record.rule for r in self.records} - set(rules))
        if other:
            raise AssertionError(f"expected only {sorted(rules)}, also got {other}: "
                                 f"{self.report()}")
