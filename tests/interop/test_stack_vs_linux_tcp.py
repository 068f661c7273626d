"""Our TCP/IP stack, on our driver and emulated virtio-net device, plugged through the tap
backend into a network namespace: the Linux kernel's TCP is the peer, in real time
(:class:`testbench.realtime.RealTimeRunner`).

- Handshakes both ways: the options the kernel puts in its SYN / SYN-ACK (MSS, window
  scale, SACK-permitted, timestamps) as our driver received them, and what our
  connection negotiated from them.
- Bulk transfers of 8 MB each way, byte-exact, over IPv4 and IPv6, with the kernel as
  server and as client; a Python socket program in the namespace reports the SHA-256 of
  what it received, whether it saw our FIN, and its TCP_INFO; both ends close cleanly.
- TSO on: the tap takes CSUM|TSO4|TSO6 (the kernel hands us GSO packets, which the
  ``linux`` profile passes on to a driver with GUEST_TSO4/6 + GUEST_CSUM and the
  ``strict`` profile segments and coalesces again), and our driver has HOST_TSO4/6 (our
  stack emits packets of up to 64 KB that our device segments on the way to the tap).
  TSO off: tap offloads 0, our driver without checksum or segmentation offloads. The
  counters say which path each byte took.
- Ping both ways: our stack pings the kernel; the kernel pings us (an ICMP echo socket
  in the namespace, the kernel facility ``ping`` uses unprivileged; no iputils needed).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from driver.net import DriverConfig, VirtioNetDriver
from emulator.backends.faults import Fate, FateObserver, FaultConfig, FaultyBackend
from emulator.backends.tap import TapBackend, TapDevice, TunOffload
from emulator.net.device import NetDeviceConfig
from stack.device import DeviceCapabilities, RxFrame, TxMeta
from stack.interface import InterfaceConfig
from stack.sockets import TcpSocket
from stack.stack import Stack, StackConfig
from stack.tcp.config import TcpConfig
from stack.tcp.connection import TcpState
from stack.tcp.options import SynOptions
from stack.wire.ecn import Ecn, frame_ecn
from stack.wire.tcp import TcpFlags, TcpHeader
from testbench.host import Host, HostConfig
from testbench.loop import EventLoop
from testbench.netns import Netns, unique_name
from testbench.packets import DST_MAC, SRC_MAC
from testbench.realtime import RealTimeRunner
from testbench.tcp_bulk import MODES, pattern
from tests.interop.conftest import kernel_on_tap
from virtio.constants import FeatureBit as F
from virtio.features import FeatureSet

PORT = 5201
SIZE = 8 << 20
BACK_SHIFT = 4099
"""The kernel sends ``pattern(SIZE + BACK_SHIFT)[BACK_SHIFT:]``: not the bytes we sent,
so a reflection of our own data cannot pass for the kernel's."""
HANDSHAKE_S = 3.0
BULK_S = 15.0
PING_S = 5.0
KERNEL_EXIT_S = 5.0
MIB = 1 << 20

# The kernel's side. ``pattern`` is testbench.tcp_bulk.pattern, restated because the
# program runs in a fresh interpreter; the digests compared in the test catch any drift.
COMMON = r"""
import hashlib, json, socket, struct, sys

def pattern(n):
    block = bytes((i * 131 + (i >> 8) * 7) & 0xFF for i in range(65_521))
    return (block * -(-n // len(block)))[:n]

def tcp_info(s):
    raw = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    f = struct.unpack_from("8B24I", raw)
    # tcpi_options, tcpi_snd_wscale:4 | tcpi_rcv_wscale:4, snd_mss, rcv_mss, total_retrans
    return {"options": f[5], "snd_wscale": f[6] & 15, "rcv_wscale": f[6] >> 4,
            "snd_mss": f[10], "rcv_mss": f[11], "total_retrans": f[8 + 23]}

def netstat():
    # this namespace's TcpExt counters that are not zero (/proc/net/netstat)
    lines = open("/proc/net/netstat").read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            pairs = zip(names.split()[1:], values.split()[1:])
            return {k: int(v) for k, v in pairs if int(v)}
    return {}

def drain(conn):
    h, n = hashlib.sha256(), 0
    while True:
        b = conn.recv(1 << 20)
        if not b:
            return h.hexdigest(), n
        h.update(b)
        n += len(b)

fam = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
addr, port, size, shift = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
back = pattern(size + shift)[shift:]
"""

SERVER = COMMON + r"""
srv = socket.socket(fam, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((addr, port))
srv.listen(1)
srv.settimeout(20)
print("ready", flush=True)
conn, _ = srv.accept()
conn.settimeout(20)
digest, n = drain(conn)   # until our FIN: we shut our side down after sending
conn.sendall(back)
info = tcp_info(conn)
conn.close()
print(json.dumps({"sha256": digest, "received": n, "eof": True, "tcp_info": info,
                  "netstat": netstat()}), flush=True)
"""

CLIENT = COMMON + r"""
conn = socket.create_connection((addr, port), timeout=20)
conn.sendall(back)
conn.shutdown(socket.SHUT_WR)
digest, n = drain(conn)   # until our FIN: we close after sending
info = tcp_info(conn)
conn.close()
print(json.dumps({"sha256": digest, "received": n, "eof": True, "tcp_info": info,
                  "netstat": netstat()}), flush=True)
"""

PINGER = r"""
import json, select, socket, struct, sys, time
v6, addr, count = sys.argv[1] == "6", sys.argv[2], int(sys.argv[3])
if v6:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6)
    request, reply = 128, 129
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    request, reply = 8, 0
got = 0
for seq in range(1, count + 1):
    data = b"vnetbench kernel ping %d" % seq
    # an ICMP echo socket: the kernel sets the identifier and the checksum
    s.sendto(struct.pack("!BBHHH", request, 0, 0, 0, seq) + data, (addr, 0))
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        if not select.select([s], [], [], max(0.0, end - time.monotonic()))[0]:
            break
        msg = s.recv(2048)
        kind, _, _, _, rseq = struct.unpack_from("!BBHHH", msg)
        if kind == reply and rseq == seq and msg[8:] == data:
            got += 1
            break
print(json.dumps({"sent": count, "received": got}), flush=True)
sys.exit(0 if got == count else 1)
"""

TCPI_OPT_TIMESTAMPS, TCPI_OPT_SACK, TCPI_OPT_WSCALE, TCPI_OPT_ECN = 1, 2, 4, 8


@dataclass(frozen=True)
class Family:
    name: str
    ours: str
    kernel: str
    mss: int
    """What the kernel advertises on a 1500-byte link."""

    @property
    def v6(self) -> bool:
        return ":" in self.ours


V4 = Family("ipv4", "10.0.0.1", "10.0.0.2", 1460)
V6 = Family("ipv6", "fd00::1", "fd00::2", 1440)


@dataclass(frozen=True)
class Offloads:
    name: str
    tap: TunOffload
    wanted: FeatureSet
    profile: str
    """``linux`` passes the kernel's GSO packets on; ``strict`` segments them and
    coalesces the segments again (GRO)."""

    @property
    def tso(self) -> bool:
        return bool(self.tap)


TSO_LINUX = Offloads("tso-linux", TunOffload.CSUM | TunOffload.TSO4 | TunOffload.TSO6,
                     MODES["tso"], "linux")
TSO_STRICT = Offloads("tso-strict", TSO_LINUX.tap, MODES["tso"], "strict")
NO_TSO = Offloads("no-tso", TunOffload(0), MODES["none"], "strict")


# -- the namespace ----------------------------------------------------------------------
@contextmanager
def kernel_peer(family: Family, offloads: TunOffload, *,
                ecn: bool = False) -> Iterator[tuple[Netns, TapDevice]]:
    """The kernel behind a tap we hold. IPv4: :func:`kernel_on_tap` as is. IPv6: the
    same with IPv6 left on, fd00::2/64 on the tap (``nodad``: usable at once) and no
    static neighbour for fd00::1 — our stack answers the kernel's solicitation. Either
    way ICMP echo sockets are allowed for root (``ping_group_range``). ``ecn``: the
    namespace's TCP asks for ECN and agrees to it (``tcp_ecn`` 1, per namespace)."""
    if not family.v6:
        with kernel_on_tap("vnb-tcp4-", offloads) as (ns, tap):
            ns.sysctl("net.ipv4.ping_group_range", "0 0")
            ns.sysctl("net.ipv4.tcp_ecn", "1" if ecn else "2")
            yield ns, tap
        return
    with Netns("vnb-tcp6-") as ns, TapDevice(unique_name("vt6"), vnet_hdr_size=12) as tap:
        tap.set_offload(offloads)
        ns.sysctl("net.ipv4.ping_group_range", "0 0")
        ns.sysctl("net.ipv4.tcp_ecn", "1" if ecn else "2")
        ns.move_link(tap.name)
        ns.ip("link", "set", "dev", tap.name, "address", DST_MAC.hex(":"))
        ns.ip("addr", "add", "10.0.0.2/24", "dev", tap.name)
        ns.ip("-6", "addr", "add", f"{family.kernel}/64", "dev", tap.name, "nodad")
        ns.ip("link", "set", "dev", tap.name, "up")
        tap.drain()
        yield ns, tap


def in_netns(ns: Netns, script: str, *args: object) -> subprocess.Popen[str]:
    ip = shutil.which("ip") or "/usr/sbin/ip"
    return subprocess.Popen(
        [ip, "netns", "exec", ns.name, sys.executable, "-c", script, *map(str, args)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextmanager
def kernel_program(ns: Netns, script: str, *args: object) -> Iterator[subprocess.Popen[str]]:
    proc = in_netns(ns, script, *args)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    assert line, f"no output from the kernel-side program; stderr: {stderr_of(proc)}"
    return line.strip()


def stderr_of(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None or proc.stderr is None:
        return "(still running)"
    return proc.stderr.read().strip()[-2000:]


def report_of(proc: subprocess.Popen[str]) -> dict[str, object]:
    """The JSON line the kernel-side program printed last, after it exited."""
    assert proc.returncode == 0, f"kernel side failed: {stderr_of(proc)}"
    out = read_line(proc, 1.0)
    report = json.loads(out)
    assert isinstance(report, dict)
    return report


# -- our host ---------------------------------------------------------------------------
@dataclass
class RxSpy:
    """Between the stack and our driver: counts what the driver hands up and keeps the
    SYNs the kernel sent (a :class:`stack.device.NetworkDevice` itself)."""

    driver: VirtioNetDriver
    frames: int = 0
    gso_frames: int = 0
    """Frames the driver handed up with a segment size (larger than one MSS)."""
    largest: int = 0
    syns: list[TcpHeader] = field(default_factory=list)
    ecn: dict[int, int] = field(default_factory=dict)
    """Frames with TCP payload by the ECN codepoint of their IP header."""
    cwr: int = 0
    """Frames with CWR set (the kernel saying it reduced its window, RFC 3168 §6.1.2)."""

    def capabilities(self) -> DeviceCapabilities:
        return self.driver.capabilities()

    def transmit(self, frame: bytes, meta: TxMeta | None = None) -> bool:
        return self.driver.transmit(frame, meta)

    def flush(self) -> None:
        self.driver.flush()

    def receive(self) -> list[RxFrame]:
        frames = self.driver.receive()
        for rx in frames:
            self.frames += 1
            self.largest = max(self.largest, len(rx.data))
            if rx.segment_size is not None:
                self.gso_frames += 1
            tcp = tcp_offset(rx.data)
            if tcp is not None and rx.data[tcp + 13] & TcpFlags.SYN:
                self.syns.append(TcpHeader.parse(rx.data[tcp:]))
            elif tcp is not None and rx.data[tcp + 13] & TcpFlags.CWR:
                self.cwr += 1
            if tcp is not None and len(rx.data) > tcp + (rx.data[tcp + 12] >> 4) * 4:
                codepoint = frame_ecn(rx.data)
                if codepoint is not None:
                    self.ecn[codepoint] = self.ecn.get(codepoint, 0) + 1
        return frames


def tcp_offset(frame: bytes) -> int | None:
    """Where the TCP header starts in an Ethernet frame carrying IPv4/TCP or IPv6/TCP
    (no extension headers); None for anything else."""
    if len(frame) < 60:
        return None
    if frame[12:14] == b"\x08\x00" and frame[23] == 6:
        return 14 + (frame[14] & 0xF) * 4
    if frame[12:14] == b"\x86\xdd" and frame[20] == 6:
        return 54
    return None


class OurHost:
    """Host (our device + driver) with our stack, on the tap, run in real time."""

    def __init__(self, tap: TapDevice, offloads: Offloads, tcp: TcpConfig | None = None, *,
                 gateways: bool = False, faults: FaultConfig | None = None,
                 observer: FateObserver | None = None) -> None:
        self.loop = EventLoop()
        cfg = HostConfig("ours", SRC_MAC, 48 * MIB, NetDeviceConfig(profile=offloads.profile),
                         DriverConfig(wanted=offloads.wanted, queue_size=256))
        self.host = Host(self.loop, cfg)
        self.backend: TapBackend | FaultyBackend = TapBackend(tap)
        if faults is not None:  # a faulty link between our device and the tap
            self.backend = FaultyBackend(self.backend, faults, seed=1,
                                         call_later=self.loop.call_later, observer=observer)
        self.host.attach(self.backend)
        self.host.start()
        self.stack: Stack = self.host.add_stack(StackConfig(InterfaceConfig(
            SRC_MAC, ipv4="10.0.0.1/24", ipv6=("fd00::1/64",),
            gateway4="10.0.0.2" if gateways else None, gateway6="fd00::2" if gateways else None),
            tcp=tcp or TcpConfig()))
        self.spy = RxSpy(self.host.driver)
        self.stack.iface.device = self.spy
        self.runner = RealTimeRunner(self.loop, self.backend, max_wait_s=0.02)

    def run_until(self, done: Callable[[], object], seconds: float, what: str) -> None:
        started = time.monotonic()
        ok = self.runner.run_until(done, seconds)
        assert ok, f"{what}: not done within {seconds} s ({time.monotonic() - started:.1f} s)"


@dataclass
class Bulk:
    """Our end of the transfer, run as a host app after every stack poll: read whatever
    arrived, send ``out``, then shut our side down (active close: FIN-WAIT, then
    TIME-WAIT after the kernel's FIN) or, with ``close_after_eof``, close (passive close
    after the kernel's FIN: LAST-ACK, then CLOSED). ``wait_for_eof_before_send``: send
    only once the kernel has finished sending."""

    sock: TcpSocket
    out: bytes
    close_after_eof: bool = False
    wait_for_eof_before_send: bool = False
    sent: int = 0
    received: bytearray = field(default_factory=bytearray)
    shut: bool = False

    def __call__(self) -> bool:
        sock = self.sock
        did = False
        got = sock.recv()
        if got:
            self.received.extend(got)
            did = True
        may_send = sock.state in (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT) and not self.shut
        if may_send and self.wait_for_eof_before_send and not sock.eof:
            may_send = False
        if may_send and self.sent < len(self.out):
            n = sock.send(self.out[self.sent:self.sent + MIB])
            self.sent += n
            did = did or n > 0
        if may_send and self.sent == len(self.out):
            if self.close_after_eof:
                sock.close()
            else:
                sock.shutdown()
            self.shut = True
            did = True
        return did

    @property
    def finished(self) -> bool:
        return self.shut and self.sock.eof and self.sock.state in (
            TcpState.TIME_WAIT, TcpState.CLOSED)


@pytest.fixture(autouse=True)
def _require_tap(needs_tap: None) -> None:
    """Every test here needs taps and namespaces (skip with the reason, or fail under
    VNETBENCH_REQUIRE_ALL=1)."""


# -- checks -----------------------------------------------------------------------------
def check_syn_options(syn: TcpHeader, family: Family) -> None:
    opts = SynOptions.parse(syn.options)
    assert opts.mss == family.mss
    assert opts.window_shift is not None and opts.window_shift > 0
    assert opts.sack_permitted
    assert opts.timestamps is not None and opts.timestamps.tsval != 0


def check_negotiated(sock: TcpSocket, family: Family) -> None:
    conn = sock.conn
    assert conn.peer_mss == family.mss
    assert conn.window_scaling and conn.snd_wscale > 0
    assert conn.sack_enabled and conn.ts_enabled
    assert conn.eff_mss == family.mss - 12  # the timestamps option in every segment


def check_kernel_report(report: dict[str, object], expected: bytes) -> None:
    assert report["received"] == len(expected)
    assert report["sha256"] == hashlib.sha256(expected).hexdigest()
    assert report["eof"] is True
    info = report["tcp_info"]
    assert isinstance(info, dict)
    # the kernel saw our SYN options: timestamps, SACK and window scaling all on
    assert info["options"] & (TCPI_OPT_TIMESTAMPS | TCPI_OPT_SACK | TCPI_OPT_WSCALE) == 7


def check_offloads(ours: OurHost, offloads: Offloads) -> None:
    stack, dev, drv = ours.stack.counters, ours.host.device.counters, ours.host.driver
    negotiated = drv.negotiated
    if offloads.tso:
        assert FeatureSet.of(F.CSUM, F.HOST_TSO4, F.HOST_TSO6, F.GUEST_CSUM, F.GUEST_TSO4,
                             F.GUEST_TSO6) <= negotiated
        # our side: the stack emitted large packets, our device cut them for the kernel
        assert stack.tcp_tso_packets_out > 0
        assert dev.tx_gso_packets > 0
        # the kernel's side: it handed the tap GSO packets, which reached our stack as
        # large frames (passed on whole, or segmented by the device and coalesced again)
        if offloads.profile == "linux":
            assert dev.rx_offloads_passed > 0
        else:
            assert dev.rx_offloads_finished > 0 and dev.rx_coalesced > 0
        assert ours.spy.gso_frames > 0 and ours.spy.largest > 1514
    else:
        assert not negotiated & FeatureSet.of(F.CSUM, F.HOST_TSO4, F.HOST_TSO6, F.GUEST_CSUM,
                                              F.GUEST_TSO4, F.GUEST_TSO6)
        assert stack.tcp_tso_packets_out == 0 and dev.tx_gso_packets == 0
        assert dev.tx_csum_offloads == 0 and drv.counters.tx_csum_offloads == 0
        assert dev.rx_offloads_passed == dev.rx_offloads_finished == 0
        assert dev.rx_coalesced == 0 and ours.spy.gso_frames == 0
        assert ours.spy.largest <= 1514


@dataclass
class Exchange:
    """What one transfer left behind, for the assertions."""

    name: str
    ours: OurHost
    bulk: Bulk
    syn: TcpHeader
    """The kernel's SYN-ACK (we connected) or SYN (it connected)."""
    report: dict[str, object]
    seconds: float

    def summary(self) -> str:
        """One line for ``pytest -s``: time, both sides' retransmissions, the counters."""
        ours, conn = self.ours, self.bulk.sock.conn
        dev, stack = ours.host.device.counters, ours.stack.counters
        return (
            f"[{self.name}] {self.seconds:.2f} s; ours: {conn.counters.retransmitted_segments} "
            f"segments retransmitted, {conn.counters.timeouts} timeouts; kernel: "
            f"{self.report['tcp_info']}; stack tso/packets out {stack.tcp_tso_packets_out}/"
            f"{stack.tcp_packets_out}; device tx gso/frames {dev.tx_gso_packets}/"
            f"{dev.tx_frames}, rx passed/finished/coalesced {dev.rx_offloads_passed}/"
            f"{dev.rx_offloads_finished}/{dev.rx_coalesced}, drops {dev.drops}; driver up "
            f"gso/frames {ours.spy.gso_frames}/{ours.spy.frames}, largest {ours.spy.largest}")


def family_arg(family: Family) -> int:
    return 6 if family.v6 else 4


def kernel_server_exchange(family: Family, offloads: Offloads, *, ecn: bool = False,
                           faults: FaultConfig | None = None,
                           observer: FateObserver | None = None,
                           bulk_s: float = BULK_S) -> Exchange:
    """We connect to a kernel server, send 8 MB and shut our side down; the kernel
    reports the digest, sends 8 MB back and closes."""
    started = time.monotonic()
    out = pattern(SIZE)
    with kernel_peer(family, offloads.tap, ecn=ecn) as (ns, tap), \
            kernel_program(ns, SERVER, family_arg(family), family.kernel, PORT, SIZE,
                           BACK_SHIFT) as proc:
        assert read_line(proc, 5.0) == "ready"
        ours = OurHost(tap, offloads, TcpConfig(ecn="on" if ecn else "passive"),
                       faults=faults, observer=observer)
        sock = ours.stack.tcp_connect(family.kernel, PORT)
        ours.host.kick()
        ours.run_until(lambda: sock.established, HANDSHAKE_S, "handshake")
        (syn_ack,) = ours.spy.syns
        bulk = Bulk(sock, out)
        ours.host.apps.append(bulk)
        ours.host.kick()
        ours.run_until(lambda: bulk.finished and proc.poll() is not None, bulk_s, "bulk")
        report = report_of(proc)
    return Exchange(f"kernel server {family.name} {offloads.name}", ours, bulk, syn_ack,
                    report, time.monotonic() - started)


def kernel_client_exchange(family: Family, offloads: Offloads, *, ecn: bool = False,
                           faults: FaultConfig | None = None,
                           observer: FateObserver | None = None,
                           bulk_s: float = BULK_S) -> Exchange:
    """The kernel connects to our listener, sends 8 MB and shuts its side down; we read
    to its FIN, send 8 MB back and close; the kernel reports the digest and our FIN."""
    started = time.monotonic()
    out = pattern(SIZE)
    with kernel_peer(family, offloads.tap, ecn=ecn) as (ns, tap):
        ours = OurHost(tap, offloads, TcpConfig(ecn="on" if ecn else "passive"),
                       faults=faults, observer=observer)
        listener = ours.stack.tcp_listen(PORT)
        with kernel_program(ns, CLIENT, family_arg(family), family.ours, PORT, SIZE,
                            BACK_SHIFT) as proc:
            accepted: list[TcpSocket] = []

            def accept() -> bool:
                sock = listener.accept()
                if sock is not None:
                    accepted.append(sock)
                return bool(accepted)

            ours.run_until(accept, HANDSHAKE_S, "accept")
            (sock,) = accepted
            (syn,) = ours.spy.syns
            bulk = Bulk(sock, out, close_after_eof=True, wait_for_eof_before_send=True)
            ours.host.apps.append(bulk)
            ours.host.kick()
            ours.run_until(lambda: bulk.finished and proc.poll() is not None, bulk_s, "bulk")
            report = report_of(proc)
    return Exchange(f"kernel client {family.name} {offloads.name}", ours, bulk, syn, report,
                    time.monotonic() - started)


def check_exchange(ex: Exchange, family: Family, offloads: Offloads, *, final: TcpState) -> None:
    check_syn_options(ex.syn, family)
    check_negotiated(ex.bulk.sock, family)
    check_kernel_report(ex.report, pattern(SIZE))
    assert bytes(ex.bulk.received) == pattern(SIZE + BACK_SHIFT)[BACK_SHIFT:]
    sock = ex.bulk.sock
    assert sock.state is final and sock.error is None
    check_offloads(ex.ours, offloads)
    print("\n" + ex.summary())


# -- the tests --------------------------------------------------------------------------
CASES = [
    pytest.param(V4, TSO_LINUX, id="ipv4-tso-linux"),
    pytest.param(V4, TSO_STRICT, id="ipv4-tso-strict"),
    pytest.param(V4, NO_TSO, id="ipv4-no-tso"),
    pytest.param(V6, TSO_LINUX, id="ipv6-tso-linux"),
    pytest.param(V6, NO_TSO, id="ipv6-no-tso"),
]


@pytest.mark.parametrize(("family", "offloads"), CASES)
def test_kernel_server(family: Family, offloads: Offloads) -> None:
    """Our stack as the client: the kernel's SYN-ACK options, 8 MB each way
    byte-exact, our active close ends in TIME-WAIT after the kernel's FIN."""
    ex = kernel_server_exchange(family, offloads)
    assert ex.syn.flags & TcpFlags.ACK
    check_exchange(ex, family, offloads, final=TcpState.TIME_WAIT)


@pytest.mark.parametrize(("family", "offloads"), CASES)
def test_kernel_client(family: Family, offloads: Offloads) -> None:
    """Our stack as the server: the kernel's SYN options, 8 MB each way byte-exact,
    our passive close (LAST-ACK) ends in CLOSED."""
    ex = kernel_client_exchange(family, offloads)
    assert not ex.syn.flags & TcpFlags.ACK
    check_exchange(ex, family, offloads, final=TcpState.CLOSED)


def test_kernel_gso_burst_waits_in_the_tap() -> None:
    """The kernel sends 8 MB as GSO packets; none may be lost inside our device for want
    of receive buffers: like QEMU (virtio_net_can_receive / virtio_net_has_buffers) and
    vhost-net (handle_rx), a device out of buffers should leave frames queued in the
    tap until the driver's refill notification."""
    ex = kernel_client_exchange(V4, TSO_STRICT)
    check_exchange(ex, V4, TSO_STRICT, final=TcpState.CLOSED)
    assert ex.ours.host.device.counters.drops.get("rx-no-buffer", 0) == 0


LOSSY_LINK = FaultConfig(loss=0.01, duplicate=0.005, reorder=0.01, reorder_delay_ns=3_000_000,
                         corrupt=0.005)
"""Faults in both directions between our device and the tap, seeded (FaultyBackend)."""
OUR_TSO = Offloads("our-tso", TunOffload(0), MODES["tso"], "strict")
"""Our stack's TSO packets cut by our device, the kernel's segments cut by the kernel:
the faulty link sees single segments both ways."""
LOSSY_BULK_S = 60.0


@pytest.mark.parametrize("family", [V4, V6], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("kernel_role", ["server", "client"])
def test_bulk_over_a_faulty_link(family: Family, kernel_role: str) -> None:
    """8 MB each way with the kernel's TCP over a link that loses 1%, reorders 1% by
    3 ms, duplicates 0.5% and corrupts 0.5% of the frames in each direction (seeded):
    both TCPs recover — SACK, fast retransmit, timeouts — and every byte arrives exact,
    then both ends close cleanly. Corrupted frames are dropped by the checksums (ours
    in the device, driver or stack; the kernel's), never delivered."""
    exchange = kernel_server_exchange if kernel_role == "server" else kernel_client_exchange
    ex = exchange(family, OUR_TSO, faults=LOSSY_LINK, bulk_s=LOSSY_BULK_S)
    check_syn_options(ex.syn, family)
    check_kernel_report(ex.report, pattern(SIZE))
    assert bytes(ex.bulk.received) == pattern(SIZE + BACK_SHIFT)[BACK_SHIFT:]
    sock = ex.bulk.sock
    final = TcpState.TIME_WAIT if kernel_role == "server" else TcpState.CLOSED
    assert sock.state is final and sock.error is None
    link = ex.ours.backend
    assert isinstance(link, FaultyBackend)
    for c in (link.outbound_counters, link.inbound_counters):
        # every kind of fault fired in each direction
        assert min(c.lost, c.duplicated, c.reordered, c.corrupted) > 0, c
    # both sides had segments to repair: ours were retransmitted by our TCP, the
    # kernel's by the kernel (TCP_INFO total_retrans)
    ours = sock.conn.counters
    assert ours.retransmitted_segments > 0
    info = ex.report["tcp_info"]
    assert isinstance(info, dict) and info["total_retrans"] > 0
    # what the link damaged towards us was thrown away somewhere below the application
    drops = {**ex.ours.host.device.counters.drops, **ex.ours.stack.iface.counters.drops,
             **ex.ours.stack.counters.drops}
    assert sum(drops.values()) > 0
    print("\n" + ex.summary() + f"; link {link.counters()}; our drops {drops}")


@dataclass
class KernelResends:
    """Observes the link: the kernel's data segments by sequence number, whether each
    copy was lost (or damaged), and the kernel's retransmissions that resent data that
    had got through."""

    copies: dict[int, list[bool]] = field(default_factory=dict)
    resent: int = 0
    needless: int = 0

    def __call__(self, way: str, frame: bytes, fate: Fate) -> None:
        tcp = tcp_offset(frame)
        if way != "inbound" or tcp is None:
            return
        header_len = (frame[tcp + 12] >> 4) * 4
        ip_end = 14 + int.from_bytes(frame[16:18], "big") if frame[12:14] == b"\x08\x00" \
            else 54 + int.from_bytes(frame[18:20], "big")
        if ip_end <= tcp + header_len:
            return  # no payload: an ACK
        seq = int.from_bytes(frame[tcp + 4:tcp + 8], "big")
        earlier = self.copies.setdefault(seq, [])
        if earlier:
            self.resent += 1
            if not all(earlier):
                self.needless += 1  # a copy got through before
        earlier.append(fate.lost or fate.frame != frame)  # a damaged copy got nowhere


@pytest.mark.parametrize("family", [V4, V6], ids=["ipv4", "ipv6"])
def test_the_kernel_resends_only_what_the_link_lost(family: Family) -> None:
    """Over a link that loses 1% of the frames, the kernel's TCP resends the segments
    the link lost and (almost) nothing else: our receiver tells it, ACK by ACK, what
    arrived. It did not when our stack answered a whole batch of out-of-order segments
    (our device's coalesced packets) with one ACK: three SACK blocks fit, a fourth went
    unreported, and the kernel resent data we held — 55 to 400 needless fast
    retransmissions per 8 MB in this test's setting. A tail-loss probe, or a timeout
    when our real-time stack stalls on a busy machine, can still resend segments that
    got through; the kernel's own counters say how many it resent that way."""
    resends = KernelResends()
    ex = kernel_server_exchange(family, OUR_TSO, faults=FaultConfig(loss=0.01),
                                observer=resends, bulk_s=LOSSY_BULK_S)
    assert bytes(ex.bulk.received) == pattern(SIZE + BACK_SHIFT)[BACK_SHIFT:]
    check_kernel_report(ex.report, pattern(SIZE))
    lost_data = sum(copies.count(True) for copies in resends.copies.values())
    assert lost_data > 20
    info = ex.report["tcp_info"]
    assert isinstance(info, dict)
    print(f"\n[{family.name}] kernel data segments lost {lost_data}, resent {resends.resent}, "
          f"needlessly {resends.needless}, total_retrans {info['total_retrans']}; "
          f"kernel {ex.report['netstat']}; {ex.summary()}")
    # every lost segment was resent (until a copy got through)
    assert resends.resent >= lost_data
    # Needless resends: a few tail-loss probes, and what the kernel resends in slow start
    # after a retransmission timeout — which a real-time stall of our side on a busy
    # machine can cause, and which the kernel counts (TcpExt TCPSlowStartRetrans). Never
    # the fast retransmissions of data we had received and reported.
    netstat = ex.report["netstat"]
    assert isinstance(netstat, dict)
    allowed = 5 + netstat.get("TCPSlowStartRetrans", 0)
    assert resends.needless <= allowed, (resends.needless, resends.resent, lost_data, netstat)


@pytest.mark.parametrize("family", [V4, V6], ids=["ipv4", "ipv6"])
def test_our_dsacks_tell_the_kernel_its_resends_were_needless(family: Family) -> None:
    """A link that reorders 1% of the frames by 3 ms (far beyond the RTT) and loses
    none: the kernel takes the late segments for lost and resends them, and every such
    resend reaches us twice. We report each duplicate in a D-SACK block (RFC 2883) —
    also when the late original arrives after its retransmission and PAWS rejects it
    (RFC 7323 §5.3) — and the kernel counts them (TcpExt TCPDSACKRecv), which is what
    lets it undo the reductions."""
    resends = KernelResends()
    ex = kernel_server_exchange(
        family, OUR_TSO, faults=FaultConfig(reorder=0.01, reorder_delay_ns=3_000_000),
        observer=resends, bulk_s=LOSSY_BULK_S)
    assert bytes(ex.bulk.received) == pattern(SIZE + BACK_SHIFT)[BACK_SHIFT:]
    check_kernel_report(ex.report, pattern(SIZE))
    netstat = ex.report["netstat"]
    assert isinstance(netstat, dict)
    print(f"\n[{family.name}] kernel resent {resends.resent}, needlessly {resends.needless}; "
          f"our D-SACKs {ex.bulk.sock.conn.counters.dsacks_out}, PAWS drops "
          f"{ex.bulk.sock.conn.counters.paws_drops}; kernel {netstat}")
    assert resends.needless > 10  # the reordering made the kernel resend
    # We report most of them (65-100% of the needless resends over many runs; the share
    # varies from run to run in real time, and not every case is understood) and the
    # kernel counts most of those — the link delays some of our ACKs too and the
    # kernel's own PAWS drops them (PAWSEstab). Before PAWS-rejected duplicates were
    # reported: 0 reported, and the kernel counted 1 D-SACK.
    assert ex.bulk.sock.conn.counters.dsacks_out >= resends.needless / 2
    assert netstat.get("TCPDSACKRecv", 0) >= resends.needless / 3


@pytest.mark.parametrize("family", [V4, V6], ids=["ipv4", "ipv6"])
def test_jitter_costs_our_sender_no_retransmission(family: Family) -> None:
    """Every frame delayed by up to 200 µs (uniform, both ways), none lost: segments
    overtake each other all the time. Our sender, with RACK marking losses alone as in
    Linux, resends nothing (it resent 740 segments per 8 MB when DupThresh also fired on
    the reordered SACKs); the kernel, receiving our reordered segments, still answers
    with the SACKs that show it, and its own reordered segments reach us as
    out-of-order data that we SACK in turn."""
    resends = KernelResends()
    ex = kernel_server_exchange(family, OUR_TSO, faults=FaultConfig(jitter_ns=200_000),
                                observer=resends, bulk_s=LOSSY_BULK_S)
    assert bytes(ex.bulk.received) == pattern(SIZE + BACK_SHIFT)[BACK_SHIFT:]
    check_kernel_report(ex.report, pattern(SIZE))
    c = ex.bulk.sock.conn.counters
    netstat = ex.report["netstat"]
    assert isinstance(netstat, dict)
    print(f"\n[jitter {family.name}] ours: retransmitted {c.retransmitted_segments}, "
          f"out of order {c.out_of_order_segments}, D-SACKs {c.dsacks_out}, PAWS "
          f"{c.paws_drops}; kernel resent {resends.resent}; kernel {netstat}")
    assert c.out_of_order_segments > 100 and netstat.get("TCPSACKReorder", 0) > 100
    # 0 in every run so far; a real-time stall of ours may cost a probe or two
    assert c.retransmitted_segments <= 10


@pytest.mark.parametrize("family", [V4, V6], ids=["ipv4", "ipv6"])
def test_ping_both_ways(family: Family) -> None:
    """Our stack pings the kernel (ARP / NDP first), then the kernel pings us three
    times and gets every reply (the program exits 0)."""
    with kernel_peer(family, TunOffload(0)) as (ns, tap):
        ours = OurHost(tap, NO_TSO)
        stack = ours.stack
        for seq in (1, 2, 3):
            assert stack.ping(family.kernel, 0x7662, seq, b"vnetbench %d" % seq)
            ours.run_until(replies_at_least(stack, seq), PING_S, f"echo reply {seq}")
        kernel = ipaddress.ip_address(family.kernel).packed
        assert stack.echo_replies == [
            (kernel, 0x7662, seq, b"vnetbench %d" % seq) for seq in (1, 2, 3)]

        answered_before = stack.iface.counters.echo_replies
        with kernel_program(ns, PINGER, family_arg(family), family.ours, 3) as proc:
            ours.run_until(lambda: proc.poll() is not None, PING_S, "kernel ping")
            report = report_of(proc)
        assert report == {"sent": 3, "received": 3}
        assert stack.iface.counters.echo_replies - answered_before == 3


@pytest.mark.parametrize("family", [V4, V6], ids=["ipv4", "ipv6"])
def test_ecn_with_the_kernel_both_ways(family: Family) -> None:
    """RFC 3168 §6.1.1 with the kernel's TCP (``tcp_ecn`` 1 in its namespace), TSO on:
    as server it answers our ECN-setup SYN with ECE alone; as client its SYN carries
    ECE and CWR and we answer with ECE. Both ends then have ECN on (the kernel's
    TCP_INFO says TCPI_OPT_ECN), its new data reaches us as ECT(0) — our device's
    segmentation and coalescing keep the IP ECN field — and 8 MB go each way exact."""
    setup_flags = TcpFlags.SYN | TcpFlags.ACK | TcpFlags.ECE | TcpFlags.CWR
    ex = kernel_server_exchange(family, TSO_STRICT, ecn=True)
    info = check_ecn_exchange(ex, family, final=TcpState.TIME_WAIT)
    assert ex.syn.flags & setup_flags == TcpFlags.SYN | TcpFlags.ACK | TcpFlags.ECE
    # ECT(0) on its data, Not-ECT only on retransmissions (RFC 3168 §6.1.5)
    assert ex.ours.spy.ecn.get(Ecn.ECT0, 0) > 0
    assert ex.ours.spy.ecn.get(Ecn.NOT_ECT, 0) <= info["total_retrans"]

    ex = kernel_client_exchange(family, TSO_STRICT, ecn=True)
    check_ecn_exchange(ex, family, final=TcpState.CLOSED)
    assert ex.syn.flags & setup_flags == TcpFlags.SYN | TcpFlags.ECE | TcpFlags.CWR


def check_ecn_exchange(ex: Exchange, family: Family, *, final: TcpState) -> dict[str, int]:
    """The exchange checks, and both ends agreed on ECN; the kernel's TCP_INFO."""
    check_exchange(ex, family, TSO_STRICT, final=final)
    assert ex.bulk.sock.conn.ecn_enabled
    info = ex.report["tcp_info"]
    assert isinstance(info, dict) and info["options"] & TCPI_OPT_ECN
    return info


@pytest.mark.parametrize("family", [V4, V6], ids=["ipv4", "ipv6"])
def test_ce_marks_close_the_ecn_loop_with_the_kernel(family: Family) -> None:
    """RFC 3168 §6.1 end to end with the kernel's TCP: the link between our device and
    the tap marks 1% of the ECN-capable frames CE each way (a congested router), and
    nothing is lost. Our data marked CE: the kernel echoes ECE, our sender reduces its
    window and says CWR. The kernel's data marked CE: we echo ECE until its CWR, which
    it sends. No segment needs resending; 8 MB each way exact."""
    ex = kernel_server_exchange(family, OUR_TSO, ecn=True, faults=FaultConfig(ce_mark=0.01))
    check_kernel_report(ex.report, pattern(SIZE))
    assert bytes(ex.bulk.received) == pattern(SIZE + BACK_SHIFT)[BACK_SHIFT:]
    info = ex.report["tcp_info"]
    assert isinstance(info, dict) and info["options"] & TCPI_OPT_ECN
    link = ex.ours.backend
    assert isinstance(link, FaultyBackend)
    out, inbound = link.outbound_counters, link.inbound_counters
    assert out.ce_marked > 0 and inbound.ce_marked > 0
    assert out.lost == inbound.lost == 0
    conn = ex.bulk.sock.conn
    c = conn.counters
    assert conn.ecn_enabled
    # the loop through the kernel for our data
    assert c.ecn_ece_in > 0 and 0 < c.ecn_reductions <= out.ce_marked
    # each reduction is announced with CWR on the next new data (the last one may
    # find none: the transfer ended)
    assert c.ecn_reductions - 1 <= c.ecn_cwr_out <= c.ecn_reductions
    # and for its data: every CE mark reached our TCP, the kernel answered our ECE
    assert c.ecn_ce_in == inbound.ce_marked
    assert ex.ours.spy.cwr > 0
    assert c.retransmitted_segments <= 2  # 0 so far; a stall of ours may cost a tail probe
    print(f"\n[ecn {family.name}] CE marks out/in {out.ce_marked}/{inbound.ce_marked}; ours: "
          f"ECE in {c.ecn_ece_in}, reductions {c.ecn_reductions}, CWR out {c.ecn_cwr_out}, "
          f"CE in {c.ecn_ce_in}; kernel CWRs seen {ex.ours.spy.cwr}, total_retrans "
          f"{info['total_retrans']}")


# -- path MTU discovery through a Linux router ------------------------------------------
BOTTLENECK_MTU = 1280
V4_ROUTED = Family("ipv4-routed", "10.0.0.1", "10.1.0.2", 1460)
V6_ROUTED = Family("ipv6-routed", "fd00::1", "fd01::2", 1440)


@contextmanager
def routed_kernel_peer() -> Iterator[tuple[Netns, TapDevice]]:
    """The kernel server one router away: namespace R holds our tap (10.0.0.2,
    fd00::2) and forwards to namespace S (10.1.0.2, fd01::2) over a 1500-byte veth, but
    its route toward S carries a locked MTU of 1280 — so S advertises a 1460/1440 MSS
    and our full-sized segments only find out at R, which answers "fragmentation
    needed" / "packet too big" (ICMP rate limits off in R). (A veth end with a smaller
    MTU than its peer's would instead drop S's full-sized replies without a word.)"""
    with Netns("vnb-rtr-") as r, Netns("vnb-srv-") as srv, \
            TapDevice(unique_name("vtr"), vnet_hdr_size=12) as tap:
        for ns in (r, srv):
            ns.ip("link", "set", "lo", "up")
        r.sysctl("net.ipv4.ip_forward", 1)
        r.sysctl("net.ipv6.conf.all.forwarding", 1)
        r.sysctl("net.ipv4.icmp_ratelimit", 0)
        r.sysctl("net.ipv6.icmp.ratelimit", 0)
        for ns in (r, srv):  # no duplicate address detection holding links back
            ns.sysctl("net.ipv6.conf.default.accept_dad", 0)
            ns.sysctl("net.ipv6.conf.all.accept_dad", 0)
        r.move_link(tap.name)
        r.ip("link", "set", "dev", tap.name, "address", DST_MAC.hex(":"))
        r.ip("addr", "add", "10.0.0.2/24", "dev", tap.name)
        r.ip("-6", "addr", "add", "fd00::2/64", "dev", tap.name, "nodad")
        r.ip("link", "set", "dev", tap.name, "up")
        near, far = unique_name("vrt"), unique_name("vsv")
        r.ip("link", "add", near, "type", "veth", "peer", "name", far)
        r.ip("link", "set", "dev", far, "netns", srv.name)
        r.ip("addr", "add", "10.1.0.1/24", "dev", near)
        r.ip("-6", "addr", "add", "fd01::1/64", "dev", near, "nodad")
        r.ip("link", "set", "dev", near, "up")
        # the bottleneck: forwarding honours a locked route MTU (ip_dst_mtu_maybe_forward)
        r.ip("route", "add", "10.1.0.2/32", "dev", near, "mtu", "lock", str(BOTTLENECK_MTU))
        r.ip("-6", "route", "add", "fd01::2/128", "dev", near, "mtu", "lock",
             str(BOTTLENECK_MTU))
        srv.ip("addr", "add", "10.1.0.2/24", "dev", far)
        srv.ip("-6", "addr", "add", "fd01::2/64", "dev", far, "nodad")
        srv.ip("link", "set", "dev", far, "up")
        srv.ip("route", "add", "default", "via", "10.1.0.1")
        srv.ip("-6", "route", "add", "default", "via", "fd01::1")
        tap.drain()
        yield srv, tap


@pytest.mark.parametrize("family", [V4_ROUTED, V6_ROUTED], ids=["ipv4", "ipv6"])
def test_path_mtu_discovery_through_a_linux_router(family: Family) -> None:
    """RFC 1191 / RFC 8201 with a real router: our TSO segments of 1448 bytes do not
    fit R's 1280-byte link; R's ICMP error quotes one in flight, our stack lowers the
    path MTU toward the server, resends at the new size and finishes 8 MB each way
    byte-exact, TSO on, with no retransmission timeout."""
    started = time.monotonic()
    out = pattern(SIZE)
    with routed_kernel_peer() as (srv, tap), \
            kernel_program(srv, SERVER, family_arg(family), family.kernel, PORT, SIZE,
                           BACK_SHIFT) as proc:
        assert read_line(proc, 5.0) == "ready"
        ours = OurHost(tap, TSO_STRICT, gateways=True)
        sock = ours.stack.tcp_connect(family.kernel, PORT)
        ours.host.kick()
        ours.run_until(lambda: sock.established, HANDSHAKE_S, "handshake")
        handshake_timeouts = sock.conn.counters.timeouts
        bulk = Bulk(sock, out)
        ours.host.apps.append(bulk)
        ours.host.kick()
        ours.run_until(lambda: bulk.finished and proc.poll() is not None, BULK_S, "bulk")
        report = report_of(proc)
    check_kernel_report(report, out)
    assert bytes(bulk.received) == pattern(SIZE + BACK_SHIFT)[BACK_SHIFT:]
    conn = sock.conn
    assert conn.peer_mss == family.mss  # the server's own link is 1500 bytes
    mss = BOTTLENECK_MTU - (40 if family.v6 else 20) - 20
    assert conn.path_mss == mss and conn.eff_mss == mss - 12
    kernel = ipaddress.ip_address(family.kernel).packed
    assert ours.stack.iface.path_mtu(kernel) == BOTTLENECK_MTU
    assert ours.stack.counters.pmtu_updates == 1 and conn.counters.pmtu_reductions == 1
    assert conn.counters.timeouts == handshake_timeouts  # none in the transfer
    assert ours.stack.counters.tcp_tso_packets_out > 0
    print(f"\n[pmtu {family.name}] {time.monotonic() - started:.2f} s; ICMP errors "
          f"{ours.stack.counters.icmp_errors_in}, retransmitted "
          f"{conn.counters.retransmitted_segments}, kernel {report['tcp_info']}")


# -- urgent data with the kernel ---------------------------------------------------------
URGENT_SERVER = r"""
import json, select, socket, sys
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(1)
srv.settimeout(10)
print("ready", flush=True)
conn, _ = srv.accept()
select.select([], [], [conn], 10)  # urgent data is an exceptional condition
oob = conn.recv(1, socket.MSG_OOB)
rest = b""
conn.settimeout(10)
while len(rest) < 3:
    rest += conn.recv(100)
conn.setblocking(False)
try:  # step over the out-of-band byte in the queue, or close() would send a RST
    rest += conn.recv(100)
except BlockingIOError:
    pass
conn.setblocking(True)
conn.sendall(b"xyz")
conn.send(b"#", socket.MSG_OOB)
conn.close()
print(json.dumps({"oob": oob.decode(), "inline": rest.decode()}), flush=True)
"""


def test_urgent_data_with_the_kernel() -> None:
    """RFC 9293 §3.8.5 as Linux reads it (``tcp_stdurg`` 0, RFC 6093): we send "abc"
    then "!" as urgent; the kernel's ``recv(MSG_OOB)`` gets "!" and the stream "abc" —
    so our pointer points after the urgent octet. The kernel then sends "xyz" and "#"
    with MSG_OOB: our socket marks the urgent data 4 bytes ahead and delivers "xyz#"
    inline."""
    with kernel_peer(V4, TunOffload(0)) as (ns, tap), \
            kernel_program(ns, URGENT_SERVER, V4.kernel, PORT) as proc:
        assert read_line(proc, 5.0) == "ready"
        ours = OurHost(tap, NO_TSO)
        sock = ours.stack.tcp_connect(V4.kernel, PORT)
        ours.host.kick()
        ours.run_until(lambda: sock.established, HANDSHAKE_S, "handshake")
        sock.send(b"abc")
        sock.send(b"!", urgent=True)
        ours.host.kick()
        marks: list[int | None] = []
        got = bytearray()

        def read() -> bool:
            if sock.readable:
                marks.append(sock.urgent_mark)
                got.extend(sock.recv())
            return False

        ours.host.apps.append(read)
        ours.run_until(lambda: sock.eof and proc.poll() is not None, PING_S, "urgent")
        report = report_of(proc)
    assert report == {"oob": "!", "inline": "abc"}
    assert bytes(got) == b"xyz#" and marks[0] == 4  # the mark reaches past "#"
    assert sock.error is None and sock.conn.counters.urgent_in >= 1
    assert sock.conn.counters.urgent_out >= 1


def replies_at_least(stack: Stack, n: int) -> Callable[[], bool]:
    return lambda: len(stack.echo_replies) >= n
