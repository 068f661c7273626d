"""The ``virtio_net_hdr`` value type (§5.1.6), with parse/emit for each header size."""

from __future__ import annotations

from dataclasses import dataclass, replace

from virtio.constants import GSO_ECN, GsoType, NetHdrFlag
from virtio.errors import DeviceProtocolError
from virtio.layouts import NET_HDR, NET_HDR_BY_SIZE, NET_HDR_HASH, NET_HDR_LEGACY
from virtio.spec import NET_OPERATION

VALID_SIZES = (10, 12, 20)
_NEEDS_CSUM = int(NetHdrFlag.NEEDS_CSUM)
_DATA_VALID = int(NetHdrFlag.DATA_VALID)


@dataclass(frozen=True, slots=True)
class NetHdr:
    """One virtio_net_hdr. Fields absent from the smaller forms default to 0."""

    flags: int = 0
    gso_type: int = GsoType.NONE
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0
    num_buffers: int = 0
    hash_value: int = 0
    hash_report: int = 0

    @property
    def gso_kind(self) -> int:
        """gso_type without the ECN bit (a :class:`GsoType` value when known)."""
        return self.gso_type & ~GSO_ECN

    @property
    def ecn(self) -> bool:
        return bool(self.gso_type & GSO_ECN)

    @property
    def needs_csum(self) -> bool:
        return bool(self.flags & _NEEDS_CSUM)

    @property
    def data_valid(self) -> bool:
        return bool(self.flags & _DATA_VALID)

    def with_(self, **changes: int) -> NetHdr:
        return replace(self, **changes)

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview, size: int) -> NetHdr:
        """Parse the first ``size`` bytes of ``data``.

        A buffer shorter than the header is the driver's fault when the device parses
        it (``DeviceProtocolError``); misuse of ``size`` is a ``ValueError``.
        """
        if size not in VALID_SIZES:
            raise ValueError(f"virtio_net_hdr size must be one of {VALID_SIZES}, not {size}")
        if len(data) < size:
            raise DeviceProtocolError(
                f"buffer of {len(data)} bytes holds no {size}-byte virtio_net_hdr",
                rule="net-hdr-truncated",
                section=NET_OPERATION,
            )
        values = NET_HDR_BY_SIZE[size].fmt.unpack_from(data, 0)
        return cls(*values[:9])

    def emit(self, size: int) -> bytes:
        out = bytearray(size)
        self.pack_into(out, 0, size)
        return bytes(out)

    def pack_into(self, buf: bytearray | memoryview, offset: int, size: int) -> None:
        head = (self.flags, self.gso_type, self.hdr_len, self.gso_size, self.csum_start,
                self.csum_offset)
        if size == 10:
            NET_HDR_LEGACY.fmt.pack_into(buf, offset, *head)
        elif size == 12:
            NET_HDR.fmt.pack_into(buf, offset, *head, self.num_buffers)
        elif size == 20:
            NET_HDR_HASH.fmt.pack_into(
                buf, offset, *head, self.num_buffers, self.hash_value, self.hash_report, 0
            )
        else:
            raise ValueError(f"virtio_net_hdr size must be one of {VALID_SIZES}, not {size}")
