"""TCP headers and options (RFC 9293, RFC 7323, RFC 2018)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.wire import tcp
from stack.wire.tcp import (
    MssOption,
    NopOption,
    SackOption,
    SackPermittedOption,
    TcpFlags,
    TcpHeader,
    TcpOption,
    TimestampsOption,
    UnknownOption,
    WindowScaleOption,
    emit_options,
    parse_options,
)
from virtio.errors import WireError

# Hand-built SYN: 40000 -> 80, seq 0x01020304, ack 0, data offset 10 (40 bytes), SYN|CWR|ECE,
# window 64240, checksum 0xabcd, urgent 0; options MSS 1460, SACK-permitted, timestamps
# (1, 0), NOP, window scale 7 (the Linux SYN layout).
GOLDEN = bytes.fromhex(
    "9c400050" "01020304" "00000000" "a0c2" "faf0" "abcd" "0000"
    "020405b4" "0402" "080a0000000100000000" "01" "030307"
)


def test_parse_golden() -> None:
    h = TcpHeader.parse(GOLDEN + b"payload")
    assert h.src_port == 40000 and h.dst_port == 80 and h.seq == 0x01020304
    assert h.flags == TcpFlags.SYN | TcpFlags.ECE | TcpFlags.CWR
    assert h.window == 64240 and h.checksum == 0xABCD and h.header_len == 40
    assert h.options == (MssOption(1460), SackPermittedOption(), TimestampsOption(1, 0),
                         NopOption(), WindowScaleOption(7))
    assert h.emit() == GOLDEN


def test_offsets() -> None:
    assert GOLDEN[tcp.OFF_SEQ:tcp.OFF_SEQ + 4] == b"\x01\x02\x03\x04"
    assert GOLDEN[tcp.OFF_DATA_OFFSET] >> 4 == 10
    assert GOLDEN[tcp.OFF_FLAGS] == 0xC2
    assert GOLDEN[tcp.OFF_CHECKSUM:tcp.OFF_CHECKSUM + 2] == b"\xab\xcd"
    assert tcp.OFF_CHECKSUM == 16


def test_flags_include_ecn_bits() -> None:
    assert TcpFlags.CWR == 0x80 and TcpFlags.ECE == 0x40
    h = TcpHeader(1, 2, 3, 4, TcpFlags.ACK | TcpFlags.CWR, 100)
    assert TcpHeader.parse(h.emit()).flags & TcpFlags.CWR


def test_unknown_option_kept_raw_and_eol_ends_the_list() -> None:
    opts = parse_options(b"\x1e\x04\xaa\xbb\x01\x00\x05\x05")
    assert opts == (UnknownOption(30, b"\xaa\xbb"), NopOption())
    assert emit_options((UnknownOption(30, b"\xaa\xbb"),)) == b"\x1e\x04\xaa\xbb"


def test_sack_blocks() -> None:
    opt = SackOption(((1, 2), (3, 4)))
    raw = emit_options((NopOption(), NopOption(), opt))
    assert parse_options(raw) == (NopOption(), NopOption(), opt)


@pytest.mark.parametrize("raw", [
    b"\x02", b"\x02\x05\x00\x00\x00", b"\x02\x03\x00", b"\x05\x02", b"\x05\x05\0\0\0",
    b"\x08\x0a\0\0\0\0", b"\x1e\x01",
])
def test_malformed_options(raw: bytes) -> None:
    with pytest.raises(WireError):
        parse_options(raw)


@pytest.mark.parametrize("raw", [
    GOLDEN[:19],
    GOLDEN[:12] + b"\x40" + GOLDEN[13:],  # data offset 4
    GOLDEN[:12] + b"\xf0" + GOLDEN[13:],  # 60 bytes claimed, 40 present
])
def test_malformed_headers(raw: bytes) -> None:
    with pytest.raises(WireError):
        TcpHeader.parse(raw)


def test_emit_limits() -> None:
    with pytest.raises(ValueError):
        emit_options((TimestampsOption(1, 2),) * 5)
    with pytest.raises(ValueError):
        TcpHeader(1 << 16, 0, 0, 0, TcpFlags(0), 0).emit()


options = st.one_of(
    st.just(NopOption()),
    st.integers(0, 0xFFFF).map(MssOption),
    st.integers(0, 14).map(WindowScaleOption),
    st.just(SackPermittedOption()),
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)), min_size=1,
             max_size=3).map(lambda b: SackOption(tuple(b))),
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)).map(
        lambda t: TimestampsOption(*t)),
    st.tuples(st.integers(9, 255).filter(lambda k: k not in (0, 1)),
              st.binary(max_size=6)).map(lambda t: UnknownOption(*t)),
)


@given(st.lists(options, max_size=5).filter(lambda o: len(emit_options_safe(o)) <= 40),
       st.integers(0, 0xFF), st.integers(0, 2**32 - 1), st.integers(0, 0xF))
def test_round_trip(opts: list[TcpOption], flags: int, seq: int, reserved: int) -> None:
    h = TcpHeader(1234, 80, seq, 99, TcpFlags(flags), 512, 0x1111, 7, tuple(opts), reserved)
    raw = h.emit()
    assert len(raw) % 4 == 0
    assert TcpHeader.parse(raw) == h


def emit_options_safe(opts: list[TcpOption]) -> bytes:
    raw = b"".join(o.emit() for o in opts)
    return raw + b"\0" * (-len(raw) % 4)
