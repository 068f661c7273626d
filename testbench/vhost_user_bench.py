"""The vhost-user topology: a QEMU guest (the real Linux virtio_net driver) drives our
device through the vhost-user backend; our device's backend is one end of the in-memory
wire; at the other end an emulated host — device, our driver, our TCP/IP stack — is the
guest's peer::

    Linux guest ─ QEMU virtio-net-pci ═ vhost-user socket ═ VhostUserNet (our device)
        ─ wire ─ Host (our device + driver + stack, 10.0.2.2 and fd00::2)

Everything runs in this process on one :class:`~testbench.loop.EventLoop` tied to the
wall clock (:class:`~testbench.realtime.RealTimeRunner`): the bench is the runner's peer,
polling the vhost-user socket, the kick eventfds and QEMU's console, and waiting on all
of them. Every wait is bounded; QEMU is killed on :meth:`VhostUserBench.close`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import TracebackType

from driver.net import DriverConfig
from emulator.backends.faults import PERFECT, FaultConfig
from emulator.backends.vhost_user import VhostUserNet, VhostUserServer, vhost_net_config
from emulator.backends.wire import Wire
from emulator.monitor import Monitor
from emulator.net.device import NetDeviceConfig
from stack.interface import InterfaceConfig
from stack.stack import Stack, StackConfig
from testbench.host import Host, HostConfig
from testbench.initramfs import build_initramfs, find_kernel
from testbench.loop import EventLoop
from testbench.qemu_guest import GuestConfig, QemuGuest
from testbench.realtime import RealTimeRunner
from testbench.tcp_bulk import MODES
from virtio.features import FeatureSet

MIB = 1 << 20
GUEST_IP = "10.0.2.15"
HOST_IP = "10.0.2.2"
GUEST_IP6 = "fd00::15"
HOST_IP6 = "fd00::2"
HOST_MAC = bytes.fromhex("525400000020")


class VhostUserBench:
    """Our device on a vhost-user socket, wired to an emulated host with our stack."""

    def __init__(self, workdir: Path | None = None, *, offered: FeatureSet | None = None,
                 profile: str = "strict", host_mode: str = "tso",
                 device: NetDeviceConfig | None = None,
                 socket_path: str | None = None, host_ip: str = HOST_IP,
                 faults: FaultConfig | None = None, seed: int = 1) -> None:
        base = replace(device, profile=profile) if device is not None else NetDeviceConfig(
            profile=profile)
        self.config = vhost_net_config(base, offered)  # ValueError before anything is made
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="vnb-vhost-")
            workdir = Path(self._tmp.name)
        self.workdir = workdir
        self.socket_path = socket_path or str(self.workdir / "vhost.sock")
        self.loop = EventLoop()
        self.monitor = Monitor(self.loop.clock)
        # the link between the guest's device and the far host; ``faults`` (seeded by
        # ``seed``) makes it lose, reorder, duplicate or corrupt frames both ways
        self.wire = Wire(self.loop.clock, faults=faults or PERFECT, seed=seed)
        self.loop.add_source(self.wire)
        self.vhost = VhostUserNet(self.config, self.wire.a, monitor=self.monitor,
                                  call_later=self.loop.call_later)
        try:
            self.server = VhostUserServer(self.socket_path, self.vhost)
        except OSError:
            if self._tmp is not None:
                self._tmp.cleanup()
            raise
        self.host = Host(self.loop, HostConfig(
            "host", HOST_MAC, 48 * MIB, NetDeviceConfig(),
            DriverConfig(wanted=MODES[host_mode], queue_size=256)))
        self.host.attach(self.wire.b)
        self.host.start()
        self.stack: Stack = self.host.add_stack(StackConfig(InterfaceConfig(
            HOST_MAC, ipv4=f"{host_ip}/24", ipv6=(f"{HOST_IP6}/64",))))
        self.guest: QemuGuest | None = None
        self.runner = RealTimeRunner(self.loop, self, max_wait_s=0.02)

    # RealTimePeer
    def poll(self, now: int) -> int:
        n = self.server.poll(now)
        if self.guest is not None:
            self.guest.poll()
        return n

    def wait(self, timeout: float) -> bool:
        extra = []
        if self.guest is not None and self.guest.fileno is not None and not self.guest.exited:
            extra.append(self.guest.fileno)
        return self.server.wait(timeout, extra)

    # running
    def run_until(self, done: Callable[[], object], timeout_s: float) -> bool:
        """Serve everything until ``done()`` or ``timeout_s`` wall seconds (False)."""
        return self.runner.run_until(done, timeout_s)

    def boot(self, script: str = "", *, ip: str = f"{GUEST_IP}/24",
             device_options: tuple[str, ...] = (),
             chardev_options: tuple[str, ...] = ()) -> QemuGuest:
        """Build the initramfs and start QEMU (the server already listens)."""
        kernel = find_kernel()
        initrd = build_initramfs(self.workdir / "initrd.gz", kernel)
        self.guest = QemuGuest(GuestConfig(self.socket_path, kernel.image, initrd, script, ip,
                                           device_options=device_options,
                                           chardev_options=chardev_options))
        self.guest.start()
        return self.guest

    def wait_marker(self, name: str, timeout_s: float) -> str | None:
        """Run until the guest printed ``VNB:<name>`` (its rest) or exited (None)."""
        guest = self.guest
        assert guest is not None
        self.run_until(lambda: guest.marker(name) is not None or guest.exited, timeout_s)
        guest.poll()
        return guest.marker(name)

    def wait_exit(self, timeout_s: float) -> bool:
        guest = self.guest
        assert guest is not None
        ok = self.run_until(lambda: guest.exited, timeout_s)
        # what QEMU said on its way out (GET_VRING_BASE etc. are served above)
        end = time.monotonic() + 1.0
        while time.monotonic() < end and self.server.session is not None:
            self.runner.step()
        guest.poll()
        return ok

    def close(self) -> None:
        if self.guest is not None:
            self.guest.close()
        self.server.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> VhostUserBench:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
