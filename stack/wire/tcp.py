"""TCP headers (RFC 9293) with their options: checked parsing and emitting.

Options are typed values: MSS (RFC 9293 §3.2), window scale (RFC 7323 §2), SACK-permitted
and SACK (RFC 2018), timestamps (RFC 7323 §3), NOP; End of Option List ends the list
(``emit`` pads with it). Anything else is kept raw as :class:`UnknownOption`. The field
offsets are module constants used by the device's segmentation engine.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from virtio.errors import WireError

HEADER_LEN = 20
MAX_HEADER_LEN = 60
MAX_OPTIONS_LEN = MAX_HEADER_LEN - HEADER_LEN

# Field offsets from the start of the header
OFF_SRC_PORT = 0
OFF_DST_PORT = 2
OFF_SEQ = 4
OFF_ACK = 8
OFF_DATA_OFFSET = 12
"""High nibble: header length in 32-bit words; low nibble: reserved bits (and AE)."""
OFF_FLAGS = 13
OFF_WINDOW = 14
OFF_CHECKSUM = 16
"""What ``csum_offset`` holds for TCP in a virtio_net_hdr (§5.1.6.2)."""
OFF_URGENT = 18

_FIXED = struct.Struct("!HHIIBBHHH")


class TcpFlags(IntFlag):
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


class OptionKind(IntEnum):
    EOL = 0
    NOP = 1
    MSS = 2
    WINDOW_SCALE = 3
    SACK_PERMITTED = 4
    SACK = 5
    TIMESTAMPS = 8


@dataclass(frozen=True, slots=True)
class NopOption:
    def emit(self) -> bytes:
        return b"\x01"


@dataclass(frozen=True, slots=True)
class MssOption:
    mss: int

    def emit(self) -> bytes:
        return struct.pack("!BBH", OptionKind.MSS, 4, self.mss)


@dataclass(frozen=True, slots=True)
class WindowScaleOption:
    shift: int

    def emit(self) -> bytes:
        return struct.pack("!BBB", OptionKind.WINDOW_SCALE, 3, self.shift)


@dataclass(frozen=True, slots=True)
class SackPermittedOption:
    def emit(self) -> bytes:
        return bytes((OptionKind.SACK_PERMITTED, 2))


@dataclass(frozen=True, slots=True)
class SackOption:
    blocks: tuple[tuple[int, int], ...]
    """(left edge, right edge) pairs, 1 to 4 of them."""

    def emit(self) -> bytes:
        out = bytes((OptionKind.SACK, 2 + 8 * len(self.blocks)))
        return out + b"".join(struct.pack("!II", a, b) for a, b in self.blocks)


@dataclass(frozen=True, slots=True)
class TimestampsOption:
    tsval: int
    tsecr: int

    def emit(self) -> bytes:
        return struct.pack("!BBII", OptionKind.TIMESTAMPS, 10, self.tsval, self.tsecr)


@dataclass(frozen=True, slots=True)
class UnknownOption:
    kind: int
    data: bytes

    def emit(self) -> bytes:
        return bytes((self.kind, 2 + len(self.data))) + self.data


TcpOption = (
    NopOption | MssOption | WindowScaleOption | SackPermittedOption | SackOption
    | TimestampsOption | UnknownOption
)

_FIXED_LENGTHS: dict[int, int] = {
    OptionKind.MSS: 4,
    OptionKind.WINDOW_SCALE: 3,
    OptionKind.SACK_PERMITTED: 2,
    OptionKind.TIMESTAMPS: 10,
}


def parse_options(data: bytes | bytearray | memoryview) -> tuple[TcpOption, ...]:
    """Parse the option bytes of a header. Stops at End of Option List (the rest is
    padding). :class:`WireError` on an option that runs past the end or has a length
    its kind does not allow."""
    out: list[TcpOption] = []
    pos = 0
    n = len(data)
    while pos < n:
        kind = data[pos]
        if kind == OptionKind.EOL:
            break
        if kind == OptionKind.NOP:
            out.append(NopOption())
            pos += 1
            continue
        if pos + 2 > n:
            raise WireError(f"TCP option {kind} truncated")
        olen = data[pos + 1]
        if olen < 2 or pos + olen > n:
            raise WireError(f"TCP option {kind} has a bad length {olen}")
        body = bytes(data[pos + 2 : pos + olen])
        expected = _FIXED_LENGTHS.get(kind)
        if expected is not None and olen != expected:
            raise WireError(f"TCP option {kind} of length {olen}, expected {expected}")
        if kind == OptionKind.MSS:
            out.append(MssOption(int.from_bytes(body, "big")))
        elif kind == OptionKind.WINDOW_SCALE:
            out.append(WindowScaleOption(body[0]))
        elif kind == OptionKind.SACK_PERMITTED:
            out.append(SackPermittedOption())
        elif kind == OptionKind.TIMESTAMPS:
            out.append(TimestampsOption(*struct.unpack("!II", body)))
        elif kind == OptionKind.SACK:
            if (olen - 2) % 8 or olen == 2:
                raise WireError(f"SACK option of length {olen}")
            blocks = tuple(struct.unpack_from("!II", body, i) for i in range(0, len(body), 8))
            out.append(SackOption(blocks))
        else:
            out.append(UnknownOption(kind, body))
        pos += olen
    return tuple(out)


def emit_options(options: tuple[TcpOption, ...]) -> bytes:
    """The option bytes, padded with End of Option List (zero) bytes to 32 bits."""
    raw = b"".join(o.emit() for o in options)
    raw += b"\x00" * (-len(raw) % 4)
    if len(raw) > MAX_OPTIONS_LEN:
        raise ValueError(f"TCP options of {len(raw)} bytes exceed {MAX_OPTIONS_LEN}")
    return raw


@dataclass(frozen=True, slots=True)
class TcpHeader:
    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: TcpFlags
    window: int
    checksum: int = 0
    urgent: int = 0
    options: tuple[TcpOption, ...] = ()
    reserved: int = 0
    """The low nibble of the data-offset byte (reserved bits and AccECN's AE)."""

    @property
    def header_len(self) -> int:
        return HEADER_LEN + len(emit_options(self.options))

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> TcpHeader:
        """Parse the header at the start of ``data`` (:class:`WireError` when truncated,
        with a data offset below 5 or beyond ``data``, or with malformed options)."""
        if len(data) < HEADER_LEN:
            raise WireError(f"TCP header truncated: {len(data)} bytes")
        sport, dport, seq, ack, doff, flags, window, csum, urg = _FIXED.unpack_from(data, 0)
        hlen = (doff >> 4) * 4
        if hlen < HEADER_LEN:
            raise WireError(f"TCP data offset {doff >> 4} is below 5")
        if hlen > len(data):
            raise WireError(f"TCP header of {hlen} bytes truncated to {len(data)}")
        return cls(
            src_port=sport,
            dst_port=dport,
            seq=seq,
            ack=ack,
            flags=TcpFlags(flags),
            window=window,
            checksum=csum,
            urgent=urg,
            options=parse_options(data[HEADER_LEN:hlen]),
            reserved=doff & 0xF,
        )

    def emit(self) -> bytes:
        opts = emit_options(self.options)
        doff = ((HEADER_LEN + len(opts)) // 4) << 4 | (self.reserved & 0xF)
        try:
            fixed = _FIXED.pack(self.src_port, self.dst_port, self.seq, self.ack, doff,
                                int(self.flags), self.window, self.checksum, self.urgent)
        except struct.error as exc:
            raise ValueError(f"TCP field out of range: {exc}") from exc
        return fixed + opts
