"""Bad input never escapes as anything but state: random bytes as rings make the device
process the chain or record a protocol error (DEVICE_NEEDS_RESET, §2.1.2), random register
traffic is recorded or refused, and a device that writes garbage into the used ring makes
the driver record a DriverProtocolError (§2.7.8) — never any other exception."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbench.host import make_pair
from virtio.constants import MmioReg, Status
from virtio.layouts import SplitRingGeometry

TX = 1
RX = 0

fuzz_settings = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@fuzz_settings
@given(
    desc=st.binary(min_size=0, max_size=16 * 16),
    avail=st.binary(min_size=0, max_size=40),
    desc_offset=st.integers(0, 15),
)
def test_random_tx_ring_bytes_are_processed_or_recorded(
    desc: bytes, avail: bytes, desc_offset: int
) -> None:
    pair = make_pair(start=True)
    host = pair.a
    q = host.driver.tx_queue
    geo = SplitRingGeometry(q.size)
    desc = desc[: geo.desc_table_size - 16 * desc_offset]
    host.memory.write(q.desc_addr + 16 * desc_offset, desc)
    host.memory.write(q.avail_addr, avail[: geo.avail_size])
    host.mmio.write(MmioReg.QUEUE_NOTIFY, TX)  # must not raise
    status = host.core.status
    counters = host.device.counters
    if status & Status.DEVICE_NEEDS_RESET:
        assert host.monitor.records, "needs-reset without a record"
        assert all(r.who == "driver" for r in host.monitor.records)
    else:
        # every chain the device took went back on the used ring
        assert counters.tx_chains == (host.memory.read_u16(q.used_addr + 2) - q.start_idx) % 65536
    pair.loop.run_until_idle(max_steps=100_000)  # the rest of the system survives it too


@fuzz_settings
@given(
    writes=st.lists(
        st.tuples(
            st.integers(0, 0x140),
            st.integers(0, 2**32 - 1),
            st.sampled_from([1, 2, 4, 8]),
        ),
        max_size=40,
    )
)
def test_random_register_traffic_never_raises(writes: list[tuple[int, int, int]]) -> None:
    pair = make_pair(start=False)
    mmio = pair.a.mmio
    for offset, value, size in writes:
        mmio.write(offset, value & ((1 << (8 * size)) - 1) if size < 8 else value, size)
        mmio.read(offset, size)
    pair.a.device.receive(b"\xff" * 60)  # a frame arriving at whatever state that left


@fuzz_settings
@given(used=st.binary(min_size=4, max_size=4 + 8 * 4))
def test_garbage_in_the_used_ring_is_recorded_by_the_driver(used: bytes) -> None:
    pair = make_pair(start=True)
    host = pair.a
    q = host.driver.rx_queue
    host.memory.write(q.used_addr, used)
    host.driver.handle_interrupt()  # must not raise
    host.driver.receive()
    if host.driver.broken:
        assert host.driver.errors
