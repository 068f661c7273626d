"""The tables of docs/profiles-and-quirks.md, generated from emulator/profiles.py,
emulator/offload/rules.py and driver/quirks.py so the page cannot drift from the code:
``tests/testbench/test_docs_tables.py`` fails when a table differs, and
``python -m tests.docs_tables`` rewrites them in place.

Each table sits between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->``."""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from driver.quirks import FAMILIES, QUIRKS
from emulator.net.device import IMPLEMENTED
from emulator.offload.rules import RULES
from emulator.profiles import PROFILES, Action, Profile
from virtio.features import FeatureSet

DOC = Path(__file__).resolve().parent.parent / "docs" / "profiles-and-quirks.md"
DESCRIBED = ("name", "description", "sources", "actions")
"""Profile fields shown elsewhere than in the table of fields."""


def _profiles() -> list[Profile]:
    return [PROFILES[n] for n in ("strict", "linux", "qemu", "firecracker", "firecracker-legacy")]


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Enum):
        return str(value.value)
    if value is None:
        return f"all {len(IMPLEMENTED)} implemented"
    if isinstance(value, FeatureSet):
        return f"{len(value)}: {', '.join(value.names())}"
    return str(value)


def profile_fields() -> str:
    """One row per Profile field (but the described ones), one column per profile, and
    how many rules each action takes."""
    profiles = _profiles()
    lines = ["| field | " + " | ".join(f"`{p.name}`" for p in profiles) + " |",
             "|---" * (len(profiles) + 1) + "|"]
    for f in dataclasses.fields(Profile):
        if f.name not in DESCRIBED:
            values = [_value(getattr(p, f.name)) for p in profiles]
            lines.append(f"| `{f.name}` | " + " | ".join(values) + " |")
    for action in Action:
        counts = [str(sum(a is action for a in p.actions.values())) for p in profiles]
        lines.append(f"| rules: {action.value} | " + " | ".join(counts) + " |")
    return "\n".join(lines)


def rule_actions() -> str:
    """One row per rule: its summary, whether it breaks a driver requirement of the
    spec, the action of each profile."""
    profiles = _profiles()
    lines = ["| rule | what | spec MUST | " + " | ".join(p.name for p in profiles) + " |",
             "|---" * (len(profiles) + 3) + "|"]
    for name, rule in RULES.items():
        actions = " | ".join(p.action(name).value for p in profiles)
        lines.append(f"| `{name}` | {rule.summary.replace('|', '/')} | "
                     f"{'yes' if rule.violation else ''} | {actions} |")
    return "\n".join(lines)


def profile_sources() -> str:
    """Each profile: its description and sources."""
    out: list[str] = []
    for p in _profiles():
        out.append(f"**`{p.name}`**: {p.description}\n")
        out += [f"- {s}" for s in p.sources]
        out.append("")
    return "\n".join(out).rstrip("\n")


def quirks() -> str:
    """The quirks by family: what each does, the rule it breaks, the reference, the
    real bug it models."""
    out: list[str] = []
    for family in FAMILIES:
        out += [f"**{family}**", "", "| quirk | what the driver does | breaks | reference | models |",
                "|---|---|---|---|---|"]
        out += [f"| `{q.name}` | {q.description} | {q.breaks} | {q.reference} | {q.models} |"
                for q in QUIRKS.values() if q.family == family]
        out.append("")
    return "\n".join(out).rstrip("\n")


TABLES: dict[str, Callable[[], str]] = {
    "profile-fields": profile_fields, "rule-actions": rule_actions,
    "profile-sources": profile_sources, "quirks": quirks,
}


def render(text: str) -> str:
    """``text`` with every generated block replaced by what the code says now;
    ValueError when a block is missing."""
    for name, make in TABLES.items():
        pattern = re.compile(rf"(<!-- generated: {name} -->\n).*?(<!-- end: {name} -->)", re.S)
        m = pattern.search(text)
        if m is None:
            raise ValueError(f"{DOC}: no generated block {name!r}")
        text = f"{text[:m.start()]}{m.group(1)}{make()}\n{m.group(2)}{text[m.end():]}"
    return text


def main() -> int:
    DOC.write_text(render(DOC.read_text()))
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
