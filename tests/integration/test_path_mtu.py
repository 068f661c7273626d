"""Path MTU discovery through the emulated pair (RFC 1191, RFC 8201): in the middle of
a TSO bulk transfer A → B, a router's "fragmentation needed" / "packet too big" for
one of A's segments reaches A. A's stack checks it quotes data in flight (RFC 5927
§4.1), lowers the path MTU toward B, resends what was in flight at the new size and
goes on with TSO at the smaller segment size: from then on no frame A puts on the
wire is larger than the path MTU, and every byte arrives."""

from __future__ import annotations

import ipaddress

import pytest

from stack.wire import icmpv4, icmpv6
from stack.wire.ethernet import EtherType, build_frame
from stack.wire.ipv4 import IpProtocol, Ipv4Header
from stack.wire.ipv6 import Ipv6Header
from testbench.tcp_bulk import MAC_A, MAC_B, MIB, run_bulk, stack_pair

ROUTER4 = ipaddress.ip_address("10.0.0.254").packed
ROUTER6 = ipaddress.ip_address("fd00::fe").packed
A4 = ipaddress.ip_address("10.0.0.1").packed
A6 = ipaddress.ip_address("fd00::1").packed
PATH_MTU = 1280
INJECT_AFTER_FRAMES = 700
"""A's 700th frame on the wire (about 1 MB into the transfer) draws the router's error."""


def too_big(quoted_frame: bytes, v6: bool) -> bytes:
    """What a router sends A about ``quoted_frame`` (one of A's frames)."""
    packet = quoted_frame[14:]
    if v6:
        body = icmpv6.packet_too_big(PATH_MTU, packet).emit(ROUTER6, A6)
        ip = Ipv6Header(ROUTER6, A6, IpProtocol.ICMPV6, len(body)).emit()
        return build_frame(MAC_A, MAC_B, EtherType.IPV6, ip + body)
    msg = icmpv4.dest_unreachable(icmpv4.UnreachableCode.FRAG_NEEDED, packet,
                                  next_hop_mtu=PATH_MTU).emit()
    ip = Ipv4Header(ROUTER4, A4, IpProtocol.ICMP, 20 + len(msg)).emit()
    return build_frame(MAC_A, MAC_B, EtherType.IPV4, ip + msg)


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_a_router_s_too_big_lowers_the_segment_size_mid_transfer(v6: bool) -> None:
    p = stack_pair("tso")
    sent: list[tuple[int, bytes]] = []
    injected: list[int] = []
    port_a = p.wire.a
    send = port_a.send

    def inject(frame: bytes) -> None:
        p.a.device.receive(too_big(frame, v6))
        injected.append(p.loop.now)

    def capture(frame: bytes) -> None:
        sent.append((p.loop.now, frame))
        if not injected and len(sent) == INJECT_AFTER_FRAMES:
            # this data segment is in flight: the router's error about it comes at once
            p.loop.call_soon(lambda: inject(frame))
            injected.append(-1)
        send(frame)

    port_a.send = capture  # type: ignore[method-assign]
    r = run_bulk(p, 4 * MIB, v6=v6)
    assert r.exact and r.closed
    at = injected[1]
    a = p.a.stack
    assert a is not None
    b_addr = ipaddress.ip_address("fd00::2" if v6 else "10.0.0.2").packed
    assert a.iface.path_mtu(b_addr) == PATH_MTU
    assert a.counters.icmp_errors_in == 1 and a.counters.pmtu_updates == 1
    conn = r.client.conn
    mss = PATH_MTU - (40 if v6 else 20) - 20
    assert conn.path_mss == mss and conn.eff_mss == mss - 12
    c = conn.counters
    assert c.pmtu_reductions == 1 and c.retransmitted_segments > 0 and c.timeouts == 0
    before = [len(f) for t, f in sent if t < at]
    after = [len(f) for t, f in sent if t > at]
    assert max(before) == 1514 and after and max(after) == 14 + PATH_MTU
    assert r.layers["a"]["device"]["tx_gso_packets"] > 0
    assert p.a.monitor.records == [] and p.b.monitor.records == []


def test_an_error_quoting_no_data_in_flight_is_ignored() -> None:
    """RFC 5927 §4.1: a forged or stale error (sequence number outside SND.UNA..SND.NXT)
    changes nothing."""
    p = stack_pair("tso")
    r = run_bulk(p, 1 * MIB)  # done: nothing in flight any more, the connection closed
    assert r.exact
    quoted = build_frame(MAC_B, MAC_A, EtherType.IPV4, Ipv4Header(
        A4, ipaddress.ip_address("10.0.0.2").packed, IpProtocol.TCP, 40).emit()
        + bytes(20))
    p.a.device.receive(too_big(quoted, False))
    p.loop.run_until_idle()
    a = p.a.stack
    assert a is not None
    assert a.counters.icmp_errors_in == 1 and a.counters.pmtu_updates == 0
    assert a.counters.drops.get("icmp-error-unmatched") == 1
    assert a.iface.path_mtu(ipaddress.ip_address("10.0.0.2").packed) == 1500
