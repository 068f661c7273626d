"""Where the time of a run goes, by layer: a small statistical profiler.

``SIGPROF`` fires every ``interval_s`` of CPU time; the handler walks the interrupted
Python stack from the innermost frame out and charges the sample to the first frame that
lies in one of the project's packages (time inside the standard library, numpy or a C
function counts for the project code that called it). The package decides the layer
(:data:`LAYERS`). Sampling costs one short handler call per interval, so the figures are
those of an undisturbed run, unlike a tracing profiler (cProfile's per-call hook more
than doubles the cost of this call-heavy code and shifts the shares towards small
functions).

Used by ``benchmarks/goodput.py --layers``; usable around any code::

    with LayerSampler() as sampler:
        run_bulk(pair, size)
    print(sampler.render())
"""

from __future__ import annotations

import signal
import sys
import time
from collections import Counter
from pathlib import Path
from types import FrameType, TracebackType

ROOT = Path(__file__).resolve().parent.parent
LAYERS: tuple[tuple[str, str], ...] = (
    ("stack/tcp/", "stack: TCP"),
    ("stack/", "stack: IP, interface, wire formats"),
    ("driver/", "driver"),
    ("emulator/offload/segment", "device: segmentation engine"),
    ("emulator/offload/coalesce", "device: coalescing engine"),
    ("emulator/offload/", "device: other offload (checksums)"),
    ("emulator/backends/", "wire"),
    ("emulator/", "device: rings, transmit, receive"),
    ("virtio/", "shared virtio (guest memory, headers)"),
    ("testbench/loop", "event loop"),
    ("testbench/", "harness (hosts, application)"),
    ("benchmarks/", "benchmark"),
)
"""Path prefix under the project root → layer, first match wins."""
OTHER = "outside the project"


def layer_of(path: str) -> str | None:
    """The layer of a source file, None when it is not the project's."""
    try:
        rel = Path(path).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return None
    for prefix, name in LAYERS:
        if rel.startswith(prefix):
            return name
    return None


class LayerSampler:
    """Samples the main thread's stack on ``SIGPROF`` (CPU time) while active."""

    def __init__(self, interval_s: float = 0.001) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.interval_s = interval_s
        self.samples: Counter[str] = Counter()
        self.functions: Counter[str] = Counter()
        """Samples by the project function charged (``file:function``)."""
        self.cpu_s = 0.0
        """CPU time of the process while sampling (the kernel may deliver the signal
        at its tick, coarser than ``interval_s``: time per sample is cpu_s / samples)."""
        self._by_file: dict[str, str | None] = {}
        self._previous: object = None
        self._cpu_start = 0.0

    def _charged(self, frame: FrameType | None) -> tuple[str, FrameType | None]:
        """The layer and the frame a sample is charged to."""
        by_file = self._by_file
        depth = 0
        while frame is not None and depth < 200:  # bounded: a deep recursion is cut
            path = frame.f_code.co_filename
            layer = by_file.get(path, "")
            if layer == "":
                layer = by_file[path] = layer_of(path)
            if layer is not None:
                return layer, frame
            frame = frame.f_back
            depth += 1
        return OTHER, None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        layer, charged = self._charged(frame)
        self.samples[layer] += 1
        if charged is not None:
            code = charged.f_code
            self.functions[f"{Path(code.co_filename).name}:{code.co_qualname}"] += 1

    def __enter__(self) -> LayerSampler:
        if sys.platform == "win32":  # pragma: no cover - no SIGPROF there
            raise RuntimeError("LayerSampler needs SIGPROF (a POSIX system)")
        self._previous = signal.signal(signal.SIGPROF, self._on_signal)
        self._cpu_start = time.process_time()
        signal.setitimer(signal.ITIMER_PROF, self.interval_s, self.interval_s)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        self.cpu_s = time.process_time() - self._cpu_start
        signal.signal(signal.SIGPROF, self._previous)  # type: ignore[arg-type]

    def shares(self) -> list[tuple[str, int, float]]:
        """(layer, samples, fraction of all samples), largest first."""
        total = sum(self.samples.values())
        return [(name, n, n / total) for name, n in self.samples.most_common()] if total else []

    def render(self, *, per: float | None = None, unit: str = "") -> str:
        """A table of the shares; with ``per`` (e.g. the number of 64 KB packets) also
        the CPU time per unit in microseconds."""
        lines = []
        for name, _, share in self.shares():
            line = f"  {name:40} {100 * share:5.1f}%"
            if per:
                line += f"  {share * self.cpu_s / per * 1e6:8.1f} µs/{unit}"
            lines.append(line)
        return "\n".join(lines)
