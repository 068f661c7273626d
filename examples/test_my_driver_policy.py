"""An example test suite, written the way a driver author would write one for their own
driver policy, using only the fixtures of the vnetbench pytest plugin (no conftest, no
configuration: installing vnetbench is enough).

The policy checked here:

1. the driver never hands the device a GSO packet without NEEDS_CSUM (§5.1.6.2.1);
2. TSO is on whenever the device offers it, and then a megabyte costs the transmit ring
   fewer than 100 descriptors;
3. whatever the device personality, nothing the driver does is a conformance violation.

Run it with ``pytest examples/``, against other device personalities with
``pytest examples/ --vnet-profile strict,linux,qemu,firecracker``.
"""

from __future__ import annotations

import pytest

from driver.net import VirtioNetDriver
from testbench.conformance import Conformance
from testbench.host import Pair
from testbench.tcp_bulk import run_bulk
from virtio.net_hdr import NetHdr

MIB = 1 << 20


def record_tx_headers(pair: Pair) -> list[NetHdr]:
    """Every virtio_net_hdr host A's driver hands its device, as the device sees it."""
    headers: list[NetHdr] = []
    pair.a.device.tx_tap = lambda hdr, frame: headers.append(hdr)
    return headers


def gso_without_needs_csum(headers: list[NetHdr]) -> list[NetHdr]:
    return [h for h in headers if h.gso_type and not h.needs_csum]


@pytest.mark.vnet(accept="tso")
def test_gso_packets_always_carry_needs_csum(vnet_pair: Pair, vnet_monitor: Conformance) -> None:
    headers = record_tx_headers(vnet_pair)
    result = run_bulk(vnet_pair, 2 * MIB)
    assert result.exact
    assert any(h.gso_type for h in headers), "the stack sent no GSO packet at all"
    assert gso_without_needs_csum(headers) == []
    vnet_monitor.assert_clean()


@pytest.mark.vnet(accept="tso", quirks=("gso-without-needs-csum",))
def test_the_policy_check_catches_a_driver_that_breaks_it(
    vnet_pair: Pair, vnet_monitor: Conformance
) -> None:
    """The same check against a driver with the bug switched on: it must see it, and so
    must the device's conformance monitor."""
    headers = record_tx_headers(vnet_pair)
    run_bulk(vnet_pair, 256 * 1024)
    assert gso_without_needs_csum(headers) != []
    vnet_monitor.assert_violation("gso-without-needs-csum", who="driver", host="a")


@pytest.mark.vnet(accept="default")
def test_tso_is_on_whenever_it_is_offered(vnet_driver: VirtioNetDriver) -> None:
    offered, negotiated = vnet_driver.offered.names(), vnet_driver.negotiated.names()
    for tso in ("HOST_TSO4", "HOST_TSO6"):
        assert (tso in negotiated) == (tso in offered and "CSUM" in offered)
    caps = vnet_driver.capabilities()
    assert (caps.segmentation.tcp_ipv4_max is not None) == ("HOST_TSO4" in negotiated)


@pytest.mark.vnet(accept="tso")
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_a_megabyte_costs_fewer_than_100_transmit_descriptors(vnet_pair: Pair, v6: bool) -> None:
    result = run_bulk(vnet_pair, 4 * MIB, v6=v6)
    assert result.exact
    device = result.layers["a"]["device"]
    per_mb = device["tx_descriptors"] / 4
    assert device["tx_gso_packets"] > 0
    assert per_mb < 100, f"{per_mb:.1f} transmit descriptors per MB"


def test_no_violations_with_the_defaults(vnet_pair: Pair, vnet_monitor: Conformance) -> None:
    """The default settings, on whatever device --vnet-profile names."""
    assert run_bulk(vnet_pair, MIB).exact
    vnet_monitor.assert_clean()


@pytest.mark.parametrize(
    "vnet_config",
    [{"faults": {"loss": 0.01, "reorder": 0.01}, "seed": 3}],
    indirect=True, ids=["lossy"],
)
def test_recovers_from_loss_without_breaking_a_rule(
    vnet_pair: Pair, vnet_monitor: Conformance
) -> None:
    result = run_bulk(vnet_pair, MIB)
    assert result.exact and result.closed
    assert vnet_pair.wire.a.counters.lost > 0
    vnet_monitor.assert_clean()
