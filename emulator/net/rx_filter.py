"""The device's receive filter: RX modes (§5.1.6.5.1), the default MAC and the MAC
filtering table (§5.1.6.5.2), the VLAN filter table (§5.1.6.5.3).

The decision order is QEMU's (hw/net/virtio-net.c ``receive_filter``), which matches every
"SHOULD ... even if" of §5.1.6.5.1.1:

1. promiscuous: accept everything (PROMISC "SHOULD take effect even if one of the other
   modes ... is on");
2. a frame with an 802.1Q tag (TPID 0x8100 at offset 12) whose VID is not in the VLAN
   table is dropped (``rx-filter-vlan``) while VLAN filtering is active — only when
   CTRL_VLAN was negotiated; without it every VLAN passes, as QEMU fills its table;
3. broadcast: accept unless NOBCAST (``rx-filter-broadcast``); NOMULTI does not apply to
   broadcast and NOBCAST wins over ALLMULTI;
4. other multicast: drop on NOMULTI (even with ALLMULTI), accept on ALLMULTI or a match in
   the multicast table, else drop (``rx-filter-multicast``);
5. unicast: drop on NOUNI (even with ALLUNI, even the device's own MAC), accept on ALLUNI,
   the default MAC or a match in the unicast table, else drop (``rx-filter-unicast``)
   (§5.1.6.5.2.1: the device SHOULD drop a destination matching neither).

State at reset (:meth:`RxFilter.__init__`). The spec fixes only "an empty MAC filtering
table on reset" (§5.1.6.5.2.1) and says nothing of the RX modes; QEMU's
``virtio_net_reset`` starts *promiscuous* ("compatibility mode") with every other mode off,
so a driver that never negotiates CTRL_RX still receives everything, and the Linux driver
turns promiscuous mode off itself with VIRTIO_NET_CTRL_RX_PROMISC when it opens the
interface. We do the same by default; ``promisc=False`` gives the strict reading of
§5.1.6.5.2.1. The VLAN table starts empty (QEMU's ``virtio_net_set_features`` clears it
when CTRL_VLAN is negotiated), so with CTRL_VLAN every tagged frame is dropped until the
driver adds its VIDs.

Short frames never raise: the device drops runts before the filter, but the filter still
decides something for any bytes. In promiscuous mode everything is accepted. Otherwise a
frame shorter than a destination MAC (6 bytes) is dropped as ``rx-filter-unicast`` (it can
match no address); a frame shorter than the 14-byte Ethernet header has no ethertype and is
classified by its destination only; a frame with TPID 0x8100 but truncated inside its tag
has no VID and is dropped as ``rx-filter-vlan`` while VLAN filtering is active.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stack.wire.ethernet import BROADCAST, HEADER_LEN, EtherType
from virtio import spec
from virtio.ctrl import MAC_LEN, VLAN_ID_LIMIT, MacTable, RxCmd

DROP_UNICAST = "rx-filter-unicast"
DROP_MULTICAST = "rx-filter-multicast"
DROP_BROADCAST = "rx-filter-broadcast"
DROP_VLAN = "rx-filter-vlan"

DROP_REASONS = (DROP_UNICAST, DROP_MULTICAST, DROP_BROADCAST, DROP_VLAN)
"""Every reason :meth:`RxFilter.check` can return."""

SECTIONS = {
    DROP_UNICAST: spec.NET_CTRL_MAC_DEVICE,
    DROP_MULTICAST: spec.NET_CTRL_RX_DEVICE,
    DROP_BROADCAST: spec.NET_CTRL_RX_DEVICE,
    DROP_VLAN: spec.NET_CTRL_VLAN,
}
"""The section behind each drop reason."""

_MODE_FIELD = {
    RxCmd.PROMISC: "promisc",
    RxCmd.ALLMULTI: "allmulti",
    RxCmd.ALLUNI: "alluni",
    RxCmd.NOMULTI: "nomulti",
    RxCmd.NOUNI: "nouni",
    RxCmd.NOBCAST: "nobcast",
}

_TPID_OFFSET = 12


def _check_mac(mac: bytes) -> bytes:
    if len(mac) != MAC_LEN:
        raise ValueError(f"a MAC address is 6 bytes, not {len(mac)}")
    return bytes(mac)


@dataclass(eq=True)
class RxFilter:
    """Receive filter state. Compare two filters with ``==``; :meth:`copy` snapshots one."""

    mac: bytes
    """The default MAC (config ``mac`` or the last VIRTIO_NET_CTRL_MAC_ADDR_SET)."""
    vlan_filtering: bool = False
    """Whether tagged frames are checked against :attr:`vlans` (CTRL_VLAN negotiated)."""
    promisc: bool = True
    allmulti: bool = False
    alluni: bool = False
    nomulti: bool = False
    nouni: bool = False
    nobcast: bool = False
    unicast_table: frozenset[bytes] = field(default_factory=frozenset)
    multicast_table: frozenset[bytes] = field(default_factory=frozenset)
    vlans: int = 0
    """The VLAN table: bit ``vid`` set when the VID is allowed (4096 bits)."""

    def __post_init__(self) -> None:
        self.mac = _check_mac(self.mac)

    def copy(self) -> RxFilter:
        return RxFilter(
            self.mac, self.vlan_filtering, self.promisc, self.allmulti, self.alluni,
            self.nomulti, self.nouni, self.nobcast, self.unicast_table, self.multicast_table,
            self.vlans,
        )

    # --- updates (the control executor validates before calling these) -----------------

    def mode(self, cmd: RxCmd) -> bool:
        return bool(getattr(self, _MODE_FIELD[cmd]))

    def set_mode(self, cmd: RxCmd, on: bool) -> None:
        setattr(self, _MODE_FIELD[cmd], bool(on))

    def set_mac(self, mac: bytes) -> None:
        self.mac = _check_mac(mac)

    def set_mac_table(self, table: MacTable) -> None:
        self.unicast_table = frozenset(_check_mac(m) for m in table.unicast)
        self.multicast_table = frozenset(_check_mac(m) for m in table.multicast)

    def vlan_allowed(self, vid: int) -> bool:
        return 0 <= vid < VLAN_ID_LIMIT and bool(self.vlans >> vid & 1)

    def add_vlan(self, vid: int) -> None:
        if not 0 <= vid < VLAN_ID_LIMIT:
            raise ValueError(f"VLAN id {vid} is not below {VLAN_ID_LIMIT}")
        self.vlans |= 1 << vid

    def remove_vlan(self, vid: int) -> None:
        if not 0 <= vid < VLAN_ID_LIMIT:
            raise ValueError(f"VLAN id {vid} is not below {VLAN_ID_LIMIT}")
        self.vlans &= ~(1 << vid)

    def vlan_ids(self) -> list[int]:
        return [v for v in range(VLAN_ID_LIMIT) if self.vlans >> v & 1]

    # --- the decision -----------------------------------------------------------------

    def check(self, frame: bytes | bytearray | memoryview) -> str | None:
        """None to accept ``frame`` (starting at the destination MAC), else the drop
        reason (one of :data:`DROP_REASONS`). Never raises."""
        if self.promisc:
            return None
        if len(frame) < MAC_LEN:
            return DROP_UNICAST
        if (
            self.vlan_filtering
            and len(frame) >= HEADER_LEN
            and int.from_bytes(frame[_TPID_OFFSET:HEADER_LEN], "big") == EtherType.VLAN
        ):
            if len(frame) < HEADER_LEN + 2:
                return DROP_VLAN
            vid = int.from_bytes(frame[HEADER_LEN : HEADER_LEN + 2], "big") & 0x0FFF
            if not self.vlans >> vid & 1:
                return DROP_VLAN
        dst = bytes(frame[:MAC_LEN])
        if dst[0] & 1:
            if dst == BROADCAST:
                return DROP_BROADCAST if self.nobcast else None
            if self.nomulti:
                return DROP_MULTICAST
            if self.allmulti or dst in self.multicast_table:
                return None
            return DROP_MULTICAST
        if self.nouni:
            return DROP_UNICAST
        if self.alluni or dst == self.mac or dst in self.unicast_table:
            return None
        return DROP_UNICAST

