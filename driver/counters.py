"""What the virtio-net driver counts (for scenarios, reports and assertions)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DriverCounters:
    """Counters of one :class:`driver.net.VirtioNetDriver`. ``drops`` maps a stable
    reason name (the rule name when a device error caused the drop) to a count."""

    tx_frames: int = 0
    tx_bytes: int = 0
    tx_kicks: int = 0
    tx_kicks_suppressed: int = 0
    tx_ring_full: int = 0
    tx_no_memory: int = 0
    """Large packets refused because guest memory had no room for their buffer."""
    tx_gso_packets: int = 0
    tx_csum_offloads: int = 0
    rx_frames: int = 0
    rx_bytes: int = 0
    rx_refills: int = 0
    rx_kicks: int = 0
    interrupts: int = 0
    config_interrupts: int = 0
    used_reaped: int = 0
    ctrl_commands: int = 0
    """Control commands the device answered."""
    ctrl_errors: int = 0
    """Of those, answered VIRTIO_NET_ERR."""
    announces: int = 0
    """Announcements the device asked for (GUEST_ANNOUNCE) and the driver acked."""
    drops: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def as_dict(self) -> dict[str, int | dict[str, int]]:
        """A JSON-ready copy."""
        out: dict[str, int | dict[str, int]] = {
            name: value for name, value in vars(self).items() if isinstance(value, int)
        }
        out["drops"] = dict(sorted(self.drops.items()))
        return out
