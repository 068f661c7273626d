"""The device-side split virtqueue (§2.7): chain walking and every rule it checks,
index wrap-around, used ring, notification suppression. Rings are written by hand
(ring_writer.MockSplitQueue), never through driver/."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.virtqueue import Chain, ChainError, DeviceQueue
from tests.emulator.ring_writer import INDIRECT, NEXT, WRITE, MockSplitQueue
from virtio import spec
from virtio.constants import AvailFlag, UsedFlag
from virtio.errors import RingError
from virtio.layouts import DESC, USED_ELEM
from virtio.memory import GuestMemory
from virtio.ring import vring_need_event

MEM_SIZE = 1 << 20
OUTSIDE = MEM_SIZE + 0x1000  # an address no region backs


def make(size: int = 8, *, start_idx: int = 0, event_idx: bool = False,
         indirect: bool = False) -> tuple[GuestMemory, MockSplitQueue, DeviceQueue]:
    mem = GuestMemory.anonymous(MEM_SIZE)
    mq = MockSplitQueue(mem, size, start_idx=start_idx)
    q = mq.device_queue(event_idx=event_idx, indirect=indirect)
    q.validate(mem)
    return mem, mq, q


def pop_error(mem: GuestMemory, q: DeviceQueue) -> ChainError:
    before = q.last_avail_idx
    with pytest.raises(ChainError) as info:
        q.pop(mem)
    assert q.last_avail_idx == before  # a refused chain is not consumed
    assert isinstance(info.value, RingError)
    return info.value


# validate (§2.7, §2.7.2)

def test_validate_accepts_a_well_formed_queue() -> None:
    make(256)


@pytest.mark.parametrize(
    ("size", "rule"),
    [(0, "queue-size-not-power-of-two"), (6, "queue-size-not-power-of-two"),
     (65536, "queue-size-too-large")],
)
def test_validate_size(size: int, rule: str) -> None:
    mem = GuestMemory.anonymous(MEM_SIZE)
    q = DeviceQueue(0, size, 0x1000, 0x2000, 0x3000, event_idx=False, indirect=False)
    with pytest.raises(RingError) as info:
        q.validate(mem)
    assert info.value.rule == rule
    assert info.value.section == spec.SPLIT_VIRTQUEUES


@pytest.mark.parametrize(
    ("addrs", "rule", "section"),
    [
        ((0x1008, 0x4000, 0x8000), "desc-table-misaligned", spec.VIRTQUEUE_ALIGNMENT),
        ((0x1000, 0x4001, 0x8000), "avail-ring-misaligned", spec.VIRTQUEUE_ALIGNMENT),
        ((0x1000, 0x4000, 0x8002), "used-ring-misaligned", spec.VIRTQUEUE_ALIGNMENT),
        ((MEM_SIZE - 0x40, 0x4000, 0x8000), "desc-table-out-of-memory", spec.SPLIT_VIRTQUEUES),
        ((0x1000, MEM_SIZE - 0x10, 0x8000), "avail-ring-out-of-memory", spec.SPLIT_VIRTQUEUES),
        ((0x1000, 0x4000, MEM_SIZE - 0x40), "used-ring-out-of-memory", spec.SPLIT_VIRTQUEUES),
    ],
)
def test_validate_areas(addrs: tuple[int, int, int], rule: str, section: spec.Section) -> None:
    mem = GuestMemory.anonymous(MEM_SIZE)
    q = DeviceQueue(0, 8, *addrs, event_idx=False, indirect=False)
    with pytest.raises(RingError) as info:
        q.validate(mem)
    assert info.value.rule == rule
    assert info.value.section == section


# pop: well-formed chains

def test_pop_nothing_pending() -> None:
    mem, _, q = make()
    assert q.pending(mem) == 0
    assert q.pop(mem) is None


def test_pop_readable_then_writable_chain() -> None:
    mem, mq, q = make()
    placed = mq.add_chain([b"hello", b" world"], [4, 6])
    assert q.pending(mem) == 1
    chain = q.pop(mem)
    assert chain == Chain(placed.head, placed.readable, placed.writable, 4, False)
    assert chain.readable_len == 11
    assert chain.writable_len == 10
    assert chain.read(mem) == b"hello world"
    assert chain.read(mem, 3, 5) == b"lo wo"
    assert chain.read(mem, 9) == b"ld"
    assert q.last_avail_idx == 1
    assert q.pop(mem) is None


def test_chain_write_scatters_across_writable_parts() -> None:
    mem, mq, q = make()
    placed = mq.add_chain([], [4, 6])
    chain = q.pop(mem)
    assert chain is not None
    assert chain.write(mem, b"abcdefg") == 7
    assert chain.write(mem, b"XY", offset=3) == 2
    (a1, _), (a2, _) = placed.writable
    assert mem.read(a1, 4) == b"abcX"
    assert mem.read(a2, 6) == b"Yfg\x00\x00\x00"
    with pytest.raises(ValueError):
        chain.write(mem, b"12345678901")
    with pytest.raises(ValueError):
        chain.write(mem, b"12", offset=9)


def test_zero_length_chain_is_fine_at_this_layer() -> None:
    mem, mq, q = make()
    mq.write_desc(0, 0, 0)
    mq.publish(0)
    chain = q.pop(mem)
    assert chain == Chain(0, [(0, 0)], [], 1, False)
    assert chain.readable_len == chain.writable_len == 0


def test_indirect_chain() -> None:
    mem, mq, q = make(indirect=True)
    placed = mq.add_chain([b"hdr", b"body"], [8], indirect=True)
    chain = q.pop(mem)
    assert chain == Chain(placed.head, placed.readable, placed.writable, 4, True)
    assert chain.read(mem) == b"hdrbody"


def test_direct_descriptors_followed_by_an_indirect_table() -> None:
    """§2.7.5.3.2: the device MUST handle zero or more normal chained descriptors
    followed by a single INDIRECT one."""
    mem, mq, q = make(indirect=True)
    a = mq.buffer(b"AA")
    b = mq.buffer(b"BBB")
    table = mq.buffer(2 * DESC.size)
    mq.write_desc(0, b, 3, 0, 0, table=table)
    mq.write_desc(1, a, 0, 0, 0, table=table)  # not chained: never walked
    mq.write_desc(5, a, 2, NEXT, 2)
    mq.write_desc(2, table, DESC.size, INDIRECT)
    mq.publish(5)
    chain = q.pop(mem)
    assert chain == Chain(5, [(a, 2), (b, 3)], [], 3, True)
    assert chain.read(mem) == b"AABBB"


def test_write_flag_on_the_indirect_pointer_is_ignored() -> None:
    """§2.7.5.3.2: the device MUST ignore the write-only flag of the descriptor that
    refers to an indirect table."""
    mem, mq, q = make(indirect=True)
    data = mq.buffer(b"payload")
    table = mq.buffer(DESC.size)
    mq.write_desc(0, data, 7, 0, 0, table=table)
    mq.write_desc(3, table, DESC.size, INDIRECT | WRITE)
    mq.publish(3)
    chain = q.pop(mem)
    assert chain is not None
    assert chain.readable == [(data, 7)]
    assert chain.writable == []


# pop: each rule (one test each)

def test_head_out_of_range() -> None:
    mem, mq, q = make(8)
    mq.publish(8)
    err = pop_error(mem, q)
    assert (err.rule, err.section, err.queue, err.descriptor) == (
        "head-out-of-range", spec.AVAIL_RING, 0, 8)


def test_next_out_of_range() -> None:
    mem, mq, q = make(8)
    buf = mq.buffer(4)
    mq.write_desc(0, buf, 4, NEXT, 8)
    mq.publish(0)
    err = pop_error(mem, q)
    assert (err.rule, err.section, err.descriptor) == ("next-out-of-range", spec.DESC_TABLE, 0)


def test_next_out_of_range_inside_an_indirect_table() -> None:
    mem, mq, q = make(8, indirect=True)
    buf = mq.buffer(4)
    table = mq.buffer(2 * DESC.size)
    mq.write_desc(0, buf, 4, NEXT, 2, table=table)  # the table has 2 entries
    mq.write_desc(0, table, 2 * DESC.size, INDIRECT)
    mq.publish(0)
    assert pop_error(mem, q).rule == "next-out-of-range"


def test_chain_too_long_loop() -> None:
    """A loop is a chain longer than the queue size (§2.7.5.3.1, §2.7.5.1)."""
    mem, mq, q = make(4)
    buf = mq.buffer(4)
    mq.write_desc(0, buf, 4, NEXT, 1)
    mq.write_desc(1, buf, 4, NEXT, 0)
    mq.publish(0)
    err = pop_error(mem, q)
    assert (err.rule, err.section) == ("chain-too-long", spec.INDIRECT_DESC_DRIVER)


def test_chain_too_long_self_loop() -> None:
    mem, mq, q = make(2)
    buf = mq.buffer(4)
    mq.write_desc(1, buf, 4, NEXT, 1)
    mq.publish(1)
    assert pop_error(mem, q).rule == "chain-too-long"


def test_chain_of_exactly_queue_size_is_fine() -> None:
    mem, mq, q = make(4)
    mq.add_chain([b"a", b"b", b"c", b"d"])
    chain = q.pop(mem)
    assert chain is not None
    assert chain.descriptors == 4


def test_desc_addr_out_of_memory() -> None:
    mem, mq, q = make()
    mq.write_desc(0, MEM_SIZE - 8, 16)
    mq.publish(0)
    err = pop_error(mem, q)
    assert (err.rule, err.section, err.descriptor) == (
        "desc-addr-out-of-memory", spec.DESC_TABLE, 0)


def test_chain_too_large() -> None:
    """§2.7.5.1: no chain of 2^32 bytes or more (the shape of a chain is checked before
    its buffers' addresses)."""
    mem, mq, q = make()
    mq.write_desc(0, 0x1000, 0xFFFF_FFFF, NEXT, 1)
    mq.write_desc(1, 0x1000, 1)
    mq.publish(0)
    err = pop_error(mem, q)
    assert (err.rule, err.section, err.descriptor) == (
        "chain-too-large", spec.DESC_TABLE_DRIVER, 1)


def test_readable_after_writable() -> None:
    mem, mq, q = make()
    buf = mq.buffer(8)
    mq.write_desc(0, buf, 4, WRITE | NEXT, 1)
    mq.write_desc(1, buf, 4, 0)
    mq.publish(0)
    err = pop_error(mem, q)
    assert (err.rule, err.section, err.descriptor) == (
        "readable-after-writable", spec.MESSAGE_FRAMING, 1)


def test_readable_after_writable_across_an_indirect_table() -> None:
    mem, mq, q = make(indirect=True)
    buf = mq.buffer(8)
    table = mq.buffer(DESC.size)
    mq.write_desc(0, buf, 4, 0, 0, table=table)
    mq.write_desc(0, buf, 4, WRITE | NEXT, 1)
    mq.write_desc(1, table, DESC.size, INDIRECT)
    mq.publish(0)
    assert pop_error(mem, q).rule == "readable-after-writable"


def test_indirect_not_negotiated() -> None:
    mem, mq, q = make(indirect=False)
    mq.add_chain([b"x"], indirect=True)
    err = pop_error(mem, q)
    assert (err.rule, err.section) == ("indirect-not-negotiated", spec.INDIRECT_DESC_DRIVER)


def test_indirect_with_next() -> None:
    mem, mq, q = make(indirect=True)
    table = mq.buffer(DESC.size)
    mq.write_desc(0, table, DESC.size, INDIRECT | NEXT, 1)
    mq.publish(0)
    err = pop_error(mem, q)
    assert (err.rule, err.section) == ("indirect-with-next", spec.INDIRECT_DESC_DRIVER)


def test_indirect_nested() -> None:
    mem, mq, q = make(indirect=True)
    inner = mq.buffer(DESC.size)
    outer = mq.buffer(DESC.size)
    mq.write_desc(0, inner, DESC.size, INDIRECT, 0, table=outer)
    mq.write_desc(0, outer, DESC.size, INDIRECT)
    mq.publish(0)
    err = pop_error(mem, q)
    assert (err.rule, err.section) == ("indirect-nested", spec.INDIRECT_DESC_DRIVER)


@pytest.mark.parametrize("length", [0, 20, 8])
def test_indirect_table_size(length: int) -> None:
    mem, mq, q = make(indirect=True)
    table = mq.buffer(32)
    mq.write_desc(0, table, length, INDIRECT)
    mq.publish(0)
    err = pop_error(mem, q)
    assert (err.rule, err.section) == ("indirect-table-size", spec.INDIRECT_DESC)


def test_indirect_table_out_of_memory() -> None:
    mem, mq, q = make(indirect=True)
    mq.write_desc(0, MEM_SIZE - DESC.size, 2 * DESC.size, INDIRECT)
    mq.publish(0)
    err = pop_error(mem, q)
    assert (err.rule, err.section) == ("indirect-table-out-of-memory", spec.INDIRECT_DESC)


def test_indirect_chain_too_long() -> None:
    mem, mq, q = make(indirect=True)
    buf = mq.buffer(4)
    table = mq.buffer(2 * DESC.size)
    mq.write_desc(0, buf, 4, NEXT, 1, table=table)
    mq.write_desc(1, buf, 4, NEXT, 0, table=table)  # loop inside the table
    mq.write_desc(0, table, 2 * DESC.size, INDIRECT)
    mq.publish(0)
    err = pop_error(mem, q)
    assert (err.rule, err.section) == ("indirect-chain-too-long", spec.DESC_TABLE_DRIVER)


def test_avail_idx_jump() -> None:
    mem, mq, q = make(8)
    mq.set_avail_idx(9)
    with pytest.raises(RingError) as info:
        q.pending(mem)
    assert (info.value.rule, info.value.section) == ("avail-idx-jump", spec.AVAIL_RING)
    assert pop_error(mem, q).rule == "avail-idx-jump"


def test_avail_idx_moving_backwards_is_a_jump() -> None:
    """§2.7.6.1: the driver MUST NOT decrement avail idx; seen from the device that is a
    jump of almost 2^16 entries."""
    mem, mq, q = make(8, start_idx=100)
    mq.set_avail_idx(99)
    assert pop_error(mem, q).rule == "avail-idx-jump"


def test_ring_outside_memory_is_a_ring_error_not_a_memory_error() -> None:
    mem = GuestMemory.anonymous(MEM_SIZE)
    q = DeviceQueue(0, 8, 0x1000, OUTSIDE, 0x3000, event_idx=False, indirect=False)
    with pytest.raises(RingError) as info:
        q.pop(mem)
    assert info.value.rule == "ring-out-of-memory"


# indices, used ring

def test_push_used_writes_element_then_idx() -> None:
    mem, mq, q = make(8)
    placed = mq.add_chain([], [64])
    chain = q.pop(mem)
    assert chain is not None
    q.push_used(mem, chain.head, 42)
    assert mq.used_elem(0) == (placed.head, 42)
    assert mq.used_idx == 1 == q.used_idx
    raw = mem.read(mq.used_addr, 4 + USED_ELEM.size)
    assert raw == bytes([0, 0, 1, 0, placed.head, 0, 0, 0, 42, 0, 0, 0])


def test_push_used_rejects_our_own_misuse() -> None:
    mem, _, q = make(8)
    with pytest.raises(ValueError):
        q.push_used(mem, 8, 0)
    with pytest.raises(ValueError):
        q.push_used(mem, 0, 1 << 32)


def test_wrap_around_past_65535() -> None:
    mem, mq, q = make(4, start_idx=65534)
    heads = [mq.add_chain([bytes([i])]).head for i in range(3)]
    assert mq.avail_idx == 1
    assert q.pending(mem) == 3
    got = []
    for _ in range(3):
        chain = q.pop(mem)
        assert chain is not None
        got.append(chain.read(mem))
        q.push_used(mem, chain.head, 0)
    assert got == [b"\x00", b"\x01", b"\x02"]
    assert q.last_avail_idx == 1
    assert q.used_idx == 1 == mq.used_idx
    assert [mq.used_elem(i)[0] for i in range(3)] == heads
    assert q.pop(mem) is None
    # a full ring across the wrap: exactly size pending is fine
    for i in range(4):
        mq.add_chain([bytes([i])])
    assert q.pending(mem) == 4


def test_unpop_gives_the_chain_back() -> None:
    mem, mq, q = make()
    first = mq.add_chain([b"a"]).head
    mq.add_chain([b"b"])
    chain = q.pop(mem)
    assert chain is not None and chain.head == first
    q.unpop()
    assert q.pending(mem) == 2
    again = q.pop(mem)
    assert again is not None and again.head == first
    q.unpop()
    with pytest.raises(ValueError):
        q.unpop()


def test_unpop_at_index_zero_wraps() -> None:
    mem, mq, q = make(4, start_idx=65535)
    mq.add_chain([b"a"])
    assert q.pop(mem) is not None
    assert q.last_avail_idx == 0
    q.unpop()
    assert q.last_avail_idx == 65535


# used buffer notification suppression, §2.7.7

def test_needs_interrupt_without_event_idx() -> None:
    mem, mq, q = make()
    assert q.needs_interrupt(mem) is False  # nothing pushed
    q.push_used(mem, 0, 0)
    assert q.needs_interrupt(mem) is True
    mq.set_avail_flags(AvailFlag.NO_INTERRUPT)
    q.push_used(mem, 0, 0)
    q.push_used(mem, 1, 0)
    assert q.needs_interrupt(mem) is False
    mq.set_avail_flags(0)
    assert q.needs_interrupt(mem) is False  # already marked


def test_needs_interrupt_with_event_idx() -> None:
    mem, mq, q = make(event_idx=True)
    mq.set_avail_flags(AvailFlag.NO_INTERRUPT)  # ignored with EVENT_IDX
    mq.set_used_event(0)
    q.push_used(mem, 0, 0)  # used idx 0 -> 1 crosses used_event 0
    assert q.needs_interrupt(mem) is True
    q.push_used(mem, 0, 0)  # 1 -> 2 does not cross 0
    assert q.needs_interrupt(mem) is False
    mq.set_used_event(4)
    q.push_used(mem, 0, 0)  # 2 -> 3
    q.push_used(mem, 0, 0)  # 3 -> 4
    assert q.needs_interrupt(mem) is False
    q.push_used(mem, 0, 0)  # 4 -> 5 writes entry 4 == used_event
    assert q.needs_interrupt(mem) is True


def test_needs_interrupt_with_event_idx_across_the_wrap() -> None:
    mem, mq, q = make(event_idx=True, start_idx=65534)
    mq.set_used_event(0)
    q.push_used(mem, 0, 0)  # 65534 -> 65535
    assert q.needs_interrupt(mem) is False
    q.push_used(mem, 0, 0)  # 65535 -> 0
    q.push_used(mem, 0, 0)  # 0 -> 1: entry 0 written
    assert q.needs_interrupt(mem) is True
    assert q.used_idx == 1


@pytest.mark.parametrize(
    ("event", "new", "old", "expected"),
    [(0, 1, 0, True), (0, 2, 1, False), (5, 6, 3, True), (5, 5, 3, False),
     (65535, 0, 65534, True), (65535, 1, 0, False)],
)
def test_vring_need_event(event: int, new: int, old: int, expected: bool) -> None:
    assert vring_need_event(event, new, old) is expected


# available buffer notification suppression, §2.7.10

def test_disable_enable_notifications_without_event_idx() -> None:
    mem, mq, q = make()
    q.disable_notifications(mem)
    assert mq.used_flags == UsedFlag.NO_NOTIFY
    q.enable_notifications(mem)
    assert mq.used_flags == 0
    assert mq.avail_event == 0


def test_disable_enable_notifications_with_event_idx() -> None:
    mem, mq, q = make(event_idx=True, start_idx=700)
    mq.add_chain([b"a"])
    mq.add_chain([b"b"])
    q.disable_notifications(mem)
    assert mq.used_flags == 0  # the device MUST set flags to 0 with EVENT_IDX
    assert mq.avail_event == 0
    assert q.pop(mem) is not None
    q.enable_notifications(mem)
    assert mq.used_flags == 0
    # avail_event = the avail.idx the device has seen (702), not last_avail_idx (701):
    # chain "b" is already available, the driver's next one is what to notify about
    assert (mq.avail_event, q.last_avail_idx) == (702, 701)


# fuzz: whatever the driver writes, pop returns a chain or raises RingError

@settings(max_examples=300, deadline=None)
@given(
    table=st.binary(min_size=8 * DESC.size, max_size=8 * DESC.size),
    ring=st.lists(st.integers(0, 0xFFFF), min_size=8, max_size=8),
    avail_idx=st.integers(0, 10) | st.integers(0, 0xFFFF),
    indirect=st.booleans(),
    small_addrs=st.booleans(),
)
def test_pop_on_random_rings_returns_a_chain_or_raises_ring_error(
    table: bytes, ring: list[int], avail_idx: int, indirect: bool, small_addrs: bool,
) -> None:
    mem, mq, q = make(8, indirect=indirect)
    if small_addrs:  # keep addresses and lengths inside memory so chains get walked
        raw = bytearray(table)
        for i in range(8):
            off = i * DESC.size
            addr, length, flags, nxt = DESC.fmt.unpack_from(raw, off)
            DESC.fmt.pack_into(raw, off, addr % MEM_SIZE, length % 4096, flags & 7, nxt % 9)
        table = bytes(raw)
    mem.write(mq.desc_addr, table)
    for slot, head in enumerate(ring):
        mem.write_u16(mq.avail_addr + mq.geo.avail_entry(slot), head % 9 if small_addrs else head)
    mq.set_avail_idx(avail_idx)
    for _ in range(10):
        try:
            chain = q.pop(mem)
        except RingError:
            return
        if chain is None:
            return
        assert chain.readable_len + chain.writable_len < 1 << 32
        assert chain.descriptors >= 1
