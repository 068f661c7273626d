"""Checksum offload (§5.1.6.2, VIRTIO_NET_F_CSUM) and the seed conventions
(emulator/offload/checksum.py), and the no-segmentation path of each profile.

Packets are built field by field; expected checksums come from the RFC 1071 reference
loop below, not from the engine.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.offload import (
    FULL_LENGTH,
    OTHER,
    ZERO_LENGTH,
    OffloadError,
    classify_seed,
    complete_checksum,
    segment_packet,
)
from emulator.profiles import LINUX, QEMU, STRICT, Action
from tests.reference import rfc1071_sum
from virtio.constants import NetHdrFlag
from virtio.net_hdr import NetHdr

MAC = bytes.fromhex("525400000002525400000001")
SRC4, DST4 = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])
SRC6 = bytes.fromhex("fe800000000000000000000000000001")
DST6 = bytes.fromhex("fe800000000000000000000000000002")
FINAL6 = bytes.fromhex("20010db8000000000000000000000042")
NEEDS = int(NetHdrFlag.NEEDS_CSUM)


def pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + bytes([0, proto]) + struct.pack("!H", length)
    return src + dst + struct.pack("!I", length) + bytes([0, 0, 0, proto])


def ip_header(v6: bool, proto: int, l4_len: int, *, exts: bytes = b"",
              first: int | None = None, plen: int | None = None) -> bytes:
    if v6:
        nxt = proto if first is None else first
        length = len(exts) + l4_len if plen is None else plen
        return struct.pack("!IHBB16s16s", 6 << 28, length, nxt, 64, SRC6, DST6) + exts
    h = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + l4_len, 1, 0, 64, proto, 0, SRC4,
                              DST4))
    struct.pack_into("!H", h, 10, ~rfc1071_sum(bytes(h)) & 0xFFFF)
    return bytes(h)


def packet(proto: int, payload: bytes, *, v6: bool = False, seed: str | int = "full",
           dst: bytes | None = None, exts: bytes = b"", first: int | None = None,
           plen: int | None = None) -> tuple[bytes, NetHdr]:
    """A TCP (6) or UDP (17) frame with its checksum field seeded, and its header."""
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", 1000, 2000, 1, 0, 0x50, 0x18, 100, 0, 0) + payload
        off = 16
    else:
        l4 = struct.pack("!HHHH", 1000, 2000, 8 + len(payload), 0) + payload
        off = 6
    src = SRC6 if v6 else SRC4
    dst = dst or (DST6 if v6 else DST4)
    if seed in ("full", "zero"):
        value = rfc1071_sum(pseudo(src, dst, proto, len(l4) if seed == "full" else 0))
    else:
        assert isinstance(seed, int)
        value = seed
    l4 = l4[:off] + struct.pack("!H", value) + l4[off + 2:]
    l2 = MAC + (b"\x86\xdd" if v6 else b"\x08\x00")
    l3 = ip_header(v6, proto, len(l4), exts=exts, first=first, plen=plen)
    start = len(l2) + len(l3)
    return l2 + l3 + l4, NetHdr(flags=NEEDS, csum_start=start, csum_offset=off)


def verifies(frame: bytes, hdr: NetHdr, proto: int, *, v6: bool = False,
             dst: bytes | None = None) -> bool:
    l4 = frame[hdr.csum_start:]
    src = SRC6 if v6 else SRC4
    dst = dst or (DST6 if v6 else DST4)
    return rfc1071_sum(pseudo(src, dst, proto, len(l4)) + l4) == 0xFFFF


def test_golden_udp_ipv4() -> None:
    # Hand-built: 192.0.2.1:1000 -> 192.0.2.2:2000, payload "hi", length 10. By hand:
    # pseudo header c000+0201+c000+0202+0011+000a = 841f (end-around carry), UDP header
    # 03e8+07d0+000a+0000 = 0bc2, payload 6869: total f84a, checksum ~f84a = 07b5.
    frame, hdr = packet(17, b"hi")
    done = complete_checksum(frame, hdr)
    assert done[:40] == frame[:40] and done[42:] == frame[42:]
    assert done[40:42].hex() == "07b5"
    assert verifies(done, hdr, 17)


@pytest.mark.parametrize("proto", [6, 17])
@pytest.mark.parametrize("v6", [False, True])
def test_complete_checksum_verifies(proto: int, v6: bool) -> None:
    frame, hdr = packet(proto, bytes(range(200)), v6=v6)
    assert verifies(complete_checksum(frame, hdr), hdr, proto, v6=v6)


def test_without_needs_csum_the_frame_is_unchanged() -> None:
    frame, hdr = packet(6, b"abc")
    assert complete_checksum(frame, hdr.with_(flags=0)) == frame
    assert complete_checksum(frame, hdr.with_(flags=NetHdrFlag.DATA_VALID)) == frame


def test_checksum_outside_the_frame() -> None:
    frame, hdr = packet(6, b"abc")
    with pytest.raises(OffloadError) as err:
        complete_checksum(frame, hdr.with_(csum_offset=len(frame)))
    assert (err.value.rule, err.value.stage) == ("csum-outside-frame", "reject")
    with pytest.raises(ValueError):
        complete_checksum("frame", hdr)  # type: ignore[arg-type]


def test_zero_result_is_stored_as_ffff() -> None:
    # Choose the last payload word so that everything sums to 0xFFFF: the checksum is 0,
    # which RFC 768 (and Linux's CSUM_MANGLED_0) sends as 0xFFFF.
    frame, hdr = packet(17, b"\0\0\0\0")
    partial = rfc1071_sum(pseudo(SRC4, DST4, 17, 12) + frame[34:40] + b"\0\0" + frame[42:])
    word = 0xFFFF - partial
    frame = frame[:-2] + struct.pack("!H", word)
    frame = frame[:40] + struct.pack("!H", rfc1071_sum(pseudo(SRC4, DST4, 17, 12))) + frame[42:]
    done = complete_checksum(frame, hdr)
    assert done[40:42] == b"\xff\xff"
    assert verifies(done, hdr, 17)


def test_checksum_anywhere_for_other_protocols() -> None:
    # The spec's checksum offload is generic: an ICMP-like body checksummed from offset 34.
    frame = MAC + b"\x08\x00" + ip_header(False, 1, 12) + b"\x08\x00\x00\x00" + bytes(8)
    hdr = NetHdr(flags=NEEDS, csum_start=34, csum_offset=2)
    done = complete_checksum(frame, hdr)
    assert rfc1071_sum(done[34:]) == 0xFFFF
    assert classify_seed(frame, hdr) is None


def test_seed_conventions() -> None:
    for seed, expected in (("full", FULL_LENGTH), ("zero", ZERO_LENGTH), (0x4242, OTHER)):
        frame, hdr = packet(6, bytes(100), seed=seed)
        assert classify_seed(frame, hdr) == expected
        frame, hdr = packet(17, bytes(100), v6=True, seed=seed)
        assert classify_seed(frame, hdr) == expected
    frame, hdr = packet(6, bytes(100))
    assert classify_seed(frame, hdr.with_(flags=0)) is None
    assert classify_seed(frame, hdr.with_(csum_offset=6)) is None
    assert classify_seed(frame, hdr.with_(csum_start=14)) is None


def routing_header(next_header: int = 6) -> bytes:
    return bytes([next_header, 2, 0, 1, 0, 0, 0, 0]) + FINAL6  # type 0, one segment left


def test_ipv6_routing_header_seed_uses_the_final_destination() -> None:
    # RFC 8200 §8.1: with a Routing header the pseudo header carries the final destination.
    exts = routing_header()
    frame, hdr = packet(6, bytes(64), v6=True, dst=FINAL6, exts=exts, first=43)
    assert classify_seed(frame, hdr) == FULL_LENGTH
    done = complete_checksum(frame, hdr)
    assert verifies(done, hdr, 6, v6=True, dst=FINAL6)
    # Linux and QEMU seed with the header's destination: also recognised as full-length.
    frame, hdr = packet(6, bytes(64), v6=True, dst=DST6, exts=exts, first=43)
    assert classify_seed(frame, hdr) == FULL_LENGTH


def test_no_gso_path_per_profile_with_a_zero_length_seed() -> None:
    frame, hdr = packet(6, bytes(range(100)), seed="zero")
    strict = segment_packet(frame, hdr, STRICT)
    assert strict.seed == ZERO_LENGTH and strict.path == "checksummed"
    assert [(n.rule, n.action) for n in strict.notes] == [("csum-seed-zero-length", Action.FIX)]
    assert verifies(strict.frames[0], hdr, 6)
    linux = segment_packet(frame, hdr, LINUX)
    # skb_checksum_help sums the seed as it is: the checksum misses the length.
    assert linux.frames[0] == complete_checksum(frame, hdr)
    assert not verifies(linux.frames[0], hdr, 6)
    assert [(n.rule, n.action) for n in linux.notes] == [("csum-seed-zero-length", Action.ALLOW)]
    qemu = segment_packet(frame, hdr, QEMU)
    assert verifies(qemu.frames[0], hdr, 6)


def test_other_seed_without_gso() -> None:
    frame, hdr = packet(17, bytes(50), seed=0x0BAD)
    with pytest.raises(OffloadError) as err:
        segment_packet(frame, hdr, STRICT)
    assert (err.value.rule, err.value.stage) == ("csum-seed-other", "reject")
    assert not verifies(segment_packet(frame, hdr, LINUX).frames[0], hdr, 17)
    assert verifies(segment_packet(frame, hdr, QEMU).frames[0], hdr, 17)


def test_qemu_sets_a_zero_ipv6_payload_length() -> None:
    frame, hdr = packet(17, bytes(20), v6=True, plen=0)
    result = segment_packet(frame, hdr, QEMU)
    out = result.frames[0]
    assert struct.unpack_from("!H", out, 18)[0] == 28
    assert [n.rule for n in result.notes] == ["ip-length-mismatch"]
    assert segment_packet(frame, hdr, LINUX).frames[0][18:20] == b"\0\0"


def test_qemu_tcp_zero_checksum_is_ffff() -> None:
    # net_checksum_finish_nozero: QEMU never stores 0, TCP included.
    frame, hdr = packet(6, b"\0\0")
    partial = rfc1071_sum(pseudo(SRC4, DST4, 6, 22) + frame[34:50] + b"\0\0" + frame[52:54])
    frame = frame[:54] + struct.pack("!H", 0xFFFF - partial)
    out = segment_packet(frame, hdr, QEMU).frames[0]
    assert out[50:52] == b"\xff\xff"


payloads = st.binary(max_size=3000)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([6, 17]), st.booleans(), payloads)
def test_complete_checksum_result_verifies(proto: int, v6: bool, payload: bytes) -> None:
    frame, hdr = packet(proto, payload, v6=v6)
    done = complete_checksum(frame, hdr)
    assert verifies(done, hdr, proto, v6=v6)
    assert classify_seed(frame, hdr) == FULL_LENGTH
    for profile in (STRICT, LINUX, QEMU):
        assert verifies(segment_packet(frame, hdr, profile).frames[0], hdr, proto, v6=v6)
