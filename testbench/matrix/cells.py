"""The cells of a feature matrix: feature sets (named families, or every valid subset of
a list of features added to a base) × driver quirk sets × workloads × device profiles."""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from driver.net import DEFAULT_WANTED
from driver.quirks import check_quirks
from emulator.profiles import get_profile
from testbench.feature_spec import SpecError, feature_by_name, parse_spec
from testbench.negotiation import accept_sets
from testbench.tcp_bulk import MODES
from virtio.constants import FeatureBit as F
from virtio.features import FeatureSet, Level

__all__ = [
    "FAMILIES", "MAX_CELLS", "MAX_SUBSET_LIST", "NO_QUIRKS", "OFFLOADS", "WORKLOADS", "Cell",
    "FeatureChoice", "build_cells", "families", "quirk_set_label", "row_label", "subsets",
]

OFFLOADS = FeatureSet.of(
    F.CSUM, F.GUEST_CSUM, F.HOST_TSO4, F.HOST_TSO6, F.HOST_ECN, F.HOST_UFO, F.HOST_USO,
    F.GUEST_TSO4, F.GUEST_TSO6, F.GUEST_ECN, F.GUEST_UFO, F.GUEST_USO4, F.GUEST_USO6,
    F.MRG_RXBUF, F.RSC_EXT,
)
"""The features a matrix sweeps; everything else the driver asks for stays as it is."""
BASE = DEFAULT_WANTED - OFFLOADS
"""The driver's default request without any offload: what subsets are added to."""

_CSUM = BASE | FeatureSet.of(F.CSUM, F.GUEST_CSUM, F.MRG_RXBUF)
FAMILIES: dict[str, FeatureSet] = {
    "none": MODES["none"],
    "csum": _CSUM,
    "tso": MODES["tso"],
    "tso-tx": _CSUM.with_(F.HOST_TSO4, F.HOST_TSO6, F.HOST_ECN),
    "gro": _CSUM.with_(F.GUEST_TSO4, F.GUEST_TSO6, F.GUEST_ECN),
    "tso-big": MODES["tso"].without(F.MRG_RXBUF),
    "tso4": _CSUM.with_(F.HOST_TSO4, F.GUEST_TSO4),
    "tso6": _CSUM.with_(F.HOST_TSO6, F.GUEST_TSO6),
}
"""Named accepted sets: no offload; checksum offload both ways; TSO and receive
coalescing (GRO) into mergeable buffers; TSO only; GRO only; TSO and GRO into big
buffers (no MRG_RXBUF); TSO and GRO for IPv4 only; for IPv6 only."""

WORKLOADS: dict[str, str] = {
    "bulk4": "one TCP connection over IPv4 moving SIZE bytes A -> B",
    "bulk6": "one TCP connection over IPv6 moving SIZE bytes A -> B",
    "small": "SIZE/32 bytes of 64-byte UDP datagrams A -> B (many small packets)",
    "udp": "SIZE/4 bytes of 1400-byte UDP datagrams A -> B",
}
MAX_SUBSET_LIST = 10
"""At most 2**10 subsets."""
MAX_CELLS = 4096
NO_QUIRKS = "none"
"""The quirk-set label of a correct driver."""


@dataclass(frozen=True)
class FeatureChoice:
    """One row of the matrix: a label and the set both drivers ask for."""

    label: str
    wanted: FeatureSet


@dataclass(frozen=True)
class Cell:
    index: int
    features: str
    wanted_bits: int
    """The accepted set as an int (FeatureSet does not pickle, cells go to workers)."""
    workload: str
    profile: str
    size: int
    seed: int
    loss: float = 0.0
    quirks: str = NO_QUIRKS
    """Both drivers' quirks (driver/quirks.py), joined by ``+``; ``none``: a correct
    driver."""

    @property
    def wanted(self) -> FeatureSet:
        return FeatureSet(self.wanted_bits)

    @property
    def quirk_set(self) -> frozenset[str]:
        return frozenset() if self.quirks == NO_QUIRKS else frozenset(self.quirks.split("+"))

    @property
    def label(self) -> str:
        """The cell's row in the pivots (:func:`row_label`)."""
        return row_label(self.features, self.quirks)

    @property
    def cell_seed(self) -> int:
        """The wire's seed: from the matrix seed and the cell's coordinates, so a cell
        draws the same faults whatever runs beside it (a cell without quirks keeps the
        seed it had before quirks were a coordinate)."""
        key = f"{self.seed}/{self.features}/{self.workload}/{self.profile}"
        if self.quirks != NO_QUIRKS:
            key += f"/{self.quirks}"
        return zlib.crc32(key.encode())


def families(names: Iterable[str]) -> list[FeatureChoice]:
    """The named families (``all``: every one); ValueError naming the known ones."""
    out: list[FeatureChoice] = []
    for raw in names:
        name = raw.strip().lower()
        if name == "all":
            out += [FeatureChoice(n, s) for n, s in FAMILIES.items()]
        elif name in FAMILIES:
            out.append(FeatureChoice(name, FAMILIES[name]))
        else:
            raise ValueError(f"unknown feature family {name!r}; known: all, "
                             f"{', '.join(FAMILIES)}")
    return list({c.label: c for c in out}.values())


def subsets(names: Sequence[str], base: FeatureSet = BASE) -> list[FeatureChoice]:
    """Every subset of ``names`` that, added to ``base``, breaks no MUST rule of
    §5.1.3.1, smallest first; labelled by the features added (``-`` for none)."""
    features = list(dict.fromkeys(feature_by_name(n) for n in names if n.strip()))
    if not features:
        raise SpecError("--subsets needs at least one feature")
    if len(features) > MAX_SUBSET_LIST:
        raise SpecError(f"--subsets takes at most {MAX_SUBSET_LIST} features "
                        f"(2**{len(features)} subsets), not {len(features)}")
    out: list[FeatureChoice] = []
    for k in range(len(features) + 1):
        for combo in itertools.combinations(features, k):
            wanted = base.with_(*combo)
            if not wanted.dependency_violations(Level.MUST):
                out.append(FeatureChoice("+".join(f.name for f in combo) or "-", wanted))
    return out


def base_set(text: str) -> FeatureSet:
    """``--base``: a family name or a SPEC (testbench/feature_spec.py)."""
    family = FAMILIES.get(text.strip().lower())
    return family if family is not None else parse_spec(text, accept_sets())


def row_label(features: str, quirks: str) -> str:
    """A cell's line in the matrix's pivots: its features, with its quirk set when it
    has one."""
    return features if quirks == NO_QUIRKS else f"{features} [{quirks}]"


def quirk_set_label(text: str) -> str:
    """A quirk set as the matrix names it: ``none`` for a correct driver, else the
    quirk names joined by ``+`` in the order given, each once; ValueError for an
    unknown one."""
    names = [n.strip() for n in text.split("+") if n.strip() and n.strip() != NO_QUIRKS]
    if not names:
        return NO_QUIRKS
    check_quirks(frozenset(names))
    return "+".join(dict.fromkeys(names))


def build_cells(choices: Sequence[FeatureChoice], workloads: Sequence[str],
                profiles: Sequence[str], *, size: int, seed: int,
                loss: float = 0.0, quirks: Sequence[str] = (NO_QUIRKS,)) -> list[Cell]:
    """The cells, features outermost, then quirk sets, workloads, profiles; ValueError
    for an unknown workload, profile or quirk, or more than :data:`MAX_CELLS` cells."""
    quirk_sets = list(dict.fromkeys(quirk_set_label(q) for q in quirks))
    for w in workloads:
        if w not in WORKLOADS:
            raise ValueError(f"unknown workload {w!r}; known: {', '.join(WORKLOADS)}")
    for p in profiles:
        get_profile(p)
    if not 0.0 <= loss < 1.0:
        raise ValueError(f"loss {loss} is not a probability below 1")
    combos = list(itertools.product(choices, quirk_sets, dict.fromkeys(workloads),
                                    dict.fromkeys(profiles)))
    if not combos:
        raise ValueError("the matrix has no cells")
    if len(combos) > MAX_CELLS:
        raise ValueError(f"{len(combos)} cells; at most {MAX_CELLS}")
    return [Cell(i, c.label, c.wanted.bits, w, p, size, seed, loss, q)
            for i, (c, q, w, p) in enumerate(combos)]
