"""UDP headers (RFC 768): checked parsing and emitting. Field offsets are module
constants used by the device's segmentation engine (USO writes length and checksum per
segment)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from virtio.errors import WireError

HEADER_LEN = 8
OFF_SRC_PORT = 0
OFF_DST_PORT = 2
OFF_LENGTH = 4
OFF_CHECKSUM = 6
"""What ``csum_offset`` holds for UDP in a virtio_net_hdr (§5.1.6.2)."""
MAX_LENGTH = 0xFFFF

_HEADER = struct.Struct("!HHHH")


@dataclass(frozen=True, slots=True)
class UdpHeader:
    src_port: int
    dst_port: int
    length: int
    checksum: int = 0
    """0 means "no checksum" over IPv4 (RFC 768); a computed 0 is sent as 0xFFFF."""

    @classmethod
    def parse(
        cls, data: bytes | bytearray | memoryview, *, allow_zero_length: bool = False
    ) -> UdpHeader:
        """Parse the header; :class:`WireError` when truncated or when the length field is
        below 8 or beyond ``data`` (0 is accepted with ``allow_zero_length``: RFC 2675
        jumbograms and datagrams over 65535 bytes)."""
        if len(data) < HEADER_LEN:
            raise WireError(f"UDP header truncated: {len(data)} bytes")
        sport, dport, length, csum = _HEADER.unpack_from(data, 0)
        if length == 0 and allow_zero_length:
            pass
        elif length < HEADER_LEN:
            raise WireError(f"UDP length {length} is below the 8-byte header")
        elif length > len(data):
            raise WireError(f"UDP length {length} exceeds the {len(data)} bytes present")
        return cls(sport, dport, length, csum)

    def emit(self) -> bytes:
        try:
            return _HEADER.pack(self.src_port, self.dst_port, self.length, self.checksum)
        except struct.error as exc:
            raise ValueError(f"UDP field out of range: {exc}") from exc
