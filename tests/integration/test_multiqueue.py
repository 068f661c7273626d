"""Multiqueue end to end: our driver on host B negotiates MQ / RSS / HASH_REPORT with a
4-pair device, host A sends it frames over the wire, and every frame is checked for the
receive queue it arrived on and the hash it carries.

- virtio-v1.2 §5.1.6.5.5 Device operation in multiqueue mode (multiqueue off until a
  command; the last of VQ_PAIRS_SET / RSS_CONFIG decides);
- §5.1.6.5.6 Automatic receive steering (a flow's replies go to the receive queue of the
  pair that transmitted it; §5.1.6.5.6.2 "After initialization of reset, the device MUST
  queue packets only on receiveq1");
- §5.1.6.5.7 RSS (RSS_CONFIG; §5.1.6.5.7.3 the queue is
  ``indirection_table[hash & indirection_table_mask]``, unclassified packets to
  ``unclassified_queue``);
- §5.1.6.4.3 Hash calculation (the enabled hash types choose what is hashed) and
  §5.1.6.4.4 Hash reporting (hash_value / hash_report in the 20-byte header).

Expected hashes are never computed with the device's Toeplitz code. They are the published
numbers of Microsoft's RSS verification suite, "Verifying the RSS Hash Calculation"
(https://learn.microsoft.com/windows-hardware/drivers/network/verifying-the-rss-hash-calculation),
the same table as the Intel 82599 datasheet §7.1.2.8.3 "RSS Verification Suite" (also
copied in tests/emulator/test_rss.py), under its 40-byte key 6d5a56da...01fa, which is
the driver's default key. Where no published value exists (the bulk flows' 4-tuples),
:func:`ref_toeplitz` — a bit-by-bit transcription of Microsoft's pseudo code ("RSS Hashing
Functions") sharing nothing with emulator/net/rss.py — gives the expected hash.
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from collections.abc import Callable

import pytest

from driver.bus import RegisterBus
from driver.net import ALL_HASH_TYPES, DEFAULT_WANTED, RSS_KEY, DriverConfig, VirtioNetDriver
from emulator.net.device import GRO_FLUSH_NS, NetDeviceConfig
from stack.device import RxFrame
from stack.wire.ethernet import EthernetHeader, EtherType
from stack.wire.ipv4 import FLAG_DF, IpProtocol, Ipv4Header
from stack.wire.ipv6 import Ipv6Header
from stack.wire.tcp import TcpFlags, TcpHeader
from testbench.host import Host, HostConfig, Pair, make_pair
from testbench.loop import EventLoop
from testbench.packets import DST_MAC, DST_V4, SRC_MAC, SRC_V4
from testbench.tso_flows import BASE_SPORT, DPORT, TcpFlowReceiver, TcpFlowSender
from tests.rss_vectors import MS_KEY, V4_ROWS, V6_ROWS, Row, ip, ref_toeplitz
from virtio import spec
from virtio.constants import FeatureBit as F
from virtio.constants import HashReport, HashType, MmioReg
from virtio.ctrl import HashConfig, RssConfig
from virtio.features import FeatureSet

MIB = 1 << 20
MAC_A, MAC_B = SRC_MAC, DST_MAC
PAIRS = 4
TABLE_LENGTH = 128
"""The device's rss_max_indirection_table_length: the driver programs a table that long."""
ROUND_ROBIN = tuple(i % PAIRS for i in range(TABLE_LENGTH))
"""The table the driver sends at probe (i % pairs, as Linux's default table)."""
PAYLOAD = b"vnetbench multiqueue"
RSS_WANTED = DEFAULT_WANTED.with_(F.RSS, F.HASH_REPORT)
MQ_WANTED = DEFAULT_WANTED  # MQ is in the driver's default set; RSS and HASH_REPORT are not
MQ_HASH_WANTED = DEFAULT_WANTED.with_(F.HASH_REPORT)
R = HashReport
T = HashType

# --- The verification suite: (src, sport, dst, dport, IP-only hash, IP+TCP hash) --------

ROWS = V4_ROWS + V6_ROWS


def row_id(row: Row) -> str:
    return f"{row[0]}:{row[1]}"




def is_v4(row: Row) -> bool:
    return len(ip(row[0])) == 4




# --- Frames --------------------------------------------------------------------------------


def tcp_frame(src: str, sport: int, dst: str, dport: int, *, src_mac: bytes = MAC_A,
              dst_mac: bytes = MAC_B) -> bytes:
    """An Ethernet frame with an IPv4 or IPv6 TCP segment (stack.wire emitters)."""
    s, d = ip(src), ip(dst)
    seg = TcpHeader(sport, dport, 1000, 0, TcpFlags.ACK, 512).emit() + PAYLOAD
    if len(s) == 4:
        l3 = Ipv4Header(s, d, IpProtocol.TCP, 20 + len(seg), flags=FLAG_DF).emit()
        ethertype = EtherType.IPV4
    else:
        l3 = Ipv6Header(s, d, IpProtocol.TCP, len(seg)).emit()
        ethertype = EtherType.IPV6
    return EthernetHeader(dst_mac, src_mac, ethertype).emit() + l3 + seg


def row_frame(row: Row) -> bytes:
    """The row's 4-tuple from host A to host B."""
    return tcp_frame(row[0], row[1], row[2], row[3])


def reverse_frame(row: Row) -> bytes:
    """The row's flow in the other direction, from host B to host A."""
    return tcp_frame(row[2], row[3], row[0], row[1], src_mac=MAC_B, dst_mac=MAC_A)


ARP = EthernetHeader(MAC_B, MAC_A, EtherType.ARP).emit() + bytes.fromhex(
    "0001080006040001") + MAC_A + bytes(4) + bytes(6) + bytes(4)
"""An ARP request: no hash type applies to it (§5.1.6.4.3)."""
EXPERIMENTAL = EthernetHeader(MAC_B, MAC_A, EtherType.LOCAL_EXPERIMENTAL_1).emit() + bytes(46)


# --- Topology ------------------------------------------------------------------------------


def mq_pair(
    wanted: FeatureSet = RSS_WANTED, *, pairs: int = PAIRS, queue_pairs: int = PAIRS,
    hash_types: HashType = ALL_HASH_TYPES,
) -> tuple[Pair, list[RxFrame], list[RxFrame]]:
    """Host A: one pair, default driver. Host B: ``pairs`` pairs, a driver wanting
    ``wanted`` on ``queue_pairs`` of them. Returns the pair and what B and A received."""
    p = make_pair(
        EventLoop(),
        a=HostConfig("a", MAC_A, 8 * MIB, NetDeviceConfig(), DriverConfig(queue_size=64)),
        b=HostConfig("b", MAC_B, 16 * MIB, NetDeviceConfig(max_queue_pairs=pairs),
                     DriverConfig(wanted=wanted, queue_size=64, queue_pairs=queue_pairs,
                                  rss_hash_types=hash_types)),
    )
    got_b: list[RxFrame] = []
    got_a: list[RxFrame] = []
    p.b.on_frames = got_b.extend
    p.a.on_frames = got_a.extend
    return p, got_b, got_a


def send(p: Pair, host: Host, frames: list[bytes], *, queue: int | None = None) -> None:
    for frame in frames:
        assert host.driver.transmit(frame, queue=queue)
    host.driver.flush()
    p.loop.run_until_idle(max_steps=20_000)


def expected_hash(row: Row, types: HashType) -> tuple[int | None, int]:
    """(hash_value, hash_report) the driver should see for a row's TCP frame under
    ``types``, from the published numbers and the type order of §5.1.6.4.3.2 (IPv4) and
    §5.1.6.4.3.3 (IPv6): the TCP type if enabled, else the address-only type, else none
    (hash_value None: the driver passes no value with report NONE)."""
    l3, l3l4 = row[4], row[5]
    tcp, addr = (T.TCPV4, T.IPV4) if is_v4(row) else (T.TCPV6, T.IPV6)
    if tcp & types:
        return l3l4, R.TCPV4 if is_v4(row) else R.TCPV6
    if addr & types:
        return l3, R.IPV4 if is_v4(row) else R.IPV6
    return None, R.NONE


Seen = tuple[int, int | None, int | None]
"""(queue, hash_value, hash_report) of a received frame."""


def hashes(frames: list[RxFrame]) -> list[Seen]:
    return [(rx.queue, rx.hash_value, rx.hash_report) for rx in frames]


# --- §5.1.6.5.7 RSS on the published vectors --------------------------------------------------


@pytest.mark.parametrize(
    ("row", "queue"),
    list(zip(ROWS, [0, 2, 2, 3, 2, 1, 3, 3], strict=True)),
    ids=[row_id(r) for r in ROWS],
)
def test_rss_puts_each_published_vector_on_its_indirection_table_entry(row: Row, queue: int) -> None:
    """§5.1.6.5.7.3: the packet goes to ``indirection_table[hash & mask]``; with the
    driver's round-robin 128-entry table that is entry ``published & 127``. The header
    carries the published hash and TCPv4 / TCPv6 (§5.1.6.4.4)."""
    p, got, _ = mq_pair()
    b = p.b
    assert b.driver.header_size == 20  # §5.1.6: hash_value, hash_report, padding
    assert b.driver.config.rss_key == RSS_KEY == MS_KEY
    assert b.driver.queue_pairs == PAIRS and len(b.driver.rx_paths) == PAIRS
    assert b.device.control is not None
    assert b.device.control.rss == RssConfig(ALL_HASH_TYPES, ROUND_ROBIN, 0, PAIRS, MS_KEY)
    assert b.device.steering.mode == "rss"
    send(p, p.a, [row_frame(row)])
    published = row[5]
    assert ROUND_ROBIN[published & (TABLE_LENGTH - 1)] == queue
    report = R.TCPV4 if is_v4(row) else R.TCPV6
    assert hashes(got) == [(queue, published, report)]
    assert got[0].data == row_frame(row)
    assert b.device.counters.rx_queue_packets == {queue: 1}
    assert [path.frames for path in b.driver.rx_paths] == [int(q == queue) for q in range(PAIRS)]
    assert b.driver.errors == [] and b.device.counters.drops == {}


@pytest.mark.parametrize(
    ("table", "unclassified", "queues"),
    [
        ((3,) * TABLE_LENGTH, 1, [3, 3, 3, 3, 3, 3, 3, 3]),
        # 8 entries, mask 7: the published hashes end in 0x78, 0xEA, 0x4A, 0x7F, 0xA2 (v4)
        # and 0x3D, 0xBF, 0xEF (v6), i.e. entries 0, 2, 2, 7, 2, 5, 7, 7.
        ((0, 0, 1, 0, 0, 2, 0, 3), 2, [0, 1, 1, 3, 1, 2, 3, 3]),
        ((2,), 0, [2, 2, 2, 2, 2, 2, 2, 2]),
    ],
    ids=["all-3", "mask-7", "one-entry"],
)
def test_rss_follows_a_custom_indirection_table(
    table: tuple[int, ...], unclassified: int, queues: list[int]
) -> None:
    """A table set with RSS_CONFIG after probe (§5.1.6.5.7.1): every classified packet on
    ``table[hash & (len - 1)]``; ARP and a non-IP frame, which no hash type covers, on
    ``unclassified_queue`` with report NONE (§5.1.6.5.7.3)."""
    p, got, _ = mq_pair()
    b = p.b
    assert b.driver.set_rss(RssConfig(ALL_HASH_TYPES, table, unclassified, PAIRS, MS_KEY))
    send(p, p.a, [row_frame(r) for r in ROWS] + [ARP, EXPERIMENTAL])
    assert [table[r[5] & (len(table) - 1)] for r in ROWS] == queues
    expected: list[Seen] = [(q, r[5], R.TCPV4 if is_v4(r) else R.TCPV6)
                            for q, r in zip(queues, ROWS, strict=True)]
    expected += [(unclassified, None, R.NONE)] * 2
    assert hashes(got) == expected
    assert [rx.data for rx in got[-2:]] == [ARP, EXPERIMENTAL]
    counts = Counter([*queues, unclassified, unclassified])
    assert b.device.counters.rx_queue_packets == dict(counts)
    assert b.driver.counters.ctrl_commands == 2 and b.driver.counters.ctrl_errors == 0


def test_rss_max_tx_vq_limits_transmit_queues_not_receive_queues() -> None:
    """§5.1.6.5.7.1: ``max_tx_vq`` is how many transmit queues the driver uses; the
    indirection table may still name every receive queue. With max_tx_vq 2 the driver's
    flow choice stays on transmitq1/2 while a 4-entry table spreads the published
    vectors over all four receive queues (entry ``hash & 3``)."""
    p, got, _ = mq_pair()
    b = p.b
    assert b.monitor.records == []  # a multi-pair probe breaks no rule
    assert b.driver.set_rss(RssConfig(ALL_HASH_TYPES, (0, 1, 2, 3), 0, 2, MS_KEY))
    assert b.driver.queue_pairs == 2
    assert b.device.control is not None and b.device.control.queue_pairs == 2
    send(p, p.a, [row_frame(r) for r in ROWS])
    assert [rx.queue for rx in got] == [r[5] & 3 for r in ROWS] == [0, 2, 2, 3, 2, 1, 3, 3]
    replies = [reverse_frame(r) for r in ROWS]
    send(p, b, replies)
    expected = Counter(flow_tx_queue(f, 2) for f in replies)
    assert b.device.counters.tx_queue_packets == dict(expected)
    assert set(expected) <= {0, 1}
    assert b.monitor.rules() == []


@pytest.mark.parametrize(
    ("config", "rule"),
    [
        (RssConfig(ALL_HASH_TYPES, (0, 1, 2, 4), 0, 4, MS_KEY), "ctrl-rss-queue-out-of-range"),
        (RssConfig(ALL_HASH_TYPES, (0, 1, 2), 0, 4, MS_KEY), "ctrl-rss-table-not-power-of-two"),
        (RssConfig(ALL_HASH_TYPES, (0,), 4, 4, MS_KEY), "ctrl-rss-queue-out-of-range"),
        (RssConfig(ALL_HASH_TYPES, (0,), 0, 5, MS_KEY), "ctrl-rss-max-tx-vq-out-of-range"),
        (RssConfig(ALL_HASH_TYPES, (3,) * 256, 0, 4, MS_KEY), "ctrl-rss-table-too-long"),
    ],
    ids=["entry-4", "three-entries", "unclassified-4", "max-tx-vq-5", "256-entries"],
)
def test_a_refused_rss_config_changes_nothing(config: RssConfig, rule: str) -> None:
    """§5.1.6.5.7.2/§5.1.6.5.7.1: the device answers VIRTIO_NET_ERR to a configuration
    it cannot take; the previous (round-robin) steering stays in force."""
    p, got, _ = mq_pair()
    b = p.b
    assert b.monitor.records == []  # a multi-pair probe breaks no rule
    assert not b.driver.set_rss(config)
    assert b.driver.counters.ctrl_errors == 1 and b.driver.queue_pairs == PAIRS
    assert b.device.control is not None
    assert b.device.control.rss == RssConfig(ALL_HASH_TYPES, ROUND_ROBIN, 0, PAIRS, MS_KEY)
    assert b.monitor.rules() == [rule]
    send(p, p.a, [row_frame(r) for r in ROWS])
    assert [rx.queue for rx in got] == [0, 2, 2, 3, 2, 1, 3, 3]


# --- §5.1.6.4.3 enabled hash types ---------------------------------------------------------------


@pytest.mark.parametrize(
    "types",
    [T.IPV4, T.TCPV4, T.IPV4 | T.IPV6, T.TCPV6 | T.IPV4, T.UDPV4 | T.UDPV6],
    ids=["ipv4", "tcpv4", "ipv4+ipv6", "tcpv6+ipv4", "udp-only"],
)
def test_enabled_hash_types_choose_what_is_hashed(types: HashType) -> None:
    """§5.1.6.4.3.2/§5.1.6.4.3.3: a TCP packet gets the TCP type if enabled, else the
    address-only type (the published IP-only hash), else no hash and so the
    unclassified queue (§5.1.6.5.7.3; the driver's is 0). With only IPv4 types enabled
    a TCP/IPv4 frame reports IPV4 and the IPv4-only published value."""
    p, got, _ = mq_pair(hash_types=types)
    assert p.b.device.control is not None and p.b.device.control.rss is not None
    assert p.b.device.control.rss.hash_types == types
    send(p, p.a, [row_frame(r) for r in ROWS])
    expected: list[Seen] = []
    for r in ROWS:
        value, report = expected_hash(r, types)
        queue = 0 if value is None else ROUND_ROBIN[value & (TABLE_LENGTH - 1)]
        expected.append((queue, value, report))
    assert hashes(got) == expected


def test_only_ipv4_enabled_reports_the_published_ipv4_hash() -> None:
    """The brief's case spelled out: IPv4 only, the first vector reports IPV4 with
    0x323E8FC2 (and lands on 0x323E8FC2 & 127 = 66 -> queue 2)."""
    p, got, _ = mq_pair(hash_types=T.IPV4)
    send(p, p.a, [row_frame(V4_ROWS[0]), row_frame(V6_ROWS[0])])
    assert hashes(got) == [(2, 0x323E8FC2, R.IPV4), (0, None, R.NONE)]


# --- §5.1.6.4.4 hash reporting without RSS, and RSS without reporting --------------------------


def test_hash_report_with_automatic_steering_uses_hash_config() -> None:
    """MQ + HASH_REPORT, no RSS: the driver sends VQ_PAIRS_SET 4 then HASH_CONFIG
    (§5.1.6.5.6.4) with every type and the Microsoft key; the header carries the published
    hash. The queue is automatic steering's: a flow never transmitted goes to its Toeplitz
    hash modulo 4 (emulator/net/steering.py), the published value % 4 here."""
    p, got, _ = mq_pair(MQ_HASH_WANTED)
    b = p.b
    assert F.RSS not in b.driver.negotiated and F.HASH_REPORT in b.driver.negotiated
    control = b.device.control
    assert control is not None and control.rss is None
    assert control.queue_pairs == PAIRS
    assert control.hash_config == HashConfig(ALL_HASH_TYPES, MS_KEY)
    assert b.device.steering.mode == "auto"
    send(p, p.a, [row_frame(r) for r in ROWS])
    assert hashes(got) == [(r[5] % PAIRS, r[5], R.TCPV4 if is_v4(r) else R.TCPV6) for r in ROWS]
    assert [r[5] % PAIRS for r in ROWS] == [0, 2, 2, 3, 2, 1, 3, 3]


def test_hash_report_on_a_single_queue_device() -> None:
    """HASH_REPORT on a one-pair device: HASH_CONFIG only; everything on receiveq1 with
    its hash. Later HASH_CONFIG commands change types and key at once: IPv4 only gives
    the published IPv4 value; an all-zero key gives 0 with the type still reported; no
    types gives report NONE (§5.1.6.5.6.4: the device reports NONE while nothing is
    enabled)."""
    p, got, _ = mq_pair(MQ_HASH_WANTED, pairs=1, queue_pairs=1)
    b = p.b
    assert b.device.control is not None
    assert b.device.control.hash_config == HashConfig(ALL_HASH_TYPES, MS_KEY)
    assert b.driver.counters.ctrl_commands == 1  # HASH_CONFIG, no VQ_PAIRS_SET
    frames = [row_frame(V4_ROWS[1]), row_frame(V6_ROWS[1])]
    send(p, p.a, frames)
    assert hashes(got) == [(0, 0xC626B0EA, R.TCPV4), (0, 0xDDE51BBF, R.TCPV6)]
    got.clear()
    assert b.driver.set_hash_config(HashConfig(T.IPV4, MS_KEY))
    send(p, p.a, frames)
    assert hashes(got) == [(0, 0xD718262A, R.IPV4), (0, None, R.NONE)]
    got.clear()
    assert b.driver.set_hash_config(HashConfig(T.TCPV4 | T.TCPV6, bytes(40)))
    send(p, p.a, frames)
    assert hashes(got) == [(0, 0, R.TCPV4), (0, 0, R.TCPV6)]
    got.clear()
    assert b.driver.set_hash_config(HashConfig(T(0), b""))
    send(p, p.a, frames)
    assert hashes(got) == [(0, None, R.NONE), (0, None, R.NONE)]
    assert b.device.counters.rx_queue_packets == {0: 8}


def test_rss_without_hash_report_steers_but_reports_nothing() -> None:
    """RSS alone: the 12-byte header has no hash fields, the driver's RxFrame hash fields
    are None, and the queue still follows the published hash."""
    p, got, _ = mq_pair(DEFAULT_WANTED.with_(F.RSS))
    assert p.b.driver.header_size == 12
    send(p, p.a, [row_frame(r) for r in ROWS])
    assert hashes(got) == [(ROUND_ROBIN[r[5] & 127], None, None) for r in ROWS]


def test_without_hash_report_the_hash_fields_are_none() -> None:
    p, got, _ = mq_pair(MQ_WANTED)
    assert F.HASH_REPORT not in p.b.driver.negotiated and p.b.driver.header_size == 12
    send(p, p.a, [row_frame(r) for r in ROWS])
    assert [(rx.hash_value, rx.hash_report) for rx in got] == [(None, None)] * len(ROWS)


# --- §5.1.6.5.6 automatic receive steering ----------------------------------------------------

# (row whose flow host B transmits on queue k, k): each row's default queue (published
# hash % 4: 2, 2, 3, 0) differs from k, so only the steering can put the reply there.
LEARNED = [(V4_ROWS[1], 0), (V4_ROWS[2], 1), (V6_ROWS[2], 2), (V4_ROWS[0], 3)]
UNSEEN = [V4_ROWS[4], V6_ROWS[0]]
"""Flows B never transmits: queues 0x10E828A2 % 4 = 2 and 0x40207D3D % 4 = 1."""


def test_automatic_steering_sends_replies_to_the_transmitting_pair() -> None:
    """§5.1.6.5.6: after VQ_PAIRS_SET 4, a flow B transmitted on transmitq(k+1) has its
    replies placed on receiveq(k+1); a flow never sent on goes to a fixed queue; when B
    moves a flow to another transmit queue, its replies follow."""
    p, got, got_a = mq_pair(MQ_WANTED)
    b = p.b
    assert b.device.control is not None and b.device.control.queue_pairs == PAIRS
    assert b.device.steering.mode == "auto"
    for row, k in LEARNED:
        assert row[5] % PAIRS != k
        send(p, b, [reverse_frame(row)], queue=k)
    assert [rx.data for rx in got_a] == [reverse_frame(r) for r, _ in LEARNED]
    send(p, p.a, [row_frame(r) for r, _ in LEARNED] + [row_frame(r) for r in UNSEEN])
    assert [rx.queue for rx in got] == [0, 1, 2, 3, 2, 1]
    assert [rx.data for rx in got] == [row_frame(r) for r, _ in LEARNED] + [
        row_frame(r) for r in UNSEEN]
    counters = b.device.counters
    assert counters.tx_queue_packets == {0: 1, 1: 1, 2: 1, 3: 1}
    assert counters.rx_queue_packets == {0: 1, 1: 2, 2: 2, 3: 1}
    assert [path.frames for path in b.driver.rx_paths] == [1, 2, 2, 1]
    # The flow of V4_ROWS[0] moves from transmitq4 to transmitq2: replies follow.
    got.clear()
    send(p, b, [reverse_frame(V4_ROWS[0])], queue=1)
    send(p, p.a, [row_frame(V4_ROWS[0])])
    assert [rx.queue for rx in got] == [1]
    assert counters.tx_queue_packets == {0: 1, 1: 2, 2: 1, 3: 1}
    assert counters.rx_queue_packets == {0: 1, 1: 3, 2: 2, 3: 1}
    assert p.a.device.counters.rx_queue_packets == {0: 5}
    assert b.driver.errors == [] and counters.drops == {}


def test_fewer_pairs_forget_the_learned_flows() -> None:
    """VQ_PAIRS_SET 2 after 4 (§5.1.6.5.6.1): steering spreads over receiveq1/2 only, the
    flows learned on the old configuration are forgotten (published hash % 2), and
    learning starts again on the enabled pairs."""
    p, got, _ = mq_pair(MQ_WANTED)
    b = p.b
    assert b.monitor.records == []  # a multi-pair probe breaks no rule
    for row, k in LEARNED:
        send(p, b, [reverse_frame(row)], queue=k)
    assert b.driver.set_queue_pairs(2) and b.driver.queue_pairs == 2
    send(p, p.a, [row_frame(r) for r in ROWS])
    assert [rx.queue for rx in got] == [r[5] % 2 for r in ROWS] == [0, 0, 0, 1, 0, 1, 1, 1]
    got.clear()
    send(p, b, [reverse_frame(V4_ROWS[3])], queue=0)
    send(p, p.a, [row_frame(V4_ROWS[3])])
    assert [rx.queue for rx in got] == [0]
    assert b.monitor.rules() == []


RSS_ONLY = DEFAULT_WANTED.with_(F.RSS)


@pytest.mark.parametrize("wanted", [RSS_ONLY, MQ_WANTED, MQ_HASH_WANTED],
                         ids=["rss", "mq", "mq+hash"])
def test_a_one_pair_driver_gets_everything_on_receiveq1(wanted: FeatureSet) -> None:
    """§5.1.6.5.6.2: "After initialization of reset, the device MUST queue packets only on
    receiveq1"; a driver using one pair on a 4-pair device sends no VQ_PAIRS_SET or
    RSS_CONFIG, so every flow (a flow B transmitted too) lands on queue 0. With
    HASH_REPORT and MQ the driver's HASH_CONFIG turns reports on without moving any
    packet."""
    p, got, _ = mq_pair(wanted, queue_pairs=1)
    b = p.b
    hashed = F.HASH_REPORT in wanted
    assert b.driver.counters.ctrl_commands == int(hashed)  # HASH_CONFIG
    assert len(b.driver.rx_paths) == 1 and b.driver.max_queue_pairs == PAIRS
    control = b.device.control
    assert control is not None and control.queue_pairs == 1 and control.rss is None
    assert b.device.steering.mode == "single"
    send(p, b, [reverse_frame(V4_ROWS[3])])
    send(p, p.a, [row_frame(r) for r in ROWS] + [ARP])
    expected: list[Seen] = [(0, None, None)] * len(ROWS)
    if hashed:
        expected = [(0, *expected_hash(r, ALL_HASH_TYPES)) for r in ROWS]
    expected.append((0, None, R.NONE if hashed else None))
    assert hashes(got) == expected
    assert b.device.counters.rx_queue_packets == {0: len(ROWS) + 1}
    assert b.device.counters.tx_queue_packets == {0: 1}


class FirstCommandBus:
    """A RegisterBus in front of the register file that runs ``before`` when the driver
    notifies the control queue the first time, just before the device sees the
    notification: the moment after DRIVER_OK, receive queues filled, when no
    multiqueue command has been executed yet."""

    def __init__(self, inner: RegisterBus, ctrl_queue: int, before: Callable[[], None]) -> None:
        self.inner = inner
        self.ctrl_queue = ctrl_queue
        self.before: Callable[[], None] | None = before

    def read(self, offset: int, size: int = 4) -> int:
        return self.inner.read(offset, size)

    def write(self, offset: int, value: int, size: int = 4) -> None:
        if offset == MmioReg.QUEUE_NOTIFY and value == self.ctrl_queue and self.before:
            before, self.before = self.before, None
            before()
        self.inner.write(offset, value, size)


@pytest.mark.parametrize("wanted", [RSS_WANTED, MQ_HASH_WANTED], ids=["rss+hash", "mq+hash"])
def test_before_the_first_multiqueue_command_everything_is_on_receiveq1(
    wanted: FeatureSet,
) -> None:
    """Frames reaching a 4-pair device after DRIVER_OK but before the driver's first MQ
    command (RSS_CONFIG, or VQ_PAIRS_SET then HASH_CONFIG) all go to receiveq1
    (§5.1.6.5.6.2) with report NONE (§5.1.6.5.6.4: "Initially the device has all hash
    types disabled and reports only VIRTIO_NET_HASH_REPORT_NONE"); once the commands are
    in, the same frames are steered and hashed."""
    p, got, _ = mq_pair(wanted, queue_pairs=PAIRS)  # A and B probed; B again below
    b = p.b
    frames = [row_frame(r) for r in ROWS] + [ARP]
    early: list[bool] = []
    modes: list[str] = []

    def inject() -> None:
        modes.append(b.device.steering.mode)
        early.extend(b.device.receive(f) for f in frames)

    bus = FirstCommandBus(b.mmio, 2 * PAIRS, inject)
    b.driver = VirtioNetDriver(bus, b.memory, b.config.driver)
    b.driver.probe()  # resets the device: its steering and hash settings start over
    assert modes == ["single"] and early == [True] * len(frames)
    p.loop.run_until_idle(max_steps=20_000)
    assert hashes(got) == [(0, None, R.NONE)] * len(frames)
    assert [rx.data for rx in got] == frames
    got.clear()
    send(p, p.a, frames)
    rss = F.RSS in wanted
    queues = [ROUND_ROBIN[r[5] & 127] if rss else r[5] % PAIRS for r in ROWS]
    assert queues == [0, 2, 2, 3, 2, 1, 3, 3]
    assert hashes(got) == [(q, *expected_hash(r, ALL_HASH_TYPES))
                           for q, r in zip(queues, ROWS, strict=True)] + [(0, None, R.NONE)]


@pytest.mark.parametrize("pairs", [1, PAIRS], ids=["1-pair-device", "4-pair-device"])
def test_one_pair_with_rss_and_hash_report_gets_hashes(pairs: int) -> None:
    """HASH_REPORT negotiated (§5.1.6.4.4) with RSS: with RSS negotiated the hash
    parameters come from virtio_net_rss_config (§5.1.6.4.3), so a one-pair driver must
    still send RSS_CONFIG (a table of receiveq1 only) to get the reports it negotiated.
    Linux's virtnet_probe commits the RSS configuration whenever RSS or HASH_REPORT is
    negotiated, whatever the queue count ("virtio_net: Sync rss config to device when
    virtnet_probe", Philo Lu, netdev, 4 Nov 2024, fixing c7114b1249fa)."""
    p, got, _ = mq_pair(RSS_WANTED, pairs=pairs, queue_pairs=1)
    send(p, p.a, [row_frame(r) for r in ROWS])
    assert hashes(got) == [(0, *expected_hash(r, ALL_HASH_TYPES)) for r in ROWS]


def flow_tx_queue(frame: bytes, pairs: int) -> int:
    """The driver's documented TX queue choice (VirtioNetDriver.tx_queue_for): CRC-32 of
    the IP addresses and ports, modulo the pairs in use."""
    if frame[12:14] == b"\x08\x00":
        return zlib.crc32(frame[26:34] + frame[34:38]) % pairs
    return zlib.crc32(frame[22:54] + frame[54:58]) % pairs


def test_the_default_tx_queue_keeps_each_flow_on_one_pair() -> None:
    """Without ``queue``, transmit picks the pair by flow: the same flow always on the
    same transmit queue, several flows over more than one; and with automatic steering
    each flow's replies come back on that same pair (§5.1.6.5.6)."""
    p, got, got_a = mq_pair(MQ_WANTED)
    b = p.b
    flows = [(f"10.1.0.{n}", 30000 + n, "10.2.0.1", 80) for n in range(8)]
    frames = [tcp_frame(d, dp, s, sp, src_mac=MAC_B, dst_mac=MAC_A) for s, sp, d, dp in flows]
    queues = [flow_tx_queue(f, PAIRS) for f in frames]
    assert queues == [b.driver.tx_queue_for(f) for f in frames]
    assert len(set(queues)) > 1
    send(p, b, frames * 3)  # three rounds of every flow
    assert len(got_a) == 3 * len(frames)
    assert b.device.counters.tx_queue_packets == {q: 3 * n for q, n in Counter(queues).items()}
    replies = [tcp_frame(s, sp, d, dp) for s, sp, d, dp in flows]
    send(p, p.a, replies)
    assert [rx.queue for rx in got] == queues
    assert b.device.counters.rx_queue_packets == dict(Counter(queues))


# --- §5.1.6.5.5 the last command decides -------------------------------------------------------


def test_the_last_multiqueue_command_decides_the_steering() -> None:
    """§5.1.6.5.5: "the resulting device configuration is defined by the last command sent
    by the driver". RSS_CONFIG (all entries 3), then VQ_PAIRS_SET: automatic steering (a
    transmitted flow's reply on its pair, an unseen flow on its hash % 4, not on 3); then
    RSS_CONFIG again: RSS, whatever B transmitted."""
    p, got, _ = mq_pair()
    b = p.b
    assert b.driver.set_rss(RssConfig(ALL_HASH_TYPES, (3,) * TABLE_LENGTH, 3, PAIRS, MS_KEY))
    send(p, b, [reverse_frame(V4_ROWS[1])], queue=1)
    send(p, p.a, [row_frame(V4_ROWS[1]), row_frame(V4_ROWS[0])])
    assert [rx.queue for rx in got] == [3, 3]  # RSS ignores what B transmitted

    assert b.driver.set_queue_pairs(PAIRS)
    control = b.device.control
    assert control is not None and control.rss is None and control.queue_pairs == PAIRS
    assert b.device.steering.mode == "auto"
    got.clear()
    send(p, b, [reverse_frame(V4_ROWS[1])], queue=1)
    send(p, p.a, [row_frame(V4_ROWS[1]), row_frame(V4_ROWS[0])])
    assert [rx.queue for rx in got] == [1, 0]  # learned; 0x51CCC178 % 4 = 0

    assert b.driver.set_rss(RssConfig(ALL_HASH_TYPES, (2,) * TABLE_LENGTH, 2, PAIRS, MS_KEY))
    assert b.device.steering.mode == "rss"
    got.clear()
    send(p, b, [reverse_frame(V4_ROWS[1])], queue=1)
    send(p, p.a, [row_frame(V4_ROWS[1]), row_frame(V4_ROWS[0])])
    assert hashes(got) == [(2, 0xC626B0EA, R.TCPV4), (2, 0x51CCC178, R.TCPV4)]
    assert b.device.counters.rx_queue_packets == {3: 2, 1: 1, 0: 1, 2: 2}
    assert b.device.counters.tx_queue_packets == {1: 3}


def test_vq_pairs_set_after_rss_reports_what_control_state_says() -> None:
    """After VQ_PAIRS_SET replaced RSS (§5.1.6.5.5), the device's hash parameters are
    ``ControlState.hash_params()``: none (RSS negotiated, no RSS configuration, and
    HASH_CONFIG never sent), so the report is NONE (§5.1.6.5.6.4 "Initially the device
    has all hash types disabled")."""
    p, got, _ = mq_pair()
    b = p.b
    assert b.driver.set_queue_pairs(PAIRS)
    control = b.device.control
    assert control is not None and control.hash_params() == (T(0), b"")
    send(p, p.a, [row_frame(V4_ROWS[0])])
    assert hashes(got) == [(0, None, R.NONE)]


def test_hash_config_with_rss_negotiated_keeps_the_rss_hash_parameters() -> None:
    """§5.1.6.4.3: "If the feature VIRTIO_NET_F_RSS was negotiated: The device uses
    hash_types of the virtio_net_rss_config structure as 'Enabled hash types' bitmask";
    a HASH_CONFIG (IPv4 only) while RSS is in force changes neither queue nor report."""
    p, got, _ = mq_pair()
    b = p.b
    assert b.driver.set_hash_config(HashConfig(T.IPV4, MS_KEY))
    control = b.device.control
    assert control is not None and control.hash_params() == (ALL_HASH_TYPES, MS_KEY)
    send(p, p.a, [row_frame(V4_ROWS[0])])
    assert hashes(got) == [(0, 0x51CCC178, R.TCPV4)]


# --- bulk TSO traffic over several queues -----------------------------------------------------


def bulk_queue(sport: int, pairs: int) -> int:
    """Receive queue of a bulk flow (10.0.0.1:sport -> 10.0.0.2:5201) under both the RSS
    round-robin table and automatic steering's fallback: the reference Toeplitz hash
    masked to 128 entries of ``i % pairs`` equals the hash % pairs (pairs divide 128)."""
    h = ref_toeplitz(MS_KEY, SRC_V4 + DST_V4 + struct.pack("!HH", sport, DPORT))
    assert (h & (TABLE_LENGTH - 1)) % pairs == h % pairs
    return h % pairs


BULK_MODES = {
    "rss": DEFAULT_WANTED.with_(F.GUEST_CSUM, F.GUEST_TSO4, F.RSS),
    "rss+hash+mrg": DEFAULT_WANTED.with_(F.GUEST_CSUM, F.GUEST_TSO4, F.RSS, F.HASH_REPORT,
                                         F.MRG_RXBUF),
    "mq": DEFAULT_WANTED.with_(F.GUEST_CSUM, F.GUEST_TSO4),
}


@pytest.mark.parametrize("mode", list(BULK_MODES))
@pytest.mark.parametrize("pairs", [2, 4])
def test_bulk_tso_flows_each_arrive_whole_on_one_coalescing_queue(mode: str, pairs: int) -> None:
    """4 flows of 4 TSO packets (32000 bytes each, MSS 1448: 23 segments) from A to B,
    whose driver has GUEST_CSUM + GUEST_TSO4 and RSS or MQ on ``pairs`` pairs: every
    flow's byte stream arrives exactly, each flow on one queue (§5.1.6.5.7.3 /
    §5.1.6.5.6), and the device coalesced on each queue (one coalescer per receive
    queue, §5.1.6.4): all 368 wire segments arrive inside coalesced packets, flushed by the
    100 µs coalescing window (GRO_FLUSH_NS). With HASH_REPORT and mergeable buffers each
    coalesced packet, spread over many buffers, carries its flow's hash in the first
    header (§5.1.6.4.4)."""
    wanted = BULK_MODES[mode]
    p = make_pair(
        EventLoop(),
        a=HostConfig("a", MAC_A, 16 * MIB),
        b=HostConfig("b", MAC_B, 64 * MIB, NetDeviceConfig(max_queue_pairs=pairs),
                     DriverConfig(wanted=wanted, queue_pairs=pairs, queue_size=64)),
    )
    assert p.b.device.steering.mode == ("auto" if mode == "mq" else "rss")
    assert GRO_FLUSH_NS == 100_000
    sender = TcpFlowSender(p.a.driver, flows=4, packets=4, size=32_000)
    receiver = TcpFlowReceiver()
    other: list[RxFrame] = []
    seen: list[RxFrame] = []

    def on_frames(frames: list[RxFrame]) -> None:
        seen.extend(frames)
        other.extend(receiver.check(frames))

    p.b.on_frames = on_frames
    for _ in range(sender.total):
        sender.pump()
        p.loop.run_until_idle(max_steps=200_000)
        if sender.done:
            break
    assert sender.done and other == []
    assert receiver.mismatches(sender) == 0
    for flow in range(4):
        assert receiver.stream(flow) == sender.expected(flow)
    expected = {flow: {bulk_queue(BASE_SPORT + flow, pairs)} for flow in range(4)}
    assert receiver.flow_queues == expected
    # 10.0.0.1 -> 10.0.0.2 ports 41000..41003: flows 0 and 2 share one queue, 1 and 3
    # another (queues 0/1 of 2, 2/3 of 4).
    assert expected == ({0: {0}, 1: {1}, 2: {0}, 3: {1}} if pairs == 2
                        else {0: {2}, 1: {3}, 2: {2}, 3: {3}})
    counters = p.b.device.counters
    first = 0 if pairs == 2 else 2
    assert receiver.queues == {first: 8, first + 1: 12}
    assert counters.rx_queue_packets == receiver.queues
    assert receiver.coalesced == receiver.packets == 20
    assert (counters.rx_frames, counters.rx_coalesced, counters.rx_coalesced_segments) == (
        20, 20, 4 * 4 * 23)
    assert counters.drops == {} and p.b.driver.errors == []
    flow_hash = {BASE_SPORT + f: ref_toeplitz(MS_KEY, SRC_V4 + DST_V4 + struct.pack(
        "!HH", BASE_SPORT + f, DPORT)) for f in range(4)}
    if F.HASH_REPORT in wanted:
        assert p.b.driver.header_size == 20 and counters.rx_chains > counters.rx_frames
        assert [(rx.hash_value, rx.hash_report) for rx in seen] == [
            (flow_hash[int.from_bytes(rx.data[34:36], "big")], R.TCPV4) for rx in seen]
    else:
        assert all(rx.hash_value is None and rx.hash_report is None for rx in seen)


def test_spec_sections_cited_exist() -> None:
    assert (spec.NET_MQ.number, spec.NET_RSS.number, spec.NET_RSS_DEVICE.number,
            spec.NET_HASH.number, spec.NET_HASH_REPORT.number, spec.NET_MQ_HASH.number) == (
        "5.1.6.5.5", "5.1.6.5.7", "5.1.6.5.7.3", "5.1.6.4.3", "5.1.6.4.4", "5.1.6.5.6.4")
