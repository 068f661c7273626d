"""The virtio network device (§5.1)."""

from emulator.net.counters import NetCounters
from emulator.net.device import IMPLEMENTED, NetDevice, NetDeviceConfig

__all__ = ["IMPLEMENTED", "NetCounters", "NetDevice", "NetDeviceConfig"]
