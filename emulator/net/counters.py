"""Counters of the network device: what it moved, what it dropped and why.

Bytes count Ethernet frame bytes, without the virtio_net_hdr. Notifications are counted
per queue where they arrive (§5.1.2: receiveq1 = 0, transmitq1 = 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass
class NetCounters:
    tx_frames: int = 0
    tx_bytes: int = 0
    tx_chains: int = 0
    tx_descriptors: int = 0
    tx_notifications: int = 0
    rx_frames: int = 0
    rx_bytes: int = 0
    rx_chains: int = 0
    rx_descriptors: int = 0
    rx_notifications: int = 0
    interrupts: int = 0
    """Used buffer interrupts raised."""
    interrupts_suppressed: int = 0
    """Batches after which the driver's suppression (NO_INTERRUPT / used_event) said no."""
    config_interrupts: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    """Drop reason -> count."""

    def drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: every counter, drops sorted by reason."""
        out: dict[str, object] = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name != "drops"
        }
        out["drops"] = dict(sorted(self.drops.items()))
        return out
