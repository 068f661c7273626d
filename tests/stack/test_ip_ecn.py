"""The IP ECN field (RFC 3168 §5): reading it from a frame and marking CE as a congested
router does, the IPv4 header checksum kept valid."""

from __future__ import annotations

import pytest

from stack.wire.checksum import internet_checksum
from stack.wire.ecn import Ecn, frame_ecn, mark_ce
from testbench.packets import tcp_packet


@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("ect", [Ecn.ECT0, Ecn.ECT1])
@pytest.mark.parametrize("vlan", [None, 5])
def test_an_ect_packet_is_marked_ce_and_nothing_else_changes(
        ipv6: bool, ect: Ecn, vlan: int | None) -> None:
    frame = tcp_packet(300, mss=None, ipv6=ipv6, tos=0xB8 | ect, vlan=vlan).frame
    l3 = 18 if vlan is not None else 14
    assert frame_ecn(frame) == ect
    marked = mark_ce(frame)
    assert marked is not None and frame_ecn(marked) == Ecn.CE
    diff = [i for i in range(len(frame)) if frame[i] != marked[i]]
    if ipv6:  # the traffic class straddles bytes 0-1: only the ECN bits of byte 1
        assert diff == [l3 + 1] and marked[l3 + 1] == frame[l3 + 1] | 0x30
    else:  # TOS (DSCP 0xB8 kept) and the header checksum
        assert diff[0] == l3 + 1 and set(diff[1:]) <= {l3 + 10, l3 + 11}
        assert marked[l3 + 1] == 0xB8 | Ecn.CE
        assert internet_checksum(marked[l3:l3 + 20]) == 0


@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("tos", [0x00, 0xB8, 0xB8 | Ecn.CE])
def test_not_ect_and_ce_packets_are_left_alone(ipv6: bool, tos: int) -> None:
    frame = tcp_packet(300, mss=None, ipv6=ipv6, tos=tos).frame
    assert frame_ecn(frame) == tos & 3
    assert mark_ce(frame) is None


@pytest.mark.parametrize("frame", [b"", bytes(13), bytes(12) + b"\x08\x06" + bytes(40),
                                   bytes(12) + b"\x08\x00" + b"\x65" + bytes(3),
                                   bytes(12) + b"\x08\x00" + b"\x41\x02" + bytes(40)],
                         ids=["empty", "runt", "arp", "ipv4-version-6", "ipv4-ihl-1"])
def test_what_is_no_ecn_capable_ip_packet_is_not_marked(frame: bytes) -> None:
    assert mark_ce(frame) is None
