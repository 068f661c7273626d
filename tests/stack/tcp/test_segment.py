"""Segment, Outgoing and the reset for CLOSED ports (RFC 9293 §3.10.7.1)."""

from __future__ import annotations

from stack.tcp.connection import rst_for
from stack.tcp.segment import Segment
from stack.wire.tcp import MssOption, TcpFlags, TcpHeader, TimestampsOption

F = TcpFlags


def test_seg_len_counts_syn_and_fin() -> None:
    assert Segment(1, 2, 0, 0, F.SYN, 0).seg_len == 1
    assert Segment(1, 2, 0, 0, F.ACK | F.FIN, 0, payload=b"abc").seg_len == 4
    assert Segment(1, 2, 0, 0, F.ACK, 0, payload=b"abc").seg_len == 3


def test_header_round_trip() -> None:
    seg = Segment(40000, 80, 0xFFFFFFFF, 12345, F.ACK | F.PSH, 512,
                  options=(MssOption(1460), TimestampsOption(5, 6)), payload=b"xy", urgent=3)
    header = seg.header()
    assert header.checksum == 0 and header.urgent == 3
    raw = header.emit() + seg.payload
    parsed = TcpHeader.parse(raw)
    assert Segment.from_header(parsed, raw[parsed.header_len:]) == seg


def test_rst_for_ack_segment_uses_its_ack() -> None:
    seg = Segment(1234, 80, 500, 777, F.ACK, 100, payload=b"data")
    assert rst_for(seg) == Segment(80, 1234, 777, 0, F.RST, 0)


def test_rst_for_segment_without_ack_acknowledges_it() -> None:
    syn = Segment(1234, 80, 0xFFFFFFFF, 0, F.SYN, 100, payload=b"ab")
    assert rst_for(syn) == Segment(80, 1234, 0, 2, F.RST | F.ACK, 0)  # seq + 1 + 2, wrapped
    fin = Segment(1234, 80, 10, 0, F.FIN, 0)
    assert rst_for(fin) == Segment(80, 1234, 0, 11, F.RST | F.ACK, 0)


def test_no_rst_for_rst() -> None:
    assert rst_for(Segment(1, 2, 3, 4, F.RST, 0)) is None
    assert rst_for(Segment(1, 2, 3, 4, F.RST | F.ACK, 0)) is None
