"""The vhost-user backend without QEMU: the message codec, and a Python frontend
(tests/emulator/vhost_user_frontend.py) driving the real server over a Unix socket with
memfd memory and eventfds — the control protocol, the datapath through our net device,
stop (GET_VRING_BASE), reconnect, and every malformed message ending its session cleanly.
References: QEMU ``docs/interop/vhost-user.rst`` (QEMU 7.2) and virtio-v1.2.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.backends.vhost_user import (
    DEFAULT_OFFER,
    DELEGATED,
    FrontendProtocolError,
    MessageError,
    VhostUserNet,
    VhostUserServer,
    vhost_net_config,
)
from emulator.backends.vhost_user import messages as m
from emulator.backends.wire import Wire
from emulator.monitor import Monitor
from emulator.net.device import NetDeviceConfig
from emulator.profiles import FIRECRACKER_OFFERED
from testbench.loop import EventLoop
from testbench.packets import tcp_packet
from tests.emulator.ring_writer import MockSplitQueue
from tests.emulator.vhost_user_frontend import HIGH_GUEST, LOW_SIZE, USER_BASE, Frontend
from virtio.constants import FeatureBit as F
from virtio.features import FeatureSet
from virtio.net_hdr import NetHdr

PROTOCOL_F = 1 << m.F_PROTOCOL_FEATURES
NEGOTIATED = DEFAULT_OFFER.bits  # what Linux 6.1 accepts of the default offer: all of it
RX, TX = 0, 1


class Bench:
    """Our backend on a socket, its network side on a wire whose far end we record."""

    def __init__(self, path: str, offered: FeatureSet | None = None) -> None:
        self.loop = EventLoop()
        self.wire = Wire(self.loop.clock)
        self.loop.add_source(self.wire)
        self.monitor = Monitor(self.loop.clock)
        self.vhost = VhostUserNet(vhost_net_config(NetDeviceConfig(), offered), self.wire.a,
                                  monitor=self.monitor)
        self.server = VhostUserServer(path, self.vhost)
        self.far: list[bytes] = []
        self.wire.b.set_receiver(self._far)

    def _far(self, frame: bytes) -> bool:
        self.far.append(frame)
        return True

    def serve(self) -> None:
        self.server.poll(self.loop.now)
        self.loop.run_until_idle(max_steps=100_000)

    def frontend(self) -> Frontend:
        return Frontend(self.server.path, self.serve)


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    b = Bench(str(tmp_path / "vhost.sock"))
    yield b
    b.server.close()


def started(bench: Bench, fe: Frontend, size: int = 64) -> tuple[MockSplitQueue, MockSplitQueue]:
    fe.handshake(NEGOTIATED | PROTOCOL_F)
    rx = MockSplitQueue(fe.memory, size)
    tx = MockSplitQueue(fe.memory, size)
    fe.setup_ring(RX, rx)
    fe.setup_ring(TX, tx)
    return rx, tx


# -- codec ------------------------------------------------------------------------------
def test_header_round_trip_and_flags() -> None:
    raw = m.encode(m.Request.SET_FEATURES, m.u64(5), flags=m.VERSION | m.FLAG_NEED_REPLY)
    assert raw == bytes.fromhex("02000000" "09000000" "08000000" "0500000000000000")
    header = m.parse_header(raw[:12])
    assert header == m.Header(2, 9, 8) and header.need_reply
    assert m.reply(m.Request.GET_FEATURES, m.u64(1))[:12] == bytes.fromhex("010000000500000008000000")


@pytest.mark.parametrize(("flags", "rule"), [
    (0x0, "vhost-user-version"), (0x2, "vhost-user-version"), (0x5, "vhost-user-flags"),
    (0x11, "vhost-user-flags"),
])
def test_header_refusals(flags: int, rule: str) -> None:
    with pytest.raises(MessageError) as err:
        m.parse_header(m.HEADER.pack(1, flags, 0))
    assert err.value.rule == rule
    assert "vhost-user.rst" in err.value.reference


def test_payload_size_limit_and_short_header() -> None:
    with pytest.raises(MessageError) as err:
        m.parse_header(m.HEADER.pack(5, 1, m.MAX_PAYLOAD + 1))
    assert err.value.rule == "vhost-user-size"
    with pytest.raises(MessageError):
        m.parse_header(b"\x01\x00")


def test_message_checks() -> None:
    ok = m.Message(m.Request.SET_VRING_NUM, 1, m.vring_state(1, 256))
    assert m.check_message(ok) is m.Request.SET_VRING_NUM
    assert m.decode_vring_state(ok) == m.VringState(1, 256)
    cases = [
        (m.Message(99, 1, b""), "vhost-user-unknown-request"),
        (m.Message(m.Request.SET_VRING_NUM, 1, b"\0" * 4), "vhost-user-size"),
        (m.Message(m.Request.GET_FEATURES, 1, b"", (7,)), "vhost-user-fds"),
    ]
    for msg, rule in cases:
        with pytest.raises(MessageError) as err:
            m.check_message(msg)
        assert err.value.rule == rule


def test_vring_fd_and_mem_table_decoding() -> None:
    assert m.decode_vring_fd(m.Message(12, 1, m.u64(1), (9,))) == m.VringFd(1, 9)
    assert m.decode_vring_fd(m.Message(12, 1, m.u64(0x101))) == m.VringFd(1, None)
    for payload, fds, rule in [(m.u64(0x201), (), "vhost-user-vring-fd"),
                               (m.u64(1), (), "vhost-user-fds"),
                               (m.u64(0x100), (3,), "vhost-user-fds")]:
        with pytest.raises(MessageError) as err:
            m.decode_vring_fd(m.Message(12, 1, payload, fds))
        assert err.value.rule == rule
    regions = [m.RegionDesc(0, 0xA0000, USER_BASE, 0),
               m.RegionDesc(HIGH_GUEST, 0x1000, USER_BASE + LOW_SIZE, LOW_SIZE)]
    table = m.mem_table(regions)
    assert len(table) == 8 + 2 * 32
    assert m.decode_mem_table(m.Message(5, 1, table, (3, 4))) == regions
    bad = [
        (table, (3,), "vhost-user-fds"),
        (m.mem_table([]), (), "vhost-user-mem-regions"),
        (table[:-1], (3, 4), "vhost-user-size"),
        (m.mem_table([m.RegionDesc(0, 0, 0, 0)]), (3,), "vhost-user-mem-region"),
        (m.mem_table([m.RegionDesc((1 << 64) - 0x1000, 0x2000, 0, 0)]), (3,), "vhost-user-mem-region"),
    ]
    for payload, fds, rule in bad:
        with pytest.raises(MessageError) as err:
            m.decode_mem_table(m.Message(5, 1, payload, fds))
        assert err.value.rule == rule


# -- the control protocol over the socket -------------------------------------------------
def test_negotiation_as_qemu_does_it(bench: Bench) -> None:
    with bench.frontend() as fe:
        assert fe.get_u64(m.Request.GET_FEATURES) == DEFAULT_OFFER.bits | PROTOCOL_F
        # MQ (bit 0) and REPLY_ACK (bit 3)
        assert fe.get_u64(m.Request.GET_PROTOCOL_FEATURES) == 0b1001
        fe.request(m.Request.SET_PROTOCOL_FEATURES, m.u64(0b1001))
        assert fe.get_u64(m.Request.GET_QUEUE_NUM) == 2
        fe.request(m.Request.SET_OWNER)
        assert fe.ack(m.Request.SET_FEATURES, m.u64(NEGOTIATED | PROTOCOL_F)) == 0
        session = bench.server.session
        assert session is not None and session.owner
        assert session.features == NEGOTIATED
        assert fe.ack(m.Request.SET_MEM_TABLE, m.mem_table(fe.regions), [fe.memfd, fe.memfd]) == 0
        assert session.table is not None
        assert [r.guest_addr for r in session.table.memory.regions] == [0, HIGH_GUEST]
        # virtio-v1.2 §2.7: a queue size is a power of two; REPLY_ACK says "failed" (1)
        assert fe.ack(m.Request.SET_VRING_NUM, m.vring_state(0, 100)) == 1
        assert fe.ack(m.Request.SET_VRING_NUM, m.vring_state(0, 256)) == 0
        assert session.rings[0].num == 256
        assert bench.server.errors == []


def test_offered_features_follow_the_configuration(tmp_path: Path) -> None:
    offer = FeatureSet.of(F.VERSION_1, F.CSUM, F.HOST_TSO4)
    b = Bench(str(tmp_path / "s"), offer)
    try:
        with b.frontend() as fe:
            assert fe.get_u64(m.Request.GET_FEATURES) == offer.bits | PROTOCOL_F
    finally:
        b.server.close()
    with pytest.raises(ValueError, match="CTRL_VQ"):
        vhost_net_config(offered=DEFAULT_OFFER | FeatureSet.of(F.CTRL_VQ))
    # a profile that names its features offers them, as far as QEMU delegates them
    assert vhost_net_config(NetDeviceConfig(profile="firecracker")).features == (
        FIRECRACKER_OFFERED & DELEGATED)
    missing = FIRECRACKER_OFFERED - DELEGATED
    assert missing == FeatureSet.of(F.MAC)  # QEMU keeps MAC
    assert vhost_net_config(NetDeviceConfig(profile="linux")).features == DEFAULT_OFFER


def test_device_starts_with_the_rings_and_transmits(bench: Bench) -> None:
    with bench.frontend() as fe:
        _, tx = started(bench, fe)
        vhost = bench.vhost
        assert vhost.running and vhost.negotiated == DEFAULT_OFFER
        # ring addresses arrive as user addresses and are used as guest-physical ones
        info = vhost.ring_info[TX]
        assert (info.desc, info.avail, info.used) == (tx.desc_addr, tx.avail_addr, tx.used_addr)
        assert fe.user(tx.desc_addr) == USER_BASE + LOW_SIZE + tx.desc_addr - HIGH_GUEST
        frame = bytes.fromhex("525400000002525400000001" "0800") + bytes(range(50))
        placed = tx.add_chain([NetHdr().emit(12) + frame])
        fe.kick(TX)
        assert bench.far == [frame]
        assert tx.used_idx == 1 and tx.used_elem(0) == (placed.head, 0)
        assert fe.calls_of(TX) == 1  # the used buffer notification, on TX's call eventfd
        assert fe.calls_of(RX) == 0


def test_tso_through_the_vhost_user_rings(bench: Bench) -> None:
    with bench.frontend() as fe:
        _, tx = started(bench, fe)
        pkt = tcp_packet(64000)
        tx.add_chain([pkt.hdr.emit(12), pkt.frame])  # header and frame in two descriptors
        fe.kick(TX)
        counters = bench.vhost.net.counters
        assert (counters.tx_gso_packets, counters.tx_frames, len(bench.far)) == (1, 45, 45)
        # 54 bytes of Ethernet, IPv4 and TCP headers on each 1448-byte segment
        assert [len(f) for f in bench.far] == [54 + 1448] * 44 + [54 + 64000 - 44 * 1448]


def test_receive_into_mergeable_buffers(bench: Bench) -> None:
    with bench.frontend() as fe:
        rx, _ = started(bench, fe)
        # With GUEST_TSO and MRG_RXBUF the device takes frames once 44 buffers are posted
        # (room for a 64 KiB packet in 1526-byte buffers, QEMU virtio_net_has_buffers).
        heads = [rx.add_chain(writable=[1000]).head for _ in range(44)]
        fe.kick(RX)
        frame = bytes.fromhex("525400000001525400000002" "88b5") + bytes(range(250)) * 6
        bench.wire.b.send(frame)
        bench.serve()
        # 12-byte header + 1514-byte frame over two 1000-byte buffers, num_buffers 2
        # (virtio-v1.2 §5.1.6.4)
        assert rx.used_idx == 2
        assert rx.used_elem(0) == (heads[0], 1000) and rx.used_elem(1) == (heads[1], 526)
        first = _first_buffer(fe, rx, 1000)
        assert NetHdr.parse(first, 12).num_buffers == 2
        assert first[12:] == frame[:988]
        assert fe.calls_of(RX) == 1


def _first_buffer(fe: Frontend, rx: MockSplitQueue, n: int) -> bytes:
    head, _ = rx.used_elem(0)
    desc = rx.desc_addr + 16 * head
    addr = fe.memory.read_u64(desc)
    return fe.memory.read(addr, n)


def test_frames_wait_while_the_guest_has_no_buffers(bench: Bench) -> None:
    with bench.frontend() as fe:
        rx, _ = started(bench, fe)
        frame = bytes.fromhex("525400000001525400000002" "88b5") + bytes(100)
        for _ in range(3):
            bench.wire.b.send(frame)
        bench.serve()
        port = bench.vhost.port
        assert (port.held, rx.used_idx) == (3, 0)
        # each frame needs room for a 64 KiB packet left over: 44 buffers + one per frame
        for _ in range(44 + 3):
            rx.add_chain(writable=[1526])
        fe.kick(RX)
        assert (port.held, rx.used_idx, bench.vhost.net.counters.rx_frames) == (0, 3, 3)
        assert bench.vhost.net.counters.drops == {}


def test_get_vring_base_stops_and_a_restart_resumes(bench: Bench) -> None:
    with bench.frontend() as fe:
        _, tx = started(bench, fe)
        frame = bytes.fromhex("525400000002525400000001" "88b5") + bytes(60)
        for _ in range(3):
            tx.add_chain([NetHdr().emit(12) + frame])
        fe.kick(TX)
        body = fe.request(m.Request.GET_VRING_BASE, m.vring_state(TX, 0), reply=True)
        assert body == m.vring_state(TX, 3)
        assert not bench.vhost.running and bench.vhost.stops == 1
        body = fe.request(m.Request.GET_VRING_BASE, m.vring_state(RX, 0), reply=True)
        assert body == m.vring_state(RX, 0)
        # QEMU restarts the rings where they stopped (vm stop / cont)
        kick = os.eventfd(0, os.EFD_NONBLOCK)
        assert fe.ack(m.Request.SET_VRING_BASE, m.vring_state(TX, 3)) == 0
        assert fe.ack(m.Request.SET_VRING_KICK, m.u64(TX), [kick]) == 0
        kick_rx = os.eventfd(0, os.EFD_NONBLOCK)
        assert fe.ack(m.Request.SET_VRING_KICK, m.u64(RX), [kick_rx]) == 0
        fe.kicks[TX], fe.kicks[RX] = kick, kick_rx
        assert bench.vhost.running and bench.vhost.starts == 2
        tx.add_chain([NetHdr().emit(12) + frame])
        fe.kick(TX)
        assert len(bench.far) == 4 and tx.used_idx == 4


def test_reconnect_starts_a_fresh_session(bench: Bench) -> None:
    with bench.frontend() as fe:
        started(bench, fe)
        assert bench.vhost.running
    bench.serve()  # EOF: the session ends, the device stops
    assert bench.server.session is None and not bench.vhost.running
    with bench.frontend() as fe:
        assert fe.get_u64(m.Request.GET_QUEUE_NUM) == 2
        session = bench.server.session
        assert session is not None and session.features is None and session.table is None
        started(bench, fe)
        assert bench.vhost.running and bench.vhost.starts == 2
    assert bench.server.sessions == 2 and bench.server.errors == []


def _broken(bench: Bench, data: bytes, fds: tuple[int, ...] = ()) -> FrontendProtocolError:
    with bench.frontend() as fe:
        fe.get_u64(m.Request.GET_FEATURES)
        fe.send(data, fds)
        bench.serve()
        assert bench.server.session is None  # closed on our side
        with pytest.raises((EOFError, ConnectionResetError)):
            fe.recv_reply()
    bench.serve()
    return bench.server.errors[-1]


@pytest.mark.parametrize(("data", "rule"), [
    (m.HEADER.pack(1, 0x2, 0), "vhost-user-version"),
    (m.HEADER.pack(77, 1, 0), "vhost-user-unknown-request"),
    (m.HEADER.pack(8, 1, 4) + b"\0" * 4, "vhost-user-size"),
    (m.encode(m.Request.SET_VRING_NUM, m.vring_state(9, 256)), "vhost-user-ring-index"),
    (m.encode(m.Request.SET_FEATURES, m.u64(1 << F.CTRL_VQ)), "vhost-user-features-not-offered"),
    (m.encode(m.Request.SET_PROTOCOL_FEATURES, m.u64(1 << 16)),
     "vhost-user-protocol-features-not-offered"),
    (m.encode(m.Request.GET_CONFIG, b""), "vhost-user-unsupported"),
])
def test_malformed_messages_end_the_session_cleanly(bench: Bench, data: bytes, rule: str) -> None:
    err = _broken(bench, data)
    assert err.rule == rule and "vhost-user.rst" in err.reference
    # the server lives on: a new frontend is served
    with bench.frontend() as fe:
        assert fe.get_u64(m.Request.GET_QUEUE_NUM) == 2


def test_truncated_message_and_stray_fds(bench: Bench) -> None:
    with bench.frontend() as fe:
        fe.send(m.HEADER.pack(2, 1, 8) + b"\0\0")  # 2 of 8 payload bytes, then EOF
        fe.sock.shutdown(socket.SHUT_WR)
        bench.serve()
    assert bench.server.errors[-1].rule == "vhost-user-truncated"
    r, w = os.pipe()
    try:
        err = _broken(bench, m.encode(m.Request.SET_OWNER), (r,))
        assert err.rule == "vhost-user-fds"
    finally:
        os.close(r)
        os.close(w)


def test_ring_address_outside_the_memory_table(bench: Bench) -> None:
    with bench.frontend() as fe:
        fe.handshake(NEGOTIATED | PROTOCOL_F)
        for index in (RX, TX):
            assert fe.ack(m.Request.SET_VRING_NUM, m.vring_state(index, 64)) == 0
            addr = m.VringAddr(index, 0, 0x1000, 0x2000, 0x3000, 0)  # not user addresses
            assert fe.ack(m.Request.SET_VRING_ADDR, m.vring_addr(addr)) == 0
        for index in (RX, TX):
            fe.send(m.encode(m.Request.SET_VRING_KICK, m.u64(index | m.VRING_NOFD_MASK)))
            bench.serve()
    assert bench.server.errors[-1].rule == "vhost-user-ring-address"
    assert not bench.vhost.running


def test_a_broken_ring_is_reported_on_the_err_eventfd(bench: Bench) -> None:
    """A descriptor outside guest memory (virtio-v1.2 §2.7.5): DEVICE_NEEDS_RESET
    (§2.1.2), recorded by the monitor, and signalled on the ring's err eventfd
    (SET_VRING_ERR) since vhost-user has no device status to show it in."""
    with bench.frontend() as fe:
        _, tx = started(bench, fe)
        err = os.eventfd(0, os.EFD_NONBLOCK)
        try:
            assert fe.ack(m.Request.SET_VRING_ERR, m.u64(TX), [err]) == 0
            head = 0
            tx.write_desc(head, 0x7000_0000, 64)  # beyond both regions
            tx.publish(head)
            fe.kick(TX)
            assert os.eventfd_read(err) == 1
            assert [(r.rule, r.action, r.queue) for r in bench.monitor.records] == [
                ("desc-addr-out-of-memory", "needs-reset", TX)]
            assert bench.far == [] and tx.used_idx == 0
        finally:
            os.close(err)


def test_a_disabled_ring_holds_receive_and_discards_transmit(bench: Bench) -> None:
    """SET_VRING_ENABLE 0 (vhost-user.rst "Ring states": a started but disabled ring is
    processed without side effects): no new receive frames for the guest (they wait in
    the holding port until the ring is enabled), and the transmit chains kicked
    meanwhile are processed and discarded — given back with used.len 0, nothing sent."""
    with bench.frontend() as fe:
        rx, tx = started(bench, fe)
        for _ in range(45):
            rx.add_chain(writable=[1526])
        fe.kick(RX)
        for index in (RX, TX):
            assert fe.ack(m.Request.SET_VRING_ENABLE, m.vring_state(index, 0)) == 0
        frame = bytes.fromhex("525400000001525400000002" "88b5") + bytes(100)
        bench.wire.b.send(frame)
        tx.add_chain([NetHdr().emit(12) + frame])
        tx.add_chain([NetHdr().emit(12) + frame])
        fe.kick(TX)
        bench.serve()
        assert (bench.vhost.port.held, rx.used_idx, tx.used_idx, bench.far) == (1, 0, 2, [])
        assert [tx.used_elem(i)[1] for i in range(2)] == [0, 0]  # used.len 0
        assert bench.vhost.net.counters.drops == {"tx-ring-disabled": 2}
        assert fe.calls_of(TX) >= 1  # the driver learns its buffers are back
        for index in (RX, TX):
            assert fe.ack(m.Request.SET_VRING_ENABLE, m.vring_state(index, 1)) == 0
        bench.serve()
        assert (bench.vhost.port.held, rx.used_idx, tx.used_idx, bench.far) == (0, 1, 2, [])
        tx.add_chain([NetHdr().emit(12) + frame])  # enabled again: sent as usual
        fe.kick(TX)
        bench.serve()
        assert (tx.used_idx, len(bench.far)) == (3, 1)


def test_calls_follow_each_rings_event_index(bench: Bench) -> None:
    """EVENT_IDX (virtio-v1.2 §2.7.7): the receive ring's used_event lies far ahead, so
    placing a frame there calls nobody; a transmit completion then calls the transmit
    ring only, not the receive ring whose used index also moved."""
    with bench.frontend() as fe:
        rx, tx = started(bench, fe)
        for _ in range(45):
            rx.add_chain(writable=[1526])
        rx.set_used_event(100)
        fe.kick(RX)
        frame = bytes.fromhex("525400000001525400000002" "88b5") + bytes(100)
        bench.wire.b.send(frame)
        bench.serve()
        assert rx.used_idx == 1 and fe.calls_of(RX) == 0
        tx.set_used_event(0)
        tx.add_chain([NetHdr().emit(12) + frame])
        fe.kick(TX)
        assert (fe.calls_of(TX), fe.calls_of(RX), bench.vhost.calls_suppressed) == (1, 0, 1)
