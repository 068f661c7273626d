"""The device's offload engines: on transmit, checksum completion and segmentation
(TSO4, TSO6 with extension headers, ECN, USO, UFO) with header validation by device
profile; on receive, GRO-like coalescing (:class:`Coalescer`), the inverse of
segmentation.

``segment(frame, hdr, profile)`` returns the frames to put on the wire;
``segment_packet`` the same plus the notes the conformance monitor records;
``complete_checksum(frame, hdr)`` is checksum offload alone. Everything the profile
refuses raises :class:`OffloadError` (a ``DeviceProtocolError``) naming the rule.
"""

from emulator.offload.checksum import (
    FULL_LENGTH,
    OTHER,
    ZERO_LENGTH,
    classify_seed,
    complete_checksum,
)
from emulator.offload.coalesce import CoalesceConfig, Coalesced, Coalescer
from emulator.offload.rules import RULES, Note, OffloadError, Rule
from emulator.offload.segment import SegmentResult, segment, segment_packet

__all__ = [
    "FULL_LENGTH",
    "OTHER",
    "RULES",
    "ZERO_LENGTH",
    "CoalesceConfig",
    "Coalesced",
    "Coalescer",
    "Note",
    "OffloadError",
    "Rule",
    "SegmentResult",
    "classify_seed",
    "complete_checksum",
    "segment",
    "segment_packet",
]
