"""Driver quirks (driver/quirks.py): each one makes the device record the rule it breaks,
or shows the symptom the device cannot see; without quirks nothing is recorded."""

from __future__ import annotations

import pytest

from driver.net import DEFAULT_WANTED, DriverConfig
from driver.quirks import FAMILIES, QUIRKS, check_quirks
from emulator.profiles import STRICT
from testbench.bugs.rig import Rig, make_rig
from testbench.packets import tcp_packet
from virtio.constants import FeatureBit as F
from virtio.constants import Status
from virtio.errors import NegotiationFailed
from virtio.features import FeatureSet

TSO = tcp_packet(4000, mss=1448)
PLAIN = tcp_packet(100, mss=None)


def rig(*quirks: str, wanted: FeatureSet = DEFAULT_WANTED, profile: str = "strict") -> Rig:
    return make_rig(quirks=frozenset(quirks), wanted=wanted, profile=profile)


def test_every_quirk_is_documented() -> None:
    assert len(QUIRKS) == 31
    for q in QUIRKS.values():
        assert q.family in FAMILIES and q.description and q.breaks and q.reference
    assert {q.family for q in QUIRKS.values()} == set(FAMILIES)


def test_unknown_quirk_suggests_names() -> None:
    with pytest.raises(ValueError, match="did you mean gso-size-zero"):
        check_quirks({"gso-size-0"})
    with pytest.raises(ValueError, match=r"unknown driver quirk 'zzz'$"):
        DriverConfig(quirks=frozenset({"zzz"}))


def test_no_quirk_no_record() -> None:
    r = rig()
    r.send(TSO)
    r.send(PLAIN)
    r.host.monitor.assert_clean()
    assert len(r.sink.sent) == 4  # three segments and the plain frame


# negotiation
@pytest.mark.parametrize(("quirk", "rule"), [
    ("accept-not-offered", "feature-not-offered"),
    ("accept-without-dependency", "feature-dependency"),
    ("skip-version-1", "feature-version-1-not-accepted"),
])
def test_refused_features(quirk: str, rule: str) -> None:
    r = make_rig(quirks=frozenset({quirk}), start=False)
    with pytest.raises(NegotiationFailed):
        r.host.start()
    r.host.monitor.assert_violation(rule, count=1, who="driver")
    r.host.monitor.assert_only(rule)


def test_no_features_ok_check_goes_on_with_refused_features() -> None:
    r = make_rig(quirks=frozenset({"accept-not-offered", "no-features-ok-check"}))
    mon = r.host.monitor
    mon.assert_violation("feature-not-offered", count=1)
    mon.assert_violation("queue-enable-before-features-ok", count=3)
    mon.assert_violation("driver-ok-without-features-ok", count=1)
    assert not r.host.core.status & Status.DRIVER_OK


def test_features_after_features_ok() -> None:
    r = rig("features-after-features-ok")
    r.host.monitor.assert_violation("features-after-features-ok", count=3)  # 3 words


def test_driver_ok_before_queues() -> None:
    r = rig("driver-ok-before-queues")
    r.send(PLAIN)
    # size, desc/driver/device low and high, ready: 8 writes for each of 3 queues
    r.host.monitor.assert_violation("queue-setup-after-driver-ok", count=24)
    r.host.monitor.assert_violation("notify-queue-not-ready", count=2)  # RX at probe, TX
    assert r.sink.sent == []


def test_use_not_negotiated() -> None:
    r = rig("use-not-negotiated", wanted=DEFAULT_WANTED - FeatureSet.of(F.HOST_TSO4))
    r.send(TSO)
    r.host.monitor.assert_violation("tx-gso-not-negotiated", count=1)
    assert r.host.device.counters.drops == {"tx-gso-not-negotiated": 1}


def test_use_not_negotiated_control_command() -> None:
    with pytest.raises(ValueError, match="needs a feature that was not negotiated"):
        rig().host.driver.vlan_add(5)  # a correct driver does not send it
    r = rig("use-not-negotiated")
    assert r.host.driver.vlan_add(5) is False  # sent anyway, refused by the device
    rec = r.host.monitor.assert_violation("ctrl-not-negotiated", count=1)[0]
    assert (rec.queue, rec.action) == (2, "refused")
    assert r.host.driver.counters.ctrl_errors == 1


# transmit headers
@pytest.mark.parametrize(("quirk", "rule", "dropped"), [
    ("gso-size-zero", "gso-size-zero", True),
    ("gso-without-needs-csum", "gso-without-needs-csum", True),
    ("gso-type-mismatch", "gso-type-mismatch", True),
    ("csum-offset-wrong", "csum-offset-tcp", True),
    ("csum-start-wrong", "csum-start-not-transport", True),
    ("seed-length-zero", "csum-seed-zero-length", False),
    ("seed-missing", "csum-seed-other", True),
    ("data-valid-on-tx", "tx-hdr-flags", False),
    ("ecn-without-cwr", "tx-ecn-without-cwr", False),
])
def test_transmit_header_quirks(quirk: str, rule: str, dropped: bool) -> None:
    r = rig(quirk)
    r.send(TSO)
    r.host.monitor.assert_violation(rule, count=1, who="driver")
    r.host.monitor.assert_only(rule)
    assert r.host.device.counters.drops == ({rule: 1} if dropped else {})
    assert len(r.sink.sent) == (0 if dropped else 3)


def test_hdr_len_wrong_with_guest_hdrlen() -> None:
    r = rig("hdr-len-wrong", wanted=DEFAULT_WANTED | FeatureSet.of(F.GUEST_HDRLEN))
    r.send(TSO)
    r.host.monitor.assert_violation("hdr-len-inexact", count=1)
    assert r.host.device.counters.drops == {"hdr-len-inexact": 1}


def test_header_size_mismatch_shifts_the_frame() -> None:
    r = rig("header-size-mismatch", wanted=DEFAULT_WANTED | FeatureSet.of(F.HASH_REPORT))
    assert r.host.driver.header_size == 20
    r.send(PLAIN)
    # 8 frame bytes read as hash fields: MACs and ethertype shifted
    assert [s[:20] for s in r.sink.sent] == [PLAIN.frame[8:28]]
    assert [len(s) for s in r.sink.sent] == [len(PLAIN.frame) - 8]
    r.host.monitor.assert_clean()  # nothing the device can tell


# rings
@pytest.mark.parametrize(("quirk", "rule"), [
    ("avail-idx-jump", "avail-idx-jump"),
    ("descriptor-loop", "chain-too-long"),
    ("address-outside-memory", "desc-addr-out-of-memory"),
])
def test_ring_faults_need_reset(quirk: str, rule: str) -> None:
    r = rig(quirk)
    r.send(PLAIN)
    rec = r.host.monitor.assert_violation(rule, count=1, who="driver")[0]
    assert (rec.queue, rec.action) == (1, "needs-reset")
    assert r.host.driver.needs_reset
    assert r.sink.sent == []


def test_nested_indirect() -> None:
    r = make_rig(quirks=frozenset({"nested-indirect"}),
                 driver=lambda c: DriverConfig(wanted=c.wanted, queue_size=16,
                                               use_indirect=True, quirks=c.quirks))
    r.send(PLAIN)
    r.host.monitor.assert_violation("indirect-nested", count=1)


def test_reuse_in_flight_breaks_the_driver() -> None:
    r = rig("reuse-in-flight")
    r.send(PLAIN)
    assert len(r.sink.sent) == 2 and r.sink.sent[0] == r.sink.sent[1]  # one chain, twice
    assert [e.rule for e in r.host.driver.errors] == ["used-id-not-in-flight"]
    assert r.host.driver.broken


def test_ignore_event_idx() -> None:
    r = rig("ignore-event-idx")
    r.send(PLAIN)
    rec = r.host.monitor.assert_violation("avail-flags-with-event-idx", count=1)[0]
    assert rec.queue == 1


def test_rx_refill_without_kick_stalls() -> None:
    r = rig("rx-refill-no-kick")
    frame = PLAIN.frame
    for _ in range(20):  # a burst: the ring runs dry before the driver runs
        r.sink.deliver(frame)
    r.run()
    for _ in range(5):
        r.receive(frame)
    assert len(r.got) == 16
    assert r.host.device.counters.drops == {"rx-no-buffer": 9}
    queue = r.host.core.queue(0)
    assert queue is not None and queue.pending(r.host.memory) == 16  # refilled, unseen


# receive
def test_rx_len_from_descriptor_pads_frames() -> None:
    r = rig("rx-len-from-descriptor")
    r.receive(PLAIN.frame)
    size = r.host.driver.rx_buffer_size - r.host.driver.header_size
    assert [len(f.data) for f in r.got] == [size]
    assert r.got[0].data[:len(PLAIN.frame)] == PLAIN.frame


def test_rx_small_buffers_with_guest_tso() -> None:
    wanted = DEFAULT_WANTED | FeatureSet.of(F.GUEST_CSUM, F.GUEST_TSO4)
    r = rig("rx-small-buffers", wanted=wanted)
    assert r.host.driver.rx_buffer_size == 12 + 1500 + 18
    assert not r.receive_offloaded(TSO.frame, TSO.hdr)
    r.host.monitor.assert_violation("rx-buffer-too-small", count=1)


def test_trust_used_len_reads_past_the_buffer() -> None:
    profile = STRICT.derive("overreport", rx_used_len_extra=12)
    frame = PLAIN.frame + bytes(1514 - len(PLAIN.frame))
    plain = make_rig(profile=profile)
    plain.receive(frame)
    assert [e.rule for e in plain.host.driver.errors] == ["used-len-too-large"]
    trusting = make_rig(profile=profile, quirks=frozenset({"trust-used-len"}))
    trusting.receive(frame)
    assert [len(f.data) for f in trusting.got] == [len(frame) + 12]
    trusting.host.monitor.assert_violation("rx-used-len-beyond-written", who="device")


def test_ignore_num_buffers_splits_packets() -> None:
    wanted = DEFAULT_WANTED | FeatureSet.of(F.MRG_RXBUF, F.GUEST_CSUM, F.GUEST_TSO4)
    good = rig(wanted=wanted)
    bad = rig("ignore-num-buffers", wanted=wanted)
    for r in (good, bad):
        r.receive_offloaded(TSO.frame, TSO.hdr)
    assert [len(f.data) for f in good.got] == [len(TSO.frame)]
    size = bad.host.driver.rx_buffer_size - 12
    # the first buffer is a truncated packet; the two others have payload bytes where
    # the header should be (a gso_type no feature allows: dropped)
    assert [len(f.data) for f in bad.got] == [size]
    assert bad.host.driver.counters.drops == {"rx-gso-type-unknown": 2}


@pytest.mark.parametrize(("quirk", "flags"), [
    ("rx-needs-csum-as-verified", (False, True)), ("rx-needs-csum-as-plain", (False, False)),
])
def test_rx_needs_csum_mishandled(quirk: str, flags: tuple[bool, bool]) -> None:
    wanted = DEFAULT_WANTED | FeatureSet.of(F.GUEST_CSUM)
    good = rig(wanted=wanted, profile="linux")
    bad = rig(quirk, wanted=wanted, profile="linux")
    for r in (good, bad):
        r.receive_offloaded(PLAIN.frame, PLAIN.hdr)
    assert (good.got[0].csum_partial, good.got[0].csum_verified) == (True, False)
    assert (bad.got[0].csum_partial, bad.got[0].csum_verified) == flags


@pytest.mark.parametrize(("quirk", "rule"), [
    ("descriptor-loop", "chain-too-long"),
    ("address-outside-memory", "desc-addr-out-of-memory"),
])
def test_firecracker_skips_a_chain_it_cannot_walk(quirk: str, rule: str) -> None:
    """Firecracker returns such a chain unused and goes on (process_tx: add_used(head,
    0)); the strict device sets DEVICE_NEEDS_RESET (test_ring_faults_need_reset)."""
    r = rig(quirk, profile="firecracker")
    r.send(PLAIN)
    r.send(PLAIN)
    rec = r.host.monitor.assert_violation(rule, count=1, who="driver")[0]
    assert (rec.queue, rec.action) == (1, "skipped")
    assert not r.host.driver.needs_reset and not r.host.driver.broken
    assert len(r.sink.sent) == 1  # the second frame went out
    assert r.host.device.counters.drops == {rule: 1}


def test_firecracker_still_stops_on_a_bad_avail_index() -> None:
    r = rig("avail-idx-jump", profile="firecracker")
    r.send(PLAIN)
    rec = r.host.monitor.assert_violation("avail-idx-jump", count=1)[0]
    assert rec.action == "needs-reset" and r.host.driver.needs_reset
