"""The socket API over the stack: TCP sockets (connect / listen / accept / send / recv /
shutdown / close) and UDP sockets (bind / sendto / recvfrom), in the shape of BSD
sockets but sans-IO — nothing blocks; the application polls the :class:`~stack.stack.
Stack` and looks at the sockets."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stack.tcp.connection import TcpConnection, TcpError, TcpState

if TYPE_CHECKING:
    from stack.stack import Stack

Address = tuple[bytes, int]
"""(packed IP address, port)."""


class TcpSocket:
    """One TCP connection."""

    def __init__(self, stack: Stack, conn: TcpConnection, local: Address, remote: Address) -> None:
        self._stack = stack
        self.conn = conn
        self.local = local
        self.remote = remote
        self.listener: TcpListener | None = None
        """The listener this passively opened connection waits in until established."""

    @property
    def state(self) -> TcpState:
        return self.conn.state

    @property
    def established(self) -> bool:
        return self.conn.state is TcpState.ESTABLISHED

    @property
    def error(self) -> TcpError | None:
        return self.conn.error

    @property
    def counters(self) -> object:
        return self.conn.counters

    def send(self, data: bytes | bytearray | memoryview, *, urgent: bool = False) -> int:
        """Queue bytes for sending; how many were taken (the send buffer may be full).
        ``urgent``: as urgent data (RFC 9293 §3.8.5, what ``MSG_OOB`` sends)."""
        taken = self.conn.send(data, urgent=urgent)
        if taken:
            self._stack.wake(self)
        return taken

    @property
    def urgent_mark(self) -> int | None:
        """Bytes to read before the end of the peer's urgent data (None: none ahead)."""
        return self.conn.urgent_mark

    @property
    def send_space(self) -> int:
        return self.conn.send_space

    def recv(self, max_bytes: int = -1) -> bytes:
        data = self.conn.recv(max_bytes)
        if data:
            self._stack.wake(self)  # the window may open: a window update may be due
        return data

    @property
    def readable(self) -> int:
        return self.conn.readable

    @property
    def eof(self) -> bool:
        """The peer closed its side and everything it sent was read."""
        return self.conn.eof

    def shutdown(self) -> None:
        self.conn.shutdown(self._stack.now)
        self._stack.wake(self)

    def close(self) -> None:
        self.conn.close(self._stack.now)
        self._stack.wake(self)

    def abort(self) -> None:
        self.conn.abort(self._stack.now)
        self._stack.wake(self)

    def __repr__(self) -> str:
        return f"<TcpSocket {self.local[1]} -> {self.remote[1]} {self.conn.state.name}>"


class TcpListener:
    """A listening port; connections that completed the handshake wait in
    :meth:`accept`'s queue (at most ``backlog``; further SYNs are ignored, as Linux
    drops them when the accept queue is full)."""

    def __init__(self, stack: Stack, port: int, backlog: int) -> None:
        self._stack = stack
        self.port = port
        self.backlog = backlog
        self._ready: deque[TcpSocket] = deque()
        self.pending: set[TcpSocket] = set()
        self.closed = False

    def accept(self) -> TcpSocket | None:
        return self._ready.popleft() if self._ready else None

    def _established(self, sock: TcpSocket) -> None:
        self.pending.discard(sock)
        self._ready.append(sock)

    @property
    def full(self) -> bool:
        return len(self._ready) + len(self.pending) >= self.backlog

    def close(self) -> None:
        self.closed = True
        self._stack._listeners.pop(self.port, None)


@dataclass(frozen=True, slots=True)
class Datagram:
    data: bytes
    src: Address
    dst: Address


class UdpSocket:
    """A bound UDP port (RFC 768)."""

    def __init__(self, stack: Stack, port: int, queue_limit: int) -> None:
        self._stack = stack
        self.port = port
        self.queue_limit = queue_limit
        self._queue: deque[Datagram] = deque()
        self.dropped = 0

    def sendto(self, data: bytes, addr: bytes, port: int) -> bool:
        return self._stack.send_udp(self.port, addr, port, data)

    def recvfrom(self) -> Datagram | None:
        return self._queue.popleft() if self._queue else None

    def _push(self, dgram: Datagram) -> None:
        if len(self._queue) >= self.queue_limit:
            self.dropped += 1
            return
        self._queue.append(dgram)

    def close(self) -> None:
        self._stack._udp.pop(self.port, None)
