"""IP fragment reassembly (RFC 791 §3.2, RFC 815, RFC 8200 §4.5, RFC 5722, RFC 6946)."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.reassembly import ExpiredDatagram, FragmentError, Reassembler
from stack.wire.ipv4 import FLAG_DF, FLAG_MF, IpProtocol, Ipv4Header
from stack.wire.ipv6 import FragmentHeader, Ipv6Header
from virtio.errors import WireError

SRC4 = bytes([192, 0, 2, 1])
DST4 = bytes([192, 0, 2, 2])
SRC6 = bytes.fromhex("20010db8000000000000000000000001")
DST6 = bytes.fromhex("20010db8000000000000000000000002")
TIMEOUT = 30_000_000_000

V4Fragment = tuple[Ipv4Header, bytes]
V6Fragment = tuple[FragmentHeader, bytes]


def fragment_v4(payload: bytes, size: int, *, ident: int = 0x4242, protocol: int = IpProtocol.UDP,
                ttl: int = 64) -> list[V4Fragment]:
    """Fragment ``payload`` as RFC 791 §3.2 ("An Example Fragmentation Procedure") does:
    every fragment but the last carries ``size`` bytes (a multiple of 8) with MF set; the
    offset counts 8-octet units."""
    assert size % 8 == 0 and size > 0
    out: list[V4Fragment] = []
    for start in range(0, max(len(payload), 1), size):
        chunk = payload[start:start + size]
        more = start + size < len(payload)
        header = Ipv4Header(SRC4, DST4, protocol, 20 + len(chunk), ident=ident, ttl=ttl,
                            flags=FLAG_MF if more else 0, frag_offset=start // 8)
        out.append((header, chunk))
    return out


def fragment_v6(payload: bytes, size: int, *, ident: int = 0x01020304, next_header: int = 17
                ) -> list[V6Fragment]:
    """Fragment as RFC 8200 §4.5 does: fragments of ``size`` bytes (a multiple of 8), the
    offset in bytes, M set on all but the last."""
    assert size % 8 == 0 and size > 0
    out: list[V6Fragment] = []
    for start in range(0, max(len(payload), 1), size):
        chunk = payload[start:start + size]
        more = start + size < len(payload)
        out.append((FragmentHeader(next_header, start, more, ident), chunk))
    return out


def push_all_v4(r: Reassembler, frags: list[V4Fragment], now: int = 0) -> list[bytes | None]:
    return [r.push_v4(h, p, now) for h, p in frags]


def push_all_v6(r: Reassembler, frags: list[V6Fragment], now: int = 0
                ) -> list[tuple[int, bytes] | None]:
    return [r.push_v6(SRC6, DST6, f, p, now) for f, p in frags]


PAYLOAD = bytes(random.Random(1).randbytes(4000))


# -- IPv4 --------------------------------------------------------------------------------


def test_v4_in_order() -> None:
    r = Reassembler()
    frags = fragment_v4(PAYLOAD, 1480)
    assert len(frags) == 3
    results = push_all_v4(r, frags)
    assert results[:-1] == [None, None] and results[-1] == PAYLOAD
    assert r.pending == 0 and r.held_bytes == 0
    assert r.counters.fragments == 3 and r.counters.reassembled == 1


def test_v4_reverse_order() -> None:
    r = Reassembler()
    results = push_all_v4(r, fragment_v4(PAYLOAD, 512)[::-1])
    assert results[-1] == PAYLOAD and all(x is None for x in results[:-1])


def test_v4_header_is_the_first_fragments() -> None:
    # RFC 791 §3.2: the first fragment's header becomes the datagram's; the result has
    # MF cleared, offset 0 and the whole length.
    r = Reassembler()
    frags = fragment_v4(PAYLOAD, 1480)
    first = dataclasses.replace(frags[0][0], ttl=9, flags=FLAG_MF | FLAG_DF,
                                options=b"\x94\x04\x00\x00",
                                total_length=24 + len(frags[0][1]))
    frags[0] = (first, frags[0][1])
    assert r.push_v4_datagram(*frags[1], now=0) is None
    assert r.push_v4_datagram(*frags[2], now=0) is None
    done = r.push_v4_datagram(*frags[0], now=0)
    assert done is not None and done.payload == PAYLOAD
    assert done.header == dataclasses.replace(first, flags=FLAG_DF, frag_offset=0,
                                              total_length=24 + len(PAYLOAD), checksum=None)
    raw = done.header.emit()
    assert Ipv4Header.parse(raw + PAYLOAD, verify_checksum=True).total_length == 24 + 4000


def test_v4_not_a_fragment() -> None:
    r = Reassembler()
    header = Ipv4Header(SRC4, DST4, 6, 30)
    assert r.push_v4(header, b"0123456789", 0) == b"0123456789"
    assert r.pending == 0 and r.counters.fragments == 0


def test_v4_key_includes_protocol_and_ident() -> None:
    r = Reassembler()
    udp = fragment_v4(PAYLOAD, 1480)
    tcp = fragment_v4(PAYLOAD[::-1], 1480, protocol=IpProtocol.TCP)
    other = fragment_v4(PAYLOAD[:2000], 1480, ident=7)
    for frag in (udp[0], tcp[0], other[0], udp[1], tcp[1], udp[1]):  # udp[1] twice
        assert r.push_v4(*frag, 0) is None
    assert r.pending == 3
    assert r.push_v4(*tcp[2], 0) == PAYLOAD[::-1]
    assert r.push_v4(*udp[2], 0) == PAYLOAD
    assert r.push_v4(*other[1], 0) == PAYLOAD[:2000]


def test_v4_duplicates() -> None:
    r = Reassembler()
    frags = fragment_v4(PAYLOAD, 1000)
    assert push_all_v4(r, frags[:2] + frags[:2]) == [None] * 4
    assert r.counters.duplicates == 2 and r.held_bytes == 2000 + 20
    assert push_all_v4(r, frags[2:])[-1] == PAYLOAD


def test_v4_identical_overlap_accepted() -> None:
    # Re-fragmented copies: [0, 1600) and [800, 2400) overlap with the same bytes.
    r = Reassembler()
    a = Ipv4Header(SRC4, DST4, 17, 1620, ident=1, flags=FLAG_MF, frag_offset=0)
    b = Ipv4Header(SRC4, DST4, 17, 1620, ident=1, flags=FLAG_MF, frag_offset=100)
    c = Ipv4Header(SRC4, DST4, 17, 20 + 1600, ident=1, flags=0, frag_offset=300)
    assert r.push_v4(b, PAYLOAD[800:2400], 0) is None
    assert r.push_v4(a, PAYLOAD[0:1600], 0) is None
    assert r.push_v4(c, PAYLOAD[2400:4000], 0) == PAYLOAD
    assert r.counters.overlaps == 0


def test_v4_conflicting_overlap_drops_the_datagram() -> None:
    # RFC 1858 §4 / RFC 3128: an overlap that rewrites bytes (the TCP header of an
    # overlapping-fragment attack) must not reach the upper layer.
    r = Reassembler()
    frags = fragment_v4(PAYLOAD, 1000)
    assert r.push_v4(*frags[0], 0) is None
    evil = Ipv4Header(SRC4, DST4, 17, 20 + 16, ident=0x4242, flags=FLAG_MF, frag_offset=0)
    assert r.push_v4(evil, b"\xee" * 16, 0) is None
    assert r.counters.overlaps == 1 and r.pending == 0 and r.held_bytes == 0
    # The rest then starts a fresh datagram that lacks fragment 0: it never completes.
    assert push_all_v4(r, frags[1:]) == [None] * 3
    assert r.pending == 1


def test_v4_inconsistent_ends_are_malformed() -> None:
    r = Reassembler()
    frags = fragment_v4(PAYLOAD, 1000)
    r.push_v4(*frags[-1], 0)  # says the datagram ends at 4000
    shorter = Ipv4Header(SRC4, DST4, 17, 20 + 8, ident=0x4242, flags=0, frag_offset=10)
    assert r.push_v4(shorter, bytes(8), 0) is None
    assert r.counters.malformed == 1 and r.pending == 0
    r.push_v4(*frags[-1], 0)
    beyond = Ipv4Header(SRC4, DST4, 17, 20 + 1000, ident=0x4242, flags=FLAG_MF, frag_offset=500)
    assert r.push_v4(beyond, bytes(1000), 0) is None
    assert r.counters.malformed == 2 and r.pending == 0
    # A last fragment ending before data already held.
    r.push_v4(*frags[2], 0)
    early = Ipv4Header(SRC4, DST4, 17, 20 + 8, ident=0x4242, flags=0, frag_offset=1)
    assert r.push_v4(early, bytes(8), 0) is None
    assert r.counters.malformed == 3 and r.pending == 0


def test_v4_fragment_length_not_multiple_of_8() -> None:
    r = Reassembler()
    bad = Ipv4Header(SRC4, DST4, 17, 20 + 100, ident=1, flags=FLAG_MF)
    with pytest.raises(FragmentError, match="multiple of 8") as info:
        r.push_v4(bad, bytes(100), 0)
    assert info.value.field == "payload_length" and isinstance(info.value, WireError)
    assert r.counters.malformed == 1 and r.pending == 0


def test_v4_oversize_dropped() -> None:
    # The "ping of death": offset 8189 units (65512 bytes) + 40 bytes > 65535 - 20.
    r = Reassembler()
    frags = fragment_v4(PAYLOAD, 1000)
    r.push_v4(*frags[0], 0)
    death = Ipv4Header(SRC4, DST4, 17, 60, ident=0x4242, flags=0, frag_offset=8189)
    with pytest.raises(FragmentError, match="longer than 65515") as info:
        r.push_v4(death, bytes(40), 0)
    assert info.value.field == "fragment_offset"
    assert r.counters.too_big == 1 and r.pending == 0 and r.held_bytes == 0
    # Exactly 65535 is fine: 20 + 65512 + 3.
    edge = Ipv4Header(SRC4, DST4, 17, 23, ident=9, flags=0, frag_offset=8189)
    assert r.push_v4(edge, bytes(3), 0) is None and r.pending == 1


def test_v4_oversize_with_first_fragment_options() -> None:
    # Every fragment fits under 65535 with its own 20-byte header, but the first
    # fragment's 60-byte header makes the datagram 65575 bytes: dropped at the end.
    r = Reassembler()
    payload = bytes(65515)
    frags = fragment_v4(payload, 65000)
    first = dataclasses.replace(frags[0][0], options=bytes(40))
    assert r.push_v4(first, frags[0][1], 0) is None
    assert r.push_v4(*frags[1], 0) is None
    assert r.counters.too_big == 1 and r.counters.reassembled == 0 and r.pending == 0


# -- IPv6 --------------------------------------------------------------------------------


def test_v6_in_and_reverse_order() -> None:
    r = Reassembler()
    frags = fragment_v6(PAYLOAD, 1232)
    results = push_all_v6(r, frags)
    assert results[-1] == (17, PAYLOAD) and all(x is None for x in results[:-1])
    results = push_all_v6(r, frags[::-1])
    assert results[-1] == (17, PAYLOAD)
    assert r.counters.reassembled == 2 and r.pending == 0 and r.held_bytes == 0


def test_v6_next_header_of_the_first_fragment() -> None:
    # RFC 8200 §4.5: the Next Header of the reassembled packet is the first fragment's.
    r = Reassembler()
    frags = fragment_v6(PAYLOAD, 2000)
    last = (dataclasses.replace(frags[1][0], next_header=59), frags[1][1])
    assert r.push_v6(SRC6, DST6, *last, 0) is None
    assert r.push_v6(SRC6, DST6, *frags[0], 0) == (17, PAYLOAD)


def test_v6_atomic_fragment() -> None:
    # RFC 6946 §4: offset 0 and M clear: processed in isolation, at once, leaving a
    # datagram in progress with the same identification alone.
    r = Reassembler()
    frags = fragment_v6(PAYLOAD, 2000)
    assert r.push_v6(SRC6, DST6, *frags[0], 0) is None
    atomic = FragmentHeader(6, 0, False, frags[0][0].ident)
    assert r.push_v6(SRC6, DST6, atomic, b"tcp segment", 0) == (6, b"tcp segment")
    assert r.counters.atomic == 1 and r.counters.fragments == 1 and r.pending == 1
    assert r.push_v6(SRC6, DST6, *frags[1], 0) == (17, PAYLOAD)


def test_v6_exact_duplicate_dropped_alone() -> None:
    r = Reassembler()
    frags = fragment_v6(PAYLOAD, 1000)
    results = push_all_v6(r, [frags[0], frags[1], frags[1], frags[0], frags[2], frags[3]])
    assert results[-1] == (17, PAYLOAD)
    assert r.counters.duplicates == 2 and r.counters.overlaps == 0


@pytest.mark.parametrize("overlap", [
    (FragmentHeader(17, 992, True, 0x01020304), PAYLOAD[992:1200]),  # same bytes, partial
    (FragmentHeader(17, 0, True, 0x01020304), PAYLOAD[0:2000]),  # covers two fragments
    (FragmentHeader(17, 1000, True, 0x01020304), b"\xee" * 1000),  # same span, new bytes
])
def test_v6_any_overlap_discards(overlap: V6Fragment) -> None:
    # RFC 5722 §4 / RFC 8200 §4.5: overlapping fragments discard the whole datagram,
    # silently, even when the overlapping bytes agree.
    r = Reassembler()
    frags = fragment_v6(PAYLOAD, 1000)
    push_all_v6(r, frags[:2])
    assert r.push_v6(SRC6, DST6, *overlap, 0) is None
    assert r.counters.overlaps == 1 and r.pending == 0 and r.held_bytes == 0
    assert push_all_v6(r, frags[2:]) == [None, None]  # never completes without 0 and 1


def test_v6_malformed_fragments() -> None:
    r = Reassembler()
    with pytest.raises(FragmentError, match="multiple of 8") as info:
        r.push_v6(SRC6, DST6, FragmentHeader(17, 0, True, 5), bytes(1001), 0)
    assert info.value.field == "payload_length"
    r.push_v6(SRC6, DST6, FragmentHeader(17, 0, True, 5), bytes(1000), 0)
    with pytest.raises(FragmentError, match="longer than 65535") as info:
        r.push_v6(SRC6, DST6, FragmentHeader(17, 65528, False, 5), bytes(16), 0)
    assert info.value.field == "fragment_offset"
    assert r.counters.too_big == 1 and r.counters.malformed == 1 and r.pending == 0


def test_v6_and_v4_do_not_mix() -> None:
    r = Reassembler()
    v4 = fragment_v4(PAYLOAD, 2000, ident=1)
    v6 = fragment_v6(PAYLOAD[::-1], 2000, ident=1)
    assert r.push_v4(*v4[0], 0) is None and r.push_v6(SRC6, DST6, *v6[0], 0) is None
    assert r.push_v4(*v4[1], 0) == PAYLOAD
    assert r.push_v6(SRC6, DST6, *v6[1], 0) == (17, PAYLOAD[::-1])


# -- time ----------------------------------------------------------------------------------


def test_timeout_at_exactly_timeout_ns() -> None:
    r = Reassembler(timeout_ns=TIMEOUT)
    frags = fragment_v4(PAYLOAD, 1000)
    r.push_v4(*frags[0], now=5)
    r.push_v4(*frags[1], now=6)
    assert r.next_deadline() == 5 + TIMEOUT
    assert r.expire(5 + TIMEOUT - 1) == 0 and r.pending == 1
    assert r.expire(5 + TIMEOUT) == 1 and r.pending == 0 and r.held_bytes == 0
    assert r.counters.timeouts == 1 and r.next_deadline() is None
    # RFC 792 / RFC 1122 §3.3.2: fragment zero arrived, so time exceeded may be sent,
    # quoting it.
    [expired] = r.expired_first_fragments()
    assert expired == ExpiredDatagram(4, SRC4, DST4, frags[0][0].emit() + frags[0][1])
    assert r.expired_first_fragments() == []


def test_completion_just_before_the_timeout() -> None:
    r = Reassembler(timeout_ns=TIMEOUT)
    frags = fragment_v4(PAYLOAD, 2000)
    r.push_v4(*frags[0], now=0)
    assert r.push_v4(*frags[1], now=TIMEOUT - 1) == PAYLOAD


def test_stale_datagram_found_by_a_push() -> None:
    r = Reassembler(timeout_ns=TIMEOUT)
    frags = fragment_v4(PAYLOAD, 2000)
    r.push_v4(*frags[0], now=0)
    assert r.push_v4(*frags[1], now=TIMEOUT) is None  # the old datagram timed out
    assert r.counters.timeouts == 1 and r.pending == 1
    assert len(r.expired_first_fragments()) == 1
    assert r.push_v4(*frags[0], now=TIMEOUT + 1) == PAYLOAD


def test_no_time_exceeded_without_fragment_zero() -> None:
    # RFC 792: "If fragment zero is not available then no time exceeded need be sent".
    r = Reassembler(timeout_ns=10)
    push_all_v4(r, fragment_v4(PAYLOAD, 1000)[1:3])
    push_all_v6(r, fragment_v6(PAYLOAD, 1000)[2:])
    assert r.expire(10) == 2 and r.expired_first_fragments() == []


def test_v6_expired_first_fragment() -> None:
    r = Reassembler(timeout_ns=10)
    f0, p0 = fragment_v6(PAYLOAD, 1000)[0]
    r.push_v6(SRC6, DST6, f0, p0, 0)
    # With the received packet given, it is quoted as received ...
    g0 = dataclasses.replace(f0, ident=99)
    packet = Ipv6Header(SRC6, DST6, 44, 8 + len(p0), hop_limit=50).emit() + g0.emit() + p0
    r.push_v6(SRC6, DST6, g0, p0, 1, packet=packet)
    assert r.expire(20) == 2
    synthesized, as_received = r.expired_first_fragments()
    assert as_received == ExpiredDatagram(6, SRC6, DST6, packet)
    # ... otherwise an IPv6 header is synthesized in front of the fragment header.
    assert synthesized.first_fragment == (
        Ipv6Header(SRC6, DST6, 44, 8 + len(p0), hop_limit=0).emit() + f0.emit() + p0)
    with pytest.raises(ValueError, match="end with"):
        r.push_v6(SRC6, DST6, f0, p0, 30, packet=b"short")


# -- memory bounds ---------------------------------------------------------------------


def test_eviction_at_max_datagrams() -> None:
    r = Reassembler(max_datagrams=2)
    a, b, c = (fragment_v4(PAYLOAD, 2000, ident=i) for i in (1, 2, 3))
    r.push_v4(*a[0], 0)
    r.push_v4(*b[0], 1)
    assert r.counters.evicted == 0 and r.pending == 2
    r.push_v4(*c[0], 2)  # a third datagram: the oldest (a) goes
    assert r.counters.evicted == 1 and r.pending == 2
    assert r.push_v4(*a[1], 3) is None  # a restarts (evicting b)
    assert r.counters.evicted == 2
    assert r.push_v4(*c[1], 4) == PAYLOAD
    assert r.counters.evicted == 2 and r.pending == 1


def test_eviction_at_max_bytes() -> None:
    r = Reassembler(max_bytes=5000)
    a, b = (fragment_v4(PAYLOAD, 1000, ident=i) for i in (1, 2))
    push_all_v4(r, a[:3])  # 3000 bytes + 20 of header kept for the time-exceeded quote
    assert r.held_bytes == 3020
    r.push_v4(*b[1], 1)
    r.push_v4(*b[2], 1)  # 5020 held: over the bound, the oldest (a) is evicted
    assert r.counters.evicted == 1 and r.pending == 1 and r.held_bytes == 2000
    assert push_all_v4(r, [b[0], b[3]])[-1] == PAYLOAD


def test_a_datagram_larger_than_max_bytes_evicts_itself() -> None:
    r = Reassembler(max_bytes=3000)
    results = push_all_v4(r, fragment_v4(PAYLOAD, 1000))
    assert results == [None] * 4
    assert r.counters.evicted >= 1 and r.counters.reassembled == 0
    assert r.held_bytes <= 3000


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        Reassembler(timeout_ns=0)
    with pytest.raises(ValueError):
        Reassembler(max_datagrams=0)


# -- properties ------------------------------------------------------------------------

payloads = st.integers(1, 6000).flatmap(
    lambda n: st.binary(min_size=n, max_size=n))
sizes = st.integers(1, 200).map(lambda units: units * 8)


@given(payloads, sizes, st.randoms(use_true_random=False), st.integers(0, 3))
@settings(max_examples=150)
def test_v4_any_order_with_duplicates(payload: bytes, size: int, rnd: random.Random,
                                      dups: int) -> None:
    frags = fragment_v4(payload, size)
    order = frags + [rnd.choice(frags) for _ in range(dups)]
    rnd.shuffle(order)
    r = Reassembler()
    done = [x for x in push_all_v4(r, order) if x is not None]
    if len(frags) == 1:
        assert done == [payload] * len(order)  # not a fragment: returned each time
        return
    # Duplicates arriving after completion start a new datagram (nothing remembers
    # completed ones), which may complete again from duplicates alone.
    assert done[:1] == [payload] and all(x == payload for x in done)
    assert r.counters.reassembled == len(done) and r.counters.overlaps == 0


@given(payloads, sizes, st.randoms(use_true_random=False))
@settings(max_examples=150)
def test_v4_refragmented_copies_overlap_identically(payload: bytes, size: int,
                                                     rnd: random.Random) -> None:
    # The same datagram fragmented twice at different sizes (a retransmission through a
    # different path): every overlap carries the same bytes, the datagram completes.
    other = rnd.randrange(1, 200) * 8
    frags = fragment_v4(payload, size) + fragment_v4(payload, other)
    rnd.shuffle(frags)
    r = Reassembler()
    results = push_all_v4(r, frags)
    done = [x for x in results if x is not None]
    assert done[0] == payload and r.counters.overlaps == 0


@given(payloads, sizes, st.data(), st.booleans())
@settings(max_examples=150)
def test_v6_any_order(payload: bytes, size: int, data: st.DataObject, duplicate: bool) -> None:
    frags = fragment_v6(payload, size)
    sequence = data.draw(st.permutations(frags))
    if duplicate:
        sequence.insert(len(sequence) // 2, sequence[-1])
    r = Reassembler()
    done = [x for x in push_all_v6(r, sequence) if x is not None]
    if len(frags) == 1:
        assert done == [(17, payload)] * len(sequence)  # atomic: returned each time
        return
    assert done == [(17, payload)]
    assert r.counters.overlaps == 0


fragment_inputs = st.lists(
    st.tuples(st.integers(0, 8191), st.integers(0, 3000), st.booleans(), st.integers(0, 2),
              st.integers(0, 255)),
    max_size=40,
)


@given(fragment_inputs, st.sampled_from([4, 6]))
@settings(max_examples=200)
def test_arbitrary_fragments_raise_only_wire_error(
    inputs: list[tuple[int, int, bool, int, int]], version: int
) -> None:
    r = Reassembler(max_datagrams=2, max_bytes=20_000, timeout_ns=100)
    for now, (units, length, more, ident, fill) in enumerate(inputs):
        data = bytes([fill]) * length
        try:
            if version == 4:
                flags = FLAG_MF if more else 0
                header = Ipv4Header(SRC4, DST4, 17, min(20 + length, 0xFFFF), ident=ident,
                                    flags=flags, frag_offset=units)
                r.push_v4(header, data, now * 7)
            else:
                r.push_v6(SRC6, DST6, FragmentHeader(17, units * 8, more, ident), data, now * 7)
        except WireError:
            pass
        assert r.held_bytes >= 0 and r.pending <= 2
        assert r.held_bytes <= 20_000 + 3000 + 60  # one fragment over at most, then evicted
    r.expire(10**6)
    assert r.pending == 0 and r.held_bytes == 0
