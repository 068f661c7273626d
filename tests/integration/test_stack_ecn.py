"""ECN end to end (RFC 3168) through the emulated pair: our TCP marks its data ECT(0),
the wire marks some of it CE as a congested router would, the receiving device coalesces
around the marks, the receiver echoes ECE, the sender reduces its window without a
loss and sends CWR — on a TSO packet when HOST_ECN is negotiated (the device puts CWR on
the first segment only, §5.1.6.2), alone otherwise."""

from __future__ import annotations

import pytest

from emulator.backends.wire import FaultConfig
from stack.tcp.config import TcpConfig
from testbench.tcp_bulk import MIB, MODES, run_bulk, stack_pair
from virtio.constants import FeatureBit as F
from virtio.features import FeatureSet

ECN = TcpConfig(ecn="on")
CE = FaultConfig(ce_mark=0.01)


@pytest.mark.parametrize("host_ecn", [True, False], ids=["host-ecn", "no-host-ecn"])
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_ce_marks_slow_the_sender_without_a_loss(host_ecn: bool, v6: bool) -> None:
    wanted = MODES["tso"] if host_ecn else MODES["tso"] - FeatureSet.of(F.HOST_ECN)
    p = stack_pair("tso", faults=CE, seed=7, tcp=ECN, wanted=wanted)
    r = run_bulk(p, 4 * MIB, v6=v6)
    assert r.exact and r.closed
    client, server = r.client.conn, r.server
    assert server is not None
    marked = p.wire.a.counters.ce_marked
    assert marked > 0 and p.wire.a.counters.lost == 0
    assert client.ecn_enabled and server.conn.ecn_enabled
    # The marks reach the receiver's TCP: coalescing never merges a marked segment with
    # unmarked ones (their IP headers differ), but may merge marked neighbours into one
    # packet, which the receiver counts once.
    assert 0 < server.conn.counters.ecn_ce_in <= marked
    c = client.counters
    assert c.ecn_reductions > 0 and c.ecn_cwr_out == c.ecn_reductions
    assert c.retransmitted_segments == 0 and c.fast_retransmits == 0 and c.timeouts == 0
    a_dev = r.layers["a"]["device"]
    assert a_dev["drops"] == {} and r.layers["b"]["device"]["drops"] == {}
    if host_ecn:
        # CWR rode on TSO packets: the device segmented packets with the ECN gso bit.
        assert 0 < a_dev["tx_gso_ecn_packets"] <= c.ecn_cwr_out
    else:
        assert a_dev["tx_gso_ecn_packets"] == 0
    assert p.a.monitor.records == [] and p.b.monitor.records == []


def test_without_ecn_the_marks_change_nothing() -> None:
    """Not-ECT packets are never marked (RFC 3168 §5), so the wire leaves them alone."""
    p = stack_pair("tso", faults=CE, seed=7)
    r = run_bulk(p, 2 * MIB)
    assert r.exact
    assert p.wire.a.counters.ce_marked == 0
    assert r.client.conn.counters.ecn_reductions == 0
