"""Interop tests run against the real Linux kernel: they need root, /dev/net/tun and
network namespaces, and skip with the reason :func:`testbench.netns.tap_available`
gives otherwise. Every test here is marked ``interop`` (``pytest -m "not interop"``
leaves them out) and sends traffic only inside namespaces it creates."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from emulator.backends.tap import TapDevice, TunOffload
from testbench.netns import Netns, tap_available, unique_name
from testbench.packets import DST_MAC, SRC_MAC
from tests.conftest import skip_unless


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent.name == "interop":
            item.add_marker(pytest.mark.interop)


@pytest.fixture
def needs_tap() -> None:
    """Skip the test, with the reason, unless taps and namespaces work here."""
    reason = tap_available()
    skip_unless(None if reason is None else f"interop: {reason}")


@dataclass
class TapPair:
    """Two taps (vnet header 12, no offloads) bridged by br0 in a fresh namespace."""

    netns: Netns
    one: TapDevice
    two: TapDevice


@pytest.fixture
def tap_pair(needs_tap: None) -> Iterator[TapPair]:
    with Netns("vnb-pair-") as ns:
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", 1)
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", 1)
        with TapDevice(unique_name("vpa"), vnet_hdr_size=12) as one, \
                TapDevice(unique_name("vpb"), vnet_hdr_size=12) as two:
            ns.ip("link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0",
                  "mcast_snooping", "0")
            for tap in (one, two):
                ns.move_link(tap.name)
                ns.ip("link", "set", "dev", tap.name, "master", "br0")
            for name in ("br0", one.name, two.name):
                ns.ip("link", "set", "dev", name, "up")
            one.drain()
            two.drain()
            yield TapPair(ns, one, two)


@contextmanager
def kernel_on_tap(prefix: str, offloads: TunOffload) -> Iterator[tuple[Netns, TapDevice]]:
    """A fresh namespace whose kernel is the peer at the far end of a tap we hold (vnet
    header 12, reader offloads ``offloads``): the tap has MAC ``DST_MAC`` and 10.0.0.2/24
    (what testbench.packets addresses), IPv6 is off, and the kernel already knows
    10.0.0.1 is at ``SRC_MAC`` (no ARP round before a test)."""
    with Netns(prefix) as ns, TapDevice(unique_name("vtp"), vnet_hdr_size=12) as tap:
        tap.set_offload(offloads)
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", 1)
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", 1)
        ns.move_link(tap.name)
        ns.ip("link", "set", "dev", tap.name, "address", DST_MAC.hex(":"))
        ns.ip("addr", "add", "10.0.0.2/24", "dev", tap.name)
        ns.ip("link", "set", "dev", tap.name, "up")
        ns.ip("neigh", "add", "10.0.0.1", "lladdr", SRC_MAC.hex(":"), "dev", tap.name)
        tap.drain()
        yield ns, tap
