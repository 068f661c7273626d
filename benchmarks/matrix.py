"""How long a 64-cell feature matrix takes (issue 7: under 2 minutes on a 2-core
machine): every feature family × bulk TCP over IPv4 and IPv6 × the strict, linux, qemu
and firecracker profiles, 2 MB per cell, with as many jobs as cores. Printed beside the
same matrix run with one job, measured in the same run, so the ratio shows what the
parallel runner buys on this machine."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from testbench.cli import main as vnetbench

TARGET_S = 120.0
ARGS = ["matrix", "--features", "all", "--workloads", "bulk4,bulk6", "--profiles",
        "strict,linux,qemu,firecracker", "--size", "2M", "--quiet", "--no-plots"]


def timed(jobs: int, out: Path) -> float:
    started = time.perf_counter()
    code = vnetbench([*ARGS, "--jobs", str(jobs), "--out", str(out)])
    if code != 0:
        raise SystemExit(f"the matrix failed with exit status {code}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip-serial", action="store_true",
                        help="do not run the one-job baseline")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        parallel = timed(args.jobs, Path(tmp) / "parallel")
        serial = None if args.skip_serial else timed(1, Path(tmp) / "serial")
    print(f"\n64-cell matrix, {args.jobs} job(s): {parallel:.1f} s "
          f"(target < {TARGET_S:.0f} s: {'meets' if parallel < TARGET_S else 'MISSES'})")
    if serial is not None:
        print(f"64-cell matrix, 1 job: {serial:.1f} s; speed-up {serial / parallel:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
