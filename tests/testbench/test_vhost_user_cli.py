"""``vnetbench vhost-user``: it prints the QEMU flags, serves a frontend that connects (here
the Python frontend of tests/emulator, not QEMU), stops after ``--duration`` and
reports; a feature QEMU does not delegate is refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulator.backends.vhost_user import messages as m
from testbench.cli import EXIT_ERROR, main
from tests.emulator.vhost_user_frontend import Frontend
from virtio.constants import FeatureBit as F


def test_serves_a_frontend_then_reports(tmp_path: Path) -> None:
    sock = tmp_path / "vnb.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "testbench.cli", "vhost-user", "--socket", str(sock),
         "--offer", "VERSION_1,CSUM,HOST_TSO4", "--duration", "4", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < end and proc.poll() is None:
            time.sleep(0.05)
        assert sock.exists()
        with Frontend(str(sock), lambda: None) as fe:
            offered = fe.get_u64(m.Request.GET_FEATURES)
            assert offered == (1 << F.VERSION_1) | (1 << F.CSUM) | (1 << F.HOST_TSO4) | (1 << 30)
            assert fe.get_u64(m.Request.GET_QUEUE_NUM) == 2
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
    assert proc.returncode == 0, err
    assert f"-chardev socket,id=c0,path={sock} -netdev vhost-user,id=n0,chardev=c0" in out
    assert ("-device virtio-net-pci,netdev=n0,romfile=,vectors=0,mac=52:54:00:00:00:10"
            in out)
    assert "memory-backend-memfd,id=mem,size=256M,share=on" in out
    assert "session 1: QEMU connected" in out
    report = json.loads(out[out.index("\n{") + 1:])
    assert report["sessions"] == 1 and report["protocol_errors"] == []
    assert report["offered"] == ["CSUM", "HOST_TSO4", "VERSION_1"]
    assert report["negotiated"] == [] and report["monitor"] == []
    assert not sock.exists()  # removed on exit


def test_refuses_a_feature_qemu_keeps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["vhost-user", "--socket", str(tmp_path / "s"), "--offer", "VERSION_1,CTRL_VQ",
                 "--duration", "1"])
    assert code == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("vnetbench vhost-user: error: a vhost-user net backend cannot offer "
                          "['CTRL_VQ']")
