"""References into the OASIS virtio specification.

Section numbers are those of *Virtual I/O Device (VIRTIO) Version 1.2* (the last standard;
``device-types/net/`` in the oasis-tcs/virtio-spec repository for the net chapter). The
title is kept beside the number so a reference survives renumbering in later drafts. Code
and tests cite these constants rather than spelling section numbers again.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Section:
    """One section of the virtio specification."""

    number: str
    title: str

    def __str__(self) -> str:
        return f"virtio-v1.2 §{self.number} {self.title}"


# Basic facilities (chapter 2)
DEVICE_STATUS = Section("2.1", "Device Status Field")
DEVICE_STATUS_DRIVER = Section("2.1.1", "Driver Requirements: Device Status Field")
DEVICE_STATUS_DEVICE = Section("2.1.2", "Device Requirements: Device Status Field")
FEATURE_BITS = Section("2.2", "Feature Bits")
FEATURE_BITS_DRIVER = Section("2.2.1", "Driver Requirements: Feature Bits")
FEATURE_BITS_DEVICE = Section("2.2.2", "Device Requirements: Feature Bits")
NOTIFICATIONS = Section("2.3", "Notifications")
DEVICE_RESET = Section("2.4", "Device Reset")
CONFIG_SPACE = Section("2.5", "Device Configuration Space")
VIRTQUEUES = Section("2.6", "Virtqueues")
SPLIT_VIRTQUEUES = Section("2.7", "Split Virtqueues")
VIRTQUEUE_ALIGNMENT = Section("2.7.2", "Virtqueue Alignment")
MESSAGE_FRAMING = Section("2.7.4", "Message Framing")
DESC_TABLE = Section("2.7.5", "The Virtqueue Descriptor Table")
DESC_TABLE_DRIVER = Section("2.7.5.1", "Driver Requirements: The Virtqueue Descriptor Table")
DESC_TABLE_DEVICE = Section("2.7.5.2", "Device Requirements: The Virtqueue Descriptor Table")
INDIRECT_DESC = Section("2.7.5.3", "Indirect Descriptors")
INDIRECT_DESC_DRIVER = Section("2.7.5.3.1", "Driver Requirements: Indirect Descriptors")
INDIRECT_DESC_DEVICE = Section("2.7.5.3.2", "Device Requirements: Indirect Descriptors")
AVAIL_RING = Section("2.7.6", "The Virtqueue Available Ring")
USED_NOTIF_SUPPRESSION = Section("2.7.7", "Used Buffer Notification Suppression")
USED_RING = Section("2.7.8", "The Virtqueue Used Ring")
USED_RING_DEVICE = Section("2.7.8.1", "Device Requirements: The Virtqueue Used Ring")
USED_RING_DRIVER = Section("2.7.8.2", "Driver Requirements: The Virtqueue Used Ring")
AVAIL_NOTIF_SUPPRESSION = Section("2.7.10", "Available Buffer Notification Suppression")
SUPPLYING_BUFFERS = Section("2.7.13", "Supplying Buffers to The Device")
RECEIVING_USED = Section("2.7.14", "Receiving Used Buffers From The Device")
DEVICE_INIT = Section("3.1.1", "Driver Requirements: Device Initialization")
MMIO_REGISTERS = Section("4.2.2", "MMIO Device Register Layout")
MMIO_REGISTERS_DEVICE = Section("4.2.2.1", "Device Requirements: MMIO Device Register Layout")
MMIO_REGISTERS_DRIVER = Section("4.2.2.2", "Driver Requirements: MMIO Device Register Layout")
MMIO_INIT = Section("4.2.3", "MMIO-specific Initialization And Device Operation")
RESERVED_FEATURE_BITS = Section("6", "Reserved Feature Bits")
RESERVED_FEATURE_BITS_DRIVER = Section("6.1", "Driver Requirements: Reserved Feature Bits")
RESERVED_FEATURE_BITS_DEVICE = Section("6.2", "Device Requirements: Reserved Feature Bits")

# Network device (section 5.1)
NET = Section("5.1", "Network Device")
NET_FEATURE_BITS = Section("5.1.3", "Network Device: Feature bits")
NET_FEATURE_REQUIREMENTS = Section("5.1.3.1", "Network Device: Feature bit requirements")
NET_CONFIG = Section("5.1.4", "Network Device: Device configuration layout")
NET_CONFIG_DEVICE = Section("5.1.4.1", "Network Device: Device Requirements: Device configuration layout")
NET_CONFIG_DRIVER = Section("5.1.4.2", "Network Device: Driver Requirements: Device configuration layout")
NET_INIT = Section("5.1.5", "Network Device: Device Initialization")
NET_OPERATION = Section("5.1.6", "Network Device: Device Operation")
NET_TX = Section("5.1.6.2", "Network Device: Packet Transmission")
NET_TX_DRIVER = Section("5.1.6.2.1", "Network Device: Driver Requirements: Packet Transmission")
NET_TX_DEVICE = Section("5.1.6.2.2", "Network Device: Device Requirements: Packet Transmission")
NET_RX_BUFFERS = Section("5.1.6.3", "Network Device: Setting Up Receive Buffers")
NET_RX_BUFFERS_DRIVER = Section(
    "5.1.6.3.1", "Network Device: Driver Requirements: Setting Up Receive Buffers"
)
NET_RX = Section("5.1.6.4", "Network Device: Processing of Incoming Packets")
NET_RX_DEVICE = Section(
    "5.1.6.4.1", "Network Device: Device Requirements: Processing of Incoming Packets"
)
NET_CTRL = Section("5.1.6.5", "Network Device: Control Virtqueue")
