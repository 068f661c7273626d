"""Which options go into which segment, and what a SYN's options negotiate.

- SYN / SYN-ACK (Linux's layout, 20 bytes with everything on): MSS (RFC 9293 §3.7.1),
  SACK-permitted (RFC 2018 §2), timestamps (RFC 7323 §3.2), NOP, window scale
  (RFC 7323 §2.2). A SYN-ACK carries an option only when the SYN offered it.
- Other segments: NOP, NOP, timestamps (12 bytes) when negotiated, then NOP, NOP, SACK
  with up to 4 blocks (3 alongside timestamps; RFC 2018 §3).
"""

from __future__ import annotations

from dataclasses import dataclass

from stack.wire.tcp import (
    MssOption,
    NopOption,
    SackOption,
    SackPermittedOption,
    TcpOption,
    TimestampsOption,
    WindowScaleOption,
)

MAX_WINDOW_SHIFT = 14
"""RFC 7323 §2.3."""
TIMESTAMPS_OVERHEAD = 12
"""NOP, NOP, timestamps: what each non-SYN segment spends on RFC 7323 timestamps."""
MIN_PEER_MSS = 64
"""Smallest send MSS we accept from a peer (Linux uses 48); a smaller MSS option is
raised to this, so the payload per segment stays positive with options on."""


@dataclass(frozen=True, slots=True)
class SynOptions:
    """The options of a received SYN or SYN-ACK."""

    mss: int | None = None
    window_shift: int | None = None
    sack_permitted: bool = False
    timestamps: TimestampsOption | None = None

    @classmethod
    def parse(cls, options: tuple[TcpOption, ...]) -> SynOptions:
        mss: int | None = None
        shift: int | None = None
        sack = False
        ts: TimestampsOption | None = None
        for opt in options:
            if isinstance(opt, MssOption) and mss is None:
                mss = opt.mss
            elif isinstance(opt, WindowScaleOption) and shift is None:
                shift = min(opt.shift, MAX_WINDOW_SHIFT)
            elif isinstance(opt, SackPermittedOption):
                sack = True
            elif isinstance(opt, TimestampsOption) and ts is None:
                ts = opt
        return cls(mss, shift, sack, ts)


def find_timestamps(options: tuple[TcpOption, ...]) -> TimestampsOption | None:
    for opt in options:
        if isinstance(opt, TimestampsOption):
            return opt
    return None


def sack_blocks(options: tuple[TcpOption, ...]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for opt in options:
        if isinstance(opt, SackOption):
            out.extend(opt.blocks)
    return out


def window_shift_for(buffer: int) -> int:
    """The smallest shift that lets the 16-bit window field describe ``buffer``."""
    shift = 0
    while (buffer >> shift) > 0xFFFF and shift < MAX_WINDOW_SHIFT:
        shift += 1
    return shift


def syn_options(*, mss: int, sack: bool, timestamps: TimestampsOption | None,
                window_shift: int | None) -> tuple[TcpOption, ...]:
    opts: list[TcpOption] = [MssOption(mss)]
    if sack and timestamps is not None:
        opts += [SackPermittedOption(), timestamps]
    elif timestamps is not None:
        opts += [NopOption(), NopOption(), timestamps]
    elif sack:
        opts += [NopOption(), NopOption(), SackPermittedOption()]
    if window_shift is not None:
        opts += [NopOption(), WindowScaleOption(window_shift)]
    return tuple(opts)


def segment_options(timestamps: TimestampsOption | None,
                    blocks: list[tuple[int, int]]) -> tuple[TcpOption, ...]:
    opts: list[TcpOption] = []
    if timestamps is not None:
        opts += [NopOption(), NopOption(), timestamps]
    if blocks:
        opts += [NopOption(), NopOption(), SackOption(tuple(blocks))]
    return tuple(opts)


def options_length(options: tuple[TcpOption, ...]) -> int:
    """Bytes the options take on the wire, padded to 32 bits."""
    n = sum(len(o.emit()) for o in options)
    return n + (-n % 4)
