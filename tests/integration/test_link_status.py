"""Link status and configuration generation end to end.

- virtio-v1.2 §5.1.4 Device configuration layout: ``status`` (VIRTIO_NET_S_LINK_UP) exists
  only with VIRTIO_NET_F_STATUS; §5.1.4.2: without STATUS the driver SHOULD assume the
  link is active.
- §2.5 Device Configuration Space / §2.5.1: the device changes ``config_generation``
  whenever a field may have changed; with STATUS negotiated a link change comes with a
  configuration change notification (§2.5, §4.2.3.4: InterruptStatus bit 1).
- §2.5.2 / §4.2.2 ConfigGeneration: the driver reads the generation before and after the
  fields and retries until both match (driver/transport.py ``_consistent``, bounded by
  ``CONFIG_RETRY_LIMIT``, then DeviceConfigError rule "config-generation-unstable" and
  FAILED, §3.1.1).
- A link that is down carries nothing: the device drops what the driver transmits
  ("tx-link-down") and what the wire brings ("rx-link-down").

The races are made with a :class:`driver.bus.RegisterBus` placed between the driver and
the emulated register file, which runs a configuration change in the middle of the
driver's read of the configuration space.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from driver.net import DEFAULT_WANTED, DriverConfig, VirtioNetDriver
from driver.transport import CONFIG_RETRY_LIMIT, MmioDriverTransport
from emulator.mmio import MmioTransport
from emulator.net.device import IMPLEMENTED, NetDeviceConfig
from stack.device import RxFrame
from stack.wire.ethernet import EthernetHeader, EtherType
from testbench.host import Host, HostConfig, Pair, make_pair
from testbench.loop import EventLoop
from virtio import spec
from virtio.constants import FeatureBit as F
from virtio.constants import MmioReg, NetStatus, Status
from virtio.errors import DeviceConfigError
from virtio.features import FeatureSet
from virtio.layouts import NET_CONFIG

MIB = 1 << 20
MAC_A = bytes.fromhex("525400000001")
MAC_B = bytes.fromhex("525400000002")
STATUS_OFFSET = 6
"""virtio_net_config.status follows the 6-byte mac (§5.1.4)."""
NO_STATUS = DEFAULT_WANTED.without(F.STATUS)


def frame(n: int, src: bytes = MAC_A, dst: bytes = MAC_B) -> bytes:
    return EthernetHeader(dst, src, EtherType.LOCAL_EXPERIMENTAL_1).emit() + bytes([n]) * 60


def pair(*, b_wants: FeatureSet = DEFAULT_WANTED, offered: FeatureSet | None = None,
         queue_size: int = 64, start: bool = True) -> tuple[Pair, list[RxFrame], list[RxFrame]]:
    dev = NetDeviceConfig(offered=offered)
    p = make_pair(
        EventLoop(),
        a=HostConfig("a", MAC_A, 4 * MIB, dev, DriverConfig(queue_size=queue_size)),
        b=HostConfig("b", MAC_B, 4 * MIB, dev, DriverConfig(wanted=b_wants, queue_size=queue_size)),
        start=start,
    )
    got_b: list[RxFrame] = []
    got_a: list[RxFrame] = []
    p.b.on_frames = got_b.extend
    p.a.on_frames = got_a.extend
    return p, got_b, got_a


def send(p: Pair, host: Host, frames: list[bytes]) -> None:
    """One frame at a time, flushed (so a small ring never fills while the device
    completes each chain at once)."""
    for f in frames:
        assert host.driver.transmit(f)
        host.driver.flush()
    p.loop.run_until_idle(max_steps=20_000)


def link_state(host: Host) -> tuple[int, int, bool, int]:
    """(device config interrupts, driver config interrupts, driver link_up, generation)."""
    return (host.device.counters.config_interrupts, host.driver.counters.config_interrupts,
            host.driver.link_up, host.core.config_generation)


# --- §5.1.4 status, §2.5 generation ---------------------------------------------------------


def test_link_changes_notify_a_driver_that_negotiated_status() -> None:
    """STATUS negotiated: each change of the link is a configuration change notification
    (counted on both sides), a new generation, and the driver's link_up follows the
    status field; setting the state it already has changes nothing."""
    p, _, _ = pair()
    b = p.b
    assert F.STATUS in b.driver.negotiated
    assert link_state(b) == (0, 0, True, 0)
    assert b.driver.net_config is not None
    assert b.driver.net_config.status == NetStatus.LINK_UP
    b.device.set_link(False)
    p.loop.run_until_idle(max_steps=1_000)
    assert link_state(b) == (1, 1, False, 1)
    assert b.driver.net_config.status == 0
    b.device.set_link(False)  # no change: no notification, same generation
    p.loop.run_until_idle(max_steps=1_000)
    assert link_state(b) == (1, 1, False, 1)
    b.device.set_link(True)
    p.loop.run_until_idle(max_steps=1_000)
    assert link_state(b) == (2, 2, True, 2)
    assert b.driver.net_config.status == NetStatus.LINK_UP
    for _ in range(3):
        b.device.set_link(False)
        b.device.set_link(True)
    p.loop.run_until_idle(max_steps=1_000)
    # six changes, six generations and notifications; the interrupt line latched them
    # into one handler run, which found the link up
    assert b.core.config_generation == 8
    assert b.device.counters.config_interrupts == 8
    assert b.driver.counters.config_interrupts == 3
    assert b.driver.link_up
    assert b.driver.errors == [] and p.a.driver.counters.config_interrupts == 0


def test_without_status_negotiated_the_generation_moves_silently() -> None:
    """STATUS offered, not negotiated: the device still moves the generation (the field is
    in its configuration space), but sends no notification; the driver keeps assuming
    the link is up (§5.1.4.2)."""
    p, _, _ = pair(b_wants=NO_STATUS)
    b = p.b
    assert F.STATUS in b.driver.offered and F.STATUS not in b.driver.negotiated
    assert link_state(b) == (0, 0, True, 0)
    b.device.set_link(False)
    p.loop.run_until_idle(max_steps=1_000)
    assert link_state(b) == (0, 0, True, 1)
    b.device.set_link(True)
    p.loop.run_until_idle(max_steps=1_000)
    assert link_state(b) == (0, 0, True, 2)
    assert b.driver.counters.interrupts == 0


def test_without_status_offered_the_configuration_space_does_not_change() -> None:
    """STATUS not offered: ``status`` reads 0 whatever the link (§5.1.4: the field exists
    only with STATUS), so a link change is no configuration change: same generation,
    no notification."""
    p, _, _ = pair(offered=IMPLEMENTED.without(F.STATUS))
    b = p.b
    before = b.device.config_bytes()
    b.device.set_link(False)
    p.loop.run_until_idle(max_steps=1_000)
    assert link_state(b) == (0, 0, True, 0)
    assert b.device.config_bytes() == before
    assert before[STATUS_OFFSET] == 0


# --- §2.5 consistent reads: ConfigGeneration retry -------------------------------------------


class RacingBus:
    """A RegisterBus in front of the emulated register file. While ``armed``, the read of
    configuration byte ``at`` (offset from 0x100) returns the value it had, then runs
    ``change`` — the device changing its configuration in the middle of the driver's
    read — for the first ``races`` such reads. Counts the driver's ConfigGeneration and
    configuration-space reads."""

    def __init__(self, inner: MmioTransport, change: Callable[[], None], *, at: int = STATUS_OFFSET,
                 races: int = 1, armed: bool = True) -> None:
        self.inner = inner
        self.change = change
        self.at = at
        self.races = races
        self.armed = armed
        self.raced = 0
        self.generation_reads = 0
        self.config_reads = 0

    def read(self, offset: int, size: int = 4) -> int:
        value = self.inner.read(offset, size)
        if offset == MmioReg.CONFIG_GENERATION:
            self.generation_reads += 1
        elif offset >= MmioReg.CONFIG:
            self.config_reads += 1
            if self.armed and offset == MmioReg.CONFIG + self.at and self.raced < self.races:
                self.raced += 1
                self.change()
        return value

    def write(self, offset: int, value: int, size: int = 4) -> None:
        self.inner.write(offset, value, size)


class UnstableGenerationBus:
    """A device whose ConfigGeneration reads differently every time."""

    def __init__(self, inner: MmioTransport) -> None:
        self.inner = inner
        self.generation_reads = 0

    def read(self, offset: int, size: int = 4) -> int:
        if offset == MmioReg.CONFIG_GENERATION:
            self.generation_reads += 1
            return self.generation_reads
        return self.inner.read(offset, size)

    def write(self, offset: int, value: int, size: int = 4) -> None:
        self.inner.write(offset, value, size)


def rebind(host: Host, bus: RacingBus | UnstableGenerationBus) -> VirtioNetDriver:
    """Put a driver behind ``bus`` on ``host`` (before it is started)."""
    host.driver = VirtioNetDriver(bus, host.memory, host.config.driver)
    return host.driver


def toggle_link(host: Host) -> Callable[[], None]:
    return lambda: host.device.set_link(not host.device.link_up)


def test_a_change_during_the_probe_read_is_retried_and_the_new_value_wins() -> None:
    """The link goes down right after the driver read the status byte (LINK_UP): the
    bytes of that attempt are stale, the generation differs, the driver reads again
    and sees the link down (§2.5.2). Before DRIVER_OK the device sends no notification."""
    p, got, _ = pair(start=False)
    b = p.b
    bus = RacingBus(b.mmio, lambda: b.device.set_link(False))
    driver = rebind(b, bus)
    p.a.start()
    driver.probe()
    p.loop.run_until_idle(max_steps=1_000)
    assert bus.raced == 1
    assert bus.generation_reads == 4  # two attempts, before and after each
    assert bus.config_reads == 2 * NET_CONFIG.size
    assert driver.net_config is not None and driver.net_config.status == 0
    assert not driver.link_up
    assert b.core.config_generation == 1
    assert b.core.status & Status.DRIVER_OK and not b.core.status & Status.FAILED
    assert (b.device.counters.config_interrupts, driver.counters.config_interrupts) == (0, 0)
    # the link really is down: what A sends is dropped by B's device
    send(p, p.a, [frame(1)])
    assert got == [] and b.device.counters.drops == {"rx-link-down": 1}


def test_a_change_during_the_read_after_a_notification_is_retried() -> None:
    """Link down, notification; while the driver reads the configuration the link comes
    back (a second change, a second notification). The read that raced is retried and
    gives link up; the second notification reads it again."""
    p, got, _ = pair(start=False)
    b = p.b
    bus = RacingBus(b.mmio, lambda: b.device.set_link(True), armed=False)
    driver = rebind(b, bus)
    p.a.start()
    driver.probe()
    assert bus.generation_reads == 2 and bus.config_reads == NET_CONFIG.size
    bus.armed = True
    b.device.set_link(False)
    p.loop.run_until_idle(max_steps=1_000)
    assert bus.raced == 1
    # probe: 1 attempt; first handler: 2 attempts (raced, then clean); second handler: 1
    assert bus.generation_reads == 2 * (1 + 2 + 1)
    assert bus.config_reads == (1 + 2 + 1) * NET_CONFIG.size
    assert link_state(b) == (2, 2, True, 2)
    send(p, p.a, [frame(2)])
    assert [rx.data for rx in got] == [frame(2)]


@pytest.mark.parametrize(("offset", "size", "at"), [(6, 2, 6), (0, 8, 4)],
                         ids=["le16-status", "64-bit-two-halves"])
def test_a_single_field_read_is_retried_too(offset: int, size: int, at: int) -> None:
    """MmioDriverTransport.read_config: a field read (a 64-bit one as two 32-bit reads,
    §4.2.2.2) is retried under the same ConfigGeneration rule (§2.5.2). The link goes
    down right after the read at ``at``: the first attempt is stale, the second gives
    the new status (0) — for the 64-bit read, the MAC then a zero status word."""
    p, _, _ = pair()
    b = p.b
    bus = RacingBus(b.mmio, lambda: b.device.set_link(False), at=at)
    transport = MmioDriverTransport(bus)
    value = transport.read_config(offset, size)
    assert value == int.from_bytes((MAC_B + bytes(2))[offset:offset + size], "little")
    assert bus.raced == 1 and bus.generation_reads == 4
    assert bus.config_reads == 2 * (2 if size == 8 else 1)
    assert b.core.config_generation == 1


@pytest.mark.parametrize(("races", "ok"), [
    (CONFIG_RETRY_LIMIT - 1, True),
    (CONFIG_RETRY_LIMIT, False),
], ids=["limit-minus-one", "limit"])
def test_the_retry_is_bounded(races: int, ok: bool) -> None:
    """The generation moves during each of the first ``races`` attempts. One fewer than
    CONFIG_RETRY_LIMIT: the last attempt is clean and probe succeeds. As many: probe
    gives up with DeviceConfigError "config-generation-unstable" (§2.5) and sets FAILED
    (§3.1.1)."""
    assert CONFIG_RETRY_LIMIT == 100
    p, _, _ = pair(start=False)
    b = p.b
    bus = RacingBus(b.mmio, toggle_link(b), races=races)
    driver = rebind(b, bus)
    if ok:
        driver.probe()
        assert bus.generation_reads == 2 * CONFIG_RETRY_LIMIT
        assert driver.link_up is (races % 2 == 0)  # each race toggled the link
        assert b.core.status & Status.DRIVER_OK
    else:
        with pytest.raises(DeviceConfigError) as info:
            driver.probe()
        assert info.value.rule == "config-generation-unstable"
        assert info.value.section == spec.CONFIG_SPACE
        assert bus.generation_reads == 2 * CONFIG_RETRY_LIMIT
        assert b.core.status & Status.FAILED and not b.core.status & Status.DRIVER_OK
    assert bus.raced == races
    assert b.core.config_generation == races


def test_a_generation_that_changes_on_every_read_fails_the_probe() -> None:
    p, _, _ = pair(start=False)
    b = p.b
    bus = UnstableGenerationBus(b.mmio)
    driver = rebind(b, bus)
    with pytest.raises(DeviceConfigError, match="ConfigGeneration changed") as info:
        driver.probe()
    assert info.value.rule == "config-generation-unstable"
    assert bus.generation_reads == 2 * CONFIG_RETRY_LIMIT
    assert b.core.status == (Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK
                             | Status.FAILED)
    assert driver.net_config is None and driver.rx_paths == []


def test_an_unstable_generation_at_runtime_marks_the_driver_broken() -> None:
    """After DRIVER_OK the same failure in the notification handler is recorded, not
    raised: the driver is broken (driver/net.py ``_config_changed``)."""
    p, _, _ = pair(start=False)
    b = p.b
    bus = RacingBus(b.mmio, toggle_link(b), races=CONFIG_RETRY_LIMIT, armed=False)
    driver = rebind(b, bus)
    p.a.start()
    driver.probe()
    bus.armed = True
    b.device.set_link(False)
    p.loop.run_until_idle(max_steps=10_000)
    assert driver.broken
    assert [e.rule for e in driver.errors] == ["config-generation-unstable"]
    assert bus.raced == CONFIG_RETRY_LIMIT
    # one change, then one per attempt of the first handler; each a notification
    assert b.core.config_generation == 1 + CONFIG_RETRY_LIMIT
    assert b.device.counters.config_interrupts == 1 + CONFIG_RETRY_LIMIT
    # the changes raised while the first handler ran are latched into one more run,
    # whose read is clean: an even number of toggles after "down" leaves it down
    assert driver.counters.config_interrupts == 2
    assert not driver.link_up and not b.device.link_up


# --- a link that is down carries nothing -------------------------------------------------------


def test_link_down_drops_both_ways_and_traffic_resumes_when_it_is_up() -> None:
    """B's link down: A's frames reach B's device and are dropped ("rx-link-down"), and
    what B transmits is dropped by B's device ("tx-link-down"), its chains still
    completed — 20 frames through an 8-entry ring, none refused. Up again: both ways
    flow."""
    p, got_b, got_a = pair(queue_size=8)
    a, b = p.a, p.b
    b.device.set_link(False)
    p.loop.run_until_idle(max_steps=1_000)
    assert not b.driver.link_up and a.driver.link_up
    send(p, a, [frame(n) for n in range(5)])
    assert got_b == []
    assert b.device.counters.drops == {"rx-link-down": 5}
    assert b.device.counters.rx_frames == 0
    assert a.device.counters.tx_frames == 5 and a.device.counters.drops == {}
    send(p, b, [frame(n, MAC_B, MAC_A) for n in range(20)])
    assert got_a == []
    assert b.device.counters.drops == {"rx-link-down": 5, "tx-link-down": 20}
    assert b.device.counters.tx_frames == 0 and b.device.counters.tx_chains == 20
    assert b.driver.counters.tx_frames == 20 and b.driver.counters.tx_ring_full == 0
    assert a.device.counters.rx_frames == 0

    b.device.set_link(True)
    p.loop.run_until_idle(max_steps=1_000)
    assert b.driver.link_up
    send(p, a, [frame(n) for n in range(3)])
    send(p, b, [frame(n, MAC_B, MAC_A) for n in range(3)])
    assert [rx.data for rx in got_b] == [frame(n) for n in range(3)]
    assert [rx.data for rx in got_a] == [frame(n, MAC_B, MAC_A) for n in range(3)]
    assert b.device.counters.drops == {"rx-link-down": 5, "tx-link-down": 20}
    assert (b.device.counters.rx_frames, b.device.counters.tx_frames) == (3, 3)
    assert b.driver.errors == [] and a.driver.errors == []


def test_link_down_drops_without_status_negotiated_too() -> None:
    """The drops do not depend on the driver having been told: without STATUS the
    driver still thinks the link is up, and the device drops anyway."""
    p, got_b, _ = pair(b_wants=NO_STATUS)
    p.b.device.set_link(False)
    p.loop.run_until_idle(max_steps=1_000)
    assert p.b.driver.link_up
    send(p, p.a, [frame(n) for n in range(4)])
    send(p, p.b, [frame(n, MAC_B, MAC_A) for n in range(2)])
    assert got_b == []
    assert p.b.device.counters.drops == {"rx-link-down": 4, "tx-link-down": 2}
    p.b.device.set_link(True)
    send(p, p.a, [frame(9)])
    assert [rx.data for rx in got_b] == [frame(9)]


def test_spec_sections_cited_exist() -> None:
    assert (spec.CONFIG_SPACE.number, spec.NET_CONFIG.number, spec.MMIO_REGISTERS.number) == (
        "2.5", "5.1.4", "4.2.2")
