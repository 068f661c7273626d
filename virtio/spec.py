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
    version: str = "1.2"
    """The spec version the number belongs to: 1.2 unless the section is newer."""

    def __str__(self) -> str:
        return f"virtio-v{self.version} §{self.number} {self.title}"


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
NET_RX_DRIVER = Section(
    "5.1.6.4.2", "Network Device: Driver Requirements: Processing of Incoming Packets"
)
NET_HASH = Section("5.1.6.4.3", "Network Device: Hash calculation for incoming packets")
NET_HASH_TYPES = Section("5.1.6.4.3.1", "Network Device: Supported/enabled hash types")
NET_HASH_IPV4 = Section("5.1.6.4.3.2", "Network Device: IPv4 packets")
NET_HASH_IPV6 = Section("5.1.6.4.3.3", "Network Device: IPv6 packets without extension header")
NET_HASH_IPV6_EX = Section("5.1.6.4.3.4", "Network Device: IPv6 packets with extension header")
NET_HASH_REPORT = Section("5.1.6.4.4", "Network Device: Hash reporting for incoming packets")
NET_CTRL_RX = Section("5.1.6.5.1", "Network Device: Packet Receive Filtering")
NET_CTRL_RX_DEVICE = Section(
    "5.1.6.5.1.1", "Network Device: Device Requirements: Packet Receive Filtering"
)
NET_CTRL_RX_DRIVER = Section(
    "5.1.6.5.1.2", "Network Device: Driver Requirements: Packet Receive Filtering"
)
NET_CTRL_MAC = Section("5.1.6.5.2", "Network Device: Setting MAC Address Filtering")
NET_CTRL_MAC_DEVICE = Section(
    "5.1.6.5.2.1", "Network Device: Device Requirements: Setting MAC Address Filtering"
)
NET_CTRL_MAC_DRIVER = Section(
    "5.1.6.5.2.2", "Network Device: Driver Requirements: Setting MAC Address Filtering"
)
NET_CTRL_VLAN = Section("5.1.6.5.3", "Network Device: VLAN Filtering")
NET_CTRL_ANNOUNCE = Section("5.1.6.5.4", "Network Device: Gratuitous Packet Sending")
NET_CTRL_ANNOUNCE_DRIVER = Section(
    "5.1.6.5.4.1", "Network Device: Driver Requirements: Gratuitous Packet Sending"
)
NET_CTRL_ANNOUNCE_DEVICE = Section(
    "5.1.6.5.4.2", "Network Device: Device Requirements: Gratuitous Packet Sending"
)
NET_MQ = Section("5.1.6.5.5", "Network Device: Device operation in multiqueue mode")
NET_MQ_STEERING = Section(
    "5.1.6.5.6", "Network Device: Automatic receive steering in multiqueue mode"
)
NET_MQ_STEERING_DRIVER = Section(
    "5.1.6.5.6.1",
    "Network Device: Driver Requirements: Automatic receive steering in multiqueue mode",
)
NET_MQ_STEERING_DEVICE = Section(
    "5.1.6.5.6.2",
    "Network Device: Device Requirements: Automatic receive steering in multiqueue mode",
)
NET_MQ_HASH = Section("5.1.6.5.6.4", "Network Device: Hash calculation")
NET_RSS = Section("5.1.6.5.7", "Network Device: Receive-side scaling (RSS)")
NET_RSS_SET = Section("5.1.6.5.7.1", "Network Device: Setting RSS parameters")
NET_RSS_DRIVER = Section(
    "5.1.6.5.7.2", "Network Device: Driver Requirements: Setting RSS parameters"
)
NET_RSS_DEVICE = Section("5.1.6.5.7.3", "Network Device: Device Requirements: RSS processing")
NET_CTRL_OFFLOADS = Section("5.1.6.5.8", "Network Device: Offloads State Configuration")
NET_CTRL_OFFLOADS_SET = Section("5.1.6.5.8.1", "Network Device: Setting Offloads State")
NET_CTRL_OFFLOADS_DRIVER = Section(
    "5.1.6.5.8.2", "Network Device: Driver Requirements: Setting Offloads State"
)

# Added after 1.2: numbered as in virtio-v1.3 (oasis-tcs/virtio-spec tag v1.3-wd02)
NET_NOTF_COAL = Section("5.1.6.5.9", "Network Device: Notifications Coalescing", "1.3")
NET_NOTF_COAL_DRIVER = Section(
    "5.1.6.5.9.5", "Network Device: Driver Requirements: Notifications Coalescing", "1.3"
)
NET_NOTF_COAL_DEVICE = Section(
    "5.1.6.5.9.6", "Network Device: Device Requirements: Notifications Coalescing", "1.3"
)
