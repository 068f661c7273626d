"""The conformance monitor: every spec rule the device saw broken, with its reference.

The device checks the driver (ring layout, status sequence, register use, net headers)
and, where it can, itself. Each broken rule becomes one :class:`Record`: who broke it,
a stable short rule name, the spec reference, what the device did about it, and the
virtual time (the clock is injected; the monitor never reads a real clock).
DESIGN.md, "Errors say who is at fault".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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

    def __str__(self) -> str:
        where = ""
        if self.queue is not None:
            where += f" q{self.queue}"
        if self.descriptor is not None:
            where += f" desc {self.descriptor}"
        action = f" -> {self.action}" if self.action else ""
        return (
            f"[{self.time} ns] {self.who} broke {self.rule}{where}{action}: "
            f"{self.detail} ({self.reference})"
        )


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
    ) -> Record:
        if who not in (DRIVER, DEVICE):
            raise ValueError(f"who must be {DRIVER!r} or {DEVICE!r}, not {who!r}")
        rec = Record(who, rule, reference, detail, self.clock(), queue, descriptor, action)
        self.records.append(rec)
        return rec

    def record_error(
        self,
        err: ProtocolError,
        *,
        queue: int | None = None,
        descriptor: int | None = None,
        action: str = "",
    ) -> Record:
        """Record a caught protocol error. A :class:`DriverProtocolError` is the device's
        fault; any other :class:`ProtocolError` seen by the device (a
        ``DeviceProtocolError``) is the driver's."""
        who = DEVICE if isinstance(err, DriverProtocolError) else DRIVER
        return self.record(
            who, err.rule, err.reference, str(err),
            queue=queue, descriptor=descriptor, action=action,
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

    def clear(self) -> None:
        self.records.clear()

    def __len__(self) -> int:
        return len(self.records)
