"""The layer sampler of ``make bench`` (benchmarks/layers.py)."""

from __future__ import annotations

import signal
import time

import pytest

from benchmarks.layers import OTHER, ROOT, LayerSampler, layer_of
from stack.wire.checksum import oc_add


@pytest.mark.parametrize(("rel", "layer"), [
    ("stack/tcp/connection.py", "stack: TCP"),
    ("stack/interface.py", "stack: IP, interface, wire formats"),
    ("driver/rx.py", "driver"),
    ("emulator/offload/segment.py", "device: segmentation engine"),
    ("emulator/offload/coalesce.py", "device: coalescing engine"),
    ("emulator/offload/checksum.py", "device: other offload (checksums)"),
    ("emulator/backends/wire.py", "wire"),
    ("emulator/net/device.py", "device: rings, transmit, receive"),
    ("virtio/memory.py", "shared virtio (guest memory, headers)"),
    ("testbench/loop.py", "event loop"),
    ("testbench/host.py", "harness (hosts, application)"),
])
def test_layer_of_project_files(rel: str, layer: str) -> None:
    assert layer_of(str(ROOT / rel)) == layer


def test_files_outside_the_project_have_no_layer() -> None:
    assert layer_of(time.__file__ if hasattr(time, "__file__") else "/usr/lib/x.py") is None
    assert layer_of(str(ROOT / "tests" / "conftest.py")) is None
    assert layer_of(pytest.__file__) is None


def test_samples_are_charged_to_the_project_code_running() -> None:
    before = signal.getsignal(signal.SIGPROF)
    with LayerSampler(interval_s=0.001) as sampler:
        start = time.process_time()
        calls = 0
        # Bounded: 0.3 s of CPU or 20 million calls, whichever first.
        while time.process_time() - start < 0.3 and calls < 20_000_000:
            oc_add(calls & 0xFFFF, 0x1234)
            calls += 1
    assert signal.getsignal(signal.SIGPROF) == before
    assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)
    total = sum(sampler.samples.values())
    assert total >= 10
    wire = sampler.samples["stack: IP, interface, wire formats"]
    # The loop itself runs in this test file (not a layer): its samples are OTHER.
    assert wire + sampler.samples[OTHER] == total
    assert wire > 0
    # charged to oc_add or to what it calls in the same module (fold)
    assert sum(n for name, n in sampler.functions.items()
               if name.startswith("checksum.py:")) == wire
    assert sampler.functions["checksum.py:oc_add"] > 0
    assert sampler.cpu_s >= 0.3
    shares = sampler.shares()
    assert abs(sum(share for _, _, share in shares) - 1.0) < 1e-9
    assert "µs/call" in sampler.render(per=calls, unit="call")


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        LayerSampler(interval_s=0)
