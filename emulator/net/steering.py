"""Which receive queue gets a packet, and the hash reported with it.

Three modes, the last multiqueue command deciding (virtio-v1.2 §5.1.6.5.5 Device
operation in multiqueue mode: "the resulting device configuration is defined by the last
command sent by the driver"):

- single queue: everything to receiveq1 (after reset, §5.1.6.5.6.2);
- automatic receive steering (MQ, VQ_PAIRS_SET n > 1, §5.1.6.5.6): a flow goes to the
  receive queue of the pair whose transmit queue last sent on it; a flow not seen on
  transmit goes to a queue chosen by its Toeplitz hash (the spec allows any queue of the
  n; Linux tun's ``tun_automq_select_queue`` likewise falls back to the flow hash);
- RSS (RSS_CONFIG, §5.1.6.5.7.3): the hash under the configured types and key, masked
  into the indirection table; unclassified packets to ``unclassified_queue``.

Hash reporting (HASH_REPORT, §5.1.6.4.4) uses the types and key of the last RSS_CONFIG
or HASH_CONFIG command; before either, no hash is calculated (report NONE).
"""

from __future__ import annotations

from collections import OrderedDict

from emulator.net.rss import DEFAULT_KEY, hash_input, packet_hash, select_queue, toeplitz
from virtio.constants import HashReport, HashType

FLOW_TABLE_SIZE = 4096
"""Flows remembered for automatic steering (least recently used dropped first; Linux tun
keeps up to 4096 flow entries, ``MAX_TAP_FLOWS``)."""
_FLOW_TYPES = (
    HashType.IPV4 | HashType.TCPV4 | HashType.UDPV4
    | HashType.IPV6 | HashType.TCPV6 | HashType.UDPV6
)
_V4_REPORTS = frozenset({HashReport.IPV4, HashReport.TCPV4, HashReport.UDPV4})


def _reverse(data: bytes, report: HashReport) -> bytes:
    """The flow key of the opposite direction: addresses and ports swapped."""
    alen = 4 if report in _V4_REPORTS else 16
    src, dst = data[:alen], data[alen:2 * alen]
    ports = data[2 * alen:]
    rev_ports = ports[2:4] + ports[0:2] if len(ports) == 4 else ports
    return dst + src + rev_ports


class Steering:
    """Receive queue selection; queue numbers are 0-based receiveq numbers."""

    def __init__(self) -> None:
        self._flows: OrderedDict[bytes, int] = OrderedDict()
        self.reset()

    def reset(self) -> None:
        """Back to the state after device reset: one queue, no hash configured."""
        self.pairs = 1
        self.mode = "single"
        self.rss_types = HashType(0)
        self.rss_key = b""
        self.rss_table: tuple[int, ...] = ()
        self.rss_unclassified = 0
        self.hash_types = HashType(0)
        self.hash_key = b""
        self._flows.clear()

    def set_pairs(self, pairs: int) -> None:
        """VQ_PAIRS_SET: automatic steering over ``pairs`` queues (1: single queue)."""
        self.pairs = pairs
        self.mode = "auto" if pairs > 1 else "single"
        self._flows.clear()

    def set_rss(
        self, types: HashType, key: bytes, table: tuple[int, ...], unclassified: int
    ) -> None:
        """RSS_CONFIG: steering by hash; its types and key also drive hash reports."""
        self.mode = "rss"
        self.rss_types, self.rss_key = types, key
        self.rss_table, self.rss_unclassified = table, unclassified
        self.hash_types, self.hash_key = types, key

    def set_hash(self, types: HashType, key: bytes) -> None:
        """HASH_CONFIG: what hash reports calculate (steering unchanged)."""
        self.hash_types, self.hash_key = types, key

    def note_tx(self, frame: bytes, pair: int) -> None:
        """A frame left on transmitq ``pair``: its flow's replies go to receiveq
        ``pair`` (§5.1.6.5.6)."""
        if self.mode != "auto":
            return
        found = hash_input(frame, _FLOW_TYPES)
        if found is None:
            return
        key = _reverse(found.data, found.report)
        flows = self._flows
        flows[key] = pair
        flows.move_to_end(key)
        if len(flows) > FLOW_TABLE_SIZE:
            flows.popitem(last=False)

    def select(self, frame: bytes) -> int:
        """The receive queue for ``frame``."""
        if self.mode == "single":
            return 0
        if self.mode == "rss":
            value, report = packet_hash(frame, self.rss_types, self.rss_key)
            return select_queue(value, report, self.rss_table, self.rss_unclassified)
        found = hash_input(frame, _FLOW_TYPES)
        if found is None:
            return 0
        pair = self._flows.get(found.data)
        if pair is not None and pair < self.pairs:
            return pair
        return toeplitz(DEFAULT_KEY, found.data) % self.pairs

    def report(self, frame: bytes) -> tuple[int, HashReport]:
        """(hash_value, hash_report) for the header (§5.1.6.4.4)."""
        if not self.hash_types:
            return 0, HashReport.NONE
        return packet_hash(frame, self.hash_types, self.hash_key)
