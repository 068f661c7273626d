"""The control virtqueue end to end (virtio-v1.2 §5.1.6.5 and its subsections; notification
coalescing is virtio-v1.3 §5.1.6.5.9): the driver's typed commands go through the real
control queue in guest memory to the device, the device acks them, and the effect is seen
where it matters — frames from host A over the wire (or fed straight into host B's device)
delivered or dropped with the exact reason, config space, interrupts, queue selection and
receive coalescing. Then every refusal: the exact ack, counters on both sides, and one
conformance monitor record with the executor's rule and the section it cites.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

import pytest

from driver.net import CONTROL_FEATURES, DEFAULT_WANTED, RSS_KEY, DriverConfig
from emulator.monitor import Record
from emulator.net.device import NetDeviceConfig
from emulator.offload import segment
from emulator.profiles import STRICT
from stack.device import RxFrame, TxMeta
from stack.wire.ethernet import BROADCAST, EthernetHeader, EtherType
from stack.wire.ipv4 import FLAG_DF, IpProtocol, Ipv4Header
from stack.wire.tcp import TcpFlags, TcpHeader
from testbench.host import HostConfig, Pair, make_pair
from testbench.loop import EventLoop
from testbench.packets import DST_MAC, SRC_MAC, Seed, tcp_packet, udp_packet
from virtio import spec
from virtio.constants import FeatureBit as F
from virtio.constants import HashReport, HashType, NetStatus, Status
from virtio.ctrl import (
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
    encode_mac,
    encode_offloads,
    encode_rx_mode,
    encode_vlan,
    encode_vq_pairs,
)
from virtio.features import FeatureSet

MIB = 1 << 20
MAC_A = SRC_MAC  # 52:54:00:00:00:01
MAC_B = DST_MAC  # 52:54:00:00:00:02 (testbench.packets addresses its frames to B)
NEW_MAC = bytes.fromhex("525400000042")
UC_TABLE = bytes.fromhex("525400000077")
UC_OTHER = bytes.fromhex("525400000099")
MC_TABLE = bytes.fromhex("01005e000001")
MC_OTHER = bytes.fromhex("01005e000002")
KEY = bytes(range(40))

CTRL_Q = 2
"""controlq without MQ/RSS negotiated (§5.1.2)."""
STEPS = 200_000
"""Bound on every run of the event loop."""

ALL_CONTROL = DEFAULT_WANTED | CONTROL_FEATURES
GRO = DEFAULT_WANTED.with_(F.GUEST_CSUM, F.GUEST_TSO4, F.GUEST_TSO6)


def make(
    wanted: FeatureSet = DEFAULT_WANTED,
    *,
    device: NetDeviceConfig | None = None,
    queue_pairs: int = 1,
    memory: int = 8 * MIB,
) -> tuple[Pair, list[RxFrame]]:
    """Host A (default driver) ↔ wire ↔ host B (``wanted``); frames B's driver hands up
    are collected in the returned list."""
    dev = device or NetDeviceConfig()
    p = make_pair(
        EventLoop(),
        a=HostConfig("a", MAC_A, 16 * MIB, NetDeviceConfig()),
        b=HostConfig("b", MAC_B, memory, dev, DriverConfig(wanted=wanted, queue_pairs=queue_pairs)),
    )
    got: list[RxFrame] = []
    p.b.on_frames = got.extend
    return p, got


def eth(dst: bytes, tag: int = 0, *, vlan: int | None = None, size: int = 60) -> bytes:
    """A plain Ethernet frame from A to ``dst`` (local experimental ethertype 0x88b5); the
    first payload byte ``tag`` tells frames apart."""
    header = EthernetHeader(dst, MAC_A, 0x88B5, vlan).emit()
    return header + bytes((tag,)) + bytes(size - len(header) - 1)


def send_from_a(p: Pair, frames: Sequence[bytes]) -> None:
    for f in frames:
        assert p.a.driver.transmit(f)
    p.a.driver.flush()
    p.loop.run_until_idle(max_steps=STEPS)


def refusal(p: Pair) -> Record:
    """The one monitor record of host B, a refused control command."""
    (rec,) = p.b.monitor.records
    assert (rec.who, rec.action) == ("driver", "refused")
    assert rec.descriptor is not None
    return rec


def ctrl_counts(p: Pair) -> tuple[int, int, int, int]:
    """(device commands, device errors, driver commands, driver errors)."""
    dev, drv = p.b.device.counters, p.b.driver.counters
    return dev.ctrl_commands, dev.ctrl_errors, drv.ctrl_commands, drv.ctrl_errors


# --- RX modes and the MAC table, §5.1.6.5.1 / §5.1.6.5.2 ------------------------------------

DESTS = {
    "own": MAC_B, "uc-table": UC_TABLE, "uc-other": UC_OTHER,
    "mc-table": MC_TABLE, "mc-other": MC_OTHER, "bcast": BROADCAST,
}
ALL_DESTS = list(DESTS)
FILTERED = ["own", "uc-table", "mc-table", "bcast"]
OFF = (RxCmd.PROMISC, False)


@pytest.mark.parametrize(
    ("modes", "delivered", "drops"),
    [
        pytest.param([], ALL_DESTS, {}, id="promiscuous-at-reset"),
        pytest.param([OFF], FILTERED,
                     {"rx-filter-unicast": 1, "rx-filter-multicast": 1}, id="promisc-off"),
        pytest.param([OFF, (RxCmd.ALLMULTI, True)],
                     ["own", "uc-table", "mc-table", "mc-other", "bcast"],
                     {"rx-filter-unicast": 1}, id="allmulti"),
        pytest.param([OFF, (RxCmd.ALLUNI, True)],
                     ["own", "uc-table", "uc-other", "mc-table", "bcast"],
                     {"rx-filter-multicast": 1}, id="alluni"),
        pytest.param([OFF, (RxCmd.NOMULTI, True)], ["own", "uc-table", "bcast"],
                     {"rx-filter-unicast": 1, "rx-filter-multicast": 2}, id="nomulti"),
        pytest.param([OFF, (RxCmd.ALLMULTI, True), (RxCmd.NOMULTI, True)],
                     ["own", "uc-table", "bcast"],
                     {"rx-filter-unicast": 1, "rx-filter-multicast": 2},
                     id="nomulti-beats-allmulti"),
        pytest.param([OFF, (RxCmd.NOUNI, True)], ["mc-table", "bcast"],
                     {"rx-filter-unicast": 3, "rx-filter-multicast": 1}, id="nouni"),
        pytest.param([OFF, (RxCmd.ALLUNI, True), (RxCmd.NOUNI, True)], ["mc-table", "bcast"],
                     {"rx-filter-unicast": 3, "rx-filter-multicast": 1},
                     id="nouni-beats-alluni-and-own-mac"),
        pytest.param([OFF, (RxCmd.NOBCAST, True)], ["own", "uc-table", "mc-table"],
                     {"rx-filter-unicast": 1, "rx-filter-multicast": 1,
                      "rx-filter-broadcast": 1}, id="nobcast"),
        pytest.param([OFF, (RxCmd.ALLMULTI, True), (RxCmd.NOBCAST, True)],
                     ["own", "uc-table", "mc-table", "mc-other"],
                     {"rx-filter-unicast": 1, "rx-filter-broadcast": 1},
                     id="nobcast-beats-allmulti"),
        pytest.param([(RxCmd.NOUNI, True), (RxCmd.NOMULTI, True), (RxCmd.NOBCAST, True)],
                     ALL_DESTS, {}, id="promisc-wins-over-every-no-mode"),
        pytest.param([OFF, (RxCmd.NOBCAST, True), (RxCmd.NOBCAST, False)], FILTERED,
                     {"rx-filter-unicast": 1, "rx-filter-multicast": 1},
                     id="mode-switched-back-off"),
    ],
)
def test_rx_modes_filter_frames_from_the_wire(
    modes: list[tuple[RxCmd, bool]], delivered: list[str], drops: dict[str, int]
) -> None:
    """§5.1.6.5.1 (PROMISC/ALLMULTI need CTRL_RX, the other four CTRL_RX_EXTRA,
    §5.1.6.5.1.2) with a MAC table of one unicast and one multicast address
    (§5.1.6.5.2): one frame from A to each kind of destination; exactly the expected ones
    reach B's driver, in order, and every other one is a drop with its reason."""
    p, got = make(DEFAULT_WANTED.with_(F.CTRL_RX_EXTRA))
    assert p.b.driver.set_mac_table((UC_TABLE,), (MC_TABLE,))
    for cmd, on in modes:
        assert p.b.driver.set_rx_mode(cmd, on)
    n = 1 + len(modes)
    assert ctrl_counts(p) == (n, 0, n, 0)
    frames = {name: eth(dst, i) for i, (name, dst) in enumerate(DESTS.items())}
    send_from_a(p, list(frames.values()))
    assert [r.data for r in got] == [frames[name] for name in delivered]
    assert p.b.device.counters.drops == drops
    assert p.b.device.counters.rx_frames == len(delivered)
    assert p.b.monitor.records == [] and p.b.driver.errors == []


def test_mac_table_set_replaces_the_table() -> None:
    """§5.1.6.5.2: VIRTIO_NET_CTRL_MAC_TABLE_SET replaces both tables; §5.1.6.5.2.1: the
    table is empty after reset and the device drops a unicast frame that matches neither
    its MAC nor the table (SHOULD)."""
    p, got = make()
    assert p.b.driver.set_rx_mode(RxCmd.PROMISC, False)
    uc2, mc2 = bytes.fromhex("525400000078"), bytes.fromhex("01005e000003")
    probes = [eth(UC_TABLE, 1), eth(uc2, 2), eth(MC_TABLE, 3), eth(mc2, 4)]

    send_from_a(p, probes)  # empty table: only the own MAC would pass
    assert got == []
    assert p.b.device.counters.drops == {"rx-filter-unicast": 2, "rx-filter-multicast": 2}

    assert p.b.driver.set_mac_table((UC_TABLE,), (MC_TABLE,))
    send_from_a(p, probes)
    assert [r.data for r in got] == [probes[0], probes[2]]

    got.clear()
    assert p.b.driver.set_mac_table((uc2,), (mc2,))  # the old entries are gone
    send_from_a(p, probes)
    assert [r.data for r in got] == [probes[1], probes[3]]

    got.clear()
    assert p.b.driver.set_mac_table((), ())
    send_from_a(p, probes)
    assert got == []
    # 2 + 1 + 1 + 2 of each kind over the four rounds
    assert p.b.device.counters.drops == {"rx-filter-unicast": 6, "rx-filter-multicast": 6}
    assert ctrl_counts(p) == (4, 0, 4, 0)


# --- MAC_ADDR_SET, §5.1.6.5.2 ----------------------------------------------------------------


def test_mac_addr_set_changes_config_mac_and_the_filter() -> None:
    """§5.1.6.5.2.1: with CTRL_MAC_ADDR the device updates ``mac`` in the configuration
    space before it consumes VIRTIO_NET_CTRL_MAC_ADDR_SET; the filter then accepts the
    new address and, without promiscuous mode, drops frames to the old one. A reset
    brings back the configured address."""
    p, got = make()
    core, gen = p.b.core, p.b.core.config_generation
    assert p.b.driver.set_rx_mode(RxCmd.PROMISC, False)
    assert p.b.driver.set_mac_address(NEW_MAC)
    assert p.b.driver.mac == NEW_MAC
    assert p.b.device.mac == NEW_MAC
    assert p.b.driver.transport.read_config_bytes(0, 6) == NEW_MAC
    assert core.config_generation != gen  # §2.5: the driver sees the change
    assert p.b.device.counters.config_interrupts == 0  # no notification for its own change

    to_new, to_old = eth(NEW_MAC, 1), eth(MAC_B, 2)
    send_from_a(p, [to_new, to_old])
    assert [r.data for r in got] == [to_new]
    assert p.b.device.counters.drops == {"rx-filter-unicast": 1}

    got.clear()
    assert p.b.driver.set_rx_mode(RxCmd.PROMISC, True)
    send_from_a(p, [to_new, to_old])
    assert [r.data for r in got] == [to_new, to_old]

    assert p.b.driver.set_mac_address(NEW_MAC)  # the same address again: OK, no change
    assert ctrl_counts(p) == (4, 0, 4, 0)

    p.b.driver.probe()  # reset (§2.4): the configured MAC is back
    assert p.b.device.mac == MAC_B and p.b.driver.mac == MAC_B
    assert p.b.driver.transport.read_config_bytes(0, 6) == MAC_B
    assert p.b.monitor.records == []


# --- VLAN filtering, §5.1.6.5.3 ---------------------------------------------------------------


def test_vlan_add_and_del_filter_tagged_frames() -> None:
    """§5.1.6.5.3 with CTRL_VLAN: the VLAN table starts empty, so every tagged frame is
    dropped (``rx-filter-vlan``) until the driver adds its VIDs; untagged frames are not
    affected; VLAN_DEL takes a VID out again."""
    p, got = make(DEFAULT_WANTED.with_(F.CTRL_VLAN))
    assert p.b.driver.set_rx_mode(RxCmd.PROMISC, False)
    untagged, v10, v20 = eth(MAC_B, 0), eth(MAC_B, 1, vlan=10), eth(MAC_B, 2, vlan=20)
    v10_prio = eth(MAC_B, 3, vlan=0xE000 | 10)  # PCP 7: the VID is the low 12 bits

    send_from_a(p, [untagged, v10, v20])
    assert [r.data for r in got] == [untagged]
    assert p.b.device.counters.drops == {"rx-filter-vlan": 2}

    got.clear()
    assert p.b.driver.vlan_add(10)
    assert p.b.driver.vlan_add(4095)
    send_from_a(p, [untagged, v10, v20, v10_prio])
    assert [r.data for r in got] == [untagged, v10, v10_prio]
    assert p.b.device.counters.drops == {"rx-filter-vlan": 3}

    got.clear()
    assert p.b.driver.vlan_del(10)
    assert p.b.driver.vlan_del(10)  # not in the table: OK, nothing changes
    send_from_a(p, [untagged, v10, v20])
    assert [r.data for r in got] == [untagged]
    assert p.b.device.counters.drops == {"rx-filter-vlan": 5}
    assert p.b.device.control is not None
    assert p.b.device.control.filter.vlan_ids() == [4095]
    assert ctrl_counts(p) == (5, 0, 5, 0)


def test_without_ctrl_vlan_tagged_frames_pass_the_filter() -> None:
    """Without CTRL_VLAN there is no VLAN filter (QEMU fills its table): tagged frames to
    B's MAC pass with promiscuous mode off."""
    p, got = make()
    assert F.CTRL_VLAN not in p.b.driver.negotiated
    assert p.b.driver.set_rx_mode(RxCmd.PROMISC, False)
    frames = [eth(MAC_B, 1, vlan=10), eth(MAC_B, 2, vlan=4000)]
    send_from_a(p, frames)
    assert [r.data for r in got] == frames
    assert p.b.device.counters.drops == {}


# --- ANNOUNCE, §5.1.6.5.4 ---------------------------------------------------------------------


def test_announce_round_trip() -> None:
    """§5.1.6.5.4: the device sets VIRTIO_NET_S_ANNOUNCE and sends a configuration change
    notification; the driver sends its gratuitous packet (``on_announce``) and then
    VIRTIO_NET_CTRL_ANNOUNCE_ACK (§5.1.6.5.4.1), after which the device clears the bit
    (§5.1.6.5.4.2)."""
    p, _ = make()
    seen_by_a: list[RxFrame] = []
    p.a.on_frames = seen_by_a.extend
    gratuitous = eth(BROADCAST, 7)
    calls: list[tuple[bool, int]] = []

    def announce() -> None:
        # still pending (the ack comes after the announcement), still no ack sent
        calls.append((p.b.device.announce_pending, p.b.device.counters.ctrl_commands))
        assert p.b.driver.transmit(gratuitous)
        p.b.driver.flush()

    p.b.driver.on_announce = announce
    status = p.b.driver.transport
    assert status.read_config(6, 2) == NetStatus.LINK_UP

    assert p.b.device.announce()
    assert status.read_config(6, 2) == NetStatus.LINK_UP | NetStatus.ANNOUNCE
    assert p.b.device.counters.config_interrupts == 1
    assert p.b.device.counters.announces == 1
    assert calls == []  # the driver runs on the loop

    p.loop.run_until_idle(max_steps=STEPS)
    assert calls == [(True, 0)]
    assert status.read_config(6, 2) == NetStatus.LINK_UP
    assert not p.b.device.announce_pending
    assert p.b.driver.counters.config_interrupts == 1
    assert p.b.driver.counters.announces == 1
    assert ctrl_counts(p) == (1, 0, 1, 0)
    assert p.b.device.control is not None and p.b.device.control.announces_acked == 1
    assert p.b.device.counters.config_interrupts == 1  # clearing the bit notifies nobody
    assert [r.data for r in seen_by_a] == [gratuitous]

    assert p.b.device.announce()  # a second announcement: the same round again
    p.loop.run_until_idle(max_steps=STEPS)
    assert (p.b.device.counters.announces, p.b.driver.counters.announces) == (2, 2)
    assert len(calls) == 2 and len(seen_by_a) == 2
    assert p.b.monitor.records == []


def test_announce_needs_guest_announce() -> None:
    """Without GUEST_ANNOUNCE the device cannot ask (no bit, no notification) and an
    ANNOUNCE_ACK sent anyway is refused (§5.1.6.5.4.1)."""
    p, _ = make(DEFAULT_WANTED.without(F.GUEST_ANNOUNCE))
    assert not p.b.device.announce()
    assert p.b.driver.transport.read_config(6, 2) == NetStatus.LINK_UP
    assert p.b.device.counters.config_interrupts == 0
    with pytest.raises(ValueError, match="not negotiated"):
        p.b.driver.announce_ack()
    assert not p.b.driver.control_command(CtrlClass.ANNOUNCE, AnnounceCmd.ACK)
    rec = refusal(p)
    assert (rec.rule, rec.reference) == ("ctrl-not-negotiated", str(spec.NET_CTRL_ANNOUNCE_DRIVER))


# --- MQ_VQ_PAIRS_SET, §5.1.6.5.5 / §5.1.6.5.6 ------------------------------------------------


def swap(frame: bytes) -> bytes:
    """The reply direction of an IPv4/TCP frame: MACs, addresses and ports swapped (the
    checksums stay valid: one's complement sums do not care about order)."""
    return (frame[6:12] + frame[0:6] + frame[12:26] + frame[30:34] + frame[26:30]
            + frame[36:38] + frame[34:36] + frame[38:])


def test_vq_pairs_set_enables_queues_and_steers_flows() -> None:
    """A device with max_virtqueue_pairs 4 and a driver that wants 3: the control queue is
    virtqueue 8 (§5.1.2), the driver sets up three pairs and sends
    VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET 3 after DRIVER_OK (§5.1.6.5.6.1). Automatic steering
    then puts a flow's packets on the receive queue of the pair whose transmit queue last
    sent on it (§5.1.6.5.6); after VQ_PAIRS_SET 1 everything is on receiveq1
    (§5.1.6.5.6.2)."""
    p, got = make(device=NetDeviceConfig(max_queue_pairs=4), queue_pairs=3)
    drv, dev = p.b.driver, p.b.device
    assert dev.ctrl_queue == 8 and drv.control is not None and drv.control.queue.index == 8
    assert len(drv.tx_paths) == 3 and drv.queue_pairs == 3
    assert dev.control is not None and dev.control.queue_pairs == 3
    assert (dev.steering.mode, dev.steering.pairs) == ("auto", 3)
    assert ctrl_counts(p) == (1, 0, 1, 0)
    assert p.b.monitor.records == []

    replies = [tcp_packet(100, mss=None, seed=Seed.COMPLETE, sport=41000 + i).frame
               for i in range(3)]
    for pair, reply in enumerate(replies):  # B opens flow i on transmitq(i+1)
        assert drv.transmit(swap(reply), queue=pair)
    drv.flush()
    p.loop.run_until_idle(max_steps=STEPS)
    assert dev.counters.tx_queue_packets == {0: 1, 1: 1, 2: 1}
    for reply in replies:
        assert dev.receive(reply)
    p.loop.run_until_idle(max_steps=STEPS)
    assert {r.data: r.queue for r in got} == {replies[0]: 0, replies[1]: 1, replies[2]: 2}
    assert dev.counters.rx_queue_packets == {0: 1, 1: 1, 2: 1}

    got.clear()
    assert drv.set_queue_pairs(1)
    assert drv.queue_pairs == 1 and dev.control.queue_pairs == 1
    assert dev.steering.mode == "single"
    for reply in replies:
        assert dev.receive(reply)
    p.loop.run_until_idle(max_steps=STEPS)
    assert [r.queue for r in got] == [0, 0, 0]
    assert dev.counters.rx_queue_packets == {0: 4, 1: 1, 2: 1}
    assert ctrl_counts(p) == (2, 0, 2, 0)
    assert p.b.monitor.records == []


def test_multiqueue_probe_records_no_violation() -> None:
    """§5.1.6.5.6.1: the driver sets up pairs 1..3 before DRIVER_OK (§5.1.5) but
    transmits on them only after VQ_PAIRS_SET; the probe itself breaks no rule. The
    device's look at the TX queues at DRIVER_OK (for chains queued before it) must not
    count as the driver using transmitq2/3 (regression: it recorded
    tx-queue-not-enabled for the idle queues)."""
    p, _ = make(device=NetDeviceConfig(max_queue_pairs=4), queue_pairs=3)
    assert p.b.device.counters.tx_chains == 0  # nothing was ever transmitted
    assert p.b.monitor.records == []


@pytest.mark.parametrize("pairs", [0, 5, 0x8000, 0xFFFF])
def test_vq_pairs_set_out_of_range_is_refused(pairs: int) -> None:
    """§5.1.6.5.6.1: the driver MUST NOT request 0 pairs or more than
    max_virtqueue_pairs (4 here)."""
    p, _ = make(device=NetDeviceConfig(max_queue_pairs=4), queue_pairs=2)
    assert p.b.monitor.records == []
    before = ctrl_counts(p)
    assert not p.b.driver.control_command(CtrlClass.MQ, MqCmd.VQ_PAIRS_SET,
                                          encode_vq_pairs(pairs))
    assert ctrl_counts(p) == (before[0] + 1, 1, before[2] + 1, 1)
    rec = refusal(p)
    assert (rec.rule, rec.reference, rec.queue) == (
        "ctrl-vq-pairs-out-of-range", str(spec.NET_MQ_STEERING_DRIVER), 8)
    assert p.b.device.control is not None and p.b.device.control.queue_pairs == 2
    assert p.b.driver.queue_pairs == 2


# --- RSS_CONFIG and HASH_CONFIG, §5.1.6.5.7 / §5.1.6.5.6.4 ------------------------------------

V4_ROWS = [
    ("66.9.149.187", 2794, "161.142.100.80", 1766, 0x323E8FC2, 0x51CCC178),
    ("199.92.111.2", 14230, "65.69.140.83", 4739, 0xD718262A, 0xC626B0EA),
    ("38.27.205.30", 48228, "209.142.163.6", 2217, 0x82989176, 0xAFC7327F),
]
"""(source, sport, destination, dport, IPv4 hash, IPv4+TCP hash) from Microsoft's RSS
verification suite ("Verifying the RSS Hash Calculation"; the Intel 82599 datasheet
§7.1.2.8.3 table), under the 40-byte key the driver programs by default."""


def v4_tcp(row: tuple[str, int, str, int, int, int]) -> bytes:
    src, dst = ipaddress.ip_address(row[0]).packed, ipaddress.ip_address(row[2]).packed
    tcp = TcpHeader(row[1], row[3], 1000, 0, TcpFlags.ACK, 512).emit() + b"rss"
    ip = Ipv4Header(src, dst, IpProtocol.TCP, 20 + len(tcp), flags=FLAG_DF).emit()
    return EthernetHeader(MAC_B, MAC_A, EtherType.IPV4).emit() + ip + tcp


def deliver(p: Pair, got: list[RxFrame], frames: list[bytes]) -> list[tuple[int, int | None, int | None]]:
    """Feed ``frames`` to B's device; (queue, hash_value, hash_report) of each, in order."""
    got.clear()
    for f in frames:
        assert p.b.device.receive(f)
    p.loop.run_until_idle(max_steps=STEPS)
    by_data = {r.data: (r.queue, r.hash_value, r.hash_report) for r in got}
    assert len(got) == len(frames) == len(by_data)
    return [by_data[f] for f in frames]


def test_rss_config_steers_by_the_indirection_table_and_reports_the_hash() -> None:
    """§5.1.6.5.7.1 RSS_CONFIG: the driver (queue_pairs 4 on a 4-pair device) programs RSS
    at probe; then a table of 8 and unclassified_queue 1: each IPv4/TCP frame of the
    verification suite lands on ``table[hash & 7]`` with the published hash in its header
    (HASH_REPORT, §5.1.6.4.4), a frame with no hash on the unclassified queue
    (§5.1.6.5.7.3). max_tx_vq is the driver's new number of transmit queues. With only
    IPV4 enabled the address-only hash is used. VQ_PAIRS_SET then goes back to automatic
    steering (§5.1.6.5.5: the last command decides)."""
    published_key = bytes.fromhex(
        "6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa")
    assert published_key == RSS_KEY
    p, got = make(DEFAULT_WANTED.with_(F.RSS, F.HASH_REPORT),
                  device=NetDeviceConfig(max_queue_pairs=4), queue_pairs=4)
    drv, dev = p.b.driver, p.b.device
    assert ctrl_counts(p) == (1, 0, 1, 0)  # the probe's RSS_CONFIG
    assert dev.steering.mode == "rss" and drv.queue_pairs == 4
    assert p.b.monitor.records == []

    frames = [v4_tcp(row) for row in V4_ROWS]
    unclassified = eth(MAC_B, 9)
    table = (0, 1, 2, 3, 3, 2, 1, 3)
    assert drv.set_rss(RssConfig(HashType.IPV4 | HashType.TCPV4, table, 1, 2, RSS_KEY))
    assert drv.queue_pairs == 2
    assert dev.control is not None and dev.control.queue_pairs == 2
    assert deliver(p, got, [*frames, unclassified]) == [
        *((table[row[5] & 7], row[5], HashReport.TCPV4) for row in V4_ROWS),
        (1, None, HashReport.NONE),
    ]

    assert drv.set_rss(RssConfig(HashType.IPV4, table, 3, 4, RSS_KEY))
    assert deliver(p, got, [*frames, unclassified]) == [
        *((table[row[4] & 7], row[4], HashReport.IPV4) for row in V4_ROWS),
        (3, None, HashReport.NONE),
    ]

    assert drv.set_queue_pairs(4)
    assert dev.steering.mode == "auto" and dev.control.rss is None
    assert ctrl_counts(p) == (4, 0, 4, 0)
    assert p.b.monitor.records == []


def test_hash_config_sets_what_hash_reports_carry() -> None:
    """§5.1.6.5.6.4 HASH_CONFIG (HASH_REPORT without RSS): the driver enables every
    supported hash type at probe, so the verification suite's frames come with the
    published IPv4+TCP hash; then IPV4 only gives the address-only hash; then no types,
    no hash (§5.1.6.4.4: hash_report NONE). Steering is untouched: receiveq1."""
    p, got = make(DEFAULT_WANTED.with_(F.HASH_REPORT))
    drv, dev = p.b.driver, p.b.device
    assert drv.header_size == 20  # §5.1.6: the header grows by hash_value and hash_report
    assert ctrl_counts(p) == (1, 0, 1, 0)  # the probe's HASH_CONFIG
    frames = [v4_tcp(row) for row in V4_ROWS]
    assert deliver(p, got, frames) == [(0, row[5], HashReport.TCPV4) for row in V4_ROWS]

    assert drv.set_hash_config(HashConfig(HashType.IPV4 | HashType.UDPV4, RSS_KEY))
    assert deliver(p, got, frames) == [(0, row[4], HashReport.IPV4) for row in V4_ROWS]

    assert drv.set_hash_config(HashConfig(HashType(0), b""))
    assert deliver(p, got, frames) == [(0, None, HashReport.NONE)] * len(frames)
    assert dev.steering.mode == "single"
    assert ctrl_counts(p) == (3, 0, 3, 0)
    assert p.b.monitor.records == []


# --- GUEST_OFFLOADS_SET, §5.1.6.5.8 ---------------------------------------------------------


def send_tso(p: Pair, payload: int) -> None:
    pkt = tcp_packet(payload)
    assert p.a.driver.transmit(pkt.frame, TxMeta(1448, pkt.hdr.csum_start, pkt.hdr.csum_offset))
    p.a.driver.flush()
    p.loop.run_until_idle(max_steps=STEPS)


def plain(frames: list[RxFrame], mtu: int = 1500) -> bool:
    """No frame is a coalesced one: no segment size, none beyond mtu + 14 (§5.1.4.2)."""
    return all(r.segment_size is None and len(r.data) <= mtu + 14 for r in frames)


def test_guest_offloads_set_switches_coalescing_off_and_on() -> None:
    """§5.1.6.5.8.1: with GUEST_CSUM and GUEST_TSO4/6 negotiated the device coalesces a TSO
    burst into one packet; after VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET with GUEST_CSUM only,
    the driver never again gets a packet with a segment size or longer than the MTU plus
    the Ethernet header, but still DATA_VALID; switched back on, coalescing is back."""
    p, got = make(GRO, memory=32 * MIB)
    dev = p.b.device
    assert dev.guest_offloads == FeatureSet.of(F.GUEST_CSUM, F.GUEST_TSO4, F.GUEST_TSO6)
    send_tso(p, 64000)
    assert len(got) == 1 and got[0].segment_size == 1448

    got.clear()
    assert p.b.driver.set_guest_offloads(FeatureSet.of(F.GUEST_CSUM))
    assert dev.guest_offloads == FeatureSet.of(F.GUEST_CSUM)
    send_tso(p, 64000)
    send_tso(p, 20 * 1448)
    assert len(got) == 45 + 20
    assert plain(got) and all(r.csum_verified for r in got)
    assert (dev.counters.rx_coalesced, dev.counters.rx_resegmented) == (1, 0)

    got.clear()
    assert p.b.driver.set_guest_offloads(FeatureSet())  # not even checksum validation
    send_tso(p, 10 * 1448)
    assert len(got) == 10 and plain(got) and not any(r.csum_verified for r in got)

    got.clear()  # TSO without GUEST_CSUM in force: accepted, but nothing to coalesce with
    assert p.b.driver.set_guest_offloads(FeatureSet.of(F.GUEST_TSO4, F.GUEST_TSO6))
    send_tso(p, 10 * 1448)
    assert len(got) == 10 and plain(got) and not any(r.csum_verified for r in got)

    got.clear()
    assert p.b.driver.set_guest_offloads(FeatureSet.of(F.GUEST_CSUM, F.GUEST_TSO4))
    send_tso(p, 64000)
    assert len(got) == 1 and got[0].segment_size == 1448 and len(got[0].data) == 64054
    assert (dev.counters.rx_coalesced, dev.counters.rx_coalesced_segments) == (2, 90)
    assert ctrl_counts(p) == (4, 0, 4, 0)
    assert p.b.monitor.records == [] and p.b.driver.errors == []


def test_guest_offloads_set_while_segments_are_held_for_coalescing() -> None:
    """Segments are held in the coalescer (the flush window has not passed) when
    GUEST_OFFLOADS_SET switches TSO off: the device places what it holds *before* it
    executes and acks the command (emulator/net/device.py ``_control_command``: "nothing
    held may cross"), so the packet coalesced under the old offloads is on the used ring
    before the ack, and nothing placed after the ack is coalesced. None needs cutting
    back into segments (``rx_resegmented`` stays 0)."""
    p, got = make(GRO, memory=32 * MIB)
    dev = p.b.device
    pkt = tcp_packet(20 * 1448)
    wire = segment(pkt.frame, pkt.hdr, STRICT)
    assert len(wire) == 20
    for frame in wire[:10]:
        assert dev.receive(frame)
    assert dev.counters.rx_frames == 0  # held, the window still open

    assert p.b.driver.set_guest_offloads(FeatureSet.of(F.GUEST_CSUM))
    at_ack = (dev.counters.rx_frames, dev.counters.rx_coalesced,
              dev.counters.rx_coalesced_segments)
    assert at_ack == (1, 1, 10)  # placed before the ack, under the offloads then in force
    for frame in wire[10:]:
        assert dev.receive(frame)
    p.loop.run_until_idle(max_steps=STEPS)

    assert (dev.counters.rx_frames, dev.counters.rx_coalesced) == (11, 1)
    assert dev.counters.rx_resegmented == 0
    first, rest = got[0], got[1:]
    assert first.segment_size == 1448
    assert segment(first.data, pkt.hdr.with_(gso_size=1448), STRICT) == wire[:10]
    assert [r.data for r in rest] == wire[10:] and plain(rest)
    assert p.b.monitor.records == []


def test_guest_offloads_set_switches_uso_per_ip_version() -> None:
    """§5.1.6.5.8.1 with GUEST_USO4/6 (v1.3 adds them to the offloads bitmask): with
    GUEST_USO6 left on and GUEST_USO4 switched off, a USO burst over IPv4 arrives as plain
    datagrams and one over IPv6 still as one coalesced packet."""
    p, got = make(DEFAULT_WANTED.with_(F.GUEST_CSUM, F.GUEST_USO4, F.GUEST_USO6),
                  memory=32 * MIB)

    def send_uso(ipv6: bool) -> list[RxFrame]:
        got.clear()
        pkt = udp_packet(10 * 1400, ipv6=ipv6)
        assert p.a.driver.transmit(pkt.frame, TxMeta(1400, pkt.hdr.csum_start,
                                                     pkt.hdr.csum_offset))
        p.a.driver.flush()
        p.loop.run_until_idle(max_steps=STEPS)
        return list(got)

    assert [r.segment_size for r in send_uso(False)] == [1400]
    assert p.b.driver.set_guest_offloads(FeatureSet.of(F.GUEST_CSUM, F.GUEST_USO6))
    v4 = send_uso(False)
    # plain datagrams (whether they carry DATA_VALID is left open: §5.1.6.4.1 MAY; the
    # coalescer passes UDP of a disabled kind with flags 0, unlike TCP)
    assert len(v4) == 10 and plain(v4) and not any(r.csum_partial for r in v4)
    v6 = send_uso(True)
    assert [(r.segment_size, len(r.data)) for r in v6] == [(1400, 14 + 40 + 8 + 14000)]
    assert ctrl_counts(p) == (1, 0, 1, 0)
    assert p.b.monitor.records == []


def test_guest_offloads_set_of_an_offload_not_negotiated_is_refused() -> None:
    """§5.1.6.5.8.2: a driver MUST NOT enable an offload whose feature was not negotiated;
    the device refuses it and keeps the offloads in force."""
    p, _ = make(GRO, memory=32 * MIB)
    before = p.b.device.guest_offloads
    assert not p.b.driver.set_guest_offloads(FeatureSet.of(F.GUEST_CSUM, F.GUEST_UFO))
    rec = refusal(p)
    assert (rec.rule, rec.reference, rec.queue) == (
        "ctrl-offloads-not-negotiated", str(spec.NET_CTRL_OFFLOADS_DRIVER), CTRL_Q)
    assert p.b.device.guest_offloads == before
    assert ctrl_counts(p) == (1, 1, 1, 1)


# --- NOTF_COAL, virtio-v1.3 §5.1.6.5.9 -------------------------------------------------------


def test_rx_notification_coalescing_by_packets() -> None:
    """v1.3 §5.1.6.5.9 RX_SET max_packets 8, max_usecs 1000: a burst of 16 frames from A
    gives exactly two used buffer notifications on B (one per 8 packets)."""
    p, got = make()
    assert p.b.driver.set_notf_coal(rx=NotfCoal(8, 1000))
    p.loop.run_until_idle(max_steps=STEPS)  # the command's own completion settles
    dev, drv = p.b.device.counters, p.b.driver.counters
    base = (dev.interrupts, drv.interrupts, dev.interrupts_suppressed)
    send_from_a(p, [eth(MAC_B, i) for i in range(16)])
    assert len(got) == 16
    assert (dev.interrupts - base[0], drv.interrupts - base[1],
            dev.interrupts_suppressed - base[2]) == (2, 2, 0)


def test_rx_notification_coalescing_by_time() -> None:
    """v1.3 §5.1.6.5.9: fewer than max_packets frames are notified exactly max_usecs after
    the first of them (here 3 frames, max_packets 8, max_usecs 250: one notification at
    +250 µs of virtual time, not a nanosecond earlier)."""
    p, got = make()
    assert p.b.driver.set_notf_coal(rx=NotfCoal(8, 250))
    p.loop.run_until_idle(max_steps=STEPS)
    dev = p.b.device.counters
    base = dev.interrupts
    start = p.loop.now
    for i in range(3):
        assert p.b.device.receive(eth(MAC_B, i))
        p.loop.run_for(0)
    assert (dev.interrupts - base, len(got)) == (0, 0)
    p.loop.run_for(250_000 - 1)
    assert (dev.interrupts - base, len(got)) == (0, 0)
    p.loop.run_for(1)
    assert p.loop.now == start + 250_000
    assert (dev.interrupts - base, len(got)) == (1, 3)
    p.loop.run_until_idle(max_steps=STEPS)
    assert dev.interrupts - base == 1


def test_new_coalescing_parameters_notify_what_is_due() -> None:
    """v1.3 §5.1.6.5.9 "Notifications When Coalescing Parameters Change": frames held back
    under max_packets 8 are notified as soon as RX_SET 0/0 (notify every packet) is
    applied, without waiting for max_usecs."""
    p, got = make()
    assert p.b.driver.set_notf_coal(rx=NotfCoal(8, 1000))
    p.loop.run_until_idle(max_steps=STEPS)
    for i in range(3):
        assert p.b.device.receive(eth(MAC_B, i))
    p.loop.run_for(0)
    assert got == []
    now = p.loop.now
    assert p.b.driver.set_notf_coal(rx=NotfCoal(0, 0))
    p.loop.run_for(0)
    assert len(got) == 3 and p.loop.now == now
    assert p.b.device.receive(eth(MAC_B, 3))  # and every packet notifies again
    p.loop.run_for(0)
    assert len(got) == 4


def test_tx_notification_coalescing_by_time() -> None:
    """v1.3 §5.1.6.5.9 TX_SET: three transmitted frames, max_packets 8, max_usecs 500: the
    used buffer notification for them comes 500 µs later."""
    p, _ = make()
    assert p.b.driver.set_notf_coal(tx=NotfCoal(8, 500))
    p.loop.run_until_idle(max_steps=STEPS)
    dev = p.b.device.counters
    base, start = dev.interrupts, p.loop.now
    for i in range(3):
        assert p.b.driver.transmit(eth(MAC_A, i))
    p.b.driver.flush()
    p.loop.run_for(500_000 - 1)
    assert dev.tx_frames == 3 and dev.interrupts == base
    p.loop.run_for(1)
    assert p.loop.now == start + 500_000
    assert dev.interrupts == base + 1


# --- refusals: the exact rule for every kind of bad command ---------------------------------

BAD_COMMANDS = [
    # (wanted, class, command, data, rule, section)
    pytest.param(DEFAULT_WANTED, CtrlClass.RX, RxCmd.NOUNI, encode_rx_mode(True),
                 "ctrl-not-negotiated", spec.NET_CTRL_RX_DRIVER, id="nouni-without-rx-extra"),
    pytest.param(DEFAULT_WANTED.without(F.CTRL_RX), CtrlClass.RX, RxCmd.PROMISC,
                 encode_rx_mode(False), "ctrl-not-negotiated", spec.NET_CTRL_RX_DRIVER,
                 id="promisc-without-ctrl-rx"),
    pytest.param(DEFAULT_WANTED.without(F.CTRL_MAC_ADDR), CtrlClass.MAC, MacCmd.ADDR_SET,
                 encode_mac(NEW_MAC), "ctrl-not-negotiated", spec.NET_CTRL_MAC_DRIVER,
                 id="addr-set-without-ctrl-mac-addr"),
    pytest.param(DEFAULT_WANTED, CtrlClass.VLAN, VlanCmd.ADD, encode_vlan(10),
                 "ctrl-not-negotiated", spec.NET_CTRL_VLAN, id="vlan-without-ctrl-vlan"),
    pytest.param(DEFAULT_WANTED.without(F.MQ), CtrlClass.MQ, MqCmd.VQ_PAIRS_SET,
                 encode_vq_pairs(1), "ctrl-not-negotiated", spec.NET_MQ_STEERING_DRIVER,
                 id="vq-pairs-without-mq"),
    pytest.param(DEFAULT_WANTED, CtrlClass.MQ, MqCmd.RSS_CONFIG,
                 RssConfig(HashType.IPV4, (0,), 0, 1, KEY).emit(), "ctrl-not-negotiated",
                 spec.NET_RSS_DRIVER, id="rss-without-rss"),
    pytest.param(DEFAULT_WANTED, CtrlClass.MQ, MqCmd.HASH_CONFIG,
                 HashConfig(HashType.IPV4, KEY).emit(), "ctrl-not-negotiated",
                 spec.NET_MQ_HASH, id="hash-config-without-hash-report"),
    pytest.param(DEFAULT_WANTED.without(F.CTRL_GUEST_OFFLOADS), CtrlClass.GUEST_OFFLOADS,
                 OffloadsCmd.SET, encode_offloads(FeatureSet()), "ctrl-not-negotiated",
                 spec.NET_CTRL_OFFLOADS, id="offloads-without-ctrl-guest-offloads"),
    pytest.param(DEFAULT_WANTED.without(F.NOTF_COAL), CtrlClass.NOTF_COAL, NotfCoalCmd.RX_SET,
                 NotfCoal(8, 100).emit(), "ctrl-not-negotiated", spec.NET_NOTF_COAL_DRIVER,
                 id="notf-coal-without-notf-coal"),
    pytest.param(DEFAULT_WANTED, 7, 0, b"", "ctrl-unknown-class", spec.NET_CTRL,
                 id="class-7"),
    pytest.param(DEFAULT_WANTED, 255, 255, b"\x00", "ctrl-unknown-class", spec.NET_CTRL,
                 id="class-255"),
    pytest.param(DEFAULT_WANTED, CtrlClass.RX, 6, encode_rx_mode(True),
                 "ctrl-unknown-command", spec.NET_CTRL, id="rx-command-6"),
    pytest.param(DEFAULT_WANTED, CtrlClass.MAC, 2, b"", "ctrl-unknown-command",
                 spec.NET_CTRL, id="mac-command-2"),
    pytest.param(DEFAULT_WANTED, CtrlClass.ANNOUNCE, 1, b"", "ctrl-unknown-command",
                 spec.NET_CTRL, id="announce-command-1"),
    pytest.param(DEFAULT_WANTED, CtrlClass.GUEST_OFFLOADS, 1, bytes(8),
                 "ctrl-unknown-command", spec.NET_CTRL, id="offloads-command-1"),
    pytest.param(DEFAULT_WANTED, CtrlClass.NOTF_COAL, 4, bytes(8), "ctrl-unknown-command",
                 spec.NET_CTRL, id="notf-coal-command-4"),
    pytest.param(DEFAULT_WANTED, CtrlClass.RX, RxCmd.PROMISC, b"", "ctrl-data-short",
                 spec.NET_CTRL_RX_DEVICE, id="rx-mode-empty"),
    pytest.param(DEFAULT_WANTED, CtrlClass.RX, RxCmd.PROMISC, b"\x00\x00", "ctrl-data-long",
                 spec.NET_CTRL_RX_DEVICE, id="rx-mode-two-bytes"),
    pytest.param(DEFAULT_WANTED, CtrlClass.RX, RxCmd.ALLMULTI, b"\x02",
                 "ctrl-rx-mode-not-boolean", spec.NET_CTRL_RX_DEVICE, id="rx-mode-2"),
    pytest.param(DEFAULT_WANTED, CtrlClass.MAC, MacCmd.ADDR_SET, NEW_MAC[:5],
                 "ctrl-data-short", spec.NET_CTRL_MAC, id="mac-5-bytes"),
    pytest.param(DEFAULT_WANTED, CtrlClass.MAC, MacCmd.ADDR_SET, NEW_MAC + b"\x00",
                 "ctrl-data-long", spec.NET_CTRL_MAC, id="mac-7-bytes"),
    pytest.param(DEFAULT_WANTED, CtrlClass.MAC, MacCmd.TABLE_SET,
                 (2).to_bytes(4, "little") + UC_TABLE + bytes(4), "ctrl-data-short",
                 spec.NET_CTRL_MAC_DRIVER, id="mac-table-count-lies"),
    pytest.param(DEFAULT_WANTED, CtrlClass.MAC, MacCmd.TABLE_SET,
                 MacTable((UC_TABLE,), ()).emit() + b"\x00", "ctrl-data-long",
                 spec.NET_CTRL_MAC_DRIVER, id="mac-table-trailing-byte"),
    pytest.param(DEFAULT_WANTED, CtrlClass.MAC, MacCmd.TABLE_SET,
                 MacTable((MC_TABLE,), ()).emit(), "ctrl-mac-table-class",
                 spec.NET_CTRL_MAC_DRIVER, id="multicast-in-unicast-table"),
    pytest.param(DEFAULT_WANTED.with_(F.CTRL_VLAN), CtrlClass.VLAN, VlanCmd.ADD, b"\x0a",
                 "ctrl-data-short", spec.NET_CTRL_VLAN, id="vlan-1-byte"),
    pytest.param(DEFAULT_WANTED.with_(F.CTRL_VLAN), CtrlClass.VLAN, VlanCmd.ADD,
                 encode_vlan(4096), "ctrl-vlan-id-out-of-range", spec.NET_CTRL_VLAN,
                 id="vlan-4096"),
    pytest.param(DEFAULT_WANTED.with_(F.CTRL_VLAN), CtrlClass.VLAN, VlanCmd.DEL,
                 encode_vlan(0xFFFF), "ctrl-vlan-id-out-of-range", spec.NET_CTRL_VLAN,
                 id="vlan-del-65535"),
    pytest.param(DEFAULT_WANTED, CtrlClass.ANNOUNCE, AnnounceCmd.ACK, b"\x00",
                 "ctrl-data-long", spec.NET_CTRL_ANNOUNCE, id="announce-ack-with-data"),
    pytest.param(DEFAULT_WANTED, CtrlClass.MQ, MqCmd.VQ_PAIRS_SET, b"\x01\x00\x00",
                 "ctrl-data-long", spec.NET_MQ_STEERING, id="vq-pairs-3-bytes"),
    pytest.param(DEFAULT_WANTED, CtrlClass.MQ, MqCmd.VQ_PAIRS_SET, encode_vq_pairs(0),
                 "ctrl-vq-pairs-out-of-range", spec.NET_MQ_STEERING_DRIVER, id="vq-pairs-0"),
    pytest.param(DEFAULT_WANTED, CtrlClass.MQ, MqCmd.VQ_PAIRS_SET, encode_vq_pairs(2),
                 "ctrl-vq-pairs-out-of-range", spec.NET_MQ_STEERING_DRIVER,
                 id="vq-pairs-above-max-1"),
    pytest.param(ALL_CONTROL, CtrlClass.MQ, MqCmd.RSS_CONFIG,
                 RssConfig(HashType.IPV4, (0, 0, 0), 0, 1, KEY).emit(),
                 "ctrl-rss-table-not-power-of-two", spec.NET_RSS_DRIVER, id="rss-table-of-3"),
    pytest.param(ALL_CONTROL, CtrlClass.MQ, MqCmd.RSS_CONFIG,
                 RssConfig(HashType.IPV4, (0, 0), 0, 1, KEY).emit()[:-1], "ctrl-data-short",
                 spec.NET_RSS_SET, id="rss-key-cut-short"),
    pytest.param(ALL_CONTROL, CtrlClass.MQ, MqCmd.HASH_CONFIG,
                 HashConfig(HashType.IPV4, KEY, (0, 1, 0, 0)).emit(),
                 "ctrl-hash-reserved-nonzero", spec.NET_MQ_HASH, id="hash-reserved-nonzero"),
    pytest.param(DEFAULT_WANTED, CtrlClass.GUEST_OFFLOADS, OffloadsCmd.SET, bytes(7),
                 "ctrl-data-short", spec.NET_CTRL_OFFLOADS_SET, id="offloads-7-bytes"),
    pytest.param(DEFAULT_WANTED, CtrlClass.GUEST_OFFLOADS, OffloadsCmd.SET,
                 encode_offloads(FeatureSet.of(F.GUEST_TSO4)), "ctrl-offloads-not-negotiated",
                 spec.NET_CTRL_OFFLOADS_DRIVER, id="offloads-tso4-not-negotiated"),
    pytest.param(DEFAULT_WANTED, CtrlClass.GUEST_OFFLOADS, OffloadsCmd.SET,
                 encode_offloads(FeatureSet.of(F.CSUM)), "ctrl-offloads-unknown",
                 spec.NET_CTRL_OFFLOADS_SET, id="offloads-host-csum-bit"),
    pytest.param(DEFAULT_WANTED, CtrlClass.NOTF_COAL, NotfCoalCmd.RX_SET, bytes(9),
                 "ctrl-data-long", spec.NET_NOTF_COAL, id="notf-coal-9-bytes"),
    pytest.param(DEFAULT_WANTED, CtrlClass.NOTF_COAL, NotfCoalCmd.TX_SET, bytes(4),
                 "ctrl-data-short", spec.NET_NOTF_COAL, id="notf-coal-4-bytes"),
]


@pytest.mark.parametrize(("wanted", "cls", "cmd", "data", "rule", "section"), BAD_COMMANDS)
def test_bad_command_is_refused_with_its_rule(  # noqa: PLR0917 - one row of the table
    wanted: FeatureSet, cls: int, cmd: int, data: bytes, rule: str, section: spec.Section
) -> None:
    """§5.1.6.5: the device answers VIRTIO_NET_ERR, counts it, records the rule the driver
    broke with its section (action "refused") and changes nothing; the driver counts the
    ERR and records no error of its own (the device kept the protocol)."""
    p, _ = make(wanted)
    control = p.b.device.control
    assert control is not None
    assert p.b.monitor.records == []
    before = control.snapshot()
    sent = ctrl_counts(p)[0]  # the probe sends RSS_CONFIG when RSS is negotiated
    assert ctrl_counts(p) == (sent, 0, sent, 0)
    assert not p.b.driver.control_command(cls, cmd, data)
    assert ctrl_counts(p) == (sent + 1, 1, sent + 1, 1)
    assert p.b.driver.control is not None and p.b.driver.control.errors == 1
    rec = refusal(p)
    assert (rec.rule, rec.reference, rec.queue) == (rule, str(section), CTRL_Q)
    assert control.snapshot() == before
    assert p.b.driver.errors == [] and not p.b.driver.broken
    assert not p.b.core.status & Status.DEVICE_NEEDS_RESET
    # the queue keeps working
    assert p.b.driver.control_command(CtrlClass.ANNOUNCE, AnnounceCmd.ACK) == (
        F.GUEST_ANNOUNCE in p.b.driver.negotiated)


def test_typed_api_does_not_send_what_was_not_negotiated() -> None:
    """§5.1.6.5: the driver's typed commands refuse (ValueError) a command whose feature
    was not negotiated; nothing reaches the device."""
    p, _ = make(FeatureSet.of(F.VERSION_1, F.MAC, F.CTRL_VQ))
    drv = p.b.driver
    rejected: list[Callable[[], object]] = [
        lambda: drv.set_rx_mode(RxCmd.PROMISC, False),
        lambda: drv.set_rx_mode(RxCmd.NOBCAST, True),
        lambda: drv.set_mac_table((UC_TABLE,), ()),
        lambda: drv.set_mac_address(NEW_MAC),
        lambda: drv.vlan_add(10),
        lambda: drv.vlan_del(10),
        drv.announce_ack,
        lambda: drv.set_queue_pairs(1),
        lambda: drv.set_rss(RssConfig(HashType.IPV4, (0,), 0, 1, KEY)),
        lambda: drv.set_hash_config(HashConfig(HashType.IPV4, KEY)),
        lambda: drv.set_guest_offloads(FeatureSet()),
        lambda: drv.set_notf_coal(rx=NotfCoal(8, 100)),
        lambda: drv.set_notf_coal(tx=NotfCoal(8, 100)),
    ]
    for call in rejected:
        with pytest.raises(ValueError, match="not negotiated"):
            call()
    assert ctrl_counts(p) == (0, 0, 0, 0)
    assert p.b.device.counters.ctrl_notifications == 0
    assert p.b.monitor.records == []
    assert drv.mac == MAC_B


def test_without_ctrl_vq_there_is_no_control_queue() -> None:
    """§5.1.6.5: no CTRL_VQ, no control virtqueue: the driver refuses to send anything."""
    p, _ = make(DEFAULT_WANTED.without(F.CTRL_VQ, F.CTRL_RX, F.CTRL_MAC_ADDR, F.GUEST_ANNOUNCE,
                                       F.MQ, F.CTRL_GUEST_OFFLOADS, F.NOTF_COAL))
    assert p.b.driver.control is None and p.b.device.control is None
    with pytest.raises(ValueError, match="CTRL_VQ"):
        p.b.driver.control_command(CtrlClass.RX, RxCmd.PROMISC, encode_rx_mode(False))
    assert p.b.device.counters.ctrl_notifications == 0


# --- chains the driver builds by hand ---------------------------------------------------------


def hand_built(p: Pair, readable: bytes | Sequence[bytes], ack_len: int) -> tuple[int, int]:
    """Put one control chain on B's control queue by hand — the ``readable`` piece(s), one
    descriptor each, then ``ack_len`` device-writable bytes (set to 0xFF) — notify, reap
    it; return (used len, ack byte)."""
    ctrl = p.b.driver.control
    allocator = p.b.memory.allocator
    assert ctrl is not None and allocator is not None
    pieces = [readable] if isinstance(readable, bytes) else list(readable)
    pieces = [piece for piece in pieces if piece]
    addrs = [allocator.alloc(64, 64) for _ in range(len(pieces) + 1)]
    for addr, piece in zip(addrs, pieces, strict=False):
        p.b.memory.write(addr, piece)
    ack_addr = addrs[-1]
    p.b.memory.write(ack_addr, b"\xff")
    ctrl.queue.add([(addr, len(piece)) for addr, piece in zip(addrs, pieces, strict=False)],
                   [(ack_addr, ack_len)] if ack_len else [], "hand")
    p.b.driver.transport.notify(ctrl.queue.index)
    entry = ctrl.queue.get_used()
    assert entry is not None
    token, used_len = entry
    assert token == "hand"
    ack = p.b.memory.read(ack_addr, 1)[0]
    for addr in addrs:
        allocator.free(addr)
    return used_len, ack


def test_linux_layout_header_data_and_ack_in_three_descriptors() -> None:
    """Linux's ``virtnet_send_command`` puts the class/command header, the data and the
    ack in three separate buffers (§2.7.4 Message Framing: the device must not depend on
    the framing). The device executes the command and acks it in the third."""
    p, got = make()
    used_len, ack = hand_built(p, [bytes((CtrlClass.RX, RxCmd.PROMISC)), b"\x00"], 1)
    assert (used_len, ack) == (1, 0)
    assert p.b.device.control is not None and not p.b.device.control.filter.promisc
    table = MacTable((UC_TABLE,), (MC_TABLE,)).emit()
    used_len, ack = hand_built(p, [bytes((CtrlClass.MAC, MacCmd.TABLE_SET)), table[:10],
                                   table[10:]], 4)
    assert (used_len, ack) == (1, 0)
    send_from_a(p, [eth(UC_TABLE, 1), eth(UC_OTHER, 2)])
    assert [r.data for r in got] == [eth(UC_TABLE, 1)]
    assert (p.b.device.counters.ctrl_commands, p.b.device.counters.ctrl_errors) == (2, 0)
    assert p.b.monitor.records == []


def test_command_without_an_ack_buffer_is_ignored_and_recorded() -> None:
    """§5.1.6.5 / §2.7.4: a command is class, command, data and a device-writable ack; a
    chain with no device-writable byte cannot be answered. The device records
    ``ctrl-no-ack-buffer`` (action "ignored"), does not execute the command, returns the
    chain with used length 0 and keeps working."""
    p, got = make()
    used_len, ack = hand_built(p, bytes((CtrlClass.RX, RxCmd.PROMISC, 0)), 0)
    assert (used_len, ack) == (0, 0xFF)
    (rec,) = p.b.monitor.records
    assert (rec.who, rec.rule, rec.reference, rec.action, rec.queue) == (
        "driver", "ctrl-no-ack-buffer", str(spec.NET_CTRL), "ignored", CTRL_Q)
    dev = p.b.device
    assert (dev.counters.ctrl_commands, dev.counters.ctrl_errors) == (1, 1)
    assert dev.control is not None and dev.control.filter.promisc  # not executed
    assert not p.b.core.status & Status.DEVICE_NEEDS_RESET

    assert p.b.driver.set_rx_mode(RxCmd.PROMISC, False)  # the queue still works
    assert not dev.control.filter.promisc
    send_from_a(p, [eth(MAC_B, 1), eth(UC_OTHER, 2)])
    assert [r.data for r in got] == [eth(MAC_B, 1)]
    assert (dev.counters.ctrl_commands, dev.counters.ctrl_errors) == (2, 1)
    assert p.b.driver.errors == []


@pytest.mark.parametrize("readable", [b"", bytes((CtrlClass.RX,))])
def test_command_shorter_than_its_header_is_refused(readable: bytes) -> None:
    """§5.1.6.5: ``u8 class; u8 command`` come first; a chain whose readable part is
    shorter is answered VIRTIO_NET_ERR (``ctrl-malformed``)."""
    p, _ = make()
    used_len, ack = hand_built(p, readable, 1)
    assert (used_len, ack) == (1, 1)
    rec = refusal(p)
    assert (rec.rule, rec.reference, rec.queue) == ("ctrl-malformed", str(spec.NET_CTRL), CTRL_Q)
    assert p.b.driver.set_rx_mode(RxCmd.PROMISC, False)



# --- per-queue notification coalescing, v1.3 §5.1.6.5.9 ---------------------------------------


def test_vq_notf_coal_set_get_follow_the_spec_example() -> None:
    """The command sequence of the v1.3 example (§5.1.6.5.9) on two pairs: RX_SET sets
    queues 0 and 2, VQ_SET 0 overrides queue 0 only, VQ_GET reads back what was set
    last; TX_SET overrides an earlier VQ_SET of queue 1. VQ_GET's result follows the
    ack in the device-writable part (struct virtio_net_ctrl)."""
    p, _ = make(ALL_CONTROL, device=NetDeviceConfig(max_queue_pairs=2), queue_pairs=2)
    drv = p.b.driver
    assert F.VQ_NOTF_COAL in drv.negotiated
    assert drv.set_notf_coal(rx=NotfCoal(15, 10))  # command 1
    assert drv.set_vq_notf_coal(0, NotfCoal(4, 20))  # command 2
    assert drv.get_vq_notf_coal(0) == NotfCoal(4, 20)  # command 3
    assert drv.get_vq_notf_coal(2) == NotfCoal(15, 10)
    assert drv.set_vq_notf_coal(1, NotfCoal(7, 30))  # command 4
    assert drv.set_notf_coal(tx=NotfCoal(9, 40))  # command 5
    assert drv.get_vq_notf_coal(1) == NotfCoal(9, 40)  # command 6
    assert drv.get_vq_notf_coal(3) == NotfCoal(9, 40)
    assert ctrl_counts(p)[:2] == (9, 0)  # RSS_CONFIG at probe + 8 here, no error


def test_vq_notf_coal_of_a_queue_that_is_not_enabled_is_refused() -> None:
    """§5.1.6.5.9.6: VQ_SET / VQ_GET of a virtqueue that is not an enabled transmit or
    receive queue get VIRTIO_NET_ERR; the driver ignores the (absent) result."""
    p, _ = make(ALL_CONTROL, device=NetDeviceConfig(max_queue_pairs=2), queue_pairs=1)
    drv = p.b.driver
    assert drv.get_vq_notf_coal(2) is None  # receiveq2 was never set up
    assert not drv.set_vq_notf_coal(3, NotfCoal(1, 1))
    assert drv.get_vq_notf_coal(4) is None  # the control queue is not a data queue
    assert drv.counters.ctrl_errors == 3
    assert [r.rule for r in p.b.monitor.records] == ["ctrl-coal-vq-not-enabled"] * 3


def test_vq_notf_coal_needs_its_feature() -> None:
    p, _ = make(DEFAULT_WANTED)  # NOTF_COAL but not VQ_NOTF_COAL
    with pytest.raises(ValueError, match="VQ_NOTF_COAL"):
        p.b.driver.get_vq_notf_coal(0)
    with pytest.raises(ValueError):
        p.b.driver.set_vq_notf_coal(0, NotfCoal(1, 1))
    assert p.b.device.counters.ctrl_commands == 0
