"""A Linux guest under QEMU whose only network device is a virtio-net-pci backed by our
vhost-user backend (QEMU ``-netdev vhost-user``).

What works here (Debian 12, QEMU 7.2; see NOTES-REAL-PEERS.md): ``-accel tcg`` (KVM is not
usable); guest RAM shared with the backend (``memory-backend-memfd,share=on`` as the NUMA
node's memory); ``vectors=0`` on the device (with MSI-X, QEMU 7.2 under TCG crashed at
DRIVER_OK with a vhost-user netdev); ``romfile=`` (no PXE ROM); ``-nodefaults`` (no other
device, so no other network). The kernel is Debian's cloud kernel, the initramfs
:mod:`testbench.initramfs`'s; the guest prints ``VNB:`` lines on its serial console,
which is QEMU's stdout here.

:class:`QemuGuest` starts QEMU, collects the console without blocking (the caller's loop
must keep serving the vhost-user socket meanwhile: QEMU waits for our replies), and
always kills QEMU on :meth:`QemuGuest.close`, within a bounded time.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from testbench.initramfs import MARK, InitramfsError, find_busybox, find_kernel

QEMU = "qemu-system-x86_64"
CMDLINE_LIMIT = 2000
"""x86 COMMAND_LINE_SIZE is 2048 bytes."""
GUEST_MAC = "52:54:00:00:00:10"


def qemu_binary() -> str | None:
    return shutil.which(QEMU)


def guest_unavailable() -> str | None:
    """Why a guest cannot boot here (None: it can): QEMU, the cloud kernel and a static
    busybox are needed (Debian: qemu-system-x86, linux-image-cloud-amd64,
    busybox-static)."""
    if qemu_binary() is None:
        return f"{QEMU} not installed (Debian package qemu-system-x86)"
    try:
        find_kernel()
        find_busybox()
    except InitramfsError as err:
        return str(err)
    return None


@dataclass(frozen=True)
class GuestConfig:
    socket_path: str
    """The vhost-user socket our backend listens on."""
    kernel: Path
    initrd: Path
    script: str = ""
    """Shell script the guest runs after eth0 is up (busybox sh)."""
    ip: str = "10.0.2.15/24"
    mac: str = GUEST_MAC
    memory_mib: int = 256
    device_options: tuple[str, ...] = ()
    """Extra ``-device virtio-net-pci`` properties, e.g. ``("rx_queue_size=256",)``."""
    chardev_options: tuple[str, ...] = ()
    """Extra socket chardev options, e.g. ``("reconnect=1",)``."""
    kernel_args: tuple[str, ...] = ("console=ttyS0", "quiet", "panic=-1")
    extra_args: tuple[str, ...] = field(default=())


def kernel_command_line(config: GuestConfig) -> str:
    parts = [*config.kernel_args, f"vnb.ip={config.ip}"]
    if config.script:
        parts.append("vnb.cmd=" + base64.b64encode(config.script.encode()).decode())
    line = " ".join(parts)
    if len(line) > CMDLINE_LIMIT:
        raise ValueError(f"kernel command line of {len(line)} bytes (limit {CMDLINE_LIMIT}): "
                         "shorten the guest script")
    return line


def vhost_user_flags(socket_path: str, memory_mib: int, mac: str = GUEST_MAC,
                     device_options: tuple[str, ...] = (),
                     chardev_options: tuple[str, ...] = ()) -> list[str]:
    """The QEMU flags that give a guest a virtio-net-pci served by the vhost-user backend
    on ``socket_path``: guest RAM (``-m`` of the same size) shared through a memfd, the
    socket chardev, the netdev and the device (``vectors=0``, ``romfile=``)."""
    mem = f"{memory_mib}M"
    device = ",".join(["virtio-net-pci", "netdev=n0", "romfile=", "vectors=0",
                       f"mac={mac}", *device_options])
    return [
        "-object", f"memory-backend-memfd,id=mem,size={mem},share=on",
        "-numa", "node,memdev=mem",
        "-chardev", ",".join([f"socket,id=c0,path={socket_path}", *chardev_options]),
        "-netdev", "vhost-user,id=n0,chardev=c0",
        "-device", device,
    ]


def qemu_command(config: GuestConfig) -> list[str]:
    """The QEMU command line for ``config``."""
    return [
        qemu_binary() or QEMU,
        "-accel", "tcg", "-nodefaults", "-no-user-config", "-no-reboot",
        "-display", "none", "-monitor", "none", "-serial", "stdio",
        "-m", f"{config.memory_mib}M", "-smp", "1",
        "-kernel", str(config.kernel), "-initrd", str(config.initrd),
        "-append", kernel_command_line(config),
        *vhost_user_flags(config.socket_path, config.memory_mib, config.mac,
                          config.device_options, config.chardev_options),
        *config.extra_args,
    ]


class QemuGuest:
    """A running QEMU (started by :meth:`start`), its console collected by :meth:`poll`."""

    def __init__(self, config: GuestConfig) -> None:
        self.config = config
        self.command = qemu_command(config)
        self.proc: subprocess.Popen[bytes] | None = None
        self.console = bytearray()
        self.started_at = 0.0
        self.exited_at: float | None = None
        self.killed = False

    def start(self) -> None:
        self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        self.started_at = time.monotonic()

    @property
    def fileno(self) -> int | None:
        proc = self.proc
        if proc is None or proc.stdout is None or proc.stdout.closed:
            return None
        return proc.stdout.fileno()

    def poll(self) -> int:
        """Read what the console printed so far (non-blocking); bytes read."""
        fd = self.fileno
        if fd is None:
            return 0
        total = 0
        for _ in range(64):
            try:
                chunk = os.read(fd, 65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if not chunk:
                break
            self.console += chunk
            total += len(chunk)
        if self.exited_at is None and self.proc is not None and self.proc.poll() is not None:
            self.exited_at = time.monotonic()
        return total

    @property
    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    @property
    def text(self) -> str:
        return self.console.decode(errors="replace")

    def lines(self) -> list[str]:
        """The console's complete ``VNB:`` lines (a line still being printed is not
        one yet), without the marker."""
        out = []
        text = self.text
        complete = text[: text.rfind("\n") + 1]
        for raw in complete.splitlines():
            line = raw.strip("\r")
            pos = line.find(MARK)
            if pos >= 0:
                out.append(line[pos + len(MARK):])
        return out

    def marker(self, name: str) -> str | None:
        """The rest of the first ``VNB:<name>`` line, or None."""
        for line in self.lines():
            if line == name or line.startswith(name + " "):
                return line[len(name):].strip()
        return None

    def close(self, timeout_s: float = 5.0) -> None:
        """Terminate QEMU (kill if it does not exit within ``timeout_s``)."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            self.killed = True
            proc.terminate()
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout_s)
        self.poll()
        if proc.stdout is not None:
            with contextlib.suppress(OSError):
                proc.stdout.close()

    def __enter__(self) -> QemuGuest:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
