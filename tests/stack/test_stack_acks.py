"""The stack sends the ACKs RFC 5681 §4.2 asks for as the segments come, even when a
device hands it many at once: one for each out-of-order segment, with that segment's
block first (RFC 2018 §4), and one for every second full-sized segment. One ACK for a
whole batch would be a stretch ACK (RFC 2525 §2.13) and could carry only three SACK
blocks (with timestamps): a fourth new block would never be reported and the sender —
the Linux kernel does so — would resend data we hold."""

from __future__ import annotations

from stack.device import DeviceCapabilities, RxFrame
from stack.interface import InterfaceConfig
from stack.sockets import TcpSocket
from stack.stack import Stack, StackConfig
from stack.wire.tcp import SackOption, TcpHeader
from tests.stack.test_interface import MAC_A, MAC_B, PipeDevice

MSS = 1448  # 1500 - 40 - 12 (timestamps)


def stacks() -> tuple[Stack, Stack, PipeDevice, PipeDevice]:
    caps = DeviceCapabilities(mtu=1500)
    da, db = PipeDevice(caps), PipeDevice(caps)
    da.peer, db.peer = db, da
    a = Stack(da, StackConfig(InterfaceConfig(MAC_A, ipv4="10.0.0.1/24")))
    b = Stack(db, StackConfig(InterfaceConfig(MAC_B, ipv4="10.0.0.2/24")))
    return a, b, da, db


def settle(a: Stack, b: Stack, now: int = 0) -> None:
    for _ in range(20):
        a.poll(now)
        b.poll(now)
        da, db = a.iface.device, b.iface.device
        assert isinstance(da, PipeDevice) and isinstance(db, PipeDevice)
        if not da.inbox and not db.inbox:
            return


def tcp_of(frame: bytes) -> TcpHeader:
    ihl = (frame[14] & 0x0F) * 4
    return TcpHeader.parse(frame[14 + ihl:])


def seq_of(frame: bytes) -> int:
    return tcp_of(frame).seq


def connected() -> tuple[Stack, Stack, PipeDevice, PipeDevice, TcpSocket, TcpSocket]:
    a, b, da, db = stacks()
    listener = b.tcp_listen(5000)
    client = a.tcp_connect("10.0.0.2", 5000)
    settle(a, b)
    server = listener.accept()
    assert server is not None and client.established
    da.sent.clear()
    db.sent.clear()
    return a, b, da, db, client, server


def test_each_out_of_order_segment_of_a_batch_gets_an_ack_with_its_block_first() -> None:
    a, b, da, db, client, server = connected()
    assert client.conn.eff_mss == MSS
    client.send(bytes(10 * MSS))
    a.poll(0)  # ten segments (the initial window) into B's inbox
    frames = [f for f, _ in da.sent]
    assert len(frames) == 10
    isn = seq_of(frames[0])
    # the network loses segments 1, 3, 5 and 7: four holes, five separate blocks
    # arriving in one batch (0 is in order, 2, 4, 6 and 8-9 out of order)
    kept = [f for i, f in enumerate(frames) if i not in (1, 3, 5, 7)]
    db.inbox = [RxFrame(data=f) for f in kept]
    b.poll(0)
    acks = [tcp_of(f) for f, _ in db.sent]
    blocks = [next(o.blocks for o in h.options if isinstance(o, SackOption))
              for h in acks if any(isinstance(o, SackOption) for o in h.options)]

    def rel(block: tuple[int, int]) -> tuple[int, int]:
        return ((block[0] - isn) // MSS, (block[1] - isn) // MSS)

    # segment 0 moved RCV.NXT; then one ACK per out-of-order segment, its block first
    assert all(h.ack == isn + MSS for h in acks)
    firsts = [rel(b[0]) for b in blocks]
    assert firsts == [(2, 3), (4, 5), (6, 7), (8, 9), (8, 10)]
    # every block was reported at least once
    reported = {rel(blk) for b in blocks for blk in b}
    assert {(2, 3), (4, 5), (6, 7), (8, 10)} <= reported
    assert server.conn.counters.out_of_order_segments == 5


def test_a_batch_of_in_order_segments_is_acked_every_second_segment() -> None:
    a, b, da, db, client, _ = connected()
    client.send(bytes(10 * MSS))
    a.poll(0)
    frames = [f for f, _ in da.sent]
    assert len(frames) == 10
    isn = seq_of(frames[0])
    db.inbox = [RxFrame(data=f) for f in frames]
    b.poll(0)
    acks = [tcp_of(f).ack for f, _ in db.sent]
    assert acks == [isn + n * MSS for n in (2, 4, 6, 8, 10)]
