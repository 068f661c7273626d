"""Feature sets and the dependency rules of the network device.

The rules are those of §5.1.3.1 "Feature bit requirements" plus the generic ones of §2.2
and §6. Each :class:`Rule` knows its section, so a violation explains itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum

from virtio import spec
from virtio.constants import FeatureBit

F = FeatureBit


class Level(Enum):
    """Strength of a requirement (RFC 2119 words the spec uses)."""

    MUST = "MUST"
    SHOULD = "SHOULD"


@dataclass(frozen=True, slots=True)
class Rule:
    """``feature`` may only be present with its requirements: every group of
    ``requires`` must have at least one member present (a conjunction of
    alternatives, as §5.1.3.1 words them: "Requires A or B", "Requires A and B")."""

    feature: FeatureBit
    requires: tuple[tuple[FeatureBit, ...], ...]
    section: spec.Section | str
    level: Level = Level.MUST

    def need(self) -> str:
        return " and ".join(
            " or ".join(f.name for f in group) if len(group) == 1 else
            "(" + " or ".join(f.name for f in group) + ")"
            for group in self.requires
        )

    def describe(self) -> str:
        return f"{self.feature.name} requires {self.need()} ({self.level.value}, {self.section})"

    def holds(self, bits: int) -> bool:
        if not bits & self.feature.mask:
            return True
        return all(any(bits & f.mask for f in group) for group in self.requires)


def _any(*features: FeatureBit) -> tuple[tuple[FeatureBit, ...], ...]:
    return (features,)


def _all(*features: FeatureBit) -> tuple[tuple[FeatureBit, ...], ...]:
    return tuple((f,) for f in features)


_LINUX_VALIDATE = (
    "Linux drivers/net/virtio_net.c virtnet_validate_features (the spec lists no "
    "requirement; the Linux driver refuses the feature without CTRL_VQ)"
)


def _rules() -> tuple[Rule, ...]:
    s = spec.NET_FEATURE_REQUIREMENTS
    out: list[Rule] = []
    for f in (F.GUEST_TSO4, F.GUEST_TSO6):
        out.append(Rule(f, _any(F.GUEST_CSUM), s))
    out.append(Rule(F.GUEST_ECN, _any(F.GUEST_TSO4, F.GUEST_TSO6), s))
    for f in (F.GUEST_UFO, F.GUEST_USO4, F.GUEST_USO6):
        out.append(Rule(f, _any(F.GUEST_CSUM), s))
    out.append(
        Rule(F.GUEST_UDP_TUNNEL_GSO, _all(F.GUEST_TSO4, F.GUEST_TSO6, F.GUEST_USO4, F.GUEST_USO6), s)
    )
    out.append(Rule(F.GUEST_UDP_TUNNEL_GSO_CSUM, _any(F.GUEST_UDP_TUNNEL_GSO), s))
    for f in (F.HOST_TSO4, F.HOST_TSO6):
        out.append(Rule(f, _any(F.CSUM), s))
    out.append(Rule(F.HOST_ECN, _any(F.HOST_TSO4, F.HOST_TSO6), s))
    for f in (F.HOST_UFO, F.HOST_USO):
        out.append(Rule(f, _any(F.CSUM), s))
    out.append(Rule(F.HOST_UDP_TUNNEL_GSO, _all(F.HOST_TSO4, F.HOST_TSO6, F.HOST_USO), s))
    out.append(Rule(F.HOST_UDP_TUNNEL_GSO_CSUM, _any(F.HOST_UDP_TUNNEL_GSO), s))
    for f in (F.CTRL_RX, F.CTRL_VLAN, F.GUEST_ANNOUNCE, F.MQ, F.CTRL_MAC_ADDR, F.NOTF_COAL):
        out.append(Rule(f, _any(F.CTRL_VQ), s))
    out.append(Rule(F.RSC_EXT, _any(F.HOST_TSO4, F.HOST_TSO6), s))
    out.append(Rule(F.RSS, _any(F.CTRL_VQ), s))
    out.append(Rule(F.VQ_NOTF_COAL, _any(F.CTRL_VQ), s))
    out.append(Rule(F.HASH_TUNNEL, (*_any(F.CTRL_VQ), (F.RSS, F.HASH_REPORT)), s))
    out.append(Rule(F.RSS_CONTEXT, _all(F.CTRL_VQ, F.RSS), s))
    out.append(Rule(F.HASH_REPORT, _any(F.CTRL_VQ), _LINUX_VALIDATE, Level.SHOULD))
    out.append(Rule(F.CTRL_RX_EXTRA, _any(F.CTRL_VQ), _LINUX_VALIDATE, Level.SHOULD))
    return tuple(out)


RULES: tuple[Rule, ...] = _rules()
"""Dependency rules of the network device, in spec order."""

ALL_KNOWN = 0
for _bit in FeatureBit:
    ALL_KNOWN |= _bit.mask


@dataclass(frozen=True, slots=True)
class Violation:
    """Why a feature set is not acceptable."""

    feature: FeatureBit | int
    reason: str
    section: spec.Section | str
    rule: Rule | None = None
    level: Level = Level.MUST

    def __str__(self) -> str:
        name = self.feature.name if isinstance(self.feature, FeatureBit) else f"bit {self.feature}"
        return f"{name}: {self.reason} [{self.section}]"


class FeatureSet:
    """An immutable set of feature bits (any width)."""

    __slots__ = ("bits",)

    bits: int

    def __init__(self, bits: int | Iterable[FeatureBit | int] = 0) -> None:
        if isinstance(bits, int):
            if bits < 0:
                raise ValueError("feature bits cannot be negative")
            value = bits
        else:
            value = 0
            for b in bits:
                if int(b) < 0:
                    raise ValueError(f"bad feature bit {b}")
                value |= 1 << int(b)
        object.__setattr__(self, "bits", value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("FeatureSet is immutable")

    @classmethod
    def of(cls, *features: FeatureBit | int) -> FeatureSet:
        return cls(features)

    @classmethod
    def parse(cls, text: str) -> FeatureSet:
        """Parse ``"VERSION_1,CSUM,HOST_TSO4"`` (names, ``VIRTIO_NET_F_``/``VIRTIO_F_``
        prefixes optional, or bit numbers; separators: comma, ``|``, ``+``, space)."""
        bits: list[int] = []
        for raw in text.replace("|", ",").replace("+", ",").replace(" ", ",").split(","):
            token = raw.strip().upper()
            if not token:
                continue
            for prefix in ("VIRTIO_NET_F_", "VIRTIO_F_"):
                if token.startswith(prefix):
                    token = token[len(prefix):]
            if token.isdigit():
                bits.append(int(token))
            elif token in FeatureBit.__members__:
                bits.append(int(FeatureBit[token]))
            else:
                raise ValueError(f"unknown feature {raw.strip()!r}")
        return cls(bits)

    # set algebra
    def __contains__(self, feature: object) -> bool:
        if isinstance(feature, int):
            return bool(self.bits >> int(feature) & 1)
        return False

    def __iter__(self) -> Iterator[FeatureBit | int]:
        bits, n = self.bits, 0
        while bits:
            if bits & 1:
                yield FeatureBit(n) if n in _KNOWN_NUMBERS else n
            bits >>= 1
            n += 1

    def __len__(self) -> int:
        return self.bits.bit_count()

    def __and__(self, other: FeatureSet) -> FeatureSet:
        return FeatureSet(self.bits & other.bits)

    def __or__(self, other: FeatureSet) -> FeatureSet:
        return FeatureSet(self.bits | other.bits)

    def __sub__(self, other: FeatureSet) -> FeatureSet:
        return FeatureSet(self.bits & ~other.bits)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureSet) and other.bits == self.bits

    def __hash__(self) -> int:
        return hash(self.bits)

    def __le__(self, other: FeatureSet) -> bool:
        return self.bits & ~other.bits == 0

    def with_(self, *features: FeatureBit) -> FeatureSet:
        return FeatureSet(self.bits | FeatureSet(features).bits)

    def without(self, *features: FeatureBit) -> FeatureSet:
        return FeatureSet(self.bits & ~FeatureSet(features).bits)

    def names(self) -> list[str]:
        return [f.name if isinstance(f, FeatureBit) else f"BIT_{f}" for f in self]

    def word(self, select: int) -> int:
        """The 32-bit word ``select`` (as the transports expose features)."""
        return (self.bits >> (32 * select)) & 0xFFFF_FFFF

    def __repr__(self) -> str:
        return f"FeatureSet({'|'.join(self.names()) or '0'})"

    # rules
    def dependency_violations(self, level: Level | None = None) -> list[Violation]:
        """Rules of §5.1.3.1 this set breaks (``level`` filters MUST/SHOULD)."""
        out: list[Violation] = []
        for r in RULES:
            if (level is None or r.level is level) and not r.holds(self.bits):
                out.append(Violation(r.feature, f"requires {r.need()}", r.section, r, r.level))
        return out

    def driver_violations(self, offered: FeatureSet) -> list[Violation]:
        """Everything wrong with this set as a driver's acceptance of ``offered``."""
        out: list[Violation] = []
        for f in FeatureSet(self.bits & ~offered.bits):
            out.append(Violation(f, "accepted but not offered by the device", spec.FEATURE_BITS_DRIVER))
        if F.VERSION_1 in offered and F.VERSION_1 not in self:
            out.append(
                Violation(
                    F.VERSION_1, "offered but not accepted (a driver MUST accept VERSION_1)",
                    spec.RESERVED_FEATURE_BITS_DRIVER,
                )
            )
        out.extend(self.dependency_violations(Level.MUST))
        return out

    def closed(self) -> tuple[FeatureSet, list[Violation]]:
        """The largest subset that satisfies every dependency rule (MUST and SHOULD), with
        what was dropped and why. Dropping is iterated until nothing changes, so chains
        (GUEST_ECN → GUEST_TSO4 → GUEST_CSUM) resolve."""
        bits = self.bits
        dropped: list[Violation] = []
        changed = True
        while changed:
            changed = False
            for r in RULES:
                if not r.holds(bits):
                    bits &= ~r.feature.mask
                    dropped.append(
                        Violation(r.feature, f"requires {r.need()}", r.section, r, r.level)
                    )
                    changed = True
        return FeatureSet(bits), dropped


_KNOWN_NUMBERS = frozenset(int(b) for b in FeatureBit)


def negotiate(offered: FeatureSet, wanted: FeatureSet) -> tuple[FeatureSet, list[Violation]]:
    """The driver's policy: what it wants ∩ what is offered, closed under the rules.

    Returns the set to write as driver features and the features it dropped (either not
    offered, or dropped because a dependency was missing) with the reason for each.
    """
    dropped = [
        Violation(f, "wanted but not offered", spec.FEATURE_BITS_DRIVER)
        for f in FeatureSet(wanted.bits & ~offered.bits)
    ]
    closed, lost = FeatureSet(wanted.bits & offered.bits).closed()
    return closed, dropped + lost


def net_hdr_size(features: FeatureSet) -> int:
    """Size of virtio_net_hdr for a negotiated set, §5.1.6: 20 with HASH_REPORT, 12 with
    VERSION_1 or MRG_RXBUF, else the 10-byte legacy header."""
    if F.HASH_REPORT in features:
        return 20
    if F.VERSION_1 in features or F.MRG_RXBUF in features:
        return 12
    return 10


BIG_RX_FEATURES = FeatureSet.of(F.GUEST_TSO4, F.GUEST_TSO6, F.GUEST_UFO, F.GUEST_USO4,
                                F.GUEST_USO6)
"""Any of these without MRG_RXBUF: the driver posts receive buffers for the largest
packet (§5.1.6.3.1 as v1.3 words it, USO included): :data:`RX_BIG_PACKET` bytes after
the header, else :data:`RX_PACKET`."""
RX_BIG_PACKET = 65550
"""§5.1.6.3: the largest TCP or UDP packet plus the 14-byte Ethernet header."""
RX_PACKET = 1514
"""§5.1.6.3: the largest packet without the big-packet features."""
