"""Per-ring state of a vhost-user session and its eventfds (vhost-user.rst "Ring states").

A ring is *started* once it has a kick (SET_VRING_KICK, or its no-fd polling variant)
and *stopped* by GET_VRING_BASE; it is *enabled* by SET_VRING_ENABLE 1 — or from the
start when VHOST_USER_F_PROTOCOL_FEATURES was not negotiated. The kick eventfd is the
guest's available buffer notification (virtio-v1.2 §2.3), the call eventfd the used
buffer notification, the err eventfd where the backend reports a broken ring.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass, field

from emulator.backends.vhost_user.messages import VringAddr

_EVENT = (1).to_bytes(8, "little")


class EventFd:
    """An eventfd received from the frontend (owned: closed by :meth:`close`)."""

    __slots__ = ("fd", "signals")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.signals = 0
        try:
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        except OSError:
            pass  # not a descriptor we can poll: reads will find nothing

    def consume(self) -> int:
        """Read the counter (non-blocking): how many events were posted; 0 for none."""
        try:
            data = os.read(self.fd, 8)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            return 0
        return int.from_bytes(data, "little") if len(data) == 8 else 0

    def signal(self) -> bool:
        """Post one event; False when the write failed (the frontend closed its end)."""
        try:
            os.write(self.fd, _EVENT)
        except OSError:
            return False
        self.signals += 1
        return True

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    def __repr__(self) -> str:
        return f"EventFd({self.fd})"


@dataclass
class Vring:
    """What the frontend set for one ring."""

    index: int
    num: int = 0
    base: int = 0
    """last_avail_idx to start from (SET_VRING_BASE); updated when the ring stops."""
    addr: VringAddr | None = None
    kick: EventFd | None = None
    call: EventFd | None = None
    err: EventFd | None = None
    polling: bool = False
    """SET_VRING_KICK with the no-fd bit: the backend polls the ring instead."""
    enabled: bool = False
    started: bool = False
    kicks: int = 0
    calls: int = 0
    signalled_used: int | None = field(default=None)
    """used.idx at the last call notification (to call only rings that moved)."""

    def set_fd(self, kind: str, fd: int | None) -> None:
        """Replace the kick, call or err eventfd (the old one is closed)."""
        old: EventFd | None = getattr(self, kind)
        if old is not None:
            old.close()
        setattr(self, kind, EventFd(fd) if fd is not None else None)

    def close(self) -> None:
        for kind in ("kick", "call", "err"):
            self.set_fd(kind, None)
        self.started = False
