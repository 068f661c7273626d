"""The driver-side split virtqueue (§2.7), checked against the rings in guest memory."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driver.virtqueue import DriverQueue
from tests.driver.fake_device import FakeRing
from virtio import spec
from virtio.constants import AvailFlag, DescFlag, UsedFlag
from virtio.errors import UsedRingError
from virtio.layouts import DESC, SplitRingGeometry
from virtio.memory import GuestMemory
from virtio.ring import vring_need_event

BUF = 0x8_0000  # buffers the tests pretend to own, far above the allocator's first blocks


def make(size: int = 8, *, event_idx: bool = False, indirect: bool = False,
         start_idx: int = 0) -> tuple[GuestMemory, DriverQueue, FakeRing]:
    mem = GuestMemory.anonymous(1 << 20)
    q = DriverQueue(mem, 0, size, event_idx=event_idx, indirect=indirect, start_idx=start_idx)
    return mem, q, FakeRing.of(q)


def desc(mem: GuestMemory, table: int, i: int) -> tuple[int, int, int, int]:
    addr, length, flags, nxt = DESC.fmt.unpack(mem.read(table + DESC.size * i, DESC.size))
    return addr, length, flags, nxt


def test_rings_are_allocated_aligned_and_zeroed() -> None:
    """§2.7.2 alignment (16/2/4) and sizes; §2.7.10: used.flags starts at 0."""
    mem, q, ring = make(16)
    g = SplitRingGeometry(16)
    assert q.desc_addr % 16 == 0 and q.avail_addr % 2 == 0 and q.used_addr % 4 == 0
    assert mem.read(q.desc_addr, g.desc_table_size) == bytes(g.desc_table_size)
    assert mem.read(q.avail_addr, g.avail_size) == bytes(g.avail_size)
    assert mem.read(q.used_addr, g.used_size) == bytes(g.used_size)
    assert (q.num_free, q.in_flight, ring.avail_idx) == (16, 0, 0)


@pytest.mark.parametrize("size", [0, 3, 65536])
def test_queue_size_must_be_a_power_of_two(size: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        DriverQueue(GuestMemory.anonymous(1 << 20), 0, size, event_idx=False, indirect=False)


def test_add_writes_readable_then_writable_chain() -> None:
    """§2.7.4 / §2.7.13.1: readable elements first, NEXT on all but the last, WRITE on
    the device-writable ones; ring[idx % size] = head, then idx + 1 (§2.7.13.2-3)."""
    mem, q, ring = make(8)
    head = q.add([(BUF, 10), (BUF + 10, 20)], [(BUF + 100, 300)], token="t")
    assert head == 0
    assert [desc(mem, q.desc_addr, i) for i in range(3)] == [
        (BUF, 10, DescFlag.NEXT, 1),
        (BUF + 10, 20, DescFlag.NEXT, 2),
        (BUF + 100, 300, DescFlag.WRITE, 0),
    ]
    assert ring.avail_idx == 1
    assert mem.read_u16(q.avail_addr + 4) == head
    assert (q.num_free, q.in_flight) == (5, 1)
    chain = ring.pop()
    assert chain is not None
    assert chain.readable == [(BUF, 10), (BUF + 10, 20)] and chain.writable == [(BUF + 100, 300)]
    ring.push_used(head, 123)
    assert q.get_used() == ("t", 123)
    assert (q.num_free, q.in_flight) == (8, 0)
    assert q.get_used() is None


@pytest.mark.parametrize(
    ("out", "in_", "match"),
    [([], [], "at least one"), ([(BUF, 1 << 32)], [], "bad buffer"), ([(-1, 4)], [], "bad buffer")],
)
def test_add_rejects_bad_buffers(out: list[tuple[int, int]], in_: list[tuple[int, int]],
                                 match: str) -> None:
    _, q, _ = make()
    with pytest.raises(ValueError, match=match):
        q.add(out, in_, token=None)


def test_zero_length_elements_are_allowed() -> None:
    """The spec sets no lower bound on ``len`` (§2.7.5); a zero-length element is passed
    through as is."""
    mem, q, ring = make()
    head = q.add([(BUF, 0)], [(BUF, 0)], token="z")
    assert desc(mem, q.desc_addr, head)[1] == 0
    chain = ring.pop()
    assert chain is not None and chain.writable == [(BUF, 0)]
    ring.push_used(head, 0)
    assert q.get_used() == ("z", 0)


def test_add_without_free_descriptors_is_a_value_error() -> None:
    _, q, _ = make(4)
    q.add([(BUF, 1)] * 3, [], token=1)
    with pytest.raises(ValueError, match="2 descriptors needed, 1 free"):
        q.add([(BUF, 1), (BUF, 1)], [], token=2)
    assert (q.num_free, q.in_flight) == (1, 1)


def test_index_wrap_past_65535() -> None:
    """§2.7.13.3: idx wraps naturally at 65536, for avail and used alike."""
    mem, q, ring = make(4, start_idx=65530)
    assert (ring.avail_idx, ring.used_idx) == (65530, 65530)
    seen_avail: list[int] = []
    for n in range(20):
        head = q.add([(BUF + n, 1)], [(BUF + 0x1000, 64)], token=n)
        seen_avail.append(ring.avail_idx)
        chain = ring.pop()
        assert chain is not None and chain.head == head
        ring.push_used(head, n)
        assert q.get_used() == (n, n)
    assert seen_avail[:7] == [65531, 65532, 65533, 65534, 65535, 0, 1]
    assert ring.avail_idx == (65530 + 20) & 0xFFFF == q.avail_idx == q.last_used_idx
    assert mem.read_u16(q.used_addr + 2) == 14


def test_batch_across_wrap_is_read_in_order() -> None:
    _, q, ring = make(4, start_idx=65534)
    heads = [q.add([(BUF, 1)], [], token=f"p{n}") for n in range(4)]
    for _ in range(4):
        chain = ring.pop()
        assert chain is not None
        ring.push_used(chain.head, 0)
    assert ring.used_idx == 2
    assert [q.get_used() for _ in range(4)] == [(f"p{n}", 0) for n in range(4)]
    assert len(set(heads)) == 4 and q.num_free == 4


def test_free_list_reuses_the_last_freed_chain_first() -> None:
    _, q, ring = make(8)
    a = q.add([(BUF, 1), (BUF, 1)], [], token="a")
    b = q.add([(BUF, 1)], [], token="b")
    assert (a, b) == (0, 2)
    for _ in range(2):
        chain = ring.pop()
        assert chain is not None
    ring.push_used(a, 0)
    assert q.get_used() == ("a", 0)
    # LIFO: chain a's descriptors (0, 1) come back first, then the untouched 3..7.
    assert [q.add([(BUF, 1)], [], token=i) for i in range(3)] == [0, 1, 3]


def test_indirect_table_is_written_exactly_and_freed() -> None:
    """§2.7.5.3: one ring descriptor with INDIRECT and len 16*n pointing at a table whose
    descriptors are chained by next from 0, with no INDIRECT inside (§2.7.5.3.1)."""
    mem, q, ring = make(8, indirect=True)
    alloc = mem.allocator
    assert alloc is not None
    before = alloc.in_use
    head = q.add([(BUF, 12), (BUF + 12, 60)], [(BUF + 0x100, 1500)], token="x", use_indirect=True)
    assert q.num_free == 7
    table, length, flags, nxt = desc(mem, q.desc_addr, head)
    assert (length, flags, nxt) == (3 * DESC.size, DescFlag.INDIRECT, 0)
    assert table % 16 == 0 and alloc.in_use == before + 3 * DESC.size
    assert [desc(mem, table, i) for i in range(3)] == [
        (BUF, 12, DescFlag.NEXT, 1),
        (BUF + 12, 60, DescFlag.NEXT, 2),
        (BUF + 0x100, 1500, DescFlag.WRITE, 0),
    ]
    chain = ring.pop()
    assert chain is not None and chain.writable == [(BUF + 0x100, 1500)]
    ring.push_used(head, 1500)
    assert q.get_used() == ("x", 1500)
    assert alloc.in_use == before and q.num_free == 8


def test_indirect_needs_the_feature_and_a_chain_no_longer_than_the_queue() -> None:
    _, q, _ = make(4)
    with pytest.raises(ValueError, match="INDIRECT_DESC"):
        q.add([(BUF, 1)], [], token=0, use_indirect=True)
    _, q, _ = make(4, indirect=True)
    with pytest.raises(ValueError, match="longer than the queue size"):
        q.add([(BUF, 1)] * 5, [], token=0, use_indirect=True)


def test_vring_need_event_table() -> None:
    """The helper of §2.7.10: notify iff event is in [old, new) modulo 2^16."""
    assert vring_need_event(0, 1, 0)
    assert not vring_need_event(1, 1, 0)
    assert vring_need_event(5, 8, 3) and not vring_need_event(8, 8, 3)
    assert not vring_need_event(2, 3, 3)  # nothing added
    assert vring_need_event(65535, 2, 65534)  # across the wrap
    assert not vring_need_event(3, 2, 65534)


def test_kick_needed_without_event_idx_follows_used_flags() -> None:
    """§2.7.10 without EVENT_IDX: notify unless used.flags has NO_NOTIFY."""
    _, q, ring = make(8)
    q.add([(BUF, 1)], [], token=0)
    assert q.kick_needed() is True
    ring.set_used_flags(UsedFlag.NO_NOTIFY)
    q.add([(BUF, 1)], [], token=1)
    assert q.kick_needed() is False
    ring.set_used_flags(0)
    q.add([(BUF, 1)], [], token=2)
    assert q.kick_needed() is True


def test_kick_needed_with_event_idx_exact_sequence() -> None:
    """§2.7.10 with EVENT_IDX: notify when avail idx passes avail_event since the
    previous check; used.flags is ignored."""
    _, q, ring = make(8, event_idx=True)
    ring.set_used_flags(UsedFlag.NO_NOTIFY)  # must be ignored with EVENT_IDX
    results = []
    q.add([(BUF, 1)], [], token=0)  # idx 0 -> 1, avail_event 0
    results.append(q.kick_needed())
    q.add([(BUF, 1)], [], token=1)  # 1 -> 2, event 0 already passed
    results.append(q.kick_needed())
    ring.set_avail_event(3)
    q.add([(BUF, 1)], [], token=2)  # 2 -> 3: event 3 not reached
    results.append(q.kick_needed())
    q.add([(BUF, 1)], [], token=3)
    q.add([(BUF, 1)], [], token=4)  # 3 -> 5 in one batch crosses 3
    results.append(q.kick_needed())
    results.append(q.kick_needed())  # nothing new
    assert results == [True, False, False, True, False]


def test_kick_needed_with_event_idx_across_wrap() -> None:
    _, q, ring = make(4, event_idx=True, start_idx=65535)
    ring.set_avail_event(65535)
    q.add([(BUF, 1)], [], token=0)  # 65535 -> 0
    assert q.kick_needed() is True


def test_interrupt_suppression_without_event_idx() -> None:
    """§2.7.7: NO_INTERRUPT in avail.flags; enable returns True when entries slipped in
    while disabled (the race §2.7.14 describes)."""
    _, q, ring = make(8)
    head = q.add([(BUF, 1)], [], token="a")
    q.disable_interrupts()
    assert ring.avail_flags == AvailFlag.NO_INTERRUPT
    assert q.enable_interrupts() is False
    assert ring.avail_flags == 0
    q.disable_interrupts()
    ring.pop()
    ring.push_used(head, 0)  # the device completes while interrupts are off
    assert q.enable_interrupts() is True
    assert q.get_used() == ("a", 0)
    assert q.enable_interrupts() is False


def test_interrupt_suppression_with_event_idx() -> None:
    """§2.7.7 with EVENT_IDX: flags stay 0; used_event tracks last_used while enabled,
    is parked at last_used - 1 while disabled."""
    _, q, ring = make(8, event_idx=True, start_idx=100)
    assert ring.used_event == 100
    heads = [q.add([(BUF, 1)], [], token=n) for n in range(3)]
    for h in heads:
        ring.pop()
        ring.push_used(h, 0)
    q.get_used()
    assert ring.used_event == 101  # re-armed for the next entry
    q.disable_interrupts()
    assert (ring.avail_flags, ring.used_event) == (0, 100)
    q.get_used()
    assert ring.used_event == 100  # not moved while disabled
    assert q.enable_interrupts() is True  # one entry still pending
    assert ring.used_event == 102
    q.get_used()
    assert q.enable_interrupts() is False and ring.used_event == 103


# §2.7.8: every used-ring rule has its own name.


def _one_in_flight(size: int = 4) -> tuple[DriverQueue, FakeRing, int]:
    _, q, ring = make(size)
    head = q.add([(BUF, 1)], [(BUF + 64, 100)], token="a")
    ring.pop()
    return q, ring, head


def _raises(q: DriverQueue, rule: str, section: spec.Section) -> UsedRingError:
    with pytest.raises(UsedRingError) as info:
        q.get_used()
    assert info.value.rule == rule and info.value.section == section
    return info.value


def test_used_id_out_of_range() -> None:
    q, ring, _ = _one_in_flight()
    ring.push_used(4, 0)
    _raises(q, "used-id-out-of-range", spec.USED_RING)


def test_used_id_not_in_flight() -> None:
    q, ring, _ = _one_in_flight()
    ring.push_used(3, 0)  # a free descriptor
    _raises(q, "used-id-not-in-flight", spec.USED_RING)


def test_used_id_returned_twice() -> None:
    q, ring, head = _one_in_flight()
    ring.push_used(head, 0)
    ring.push_used(head, 0)
    assert q.get_used() == ("a", 0)
    _raises(q, "used-id-not-in-flight", spec.USED_RING)


def test_used_len_too_large() -> None:
    q, ring, head = _one_in_flight()
    ring.push_used(head, 101)  # 100 writable bytes
    _raises(q, "used-len-too-large", spec.USED_RING_DEVICE)
    assert q.in_flight == 1  # nothing consumed


def test_used_idx_jump() -> None:
    q, ring, head = _one_in_flight()
    ring.push_used(head, 0)
    ring.memory.write_u16(ring.used + 2, 5)  # moved by 5 > size 4
    _raises(q, "used-idx-jump", spec.USED_RING)
    assert q.has_used()


def test_chain_over_4_gib_is_refused() -> None:
    """§2.7.5.1: no chain longer than 2^32 bytes in total."""
    _, q, _ = make()
    with pytest.raises(ValueError, match="2\\^32"):
        q.add([(BUF, 0xFFFF_FFFF)], [(BUF, 2)], token=0)


def test_release_frees_every_area() -> None:
    mem, q, _ = make(8, indirect=True)
    alloc = mem.allocator
    assert alloc is not None
    q.add([(BUF, 1)] * 3, [], token=0, use_indirect=True)
    q.release()
    q.release()
    assert alloc.in_use == 0


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_add_complete_keeps_descriptors_accounted(data: st.DataObject) -> None:
    """Property: num_free + descriptors of in-flight chains == size, at every step,
    whatever the order the device completes chains in (§2.7.8: any order)."""
    size = data.draw(st.sampled_from([2, 4, 8, 16]))
    start = data.draw(st.integers(0, 0xFFFF))
    _, q, ring = make(size, indirect=True, start_idx=start)
    owned: dict[int, tuple[int, int]] = {}  # head -> (descriptors, writable)
    completed: list[int] = []
    token = 0
    for _ in range(data.draw(st.integers(1, 60))):
        if data.draw(st.booleans()) and q.num_free:
            n_out = data.draw(st.integers(0, 3))
            n_in = data.draw(st.integers(0 if n_out else 1, 3))
            indirect = data.draw(st.booleans())
            if n_out + n_in > (size if indirect else q.num_free):
                continue
            head = q.add([(BUF, 8)] * n_out, [(BUF, 16)] * n_in, token=token,
                         use_indirect=indirect)
            token += 1
            owned[head] = (1 if indirect else n_out + n_in, 16 * n_in)
            chain = ring.pop()
            assert chain is not None and chain.head == head
            completed.append(head)
        elif completed:
            head = completed.pop(data.draw(st.integers(0, len(completed) - 1)))
            ring.push_used(head, data.draw(st.integers(0, owned[head][1])))
            got = q.get_used()
            assert got is not None
            del owned[head]
        assert q.num_free + sum(d for d, _ in owned.values()) == size
        assert q.in_flight == len(owned)
