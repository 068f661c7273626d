"""Feature negotiation, run for real and explained: ``vnetbench negotiate``.

:func:`run_negotiation` builds an emulated device that offers one set, binds our driver
to it asking for another, lets the driver probe (reset, features, FEATURES_OK, queues,
DRIVER_OK) and reads back what both sides ended up with. The same answer is derived on
paper from the dependency rules (:func:`virtio.features.negotiate`); any difference is a
finding (``mismatches``). The result also says, for each thing a driver may send or
receive, whether the negotiated set allows it and which feature decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from driver.net import DEFAULT_WANTED, NOT_IMPLEMENTED, SUPPORTED, DriverConfig
from emulator.net.device import IMPLEMENTED, NetDeviceConfig
from emulator.profiles import get_profile
from testbench.feature_spec import parse_spec
from testbench.host import Host, HostConfig
from testbench.loop import EventLoop
from testbench.tcp_bulk import MODES
from virtio import spec
from virtio.constants import FeatureBit, Status
from virtio.errors import VirtioError
from virtio.features import FeatureSet, Level, negotiate, net_hdr_size

__all__ = [
    "PERMISSIONS", "Dropped", "NegotiationResult", "Permission", "accept_sets",
    "offer_sets", "run_negotiation",
]

F = FeatureBit
MAC = bytes.fromhex("525400000001")
MEMORY = 4 << 20
QUEUE_SIZE = 16
"""Small rings: negotiation does not depend on them and big receive buffers stay cheap."""


def offer_sets(profile: str) -> dict[str, FeatureSet]:
    """What ``all`` and ``default`` mean for ``--offer``: everything the emulated device
    implements, and what the profile's device offers (the same unless the profile fixes
    its features, as Firecracker does)."""
    offered = getattr(get_profile(profile), "offered", None)
    default = offered if isinstance(offered, FeatureSet) else IMPLEMENTED
    return {"all": IMPLEMENTED, "default": default}


def accept_sets() -> dict[str, FeatureSet]:
    """What ``all`` and ``default`` mean for ``--accept``: every feature our driver can
    operate with, and what it asks for by default."""
    return {"all": SUPPORTED, "default": DEFAULT_WANTED}


@dataclass(frozen=True)
class Permission:
    """One thing the driver may send, receive or ask for, and the features deciding it."""

    area: str
    """"send", "receive" or "control"."""
    what: str
    needs: tuple[FeatureBit, ...]
    section: spec.Section


def _p(area: str, what: str, section: spec.Section, *needs: FeatureBit) -> Permission:
    return Permission(area, what, needs, section)


PERMISSIONS: tuple[Permission, ...] = (
    _p("send", "partial checksums (NEEDS_CSUM)", spec.NET_TX_DRIVER, F.CSUM),
    _p("send", "TSO over IPv4 (gso_type TCPV4)", spec.NET_TX_DRIVER, F.CSUM, F.HOST_TSO4),
    _p("send", "TSO over IPv6 (gso_type TCPV6)", spec.NET_TX_DRIVER, F.CSUM, F.HOST_TSO6),
    _p("send", "TSO with ECN (gso_type | ECN)", spec.NET_TX_DRIVER, F.HOST_ECN),
    _p("send", "UFO (gso_type UDP)", spec.NET_TX_DRIVER, F.CSUM, F.HOST_UFO),
    _p("send", "USO (gso_type UDP_L4)", spec.NET_TX_DRIVER, F.CSUM, F.HOST_USO),
    _p("receive", "checksum-verified packets (DATA_VALID)", spec.NET_RX, F.GUEST_CSUM),
    _p("receive", "coalesced TCP/IPv4 (GUEST_TSO4)", spec.NET_RX, F.GUEST_TSO4),
    _p("receive", "coalesced TCP/IPv6 (GUEST_TSO6)", spec.NET_RX, F.GUEST_TSO6),
    _p("receive", "coalesced TCP with ECN", spec.NET_RX, F.GUEST_ECN),
    _p("receive", "coalesced UDP (USO4)", spec.NET_RX, F.GUEST_USO4),
    _p("receive", "coalesced UDP (USO6)", spec.NET_RX, F.GUEST_USO6),
    _p("receive", "packets across mergeable buffers (num_buffers)", spec.NET_RX_BUFFERS,
       F.MRG_RXBUF),
    _p("receive", "coalescing counts in the header (RSC_INFO)", spec.NET_RX, F.RSC_EXT),
    _p("receive", "hash reports (20-byte header)", spec.NET_HASH_REPORT, F.HASH_REPORT),
    _p("control", "control virtqueue", spec.NET_CTRL, F.CTRL_VQ),
    _p("control", "receive modes and MAC filter (CTRL_RX)", spec.NET_CTRL_RX, F.CTRL_RX),
    _p("control", "VLAN filter", spec.NET_CTRL_VLAN, F.CTRL_VLAN),
    _p("control", "MAC address set", spec.NET_CTRL_MAC, F.CTRL_MAC_ADDR),
    _p("control", "announce acknowledgement", spec.NET_CTRL_ANNOUNCE, F.GUEST_ANNOUNCE),
    _p("control", "queue pairs (VQ_PAIRS_SET)", spec.NET_MQ, F.MQ),
    _p("control", "RSS configuration", spec.NET_RSS, F.RSS),
    _p("control", "receive offloads switched at run time", spec.NET_CTRL_OFFLOADS,
       F.CTRL_GUEST_OFFLOADS),
    _p("control", "notification coalescing", spec.NET_NOTF_COAL, F.NOTF_COAL),
    _p("control", "per-queue notification coalescing", spec.NET_NOTF_COAL, F.VQ_NOTF_COAL),
)
"""What the negotiated set allows, in the order the report lists it."""


@dataclass(frozen=True)
class Dropped:
    """A feature the driver wanted and did not get."""

    feature: str
    reason: str
    section: str

    def __str__(self) -> str:
        return f"{self.feature}: {self.reason} [{self.section}]"


@dataclass
class NegotiationResult:
    profile: str
    offered: FeatureSet
    wanted: FeatureSet
    negotiated: FeatureSet
    """What the driver wrote and the device took (empty when negotiation failed)."""
    dropped: list[Dropped]
    failure: str | None = None
    """Why the driver gave up (FAILED), or None."""
    header_size: int = 0
    rx_buffers: str = ""
    rx_buffer_size: int = 0
    mtu: int = 0
    mismatches: list[str] = field(default_factory=list)
    """Differences between the real run and the paper derivation, or between the sides."""
    violations: list[str] = field(default_factory=list)
    quirks: list[str] = field(default_factory=list)
    """Driver quirks switched on (then differences and violations are the point)."""

    @property
    def clean(self) -> bool:
        """Negotiated, every cross-check agreed, nothing recorded."""
        return self.failure is None and not self.mismatches and not self.violations

    def allowed(self, permission: Permission) -> bool:
        return all(f in self.negotiated for f in permission.needs)

    def why(self, permission: Permission) -> str:
        missing = [f for f in permission.needs if f not in self.negotiated]
        if not missing:
            return " + ".join(f.name for f in permission.needs)
        reasons = []
        for f in missing:
            if f not in self.offered:
                reasons.append(f"{f.name} not offered")
            elif f not in self.wanted:
                reasons.append(f"{f.name} not accepted")
            else:
                reasons.append(f"{f.name} dropped")
        return ", ".join(reasons)

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "quirks": self.quirks,
            "offered": self.offered.names(),
            "accepted": self.wanted.names(),
            "negotiated": self.negotiated.names(),
            "dropped": [
                {"feature": d.feature, "reason": d.reason, "section": d.section}
                for d in self.dropped
            ],
            "failure": self.failure,
            "header_size": self.header_size,
            "rx_buffers": self.rx_buffers,
            "rx_buffer_size": self.rx_buffer_size,
            "mtu": self.mtu,
            "permissions": [
                {"area": p.area, "what": p.what, "allowed": self.allowed(p),
                 "because": self.why(p), "section": str(p.section)}
                for p in PERMISSIONS
            ],
            "mismatches": self.mismatches,
            "violations": self.violations,
        }


def on_paper(offered: FeatureSet, wanted: FeatureSet) -> tuple[FeatureSet, list[Dropped]]:
    """What the driver should negotiate, from the rules alone: what it implements of what
    it wants and is offered, closed under §5.1.3.1."""
    unsupported = (wanted & offered) - SUPPORTED
    accepted, lost = negotiate(offered, wanted - unsupported)
    dropped = [Dropped(n, "not implemented by this driver", NOT_IMPLEMENTED)
               for n in unsupported.names()]
    dropped += [Dropped(_name(v.feature), v.reason, str(v.section)) for v in lost]
    return accepted, dropped


def _name(feature: FeatureBit | int) -> str:
    return feature.name if isinstance(feature, FeatureBit) else f"BIT_{feature}"


def _check_offer(offered: FeatureSet) -> None:
    """ValueError for an offer the device may not make, in one line with the rule."""
    extra = offered - IMPLEMENTED
    if extra.bits:
        raise ValueError(f"the emulated device cannot offer {', '.join(extra.names())}")
    broken = offered.dependency_violations(Level.MUST)
    if broken:
        raise ValueError("a device must not offer a feature without what it requires: "
                         + "; ".join(map(str, broken)))


def run_negotiation(offer: str = "default", accept: str = "default", *,
                    profile: str = "strict", quirks: Iterable[str] = ()) -> NegotiationResult:
    """Negotiate ``accept`` against ``offer`` (SPECs, :mod:`testbench.feature_spec`;
    ``accept`` may also name a preset of testbench/tcp_bulk.py: tso, csum, none) with
    the real driver and device, the driver misbehaving as ``quirks`` say
    (driver/quirks.py). ``ValueError`` (one line) for a bad SPEC, an unknown profile or
    quirk, or an offer the device may not make."""
    offered = parse_spec(offer, offer_sets(profile))
    preset = MODES.get(accept.strip().lower())
    wanted = preset if preset is not None else parse_spec(accept, accept_sets())
    _check_offer(offered)
    paper, paper_dropped = on_paper(offered, wanted)
    loop = EventLoop()
    host = Host(loop, HostConfig(
        "dut", MAC, MEMORY,
        NetDeviceConfig(offered=offered, profile=profile, queue_size_max=QUEUE_SIZE),
        DriverConfig(wanted=wanted, queue_size=QUEUE_SIZE, quirks=frozenset(quirks)),
    ))
    drv, core = host.driver, host.core
    result = NegotiationResult(profile, offered, wanted, FeatureSet(), paper_dropped,
                               quirks=sorted(drv.config.quirks))
    try:
        host.start()
    except VirtioError as exc:
        result.failure = str(exc)
    real_dropped = [Dropped(_name(v.feature), v.reason, str(v.section)) for v in drv.dropped]
    result.dropped = real_dropped
    result.violations = [str(r) for r in host.monitor.records]
    checks = result.mismatches
    if drv.offered != offered:
        checks.append(f"the driver read offered {drv.offered.names()}, the device offers "
                      f"{offered.names()}")
    if {str(d) for d in real_dropped} != {str(d) for d in paper_dropped}:
        checks.append(f"dropped: driver {[str(d) for d in real_dropped]}, rules "
                      f"{[str(d) for d in paper_dropped]}")
    if result.failure is not None:
        if F.VERSION_1 in paper:
            checks.append(f"the driver failed although the rules allow {paper.names()}")
        return result
    neg = drv.negotiated
    result.negotiated = neg
    result.header_size = drv.header_size
    result.rx_buffer_size = drv.rx_buffer_size
    result.mtu = drv.mtu
    result.rx_buffers = rx_buffer_kind(neg)
    if neg != paper:
        checks.append(f"negotiated {neg.names()}, the rules give {paper.names()}")
    if core.driver_features != neg:
        checks.append(f"the device holds {core.driver_features.names()}, the driver "
                      f"{neg.names()}")
    if not core.status & Status.DRIVER_OK or not core.status & Status.FEATURES_OK:
        checks.append(f"device status {core.status:#x} lacks FEATURES_OK or DRIVER_OK")
    if drv.header_size != net_hdr_size(neg):
        checks.append(f"header size {drv.header_size}, §5.1.6 gives {net_hdr_size(neg)}")
    caps = drv.capabilities()
    told = {
        "partial checksums": caps.checksum.tx_partial,
        "DATA_VALID": caps.checksum.rx_verified,
        "TSO over IPv4": caps.segmentation.tcp_ipv4_max is not None,
        "TSO over IPv6": caps.segmentation.tcp_ipv6_max is not None,
    }
    for permission in PERMISSIONS:
        for label, value in told.items():
            if label in permission.what and value != result.allowed(permission):
                checks.append(f"the driver tells its stack {label}={value}, the negotiated "
                              f"set says {result.allowed(permission)}")
    return result


def rx_buffer_kind(neg: FeatureSet) -> str:
    """How receive buffers are laid out (§5.1.6.3)."""
    if F.MRG_RXBUF in neg:
        return "mergeable"
    big = (F.GUEST_TSO4, F.GUEST_TSO6, F.GUEST_UFO, F.GUEST_USO4, F.GUEST_USO6)
    return "big" if any(f in neg for f in big) else "small"
