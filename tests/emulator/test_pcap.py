"""Capture writers: exact bytes, truncation, construct vs struct, and real readers.

The golden bytes below were computed by hand from the format specifications, not taken
from a writer's output: libpcap's savefile format (pcap-savefile(5),
draft-ietf-opsawg-pcap §4 "File Header", §5 "Packet Record") and pcapng
(draft-ietf-opsawg-pcapng §3.1 general block structure, §3.5 options, §4.1 Section Header
Block, §4.2 Interface Description Block with if_name = 2 and if_tsresol = 9, §4.3
Enhanced Packet Block with opt_comment = 1 and epb_flags = 2). Every field is written
little-endian; the comments next to each chunk name the field.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.backends.pcap import (
    EPB_SCHEMA,
    IDB_SCHEMA,
    PCAP_FILE_SCHEMA,
    PCAP_GLOBAL_HEADER,
    PCAP_GLOBAL_HEADER_SCHEMA,
    PCAP_RECORD_HEADER,
    PCAP_RECORD_HEADER_SCHEMA,
    PCAPNG_SCHEMA,
    SHB_SCHEMA,
    SNAPLEN,
    Capture,
    CaptureBackend,
    Direction,
    PcapngWriter,
    PcapWriter,
    describe_net_hdr,
)
from emulator.backends.wire import Wire
from tests.conftest import skip_unless
from virtio.constants import GSO_ECN, GsoType, NetHdrFlag
from virtio.net_hdr import NetHdr

TSO_HDR = NetHdr(
    flags=NetHdrFlag.NEEDS_CSUM, gso_type=GsoType.TCPV4, hdr_len=54, gso_size=1448,
    csum_start=34, csum_offset=16,
)
TSO_COMMENT = (
    "virtio_net_hdr flags=NEEDS_CSUM gso_type=TCPV4 hdr_len=54 gso_size=1448 "
    "csum_start=34 csum_offset=16 num_buffers=0"
)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "").replace("|", ""))


# -- golden bytes ----------------------------------------------------------------------

PCAP_HEADER_US = h(
    "d4c3b2a1"  # magic 0xa1b2c3d4: microsecond timestamps
    "0200 0400"  # version 2.4
    "00000000"  # thiszone
    "00000000"  # sigfigs
    "00000400"  # snaplen 262144 = 0x00040000
    "01000000"  # LINKTYPE_ETHERNET
)


def test_pcap_global_header_golden() -> None:
    out = io.BytesIO()
    with PcapWriter(out):
        pass
    assert out.getvalue() == PCAP_HEADER_US


def test_pcap_nanosecond_magic_golden() -> None:
    out = io.BytesIO()
    PcapWriter(out, nanosecond=True).close()
    assert out.getvalue()[:4] == h("4d3cb2a1")  # 0xa1b23c4d
    assert out.getvalue()[4:] == PCAP_HEADER_US[4:]


def test_pcap_record_golden() -> None:
    # 1500.000123456 s: 1500 = 0x5dc seconds, 123 µs (the 456 ns are cut), 60 bytes.
    out = io.BytesIO()
    with PcapWriter(out) as w:
        w.write(bytes(range(60)), 1_500_000_123_456)
    assert out.getvalue()[24:40] == h("dc050000 7b000000 3c000000 3c000000")
    assert out.getvalue()[40:] == bytes(range(60))

    out = io.BytesIO()
    with PcapWriter(out, nanosecond=True) as w:
        w.write(bytes(60), 1_500_000_123_456)
    assert out.getvalue()[24:40] == h("dc050000 40e20100 3c000000 3c000000")  # 123456 ns


SHB_GOLDEN = h(
    "0a0d0d0a"  # block type: SHB
    "30000000"  # block total length 48
    "4d3c2b1a"  # byte-order magic 0x1a2b3c4d
    "0100 0000"  # version 1.0
    "ffffffffffffffff"  # section length -1: not given
    "0400 0900 766e657462656e6368 000000"  # shb_userappl (4), 9 bytes "vnetbench", pad 3
    "0000 0000"  # opt_endofopt
    "30000000"  # block total length again
)

IDB_WIRE_GOLDEN = h(
    "01000000"  # block type: IDB
    "28000000"  # block total length 40
    "0100 0000"  # LINKTYPE_ETHERNET, reserved
    "00000400"  # snaplen 262144
    "0200 0400 77697265"  # if_name (2), 4 bytes "wire", no padding
    "0900 0100 09 000000"  # if_tsresol (9), 1 byte: 9 = 10^-9 s, pad 3
    "0000 0000"  # opt_endofopt
    "28000000"
)

EPB_GOLDEN = h(
    "06000000"  # block type: EPB
    "3c000000"  # block total length 60
    "01000000"  # interface id 1
    "01000000"  # timestamp high: 5000000001 ns = 0x1_2a05f201
    "01f2052a"  # timestamp low
    "05000000"  # captured length 5
    "05000000"  # original length 5
    "68656c6c6f 000000"  # "hello", pad 3
    "0100 0200 6869 0000"  # opt_comment (1), 2 bytes "hi", pad 2
    "0200 0400 02000000"  # epb_flags (2), 4 bytes: direction outbound (2)
    "0000 0000"  # opt_endofopt
    "3c000000"
)


def test_pcapng_shb_idb_epb_golden() -> None:
    out = io.BytesIO()
    with PcapngWriter(out) as w:
        assert w.add_interface("driver") == 0
        assert w.add_interface("wire") == 1
        assert w.add_interface("wire") == 1  # declared once
        w.write(1, b"hello", 5_000_000_001, comment="hi", direction=Direction.OUTBOUND)
    data = out.getvalue()
    assert data[:48] == SHB_GOLDEN
    idb_driver_len = 8 + 8 + (4 + 8) + 8 + 4 + 4  # "driver" pads 6 -> 8
    assert data[48 + idb_driver_len : 48 + idb_driver_len + 40] == IDB_WIRE_GOLDEN
    assert data[48 + idb_driver_len + 40 :] == EPB_GOLDEN


def test_pcapng_epb_without_options_golden() -> None:
    out = io.BytesIO()
    with PcapngWriter(out, application=None) as w:
        w.add_interface("wire")
        w.write(0, b"\xab" * 4, 7)
    data = out.getvalue()
    assert data[:28] == h("0a0d0d0a 1c000000 4d3c2b1a 0100 0000 ffffffffffffffff 1c000000")
    assert data[28 + 40 :] == h(
        "06000000 24000000 00000000 00000000 07000000 04000000 04000000 abababab 24000000"
    )


def test_interface_name_is_utf8_and_padded() -> None:
    out = io.BytesIO()
    with PcapngWriter(out, application=None) as w:
        w.add_interface(Capture.DRIVER_TO_DEVICE)
    block = IDB_SCHEMA.parse(out.getvalue()[28:])
    name = block.options[0]
    assert (name.code, name.length) == (2, 15)  # "driver" 6 + "→" 3 (e2 86 92) + "device" 6
    assert name.value.decode() == "driver→device"
    assert block.block_total_length == 8 + 8 + (4 + 16) + 8 + 4 + 4


# -- truncation at the snaplen ---------------------------------------------------------

def test_pcap_truncates_at_snaplen_keeping_orig_len() -> None:
    frame = bytes(range(256)) * ((SNAPLEN + 1000) // 256)
    assert len(frame) > SNAPLEN
    out = io.BytesIO()
    with PcapWriter(out) as w:
        w.write(frame, 0)
        w.write(b"after", 1000)
    parsed = PCAP_FILE_SCHEMA.parse(out.getvalue())
    first, second = parsed.records
    assert (first.header.incl_len, first.header.orig_len) == (SNAPLEN, len(frame))
    assert first.data == frame[:SNAPLEN]
    assert second.data == b"after"  # the file stays in step after a cut record


def test_pcapng_truncates_at_snaplen_keeping_original_length() -> None:
    frame = b"\x5a" * (SNAPLEN + 3)
    out = io.BytesIO()
    with PcapngWriter(out) as w:
        w.add_interface("wire")
        w.write(0, frame, 1, comment="big")
        w.write(0, b"next", 2)
    parsed = PCAPNG_SCHEMA.parse(out.getvalue())
    big, nxt = parsed.blocks[1:]
    assert (big.captured_length, big.original_length) == (SNAPLEN, SNAPLEN + 3)
    assert big.packet_data == frame[:SNAPLEN]
    assert big.options[0].value == b"big"
    assert nxt.packet_data == b"next"


def test_exactly_snaplen_is_not_cut() -> None:
    out = io.BytesIO()
    with PcapWriter(out) as w:
        w.write(bytes(SNAPLEN), 0)
    rec = PCAP_FILE_SCHEMA.parse(out.getvalue()).records[0]
    assert rec.header.incl_len == rec.header.orig_len == SNAPLEN


# -- construct schemas and struct packing agree ----------------------------------------

def test_fixed_sizes_agree() -> None:
    assert PCAP_GLOBAL_HEADER_SCHEMA.sizeof() == PCAP_GLOBAL_HEADER.size == 24
    assert PCAP_RECORD_HEADER_SCHEMA.sizeof() == PCAP_RECORD_HEADER.size == 16


@given(st.binary(min_size=24, max_size=24))
def test_global_header_decodes_alike(raw: bytes) -> None:
    c = PCAP_GLOBAL_HEADER_SCHEMA.parse(raw)
    fields = ("magic", "version_major", "version_minor", "thiszone", "sigfigs", "snaplen", "network")
    assert tuple(c[f] for f in fields) == PCAP_GLOBAL_HEADER.unpack(raw)
    assert PCAP_GLOBAL_HEADER_SCHEMA.build(c) == raw


@given(st.binary(min_size=16, max_size=16))
def test_record_header_decodes_alike(raw: bytes) -> None:
    c = PCAP_RECORD_HEADER_SCHEMA.parse(raw)
    assert (c.ts_sec, c.ts_frac, c.incl_len, c.orig_len) == PCAP_RECORD_HEADER.unpack(raw)
    assert PCAP_RECORD_HEADER_SCHEMA.build(c) == raw


def _options(*pairs: tuple[int, bytes]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = [{"code": c, "length": len(v), "value": v} for c, v in pairs]
    return [*out, {"code": 0, "length": 0, "value": b""}] if out else out


@settings(max_examples=60, deadline=None)
@given(
    frame=st.binary(max_size=300),
    time_ns=st.integers(min_value=0, max_value=2**64 - 1),
    comment=st.none() | st.text(max_size=40),
    direction=st.sampled_from(list(Direction)),
    name=st.text(min_size=1, max_size=20),
    nanosecond=st.booleans(),
)
def test_writers_and_construct_agree(
    *, frame: bytes, time_ns: int, comment: str | None, direction: Direction, name: str, nanosecond: bool
) -> None:
    # pcapng: the struct-packed file parses with the schemas to the values written, and
    # the schemas build the very same bytes from those values.
    out = io.BytesIO()
    with PcapngWriter(out) as w:
        w.add_interface(name)
        w.write(0, frame, time_ns, comment=comment, direction=direction)
    data = out.getvalue()
    parsed = PCAPNG_SCHEMA.parse(data)
    shb, (idb, epb) = parsed.section_header, parsed.blocks
    assert shb.block_total_length == shb.block_total_length_trailer
    assert idb.options[0].value == name.encode()
    assert (epb.interface_id, epb.packet_data, epb.original_length) == (0, frame, len(frame))
    assert (epb.timestamp_high << 32) | epb.timestamp_low == time_ns
    opts = []
    if comment is not None:
        opts.append((1, comment.encode()))
    if direction != Direction.UNKNOWN:
        opts.append((2, struct.pack("<I", direction)))
    built = EPB_SCHEMA.build({
        "block_total_length": epb.block_total_length,
        "interface_id": 0,
        "timestamp_high": time_ns >> 32,
        "timestamp_low": time_ns & 0xFFFFFFFF,
        "captured_length": len(frame),
        "original_length": len(frame),
        "packet_data": frame,
        "options": _options(*opts),
        "block_total_length_trailer": epb.block_total_length,
    })
    shb_len = shb.block_total_length
    assert built == data[shb_len + idb.block_total_length :]
    assert SHB_SCHEMA.build({
        "block_total_length": shb_len, "major_version": 1, "minor_version": 0,
        "section_length": -1, "options": _options((4, b"vnetbench")),
        "block_total_length_trailer": shb_len,
    }) == data[:shb_len]
    assert IDB_SCHEMA.build({
        "block_total_length": idb.block_total_length, "linktype": 1, "reserved": 0,
        "snaplen": SNAPLEN, "options": _options((2, name.encode()), (9, b"\x09")),
        "block_total_length_trailer": idb.block_total_length,
    }) == data[shb_len : shb_len + idb.block_total_length]

    # libpcap: the same for the global header and the record.
    out = io.BytesIO()
    with PcapWriter(out, nanosecond=nanosecond) as pw:
        pw.write(frame, time_ns % 2**62)
    rec = PCAP_FILE_SCHEMA.parse(out.getvalue()).records[0]
    t = time_ns % 2**62
    seconds, frac = divmod(t if nanosecond else t // 1000, 10**9 if nanosecond else 10**6)
    assert (rec.header.ts_sec, rec.header.ts_frac) == (seconds & 0xFFFFFFFF, frac)
    assert PCAP_FILE_SCHEMA.build(PCAP_FILE_SCHEMA.parse(out.getvalue())) == out.getvalue()


# -- describing a header ---------------------------------------------------------------

def test_describe_net_hdr() -> None:
    assert describe_net_hdr(TSO_HDR) == TSO_COMMENT
    assert describe_net_hdr(NetHdr()) == (
        "virtio_net_hdr flags=0 gso_type=NONE hdr_len=0 gso_size=0 csum_start=0 "
        "csum_offset=0 num_buffers=0"
    )
    odd = NetHdr(flags=NetHdrFlag.NEEDS_CSUM | NetHdrFlag.DATA_VALID | 0x40,
                 gso_type=GsoType.TCPV6 | GSO_ECN, hash_value=0xABC, hash_report=2)
    text = describe_net_hdr(odd)
    assert "flags=NEEDS_CSUM|DATA_VALID|0x40 gso_type=TCPV6|ECN" in text
    assert text.endswith("hash_value=0x00000abc hash_report=2")
    assert "gso_type=0x9" in describe_net_hdr(NetHdr(gso_type=9))


# -- the capturing backend and the device capture --------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def _epbs(data: bytes) -> list[tuple[int, int, bytes, list[tuple[int, bytes]]]]:
    """(interface id, timestamp, data, options without the end marker) per EPB."""
    blocks = PCAPNG_SCHEMA.parse(data).blocks
    return [
        (b.interface_id, (b.timestamp_high << 32) | b.timestamp_low, b.packet_data,
         [(o.code, o.value) for o in b.options if o.code != 0])
        for b in blocks if "interface_id" in b
    ]


def test_capture_backend_records_both_directions() -> None:
    clock = Clock()
    wire = Wire(clock, latency_ns=500)
    out = io.BytesIO()
    writer = PcapngWriter(out)
    a = CaptureBackend(wire.a, writer, "a", clock)
    got: list[bytes] = []

    def receive(frame: bytes) -> bool:
        got.append(frame)
        return True

    a.set_receiver(receive)
    frame_out, frame_in = b"\x01" * 60, b"\x02" * 64
    clock.now = 100
    a.send(frame_out)
    wire.b.send(frame_in)
    clock.now = 10_000
    assert a.next_deadline() is None  # a wire port is not a timed source itself
    assert a.poll(clock.now) == 0
    wire.poll(clock.now)
    writer.close()
    assert got == [frame_in]
    outbound = (2, struct.pack("<I", 2))
    inbound = (2, struct.pack("<I", 1))
    assert _epbs(out.getvalue()) == [(0, 100, frame_out, [outbound]), (0, 10_000, frame_in, [inbound])]


def test_capture_file_layout(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "device.pcapng"
    wire = Wire(clock)
    with Capture(path, clock=clock) as capture:
        port = capture.wire_backend(wire.a)
        capture.record_tx_chain(TSO_HDR, b"\x00" * 14 + b"x" * 3000, 42)
        clock.now = 50
        port.send(b"\xff" * 6 + b"\x00" * 54)
        assert capture.packets == 2
    records = _epbs(path.read_bytes())
    assert records[0][:2] == (0, 42)
    assert (1, TSO_COMMENT.encode()) in records[0][3]
    assert records[1][:3] == (1, 50, b"\xff" * 6 + b"\x00" * 54)
    blocks = PCAPNG_SCHEMA.parse(path.read_bytes()).blocks
    names = [b.options[0].value.decode() for b in blocks if "linktype" in b]
    assert names == ["driver→device", "wire"]


def test_writers_close_paths_but_only_flush_borrowed_files(tmp_path: Path) -> None:
    borrowed = io.BytesIO()
    with PcapWriter(borrowed):
        pass
    assert not borrowed.closed
    w = PcapngWriter(tmp_path / "x.pcapng")
    w.close()
    w.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        w.add_interface("late")
    with pytest.raises(ValueError, match="not declared"):
        PcapngWriter(io.BytesIO()).write(0, b"", 0)
    with pytest.raises(ValueError, match="time_ns"):
        PcapWriter(io.BytesIO()).write(b"", -1)


# -- real readers ----------------------------------------------------------------------

TSHARK = shutil.which("tshark")
CAPINFOS = shutil.which("capinfos")
ROOT_WARNING = 'Running as user "root" and group "root". This could be dangerous.'
"""What tshark prints on stderr whenever it runs as root; not a complaint about the file."""


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)
    stderr = "\n".join(line for line in done.stderr.splitlines() if line.strip() != ROOT_WARNING)
    assert done.returncode == 0, f"{argv[0]} exit {done.returncode}: {done.stderr}"
    assert stderr == "", f"{argv[0]} complained: {stderr}"
    return done


def _sample_files(tmp_path: Path) -> tuple[Path, Path]:
    clock = Clock()
    wire = Wire(clock)
    ng = tmp_path / "capture.pcapng"
    classic = tmp_path / "capture.pcap"
    with Capture(ng, clock=clock) as capture, PcapWriter(classic, nanosecond=True) as pw:
        port = capture.wire_backend(wire.a)
        big = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + b"x" * (SNAPLEN + 10)
        capture.record_tx_chain(TSO_HDR, big, 1_000)
        capture.record_tx_chain(NetHdr(), b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + bytes(46), 2_000)
        for i in range(3):
            clock.now = 3_000 + i
            frame = b"\xff" * 6 + b"\x02" * 6 + b"\x88\xb5" + bytes([i]) * 50
            port.send(frame)
            pw.write(frame, clock.now)
        pw.write(big, 9_000)
    return ng, classic


def test_tshark_reads_our_files(tmp_path: Path) -> None:
    skip_unless("tshark is not installed (apt-get install tshark)" if TSHARK is None else None)
    assert TSHARK is not None
    ng, classic = _sample_files(tmp_path)
    assert len(_run([TSHARK, "-r", str(ng)]).stdout.splitlines()) == 5
    assert len(_run([TSHARK, "-r", str(classic)]).stdout.splitlines()) == 4
    fields = _run([TSHARK, "-r", str(ng), "-T", "fields", "-e", "frame.interface_name",
                   "-e", "frame.comment", "-e", "frame.len", "-e", "frame.cap_len"]).stdout
    rows = [line.split("\t") for line in fields.splitlines()]
    assert rows[0] == ["driver→device", TSO_COMMENT, str(SNAPLEN + 24), str(SNAPLEN)]
    assert rows[1][:2] == ["driver→device", describe_net_hdr(NetHdr())]
    assert [r[:2] for r in rows[2:]] == [["wire", ""]] * 3


def test_capinfos_counts_our_packets(tmp_path: Path) -> None:
    skip_unless("capinfos is not installed (apt-get install tshark)" if CAPINFOS is None else None)
    assert CAPINFOS is not None
    ng, classic = _sample_files(tmp_path)
    assert "Number of packets:   5" in _run([CAPINFOS, "-c", str(ng)]).stdout
    assert "Number of packets:   4" in _run([CAPINFOS, "-c", str(classic)]).stdout
    info = _run([CAPINFOS, str(ng)]).stdout
    assert "Name = driver→device" in info
    assert "Time precision = nanoseconds (9)" in info
