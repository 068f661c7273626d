"""The vhost-user socket: listen, accept one frontend at a time, read its messages (with
their file descriptors), answer, and watch the kick eventfds.

QEMU connects as the client (``-chardev socket,path=...`` without ``server=on``), so the
backend listens before QEMU starts. One connection is served at a time ("Communication":
the frontend and one backend); when it closes — QEMU exited, or a protocol error made
us close it — its :class:`Session` releases everything and the next connection starts a
fresh session (reconnect). A message that breaks the protocol
(:class:`FrontendProtocolError`) is logged in :attr:`VhostUserServer.errors` and the
connection is closed; nothing the frontend sends can raise out of :meth:`poll`.

The server is a :class:`testbench.realtime.RealTimePeer`: :meth:`poll` does the work that
is ready (bounded: at most ``max_messages`` messages a call, each read within
``read_timeout_s``) and :meth:`wait` blocks on the sockets and eventfds, at most the
timeout given.
"""

from __future__ import annotations

import array
import contextlib
import os
import select
import socket
from collections.abc import Sequence
from types import TracebackType

from emulator.backends.vhost_user.errors import (
    COMMUNICATION,
    MESSAGE_FORMAT,
    FrontendProtocolError,
    MessageError,
    SessionClosed,
)
from emulator.backends.vhost_user.messages import HEADER, MAX_FDS, Message, parse_header
from emulator.backends.vhost_user.session import OFFERED_PROTOCOL_FEATURES, Session, VhostDevice

_FD_SIZE = array.array("i").itemsize
_ANC_SIZE = socket.CMSG_SPACE(MAX_FDS * _FD_SIZE)


class VhostUserServer:
    """A listening vhost-user backend for ``device`` on the Unix socket ``path``."""

    def __init__(self, path: str, device: VhostDevice, *, max_messages: int = 64,
                 read_timeout_s: float = 2.0,
                 protocol_features: int = OFFERED_PROTOCOL_FEATURES) -> None:
        self.path = path
        self.device = device
        self.max_messages = max_messages
        self.read_timeout_s = read_timeout_s
        self.protocol_features = protocol_features
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.listener.bind(path)
            self.listener.listen(1)
        except OSError:
            self.listener.close()
            raise
        self.listener.setblocking(False)
        self.conn: socket.socket | None = None
        self.session: Session | None = None
        self.sessions = 0
        """Connections accepted so far."""
        self.errors: list[FrontendProtocolError] = []
        """Protocol errors that closed a session, in order."""
        self.messages = 0
        self.closed = False

    # RealTimePeer
    def poll(self, now: int) -> int:
        """Accept, read what is ready, serve kicks; the number of events handled."""
        if self.closed:
            return 0
        events = 0
        if self.conn is None:
            events += self._accept()
        if self.conn is not None:
            for _ in range(self.max_messages):
                if not _readable(self.conn):
                    break
                if not self._serve_one():
                    break
                events += 1
        events += self._serve_kicks()
        events += self.device.poll()
        return events

    def wait(self, timeout: float, extra: Sequence[int] = ()) -> bool:
        """Block until a message, a connection or a kick is ready, or one of ``extra``
        is readable (at most ``timeout``)."""
        if self.closed:
            return False
        fds: list[int] = list(extra)
        if self.conn is None:
            fds.append(self.listener.fileno())
        else:
            fds.append(self.conn.fileno())
        session = self.session
        if session is not None:
            if any(r.polling for r in session.rings):
                return True  # a polled ring: never sleep
            fds += [r.kick.fd for r in session.rings if r.kick is not None and r.kick.fd >= 0]
        try:
            ready, _, _ = select.select(fds, [], [], max(0.0, timeout))
        except (OSError, ValueError):
            return False
        return bool(ready)

    # connections
    def _accept(self) -> int:
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            return 0
        conn.setblocking(False)
        self.conn = conn
        self.session = Session(self.device, self.protocol_features)
        self.sessions += 1
        return 1

    def disconnect(self) -> None:
        """Close the current connection (as a backend restart would); the frontend may
        reconnect (QEMU: ``-chardev socket,...,reconnect=N``) and start a fresh session."""
        self._end_session()

    def _end_session(self, error: FrontendProtocolError | None = None) -> None:
        if error is not None and not isinstance(error, SessionClosed):
            self.errors.append(error)
        if self.session is not None:
            self.session.close()
            self.session = None
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.close()
            self.conn = None

    def _serve_one(self) -> bool:
        """Read, handle and answer one message; False when the session ended."""
        conn, session = self.conn, self.session
        assert conn is not None and session is not None
        try:
            msg = self._read_message(conn)
            answer = session.handle(msg)
            self.messages += 1
            if answer is not None:
                self._send(conn, answer)
        except FrontendProtocolError as err:
            self._end_session(err)
            return False
        return True

    def _send(self, conn: socket.socket, data: bytes) -> None:
        try:
            conn.settimeout(self.read_timeout_s)
            conn.sendall(data)
        except OSError as err:
            raise SessionClosed(f"reply not sent: {err}", section=COMMUNICATION) from None
        finally:
            with contextlib.suppress(OSError):
                conn.setblocking(False)

    def _read_message(self, conn: socket.socket) -> Message:
        """One message: the header (with any file descriptors), then the payload, each
        within ``read_timeout_s``."""
        fds: list[int] = []
        try:
            conn.settimeout(self.read_timeout_s)
            head = self._recv_exact(conn, HEADER.size, fds)
            header = parse_header(head)
            payload = self._recv_exact(conn, header.size, fds) if header.size else b""
        except FrontendProtocolError:
            _close_all(fds)
            raise
        finally:
            with contextlib.suppress(OSError):
                conn.setblocking(False)
        return Message(header.request, header.flags, payload, tuple(fds))

    @staticmethod
    def _recv_exact(conn: socket.socket, size: int, fds: list[int]) -> bytes:
        data = bytearray()
        for _ in range(size + 1):  # each pass reads at least a byte, or ends
            if len(data) >= size:
                break
            try:
                chunk, anc, flags, _ = conn.recvmsg(size - len(data), _ANC_SIZE)
            except TimeoutError:
                raise MessageError(f"message truncated: {len(data)} of {size} bytes arrived "
                                   "in time", rule="vhost-user-truncated",
                                   section=MESSAGE_FORMAT) from None
            except OSError as err:
                raise SessionClosed(f"connection error: {err}", section=COMMUNICATION) from None
            for level, kind, blob in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    got = array.array("i")
                    got.frombytes(blob[: len(blob) - len(blob) % _FD_SIZE])
                    fds.extend(got)
            if flags & socket.MSG_CTRUNC:
                raise MessageError(f"more than {MAX_FDS} file descriptors with one message",
                                   rule="vhost-user-fds", section=MESSAGE_FORMAT)
            if not chunk:
                if data:
                    raise MessageError(f"connection closed after {len(data)} of {size} bytes",
                                       rule="vhost-user-truncated", section=MESSAGE_FORMAT)
                raise SessionClosed("the frontend closed the connection", section=COMMUNICATION)
            data += chunk
        return bytes(data)

    def _serve_kicks(self) -> int:
        session = self.session
        if session is None:
            return 0
        n = 0
        for ring in session.rings:
            if ring.polling or (ring.kick is not None and ring.kick.consume()):
                session.kick(ring.index)
                n += 1
        return n

    def close(self) -> None:
        """End the session, stop listening, remove the socket file."""
        if self.closed:
            return
        self._end_session()
        self.listener.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        self.closed = True

    def __enter__(self) -> VhostUserServer:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _readable(conn: socket.socket) -> bool:
    try:
        ready, _, _ = select.select([conn], [], [], 0)
    except (OSError, ValueError):
        return True  # the read reports the error
    return bool(ready)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
