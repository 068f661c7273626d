"""In-memory layouts the spec defines, each defined twice on purpose:

- a construct schema: the declarative definition, used to decode, pretty-print and check
  in tests and tools (never compiled, never on the hot path);
- a twin for the hot path: a precompiled ``struct.Struct`` and a numpy dtype with the
  same field names, for ``unpack_from``/``pack_into`` on memoryviews and bulk access.

``tests/virtio/test_layouts.py`` proves each pair agrees on size, offsets and on random
bytes. All fields are little-endian (§2.7 with VERSION_1; legacy endianness is not
modelled).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import construct as cs
import numpy as np

from virtio import spec


@dataclass(frozen=True, slots=True)
class Layout:
    """A fixed-size layout: construct schema plus struct/numpy twin."""

    name: str
    section: spec.Section
    schema: cs.Struct
    fmt: struct.Struct
    dtype: np.dtype

    @property
    def size(self) -> int:
        return self.fmt.size

    @property
    def fields(self) -> tuple[str, ...]:
        names = self.dtype.names
        assert names is not None
        return names

    def offset(self, field: str) -> int:
        fields = self.dtype.fields
        assert fields is not None
        return int(fields[field][1])


def _layout(name: str, section: spec.Section, fields: list[tuple[str, str, cs.Construct]]) -> Layout:
    """Build a layout from ``(name, struct code, construct subcon)`` triples; the dtype is
    derived from the struct codes (both little-endian, packed)."""
    fmt = struct.Struct("<" + "".join(code for _, code, _ in fields))
    dtype = np.dtype([(fname, "<" + {"B": "u1", "H": "u2", "I": "u4", "Q": "u8"}[code])
                      for fname, code, _ in fields])
    schema = cs.Struct(*[fname / sub for fname, _, sub in fields])
    return Layout(name, section, schema, fmt, dtype)


DESC = _layout(
    "virtq_desc",
    spec.DESC_TABLE,
    [("addr", "Q", cs.Int64ul), ("len", "I", cs.Int32ul), ("flags", "H", cs.Int16ul),
     ("next", "H", cs.Int16ul)],
)
"""One split-ring descriptor, 16 bytes, §2.7.5."""

USED_ELEM = _layout(
    "virtq_used_elem", spec.USED_RING, [("id", "I", cs.Int32ul), ("len", "I", cs.Int32ul)]
)
"""One used ring element, 8 bytes, §2.7.8."""

RING_HEADER = _layout(
    "virtq_ring_header", spec.AVAIL_RING, [("flags", "H", cs.Int16ul), ("idx", "H", cs.Int16ul)]
)
"""The ``flags, idx`` pair that starts both the available and the used ring."""

NET_HDR_LEGACY = _layout(
    "virtio_net_hdr (legacy, 10 bytes)",
    spec.NET_OPERATION,
    [("flags", "B", cs.Int8ul), ("gso_type", "B", cs.Int8ul), ("hdr_len", "H", cs.Int16ul),
     ("gso_size", "H", cs.Int16ul), ("csum_start", "H", cs.Int16ul),
     ("csum_offset", "H", cs.Int16ul)],
)
NET_HDR = _layout(
    "virtio_net_hdr (12 bytes: VERSION_1 or MRG_RXBUF)",
    spec.NET_OPERATION,
    [("flags", "B", cs.Int8ul), ("gso_type", "B", cs.Int8ul), ("hdr_len", "H", cs.Int16ul),
     ("gso_size", "H", cs.Int16ul), ("csum_start", "H", cs.Int16ul),
     ("csum_offset", "H", cs.Int16ul), ("num_buffers", "H", cs.Int16ul)],
)
NET_HDR_HASH = _layout(
    "virtio_net_hdr (20 bytes: HASH_REPORT)",
    spec.NET_OPERATION,
    [("flags", "B", cs.Int8ul), ("gso_type", "B", cs.Int8ul), ("hdr_len", "H", cs.Int16ul),
     ("gso_size", "H", cs.Int16ul), ("csum_start", "H", cs.Int16ul),
     ("csum_offset", "H", cs.Int16ul), ("num_buffers", "H", cs.Int16ul),
     ("hash_value", "I", cs.Int32ul), ("hash_report", "H", cs.Int16ul),
     ("padding_reserved", "H", cs.Int16ul)],
)
NET_HDR_BY_SIZE: dict[int, Layout] = {10: NET_HDR_LEGACY, 12: NET_HDR, 20: NET_HDR_HASH}

NET_CONFIG = _layout(
    "virtio_net_config",
    spec.NET_CONFIG,
    [("mac0", "B", cs.Int8ul), ("mac1", "B", cs.Int8ul), ("mac2", "B", cs.Int8ul),
     ("mac3", "B", cs.Int8ul), ("mac4", "B", cs.Int8ul), ("mac5", "B", cs.Int8ul),
     ("status", "H", cs.Int16ul), ("max_virtqueue_pairs", "H", cs.Int16ul),
     ("mtu", "H", cs.Int16ul), ("speed", "I", cs.Int32ul), ("duplex", "B", cs.Int8ul),
     ("rss_max_key_size", "B", cs.Int8ul),
     ("rss_max_indirection_table_length", "H", cs.Int16ul),
     ("supported_hash_types", "I", cs.Int32ul)],
)
"""The network device configuration space (v1.2 fields), §5.1.4. The MAC is six u8
fields so the struct twin stays flat; :func:`mac_of` joins them."""


def avail_ring_schema(queue_size: int) -> cs.Struct:
    """Available ring of a queue of ``queue_size`` entries, §2.7.6."""
    return cs.Struct(
        "flags" / cs.Int16ul,
        "idx" / cs.Int16ul,
        "ring" / cs.Array(queue_size, cs.Int16ul),
        "used_event" / cs.Int16ul,
    )


def used_ring_schema(queue_size: int) -> cs.Struct:
    """Used ring of a queue of ``queue_size`` entries, §2.7.8."""
    return cs.Struct(
        "flags" / cs.Int16ul,
        "idx" / cs.Int16ul,
        "ring" / cs.Array(queue_size, USED_ELEM.schema),
        "avail_event" / cs.Int16ul,
    )


@dataclass(frozen=True, slots=True)
class SplitRingGeometry:
    """Byte sizes and offsets of the three split-ring areas for one queue size (§2.7):
    the hot-path twin of :func:`avail_ring_schema` / :func:`used_ring_schema`."""

    queue_size: int

    @property
    def desc_table_size(self) -> int:
        return DESC.size * self.queue_size

    @property
    def avail_size(self) -> int:
        return 6 + 2 * self.queue_size

    @property
    def used_size(self) -> int:
        return 6 + USED_ELEM.size * self.queue_size

    def avail_entry(self, slot: int) -> int:
        """Offset of ``ring[slot]`` inside the available ring."""
        return 4 + 2 * slot

    @property
    def used_event(self) -> int:
        """Offset of ``used_event`` inside the available ring."""
        return 4 + 2 * self.queue_size

    def used_entry(self, slot: int) -> int:
        """Offset of ``ring[slot]`` inside the used ring."""
        return 4 + USED_ELEM.size * slot

    @property
    def avail_event(self) -> int:
        """Offset of ``avail_event`` inside the used ring."""
        return 4 + USED_ELEM.size * self.queue_size


# Alignment of each area, §2.7.2 (Virtqueue Alignment).
DESC_TABLE_ALIGN = 16
AVAIL_RING_ALIGN = 2
USED_RING_ALIGN = 4

U16 = struct.Struct("<H")
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")


def mac_of(config: dict[str, int] | tuple[int, ...]) -> bytes:
    """The MAC address from a parsed config (dict from construct, tuple from struct)."""
    if isinstance(config, dict):
        return bytes(config[f"mac{i}"] for i in range(6))
    return bytes(config[:6])
