"""The conformance monitor (emulator/monitor.py)."""

from __future__ import annotations

import pytest

from emulator.monitor import Monitor, Record
from virtio import spec
from virtio.errors import DeviceProtocolError, DriverProtocolError, RingError


class FakeClock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def test_record_takes_time_from_the_injected_clock() -> None:
    clock = FakeClock()
    monitor = Monitor(clock)
    clock.now = 1234
    rec = monitor.record("driver", "head-out-of-range", str(spec.AVAIL_RING), "head 9",
                         queue=1, descriptor=9, action="needs-reset")
    assert rec == Record("driver", "head-out-of-range", str(spec.AVAIL_RING), "head 9",
                         1234, 1, 9, "needs-reset")
    assert monitor.records == [rec]


def test_default_clock_is_zero() -> None:
    assert Monitor().record("device", "r", "ref", "d").time == 0


def test_record_error_device_protocol_error_is_the_drivers_fault() -> None:
    monitor = Monitor()
    err = RingError("bad", rule="indirect-nested", section=spec.INDIRECT_DESC_DRIVER)
    rec = monitor.record_error(err, queue=0, descriptor=3, action="needs-reset")
    assert (rec.who, rec.rule, rec.reference, rec.detail) == (
        "driver", "indirect-nested", str(spec.INDIRECT_DESC_DRIVER), "bad")
    assert (rec.queue, rec.descriptor, rec.action) == (0, 3, "needs-reset")


def test_record_error_driver_protocol_error_is_the_devices_fault() -> None:
    monitor = Monitor()
    rec = monitor.record_error(
        DriverProtocolError("used id 7 not in flight", rule="used-id", section=spec.USED_RING))
    assert rec.who == "device"
    assert rec.reference == str(spec.USED_RING)


def test_record_error_without_section_says_unspecified() -> None:
    rec = Monitor().record_error(DeviceProtocolError("x"))
    assert (rec.rule, rec.reference) == ("protocol", "unspecified")


def test_who_must_be_driver_or_device() -> None:
    with pytest.raises(ValueError):
        Monitor().record("someone", "r", "ref", "d")


def test_rules_count_report_clear() -> None:
    monitor = Monitor()
    assert monitor.report() == "no violations"
    assert monitor.rules() == []
    monitor.record("driver", "a", "ref-a", "first", queue=1, descriptor=2, action="dropped")
    monitor.record("driver", "b", "ref-b", "second")
    monitor.record("driver", "a", "ref-a", "third")
    assert monitor.rules() == ["a", "b", "a"]
    assert monitor.count("a") == 2
    assert len(monitor) == 3
    lines = monitor.report().splitlines()
    assert lines[0] == "[0 ns] driver broke a q1 desc 2 -> dropped: first (ref-a)"
    assert lines[1] == "[0 ns] driver broke b: second (ref-b)"
    assert len(lines) == 3
    monitor.clear()
    assert monitor.records == []
    assert monitor.report() == "no violations"
