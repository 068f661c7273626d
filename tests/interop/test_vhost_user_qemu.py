"""The real Linux virtio_net driver drives our device: a Debian 6.1 cloud kernel boots
under QEMU 7.2 (TCG) with one virtio-net-pci whose datapath is our vhost-user backend
(emulator/backends/vhost_user); at the other end of our device's wire an emulated host
runs our driver and TCP/IP stack (testbench/vhost_user_bench.py).

One boot serves the first four tests (module fixture ``run``); its guest script pings
our stack, sends a file to it with busybox ``nc`` (the guest's TSO on), then receives
one from it and prints its SHA-256. Meanwhile our stack pings the guest. The last test
boots again with a device that disagrees with QEMU on the MTU.

- features: the guest's ``/sys/class/net/eth0/device/features`` (bit i = character i),
  split into the bits QEMU delegates to a vhost-user backend (QEMU 7.2
  ``hw/net/vhost_net.c`` ``user_feature_bits``) and those QEMU's virtio-net keeps; the
  delegated part equals what our device offered minus what the driver declined, and what
  QEMU sent in SET_FEATURES (vhost-user.rst "Front-end message types"), bit for bit;
- ping both ways (busybox ping; our stack's echo requests);
- guest → our stack over TCP, IPv4 then IPv6: the device segmented the guest's TSO4 and
  TSO6 packets
  (virtio-v1.2 §5.1.6.2: every TX chain the driver handed over is accounted for, a GSO
  chain as the number of segments its payload makes) and the bytes arrived exact;
- our stack → guest: GUEST_TSO4 + MRG_RXBUF negotiated, the device coalesced segments
  into mergeable buffers (§5.1.6.4), and the guest's sha256sum matches;
- driver reload in the guest: the rings stop and start again in the same session;
- reconnect: the backend drops QEMU's connection and QEMU reconnects to a new session;
- a device with MTU 1400 (offered, §5.1.4) behind a QEMU that tells the guest
  ``host_mtu=1500``: the Linux driver sends TSO packets whose segments exceed our MTU,
  and the strict profile drops them with a monitor record (§5.1.4.2).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from emulator.backends.vhost_user import DEFAULT_OFFER
from emulator.net.device import NetDeviceConfig
from stack.sockets import TcpSocket
from stack.tcp.connection import TcpState
from testbench.qemu_guest import guest_unavailable
from testbench.vhost_user_bench import GUEST_IP, GUEST_IP6, HOST_IP, HOST_IP6, VhostUserBench
from tests.conftest import skip_unless
from virtio import spec
from virtio.constants import FeatureBit as F
from virtio.constants import GsoType
from virtio.features import FeatureSet
from virtio.net_hdr import NetHdr

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

GSO_LEGACY = 6
"""VIRTIO_NET_F_GSO (legacy, virtio-v1.2 §5.1.3.1 "Legacy Interface: Feature bits")."""
QEMU_DELEGATED = FeatureSet.of(
    F.NOTIFY_ON_EMPTY, F.INDIRECT_DESC, F.EVENT_IDX, F.ANY_LAYOUT, F.VERSION_1, F.CSUM,
    F.GUEST_CSUM, GSO_LEGACY, F.GUEST_TSO4, F.GUEST_TSO6, F.GUEST_ECN, F.GUEST_UFO, F.HOST_TSO4,
    F.HOST_TSO6, F.HOST_ECN, F.HOST_UFO, F.MRG_RXBUF, F.MTU, F.ACCESS_PLATFORM,
    F.RING_PACKED, F.RING_RESET, F.RSS, F.HASH_REPORT, F.GUEST_ANNOUNCE, F.MQ,
)
"""QEMU 7.2 hw/net/vhost_net.c ``user_feature_bits``: features a guest gets only when the
vhost-user backend offers them."""
QEMU_OWN = FeatureSet.of(
    F.CTRL_GUEST_OFFLOADS, F.MAC, F.STATUS, F.CTRL_VQ, F.CTRL_RX, F.CTRL_VLAN,
    F.CTRL_MAC_ADDR,
)
"""What QEMU 7.2's virtio-net-pci (defaults) adds itself and Linux 6.1 accepts."""

PORT_UP, PORT_DOWN, PORT_UP6 = 5001, 5002, 5003
UP_LINES = 200_000
"""The guest sends ``seq 1 200000``: 1,288,895 bytes (IPv4)."""
UP6_LINES = 100_000
"""Then ``seq 1 100000``: 588,895 bytes (IPv6)."""
DOWN = bytes((i * 131 + (i >> 8) * 7) & 0xFF for i in range(65_521)) * 24
"""What our stack sends the guest (1,572,504 bytes)."""
PINGS = 5
BOOT_S = 60.0
PHASE_S = 90.0

SCRIPT = f"""
echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_dad
ip -6 addr add {GUEST_IP6}/64 dev eth0
ping -c {PINGS} -W 3 {HOST_IP} | tail -2
echo VNB:PING $?
seq 1 {UP_LINES} > /tmp/up
timeout 60 nc {HOST_IP} {PORT_UP} < /tmp/up
echo VNB:UP $? $(wc -c < /tmp/up) $(sha256sum < /tmp/up)
seq 1 {UP6_LINES} > /tmp/up6
timeout 60 nc {HOST_IP6} {PORT_UP6} < /tmp/up6
echo VNB:UP6 $? $(wc -c < /tmp/up6) $(sha256sum < /tmp/up6)
timeout 60 nc -l -p {PORT_DOWN} > /tmp/down &
sleep 1
echo VNB:LISTEN
wait $!
echo VNB:DOWN $(wc -c < /tmp/down) $(sha256sum < /tmp/down)
rmmod virtio_net
insmod /lib/modules/virtio_net.ko
ip link set eth0 up
ip addr add {GUEST_IP}/24 dev eth0
ping -c 2 -W 3 {HOST_IP} > /dev/null
echo VNB:RELOAD $?
"""


def _require_guest() -> None:
    reason = guest_unavailable()
    skip_unless(None if reason is None else f"qemu: {reason}")


def features_of(sysfs: str) -> FeatureSet:
    """``/sys/class/net/eth0/device/features``: one character per bit, bit 0 first."""
    assert set(sysfs) <= {"0", "1"} and len(sysfs) == 64, sysfs
    return FeatureSet(sum(1 << i for i, c in enumerate(sysfs) if c == "1"))


def expected_frames(chains: list[tuple[NetHdr, bytes]]) -> int:
    """Frames the device puts on the wire for these TX chains: one each, or for a GSO
    chain one per ``gso_size`` bytes of TCP payload (§5.1.6.2)."""
    total = 0
    for hdr, frame in chains:
        if hdr.gso_type == GsoType.NONE:
            total += 1
            continue
        tcp = hdr.csum_start
        headers = tcp + (frame[tcp + 12] >> 4) * 4
        total += math.ceil((len(frame) - headers) / hdr.gso_size)
    return total


@dataclass
class Run:
    bench: VhostUserBench
    tx_chains: list[tuple[NetHdr, bytes]] = field(default_factory=list)
    echo_replies: int = 0
    up: bytearray = field(default_factory=bytearray)
    up6: bytearray = field(default_factory=bytearray)
    down_socket: TcpSocket | None = None
    seconds: dict[str, float] = field(default_factory=dict)


class Upload:
    """Our end of guest → stack: accept, read to EOF into ``into``, close."""

    def __init__(self, bench: VhostUserBench, port: int, into: bytearray) -> None:
        self.listener = bench.stack.tcp_listen(port)
        self.into = into
        self.sock: TcpSocket | None = None
        self.done = False

    def __call__(self) -> bool:
        if self.sock is None:
            self.sock = self.listener.accept()
            if self.sock is None:
                return False
        data = self.sock.recv()
        self.into += data
        if self.sock.eof and not self.done:
            self.sock.close()
            self.done = True
            return True
        return bool(data)


class Download:
    """Our end of stack → guest: send everything, then close."""

    def __init__(self, sock: TcpSocket) -> None:
        self.sock = sock
        self.sent = 0

    def __call__(self) -> bool:
        if self.sock.state not in (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT):
            return False
        if self.sent < len(DOWN):
            n = self.sock.send(DOWN[self.sent:self.sent + (1 << 20)])
            self.sent += n
            if self.sent == len(DOWN):
                self.sock.close()
            return n > 0
        return False


def connect(bench: VhostUserBench, attempts: int = 5) -> TcpSocket:
    """Connect our stack to the guest's listener, again after a refusal (the guest's nc
    may not listen yet), at most ``attempts`` times."""
    for _ in range(attempts):
        sock = bench.stack.tcp_connect(GUEST_IP, PORT_DOWN)
        bench.host.kick()
        settled = (TcpState.ESTABLISHED, TcpState.CLOSED)
        bench.run_until(lambda: sock.state in settled, 10.0)  # noqa: B023 (used at once)
        if sock.state == TcpState.ESTABLISHED:
            return sock
        bench.run_until(lambda: False, 0.5)
    raise AssertionError(f"no connection to the guest's port {PORT_DOWN}")


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    _require_guest()
    with VhostUserBench() as bench:
        r = Run(bench)
        bench.vhost.net.tx_tap = lambda hdr, frame: r.tx_chains.append((hdr, bytes(frame)))
        upload, upload6 = Upload(bench, PORT_UP, r.up), Upload(bench, PORT_UP6, r.up6)
        bench.host.apps += [upload, upload6]
        start = time.monotonic()
        guest = bench.boot(SCRIPT)
        assert bench.wait_marker("READY", BOOT_S) is not None, guest.text[-3000:]
        r.seconds["boot"] = time.monotonic() - start
        # our stack pings the guest while the guest pings us
        for seq in range(1, PINGS + 1):
            bench.stack.ping(GUEST_IP, 0x7662, seq, b"vnetbench %d" % seq)
            bench.host.kick()
            bench.run_until(lambda: len(bench.stack.echo_replies) >= seq, 5.0)  # noqa: B023
        r.echo_replies = len(bench.stack.echo_replies)
        t = time.monotonic()
        assert bench.run_until(lambda: upload.done, PHASE_S), guest.text[-3000:]
        r.seconds["up"] = time.monotonic() - t
        t = time.monotonic()
        assert bench.run_until(lambda: upload6.done, PHASE_S), guest.text[-3000:]
        r.seconds["up6"] = time.monotonic() - t
        assert bench.wait_marker("LISTEN", 30.0) is not None, guest.text[-3000:]
        t = time.monotonic()
        sock = connect(bench)
        r.down_socket = sock
        bench.host.apps.append(Download(sock))
        bench.host.kick()
        assert bench.wait_marker("DOWN", PHASE_S) is not None, guest.text[-3000:]
        r.seconds["down"] = time.monotonic() - t
        assert bench.wait_exit(30.0), guest.text[-3000:]
        r.seconds["total"] = time.monotonic() - start
        yield r
        c = bench.vhost.net.counters
        print(f"\nvhost-user run: {', '.join(f'{k} {v:.1f} s' for k, v in r.seconds.items())}; "
              f"negotiated {bench.vhost.negotiated}; device tx_chains={c.tx_chains} "
              f"tx_gso_packets={c.tx_gso_packets} tx_frames={c.tx_frames} rx_frames={c.rx_frames} "
              f"rx_coalesced={c.rx_coalesced} rx_coalesced_segments={c.rx_coalesced_segments} "
              f"rx_chains={c.rx_chains} interrupts={c.interrupts} "
              f"calls={[ring.calls for ring in bench.vhost.rings]} "
              f"kicks={[ring.kicks for ring in bench.vhost.rings]} "
              f"held_max={bench.vhost.port.held_max}")


def test_negotiated_features_are_the_offer_minus_what_linux_declined(run: Run) -> None:
    bench = run.bench
    assert bench.guest is not None
    guest = features_of(bench.guest.marker("FEATURES") or "")
    offered = bench.config.features
    assert offered == DEFAULT_OFFER
    delegated = guest & QEMU_DELEGATED
    declined = offered - delegated
    # Linux 6.1 virtio_net takes every feature we offer (its feature table lists them)
    assert declined == FeatureSet()
    assert delegated == offered - declined == bench.vhost.negotiated  # SET_FEATURES, exact
    assert guest - QEMU_DELEGATED == QEMU_OWN
    assert bench.guest.marker("FEATURES") == (
        "1110010110011101111100010000110010000000000000000000000000000000")
    session_features = bench.vhost.negotiated.bits
    assert session_features == (
        (1 << F.CSUM) | (1 << F.GUEST_CSUM) | (1 << F.GUEST_TSO4) | (1 << F.GUEST_TSO6)
        | (1 << F.HOST_TSO4) | (1 << F.HOST_TSO6) | (1 << F.HOST_ECN) | (1 << F.MRG_RXBUF)
        | (1 << F.INDIRECT_DESC) | (1 << F.EVENT_IDX) | (1 << F.VERSION_1))
    assert bench.server.sessions == 1 and bench.server.errors == []


def test_ping_both_ways(run: Run) -> None:
    bench = run.bench
    assert bench.guest is not None
    assert bench.guest.marker("PING") == "0"  # busybox ping: every reply came back
    assert f"{PINGS} packets transmitted, {PINGS} packets received, 0% packet loss" in bench.guest.text
    assert run.echo_replies == PINGS
    guest_ip = bytes(int(x) for x in GUEST_IP.split("."))
    assert bench.stack.echo_replies == [
        (guest_ip, 0x7662, seq, b"vnetbench %d" % seq) for seq in range(1, PINGS + 1)]


def test_guest_tso_segmented_by_our_device_data_exact(run: Run) -> None:
    bench = run.bench
    assert bench.guest is not None
    sent = "".join(f"{i}\n" for i in range(1, UP_LINES + 1)).encode()
    sent6 = "".join(f"{i}\n" for i in range(1, UP6_LINES + 1)).encode()
    assert (len(sent), len(sent6)) == (1_288_895, 588_895)
    assert bench.guest.marker("UP") == f"0 {len(sent)} {hashlib.sha256(sent).hexdigest()} -"
    assert bench.guest.marker("UP6") == f"0 {len(sent6)} {hashlib.sha256(sent6).hexdigest()} -"
    assert bytes(run.up) == sent and bytes(run.up6) == sent6
    counters = bench.vhost.net.counters
    gso = [(h, f) for h, f in run.tx_chains if h.gso_type != GsoType.NONE]
    # TSO4 and TSO6 with the MSS our stack advertised less the timestamps option (12):
    # 1500 - 20 - 20 - 12 and 1500 - 40 - 20 - 12, the checksum at TCP offset 16
    assert {(h.gso_type, h.gso_size, h.csum_offset) for h, _ in gso} == {
        (GsoType.TCPV4, 1448, 16), (GsoType.TCPV6, 1428, 16)}
    assert counters.tx_gso_packets == len(gso)
    assert counters.tx_chains == counters.tx_packets == len(run.tx_chains)
    assert counters.tx_frames == expected_frames(run.tx_chains) > len(run.tx_chains)
    assert counters.drops == {} and bench.monitor.records == []


def test_download_coalesced_into_mergeable_buffers_guest_checks(run: Run) -> None:
    bench = run.bench
    assert bench.guest is not None
    assert bench.guest.marker("DOWN") == f"{len(DOWN)} {hashlib.sha256(DOWN).hexdigest()} -"
    assert FeatureSet.of(F.GUEST_TSO4, F.GUEST_CSUM, F.MRG_RXBUF) <= bench.vhost.negotiated
    c = bench.vhost.net.counters
    assert c.rx_coalesced > 0 and c.rx_coalesced_segments > c.rx_coalesced
    assert c.rx_chains > c.rx_frames  # packets spanning several mergeable buffers
    # every frame our host put on the wire reached the guest, alone or coalesced
    wire = bench.wire.b.counters
    assert wire.delivered == wire.sent
    assert c.rx_frames - c.rx_coalesced + c.rx_coalesced_segments == wire.delivered
    assert c.drops == {} and bench.vhost.port.held_drops == 0


def test_driver_reload_stops_and_restarts_the_rings(run: Run) -> None:
    """``rmmod virtio_net; insmod virtio_net``: the driver resets the device, QEMU stops
    the rings (GET_VRING_BASE, vhost-user.rst "Ring states") and starts them again at the
    new probe, within the same session; the guest pings through the new rings."""
    bench = run.bench
    assert bench.guest is not None
    assert bench.guest.marker("RELOAD") == "0"
    assert (bench.vhost.starts, bench.vhost.stops) == (2, 2)
    assert bench.server.sessions == 1 and bench.server.errors == []


MTU_OFFER = FeatureSet.of(F.VERSION_1, F.CSUM, F.HOST_TSO4, F.HOST_TSO6, F.MTU)
MTU_SCRIPT = f"""
seq 1 30000 > /tmp/up
timeout 4 nc {HOST_IP} {PORT_UP} < /tmp/up
echo VNB:UP $?
"""


def test_strict_profile_drops_linux_tso_over_our_mtu() -> None:
    _require_guest()
    with VhostUserBench(offered=MTU_OFFER, profile="strict",
                        device=NetDeviceConfig(mtu=1400)) as bench:
        bench.stack.tcp_listen(PORT_UP)
        guest = bench.boot(MTU_SCRIPT, device_options=("host_mtu=1500",))
        assert bench.wait_marker("UP", BOOT_S) is not None, guest.text[-3000:]
        assert bench.wait_exit(30.0)
        # QEMU tells the guest MTU 1500 (host_mtu); our device says 1400 in vain
        assert F.MTU in features_of(guest.marker("FEATURES") or "")
        assert bench.vhost.negotiated == MTU_OFFER
        records = [r for r in bench.monitor.records if r.rule == "tx-segment-exceeds-mtu"]
        assert records, bench.monitor.report()
        for rec in records:
            assert (rec.who, rec.action, rec.queue) == ("driver", "dropped", 1)
            assert rec.reference == str(spec.NET_CONFIG_DRIVER)
            assert rec.detail == ("gso_size 1448 gives 1514-byte segments, over mtu 1400 plus "
                                  "the Ethernet header (1414)")
        c = bench.vhost.net.counters
        assert c.drops.get("tx-segment-exceeds-mtu") == len(records)
        assert c.tx_gso_packets == 0
        # full-sized single frames are refused too (a device rule, whatever the profile)
        singles = [r for r in bench.monitor.records if r.rule == "tx-exceeds-mtu"]
        assert all(r.detail == "1514-byte frame exceeds mtu 1400 plus the Ethernet header (1414)"
                   for r in singles)
        assert {r.rule for r in bench.monitor.records} <= {"tx-segment-exceeds-mtu",
                                                             "tx-exceeds-mtu"}
        print(f"\nmonitor ({len(bench.monitor.records)} records), first: {records[0]}")


RECONNECT_SCRIPT = f"""
ping -c 2 -W 3 {HOST_IP} > /dev/null
echo VNB:FIRST $?
sleep 4
ping -c 3 -W 3 {HOST_IP} > /dev/null
echo VNB:SECOND $?
"""


def test_qemu_reconnects_to_a_fresh_session() -> None:
    """The backend drops the connection mid-run; QEMU (``reconnect=1``) connects again
    and sets everything up anew — features, memory table, rings from their last index —
    in a second session, and the guest's traffic goes on (vhost-user.rst
    "Communication")."""
    _require_guest()
    with VhostUserBench() as bench:
        guest = bench.boot(RECONNECT_SCRIPT, chardev_options=("reconnect=1",))
        assert bench.wait_marker("FIRST", BOOT_S) == "0", guest.text[-3000:]
        assert bench.vhost.running
        bench.server.disconnect()
        assert not bench.vhost.running
        assert bench.wait_marker("SECOND", 60.0) == "0", guest.text[-3000:]
        assert bench.wait_exit(30.0)
        assert bench.server.sessions == 2 and bench.server.errors == []
        assert (bench.vhost.starts, bench.vhost.stops) == (2, 2)
        assert bench.vhost.negotiated == DEFAULT_OFFER
