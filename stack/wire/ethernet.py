"""Ethernet II frames (IEEE 802.3 clause 3) with an optional 802.1Q tag: checked parsing
and emitting, in the style of smoltcp's ``wire::EthernetFrame`` / ``EthernetRepr``."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from virtio.errors import WireError

HEADER_LEN = 14
VLAN_TAG_LEN = 4
MIN_FRAME = 60
"""Shortest frame on the wire without the FCS (IEEE 802.3 minimum of 64 with it)."""
MAX_FRAME_1500 = HEADER_LEN + 1500

_HEADER = struct.Struct("!6s6sH")
_TAG = struct.Struct("!HH")

BROADCAST = b"\xff" * 6


class EtherType(IntEnum):
    IPV4 = 0x0800
    ARP = 0x0806
    VLAN = 0x8100
    IPV6 = 0x86DD
    LOCAL_EXPERIMENTAL_1 = 0x88B5
    """IEEE 802 local experimental ethertype: the testbench's own traffic."""


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str) -> bytes:
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    try:
        out = bytes(int(p, 16) for p in parts)
    except ValueError as exc:
        raise ValueError(f"not a MAC address: {text!r}") from exc
    return out


_VLAN_HI, _VLAN_LO = int(EtherType.VLAN).to_bytes(2, "big")


@dataclass(frozen=True, slots=True)
class EthernetHeader:
    dst: bytes
    src: bytes
    ethertype: int
    vlan_tci: int | None = None
    """802.1Q tag control information (PCP, DEI, VID) when the frame is tagged."""

    @property
    def length(self) -> int:
        return HEADER_LEN + (VLAN_TAG_LEN if self.vlan_tci is not None else 0)

    @classmethod
    def parse(cls, frame: bytes | bytearray | memoryview) -> EthernetHeader:
        if len(frame) < HEADER_LEN:
            raise WireError(f"Ethernet frame of {len(frame)} bytes is shorter than its header")
        dst, src, ethertype = _HEADER.unpack_from(frame, 0)
        if ethertype != EtherType.VLAN:
            return cls(bytes(dst), bytes(src), ethertype)
        if len(frame) < HEADER_LEN + VLAN_TAG_LEN:
            raise WireError("802.1Q frame truncated inside its tag")
        tci, inner = _TAG.unpack_from(frame, HEADER_LEN)
        return cls(bytes(dst), bytes(src), inner, tci)

    def emit(self) -> bytes:
        if len(self.dst) != 6 or len(self.src) != 6:
            raise ValueError("MAC addresses are 6 bytes")
        if self.vlan_tci is None:
            return _HEADER.pack(self.dst, self.src, self.ethertype)
        return _HEADER.pack(self.dst, self.src, EtherType.VLAN) + _TAG.pack(
            self.vlan_tci, self.ethertype
        )


def link_header_len(frame: bytes | bytearray | memoryview) -> int:
    """The Ethernet header's length, its 802.1Q tag included: what
    ``EthernetHeader.parse(frame).length`` says, without building the header (a frame
    too short for its header or truncated inside its tag counts as untagged)."""
    if len(frame) >= HEADER_LEN + VLAN_TAG_LEN and frame[12] == _VLAN_HI and frame[13] == _VLAN_LO:
        return HEADER_LEN + VLAN_TAG_LEN
    return HEADER_LEN


def build_frame(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    """An untagged frame (no padding: the caller decides whether to pad to 60 bytes)."""
    return EthernetHeader(dst, src, ethertype).emit() + payload
