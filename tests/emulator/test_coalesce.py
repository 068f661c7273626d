"""Receive coalescing (emulator/offload/coalesce.py): the header the device writes for a
merged packet (virtio §5.1.6.4), each flush rule of Linux GRO (net/ipv4/tcp_offload.c
tcp_gro_receive), RSC_EXT counts, and the round trip with the transmit engine:
segment → coalesce → segment again gives back the original segments byte for byte.

Frames are built here field by field with ``struct``; checksums come from a plain
RFC 1071 sum (the big-integer form of the deferred-carry sum, RFC 1071 §2(C)).
"""

from __future__ import annotations

import struct
from typing import TypeVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.offload import coalesce
from emulator.offload.coalesce import MAX_FLOWS, CoalesceConfig, Coalesced, Coalescer
from emulator.offload.segment import segment
from emulator.profiles import STRICT
from tests.emulator import coalesce_reference as reference
from virtio.constants import GSO_ECN, GsoType, NetHdrFlag
from virtio.net_hdr import NetHdr

MAC = bytes.fromhex("525400000002525400000001")
SRC4, DST4 = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
SRC6 = bytes.fromhex("20010db8000000000000000000000001")
DST6 = bytes.fromhex("20010db8000000000000000000000002")
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
NEEDS_CSUM, DATA_VALID, RSC_INFO = (int(NetHdrFlag.NEEDS_CSUM), int(NetHdrFlag.DATA_VALID),
                                    int(NetHdrFlag.RSC_INFO))
TS = bytes([1, 1, 8, 10]) + struct.pack("!II", 1000, 2000)
BOTH = CoalesceConfig(tcp4=True, tcp6=True, ecn=True)
L4_V4 = 14 + 20
L4_V6 = 14 + 40


def oc_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    value = int.from_bytes(data, "big")
    return 0 if value == 0 else (value - 1) % 0xFFFF + 1


def pseudo(v6: bool, length: int, proto: int = 6) -> bytes:
    if v6:
        return SRC6 + DST6 + struct.pack("!I", length) + bytes([0, 0, 0, proto])
    return SRC4 + DST4 + bytes([0, proto]) + struct.pack("!H", length)


def frame(payload: bytes, *, seq: int = 1000, flags: int = ACK, v6: bool = False,
          ident: int = 7, options: bytes = b"", ack: int = 0x2000, window: int = 512,
          tos: int = 0, ttl: int = 64, df: bool = True, check: str = "valid",
          sport: int = 40000) -> bytes:
    """A TCP/IP frame. ``check``: "valid" (complete checksum), "seed" (the full-length
    pseudo-header sum, NEEDS_CSUM style) or "bad"."""
    doff = 5 + len(options) // 4
    l4 = bytearray(struct.pack("!HHIIBBHHH", sport, 80, seq, ack, doff << 4, flags, window, 0, 0)
                   + options + payload)
    ph = oc_sum(pseudo(v6, len(l4)))
    if check == "seed":
        value = ph
    else:
        value = ~oc_sum(pseudo(v6, len(l4)) + bytes(l4)) & 0xFFFF
        if check == "bad":
            value ^= 0x0101
    struct.pack_into("!H", l4, 16, value)
    if v6:
        ip = struct.pack("!IHBB16s16s", 6 << 28 | tos << 20, len(l4), 6, ttl, SRC6, DST6)
        return MAC + b"\x86\xdd" + ip + bytes(l4)
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(l4), ident,
                                0x4000 if df else 0, ttl, 6, 0, SRC4, DST4))
    struct.pack_into("!H", hdr, 10, ~oc_sum(bytes(hdr)) & 0xFFFF)
    return MAC + b"\x08\x00" + bytes(hdr) + bytes(l4)


def push_all(c: Coalescer, frames: list[bytes]) -> list[Coalesced]:
    out: list[Coalesced] = []
    for f in frames:
        out.extend(c.push(f))
    return out


def run(frames: list[bytes], config: CoalesceConfig = BOTH) -> tuple[list[Coalesced],
                                                                     list[Coalesced]]:
    """(what push returned, what the final flush returned)."""
    c = Coalescer(config)
    pushed = push_all(c, frames)
    return pushed, c.flush()


def pay(n: int, tag: int = 0) -> bytes:
    return bytes((i * 7 + tag) & 0xFF for i in range(n))


def stream(sizes: list[int], *, last_flags: int = 0, v6: bool = False, seq: int = 1000,
           ident: int = 7, **kw: int | bytes | bool) -> list[bytes]:
    out = []
    for i, n in enumerate(sizes):
        flags = ACK | (last_flags if i == len(sizes) - 1 else 0)
        out.append(frame(pay(n, i), seq=seq, ident=ident + i, flags=flags, v6=v6,
                         **kw))  # type: ignore[arg-type]
        seq += n
    return out


def single(f: bytes) -> Coalesced:
    return Coalesced(f, NetHdr(flags=DATA_VALID))


# --- the merged packet, exactly ---------------------------------------------------------


def test_three_segment_merge_exact_v4() -> None:
    segs = stream([100, 100, 100], last_flags=PSH)
    c = Coalescer(BOTH)
    assert c.push(segs[0]) == []
    assert c.push(segs[1]) == []
    out = c.push(segs[2])  # PSH: merged as the last one, then flushed
    expected = frame(pay(100, 0) + pay(100, 1) + pay(100, 2), flags=ACK | PSH, ident=7,
                     check="seed")
    assert out == [Coalesced(expected, NetHdr(
        flags=NEEDS_CSUM, gso_type=GsoType.TCPV4, hdr_len=54, gso_size=100,
        csum_start=34, csum_offset=16), segments=3, dup_acks=0)]
    # IPv4 total length 20 + 20 + 300, header checksum recomputed, seed over 320 bytes.
    assert struct.unpack_from("!H", out[0].frame, 16)[0] == 340
    assert struct.unpack_from("!H", out[0].frame, 34 + 16)[0] == oc_sum(pseudo(False, 320))
    assert oc_sum(out[0].frame[14:34]) == 0xFFFF
    assert c.flush() == []


def test_three_segment_merge_exact_v6_with_timestamps() -> None:
    segs = stream([64, 64, 10], v6=True, options=TS)
    out, flushed = run(segs)  # the short last segment flushes at once
    assert flushed == []
    assert len(out) == 1
    thl = 20 + 12
    expected = frame(pay(64, 0) + pay(64, 1) + pay(10, 2), v6=True, check="seed",
                     options=TS)
    assert out[0] == Coalesced(expected, NetHdr(
        flags=NEEDS_CSUM, gso_type=GsoType.TCPV6, hdr_len=L4_V6 + thl, gso_size=64,
        csum_start=L4_V6, csum_offset=16), segments=3)
    assert struct.unpack_from("!H", out[0].frame, 18)[0] == thl + 138


# --- flush rules ------------------------------------------------------------------------


def test_flush_at_end_of_batch() -> None:
    segs = stream([100, 100])
    pushed, flushed = run(segs)
    assert pushed == []
    assert len(flushed) == 1 and flushed[0].segments == 2
    assert flushed[0].hdr.gso_size == 100


@pytest.mark.parametrize("flag", [PSH, FIN, PSH | FIN])
def test_psh_fin_merged_as_last_then_flushed(flag: int) -> None:
    segs = stream([100, 100], last_flags=flag)
    pushed, flushed = run(segs + stream([100], seq=1200, ident=9))
    assert [p.segments for p in pushed] == [2]
    assert pushed[0].frame[L4_V4 + 13] == ACK | flag
    assert flushed == [single(stream([100], seq=1200, ident=9)[0])]


@pytest.mark.parametrize("flag", [SYN, RST, URG])
def test_syn_rst_urg_never_merged(flag: int) -> None:
    segs = stream([100, 100])
    odd = frame(pay(100), seq=1200, ident=9, flags=ACK | flag)
    pushed, flushed = run([*segs, odd])
    assert [p.segments for p in pushed] == [2, 1]
    assert pushed[1] == single(odd)
    assert flushed == []


def test_psh_segment_alone_passes_alone() -> None:
    f = frame(pay(100), flags=ACK | PSH)
    assert run([f]) == ([single(f)], [])


def test_smaller_segment_merged_as_last_then_flushed() -> None:
    segs = stream([100, 100, 40, 100])
    pushed, flushed = run(segs)
    assert [p.segments for p in pushed] == [3]
    assert pushed[0].hdr.gso_size == 100
    assert flushed == [single(segs[3])]


def test_larger_segment_starts_a_new_packet() -> None:
    segs = stream([100, 100, 150, 150])
    pushed, flushed = run(segs)
    assert [(p.segments, p.hdr.gso_size) for p in pushed] == [(2, 100)]
    assert [(p.segments, p.hdr.gso_size) for p in flushed] == [(2, 150)]


def test_out_of_order_flushes() -> None:
    a, b, c = stream([100, 100, 100])
    pushed, flushed = run([a, c, b])
    assert pushed == [single(a), single(c)]  # c does not follow a, b does not follow c
    assert flushed == [single(b)]


def test_out_of_order_keeps_order_of_arrival() -> None:
    a, b, c, d = stream([100, 100, 100, 100])
    pushed, flushed = run([a, b, d, c])
    assert [p.segments for p in pushed] == [2, 1]
    assert pushed[1] == single(d)
    assert flushed == [single(c)]


@pytest.mark.parametrize("change", [
    {"options": TS[:8] + struct.pack("!I", 2001)},  # timestamps differ
    {"ack": 0x2001}, {"window": 513}, {"tos": 0x03}, {"ttl": 63}, {"df": False},
    {"flags": ACK | ECE},
])
def test_changed_headers_flush(change: dict[str, int | bytes]) -> None:
    base_opts = TS
    first = frame(pay(100), options=base_opts)
    kw: dict[str, int | bytes] = {"options": base_opts}
    kw.update(change)
    second = frame(pay(100, 1), seq=1100, ident=8, **kw)  # type: ignore[arg-type]
    pushed, flushed = run([first, second])
    assert pushed == [single(first)]
    assert flushed == [single(second)]


def test_ipv4_id_must_increment_or_stay_fixed_with_df() -> None:
    a = frame(pay(100), ident=7)
    jump = frame(pay(100, 1), seq=1100, ident=9)
    assert run([a, jump]) == ([single(a)], [single(jump)])
    fixed = [frame(pay(100, i), seq=1000 + 100 * i, ident=7) for i in range(3)]
    _, flushed = run(fixed)
    assert [p.segments for p in flushed] == [3]
    no_df = [frame(pay(100, i), seq=1000 + 100 * i, ident=7, df=False) for i in range(2)]
    pushed, flushed = run(no_df)
    assert [p.segments for p in pushed + flushed] == [1, 1]


def test_fixed_id_round_trip_differs_only_in_ipv4_id() -> None:
    """The one documented round-trip exception: virtio has no SKB_GSO_TCP_FIXEDID, so
    re-segmenting a fixed-ID flow increments the IDs."""
    fixed = [frame(pay(100, i), seq=1000 + 100 * i, ident=7) for i in range(3)]
    (merged,) = run(fixed)[1]
    again = segment(merged.frame, merged.hdr, STRICT)
    assert [struct.unpack_from("!H", f, 18)[0] for f in again] == [7, 8, 9]
    renumbered = [frame(pay(100, i), seq=1000 + 100 * i, ident=7 + i) for i in range(3)]
    assert again == renumbered


def test_cwr_starts_a_new_packet_with_ecn() -> None:
    a, b = stream([100, 100])
    c = frame(pay(100, 2), seq=1200, ident=9, flags=ACK | CWR)
    d = frame(pay(100, 3), seq=1300, ident=10)
    pushed, flushed = run([a, b, c, d])
    assert [p.segments for p in pushed] == [2]
    assert pushed[0].hdr.gso_type == GsoType.TCPV4
    assert [p.segments for p in flushed] == [2]
    assert flushed[0].hdr.gso_type == GsoType.TCPV4 | GSO_ECN
    assert segment(flushed[0].frame, flushed[0].hdr, STRICT) == [c, d]


def test_cwr_passes_alone_without_guest_ecn() -> None:
    c = frame(pay(100), flags=ACK | CWR)
    d = frame(pay(100, 1), seq=1100, ident=8)
    pushed, flushed = run([c, d], CoalesceConfig(tcp4=True, tcp6=True, ecn=False))
    assert pushed == [single(c)]
    assert flushed == [single(d)]


def test_max_size_limits_the_ip_packet() -> None:
    segs = stream([100] * 5)
    config = CoalesceConfig(tcp4=True, tcp6=False, ecn=False, max_size=40 + 300)
    pushed, flushed = run(segs, config)
    assert [p.segments for p in pushed] == [3]
    assert [p.segments for p in flushed] == [2]
    assert all(len(p.frame) - 14 <= 340 for p in pushed + flushed)


def test_pure_ack_flushes_and_passes_alone() -> None:
    a, b = stream([100, 100])
    ack = frame(b"", seq=1200, ident=9)
    pushed, flushed = run([a, b, ack])
    assert [p.segments for p in pushed] == [2, 1]
    assert pushed[1] == single(ack)
    assert flushed == []


def test_flows_are_held_apart_and_flushed_in_order_of_arrival() -> None:
    x = stream([100, 100])
    y = stream([50, 50], seq=5000, ident=100, sport=40001)
    pushed, flushed = run([x[0], y[0], x[1], y[1]])
    assert pushed == []
    assert [(p.segments, p.hdr.gso_size) for p in flushed] == [(2, 100), (2, 50)]


def test_oldest_flow_flushed_beyond_max_flows() -> None:
    frames = [frame(pay(100), sport=41000 + i) for i in range(MAX_FLOWS + 1)]
    pushed, flushed = run(frames)
    assert pushed == [single(frames[0])]
    assert flushed == [single(f) for f in frames[1:]]


# --- checksums, pass-through, disabled kinds ---------------------------------------------


def test_bad_checksum_passes_alone_without_flushing_its_flow() -> None:
    a, b, c = stream([100, 100, 100])
    bad = frame(pay(100, 9), seq=1200, ident=9, check="bad")
    pushed, flushed = run([a, b, bad, c])
    assert pushed == [Coalesced(bad, NetHdr())]
    assert [p.segments for p in flushed] == [3]


def test_bad_ipv4_header_checksum_passes_alone() -> None:
    f = bytearray(frame(pay(100)))
    f[24] ^= 0xFF
    assert run([bytes(f)]) == ([Coalesced(bytes(f), NetHdr())], [])


def test_ethernet_padding_is_not_coalesced() -> None:
    padded = frame(pay(2)) + bytes(4)
    assert run([padded]) == ([Coalesced(padded, NetHdr())], [])


def test_non_tcp_passes_untouched() -> None:
    udp = MAC + b"\x08\x00" + bytes(20) + bytes(8)
    arp = MAC + b"\x08\x06" + bytes(28)
    c = Coalescer(CoalesceConfig(tcp4=True, tcp6=True, ecn=False, uso4=True, uso6=True))
    assert push_all(c, [udp, arp]) == [Coalesced(udp, NetHdr()), Coalesced(arp, NetHdr())]


@pytest.mark.parametrize("v6", [False, True])
def test_disabled_kind_never_coalesces(v6: bool) -> None:
    segs = stream([100, 100, 100], v6=v6)
    config = CoalesceConfig(tcp4=v6, tcp6=not v6, ecn=False)
    pushed, flushed = run(segs, config)
    assert pushed == [single(f) for f in segs]
    assert flushed == []
    none = CoalesceConfig(tcp4=False, tcp6=False, ecn=False, guest_csum=False)
    assert run(segs, none) == ([Coalesced(f, NetHdr()) for f in segs], [])


def test_config_dependencies() -> None:
    with pytest.raises(ValueError, match="GUEST_CSUM"):
        CoalesceConfig(tcp4=True, tcp6=False, ecn=False, guest_csum=False)
    with pytest.raises(ValueError, match="GUEST_ECN"):
        CoalesceConfig(tcp4=False, tcp6=False, ecn=True)
    with pytest.raises(ValueError, match="max_size"):
        CoalesceConfig(tcp4=True, tcp6=False, ecn=False, max_size=70000)


# --- RSC_EXT ----------------------------------------------------------------------------


RSC = CoalesceConfig(tcp4=True, tcp6=True, ecn=False, rsc_info=True)


def test_rsc_info_counts_segments_and_dup_acks() -> None:
    a, b, c = stream([100, 100, 100])
    dup1 = frame(b"", seq=1200, ident=9)
    dup2 = frame(b"", seq=1200, ident=10)
    c = frame(pay(100, 2), seq=1200, ident=11)
    pushed, flushed = run([a, b, dup1, dup2, c], RSC)
    assert pushed == []
    (out,) = flushed
    assert (out.segments, out.dup_acks) == (3, 2)
    assert out.hdr == NetHdr(flags=NEEDS_CSUM | RSC_INFO, gso_type=GsoType.TCPV4, hdr_len=54,
                             gso_size=100, csum_start=3, csum_offset=2)
    expected = frame(pay(100, 0) + pay(100, 1) + pay(100, 2), ident=7, check="seed")
    assert out.frame == expected


def test_rsc_dup_ack_after_single_segment_is_sent_again() -> None:
    a = frame(pay(100))
    dup = frame(b"", seq=1100, ident=8)
    assert run([a, dup], RSC) == ([], [single(a), single(dup)])


def test_rsc_window_update_is_not_a_dup_ack() -> None:
    a, b = stream([100, 100])
    upd = frame(b"", seq=1200, ident=9, window=600)
    pushed, flushed = run([a, b, upd], RSC)
    assert [(p.segments, p.dup_acks) for p in pushed] == [(2, 0), (1, 0)]
    assert pushed[1] == single(upd)
    assert flushed == []


# --- the round trip with segment() -----------------------------------------------------


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], bool]:
    v6 = draw(st.booleans())
    mss = draw(st.integers(1, 1460))
    options = TS if draw(st.booleans()) else b""
    seq = draw(st.integers(0, 0xFFFFFFFF))
    ident = draw(st.integers(0, 0xFFFF))
    chunks = draw(st.lists(st.tuples(st.integers(1, 6000), st.booleans()), min_size=1,
                           max_size=6))
    segments: list[bytes] = []
    for size, psh in chunks:
        body = draw(st.binary(min_size=size, max_size=size)) if size < 64 else pay(size, size)
        sup = frame(body, seq=seq, v6=v6, ident=ident, options=options, check="seed",
                    flags=ACK | (PSH if psh else 0))
        l4 = L4_V6 if v6 else L4_V4
        hdr = NetHdr(flags=NEEDS_CSUM, gso_type=GsoType.TCPV6 if v6 else GsoType.TCPV4,
                     hdr_len=l4 + 20 + len(options), gso_size=mss, csum_start=l4,
                     csum_offset=16)
        out = segment(sup, hdr, STRICT)
        segments.extend(out)
        seq = (seq + size) & 0xFFFFFFFF
        ident = (ident + len(out)) & 0xFFFF
    return segments, draw(st.booleans())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_round_trip_segment_coalesce_segment(case: tuple[list[bytes], bool]) -> None:
    original, rsc = case
    config = CoalesceConfig(tcp4=True, tcp6=True, ecn=True, rsc_info=rsc)
    pushed, flushed = run(original, config)
    again: list[bytes] = []
    for item in pushed + flushed:
        hdr = item.hdr
        if hdr.gso_type == GsoType.NONE:
            assert item.segments == 1 and hdr.flags == DATA_VALID
            again.append(item.frame)
            continue
        assert item.segments > 1 and item.dup_acks == 0
        if rsc:
            assert hdr.flags == NEEDS_CSUM | RSC_INFO and hdr.csum_start == item.segments
            l4 = L4_V6 if hdr.gso_type == GsoType.TCPV6 else L4_V4
            hdr = hdr.with_(flags=NEEDS_CSUM, csum_start=l4, csum_offset=16)
        resegmented = segment(item.frame, hdr, STRICT)
        assert len(resegmented) == item.segments
        again.extend(resegmented)
    assert again == original


# --- UDP (GUEST_USO4 / GUEST_USO6) ------------------------------------------------------


USO = CoalesceConfig(tcp4=True, tcp6=True, ecn=False, uso4=True, uso6=True)
L4_OF = {False: L4_V4, True: L4_V6}


def datagram(payload: bytes, *, v6: bool = False, ident: int = 7, check: str = "valid",
             dport: int = 6000) -> bytes:
    ulen = 8 + len(payload)
    l4 = bytearray(struct.pack("!HHHH", 5000, dport, ulen, 0) + payload)
    ph = pseudo(v6, ulen, 17)
    if check == "seed":
        value = oc_sum(ph)
    elif check == "zero":
        value = 0
    else:
        value = (~oc_sum(ph + bytes(l4)) & 0xFFFF) or 0xFFFF
    struct.pack_into("!H", l4, 6, value)
    if v6:
        ip = struct.pack("!IHBB16s16s", 6 << 28, ulen, 17, 64, SRC6, DST6)
        return MAC + b"\x86\xdd" + ip + bytes(l4)
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, ident, 0x4000, 64, 17, 0,
                                SRC4, DST4))
    struct.pack_into("!H", hdr, 10, ~oc_sum(bytes(hdr)) & 0xFFFF)
    return MAC + b"\x08\x00" + bytes(hdr) + bytes(l4)


@pytest.mark.parametrize("v6", [False, True])
def test_uso_three_datagram_merge_exact(v6: bool) -> None:
    dgs = [datagram(pay(n, i), v6=v6, ident=7 + i) for i, n in enumerate([200, 200, 50])]
    pushed, flushed = run(dgs, USO)  # the shorter last one is merged, then flushed
    l4 = L4_OF[v6]
    expected = datagram(pay(200, 0) + pay(200, 1) + pay(50, 2), v6=v6, check="seed")
    assert pushed == [Coalesced(expected, NetHdr(
        flags=NEEDS_CSUM, gso_type=GsoType.UDP_L4, hdr_len=l4 + 8, gso_size=200,
        csum_start=l4, csum_offset=6), segments=3)]
    assert flushed == []
    assert segment(pushed[0].frame, pushed[0].hdr, STRICT) == dgs


def test_uso_larger_datagram_starts_a_new_packet_and_count_is_capped() -> None:
    dgs = [datagram(pay(10, i), ident=i) for i in range(70)] + [datagram(pay(20), ident=70)]
    pushed, flushed = run(dgs, USO)
    assert [(p.segments, p.hdr.gso_size) for p in pushed] == [(64, 10), (6, 10)]
    assert flushed == [single(dgs[-1])]


def test_uso_disabled_or_zero_checksum_passes_untouched() -> None:
    # USO4 off: each datagram alone, its checksum verified (DATA_VALID, as for TCP of a
    # disabled kind)
    valid = NetHdr(flags=NetHdrFlag.DATA_VALID)
    dgs = [datagram(pay(100, i), ident=7 + i) for i in range(2)]
    assert run(dgs) == ([Coalesced(d, valid) for d in dgs], [])
    assert run(dgs, CoalesceConfig(tcp4=True, tcp6=True, ecn=False, uso6=True)) == (
        [Coalesced(d, valid) for d in dgs], [])
    zero = [datagram(pay(100, i), ident=7 + i, check="zero") for i in range(2)]
    assert run(zero, USO) == ([Coalesced(d, NetHdr()) for d in zero], [])
    bad = datagram(pay(100), check="valid")
    bad = bad[:-1] + bytes([bad[-1] ^ 1])
    assert run([bad], USO) == ([Coalesced(bad, NetHdr())], [])


def test_uso_with_rsc_info() -> None:
    config = CoalesceConfig(tcp4=True, tcp6=True, ecn=False, uso4=True, rsc_info=True)
    dgs = [datagram(pay(100, i), ident=7 + i) for i in range(3)]
    (out,) = run(dgs, config)[1]
    assert out.hdr.flags == NEEDS_CSUM | RSC_INFO
    assert (out.hdr.csum_start, out.hdr.csum_offset) == (3, 0)


@settings(max_examples=60, deadline=None)
@given(st.booleans(), st.integers(1, 1400), st.integers(1, 8000), st.integers(0, 0xFFFF))
def test_uso_round_trip(v6: bool, mss: int, size: int, ident: int) -> None:
    l4 = L4_OF[v6]
    sup = datagram(pay(size), v6=v6, ident=ident, check="seed")
    hdr = NetHdr(flags=NEEDS_CSUM, gso_type=GsoType.UDP_L4, hdr_len=l4 + 8, gso_size=mss,
                 csum_start=l4, csum_offset=6)
    original = segment(sup, hdr, STRICT)
    pushed, flushed = run(original, USO)
    again: list[bytes] = []
    for item in pushed + flushed:
        if item.hdr.gso_type == GsoType.NONE:
            again.append(item.frame)
        else:
            again.extend(segment(item.frame, item.hdr, STRICT))
    assert again == original


# --- differential: the optimised coalescer against the frozen reference ------------------
#
# tests/emulator/coalesce_reference.py is the straightforward implementation the fast
# path replaced. On random streams (interleaved flows, in order and not, PSH/FIN/CWR/
# SYN/RST/URG, dup ACKs, changed headers, IPv4 ID modes, corrupted checksums, padding,
# IPv4 options, IPv6 extension headers, VLAN tags, UDP, junk) both must return the same
# packets in the same order. The one documented difference is when: a segment merged on
# trust whose checksum then fails goes out (alone, flags 0, as in the reference) from
# the next call that returns anything, or the next flush, instead of from its own push.
# So after every call what the optimised one returned so far is a prefix of what the
# reference returned so far, equal to it after every call that returned something and
# after every flush; and whenever the two are level, ``last_held`` and ``held`` agree.

HOP_BY_HOP = 0
_T = TypeVar("_T")


def _wire(*, v6: bool, udp: bool, payload: bytes, seq: int = 0, ack: int = 0x2000,
          flags: int = ACK, window: int = 512, urg: int = 0, options: bytes = b"",
          ident: int = 0, tos: int = 0, ttl: int = 64, df: bool = True, frag: int = 0,
          ip_options: bytes = b"", hop_by_hop: bool = False, vlan: bool = False,
          mac: bytes = MAC, sport: int = 40000, dport: int = 80, check: str = "valid",
          ip_check: str = "valid", pad: bytes = b"", neutral_pad: bool = False,
          ethertype: bytes | None = None) -> bytes:
    """Any TCP or UDP frame the generator below asks for (``check``: valid, bad, seed or
    zero; ``ip_check``: valid or bad; ``pad``: Ethernet padding; ``neutral_pad``: two
    bytes of padding that keep the checksum verifying over the padded length, as if
    they were part of the segment; ``ethertype``: a different one)."""
    proto = 17 if udp else 6
    if udp:
        l4 = bytearray(struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)
        csum_at = 6
    else:
        doff = 5 + len(options) // 4
        l4 = bytearray(struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags,
                                   window, 0, urg) + options + payload)
        csum_at = 16
    ph = pseudo(v6, len(l4), proto)
    value = {"valid": ~oc_sum(ph + bytes(l4)) & 0xFFFF, "seed": oc_sum(ph), "zero": 0,
             "bad": (~oc_sum(ph + bytes(l4)) & 0xFFFF) ^ 0x0101}[check]
    if udp and check == "valid" and value == 0:
        value = 0xFFFF
    struct.pack_into("!H", l4, csum_at, value)
    if neutral_pad:  # their word(s) add 0xFFFD, the length 2: the sum stays 0 mod 0xFFFF
        pad = b"\xfd\xff" if len(l4) % 2 else b"\xff\xfd"
    eth = mac + (b"\x81\x00\x00\x05" if vlan else b"")
    if v6:
        ext = bytes([proto, 0, 1, 4, 0, 0, 0, 0]) if hop_by_hop else b""
        ip = struct.pack("!IHBB16s16s", 6 << 28 | tos << 20, len(ext) + len(l4),
                         HOP_BY_HOP if hop_by_hop else proto, ttl, SRC6, DST6) + ext
        return eth + (ethertype or b"\x86\xdd") + ip + bytes(l4) + pad
    ihl = 5 + len(ip_options) // 4
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, tos, ihl * 4 + len(l4), ident,
                                (0x4000 if df else 0) | frag, ttl, proto, 0, SRC4, DST4)
                    + ip_options)
    csum = ~oc_sum(bytes(hdr)) & 0xFFFF
    struct.pack_into("!H", hdr, 10, csum ^ (0x0F0F if ip_check == "bad" else 0))
    return eth + (ethertype or b"\x08\x00") + bytes(hdr) + bytes(l4) + pad


@st.composite
def _configs(draw: st.DrawFn) -> dict[str, int | bool]:
    guest_csum = draw(st.integers(0, 9)) > 0
    if not guest_csum:
        return {"tcp4": False, "tcp6": False, "ecn": False, "guest_csum": False}
    tcp4, tcp6 = draw(st.booleans()) or draw(st.booleans()), draw(st.integers(0, 3)) > 0
    return {"tcp4": tcp4, "tcp6": tcp6, "ecn": (tcp4 or tcp6) and draw(st.booleans()),
            "uso4": draw(st.booleans()), "uso6": draw(st.booleans()),
            "rsc_info": draw(st.booleans()),
            "max_size": draw(st.sampled_from([0xFFFF, 0xFFFF, 0xFFFF, 300, 700, 1500, 4000]))}


def _pick(data: st.DataObject, weighted: list[tuple[int, _T]]) -> _T:
    """One of the values, each with its weight (the first is what shrinking goes to)."""
    roll = data.draw(st.integers(0, sum(w for w, _ in weighted) - 1))
    for weight, value in weighted:
        if roll < weight:
            return value
        roll -= weight
    raise AssertionError("unreachable")


_CHANGES = ["check", "seed", "zero", "ip_check", "pad", "window", "ack", "ttl", "tos",
            "options", "urg", "ip_options", "hop_by_hop", "vlan", "frag", "df", "bytearray",
            "neutral_pad", "ethertype"]


def _draw_stream(data: st.DataObject) -> list[bytes | bytearray | None]:
    """A stream of frames (None: a flush) from a few flows whose state the draws mostly
    follow (next sequence number, next IPv4 ID), so that long runs merge, and sometimes
    break."""
    flows = []
    for _ in range(data.draw(st.integers(1, 4))):
        flows.append({
            "v6": data.draw(st.booleans()), "udp": data.draw(st.integers(0, 7)) == 0,
            "sport": data.draw(st.sampled_from([40000, 40000, 40001, 40002])),
            "mac": data.draw(st.sampled_from([MAC, MAC, MAC[:5] + b"\x09" + MAC[6:]])),
            "mss": data.draw(st.sampled_from([100, 1, 7, 40, 100, 333, 1448])),
            "options": data.draw(st.sampled_from([b"", b"", TS])),
            "seq": data.draw(st.integers(0, 0xFFFFFFFF)),
            "ident": data.draw(st.integers(0, 0xFFFF)),
            "df": data.draw(st.integers(0, 5)) > 0,
        })
    out: list[bytes | bytearray | None] = []
    for _ in range(data.draw(st.integers(1, 60))):
        kind = _pick(data, [(93, "segment"), (4, "flush"), (3, "junk")])
        if kind == "flush":
            out.append(None)
            continue
        if kind == "junk":
            junk = data.draw(st.sampled_from([
                MAC + b"\x08\x06" + bytes(28), b"", bytes(13), MAC + b"\x08\x00" + bytes(20),
                MAC + b"\x86\xdd" + bytes(40), MAC + b"\x08\x00\x45" + bytes(50),
            ]))
            out.append(junk + data.draw(st.binary(max_size=4)))
            continue
        flow = flows[data.draw(st.integers(0, len(flows) - 1))]
        mss = int(flow["mss"])  # type: ignore[call-overload]
        # Mostly the flow's next segment; otherwise one thing about it is different.
        twist = _pick(data, [(75, "none"), (5, "size"), (4, "seq"), (3, "ident"),
                             (5, "flags"), (8, "change")])
        size = mss
        if twist == "size":
            size = _pick(data, [(1, 0), (1, max(mss // 2, 1)), (1, mss + 1), (1, 3 * mss)])
            if size == 0 and flow["udp"]:
                size = mss
        seq_mode = _pick(data, [(1, "back"), (1, "skip")]) if twist == "seq" else "next"
        seq = int(flow["seq"])  # type: ignore[call-overload]
        if seq_mode == "back":
            seq = (seq - mss) & 0xFFFFFFFF
        elif seq_mode == "skip":
            seq = (seq + mss) & 0xFFFFFFFF
        ident_mode = _pick(data, [(2, "same"), (1, "jump")]) if twist == "ident" else "inc"
        ident = int(flow["ident"])  # type: ignore[call-overload]
        ident = {"inc": ident, "same": (ident - 1) & 0xFFFF,
                 "jump": (ident + 5) & 0xFFFF}[ident_mode]
        flags = ACK
        if twist == "flags":
            flags |= _pick(data, [(8, PSH), (3, FIN), (2, PSH | FIN), (4, CWR), (2, ECE),
                                  (2, SYN), (2, RST), (2, URG)])
        change = data.draw(st.sampled_from(_CHANGES)) if twist == "change" else "none"
        v6 = bool(flow["v6"])
        kw: dict[str, object] = {
            "v6": v6, "udp": flow["udp"], "seq": seq, "flags": flags, "ident": ident,
            "df": flow["df"], "options": flow["options"], "sport": flow["sport"],
            "mac": flow["mac"],
            "payload": pay(size, data.draw(st.integers(0, 255))),
        }
        if change == "check":
            kw["check"] = "bad"
        elif change in ("seed", "zero"):
            kw["check"] = change
        elif change == "ip_check":
            kw["ip_check"] = "bad"
        elif change == "pad":
            kw["pad"] = bytes(data.draw(st.integers(1, 5)))
        elif change == "window":
            kw["window"] = 600
        elif change == "ack":
            kw["ack"] = 0x2001
        elif change == "ttl":
            kw["ttl"] = 63
        elif change == "tos":
            kw["tos"] = data.draw(st.sampled_from([1, 2, 3, 0x10]))
        elif change == "options":
            kw["options"] = data.draw(st.sampled_from([b"", TS[:8] + struct.pack("!I", 2001),
                                                       bytes([1, 1, 1, 1])]))
        elif change == "urg":
            kw["urg"] = 9
        elif change == "ip_options":
            kw["ip_options"] = bytes([1, 1, 1, 0])
        elif change == "hop_by_hop":
            kw["hop_by_hop"] = True
        elif change == "vlan":
            kw["vlan"] = True
        elif change == "frag":
            kw["frag"] = data.draw(st.sampled_from([0x2000, 0x0001]))
        elif change == "df":
            kw["df"] = not flow["df"]
        elif change == "neutral_pad":
            kw["neutral_pad"] = True
        elif change == "ethertype":
            kw["ethertype"] = b"\x86\xde" if v6 else b"\x08\x01"
        wire = _wire(**kw)  # type: ignore[arg-type]
        out.append(bytearray(wire) if change == "bytearray" else wire)
        if seq_mode == "next" and change in ("none", "bytearray"):
            flow["seq"] = (seq + size) & 0xFFFFFFFF
            flow["ident"] = (ident + 1) & 0xFFFF
    return out


def _outputs(packets: list[Coalesced] | list[reference.Coalesced]) -> list[tuple[object, ...]]:
    return [(type(p.frame), p.frame, p.hdr, p.segments, p.dup_acks) for p in packets]


def _run_both(config: dict[str, int | bool], stream: list[bytes | bytearray | None]) -> None:
    new = Coalescer(CoalesceConfig(**config))  # type: ignore[arg-type]
    ref = reference.Coalescer(reference.CoalesceConfig(**config))  # type: ignore[arg-type]
    got: list[tuple[object, ...]] = []
    want: list[tuple[object, ...]] = []
    for i, item in enumerate(stream):
        if item is None:
            out, ref_out = _outputs(new.flush()), _outputs(ref.flush())
        else:
            out, ref_out = _outputs(new.push(item)), _outputs(ref.push(item))  # type: ignore[arg-type]
        got += out
        want += ref_out
        where = f"call {i} of {len(stream)}"
        assert got == want[:len(got)], where
        if out or item is None:
            assert got == want, where
        if got == want:
            assert new.held == ref.held, where
            if item is not None:
                assert new.last_held == ref.last_held, where
        else:
            assert new.last_held and not out, where  # the frame taken on trust
    assert got + _outputs(new.flush()) == want + _outputs(ref.flush())


def _run_level(config: dict[str, int | bool], stream: list[bytes | bytearray | None]) -> None:
    """No frame fails a check: every call returns exactly what the reference returns."""
    new = Coalescer(CoalesceConfig(**config))  # type: ignore[arg-type]
    ref = reference.Coalescer(reference.CoalesceConfig(**config))  # type: ignore[arg-type]
    for i, item in enumerate(stream):
        if item is None:
            assert _outputs(new.flush()) == _outputs(ref.flush()), f"call {i}"
        else:
            assert _outputs(new.push(item)) == _outputs(ref.push(item)), f"call {i}"  # type: ignore[arg-type]
            assert new.last_held == ref.last_held, f"call {i}"
        assert new.held == ref.held, f"call {i}"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_configs(), st.data())
def test_differential_against_reference(config: dict[str, int | bool],
                                        data: st.DataObject) -> None:
    _run_both(config, _draw_stream(data))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_configs(), streams(), st.lists(st.integers(0, 200), max_size=3))
def test_differential_on_segmented_streams(config: dict[str, int | bool],
                                           case: tuple[list[bytes], bool],
                                           flush_at: list[int]) -> None:
    """Segments of real super-packets (long in-order runs), with flushes in between."""
    frames: list[bytes | bytearray | None] = list(case[0])
    for at in sorted(flush_at, reverse=True):
        frames.insert(min(at, len(frames)), None)
    _run_level(config, frames)


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize(("bad", "where"), [(None, ""), (0, "tcp"), (7, "tcp"), (44, "tcp"),
                                            (20, "ip")])
def test_differential_64k_burst(v6: bool, bad: int | None, where: str) -> None:
    """The benchmark's burst (45 segments of a 64,000-byte TSO packet), intact or with
    one segment's TCP checksum or IPv4 header checksum broken."""
    l4 = L4_V6 if v6 else L4_V4
    sup = frame(pay(64000), v6=v6, flags=ACK | PSH, options=TS, check="seed")
    hdr = NetHdr(flags=NEEDS_CSUM, gso_type=GsoType.TCPV6 if v6 else GsoType.TCPV4,
                 hdr_len=l4 + 32, gso_size=1448, csum_start=l4, csum_offset=16)
    frames: list[bytes | bytearray | None] = list(segment(sup, hdr, STRICT))
    assert len(frames) == 45
    if bad is not None:
        broken = bytearray(frames[bad])  # type: ignore[arg-type]
        broken[-1 if where == "tcp" else 24] ^= 0x40  # payload or IPv4 TTL/IPv6 address
        frames[bad] = bytes(broken)
    configs: list[dict[str, int | bool]] = [
        {"tcp4": True, "tcp6": True, "ecn": False},
        {"tcp4": True, "tcp6": True, "ecn": True, "rsc_info": True}]
    for config in configs:
        (_run_level if bad is None else _run_both)(config, frames)


@pytest.mark.parametrize("v6", [False, True])
def test_broken_segment_taken_on_trust_comes_out_from_the_next_call(v6: bool) -> None:
    """The next segment of a held flow is merged before its checksum is verified; a
    failing one goes out alone (flags 0) from the next call that returns anything, in
    the place the reference gives it, and its flow goes on without it."""
    a, b, c = stream([100, 100, 100], v6=v6)
    bad = frame(pay(100, 9), seq=1200, ident=9, v6=v6, check="bad")
    config = CoalesceConfig(tcp4=True, tcp6=True, ecn=False)
    ref = reference.Coalescer(reference.CoalesceConfig(tcp4=True, tcp6=True, ecn=False))
    assert [ref.push(f) for f in (a, b, bad)] == [[], [], [reference.Coalesced(bad, NetHdr())]]
    new = Coalescer(config)
    assert [new.push(f) for f in (a, b, bad)] == [[], [], []]
    assert new.last_held
    out = new.flush()
    assert out[0] == Coalesced(bad, NetHdr())
    assert [(p.segments, p.hdr.gso_size) for p in out[1:]] == [(2, 100)]
    # Pushed on: c (seq 1200 again) does not follow the trusted state, so the
    # checksums are verified first, the bad segment goes out, and c continues the flow
    # after b as in the reference.
    new = Coalescer(config)
    assert [new.push(f) for f in (a, b, bad)] == [[], [], []]
    assert new.push(c) == [Coalesced(bad, NetHdr())]
    assert new.last_held
    merged = new.push(frame(pay(50, 3), seq=1300, ident=10, v6=v6))
    assert [p.segments for p in merged] == [4]


def test_urgent_pointer_change_flushes() -> None:
    """The urgent pointer is compared even without URG (stricter than Linux)."""
    first = frame(pay(100))
    second = bytearray(frame(pay(100, 1), seq=1100, ident=8))
    struct.pack_into("!H", second, L4_V4 + 18, 9)  # urgent pointer; fix the checksum
    struct.pack_into("!H", second, L4_V4 + 16, 0)
    struct.pack_into("!H", second, L4_V4 + 16, ~oc_sum(pseudo(False, 120) + bytes(second[L4_V4:]))
                     & 0xFFFF)
    third = frame(pay(100, 2), seq=1200, ident=9)
    pushed, flushed = run([first, bytes(second), third])
    assert pushed == [single(first), single(bytes(second))]
    assert flushed == [single(third)]


def test_fixed_id_flow_does_not_take_an_incrementing_id() -> None:
    segs = [frame(pay(100, i), seq=1000 + 100 * i, ident=7) for i in range(2)]
    inc = frame(pay(100, 2), seq=1200, ident=8)
    pushed, flushed = run([*segs, inc])
    assert [p.segments for p in pushed] == [2]
    assert flushed == [single(inc)]
    segs = [frame(pay(100, i), seq=1000 + 100 * i, ident=7 + i) for i in range(2)]
    fixed = frame(pay(100, 2), seq=1200, ident=8)
    pushed, flushed = run([*segs, fixed])
    assert [p.segments for p in pushed] == [2]
    assert flushed == [single(fixed)]


@st.composite
def _fast_frames(draw: st.DrawFn) -> bytes:
    """A frame the fast path reads (untagged, IPv4 IHL 5 or IPv6 without extension
    headers, TCP), with random bytes and checksums that may or may not verify."""
    v6 = draw(st.booleans())
    size = draw(st.sampled_from([0, 1, 2, 3, 19, 20, 21, 100, 101, 1447, 1448]))
    body = draw(st.binary(min_size=size, max_size=size))
    wire = bytearray(_wire(v6=v6, udp=False, payload=body,
                           seq=draw(st.integers(0, 0xFFFFFFFF)),
                           options=draw(st.sampled_from([b"", TS])),
                           ident=draw(st.integers(0, 0xFFFF)),
                           check=draw(st.sampled_from(["valid", "valid", "bad", "seed"])),
                           ip_check=draw(st.sampled_from(["valid", "valid", "bad"]))))
    if draw(st.integers(0, 3)) == 0:  # one more flipped bit among the checksummed bytes
        at = draw(st.integers(22 if v6 else 14, len(wire) - 1))
        if at not in range(14, 24):  # not the lengths, protocol, version
            wire[at] ^= 1 << draw(st.integers(0, 7))
    return bytes(wire)


@settings(max_examples=300, deadline=None)
@given(st.lists(_fast_frames(), min_size=1, max_size=4), st.integers(1, 12))
def test_deferred_verification_agrees_with_reference(frames: list[bytes], copies: int) -> None:
    """The checks of a frame read by the fast path, one by one and (the TCP checksum of
    frames of one length and kind) as the rows of a numpy array, decide what the
    reference decides for the frame."""
    for f in frames:
        ok = reference._inspect(f)[0] is not None
        v6 = f[12] == 0x86
        l4 = L4_V6 if v6 else L4_V4
        assert coalesce._fast_verifies(f, v6) == ok
        ip_ok = v6 or oc_sum(f[14:34]) == 0xFFFF
        rows = np.frombuffer(f * copies, dtype=np.uint8).reshape(copies, len(f))
        assert coalesce._rows_verify(rows, v6) == coalesce._tcp_verifies(f, l4 - (32 if v6 else 8),
                                                                          len(f) - l4)
        assert (ip_ok and coalesce._rows_verify(rows, v6)) == ok


@settings(max_examples=150, deadline=None)
@given(st.booleans(), st.integers(1, 60), st.integers(6, 24), st.data())
def test_differential_long_runs_with_one_broken_segment(v6: bool, mss: int, count: int,
                                                        data: st.DataObject) -> None:
    """Runs long enough to be verified as numpy rows, of odd and even sizes, with one
    segment broken (TCP checksum, IPv4 header checksum, or a copy with a changed byte
    and its checksum redone: a changed header field or payload), maybe a short or PSH
    last segment, and a second flow interleaved."""
    options = data.draw(st.sampled_from([b"", TS]))
    last = data.draw(st.sampled_from([mss, max(mss // 2, 1)]))
    sizes = [mss] * (count - 1) + [last]
    frames: list[bytes | bytearray | None] = list(stream(
        sizes, v6=v6, options=options, last_flags=data.draw(st.sampled_from([0, PSH]))))
    bad = data.draw(st.integers(0, count - 1))
    how = data.draw(st.sampled_from(["tcp", "ip", "payload"]))
    broken = bytearray(frames[bad])  # type: ignore[arg-type]
    if how == "tcp" or (how == "ip" and v6):
        broken[-1] ^= 0x10
    elif how == "ip":
        broken[22] ^= 0x01  # TTL: the header checksum fails
    else:  # a different but valid segment: the payload changed, the checksum redone
        seq = 1000 + sum(sizes[:bad])
        broken = bytearray(frame(pay(sizes[bad], 77), seq=seq, ident=7 + bad, v6=v6,
                                 options=options))
    frames[bad] = bytes(broken)
    if data.draw(st.booleans()):
        other = stream([mss] * 3, v6=not v6, sport=40009, seq=9000, ident=300)
        at = 0
        for f in other:  # in their order, among the others
            at = data.draw(st.integers(at, len(frames)))
            frames.insert(at, f)
            at += 1
    if data.draw(st.booleans()):
        frames.insert(data.draw(st.integers(0, len(frames))), None)
    _run_both(dict(BOTH.__dict__), frames)


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("change", ["neutral_pad", "ethertype"])
def test_segment_of_a_held_flow_checked_like_any(v6: bool, change: str) -> None:
    """A segment that would continue a held flow but for its ethertype, or for
    padding (that even keeps its checksum verifying over the padded length: the IP
    length no longer matches the frame), is not merged."""
    odd = b"\x86\xde" if v6 else b"\x08\x01"
    frames: list[bytes | bytearray | None] = []
    for i in range(4):
        changed = i in (0, 2)
        frames.append(_wire(v6=v6, udp=False, payload=pay(100, i), seq=1000 + 100 * i,
                            ident=7 + i, neutral_pad=changed and change == "neutral_pad",
                            ethertype=odd if changed and change == "ethertype" else None))
    frames.append(None)
    _run_level(dict(BOTH.__dict__), frames)
    pushed, flushed = run(frames[:-1])  # type: ignore[arg-type]
    assert [p.segments for p in pushed + flushed] == [1, 1, 1, 1]
