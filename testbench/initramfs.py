"""A tiny Linux initramfs for the QEMU guest of the vhost-user tests: Debian's static
busybox, the cloud kernel's virtio modules and an ``/init`` that

1. mounts proc, sysfs and devtmpfs;
2. loads the virtio modules in dependency order (virtio_ring, virtio,
   virtio_pci_modern_dev, virtio_pci_legacy_dev, virtio_pci, failover, net_failover,
   virtio_net: modular in Debian's 6.1 cloud kernel, and uncompressed, so busybox
   ``insmod`` takes them);
3. brings eth0 up with the address given as ``vnb.ip=ADDR/PREFIX`` on the kernel command
   line and prints its negotiated features (``/sys/class/net/eth0/device/features``);
4. runs the shell script given base64-encoded as ``vnb.cmd=`` and prints its exit status;
5. powers off (``poweroff -f``; QEMU runs with ``-no-reboot``).

Everything the tests read goes to the serial console as lines starting with ``VNB:``.
The archive is written here (cpio "newc", gzip), so building it needs no root and no
``cpio`` binary; it is deterministic for the same inputs.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

MODULE_ORDER = (
    "virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
    "failover", "net_failover", "virtio_net",
)
"""Load order of the modules virtio_net needs (their ``depends:`` fields)."""
BUSYBOX_PATHS = ("/bin/busybox", "/usr/bin/busybox")
MARK = "VNB:"

INIT = r"""#!/bin/sh
# vnetbench guest /init (testbench/initramfs.py)
PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /run
echo "VNB:BOOT $(cut -d' ' -f1 /proc/uptime)"
for m in __MODULES__; do
    insmod /lib/modules/$m.ko || echo "VNB:ERROR insmod $m"
done
ip=""
cmd=""
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        vnb.ip=*) ip="${arg#vnb.ip=}" ;;
        vnb.cmd=*) cmd="${arg#vnb.cmd=}" ;;
    esac
done
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 100 ]; do sleep 0.05; n=$((n+1)); done
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
    ip link set eth0 up
    [ -n "$ip" ] && ip addr add "$ip" dev eth0
    echo "VNB:FEATURES $(cat /sys/class/net/eth0/device/features)"
    echo "VNB:MAC $(cat /sys/class/net/eth0/address)"
else
    echo "VNB:ERROR no eth0"
fi
echo "VNB:READY $(cut -d' ' -f1 /proc/uptime)"
if [ -n "$cmd" ]; then
    echo "$cmd" | base64 -d > /tmp/cmd.sh
    sh /tmp/cmd.sh
    echo "VNB:EXIT $?"
fi
echo "VNB:POWEROFF $(cut -d' ' -f1 /proc/uptime)"
poweroff -f
"""


class InitramfsError(RuntimeError):
    """A piece the initramfs needs is missing (kernel image, modules, static busybox)."""


@dataclass(frozen=True)
class GuestKernel:
    """A kernel image and its module tree."""

    version: str
    image: Path
    modules: Path

    def module(self, name: str) -> Path:
        """Path of module ``name`` (``.ko``, uncompressed) in the module tree."""
        found = sorted(self.modules.rglob(f"{name}.ko"))
        if not found:
            raise InitramfsError(f"module {name}.ko not found under {self.modules}")
        return found[0]


def find_kernel(boot: Path = Path("/boot"), modules: Path = Path("/lib/modules")) -> GuestKernel:
    """The newest Debian cloud kernel (linux-image-cloud-amd64) with its modules."""
    images = sorted(boot.glob("vmlinuz-*-cloud-amd64"), key=lambda p: _version_key(p.name))
    for image in reversed(images):
        version = image.name.removeprefix("vmlinuz-")
        tree = modules / version
        if tree.is_dir() and os.access(image, os.R_OK):
            return GuestKernel(version, image, tree)
    raise InitramfsError(f"no readable {boot}/vmlinuz-*-cloud-amd64 with modules in {modules} "
                         "(Debian package linux-image-cloud-amd64)")


def _version_key(name: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", name)]


def find_busybox() -> Path:
    """A statically linked busybox (Debian busybox-static): the initramfs has no libc."""
    for candidate in BUSYBOX_PATHS:
        path = Path(candidate)
        if path.is_file() and is_static(path):
            return path
    raise InitramfsError("no statically linked busybox in " + ", ".join(BUSYBOX_PATHS)
                         + " (Debian package busybox-static)")


def is_static(path: Path) -> bool:
    """An ELF executable without a program interpreter (PT_INTERP)."""
    head = path.read_bytes()[:1 << 16]
    return head[:4] == b"\x7fELF" and b"/lib64/ld-linux" not in head and b"ld-linux" not in head


def busybox_applets(busybox: Path) -> list[str]:
    """The applets busybox has (``busybox --list``), without ``busybox`` itself."""
    out = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, timeout=10,
                         check=True).stdout
    return sorted({a.strip() for a in out.split() if a.strip() and a.strip() != "busybox"})


class Cpio:
    """A cpio archive in the "newc" format (what the kernel unpacks as an initramfs)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.ino = 1

    def _entry(self, name: str, mode: int, body: bytes, rdev: tuple[int, int] = (0, 0)) -> None:
        fields = (self.ino, mode, 0, 0, 1, 0, len(body), 0, 0, *rdev, len(name) + 1, 0)
        header = b"070701" + b"".join(f"{f:08X}".encode() for f in fields)
        self.ino += 1
        self.data += header + name.encode() + b"\0"
        self._pad()
        self.data += body
        self._pad()

    def _pad(self) -> None:
        self.data += b"\0" * (-len(self.data) % 4)

    def directory(self, name: str) -> None:
        self._entry(name, 0o040755, b"")

    def file(self, name: str, body: bytes, mode: int = 0o644) -> None:
        self._entry(name, 0o100000 | mode, body)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def char_device(self, name: str, major: int, minor: int) -> None:
        self._entry(name, 0o020600, b"", (major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0, b"")
        return bytes(self.data)


def build_initramfs(out: Path, kernel: GuestKernel | None = None,
                    busybox: Path | None = None) -> Path:
    """Write the initramfs (gzip-compressed newc cpio) to ``out``; returns ``out``."""
    kernel = kernel or find_kernel()
    busybox = busybox or find_busybox()
    archive = Cpio()
    for d in (".", "bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp",
              "run", "etc", "lib", "lib/modules"):
        archive.directory(d)
    archive.char_device("dev/console", 5, 1)  # init's stdin/stdout before devtmpfs
    archive.file("bin/busybox", busybox.read_bytes(), 0o755)
    for applet in busybox_applets(busybox):
        archive.symlink(f"bin/{applet}", "busybox")
    for name in MODULE_ORDER:
        archive.file(f"lib/modules/{name}.ko", kernel.module(name).read_bytes())
    init = INIT.replace("__MODULES__", " ".join(MODULE_ORDER))
    archive.file("init", init.encode(), 0o755)
    out.write_bytes(gzip.compress(archive.finish(), compresslevel=1, mtime=0))
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m testbench.initramfs OUT``: write the initramfs, print the kernel."""
    parser = argparse.ArgumentParser(prog="python -m testbench.initramfs",
                                     description="Build the vhost-user test guest's initramfs.")
    parser.add_argument("out", type=Path, help="where to write it (gzip cpio)")
    args = parser.parse_args(argv)
    try:
        kernel = find_kernel()
        build_initramfs(args.out, kernel)
    except (InitramfsError, OSError, subprocess.SubprocessError) as err:
        print(f"initramfs: error: {err}")
        return 3
    print(f"initramfs {args.out} ({args.out.stat().st_size} bytes) for kernel {kernel.image}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
