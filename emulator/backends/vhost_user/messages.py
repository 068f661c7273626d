"""The vhost-user message codec (QEMU ``docs/interop/vhost-user.rst``, "Message
Specification").

A message is a 12-byte header — ``u32 request, u32 flags, u32 size`` (little-endian,
host order on the x86 machines vhost-user runs on) — followed by ``size`` bytes of
payload; file descriptors travel as ``SCM_RIGHTS`` ancillary data with the message. Flags:
bits 0-1 the version (1), bit 2 REPLY, bit 3 NEED_REPLY. Every decoder here checks the
size and the file descriptors a request must carry and raises
:class:`~emulator.backends.vhost_user.errors.MessageError` otherwise: nothing in this
module raises ``struct.error`` or ``IndexError`` on what a frontend sends.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

from emulator.backends.vhost_user.errors import (
    FRONT_END_REQUESTS,
    MEMORY_REGIONS,
    MESSAGE_FORMAT,
    MessageError,
)

HEADER = struct.Struct("<III")
U64 = struct.Struct("<Q")
VRING_STATE = struct.Struct("<II")
"""``struct vhost_vring_state``: index, num."""
VRING_ADDR = struct.Struct("<IIQQQQ")
"""``struct vhost_vring_addr``: index, flags, descriptor, used, available, log addresses
(the ring addresses are frontend *user* addresses, "Vring address description")."""
MEM_HEADER = struct.Struct("<II")
"""Memory regions description: ``u32 num regions, u32 padding``."""
MEM_REGION = struct.Struct("<QQQQ")
"""One region: guest address, size, user address, mmap offset."""

VERSION = 0x1
FLAG_VERSION_MASK = 0x3
FLAG_REPLY = 0x4
FLAG_NEED_REPLY = 0x8
KNOWN_FLAGS = FLAG_VERSION_MASK | FLAG_REPLY | FLAG_NEED_REPLY

MAX_REGIONS = 8
"""VHOST_MEMORY_BASELINE_NREGIONS: regions in one SET_MEM_TABLE (without
CONFIGURE_MEM_SLOTS, which this backend does not offer)."""
MAX_FDS = MAX_REGIONS
"""No request carries more file descriptors than SET_MEM_TABLE."""
MAX_PAYLOAD = 4096
"""Larger than any payload this backend accepts (the largest, a full memory table, is
8 + 8 * 32 bytes); a size beyond it is refused before anything is read."""
VRING_INDEX_MASK = 0xFF
VRING_NOFD_MASK = 0x100
"""SET_VRING_KICK/CALL/ERR: bits 0-7 the ring, bit 8 "no file descriptor" (polling)."""

F_PROTOCOL_FEATURES = 30
"""VHOST_USER_F_PROTOCOL_FEATURES: a vhost-user bit in the virtio feature word."""
F_LOG_ALL = 26
"""VHOST_F_LOG_ALL (dirty logging during migration): never offered here."""
VHOST_ONLY_BITS = (1 << F_PROTOCOL_FEATURES) | (1 << F_LOG_ALL)
"""Bits of GET/SET_FEATURES that are the protocol's, not the virtio device's."""


class Request(IntEnum):
    """Front-end message types (vhost-user.rst "Front-end message types")."""

    GET_FEATURES = 1
    SET_FEATURES = 2
    SET_OWNER = 3
    RESET_OWNER = 4
    SET_MEM_TABLE = 5
    SET_LOG_BASE = 6
    SET_LOG_FD = 7
    SET_VRING_NUM = 8
    SET_VRING_ADDR = 9
    SET_VRING_BASE = 10
    GET_VRING_BASE = 11
    SET_VRING_KICK = 12
    SET_VRING_CALL = 13
    SET_VRING_ERR = 14
    GET_PROTOCOL_FEATURES = 15
    SET_PROTOCOL_FEATURES = 16
    GET_QUEUE_NUM = 17
    SET_VRING_ENABLE = 18
    SEND_RARP = 19
    NET_SET_MTU = 20
    SET_BACKEND_REQ_FD = 21
    IOTLB_MSG = 22
    SET_VRING_ENDIAN = 23
    GET_CONFIG = 24
    SET_CONFIG = 25
    CREATE_CRYPTO_SESSION = 26
    CLOSE_CRYPTO_SESSION = 27
    POSTCOPY_ADVISE = 28
    POSTCOPY_LISTEN = 29
    POSTCOPY_END = 30
    GET_INFLIGHT_FD = 31
    SET_INFLIGHT_FD = 32
    GPU_SET_SOCKET = 33
    RESET_DEVICE = 34
    VRING_KICK = 35
    GET_MAX_MEM_SLOTS = 36
    ADD_MEM_REG = 37
    REM_MEM_REG = 38
    SET_STATUS = 39
    GET_STATUS = 40


class ProtocolFeature(IntEnum):
    """``VHOST_USER_PROTOCOL_F_*`` bits (vhost-user.rst "Protocol features")."""

    MQ = 0
    LOG_SHMFD = 1
    RARP = 2
    REPLY_ACK = 3
    NET_MTU = 4
    BACKEND_REQ = 5
    CROSS_ENDIAN = 6
    CRYPTO_SESSION = 7
    PAGEFAULT = 8
    CONFIG = 9
    BACKEND_SEND_FD = 10
    HOST_NOTIFIER = 11
    INFLIGHT_SHMFD = 12
    RESET_DEVICE = 13
    INBAND_NOTIFICATIONS = 14
    CONFIGURE_MEM_SLOTS = 15
    STATUS = 16


EMPTY = 0
"""Payload size of a request that carries none (GET_FEATURES, SET_OWNER, ...)."""
_FIXED_SIZE: dict[Request, int] = {
    Request.GET_FEATURES: EMPTY,
    Request.SET_FEATURES: U64.size,
    Request.SET_OWNER: EMPTY,
    Request.RESET_OWNER: EMPTY,
    Request.SET_VRING_NUM: VRING_STATE.size,
    Request.SET_VRING_ADDR: VRING_ADDR.size,
    Request.SET_VRING_BASE: VRING_STATE.size,
    Request.GET_VRING_BASE: VRING_STATE.size,
    Request.SET_VRING_KICK: U64.size,
    Request.SET_VRING_CALL: U64.size,
    Request.SET_VRING_ERR: U64.size,
    Request.GET_PROTOCOL_FEATURES: EMPTY,
    Request.SET_PROTOCOL_FEATURES: U64.size,
    Request.GET_QUEUE_NUM: EMPTY,
    Request.SET_VRING_ENABLE: VRING_STATE.size,
}
"""The payload size of each request this backend serves ("Front-end message types"
gives each request's payload type); SET_MEM_TABLE's depends on its region count."""
_FD_REQUESTS = frozenset({
    Request.SET_MEM_TABLE, Request.SET_VRING_KICK, Request.SET_VRING_CALL,
    Request.SET_VRING_ERR, Request.SET_LOG_FD, Request.SET_LOG_BASE,
    Request.SET_BACKEND_REQ_FD, Request.SET_INFLIGHT_FD, Request.ADD_MEM_REG,
    Request.REM_MEM_REG, Request.GPU_SET_SOCKET,
})
"""Requests that may carry file descriptors; any other request carrying one is
malformed."""


@dataclass(frozen=True)
class Header:
    request: int
    flags: int
    size: int

    @property
    def need_reply(self) -> bool:
        return bool(self.flags & FLAG_NEED_REPLY)


def parse_header(data: bytes) -> Header:
    """Decode and check a header: 12 bytes, version 1, no REPLY flag (a frontend sends
    requests), no unknown flag bit, a payload size this backend can hold."""
    if len(data) != HEADER.size:
        raise MessageError(f"a header is {HEADER.size} bytes, got {len(data)}",
                           section=MESSAGE_FORMAT)
    request, flags, size = HEADER.unpack(data)
    if flags & FLAG_VERSION_MASK != VERSION:
        raise MessageError(f"version {flags & FLAG_VERSION_MASK} in flags {flags:#x}; "
                           f"this protocol is version {VERSION}", rule="vhost-user-version",
                           section=MESSAGE_FORMAT)
    if flags & ~KNOWN_FLAGS:
        raise MessageError(f"unknown flag bits {flags & ~KNOWN_FLAGS:#x}",
                           rule="vhost-user-flags", section=MESSAGE_FORMAT)
    if flags & FLAG_REPLY:
        raise MessageError(f"request {request} sent with the REPLY flag",
                           rule="vhost-user-flags", section=MESSAGE_FORMAT)
    if size > MAX_PAYLOAD:
        raise MessageError(f"payload of {size} bytes for request {request}; the largest "
                           f"this backend takes is {MAX_PAYLOAD}",
                           rule="vhost-user-size", section=MESSAGE_FORMAT)
    return Header(request, flags, size)


@dataclass(frozen=True)
class Message:
    """One request as received: the header's fields, the payload and the file
    descriptors that came with it (owned by whoever handles the message)."""

    request: int
    flags: int
    payload: bytes
    fds: tuple[int, ...] = field(default=())

    @property
    def need_reply(self) -> bool:
        return bool(self.flags & FLAG_NEED_REPLY)

    @property
    def name(self) -> str:
        try:
            return Request(self.request).name
        except ValueError:
            return f"request {self.request}"


def check_message(msg: Message) -> Request:
    """The request, once its payload size and file descriptor count are those the
    specification gives it. Raises :class:`MessageError` otherwise (unknown requests
    included)."""
    try:
        request = Request(msg.request)
    except ValueError:
        raise MessageError(f"unknown request {msg.request}", rule="vhost-user-unknown-request",
                           section=FRONT_END_REQUESTS) from None
    if len(msg.fds) > MAX_FDS:
        raise MessageError(f"{request.name} carries {len(msg.fds)} file descriptors, more "
                           f"than {MAX_FDS}", rule="vhost-user-fds", section=MESSAGE_FORMAT)
    if msg.fds and request not in _FD_REQUESTS:
        raise MessageError(f"{request.name} carries {len(msg.fds)} file descriptor(s); it "
                           "takes none", rule="vhost-user-fds", section=FRONT_END_REQUESTS)
    expected = _FIXED_SIZE.get(request)
    if expected is not None and len(msg.payload) != expected:
        raise MessageError(f"{request.name} payload is {len(msg.payload)} bytes, not "
                           f"{expected}", rule="vhost-user-size", section=FRONT_END_REQUESTS)
    return request


# payload decoders
def decode_u64(msg: Message) -> int:
    if len(msg.payload) != U64.size:
        raise MessageError(f"{msg.name}: a u64 payload is 8 bytes, got {len(msg.payload)}",
                           rule="vhost-user-size", section=FRONT_END_REQUESTS)
    return int(U64.unpack(msg.payload)[0])


@dataclass(frozen=True)
class VringState:
    index: int
    num: int


def decode_vring_state(msg: Message) -> VringState:
    if len(msg.payload) != VRING_STATE.size:
        raise MessageError(f"{msg.name}: a vring state is 8 bytes, got {len(msg.payload)}",
                           rule="vhost-user-size", section=FRONT_END_REQUESTS)
    index, num = VRING_STATE.unpack(msg.payload)
    return VringState(index, num)


@dataclass(frozen=True)
class VringAddr:
    index: int
    flags: int
    desc_user: int
    used_user: int
    avail_user: int
    log_guest: int


def decode_vring_addr(msg: Message) -> VringAddr:
    if len(msg.payload) != VRING_ADDR.size:
        raise MessageError(f"{msg.name}: a vring address is {VRING_ADDR.size} bytes, got "
                           f"{len(msg.payload)}", rule="vhost-user-size",
                           section=FRONT_END_REQUESTS)
    return VringAddr(*VRING_ADDR.unpack(msg.payload))


@dataclass(frozen=True)
class VringFd:
    """SET_VRING_KICK/CALL/ERR: the ring and its eventfd, or None with the NOFD bit."""

    index: int
    fd: int | None


def decode_vring_fd(msg: Message) -> VringFd:
    value = decode_u64(msg)
    if value & ~(VRING_INDEX_MASK | VRING_NOFD_MASK):
        raise MessageError(f"{msg.name}: undefined bits in {value:#x}",
                           rule="vhost-user-vring-fd", section=FRONT_END_REQUESTS)
    index = value & VRING_INDEX_MASK
    if value & VRING_NOFD_MASK:
        if msg.fds:
            raise MessageError(f"{msg.name}: the no-fd bit is set and a file descriptor came",
                               rule="vhost-user-fds", section=FRONT_END_REQUESTS)
        return VringFd(index, None)
    if len(msg.fds) != 1:
        raise MessageError(f"{msg.name} for ring {index} needs one file descriptor, got "
                           f"{len(msg.fds)}", rule="vhost-user-fds", section=FRONT_END_REQUESTS)
    return VringFd(index, msg.fds[0])


@dataclass(frozen=True)
class RegionDesc:
    """One region of SET_MEM_TABLE ("Memory region description")."""

    guest_addr: int
    size: int
    user_addr: int
    mmap_offset: int


def decode_mem_table(msg: Message) -> list[RegionDesc]:
    """The regions, one file descriptor each (in order); sizes nonzero, no address range
    wrapping around 2^64."""
    payload = msg.payload
    if len(payload) < MEM_HEADER.size:
        raise MessageError(f"SET_MEM_TABLE payload of {len(payload)} bytes has no region count",
                           rule="vhost-user-size", section=MEMORY_REGIONS)
    count, _padding = MEM_HEADER.unpack_from(payload)
    if not 1 <= count <= MAX_REGIONS:
        raise MessageError(f"SET_MEM_TABLE with {count} regions (1 to {MAX_REGIONS})",
                           rule="vhost-user-mem-regions", section=MEMORY_REGIONS)
    want = MEM_HEADER.size + count * MEM_REGION.size
    if len(payload) < want:
        raise MessageError(f"SET_MEM_TABLE of {count} regions needs {want} bytes, got "
                           f"{len(payload)}", rule="vhost-user-size", section=MEMORY_REGIONS)
    if len(msg.fds) != count:
        raise MessageError(f"SET_MEM_TABLE of {count} regions came with {len(msg.fds)} file "
                           "descriptors", rule="vhost-user-fds", section=MEMORY_REGIONS)
    regions = []
    for i in range(count):
        r = RegionDesc(*MEM_REGION.unpack_from(payload, MEM_HEADER.size + i * MEM_REGION.size))
        if r.size == 0:
            raise MessageError(f"memory region {i} has size 0", rule="vhost-user-mem-region",
                               section=MEMORY_REGIONS)
        limit = 1 << 64
        if (r.guest_addr + r.size > limit or r.user_addr + r.size > limit
                or r.mmap_offset + r.size > limit):
            raise MessageError(f"memory region {i} wraps around the 64-bit address space",
                               rule="vhost-user-mem-region", section=MEMORY_REGIONS)
        regions.append(r)
    return regions


# encoders (replies, and requests for test frontends)
def encode(request: int, payload: bytes = b"", *, flags: int = VERSION) -> bytes:
    """A message: header then payload."""
    return HEADER.pack(request, flags, len(payload)) + payload


def reply(request: int, payload: bytes) -> bytes:
    """A reply to ``request`` (REPLY flag, version 1)."""
    return encode(request, payload, flags=VERSION | FLAG_REPLY)


def u64(value: int) -> bytes:
    return U64.pack(value & 0xFFFF_FFFF_FFFF_FFFF)


def vring_state(index: int, num: int) -> bytes:
    return VRING_STATE.pack(index, num)


def vring_addr(addr: VringAddr) -> bytes:
    return VRING_ADDR.pack(addr.index, addr.flags, addr.desc_user, addr.used_user,
                           addr.avail_user, addr.log_guest)


def mem_table(regions: list[RegionDesc]) -> bytes:
    out = MEM_HEADER.pack(len(regions), 0)
    for r in regions:
        out += MEM_REGION.pack(r.guest_addr, r.size, r.user_addr, r.mmap_offset)
    return out
