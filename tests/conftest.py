"""Suite-wide test policy.

Tests that need a facility (root, /dev/net/tun, network namespaces, tshark, QEMU) skip
with the reason when it is missing — except where ``VNETBENCH_REQUIRE_ALL=1`` (set by
``.ci/run``, where the facilities are installed): there a missing facility fails the test,
so CI can never pass by skipping what it is meant to run.

Property tests: in CI (``VNETBENCH_REQUIRE_ALL=1``) hypothesis runs derandomized, so a
green run stays green and a red one is reproducible from the log; everywhere else each
run draws new examples, which is where new counterexamples come from (a failing example
is printed with ``@reproduce_failure``).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

REQUIRE_ALL = os.environ.get("VNETBENCH_REQUIRE_ALL") == "1"

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if REQUIRE_ALL else "dev")


def skip_unless(reason: str | None) -> None:
    """Skip (or, under ``VNETBENCH_REQUIRE_ALL=1``, fail) when ``reason`` is not None."""
    if reason is None:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required facility missing (VNETBENCH_REQUIRE_ALL=1): {reason}")
    pytest.skip(reason)
