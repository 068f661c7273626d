"""Which cells a matrix runs: the selection options (``--features``/``--subsets``/``--base``,
``--quirks``, ``--workloads``, ``--profiles``, ``--size``, ``--seed``, ``--loss``) shared by
``vnetbench matrix`` and the pytest suite (``--vnet-matrix "OPTIONS"``), so both build
the same cells from the same words."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from emulator.profiles import PROFILES
from testbench.cli_args import size
from testbench.matrix.cells import (
    BASE,
    WORKLOADS,
    Cell,
    FeatureChoice,
    base_set,
    build_cells,
    families,
    subsets,
)

__all__ = ["DEFAULTS", "SELECTION_OPTIONS", "Selection", "add_arguments", "parse", "select"]

DEFAULTS: dict[str, Any] = {
    "features": ["none", "csum", "tso"], "subsets": None, "base": None, "quirks": ["none"],
    "workloads": ["bulk4", "bulk6"], "profiles": ["strict"], "size": 2 << 20, "seed": 1,
    "loss": 0.0,
}
"""What an option left out selects."""
SELECTION_OPTIONS = tuple(DEFAULTS)


def _list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("an empty list")
    return items


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not in [0, 1)")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The selection options, each defaulting to None (``select`` fills in DEFAULTS), so
    a caller can tell an option given from one left out."""
    p.add_argument("--features", type=_list, metavar="FAMILIES",
                   help="comma list of feature families (default: none,csum,tso)")
    p.add_argument("--subsets", type=_list, metavar="FEATURES",
                   help="instead of --features: every valid subset of these features, "
                        "each added to --base")
    p.add_argument("--base", metavar="SPEC",
                   help="what --subsets adds to: a family or a SPEC (default: the driver's "
                        "default request without any offload)")
    p.add_argument("--quirks", type=_list, metavar="SETS",
                   help="comma list of driver quirk sets both drivers run with, each the "
                        "quirk names joined by + (driver/quirks.py; none: a correct "
                        "driver): every feature set runs with each, e.g. "
                        "none,ignore-num-buffers (default: none)")
    p.add_argument("--workloads", type=_list, metavar="LIST",
                   help=f"comma list of {', '.join(WORKLOADS)} (default: bulk4,bulk6)")
    p.add_argument("--profiles", type=_list, metavar="LIST",
                   help=f"comma list of device profiles: {', '.join(sorted(PROFILES))} "
                        "(default: strict)")
    p.add_argument("--size", type=size, help="bytes per bulk cell, e.g. 4M (default 2M)")
    p.add_argument("--seed", type=int, help="seed of the wire's faults (1)")
    p.add_argument("--loss", type=_probability,
                   help="probability a frame is lost on the wire (0)")


@dataclass(frozen=True)
class Selection:
    choices: list[FeatureChoice]
    cells: list[Cell]
    options: dict[str, Any]
    """Every selection option, defaults filled in."""

    def meta(self, *, jobs: int, wall_s: float) -> dict[str, Any]:
        """The ``meta`` of matrix.json."""
        o = self.options
        return {"cells": len(self.cells), "size": o["size"], "seed": o["seed"],
                "loss": o["loss"], "features": [c.label for c in self.choices],
                "quirks": list(dict.fromkeys(c.quirks for c in self.cells)),
                "workloads": o["workloads"], "profiles": o["profiles"], "jobs": jobs,
                "wall_s": round(wall_s, 3)}


def select(args: argparse.Namespace) -> Selection:
    """The cells ``args`` select; ValueError (or SpecError) naming what is wrong."""
    o = {k: DEFAULTS[k] if getattr(args, k) is None else getattr(args, k)
         for k in SELECTION_OPTIONS}
    if o["subsets"] is not None:
        if args.features is not None:
            raise ValueError("--features and --subsets exclude each other")
        choices = subsets(o["subsets"], BASE if o["base"] is None else base_set(o["base"]))
    else:
        if o["base"] is not None:
            raise ValueError("--base goes with --subsets")
        choices = families(o["features"])
    cells = build_cells(choices, o["workloads"], o["profiles"], size=o["size"], seed=o["seed"],
                        loss=o["loss"], quirks=o["quirks"])
    return Selection(choices, cells, o)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # a ValueError, not SystemExit
        raise ValueError(message)


def parse(words: str | Sequence[str]) -> Selection:
    """The cells of selection options given as one string (shell words) or a list."""
    parser = _Parser(prog="selection", add_help=False)
    add_arguments(parser)
    return select(parser.parse_args(shlex.split(words) if isinstance(words, str) else list(words)))
