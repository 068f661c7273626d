"""Arbitrary control commands through the real control virtqueue (virtio-v1.2 §5.1.6.5;
NOTF_COAL virtio-v1.3 §5.1.6.5.9), with every control feature negotiated: whatever the
class, command and data, the device answers VIRTIO_NET_OK or VIRTIO_NET_ERR — it never
raises, never sets DEVICE_NEEDS_RESET (§2.1.2: a malformed command is the driver's fault
but not a broken ring), every ERR leaves one conformance monitor record — and afterwards
frames still flow."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driver.net import CONTROL_FEATURES, DEFAULT_WANTED, DriverConfig
from emulator.net.device import NetDeviceConfig
from stack.device import RxFrame
from stack.wire.ethernet import EthernetHeader
from testbench.host import HostConfig, make_pair
from testbench.loop import EventLoop
from testbench.packets import DST_MAC, SRC_MAC
from virtio.constants import HashType, Status
from virtio.ctrl import (
    COMMAND_FEATURE,
    AnnounceCmd,
    CtrlClass,
    HashConfig,
    MacCmd,
    MacTable,
    MqCmd,
    NotfCoal,
    NotfCoalCmd,
    OffloadsCmd,
    RssConfig,
    RxCmd,
    VlanCmd,
    VqNotfCoal,
    encode_coal_vq_get,
    encode_rx_mode,
)

MIB = 1 << 20
STEPS = 100_000
PAIRS = 2
"""The device has two queue pairs and the driver sets both up, so any queue a command
can steer to (VQ_PAIRS_SET, RSS) has buffers."""

fuzz_settings = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

macs = st.binary(min_size=6, max_size=6)
le16 = st.integers(0, 0xFFFF).map(lambda v: v.to_bytes(2, "little"))
coal = st.builds(NotfCoal, st.integers(0, 64), st.integers(0, 5000))
rss = st.builds(
    lambda types, table, unclassified, max_tx, key: RssConfig(
        HashType(types), tuple(table), unclassified, max_tx, key).emit(),
    st.integers(0, 0x1FF), st.lists(st.integers(0, 3), min_size=1, max_size=8),
    st.integers(0, 3), st.integers(0, 3), st.binary(max_size=48))
hash_config = st.builds(lambda types, key: HashConfig(HashType(types), key).emit(),
                        st.integers(0, 0x1FF), st.binary(max_size=48))
mac_table = st.builds(
    lambda u, m: MacTable(tuple(u), tuple(m)).emit(),
    st.lists(macs, max_size=4), st.lists(macs, max_size=4))

rx_mode = st.builds(encode_rx_mode, st.booleans())
WELL_FORMED: dict[tuple[int, int], st.SearchStrategy[bytes]] = {
    **{(CtrlClass.RX, rx): rx_mode for rx in RxCmd},
    (CtrlClass.MAC, MacCmd.TABLE_SET): mac_table,
    (CtrlClass.MAC, MacCmd.ADDR_SET): macs,
    **{(CtrlClass.VLAN, vlan): st.integers(0, 4200).map(lambda v: v.to_bytes(2, "little"))
       for vlan in VlanCmd},
    (CtrlClass.ANNOUNCE, AnnounceCmd.ACK): st.just(b""),
    (CtrlClass.MQ, MqCmd.VQ_PAIRS_SET): st.integers(0, 3).map(lambda v: v.to_bytes(2, "little")),
    (CtrlClass.MQ, MqCmd.RSS_CONFIG): rss,
    (CtrlClass.MQ, MqCmd.HASH_CONFIG): hash_config,
    (CtrlClass.GUEST_OFFLOADS, OffloadsCmd.SET):
        st.integers(0, 0xFFFF).map(lambda v: v.to_bytes(8, "little")),
    (CtrlClass.NOTF_COAL, NotfCoalCmd.TX_SET): coal.map(NotfCoal.emit),
    (CtrlClass.NOTF_COAL, NotfCoalCmd.RX_SET): coal.map(NotfCoal.emit),
    (CtrlClass.NOTF_COAL, NotfCoalCmd.VQ_SET):
        st.builds(VqNotfCoal, st.integers(0, 5), coal).map(VqNotfCoal.emit),
    (CtrlClass.NOTF_COAL, NotfCoalCmd.VQ_GET): st.integers(0, 5).map(encode_coal_vq_get),
}
"""Data of the right shape for each defined command, so that many commands
get past the length checks and reach the executor's semantic rules or succeed."""
any_data = st.one_of(st.binary(max_size=600), st.sampled_from([b"", b"\x00", b"\x01"]),
                     le16, mac_table, rss)
defined = st.sampled_from(sorted(COMMAND_FEATURE))


@st.composite
def commands(draw: st.DrawFn) -> tuple[int, int, bytes]:
    """(class, command, data): a defined command with data of its class's shape, a
    defined command with any data, or any class and command at all."""
    kind = draw(st.integers(0, 2))
    if kind == 2:
        return draw(st.integers(0, 255)), draw(st.integers(0, 255)), draw(any_data)
    cls, cmd = draw(defined)
    data = draw(WELL_FORMED[cls, cmd] if kind == 0 else any_data)
    return cls, cmd, data


@fuzz_settings
@given(batch=st.lists(commands(), min_size=1, max_size=4))
def test_any_command_is_answered_ok_or_err_and_frames_still_flow(
    batch: list[tuple[int, int, bytes]],
) -> None:
    p = make_pair(
        EventLoop(),
        a=HostConfig("a", SRC_MAC, 4 * MIB),
        b=HostConfig("b", DST_MAC, 8 * MIB, NetDeviceConfig(max_queue_pairs=PAIRS),
                     DriverConfig(wanted=DEFAULT_WANTED | CONTROL_FEATURES, queue_pairs=PAIRS)),
    )
    host, drv, dev = p.b, p.b.driver, p.b.device
    assert drv.negotiated >= CONTROL_FEATURES
    got: list[RxFrame] = []
    host.on_frames = got.extend
    monitor = host.monitor
    assert monitor.records == []

    for cls, cmd, data in batch:
        records = len(monitor.records)
        sent, errors = dev.counters.ctrl_commands, dev.counters.ctrl_errors
        ok = drv.control_command(cls, cmd, data)  # must not raise
        assert drv.errors == [] and not drv.broken
        assert not host.core.status & Status.DEVICE_NEEDS_RESET
        assert dev.counters.ctrl_commands == sent + 1
        if ok:
            assert dev.counters.ctrl_errors == errors
            assert len(monitor.records) == records
        else:
            assert dev.counters.ctrl_errors == errors + 1
            (rec,) = monitor.records[records:]
            assert (rec.who, rec.action) == ("driver", "refused")
            assert rec.rule.startswith("ctrl-") and rec.reference.startswith("virtio-v1.")
        p.loop.run_until_idle(max_steps=STEPS)

    assert drv.counters.ctrl_commands == dev.counters.ctrl_commands
    assert drv.counters.ctrl_errors == dev.counters.ctrl_errors
    assert dev.counters.ctrl_errors == sum(r.action == "refused" for r in monitor.records)

    # the device still delivers: promiscuous on, a frame to its current MAC
    assert drv.set_rx_mode(RxCmd.PROMISC, True)
    mac = drv.transport.read_config_bytes(0, 6)
    assert mac == dev.mac
    frame = EthernetHeader(mac, SRC_MAC, 0x88B5).emit() + bytes(46)
    assert dev.receive(frame)
    p.loop.run_until_idle(max_steps=STEPS)
    assert [r.data for r in got] == [frame]
    assert drv.errors == []
    assert not host.core.status & Status.DEVICE_NEEDS_RESET
