"""A vhost-user *frontend* in Python, for tests without QEMU: it plays QEMU's part of the
protocol (QEMU ``docs/interop/vhost-user.rst``) against our backend over a real Unix
socket, with real memfd guest memory and real eventfds, and writes the rings by hand with
:class:`tests.emulator.ring_writer.MockSplitQueue`.

Memory is laid out as QEMU lays out a small guest: one memfd, two regions with a hole
between them (guest-physical [0, 640 KiB) and [1 MiB, ...)), the second starting
``mmap_offset`` into the memfd; "user addresses" are where QEMU would have mapped them
(any values will do: the backend only translates them).

Everything is single-threaded: each request is written to the socket, then the backend's
``poll`` is run (the ``serve`` callback), then the reply is read.
"""

from __future__ import annotations

import array
import mmap
import os
import socket
from collections.abc import Callable, Sequence
from types import TracebackType

from emulator.backends.vhost_user import messages as m
from tests.emulator.ring_writer import MockSplitQueue
from virtio.memory import Allocator, GuestMemory, MemoryRegion

LOW_SIZE = 0xA0000
"""Region 0: guest-physical [0, 640 KiB), as QEMU splits RAM below the VGA hole."""
HIGH_GUEST = 0x100000
HIGH_SIZE = 0x300000
MEMFD_SIZE = LOW_SIZE + HIGH_SIZE
USER_BASE = 0x7F12_3400_0000
"""Where the frontend "mapped" the memfd (QEMU's user address)."""


class Frontend:
    """One connection to the backend at ``path``."""

    def __init__(self, path: str, serve: Callable[[], object]) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(2.0)
        self.sock.connect(path)
        self.serve = serve
        self.memfd = os.memfd_create("vnb-test-guest")
        os.ftruncate(self.memfd, MEMFD_SIZE)
        self.map = mmap.mmap(self.memfd, MEMFD_SIZE)
        view = memoryview(self.map)
        self._views = [view[:LOW_SIZE], view[LOW_SIZE:]]
        self.memory = GuestMemory(
            [MemoryRegion(0, self._views[0], "low"), MemoryRegion(HIGH_GUEST, self._views[1], "high")],
            Allocator(HIGH_GUEST + 0x1000, HIGH_SIZE - 0x1000),
        )
        self.regions = [
            m.RegionDesc(0, LOW_SIZE, USER_BASE, 0),
            m.RegionDesc(HIGH_GUEST, HIGH_SIZE, USER_BASE + LOW_SIZE, LOW_SIZE),
        ]
        self.kicks: list[int] = []
        self.calls: list[int] = []

    def user(self, guest: int) -> int:
        """The user address of guest-physical ``guest``."""
        for r in self.regions:
            if r.guest_addr <= guest < r.guest_addr + r.size:
                return r.user_addr + guest - r.guest_addr
        raise ValueError(f"{guest:#x} is in no region")

    # raw messages
    def send(self, data: bytes, fds: Sequence[int] = ()) -> None:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] if fds else []
        self.sock.sendmsg([data], anc)

    def recv_reply(self) -> tuple[int, int, bytes]:
        head = self._recv_exact(m.HEADER.size)
        request, flags, size = m.HEADER.unpack(head)
        return request, flags, self._recv_exact(size)

    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError("the backend closed the connection")
            data += chunk
        return data

    def request(self, request: m.Request, payload: bytes = b"", fds: Sequence[int] = (), *,
                need_reply: bool = False, reply: bool = False) -> bytes | None:
        """Send, let the backend serve, and read the reply when one is due (``reply``
        for GET_* requests, ``need_reply`` for REPLY_ACK)."""
        flags = m.VERSION | (m.FLAG_NEED_REPLY if need_reply else 0)
        self.send(m.encode(request, payload, flags=flags), fds)
        self.serve()
        if not (reply or need_reply):
            return None
        req, rflags, body = self.recv_reply()
        assert req == request and rflags == m.VERSION | m.FLAG_REPLY
        return body

    def get_u64(self, request: m.Request) -> int:
        body = self.request(request, reply=True)
        assert body is not None
        return int(m.U64.unpack(body)[0])

    def ack(self, request: m.Request, payload: bytes = b"", fds: Sequence[int] = ()) -> int:
        """A request with NEED_REPLY: the REPLY_ACK status (0 = success)."""
        body = self.request(request, payload, fds, need_reply=True)
        assert body is not None
        return int(m.U64.unpack(body)[0])

    # the QEMU sequence
    def handshake(self, features: int) -> None:
        """QEMU's start: GET_FEATURES, protocol features (REPLY_ACK), GET_QUEUE_NUM,
        SET_OWNER, then the driver's SET_FEATURES and SET_MEM_TABLE."""
        self.get_u64(m.Request.GET_FEATURES)
        protocol = self.get_u64(m.Request.GET_PROTOCOL_FEATURES)
        self.request(m.Request.SET_PROTOCOL_FEATURES, m.u64(protocol))
        self.get_u64(m.Request.GET_QUEUE_NUM)
        self.request(m.Request.SET_OWNER)
        assert self.ack(m.Request.SET_FEATURES, m.u64(features)) == 0
        assert self.ack(m.Request.SET_MEM_TABLE, m.mem_table(self.regions),
                        [self.memfd, self.memfd]) == 0

    def setup_ring(self, index: int, q: MockSplitQueue, base: int = 0) -> None:
        """SET_VRING_NUM/BASE/ADDR/CALL/KICK/ENABLE for ring ``index``."""
        assert self.ack(m.Request.SET_VRING_NUM, m.vring_state(index, q.size)) == 0
        assert self.ack(m.Request.SET_VRING_BASE, m.vring_state(index, base)) == 0
        addr = m.VringAddr(index, 0, self.user(q.desc_addr), self.user(q.used_addr),
                           self.user(q.avail_addr), 0)
        assert self.ack(m.Request.SET_VRING_ADDR, m.vring_addr(addr)) == 0
        call = os.eventfd(0, os.EFD_NONBLOCK)
        kick = os.eventfd(0, os.EFD_NONBLOCK)
        while len(self.calls) <= index:
            self.calls.append(-1)
            self.kicks.append(-1)
        self.calls[index], self.kicks[index] = call, kick
        assert self.ack(m.Request.SET_VRING_CALL, m.u64(index), [call]) == 0
        assert self.ack(m.Request.SET_VRING_KICK, m.u64(index), [kick]) == 0
        assert self.ack(m.Request.SET_VRING_ENABLE, m.vring_state(index, 1)) == 0

    def kick(self, index: int) -> None:
        os.eventfd_write(self.kicks[index], 1)
        self.serve()

    def calls_of(self, index: int) -> int:
        """Call notifications posted on ring ``index`` since the last look."""
        try:
            return os.eventfd_read(self.calls[index])
        except BlockingIOError:
            return 0

    def close(self) -> None:
        self.sock.close()
        for fd in [*self.kicks, *self.calls]:
            if fd >= 0:
                os.close(fd)
        self.kicks, self.calls = [], []
        for region in self.memory.regions:
            region.buf.release()
        for view in self._views:
            view.release()
        self.map.close()
        os.close(self.memfd)

    def __enter__(self) -> Frontend:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
