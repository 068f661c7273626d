"""The catalogue of real virtio-net bugs, each a reproduction on the emulated host.

Every entry (:class:`~testbench.bugs.base.Bug`) cites where the bug is documented and
its upstream fix, says how it is reproduced (device profile, features, driver quirks,
workload), what symptom appears, and what setting makes it go away; ``run`` returns the
observation as a :class:`~testbench.bugs.base.BugResult`. Modules by family:
:mod:`~testbench.bugs.transmit`, :mod:`~testbench.bugs.receive`,
:mod:`~testbench.bugs.devices`, :mod:`~testbench.bugs.rings`. docs/bugs.md explains how to
add one.
"""

from __future__ import annotations

import difflib

from testbench.bugs import devices, receive, rings, transmit
from testbench.bugs.base import Bug, BugResult

__all__ = ["CATALOGUE", "Bug", "BugResult", "get_bug"]

CATALOGUE: dict[str, Bug] = {
    bug.name: bug
    for module in (transmit, receive, devices, rings)
    for bug in module.BUGS
}


def get_bug(name: str) -> Bug:
    """The entry called ``name``; ``ValueError`` naming the closest entries otherwise."""
    bug = CATALOGUE.get(name)
    if bug is None:
        close = difflib.get_close_matches(name, list(CATALOGUE), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else \
            "; 'vnetbench bugs list' shows them all"
        raise ValueError(f"no bug named {name!r} in the catalogue{hint}")
    return bug
