"""The stack over the emulated pair: two hosts, each our driver on our device with the
TCP/IP stack on top, talking TCP, UDP and ICMP through the in-memory wire
(testbench/tcp_bulk.py builds the pair and runs the transfers).

What the offloads change (the point of the project): with HOST_TSO4/6 the sending stack
emits TCP packets of up to 64 KiB with a segment size (smoltcp PR 1148) that the device
cuts (§5.1.6.2); with GUEST_TSO4/6 the receiving device coalesces them back
(§5.1.6.4); with checksum offload only, MSS-sized segments with partial checksums; with
no offload, MSS-sized segments checksummed by the stack. Counters show the difference.
"""

from __future__ import annotations

import ipaddress

import pytest

from emulator.backends.wire import FaultConfig
from stack.interface import Packet
from stack.wire.ipv4 import IpProtocol
from stack.wire.tcp import TcpFlags, TcpHeader
from testbench.tcp_bulk import MIB, run_bulk, stack_pair

MB8 = 8 * MIB


@pytest.mark.parametrize("mode", ["tso", "csum", "none"])
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_bulk_transfer_is_byte_exact(mode: str, v6: bool) -> None:
    p = stack_pair(mode)
    r = run_bulk(p, MB8 if mode == "tso" else 4 * MIB, v6=v6)
    assert r.exact and r.closed
    a, b = r.layers["a"], r.layers["b"]
    sent = a["stack"]["tcp_packets_out"]
    tso = a["stack"]["tcp_tso_packets_out"]
    if mode == "tso":
        # every TSO packet was segmented by the device, and B's device coalesced
        assert tso > 0 and a["device"]["tx_gso_packets"] == tso
        assert a["device"]["tx_frames"] > sent  # more wire segments than stack packets
        assert b["device"]["rx_coalesced"] > 0
        assert a["interface"]["tx_segmented"] == tso
    else:
        assert tso == 0 and a["device"]["tx_gso_packets"] == 0
        assert a["device"]["tx_frames"] == a["interface"]["tx_frames"]  # one frame each
        assert b["device"]["rx_coalesced"] == 0
    offloaded = a["interface"]["tx_csum_offloaded"]
    if mode == "none":
        assert offloaded == 0 and a["device"]["tx_csum_offloads"] == 0
    else:
        assert offloaded > 0 and a["device"]["tx_csum_offloads"] == offloaded
    assert r.client.conn.counters.retransmitted_segments == 0  # a clean wire


def test_tso_needs_far_fewer_descriptors_and_notifications() -> None:
    """Per MB, the TSO run hands the device a small fraction of the descriptors and
    notifications of the no-offload run (the benchmark's measure, `make bench`)."""
    runs = {mode: run_bulk(stack_pair(mode), 4 * MIB) for mode in ("tso", "none")}
    tso, none = (runs[m].layers["a"]["device"] for m in ("tso", "none"))
    assert runs["tso"].exact and runs["none"].exact
    assert tso["tx_descriptors"] * 8 < none["tx_descriptors"]
    assert tso["tx_notifications"] * 2 < none["tx_notifications"]


def test_ping_both_ways() -> None:
    p = stack_pair("tso")
    a, b = p.a.stack, p.b.stack
    assert a is not None and b is not None
    assert a.ping("10.0.0.2", 7, 1, b"hello")
    assert b.ping("fd00::1", 8, 2, b"v6")
    p.loop.run_until_idle(max_steps=100_000)
    assert [(r[0], r[1], r[2], r[3]) for r in a.echo_replies] == [
        (bytes([10, 0, 0, 2]), 7, 1, b"hello")]
    assert [(r[1], r[2], r[3]) for r in b.echo_replies] == [(8, 2, b"v6")]
    assert p.b.stack is not None and p.b.stack.iface.counters.echo_replies == 1


def test_udp_round_trip() -> None:
    p = stack_pair("csum")
    a, b = p.a.stack, p.b.stack
    assert a is not None and b is not None
    server = b.udp_bind(9000)
    client = a.udp_bind(9001)
    assert client.sendto(b"ping", b"\x0a\x00\x00\x02", 9000)
    p.loop.run_until_idle(max_steps=100_000)
    dgram = server.recvfrom()
    assert dgram is not None and dgram.data == b"ping" and dgram.src[1] == 9001
    assert server.recvfrom() is None


@pytest.mark.parametrize("mode", ["tso", "csum", "none"])
def test_bulk_over_a_faulty_wire(mode: str) -> None:
    """Seeded loss, duplication, reordering and corruption: the data still arrives exact
    and the retransmission counters account for the recovery."""
    faults = FaultConfig(loss=0.01, duplicate=0.005, reorder=0.01, corrupt=0.002)
    p = stack_pair(mode, faults=faults, seed=7)
    r = run_bulk(p, 2 * MIB)
    assert r.exact and r.closed
    wire = p.wire.a.counters
    assert wire.lost > 0 and wire.corrupted > 0
    tcp = r.client.conn.counters
    assert tcp.retransmitted_segments > 0
    assert tcp.fast_retransmits + tcp.timeouts > 0
    # corrupted frames were dropped somewhere on B (a checksum in the stack, or the
    # device's filters / parsers), never delivered: the bytes above are exact
    b = r.layers["b"]
    assert sum(b["interface"]["drops"].values()) + sum(b["device"]["drops"].values()) > 0


@pytest.mark.parametrize("pairs", [2, 4])
def test_bulk_over_multiqueue(pairs: int) -> None:
    p = stack_pair("tso", queue_pairs=pairs)
    r = run_bulk(p, 4 * MIB)
    assert r.exact and r.closed


def test_fifty_megabytes_with_tso() -> None:
    """The issue's CI volume: 50 MB A → B with TSO and receive coalescing, byte-exact."""
    r = run_bulk(stack_pair("tso"), 50 * MIB)
    assert r.exact and r.closed and r.received == 50 * MIB


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_udp_to_a_closed_port_gets_port_unreachable(v6: bool) -> None:
    """RFC 1122 §3.2.2.1 / RFC 4443 §3.1: the receiver answers a datagram for a port
    nobody listens on with destination unreachable (port), quoting the datagram."""
    p = stack_pair("csum")
    a, b = p.a.stack, p.b.stack
    assert a is not None and b is not None
    errors: list[tuple[bytes, int, bytes]] = []
    a.iface.icmp_error_handler = lambda src, kind, msg: errors.append((src, kind, msg))
    client = a.udp_bind(9001)
    dst = "fd00::2" if v6 else "10.0.0.2"
    assert client.sendto(b"anyone?", ipaddress.ip_address(dst).packed, 9999)
    p.loop.run_until_idle(max_steps=100_000)
    assert b.counters.udp_no_port == 1 and b.counters.port_unreachables_out == 1
    ((src, kind, msg),) = errors
    assert src == ipaddress.ip_address(dst).packed
    assert kind == (1 if v6 else 3)  # ICMPv6 / ICMPv4 destination unreachable
    assert msg[1] == (4 if v6 else 3)  # code: port unreachable
    assert msg.endswith(b"anyone?")  # the whole small datagram is quoted


def test_a_connection_reset_during_the_handshake_leaves_the_accept_queue() -> None:
    """A SYN to a listener with backlog 1 takes its one place; when the peer resets it
    before the handshake completes, the place is free again (not leaked)."""
    p = stack_pair("csum")
    b = p.b.stack
    assert b is not None
    listener = b.tcp_listen(7000, backlog=1)
    peer, port = bytes([10, 0, 0, 1]), 40000

    def segment_from_a(flags: TcpFlags, seq: int) -> Packet:
        header = TcpHeader(port, 7000, seq, 0, flags, 1024)
        return Packet(peer, bytes([10, 0, 0, 2]), IpProtocol.TCP, header.emit(), True)

    deliver = b.iface.tcp_handler
    assert deliver is not None
    deliver(segment_from_a(TcpFlags.SYN, 1000))
    assert listener.full and len(listener.pending) == 1
    deliver(segment_from_a(TcpFlags.RST, 1001))
    b.poll(p.loop.now)
    assert listener.pending == set() and not listener.full
    assert listener.accept() is None
