"""Any chain the driver builds is popped identically by the device (§2.7.13 supplying
buffers, §2.7.5 descriptor table, §2.7.5.3 indirect descriptors), across index
wrap-around past 65535 — the driver-side and device-side queues agree on every byte of
the split ring."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from driver.virtqueue import DriverQueue
from emulator.virtqueue import DeviceQueue
from virtio.memory import GuestMemory

ChainSpec = tuple[list[int], list[int], bool]  # readable lengths, writable lengths, indirect

chain_specs = st.tuples(
    st.lists(st.integers(0, 300), max_size=4),
    st.lists(st.integers(0, 300), max_size=4),
    st.booleans(),
).filter(lambda c: len(c[0]) + len(c[1]) > 0)


def make_queues(size: int, start: int, event_idx: bool) -> tuple[GuestMemory, DriverQueue, DeviceQueue]:
    mem = GuestMemory.anonymous(1 << 20)
    drv = DriverQueue(mem, 0, size, event_idx=event_idx, indirect=True, start_idx=start)
    dev = DeviceQueue(
        0, size, drv.desc_addr, drv.avail_addr, drv.used_addr,
        event_idx=event_idx, indirect=True, start_idx=start,
    )
    dev.validate(mem)
    return mem, drv, dev


@settings(max_examples=150, deadline=None)
@given(
    batches=st.lists(st.lists(chain_specs, min_size=1, max_size=6), min_size=1, max_size=12),
    start=st.one_of(st.just(0), st.integers(65500, 65535)),
    event_idx=st.booleans(),
    data=st.data(),
)
def test_device_pops_exactly_what_the_driver_added(
    batches: list[list[ChainSpec]], start: int, event_idx: bool, data: st.DataObject
) -> None:
    size = 16
    mem, drv, dev = make_queues(size, start, event_idx)
    alloc = mem.allocator
    assert alloc is not None
    token = 0
    for batch in batches:
        added = []
        for outs, ins, indirect in batch:
            needed = 1 if indirect else len(outs) + len(ins)
            if needed > drv.num_free:
                continue
            out = [(alloc.alloc(max(n, 1)), n) for n in outs]
            in_ = [(alloc.alloc(max(n, 1)), n) for n in ins]
            payload = data.draw(st.binary(min_size=sum(outs), max_size=sum(outs)))
            pos = 0
            for addr, n in out:
                mem.write(addr, payload[pos : pos + n])
                pos += n
            head = drv.add(out, in_, token, use_indirect=indirect)
            added.append((head, token, out, in_, indirect, payload))
            token += 1
        assert dev.pending(mem) == len(added)
        for head, _tok, out, in_, indirect, payload in added:
            chain = dev.pop(mem)
            assert chain is not None
            assert chain.head == head
            assert chain.readable == out
            assert chain.writable == in_
            assert chain.indirect == indirect
            assert chain.descriptors == (1 if indirect else 0) + len(out) + len(in_)
            assert chain.read(mem) == payload
            written = min(chain.writable_len, 7)
            if written:
                assert chain.write(mem, b"x" * written) == written
            dev.push_used(mem, head, written)
        assert dev.pop(mem) is None
        for _head, tok, out, in_, _indirect, _payload in added:
            got = drv.get_used()
            assert got is not None
            assert got[0] == tok
            assert got[1] == min(sum(n for _, n in in_), 7)
            for addr, _n in [*out, *in_]:
                alloc.free(addr)
        assert drv.get_used() is None
        assert drv.num_free == size
    # the indices really moved (and wrapped when started near 65535)
    assert dev.last_avail_idx == (start + token) % 65536
    assert dev.used_idx == (start + token) % 65536
