"""Argument types and exit codes shared by the ``vnetbench`` subcommands."""

from __future__ import annotations

import argparse
import math

from emulator.backends.faults import FaultConfig

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


_FAULT_KEYS = {
    "loss": "loss", "duplicate": "duplicate", "reorder": "reorder", "corrupt": "corrupt",
    "ce-mark": "ce_mark", "reorder-delay": "reorder_delay_ns", "jitter": "jitter_ns",
}
_TIME_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
FAULTS_HELP = ("comma-separated faults, e.g. loss=0.01,reorder=0.01,reorder-delay=2ms,"
               "duplicate=0.005,corrupt=0.005,jitter=10us,ce-mark=0.01 (probabilities per "
               "frame; times in ns, us, ms or s)")


def _duration_ns(key: str, text: str) -> int:
    for suffix in ("ns", "us", "ms", "s"):  # "s" last: "ms" ends in it too
        if text.endswith(suffix):
            number = text[: -len(suffix)]
            try:
                value = float(number)
            except ValueError:
                break
            if not math.isfinite(value) or value < 0:
                break
            return round(value * _TIME_UNITS[suffix])
    raise argparse.ArgumentTypeError(
        f"{key}={text!r} is not a duration (e.g. 50us, 2ms)")


def faults(text: str) -> FaultConfig:
    """A :class:`~emulator.backends.faults.FaultConfig` from ``key=value,...``
    (:data:`FAULTS_HELP`)."""
    values: dict[str, float | int] = {}
    for item in text.split(","):
        key, sep, raw = item.strip().partition("=")
        if not sep or key not in _FAULT_KEYS:
            raise argparse.ArgumentTypeError(
                f"{item.strip()!r}: expected key=value with a key of "
                f"{', '.join(_FAULT_KEYS)}")
        field_name = _FAULT_KEYS[key]
        if field_name in values:
            raise argparse.ArgumentTypeError(f"{key} given twice")
        if field_name.endswith("_ns"):
            values[field_name] = _duration_ns(key, raw.strip())
        else:
            try:
                values[field_name] = float(raw)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{key}={raw!r} is not a number") from None
    try:
        return FaultConfig(**values)  # type: ignore[arg-type]
    except (TypeError, ValueError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
