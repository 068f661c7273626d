"""Counters of the network device: what it moved, what it dropped and why.

Bytes count Ethernet frame bytes, without the virtio_net_hdr. Notifications are counted
per queue where they arrive (§5.1.2: receiveq1 = 0, transmitq1 = 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

_MAPS = ("drops", "tx_notes", "tx_seeds")


@dataclass
class NetCounters:
    tx_frames: int = 0
    tx_bytes: int = 0
    tx_chains: int = 0
    tx_descriptors: int = 0
    tx_notifications: int = 0
    tx_packets: int = 0
    """Packets the driver handed over that went out (as one frame or as segments)."""
    tx_gso_packets: int = 0
    """Packets the device segmented (TSO/USO/UFO)."""
    tx_csum_offloads: int = 0
    """Packets whose L4 checksum the device completed (NEEDS_CSUM)."""
    rx_frames: int = 0
    rx_bytes: int = 0
    rx_chains: int = 0
    rx_descriptors: int = 0
    rx_notifications: int = 0
    rx_coalesced: int = 0
    """Packets placed for the driver that were coalesced from several wire frames."""
    rx_coalesced_segments: int = 0
    """Wire frames merged into those packets."""
    interrupts: int = 0
    """Used buffer interrupts raised."""
    interrupts_suppressed: int = 0
    """Batches after which the driver's suppression (NO_INTERRUPT / used_event) said no."""
    config_interrupts: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    """Drop reason -> count."""
    tx_notes: dict[str, int] = field(default_factory=dict)
    """Offload engine notes (rule -> count): what the profile fixed or allowed and the
    pseudo-header seed convention the driver used."""
    tx_seeds: dict[str, int] = field(default_factory=dict)
    """Pseudo-header seed conventions seen in NEEDS_CSUM packets: "full-length",
    "zero-length" or "other" -> count (§5.1.6.2; Linux seeds with the length, Windows and
    Intel with 0)."""

    def drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: every counter, drops sorted by reason."""
        out: dict[str, object] = {
            f.name: getattr(self, f.name) for f in fields(self)
            if f.name not in _MAPS
        }
        out["drops"] = dict(sorted(self.drops.items()))
        out["tx_notes"] = dict(sorted(self.tx_notes.items()))
        out["tx_seeds"] = dict(sorted(self.tx_seeds.items()))
        return out
