"""The guest harness without booting: QEMU's command line (the flags that work on QEMU 7.2
under TCG with a vhost-user netdev), the kernel command line, the console's ``VNB:``
lines, and the initramfs archive format (cpio "newc", what the kernel unpacks)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from testbench.initramfs import INIT, MODULE_ORDER, Cpio
from testbench.qemu_guest import GuestConfig, QemuGuest, kernel_command_line, qemu_command


def config(script: str = "", ip: str = "10.0.2.15/24",
           chardev_options: tuple[str, ...] = ()) -> GuestConfig:
    return GuestConfig("/run/vnb.sock", Path("/boot/vmlinuz"), Path("/tmp/initrd.gz"), script,
                       ip, chardev_options=chardev_options)


def test_qemu_command_has_what_vhost_user_needs() -> None:
    cmd = qemu_command(config(script="true", chardev_options=("reconnect=1",)))
    joined = " ".join(cmd[1:])
    assert "-accel tcg -nodefaults" in joined  # no KVM here; no other device or network
    assert "-object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem" in joined
    assert "-chardev socket,id=c0,path=/run/vnb.sock,reconnect=1" in joined
    assert "-netdev vhost-user,id=n0,chardev=c0" in joined
    assert cmd[cmd.index("-device") + 1] == (
        "virtio-net-pci,netdev=n0,romfile=,vectors=0,mac=52:54:00:00:00:10")
    assert "-no-reboot" in cmd and cmd[cmd.index("-serial") + 1] == "stdio"


def test_kernel_command_line_carries_the_script() -> None:
    line = kernel_command_line(config(script="echo hi\n", ip="10.9.0.2/24"))
    assert line == ("console=ttyS0 quiet panic=-1 vnb.ip=10.9.0.2/24 vnb.cmd="
                    + base64.b64encode(b"echo hi\n").decode())
    with pytest.raises(ValueError, match="shorten the guest script"):
        kernel_command_line(config(script="x" * 2000))


def test_console_markers_are_complete_lines() -> None:
    guest = QemuGuest(config())
    guest.console += b"[    1.0] noise\r\nVNB:BOOT 2.1\r\nnoise VNB:FEATURES 1010\r\nVNB:UP "
    assert guest.lines() == ["BOOT 2.1", "FEATURES 1010"]
    assert guest.marker("UP") is None  # still being printed
    guest.console += b"0 12\r\n"
    assert guest.marker("UP") == "0 12" and guest.marker("BOOT") == "2.1"
    assert guest.marker("BOO") is None


def parse_newc(data: bytes) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    """name -> (mode, body, (rdevmajor, rdevminor)) of a newc archive."""
    out: dict[str, tuple[int, bytes, tuple[int, int]]] = {}
    pos = 0
    while True:
        assert data[pos:pos + 6] == b"070701"
        fields = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name_start = pos + 110
        name = data[name_start:name_start + namesize - 1].decode()
        body_start = (name_start + namesize + 3) & ~3
        body = data[body_start:body_start + filesize]
        pos = (body_start + filesize + 3) & ~3
        if name == "TRAILER!!!":
            return out
        out[name] = (fields[1], body, (fields[9], fields[10]))


def test_cpio_newc_round_trip() -> None:
    archive = Cpio()
    archive.directory("bin")
    archive.file("init", b"#!/bin/sh\n", 0o755)
    archive.symlink("bin/sh", "busybox")
    archive.char_device("dev/console", 5, 1)
    entries = parse_newc(archive.finish())
    assert entries == {
        "bin": (0o040755, b"", (0, 0)),
        "init": (0o100755, b"#!/bin/sh\n", (0, 0)),
        "bin/sh": (0o120777, b"busybox", (0, 0)),
        "dev/console": (0o020600, b"", (5, 1)),
    }


def test_init_loads_the_modules_in_dependency_order() -> None:
    assert MODULE_ORDER == ("virtio_ring", "virtio", "virtio_pci_modern_dev",
                            "virtio_pci_legacy_dev", "virtio_pci", "failover", "net_failover",
                            "virtio_net")
    assert "poweroff -f" in INIT and "/sys/class/net/eth0/device/features" in INIT
