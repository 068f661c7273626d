"""Each layout's construct schema and its struct/numpy twin agree (DESIGN.md, "construct,
struct, numpy"): on size, on field offsets and on the values decoded from random bytes."""

from __future__ import annotations

import construct as cs
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from virtio import layouts
from virtio.layouts import (
    DESC,
    NET_CONFIG,
    NET_HDR,
    NET_HDR_HASH,
    NET_HDR_LEGACY,
    RING_HEADER,
    USED_ELEM,
    Layout,
    SplitRingGeometry,
    avail_ring_schema,
    used_ring_schema,
)

ALL = [DESC, USED_ELEM, RING_HEADER, NET_HDR_LEGACY, NET_HDR, NET_HDR_HASH, NET_CONFIG]


def construct_offsets(schema: cs.Struct) -> dict[str, int]:
    out, pos = {}, 0
    for sub in schema.subcons:
        out[sub.name] = pos
        pos += sub.sizeof()
    return out


@pytest.mark.parametrize("layout", ALL, ids=lambda lay: lay.name)
def test_sizes_agree(layout: Layout) -> None:
    assert layout.schema.sizeof() == layout.fmt.size == layout.dtype.itemsize


@pytest.mark.parametrize("layout", ALL, ids=lambda lay: lay.name)
def test_offsets_agree(layout: Layout) -> None:
    assert construct_offsets(layout.schema) == {f: layout.offset(f) for f in layout.fields}


def test_sizes_are_the_specs() -> None:
    # §2.7.5 (16-byte descriptor), §2.7.8 (8-byte used element), §5.1.6 (10/12/20-byte
    # headers), §5.1.4 (v1.2 config: mac 6, status 2, pairs 2, mtu 2, speed 4, duplex 1,
    # rss key 1, indirection 2, hash types 4).
    assert (DESC.size, USED_ELEM.size, RING_HEADER.size) == (16, 8, 4)
    assert (NET_HDR_LEGACY.size, NET_HDR.size, NET_HDR_HASH.size) == (10, 12, 20)
    assert NET_CONFIG.size == 24
    assert NET_CONFIG.offset("mtu") == 10
    assert NET_HDR.offset("num_buffers") == 10
    assert NET_HDR_HASH.offset("hash_value") == 12


@pytest.mark.parametrize("layout", ALL, ids=lambda lay: lay.name)
@given(data=st.data())
def test_random_bytes_decode_identically(layout: Layout, data: st.DataObject) -> None:
    raw = data.draw(st.binary(min_size=layout.size, max_size=layout.size))
    by_construct = layout.schema.parse(raw)
    by_struct = layout.fmt.unpack(raw)
    by_numpy = np.frombuffer(raw, dtype=layout.dtype)[0]
    for i, name in enumerate(layout.fields):
        assert by_construct[name] == by_struct[i] == int(by_numpy[name])
    # and they re-encode to the same bytes
    assert layout.schema.build(by_construct) == layout.fmt.pack(*by_struct) == raw


@pytest.mark.parametrize("size", [1, 2, 256, 32768])
def test_ring_schemas_match_geometry(size: int) -> None:
    geo = SplitRingGeometry(size)
    avail = avail_ring_schema(size)
    used = used_ring_schema(size)
    assert avail.sizeof() == geo.avail_size
    assert used.sizeof() == geo.used_size
    assert geo.desc_table_size == 16 * size
    assert construct_offsets(avail)["used_event"] == geo.used_event
    assert construct_offsets(used)["avail_event"] == geo.avail_event
    assert geo.avail_entry(size - 1) == construct_offsets(avail)["ring"] + 2 * (size - 1)
    assert geo.used_entry(size - 1) == construct_offsets(used)["ring"] + 8 * (size - 1)


@given(st.integers(1, 64), st.data())
def test_random_rings_decode_identically(size: int, data: st.DataObject) -> None:
    geo = SplitRingGeometry(size)
    raw = data.draw(st.binary(min_size=geo.used_size, max_size=geo.used_size))
    parsed = used_ring_schema(size).parse(raw)
    flags, idx = RING_HEADER.fmt.unpack_from(raw, 0)
    assert (parsed.flags, parsed.idx) == (flags, idx)
    elems = np.frombuffer(raw, dtype=USED_ELEM.dtype, count=size, offset=geo.used_entry(0))
    assert [(e.id, e.len) for e in parsed.ring] == [(int(e["id"]), int(e["len"])) for e in elems]
    assert parsed.avail_event == layouts.U16.unpack_from(raw, geo.avail_event)[0]


def test_mac_of_both_forms() -> None:
    raw = bytes(range(1, 25))
    assert layouts.mac_of(NET_CONFIG.schema.parse(raw)) == bytes(range(1, 7))
    assert layouts.mac_of(NET_CONFIG.fmt.unpack(raw)) == bytes(range(1, 7))
