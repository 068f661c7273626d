"""Counters of the network device: what it moved, what it dropped and why.

Bytes count Ethernet frame bytes, without the virtio_net_hdr. Notifications are counted
per queue where they arrive (§5.1.2: receiveq1 = 0, transmitq1 = 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

_MAPS = ("drops", "tx_notes", "tx_seeds", "rx_queue_packets", "tx_queue_packets")


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
    tx_gso_ecn_packets: int = 0
    """Of those, packets with the ECN gso bit: CWR on the first segment only (HOST_ECN)."""
    tx_csum_offloads: int = 0
    """Packets whose L4 checksum the device completed (NEEDS_CSUM)."""
    tx_backpressure: int = 0
    """Times transmit paused because the backend was full (chains left in the ring)."""
    rx_frames: int = 0
    rx_bytes: int = 0
    rx_chains: int = 0
    rx_descriptors: int = 0
    rx_notifications: int = 0
    rx_coalesced: int = 0
    """Packets placed for the driver that were coalesced from several wire frames."""
    rx_coalesced_segments: int = 0
    """Wire frames merged into those packets."""
    rx_offloads_passed: int = 0
    """Received packets with a partial checksum / GSO passed on to the driver as such."""
    rx_offloads_finished: int = 0
    """Received packets whose checksum the device completed or which it segmented
    before delivery (the driver had not accepted that offload, or the profile says so)."""
    rx_oversize_retries: int = 0
    """Attempts to place a frame larger than the receive buffer again (profiles with
    ``rx_oversize_retry_ns``: Firecracker's old hang)."""
    rx_resegmented: int = 0
    """Coalesced packets cut back into wire segments at delivery because their kind is
    switched off (CTRL_GUEST_OFFLOADS). A safety net: the device flushes what it holds
    before it executes GUEST_OFFLOADS_SET, so this stays 0 unless that order breaks."""
    interrupts: int = 0
    """Used buffer interrupts raised."""
    interrupts_suppressed: int = 0
    """Batches after which the driver's suppression (NO_INTERRUPT / used_event) said no."""
    config_interrupts: int = 0
    ctrl_notifications: int = 0
    ctrl_commands: int = 0
    """Control virtqueue commands processed (§5.1.6.5)."""
    ctrl_errors: int = 0
    """Commands answered VIRTIO_NET_ERR (or without an ack buffer)."""
    announces: int = 0
    """Announcements requested from the driver (GUEST_ANNOUNCE)."""
    rx_queue_packets: dict[int, int] = field(default_factory=dict)
    """Receive queue pair (0 = receiveq1) -> packets placed."""
    tx_queue_packets: dict[int, int] = field(default_factory=dict)
    """Transmit queue pair (0 = transmitq1) -> packets sent."""
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
        out["rx_queue_packets"] = {str(k): v for k, v in sorted(self.rx_queue_packets.items())}
        out["tx_queue_packets"] = {str(k): v for k, v in sorted(self.tx_queue_packets.items())}
        return out
