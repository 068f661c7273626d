"""The device side of the control virtqueue (§5.1.6.5): validate and execute one command.

:meth:`ControlState.execute` takes a command's class, command and command-specific data
(the bytes after the 2-byte header) and returns a :class:`CommandResult`: ``ok`` (the
device acks VIRTIO_NET_OK) or a refusal (VIRTIO_NET_ERR) naming the rule and section the
driver broke. It never raises, whatever the bytes, and a refused command leaves every
piece of state as it was. ``changed`` names the state groups whose value the command
actually changed, so the device applies only those (an OK command may change nothing,
e.g. PROMISC on when already on).

Decisions where the spec leaves room (each with its source):

- Receive filter defaults: see :mod:`emulator.net.rx_filter` (promiscuous at reset, as
  QEMU's ``virtio_net_reset``; empty MAC table, §5.1.6.5.2.1; VLAN filtering only with
  CTRL_VLAN, table empty).
- ``queue_pairs`` is 1 until the driver says otherwise (§5.1.6.5.6.2: "After
  initialization of reset, the device MUST queue packets only on receiveq1";
  "Multiqueue is disabled by default", §5.1.6.5.5).
- VQ_PAIRS_SET sets ``queue_pairs`` and switches the device to automatic steering: a
  previous RSS configuration is dropped (``rss`` becomes None), because "the resulting
  device configuration is defined by the last command sent by the driver" (§5.1.6.5.5);
  QEMU's ``virtio_net_handle_mq`` likewise disables RSS on every MQ command.
- RSS_CONFIG stores the configuration and sets ``queue_pairs`` to ``max_tx_vq``: the
  driver tells the device how many transmit queues it may use (§5.1.6.5.7.1), and QEMU
  makes that its current number of queue pairs. Receive steering then follows the
  indirection table, whose entries (and ``unclassified_queue``) may name any receive
  queue the device has (< ``max_pairs``; QEMU checks the unclassified queue the same way) —
  the spec lets an RSS driver use more receive than transmit queues, so entries are not
  bounded by ``max_tx_vq``. ``max_tx_vq`` must be in 1..max_pairs (QEMU). A hash_types of
  0 is accepted: no packet gets a hash, so every packet goes to ``unclassified_queue``
  (§5.1.6.5.7.3). Non-zero hash_types with an empty key is refused
  (``ctrl-rss-key-missing``), as QEMU refuses it ("No key provided").
- HASH_CONFIG sets only ``hash_config`` (the parameters of hash *reporting* without RSS,
  §5.1.6.4.3); it does not touch ``rss`` or ``queue_pairs``. Its ``reserved`` words MUST be
  zero (§5.1.6.5.6.4) and are checked: Linux before the fix "virtio_net: fix the missing
  of the max_tx_vq" sent max_tx_vq there.
- ANNOUNCE_ACK is always acknowledged (with GUEST_ANNOUNCE negotiated): the device owns
  the config ``status`` bit and clears it when ``"announce"`` is in ``changed``
  (§5.1.6.5.4.2). QEMU answers ERR when no announcement is pending; a device wanting that
  refuses before calling here.
- GUEST_OFFLOADS_SET: bits outside :data:`~virtio.ctrl.GUEST_OFFLOAD_BITS` are refused
  (``ctrl-offloads-unknown``; QEMU also tolerates RSC_EXT there, we do not), offloads that
  were not negotiated are refused (``ctrl-offloads-not-negotiated``, §5.1.6.5.8.2).
  Switching GUEST_CSUM off while a GUEST_TSO stays on is accepted (no rule forbids it);
  the receive path must not coalesce without GUEST_CSUM in force.
- MAC_TABLE_SET: a multicast address in the unicast table or a unicast address in the
  multicast table is refused (``ctrl-mac-table-class``, §5.1.6.5.2.2). The table has no
  size limit (the data length bounds it; QEMU switches to all-uni/all-multi beyond 64).
- RX mode data must be exactly 0 or 1 (``ctrl-rx-mode-not-boolean``; QEMU takes any
  non-zero byte as on).
- NOTF_COAL VQ_SET/VQ_GET address data virtqueues (receiveqN = 2(N-1), transmitqN =
  2(N-1)+1) of the pairs the device has (all ``max_pairs`` with MQ or RSS negotiated,
  else one pair); ``vq_enabled`` narrows that to the queues the driver enabled. TX_SET
  (RX_SET) overrides every per-queue setting of the transmit (receive) queues, as in the
  v1.3 §5.1.6.5.9 example; :meth:`ControlState.coal_for` gives a queue's parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from emulator.net.rx_filter import RxFilter
from virtio import spec
from virtio.constants import FeatureBit, HashType
from virtio.ctrl import (
    COMMAND_FEATURE,
    COMMANDS,
    GUEST_OFFLOAD_BITS,
    MQ_VQ_PAIRS_MAX,
    MQ_VQ_PAIRS_MIN,
    VLAN_ID_LIMIT,
    CtrlClass,
    CtrlFormatError,
    HashConfig,
    MacCmd,
    MacTable,
    MqCmd,
    NotfCoal,
    NotfCoalCmd,
    RssConfig,
    RxCmd,
    VlanCmd,
    VqNotfCoal,
    command_name,
    decode_coal_vq_get,
    decode_header,
    decode_mac,
    decode_offloads,
    decode_rx_mode,
    decode_vlan,
    decode_vq_pairs,
)
from virtio.features import FeatureSet

F = FeatureBit

CHANGE_GROUPS = frozenset(
    {"rx_filter", "mac", "queue_pairs", "rss", "hash", "offloads", "notf_coal", "announce"}
)
"""Every name :attr:`CommandResult.changed` may hold."""


@dataclass(frozen=True, slots=True)
class ControlLimits:
    """What the device offers in its configuration space (§5.1.4)."""

    max_pairs: int
    """max_virtqueue_pairs."""
    rss_max_key_size: int
    """rss_max_key_size (at least 40 when RSS is offered, §5.1.4.1)."""
    rss_max_indirection_table_length: int
    """rss_max_indirection_table_length (at least 128 when RSS is offered)."""
    supported_hash_types: HashType

    def __post_init__(self) -> None:
        if not MQ_VQ_PAIRS_MIN <= self.max_pairs <= MQ_VQ_PAIRS_MAX:
            raise ValueError(f"max_pairs {self.max_pairs} outside 1..{MQ_VQ_PAIRS_MAX}")
        if not 0 <= self.rss_max_key_size <= 0xFF:
            raise ValueError("rss_max_key_size is a u8")
        if not 0 <= self.rss_max_indirection_table_length <= 0x10000:
            raise ValueError("rss_max_indirection_table_length out of range")


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The outcome of one command. ``ok`` False means the device answers VIRTIO_NET_ERR;
    ``rule``/``section``/``detail`` then say why. ``response`` holds what the device writes
    before the ack (only NOTF_COAL_VQ_GET has any: a struct virtio_net_ctrl_coal)."""

    ok: bool
    rule: str | None = None
    section: spec.Section | None = None
    detail: str = ""
    changed: frozenset[str] = frozenset()
    response: bytes = b""


class _Refused(Exception):
    """Internal: a validation failure carrying the result to return."""

    def __init__(self, rule: str, section: spec.Section, detail: str) -> None:
        super().__init__(detail)
        self.result = CommandResult(False, rule, section, detail)


def _refuse(rule: str, section: spec.Section, detail: str) -> _Refused:
    return _Refused(rule, section, detail)


def _ok(*changed: str) -> CommandResult:
    return CommandResult(True, changed=frozenset(changed))


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclass(slots=True)
class _Snapshot:
    filter: RxFilter
    queue_pairs: int
    rss: RssConfig | None
    hash_config: HashConfig | None
    guest_offloads: FeatureSet
    notf_coal_tx: NotfCoal
    notf_coal_rx: NotfCoal
    vq_coal: dict[int, NotfCoal] = field(default_factory=dict)
    announces_acked: int = 0


class ControlState:
    """The state the control virtqueue commands (§5.1.6.5) drive, for one negotiated
    feature set. Build a new one at every (re)negotiation; it starts in the reset state."""

    def __init__(
        self,
        mac: bytes,
        limits: ControlLimits,
        negotiated: FeatureSet,
        *,
        promisc: bool = True,
        vq_enabled: Callable[[int], bool] | None = None,
    ) -> None:
        """``promisc``: the RX mode at reset (see :mod:`emulator.net.rx_filter`).
        ``vq_enabled``: whether a data virtqueue index is enabled (for NOTF_COAL VQ_SET /
        VQ_GET); default: every data queue of the device's pairs."""
        self.limits = limits
        self.negotiated = negotiated
        self.filter = RxFilter(mac, vlan_filtering=F.CTRL_VLAN in negotiated, promisc=promisc)
        self.queue_pairs = 1
        self.rss: RssConfig | None = None
        self.hash_config: HashConfig | None = None
        self.guest_offloads: FeatureSet = negotiated & GUEST_OFFLOAD_BITS
        self.notf_coal_tx = NotfCoal()
        self.notf_coal_rx = NotfCoal()
        self._vq_coal: dict[int, NotfCoal] = {}
        self.announces_acked = 0
        self._vq_enabled = vq_enabled

    # --- views ------------------------------------------------------------------------

    @property
    def mac(self) -> bytes:
        """The default MAC (the one the receive filter accepts; ADDR_SET changes it)."""
        return self.filter.mac

    @property
    def data_pairs(self) -> int:
        """Queue pairs the device has for this negotiation: ``max_pairs`` with MQ or RSS,
        else one (§5.1.2)."""
        if FeatureSet.of(F.MQ, F.RSS) & self.negotiated:
            return self.limits.max_pairs
        return 1

    def hash_params(self) -> tuple[HashType, bytes]:
        """Enabled hash types and key for hash calculation (§5.1.6.4.3): from the RSS
        configuration while RSS steers, else from HASH_CONFIG (a VQ_PAIRS_SET after
        RSS_CONFIG ends RSS, §5.1.6.5.5, and with it its hash parameters); nothing
        before the driver configured them."""
        if F.RSS in self.negotiated and self.rss is not None:
            return self.rss.hash_types, self.rss.key
        if self.hash_config is None:
            return HashType(0), b""
        return self.hash_config.hash_types, self.hash_config.key

    def coal_for(self, vq_index: int) -> NotfCoal:
        """Notification coalescing parameters of data virtqueue ``vq_index`` (v1.3
        §5.1.6.5.9): the last VQ_SET for it, else TX_SET/RX_SET's, else 0/0."""
        if vq_index in self._vq_coal:
            return self._vq_coal[vq_index]
        return self.notf_coal_tx if vq_index & 1 else self.notf_coal_rx

    def queue_reenabled(self, vq_index: int) -> None:
        """A data virtqueue was disabled and re-enabled: it goes back to the TX_SET /
        RX_SET parameters (v1.3 §5.1.6.5.9.6)."""
        self._vq_coal.pop(vq_index, None)

    def snapshot(self) -> object:
        """An equality-comparable copy of every piece of state commands can change."""
        return _Snapshot(
            self.filter.copy(), self.queue_pairs, self.rss, self.hash_config,
            self.guest_offloads, self.notf_coal_tx, self.notf_coal_rx, dict(self._vq_coal),
            self.announces_acked,
        )

    # --- execution --------------------------------------------------------------------

    def handle(self, command: bytes) -> CommandResult:
        """Execute the driver-written bytes of a command (header included)."""
        try:
            cls, cmd, data = decode_header(bytes(command))
        except CtrlFormatError as err:
            return CommandResult(False, err.rule, spec.NET_CTRL, str(err))
        return self.execute(cls, cmd, data)

    def execute(self, cls: int, cmd: int, data: bytes) -> CommandResult:
        """Validate and execute one command; never raises."""
        try:
            return self._execute(cls, cmd, bytes(data))
        except _Refused as refused:
            return refused.result
        except CtrlFormatError as err:
            section = err.section if isinstance(err.section, spec.Section) else spec.NET_CTRL
            return CommandResult(False, err.rule, section, f"{command_name(cls, cmd)}: {err}")

    def _execute(self, cls: int, cmd: int, data: bytes) -> CommandResult:
        try:
            klass = CtrlClass(cls)
        except ValueError:
            raise _refuse("ctrl-unknown-class", spec.NET_CTRL,
                          f"class {cls} is not a VIRTIO_NET_CTRL_ class") from None
        try:
            COMMANDS[klass](cmd)
        except ValueError:
            raise _refuse("ctrl-unknown-command", spec.NET_CTRL,
                          f"command {cmd} is not defined in class {klass.name}") from None
        name = command_name(cls, cmd)
        req = COMMAND_FEATURE[cls, cmd]
        missing = ((F.CTRL_VQ,) if F.CTRL_VQ not in self.negotiated else ()) + req.missing(
            self.negotiated
        )
        if missing:
            raise _refuse("ctrl-not-negotiated", req.section,
                          f"{name} needs {' and '.join(f.name for f in missing)} negotiated")
        handler = _HANDLERS[klass]
        return handler(self, cmd, data)

    # RX, §5.1.6.5.1
    def _rx(self, cmd: int, data: bytes) -> CommandResult:
        on = decode_rx_mode(data)
        rx = RxCmd(cmd)
        if self.filter.mode(rx) == on:
            return _ok()
        self.filter.set_mode(rx, on)
        return _ok("rx_filter")

    # MAC, §5.1.6.5.2
    def _mac(self, cmd: int, data: bytes) -> CommandResult:
        if cmd == MacCmd.ADDR_SET:
            mac = decode_mac(data)
            if mac == self.filter.mac:
                return _ok()
            self.filter.set_mac(mac)
            return _ok("mac")
        table = MacTable.parse(data)
        for i, m in enumerate(table.unicast):
            if m[0] & 1:
                raise _refuse("ctrl-mac-table-class", spec.NET_CTRL_MAC_DRIVER,
                              f"unicast table entry {i} ({m.hex(':')}) is a multicast address")
        for i, m in enumerate(table.multicast):
            if not m[0] & 1:
                raise _refuse("ctrl-mac-table-class", spec.NET_CTRL_MAC_DRIVER,
                              f"multicast table entry {i} ({m.hex(':')}) is a unicast address")
        before = (self.filter.unicast_table, self.filter.multicast_table)
        self.filter.set_mac_table(table)
        if (self.filter.unicast_table, self.filter.multicast_table) == before:
            return _ok()
        return _ok("rx_filter")

    # VLAN, §5.1.6.5.3
    def _vlan(self, cmd: int, data: bytes) -> CommandResult:
        vid = decode_vlan(data)
        if vid >= VLAN_ID_LIMIT:
            raise _refuse("ctrl-vlan-id-out-of-range", spec.NET_CTRL_VLAN,
                          f"VLAN id {vid} is not below {VLAN_ID_LIMIT}")
        before = self.filter.vlans
        if cmd == VlanCmd.ADD:
            self.filter.add_vlan(vid)
        else:
            self.filter.remove_vlan(vid)
        return _ok("rx_filter") if self.filter.vlans != before else _ok()

    # ANNOUNCE, §5.1.6.5.4
    def _announce(self, cmd: int, data: bytes) -> CommandResult:
        if data:
            raise CtrlFormatError(
                f"ANNOUNCE_ACK carries no data, got {len(data)} bytes", rule="ctrl-data-long",
                section=spec.NET_CTRL_ANNOUNCE,
            )
        self.announces_acked += 1
        return _ok("announce")

    # MQ, §5.1.6.5.5-7
    def _mq(self, cmd: int, data: bytes) -> CommandResult:
        if cmd == MqCmd.VQ_PAIRS_SET:
            return self._vq_pairs_set(data)
        if cmd == MqCmd.RSS_CONFIG:
            return self._rss_config(data)
        return self._hash_config(data)

    def _vq_pairs_set(self, data: bytes) -> CommandResult:
        pairs = decode_vq_pairs(data)
        top = self.limits.max_pairs
        if not MQ_VQ_PAIRS_MIN <= pairs <= top:
            raise _refuse("ctrl-vq-pairs-out-of-range", spec.NET_MQ_STEERING_DRIVER,
                          f"virtqueue_pairs {pairs} is outside 1..{top} (max_virtqueue_pairs)")
        changed = []
        if pairs != self.queue_pairs:
            changed.append("queue_pairs")
        if self.rss is not None:
            changed.append("rss")
        self.queue_pairs = pairs
        self.rss = None
        return _ok(*changed)

    def _check_hash(self, hash_types: HashType, key: bytes, rss: bool) -> None:
        limits = self.limits
        prefix = "ctrl-rss-" if rss else "ctrl-hash-"
        unsupported = int(hash_types) & ~int(limits.supported_hash_types)
        if unsupported:
            raise _refuse("ctrl-rss-hash-types-unsupported" if rss else "ctrl-hash-types-unsupported",
                          spec.NET_RSS_DRIVER if rss else spec.NET_HASH_TYPES,
                          f"hash_types {int(hash_types):#x} has {unsupported:#x} outside "
                          f"supported_hash_types {int(limits.supported_hash_types):#x}")
        if len(key) > limits.rss_max_key_size:
            raise _refuse(f"{prefix}key-too-long", spec.NET_CONFIG,
                          f"hash_key_length {len(key)} exceeds rss_max_key_size "
                          f"{limits.rss_max_key_size}")
        if hash_types and not key:
            raise _refuse(f"{prefix}key-missing", spec.NET_RSS_SET if rss else spec.NET_MQ_HASH,
                          f"hash_types {int(hash_types):#x} enabled with an empty key "
                          "(QEMU: \"No key provided\")")

    def _rss_config(self, data: bytes) -> CommandResult:
        cfg = RssConfig.parse(data)
        n = len(cfg.indirection_table)
        if not _is_power_of_two(n):
            raise _refuse("ctrl-rss-table-not-power-of-two", spec.NET_RSS_DRIVER,
                          f"indirection_table_mask {n - 1}: {n} entries is not a power of two")
        limit = self.limits.rss_max_indirection_table_length
        if n > limit:
            raise _refuse("ctrl-rss-table-too-long", spec.NET_RSS_DRIVER,
                          f"indirection_table_mask {n - 1} is not below "
                          f"rss_max_indirection_table_length {limit}")
        self._check_hash(cfg.hash_types, cfg.key, rss=True)
        pairs = self.limits.max_pairs
        if cfg.unclassified_queue >= pairs:
            raise _refuse("ctrl-rss-queue-out-of-range", spec.NET_RSS_DRIVER,
                          f"unclassified_queue {cfg.unclassified_queue} names no receive "
                          f"queue (the device has {pairs})")
        for i, q in enumerate(cfg.indirection_table):
            if q >= pairs:
                raise _refuse("ctrl-rss-queue-out-of-range", spec.NET_RSS_DRIVER,
                              f"indirection_table[{i}] = {q} names no receive queue "
                              f"(the device has {pairs})")
        if not MQ_VQ_PAIRS_MIN <= cfg.max_tx_vq <= pairs:
            raise _refuse("ctrl-rss-max-tx-vq-out-of-range", spec.NET_RSS_SET,
                          f"max_tx_vq {cfg.max_tx_vq} is outside 1..{pairs}")
        changed = []
        if cfg != self.rss:
            changed.append("rss")
        if cfg.max_tx_vq != self.queue_pairs:
            changed.append("queue_pairs")
        self.rss = cfg
        self.queue_pairs = cfg.max_tx_vq
        return _ok(*changed)

    def _hash_config(self, data: bytes) -> CommandResult:
        cfg = HashConfig.parse(data)
        if any(cfg.reserved):
            raise _refuse("ctrl-hash-reserved-nonzero", spec.NET_MQ_HASH,
                          f"reserved is {list(cfg.reserved)}; it MUST contain zeroes")
        self._check_hash(cfg.hash_types, cfg.key, rss=False)
        if cfg == self.hash_config:
            return _ok()
        self.hash_config = cfg
        return _ok("hash")

    # GUEST_OFFLOADS, §5.1.6.5.8
    def _offloads(self, cmd: int, data: bytes) -> CommandResult:
        wanted = decode_offloads(data)
        unknown = wanted - GUEST_OFFLOAD_BITS
        if unknown:
            raise _refuse("ctrl-offloads-unknown", spec.NET_CTRL_OFFLOADS_SET,
                          f"offloads {unknown!r} are not offloads this command controls")
        not_negotiated = wanted - self.negotiated
        if not_negotiated:
            raise _refuse("ctrl-offloads-not-negotiated", spec.NET_CTRL_OFFLOADS_DRIVER,
                          f"offloads {not_negotiated!r} were not negotiated")
        if wanted == self.guest_offloads:
            return _ok()
        self.guest_offloads = wanted
        return _ok("offloads")

    # NOTF_COAL, v1.3 §5.1.6.5.9
    def _check_vq(self, vq_index: int) -> None:
        queues = 2 * self.data_pairs
        if vq_index >= queues or (self._vq_enabled is not None and not self._vq_enabled(vq_index)):
            raise _refuse("ctrl-coal-vq-not-enabled", spec.NET_NOTF_COAL_DEVICE,
                          f"vq_index {vq_index} is not an enabled transmit or receive "
                          f"virtqueue ({queues} data virtqueues)")

    def _notf_coal(self, cmd: int, data: bytes) -> CommandResult:
        if cmd == NotfCoalCmd.VQ_GET:
            vq = decode_coal_vq_get(data)
            self._check_vq(vq)
            return CommandResult(True, response=self.coal_for(vq).emit())
        if cmd == NotfCoalCmd.VQ_SET:
            vcoal = VqNotfCoal.parse(data)
            self._check_vq(vcoal.vq_index)
            before = self.coal_for(vcoal.vq_index)
            self._vq_coal[vcoal.vq_index] = vcoal.coal
            return _ok("notf_coal") if vcoal.coal != before else _ok()
        coal = NotfCoal.parse(data)
        parity = 1 if cmd == NotfCoalCmd.TX_SET else 0
        overridden = [q for q in self._vq_coal if q & 1 == parity]
        changed = any(self._vq_coal[q] != coal for q in overridden)
        for q in overridden:
            del self._vq_coal[q]
        if cmd == NotfCoalCmd.TX_SET:
            changed = changed or coal != self.notf_coal_tx
            self.notf_coal_tx = coal
        else:
            changed = changed or coal != self.notf_coal_rx
            self.notf_coal_rx = coal
        return _ok("notf_coal") if changed else _ok()


_HANDLERS: dict[CtrlClass, Callable[[ControlState, int, bytes], CommandResult]] = {
    CtrlClass.RX: ControlState._rx,
    CtrlClass.MAC: ControlState._mac,
    CtrlClass.VLAN: ControlState._vlan,
    CtrlClass.ANNOUNCE: ControlState._announce,
    CtrlClass.MQ: ControlState._mq,
    CtrlClass.GUEST_OFFLOADS: ControlState._offloads,
    CtrlClass.NOTF_COAL: ControlState._notf_coal,
}
