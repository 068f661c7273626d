"""The interface layer (stack/interface.py, stack/neighbor.py) over a pair of in-memory
devices: ARP (RFC 826) and NDP (RFC 4861) resolution with queued packets, ICMP echo
(RFC 792, RFC 4443), the checksum policy from the device's capabilities, IPv4 fragment
reassembly on receive, and the neighbour cache's timers."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from stack.device import (
    ChecksumCapabilities,
    DeviceCapabilities,
    RxFrame,
    SegmentationCapabilities,
    TxMeta,
)
from stack.interface import Interface, InterfaceConfig, Packet
from stack.neighbor import NeighborCache, NeighborConfig, NeighborState
from stack.wire import icmpv4, icmpv6
from stack.wire.checksum import internet_checksum, pseudo_header_sum_v4
from stack.wire.ipv4 import FLAG_MF, IpProtocol, Ipv4Header

MAC_A, MAC_B = bytes.fromhex("525400000001"), bytes.fromhex("525400000002")
IP_A, IP_B = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
SECOND = 1_000_000_000


class PipeDevice:
    """A NetworkDevice whose transmitted frames land in its peer's receive queue."""

    def __init__(self, caps: DeviceCapabilities) -> None:
        self.caps = caps
        self.peer: PipeDevice | None = None
        self.inbox: list[RxFrame] = []
        self.sent: list[tuple[bytes, TxMeta | None]] = []
        self.room = 1_000_000
        self.flushes = 0

    def capabilities(self) -> DeviceCapabilities:
        return self.caps

    def transmit(self, frame: bytes, meta: TxMeta | None = None) -> bool:
        if self.room <= 0:
            return False
        self.room -= 1
        self.sent.append((frame, meta))
        assert self.peer is not None
        self.peer.inbox.append(RxFrame(data=frame))
        return True

    def flush(self) -> None:
        self.flushes += 1

    def receive(self) -> list[RxFrame]:
        frames, self.inbox = self.inbox, []
        return frames


PLAIN = DeviceCapabilities(mtu=1500)
OFFLOAD = DeviceCapabilities(mtu=1500, checksum=ChecksumCapabilities(tx_partial=True),
                             segmentation=SegmentationCapabilities(0xFFFF, 0xFFFF))


def pair(caps: DeviceCapabilities = PLAIN) -> tuple[Interface, Interface, PipeDevice, PipeDevice]:
    da, db = PipeDevice(caps), PipeDevice(caps)
    da.peer, db.peer = db, da
    a = Interface(da, InterfaceConfig(MAC_A, ipv4="10.0.0.1/24", ipv6=("fd00::1/64",)))
    b = Interface(db, InterfaceConfig(MAC_B, ipv4="10.0.0.2/24", ipv6=("fd00::2/64",)))
    return a, b, da, db


def settle(*ifaces: Interface, now: int = 0, rounds: int = 10) -> None:
    for _ in range(rounds):
        moved = 0
        for iface in ifaces:
            moved += iface.poll_rx(now)
            iface.flush()
        if not moved:
            return


def collect(iface: Interface) -> list[Packet]:
    got: list[Packet] = []
    iface.udp_handler = got.append
    iface.tcp_handler = got.append
    return got


def udp(sport: int, dport: int, data: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


def test_arp_resolves_then_the_queued_packet_goes() -> None:
    a, b, da, _db = pair()
    got = collect(b)
    assert a.send_ip(IP_B, IpProtocol.UDP, udp(1, 2, b"x"), csum_offset=6)
    # the packet waits: only the ARP request went out, to the broadcast address
    assert [f[:6] for f, _ in da.sent] == [b"\xff" * 6]
    assert a.arp.state(IP_B) is NeighborState.INCOMPLETE
    settle(a, b)
    assert a.arp.state(IP_B) is NeighborState.REACHABLE
    assert b.arp.state(IP_A) is NeighborState.REACHABLE  # learnt from the request
    assert len(got) == 1 and got[0].data[8:] == b"x" and got[0].src == IP_A
    assert [f[12:14] for f, _ in da.sent] == [b"\x08\x06", b"\x08\x00"]  # ARP, then IP


def test_ndp_resolves_and_ping6_is_answered() -> None:
    a, b, _da, _db = pair()
    replies: list[tuple[bytes, int]] = []
    a.icmp_error_handler = lambda src, kind, msg: replies.append((src, kind))
    dst = bytes.fromhex("fd000000000000000000000000000002")
    src = a.source_for(dst)
    assert src == bytes.fromhex("fd000000000000000000000000000001")
    msg = icmpv6.echo_request(1, 1, b"six")
    assert a.send_ip(dst, IpProtocol.ICMPV6, msg.emit(src, dst), src_addr=src)
    settle(a, b)
    assert replies == [(dst, icmpv6.Icmpv6Type.ECHO_REPLY)]
    assert b.counters.echo_replies == 1
    assert a.nd.state(dst) is NeighborState.REACHABLE


def test_ping4_is_answered() -> None:
    a, b, _, _ = pair()
    replies: list[bytes] = []
    a.icmp_error_handler = lambda src, kind, msg: replies.append(msg)
    a.send_ip(IP_B, IpProtocol.ICMP, icmpv4.echo_request(9, 3, b"ping").emit())
    settle(a, b)
    (reply,) = replies
    parsed = icmpv4.Icmpv4Message.parse(reply)
    assert (parsed.type, parsed.ident, parsed.seq, parsed.payload) == (0, 9, 3, b"ping")


@pytest.mark.parametrize("caps", [PLAIN, OFFLOAD], ids=["software", "offload"])
def test_checksum_policy(caps: DeviceCapabilities) -> None:
    """tx_partial: the field holds the pseudo-header sum and TxMeta says where to finish
    it; otherwise the interface writes the full checksum."""
    a, b, da, _ = pair(caps)
    settle(a, b)
    a.arp.update(IP_B, MAC_B, 0)
    l4 = udp(5, 6, b"data!")
    a.send_ip(IP_B, IpProtocol.UDP, l4, csum_offset=6)
    frame, meta = da.sent[-1]
    seg = frame[34:]
    seed = pseudo_header_sum_v4(IP_A, IP_B, IpProtocol.UDP, len(seg))
    if caps is OFFLOAD:
        assert meta == TxMeta(None, 34, 6)
        assert struct.unpack_from("!H", seg, 6)[0] == seed
    else:
        assert meta is None
        assert internet_checksum(seg, seed) == 0


def test_bad_checksum_is_dropped_and_counted() -> None:
    a, b, _da, db = pair()
    got = collect(b)
    a.arp.update(IP_B, MAC_B, 0)
    a.send_ip(IP_B, IpProtocol.UDP, udp(1, 2, b"abc"), csum_offset=6)
    frame = bytearray(db.inbox[-1].data)
    frame[-1] ^= 0xFF
    db.inbox[-1] = RxFrame(data=bytes(frame))
    b.poll_rx(0)
    assert got == [] and b.counters.drops == {"l4-checksum": 1}
    # the same bytes marked verified by the device (DATA_VALID) are trusted
    db.inbox.append(RxFrame(data=bytes(frame), csum_verified=True))
    b.poll_rx(0)
    assert len(got) == 1


def test_segmentation_packet_goes_down_whole_with_meta() -> None:
    a, _b, da, _ = pair(OFFLOAD)
    a.arp.update(IP_B, MAC_B, 0)
    l4 = bytes(20) + bytes(30000)
    assert a.send_ip(IP_B, IpProtocol.TCP, l4, csum_offset=16, segment_size=1448)
    frame, meta = da.sent[-1]
    assert meta == TxMeta(1448, 34, 16)
    assert len(frame) == 14 + 20 + 30020
    assert struct.unpack_from("!H", frame, 16)[0] == 20 + 30020  # fits: real length


def test_too_big_without_segmentation_is_refused() -> None:
    a, _, _da, _ = pair(PLAIN)
    a.arp.update(IP_B, MAC_B, 0)
    assert not a.send_ip(IP_B, IpProtocol.UDP, udp(1, 2, bytes(1500)), csum_offset=6)
    assert a.counters.drops == {"exceeds-mtu": 1}
    with pytest.raises(ValueError, match="does not segment"):
        a.send_ip(IP_B, IpProtocol.TCP, bytes(40000), csum_offset=16, segment_size=1448)


def test_ipv4_fragments_are_reassembled() -> None:
    _a, b, _da, db = pair()
    got = collect(b)
    payload = udp(7, 8, bytes(range(256)) * 10)
    seed = pseudo_header_sum_v4(IP_A, IP_B, IpProtocol.UDP, len(payload))
    payload = payload[:6] + struct.pack("!H", internet_checksum(payload, seed)) + payload[8:]
    for off in range(0, len(payload), 1000):
        part = payload[off:off + 1000]
        more = off + 1000 < len(payload)
        ip = Ipv4Header(IP_A, IP_B, IpProtocol.UDP, 20 + len(part), ident=77,
                        flags=FLAG_MF if more else 0, frag_offset=off // 8).emit()
        db.inbox.append(RxFrame(data=MAC_B + MAC_A + b"\x08\x00" + ip + part))
    b.poll_rx(0)
    assert len(got) == 1 and got[0].data == payload
    assert b.counters.rx_reassembled == 1


def test_ring_full_backlog_then_flush() -> None:
    a, _b, da, _ = pair()
    a.arp.update(IP_B, MAC_B, 0)
    da.room = 1
    for n in range(3):
        assert a.send_ip(IP_B, IpProtocol.UDP, udp(1, 2, bytes([n])), csum_offset=6)
    assert (len(da.sent), a.backlog) == (1, 2)
    da.room = 10
    a.flush()
    assert (len(da.sent), a.backlog) == (3, 0)
    assert [f[-1] for f, _ in da.sent] == [0, 1, 2]  # order kept


def test_unanswered_arp_drops_the_queue_after_three_tries() -> None:
    da = PipeDevice(PLAIN)
    da.peer = PipeDevice(PLAIN)  # nobody answers
    a = Interface(da, InterfaceConfig(MAC_A, ipv4="10.0.0.1/24"))
    a.send_ip(IP_B, IpProtocol.UDP, udp(1, 2, b"x"), csum_offset=6)
    assert a.next_deadline() == SECOND
    for t in (1, 2, 3):
        a.poll_timers(t * SECOND)
    requests = [f for f, _ in da.sent if f[12:14] == b"\x08\x06"]
    assert len(requests) == 3  # RFC 4861 MAX_MULTICAST_SOLICIT, RetransTimer 1 s
    assert a.arp.state(IP_B) is None
    assert a.counters.drops == {"neighbor-unreachable": 1}


def test_neighbor_cache_goes_stale_and_reprobes() -> None:
    cache = NeighborCache(NeighborConfig(reachable_ns=30 * SECOND))
    assert cache.update(IP_B, MAC_B, 0) == []
    assert cache.lookup(IP_B, 30 * SECOND) == MAC_B
    assert cache.state(IP_B) is NeighborState.REACHABLE
    assert cache.lookup(IP_B, 30 * SECOND + 1) == MAC_B
    assert cache.state(IP_B) is NeighborState.STALE
    assert cache.needs_probe(IP_B, 31 * SECOND)
    assert not cache.needs_probe(IP_B, 31 * SECOND)  # one probe in flight
    cache.update(IP_B, MAC_B, 31 * SECOND + 5)
    assert cache.state(IP_B) is NeighborState.REACHABLE


def test_garbage_frames_never_raise() -> None:
    _a, b, _, db = pair()
    junk: list[Callable[[], bytes]] = [
        lambda: b"", lambda: MAC_B + MAC_A + b"\x08\x00" + b"\x45" + bytes(10),
        lambda: MAC_B + MAC_A + b"\x86\xdd" + bytes(39), lambda: MAC_B + MAC_A + b"\x08\x06",
        lambda: MAC_B + MAC_A + b"\x08\x00" + bytes(40)]
    for make in junk:
        db.inbox.append(RxFrame(data=make()))
    b.poll_rx(0)
    assert sum(b.counters.drops.values()) == len(junk)


def test_off_link_destination_goes_to_the_gateway() -> None:
    """RFC 1122 §3.3.1: a destination outside our prefix is sent to the gateway's MAC;
    without a gateway there is no route (dropped and counted)."""
    da, db = PipeDevice(PLAIN), PipeDevice(PLAIN)
    da.peer, db.peer = db, da
    a = Interface(da, InterfaceConfig(MAC_A, ipv4="10.0.0.1/24", gateway4="10.0.0.254",
                                      ipv6=("fd00::1/64",), gateway6="fd00::fe"))
    router = Interface(db, InterfaceConfig(MAC_B, ipv4="10.0.0.254/24", ipv6=("fd00::fe/64",)))
    far4, far6 = bytes([192, 168, 1, 5]), bytes.fromhex("20010db8000000000000000000000005")
    assert a.send_ip(far4, IpProtocol.UDP, udp(1, 2, b"v4"), csum_offset=6)
    assert a.send_ip(far6, IpProtocol.UDP, udp(1, 2, b"v6"), csum_offset=6)
    settle(a, router)
    ip_frames = [f for f, _ in da.sent if f[12:14] in (b"\x08\x00", b"\x86\xdd")
                 and f[-2:] in (b"v4", b"v6")]
    assert [(f[:6], f[-2:]) for f in ip_frames] == [(MAC_B, b"v4"), (MAC_B, b"v6")]
    assert ip_frames[0][30:34] == far4 and ip_frames[1][38:54] == far6
    assert router.counters.drops == {"ipv4-not-ours": 1, "ipv6-not-ours": 1}  # no forwarding
    lonely = Interface(PipeDevice(PLAIN), InterfaceConfig(MAC_A, ipv4="10.0.0.1/24"))
    assert not lonely.send_ip(far4, IpProtocol.UDP, udp(1, 2, b"x"), csum_offset=6)
    assert lonely.counters.drops == {"no-route": 1}
