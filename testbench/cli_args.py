"""Argument types and exit codes shared by the ``vnetbench`` subcommands."""

from __future__ import annotations

import argparse

EXIT_OK = 0
"""The command did what it was asked and everything checked out."""
EXIT_MISMATCH = 1
"""The command ran, and what it checked did not hold (a mismatch, a symptom missing...)."""
EXIT_USAGE = 2
"""Bad command line (argparse's own status)."""
EXIT_ERROR = 3
"""The command could not run: a typed error, printed on one line."""

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def positive(text: str) -> int:
    """A positive integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


def count(text: str) -> int:
    """A non-negative integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must not be negative")
    return value


def size(text: str) -> int:
    """A byte size such as ``65536``, ``512K``, ``8M`` (binary units)."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in _UNITS and t[-1:] else ""
    number = t[: len(t) - len(unit)]
    if not number.isdigit() or int(number) <= 0:
        raise argparse.ArgumentTypeError(f"not a positive size: {text!r} (e.g. 8M, 512K)")
    return int(number) * _UNITS[unit]


def size_or_zero(text: str) -> int:
    """A byte size, or 0."""
    return 0 if text.strip() == "0" else size(text)
