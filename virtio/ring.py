"""Index arithmetic of the split ring that both sides use (§2.7)."""

from __future__ import annotations

U16_MASK = 0xFFFF
"""Ring indices are free-running u16 counters that wrap at 65536 (§2.7.6, §2.7.8)."""


def vring_need_event(event_idx: int, new_idx: int, old_idx: int) -> bool:
    """Whether moving a ring index from ``old_idx`` to ``new_idx`` crossed ``event_idx``
    (§2.7.7 used_event, §2.7.10 avail_event; ``vring_need_event`` of virtio_ring.h):
    ``(u16)(new - event - 1) < (u16)(new - old)``, i.e. ``event_idx`` lies in
    ``[old_idx, new_idx)`` modulo 2^16."""
    return ((new_idx - event_idx - 1) & U16_MASK) < ((new_idx - old_idx) & U16_MASK)
