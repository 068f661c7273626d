"""What a catalogue entry is: a real, documented virtio-net bug (:class:`Bug`) and what
one run of its reproduction observed (:class:`BugResult`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stack.wire.checksum import pseudo_header_sum_v4, verify
from testbench.bugs.rig import Rig


@dataclass
class BugResult:
    """One run: whether the symptom appeared, described in a line and in figures."""

    name: str
    fixed: bool
    """Run with the fixed setting."""
    observed: bool
    """The symptom appeared."""
    symptom: str
    """What was seen, one line."""
    figures: dict[str, Any] = field(default_factory=dict)
    """The counters and values the symptom is made of."""
    report: dict[str, Any] = field(default_factory=dict)
    """The conformance monitor's report (``Monitor.report_dict``)."""
    report_text: str = "no violations"

    @property
    def as_expected(self) -> bool:
        """The symptom appeared with the bug and is gone with the fix."""
        return self.observed != self.fixed

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "fixed": self.fixed, "observed": self.observed,
            "as_expected": self.as_expected, "symptom": self.symptom,
            "figures": self.figures, "monitor": self.report,
        }


Runner = Callable[[Path | None, bool], BugResult]


@dataclass(frozen=True)
class Bug:
    """One catalogue entry."""

    name: str
    title: str
    project: str
    citation: str
    """Where the bug is documented (issue, pull request, commit page)."""
    fix: str
    """The upstream fix (commit id, pull request) or its state."""
    setup: str
    """Profile, features, quirks and workload of the reproduction."""
    symptom: str
    """What the reproduction shows with the bug."""
    fixed_setting: str
    """What changes under ``--fixed``."""
    runner: Runner

    def run(self, pcap: Path | None = None, *, fixed: bool = False) -> BugResult:
        """Run the reproduction (with the fixed setting when ``fixed``); a pcapng of the
        host's traffic goes to ``pcap`` when given."""
        return self.runner(pcap, fixed)

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name, "title": self.title, "project": self.project,
            "citation": self.citation, "fix": self.fix, "setup": self.setup,
            "symptom": self.symptom, "fixed_setting": self.fixed_setting,
        }


def finish(rig: Rig, name: str, fixed: bool, observed: bool, symptom: str,  # noqa: PLR0917
           figures: dict[str, Any]) -> BugResult:
    """Close the rig's capture and bundle the run with the monitor's report."""
    rig.close()
    monitor = rig.host.monitor
    figures = {**figures, "stalled": rig.stalled}
    return BugResult(name, fixed, observed, symptom, figures, monitor.report_dict(),
                     monitor.summary())


def tcp4_checksum_ok(frame: bytes) -> bool:
    """Whether an Ethernet/IPv4/TCP frame's TCP checksum verifies (no VLAN)."""
    ihl = (frame[14] & 0x0F) * 4
    total = int.from_bytes(frame[16:18], "big")
    l4 = frame[14 + ihl:14 + total]
    seed = pseudo_header_sum_v4(frame[26:30], frame[30:34], frame[23], len(l4))
    return verify(l4, seed)
