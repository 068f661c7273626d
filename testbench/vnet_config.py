"""What a test's emulated hosts are made of: :class:`VnetConfig`, the one value the pytest
plugin's fixtures (:mod:`testbench.pytest_plugin`) build devices, drivers, hosts and
pairs from. Plain Python, usable without pytest."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from driver.net import DriverConfig
from emulator.backends.wire import FaultConfig
from emulator.net.device import NetDeviceConfig
from emulator.profiles import get_profile
from testbench.feature_spec import parse_spec
from testbench.host import MIB, HostConfig
from testbench.negotiation import accept_sets, offer_sets
from testbench.tcp_bulk import MODES
from virtio.features import FeatureSet

__all__ = ["PRESETS", "VnetConfig"]

PRESETS: Mapping[str, FeatureSet] = MODES
"""Named accepted sets: ``tso`` (transmit segmentation, receive coalescing, mergeable
buffers), ``csum`` (checksum offload both ways) and ``none`` (no offload), as the TCP
bulk scenario uses them (testbench/tcp_bulk.py)."""


@dataclass(frozen=True)
class VnetConfig:
    """One emulated host (both hosts of a pair use the same one)."""

    profile: str = "strict"
    """Device profile: strict, linux, qemu, firecracker... (emulator/profiles.py)."""
    offer: str = "default"
    """Features the device offers, a SPEC (testbench/feature_spec.py)."""
    accept: str = "default"
    """Features the driver asks for: a SPEC or a preset name (:data:`PRESETS`)."""
    quirks: tuple[str, ...] = ()
    """Named driver quirks to switch on (driver/quirks.py; needs a driver that has them)."""
    queue_size: int = 256
    mtu: int = 1500
    faults: FaultConfig = field(default_factory=FaultConfig)
    """What goes wrong on the wire between the hosts of a pair."""
    seed: int = 1
    """Seed of the wire's fault draws."""
    memory: int = 32 * MIB
    """Guest memory per host."""
    rx_buffer_size: int | None = None
    """Receive buffer size (None: the driver's default)."""

    def __post_init__(self) -> None:
        quirks: object = self.quirks
        object.__setattr__(self, "quirks", (quirks,) if isinstance(quirks, str) else tuple(self.quirks))
        if isinstance(self.faults, Mapping):
            object.__setattr__(self, "faults", FaultConfig(**self.faults))
        get_profile(self.profile)  # ValueError naming the known profiles
        self.offered()
        self.accepted()
        self.device_config()
        self.driver_config()

    @classmethod
    def build(cls, base: VnetConfig | None = None, **changes: Any) -> VnetConfig:
        """``base`` (default: the defaults) with ``changes``; ``TypeError`` naming an
        unknown field, ``ValueError`` for a bad value."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown vnet setting(s) {', '.join(unknown)}; known: "
                            f"{', '.join(sorted(known))}")
        return replace(base or cls(), **changes)

    def offered(self) -> FeatureSet:
        return parse_spec(self.offer, offer_sets(self.profile))

    def accepted(self) -> FeatureSet:
        preset = PRESETS.get(self.accept.strip().lower())
        return preset if preset is not None else parse_spec(self.accept, accept_sets())

    def device_config(self, mac: bytes = bytes.fromhex("525400000001")) -> NetDeviceConfig:
        return NetDeviceConfig(
            mac=mac, mtu=self.mtu, queue_size_max=max(256, self.queue_size),
            offered=self.offered(), profile=self.profile,
        )

    def driver_config(self) -> DriverConfig:
        config = DriverConfig(wanted=self.accepted(), queue_size=self.queue_size,
                              rx_buffer_size=self.rx_buffer_size)
        if not self.quirks:
            return config
        if "quirks" not in {f.name for f in dataclasses.fields(DriverConfig)}:
            raise ValueError(f"quirks {', '.join(self.quirks)}: this driver has no quirks "
                             "(DriverConfig has no 'quirks' field)")
        quirks: dict[str, Any] = {"quirks": frozenset(self.quirks)}
        return replace(config, **quirks)

    def host_config(self, name: str, mac: bytes) -> HostConfig:
        return HostConfig(name, mac, self.memory, self.device_config(mac), self.driver_config())

    def describe(self) -> str:
        """A short id for test names: the fields that differ from the defaults."""
        default = VnetConfig()
        parts = [
            f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)
            if f.name != "faults" and getattr(self, f.name) != getattr(default, f.name)
        ]
        if not self.faults.perfect:
            parts.append("faults")
        return ",".join(parts) or "default"

