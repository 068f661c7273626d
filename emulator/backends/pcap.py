"""Capture files: classic libpcap and pcapng writers, a capturing ``Backend`` wrapper,
and :class:`Capture`, one pcapng file for a whole device.

Formats (all little-endian, as written by this host-independent writer):

- libpcap (https://www.tcpdump.org/manpages/pcap-savefile.5.html,
  draft-ietf-opsawg-pcap): a 24-byte global header (magic 0xa1b2c3d4 for microsecond,
  0xa1b23c4d for nanosecond timestamps, version 2.4, snaplen, LINKTYPE_ETHERNET = 1),
  then per packet a 16-byte record header (seconds, µs or ns, captured length, original
  length) and the captured bytes.
- pcapng (draft-ietf-opsawg-pcapng): a Section Header Block, one Interface Description
  Block per interface (if_name, if_tsresol = 9: nanoseconds, snaplen), then Enhanced
  Packet Blocks (interface id, 64-bit timestamp, lengths, data padded to 32 bits,
  options: opt_comment, epb_flags for the direction). Every block is framed by its type
  and total length, repeated at its end; every option is code, length, value padded to
  32 bits, and a list of options ends with opt_endofopt.

Frames longer than the snaplen (262144) are cut to it; the original length is kept.

Each record and block is defined twice, as elsewhere in vnetbench (DESIGN.md,
"construct, struct, numpy"): a construct schema (``*_SCHEMA``) to decode and check files
in tests and tools, and precompiled ``struct.Struct`` packing for the writers.
``tests/emulator/test_pcap.py`` proves the two agree.

Timestamps are nanoseconds (the testbench's virtual clock, or wall-clock ns for real
peers) and are written as such; a virtual clock starting at 0 shows as 1970-01-01.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from enum import IntEnum
from typing import BinaryIO, Protocol

import construct as cs

from emulator.backends.base import Backend, FlowControl, Receiver
from virtio.constants import GSO_ECN, GsoType, NetHdrFlag
from virtio.net_hdr import NetHdr

__all__ = [
    "EPB_SCHEMA",
    "IDB_SCHEMA",
    "LINKTYPE_ETHERNET",
    "PCAPNG_SCHEMA",
    "PCAP_GLOBAL_HEADER_SCHEMA",
    "PCAP_RECORD_HEADER_SCHEMA",
    "SHB_SCHEMA",
    "SNAPLEN",
    "Capture",
    "CaptureBackend",
    "Direction",
    "FrameSink",
    "PcapWriter",
    "PcapngWriter",
    "describe_net_hdr",
]

LINKTYPE_ETHERNET = 1
SNAPLEN = 262144
"""libpcap's MAXIMUM_SNAPLEN: the largest snaplen readers accept without complaint."""

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D

BLOCK_SHB = 0x0A0D0D0A
BLOCK_IDB = 0x00000001
BLOCK_EPB = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D

OPT_ENDOFOPT = 0
OPT_COMMENT = 1
SHB_USERAPPL = 4
IF_NAME = 2
IF_TSRESOL = 9
EPB_FLAGS = 2


class Direction(IntEnum):
    """epb_flags bits 0-1: the packet's direction as seen by the capturing interface."""

    UNKNOWN = 0
    INBOUND = 1
    OUTBOUND = 2


# -- construct schemas (the declarative definitions) ------------------------------------

PCAP_GLOBAL_HEADER_SCHEMA = cs.Struct(
    "magic" / cs.Int32ul,
    "version_major" / cs.Int16ul,
    "version_minor" / cs.Int16ul,
    "thiszone" / cs.Int32sl,
    "sigfigs" / cs.Int32ul,
    "snaplen" / cs.Int32ul,
    "network" / cs.Int32ul,
)
PCAP_RECORD_HEADER_SCHEMA = cs.Struct(
    "ts_sec" / cs.Int32ul,
    "ts_frac" / cs.Int32ul,
    "incl_len" / cs.Int32ul,
    "orig_len" / cs.Int32ul,
)
PCAP_RECORD_SCHEMA = cs.Struct(
    "header" / PCAP_RECORD_HEADER_SCHEMA,
    "data" / cs.Bytes(cs.this.header.incl_len),
)
PCAP_FILE_SCHEMA = cs.Struct(
    "header" / PCAP_GLOBAL_HEADER_SCHEMA,
    "records" / cs.GreedyRange(PCAP_RECORD_SCHEMA),
)

OPTION_SCHEMA = cs.Struct(
    "code" / cs.Int16ul,
    "length" / cs.Int16ul,
    "value" / cs.Bytes(cs.this.length),
    cs.Padding(lambda ctx: -ctx.length % 4),
)
"""One pcapng option; a list of them ends with code 0 (opt_endofopt), length 0."""


def _options(fixed: int | Callable[[cs.Container], int]) -> cs.Construct:
    """The options of a block: whatever lies between its ``fixed`` bytes (counted from
    the block start, trailer excluded) and the trailing block_total_length."""
    def size(ctx: cs.Container) -> int:
        used = fixed(ctx) if callable(fixed) else fixed
        return int(ctx.block_total_length) - used - 4
    return cs.FixedSized(size, cs.GreedyRange(OPTION_SCHEMA))


SHB_SCHEMA = cs.Struct(
    "block_type" / cs.Const(BLOCK_SHB, cs.Int32ul),
    "block_total_length" / cs.Int32ul,
    "byte_order_magic" / cs.Const(BYTE_ORDER_MAGIC, cs.Int32ul),
    "major_version" / cs.Int16ul,
    "minor_version" / cs.Int16ul,
    "section_length" / cs.Int64sl,
    "options" / _options(24),
    "block_total_length_trailer" / cs.Int32ul,
)
IDB_SCHEMA = cs.Struct(
    "block_type" / cs.Const(BLOCK_IDB, cs.Int32ul),
    "block_total_length" / cs.Int32ul,
    "linktype" / cs.Int16ul,
    "reserved" / cs.Int16ul,
    "snaplen" / cs.Int32ul,
    "options" / _options(16),
    "block_total_length_trailer" / cs.Int32ul,
)
EPB_SCHEMA = cs.Struct(
    "block_type" / cs.Const(BLOCK_EPB, cs.Int32ul),
    "block_total_length" / cs.Int32ul,
    "interface_id" / cs.Int32ul,
    "timestamp_high" / cs.Int32ul,
    "timestamp_low" / cs.Int32ul,
    "captured_length" / cs.Int32ul,
    "original_length" / cs.Int32ul,
    "packet_data" / cs.Bytes(cs.this.captured_length),
    cs.Padding(lambda ctx: -ctx.captured_length % 4),
    "options" / _options(lambda ctx: 28 + ctx.captured_length + (-ctx.captured_length % 4)),
    "block_total_length_trailer" / cs.Int32ul,
)
PCAPNG_SCHEMA = cs.Struct(
    "section_header" / SHB_SCHEMA,
    "blocks" / cs.GreedyRange(cs.Select(IDB_SCHEMA, EPB_SCHEMA)),
)
"""A one-section pcapng file made of the three block types these writers produce."""


# -- struct twins (the hot path) -------------------------------------------------------

PCAP_GLOBAL_HEADER = struct.Struct("<IHHiIII")
PCAP_RECORD_HEADER = struct.Struct("<IIII")
BLOCK_HEADER = struct.Struct("<II")
SHB_BODY = struct.Struct("<IHHq")
"""The SHB after its block header: byte-order magic, version, section length."""
IDB_BODY = struct.Struct("<HHI")
"""The IDB after its block header: linktype, reserved, snaplen."""
EPB_FIXED = struct.Struct("<IIIIIII")
OPTION_HEADER = struct.Struct("<HH")
BLOCK_TRAILER = struct.Struct("<I")
_END_OF_OPTIONS = OPTION_HEADER.pack(OPT_ENDOFOPT, 0)
_PAD = b"\0\0\0"


def pack_option(code: int, value: bytes) -> bytes:
    """One option: code, length, value, zero padding to a multiple of 4."""
    if len(value) > 0xFFFF:
        raise ValueError(f"pcapng option value of {len(value)} bytes exceeds 65535")
    return OPTION_HEADER.pack(code, len(value)) + value + _PAD[: -len(value) % 4]


def pack_options(options: list[tuple[int, bytes]]) -> bytes:
    """A list of options closed by opt_endofopt; nothing at all when the list is empty."""
    if not options:
        return b""
    return b"".join(pack_option(code, value) for code, value in options) + _END_OF_OPTIONS


# -- writers ---------------------------------------------------------------------------

Target = str | os.PathLike[str] | BinaryIO


class FrameSink(Protocol):
    """What :class:`CaptureBackend` writes to: both writers implement it."""

    def record(
        self,
        frame: bytes,
        time_ns: int,
        *,
        interface: str = "wire",
        comment: str | None = None,
        direction: Direction = Direction.UNKNOWN,
    ) -> None: ...


class _FileOwner:
    """Opens a path (and closes it) or borrows a binary file (flushed, never closed)."""

    def __init__(self, target: Target) -> None:
        if isinstance(target, (str, os.PathLike)):
            self._file: BinaryIO = open(target, "wb")  # noqa: SIM115 - closed in close()
            self._owned = True
        else:
            self._file = target
            self._owned = False
        self.closed = False
        self.packets = 0

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._owned:
            self._file.close()
        else:
            self._file.flush()

    def flush(self) -> None:
        self._file.flush()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("capture file is closed")


def _check_time(time_ns: int) -> None:
    if time_ns < 0:
        raise ValueError(f"time_ns must be >= 0, got {time_ns}")


class PcapWriter(_FileOwner):
    """Classic libpcap file, LINKTYPE_ETHERNET. ``nanosecond`` selects the 0xa1b23c4d
    magic (timestamps in ns) instead of the classic µs one. Interfaces and comments have
    no place in this format; :meth:`record` ignores them."""

    def __init__(self, target: Target, *, snaplen: int = SNAPLEN, nanosecond: bool = False) -> None:
        if not 0 < snaplen <= 0xFFFFFFFF:
            raise ValueError(f"snaplen must be in (0, 2**32), got {snaplen}")
        super().__init__(target)
        self.snaplen = snaplen
        self.nanosecond = nanosecond
        self._per_second = 1_000_000_000 if nanosecond else 1_000_000
        self._divisor = 1 if nanosecond else 1000
        magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
        self._file.write(PCAP_GLOBAL_HEADER.pack(magic, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET))

    def write(self, frame: bytes | bytearray | memoryview, time_ns: int) -> None:
        self._check_open()
        _check_time(time_ns)
        seconds, frac = divmod(time_ns // self._divisor, self._per_second)
        incl = min(len(frame), self.snaplen)
        self._file.write(PCAP_RECORD_HEADER.pack(seconds & 0xFFFFFFFF, frac, incl, len(frame)))
        self._file.write(frame[:incl] if incl < len(frame) else frame)
        self.packets += 1

    def record(
        self,
        frame: bytes,
        time_ns: int,
        *,
        interface: str = "wire",
        comment: str | None = None,
        direction: Direction = Direction.UNKNOWN,
    ) -> None:
        self.write(frame, time_ns)

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PcapngWriter(_FileOwner):
    """pcapng file: one section, interfaces added by name, nanosecond timestamps.

    Interfaces are declared with :meth:`add_interface` (or on first use by
    :meth:`record`); each gets an Interface Description Block with if_name, if_tsresol
    9 and the snaplen, and the next interface id (0, 1, ...).
    """

    def __init__(
        self, target: Target, *, snaplen: int = SNAPLEN, application: str | None = "vnetbench"
    ) -> None:
        if not 0 < snaplen <= 0xFFFFFFFF:
            raise ValueError(f"snaplen must be in (0, 2**32), got {snaplen}")
        super().__init__(target)
        self.snaplen = snaplen
        self.interfaces: dict[str, int] = {}
        options = [(SHB_USERAPPL, application.encode())] if application else []
        self._write_block(BLOCK_SHB, SHB_BODY.pack(BYTE_ORDER_MAGIC, 1, 0, -1) + pack_options(options))

    def _write_block(self, block_type: int, body: bytes) -> None:
        """Block header (type, total length), body (a multiple of 4 bytes), trailer."""
        total = BLOCK_HEADER.size + len(body) + BLOCK_TRAILER.size
        self._file.write(BLOCK_HEADER.pack(block_type, total) + body + BLOCK_TRAILER.pack(total))

    def add_interface(self, name: str, *, linktype: int = LINKTYPE_ETHERNET) -> int:
        """Declare an interface; returns its id. A name already declared returns its id."""
        self._check_open()
        if name in self.interfaces:
            return self.interfaces[name]
        options = [(IF_NAME, name.encode()), (IF_TSRESOL, bytes([9]))]
        self._write_block(BLOCK_IDB, IDB_BODY.pack(linktype, 0, self.snaplen) + pack_options(options))
        self.interfaces[name] = len(self.interfaces)
        return self.interfaces[name]

    def write(
        self,
        interface_id: int,
        frame: bytes | bytearray | memoryview,
        time_ns: int,
        *,
        comment: str | None = None,
        direction: Direction = Direction.UNKNOWN,
    ) -> None:
        """One Enhanced Packet Block (frame cut at the snaplen, original length kept)."""
        self._check_open()
        _check_time(time_ns)
        if not 0 <= interface_id < len(self.interfaces):
            raise ValueError(f"interface id {interface_id} was not declared")
        incl = min(len(frame), self.snaplen)
        options: list[tuple[int, bytes]] = []
        if comment is not None:
            options.append((OPT_COMMENT, comment.encode()))
        if direction != Direction.UNKNOWN:
            options.append((EPB_FLAGS, struct.pack("<I", int(direction))))
        tail = _PAD[: -incl % 4] + pack_options(options)
        total = EPB_FIXED.size + incl + len(tail) + 4
        head = EPB_FIXED.pack(
            BLOCK_EPB, total, interface_id, (time_ns >> 32) & 0xFFFFFFFF, time_ns & 0xFFFFFFFF,
            incl, len(frame),
        )
        out = self._file
        out.write(head)
        out.write(frame[:incl] if incl < len(frame) else frame)
        out.write(tail + BLOCK_TRAILER.pack(total))
        self.packets += 1

    def record(
        self,
        frame: bytes,
        time_ns: int,
        *,
        interface: str = "wire",
        comment: str | None = None,
        direction: Direction = Direction.UNKNOWN,
    ) -> None:
        self.write(self.add_interface(interface), frame, time_ns, comment=comment, direction=direction)

    def __enter__(self) -> PcapngWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- describing a virtio_net_hdr -------------------------------------------------------

def _flag_names(flags: int) -> str:
    if flags == 0:
        return "0"
    names = [f.name for f in NetHdrFlag if f.name and flags & f]
    rest = flags & ~sum(int(f) for f in NetHdrFlag)
    if rest:
        names.append(f"{rest:#x}")
    return "|".join(names)


def _gso_name(gso_type: int) -> str:
    kind = gso_type & ~GSO_ECN
    try:
        name = GsoType(kind).name
    except ValueError:
        name = f"{kind:#x}"
    return f"{name}|ECN" if gso_type & GSO_ECN else name


def describe_net_hdr(hdr: NetHdr) -> str:
    """One line for a capture comment, e.g. ``virtio_net_hdr flags=NEEDS_CSUM
    gso_type=TCPV4 hdr_len=54 gso_size=1448 csum_start=34 csum_offset=16 num_buffers=0``
    (hash fields follow only when set)."""
    text = (
        f"virtio_net_hdr flags={_flag_names(hdr.flags)} gso_type={_gso_name(hdr.gso_type)} "
        f"hdr_len={hdr.hdr_len} gso_size={hdr.gso_size} csum_start={hdr.csum_start} "
        f"csum_offset={hdr.csum_offset} num_buffers={hdr.num_buffers}"
    )
    if hdr.hash_value or hdr.hash_report:
        text += f" hash_value={hdr.hash_value:#010x} hash_report={hdr.hash_report}"
    return text


# -- the capturing backend and the per-device capture ----------------------------------

class CaptureBackend:
    """A ``Backend`` that records every frame passing through ``inner``: frames sent
    (outbound) before they go to ``inner``, frames received (inbound) before the
    receiver sees them, so a reply sent from inside the receiver is recorded after the
    frame it answers. ``clock`` gives the timestamp in ns (default: wall clock; pass the
    event loop's ``clock`` for virtual time)."""

    def __init__(
        self,
        inner: Backend,
        writer: FrameSink,
        interface: str = "wire",
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.inner = inner
        self.writer = writer
        self.interface = interface
        self.clock = clock
        self._receiver: Receiver | None = None
        inner.set_receiver(self._on_receive)

    def send(self, frame: bytes) -> None:
        self.writer.record(frame, self.clock(), interface=self.interface, direction=Direction.OUTBOUND)
        self.inner.send(frame)

    def set_receiver(self, receiver: Receiver | None) -> None:
        self._receiver = receiver

    def tx_ready(self) -> bool:
        """The wrapped backend's transmit backpressure (always ready without one)."""
        return not isinstance(self.inner, FlowControl) or self.inner.tx_ready()

    def on_tx_ready(self, callback: Callable[[], None] | None) -> None:
        if isinstance(self.inner, FlowControl):
            self.inner.on_tx_ready(callback)

    def _on_receive(self, frame: bytes) -> bool:
        self.writer.record(frame, self.clock(), interface=self.interface, direction=Direction.INBOUND)
        receiver = self._receiver
        return receiver is not None and receiver(frame)

    def next_deadline(self) -> int | None:
        """The wrapped backend's, when it is a timed source (a tap, say); else None."""
        inner = getattr(self.inner, "next_deadline", None)
        return inner() if callable(inner) else None

    def poll(self, now: int) -> int:
        """Poll the wrapped backend when it is a timed source; received frames come back
        through :meth:`_on_receive` and are recorded there."""
        inner = getattr(self.inner, "poll", None)
        return int(inner(now)) if callable(inner) else 0


class Capture:
    """One pcapng file for a device: interface 0 ``"driver→device"`` holds each frame
    the driver handed the device with its virtio_net_hdr as the packet comment (large
    GSO frames included); interface 1 ``"wire"`` holds what went on and came off the
    wire, through :meth:`wire_backend`."""

    DRIVER_TO_DEVICE = "driver→device"
    WIRE = "wire"

    def __init__(self, target: Target, *, clock: Callable[[], int] = time.time_ns) -> None:
        self.writer = PcapngWriter(target)
        self.clock = clock
        self.writer.add_interface(self.DRIVER_TO_DEVICE)
        self.writer.add_interface(self.WIRE)

    def record_tx_chain(self, hdr: NetHdr, frame: bytes, time_ns: int) -> None:
        """Record a frame the driver handed the device (TX chain), header as comment."""
        self.writer.write(
            self.writer.interfaces[self.DRIVER_TO_DEVICE], frame, time_ns,
            comment=describe_net_hdr(hdr), direction=Direction.OUTBOUND,
        )

    def wire_backend(self, inner: Backend) -> CaptureBackend:
        """Wrap the device's backend so the wire traffic lands on interface ``"wire"``."""
        return CaptureBackend(inner, self.writer, self.WIRE, self.clock)

    @property
    def packets(self) -> int:
        return self.writer.packets

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
