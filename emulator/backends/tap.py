"""A Linux tap device as a peer: :class:`TapDevice` (the file descriptor) and
:class:`TapBackend` (the ``Backend`` protocol over it).

A tap opened with ``IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`` exchanges, per ``read``/``write``,
one Ethernet frame preceded by a ``virtio_net_hdr`` of the size set with
``TUNSETVNETHDRSZ`` (10, 12 or 20 bytes): the same header a virtio driver gives its
device, so the kernel's own checks and segmentation (``virtio_net_hdr_to_skb``) serve as
a reference. ``TUNSETOFFLOAD`` says which offloads the reader (us) can take: with TSO
on, the kernel may hand us large GSO frames; with 0 it segments and checksums for us.

The device is non-persistent: it disappears when its file descriptor is closed. The fd
is non-blocking; :meth:`TapDevice.read` returns None when nothing is queued and
:meth:`TapDevice.wait_readable` waits (with a timeout, always) via ``select``.

ioctl numbers and flags are those of ``include/uapi/linux/if_tun.h``.
"""

from __future__ import annotations

import errno as errno_mod
import fcntl
import os
import select
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntFlag
from types import TracebackType

from emulator.backends.base import OffloadReceiver, Receiver
from virtio.errors import VirtioError
from virtio.net_hdr import VALID_SIZES, NetHdr

__all__ = [
    "TUNSETIFF",
    "TUNSETOFFLOAD",
    "TUNSETVNETHDRSZ",
    "TapBackend",
    "TapCounters",
    "TapDevice",
    "TapError",
    "TunFlag",
    "TunOffload",
]

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8

_IFREQ = struct.Struct("16sH")
"""struct ifreq as TUNSETIFF reads it: the name, then ifr_flags (padded by the kernel's
larger union; the ioctl copies sizeof(struct ifreq) = 40 bytes, so the buffer is 40)."""
_IFREQ_SIZE = 40
IFNAMSIZ = 16

MAX_FRAME = 65535 + 14 + 4
"""Largest frame a read returns: a 64 KiB GSO packet plus Ethernet and VLAN headers."""


class TunFlag(IntFlag):
    """``ifr_flags`` for TUNSETIFF."""

    TUN = 0x0001
    TAP = 0x0002
    NO_PI = 0x1000
    VNET_HDR = 0x4000


class TunOffload(IntFlag):
    """``TUN_F_*``: the offloads the reader of the tap accepts (TUNSETOFFLOAD).

    The kernel refuses (EINVAL) any segmentation flag without CSUM, and USO4 without
    USO6 or the reverse (USO: Linux 6.2+). Seen on 6.18: UFO is accepted again.
    """

    CSUM = 0x01
    TSO4 = 0x02
    TSO6 = 0x04
    TSO_ECN = 0x08
    UFO = 0x10
    USO4 = 0x20
    USO6 = 0x40
    UDP_TUNNEL_GSO = 0x080
    """Linux 6.17+; needs the 24-byte tunnel header, which this module does not model.
    Seen on 6.18: accepted with CSUM and a TSO flag, after which every read from the tap
    fails with EFAULT when the header size is 10, 12 or 20."""
    UDP_TUNNEL_GSO_CSUM = 0x100


NO_OFFLOADS = TunOffload(0)


class TapError(VirtioError):
    """A tap operation failed. :attr:`errno` is the kernel's error number (``EINVAL`` on
    a write: the kernel refused the virtio_net_hdr), or None when the failure is ours
    (a short read)."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno

    @property
    def errno_name(self) -> str:
        return errno_mod.errorcode.get(self.errno, str(self.errno)) if self.errno is not None else "-"


def _os_error(what: str, exc: OSError) -> TapError:
    name = errno_mod.errorcode.get(exc.errno or 0, str(exc.errno))
    return TapError(f"{what}: {name} ({exc.strerror})", exc.errno)


class TapDevice:
    """One tap interface, owned through its ``/dev/net/tun`` file descriptor.

    ``name`` may be empty (the kernel picks ``tapN``) or a pattern such as ``"vnb%d"``;
    :attr:`name` holds the name the kernel gave. ``vnet_hdr_size`` None opens without
    ``IFF_VNET_HDR`` (plain frames; :meth:`write` then ignores the header).
    """

    def __init__(
        self,
        name: str = "",
        *,
        vnet_hdr_size: int | None = 12,
        offloads: TunOffload = NO_OFFLOADS,
    ) -> None:
        if vnet_hdr_size is not None and vnet_hdr_size not in VALID_SIZES:
            raise ValueError(f"vnet_hdr_size must be one of {VALID_SIZES} or None, not {vnet_hdr_size}")
        encoded = name.encode()
        if len(encoded) >= IFNAMSIZ:
            raise ValueError(f"interface name {name!r} is longer than {IFNAMSIZ - 1} bytes")
        self.vnet_hdr_size = vnet_hdr_size
        self._hdr_len = vnet_hdr_size or 0
        self._rbuf = bytearray(self._hdr_len + MAX_FRAME)
        self._zero_hdr = NetHdr().emit(vnet_hdr_size) if vnet_hdr_size else b""
        try:
            self._fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise _os_error("open /dev/net/tun", exc) from None
        try:
            flags = TunFlag.TAP | TunFlag.NO_PI | (TunFlag.VNET_HDR if vnet_hdr_size else 0)
            ifr = bytearray(_IFREQ_SIZE)
            _IFREQ.pack_into(ifr, 0, encoded, int(flags))
            self._ioctl(TUNSETIFF, ifr, "TUNSETIFF")
            self.name = bytes(ifr[:IFNAMSIZ]).split(b"\0", 1)[0].decode()
            if vnet_hdr_size:
                self._ioctl(TUNSETVNETHDRSZ, struct.pack("i", vnet_hdr_size), "TUNSETVNETHDRSZ")
            self.offloads = TunOffload(0)
            self.set_offload(offloads)
        except BaseException:
            os.close(self._fd)
            self._fd = -1
            raise

    def _ioctl(self, request: int, arg: bytes | bytearray | int, what: str) -> None:
        try:
            if isinstance(arg, bytearray):
                fcntl.ioctl(self._fd, request, arg, True)
            else:
                fcntl.ioctl(self._fd, request, arg)
        except OSError as exc:
            raise _os_error(what, exc) from None

    # -- configuration -----------------------------------------------------------------

    def set_offload(self, offloads: TunOffload) -> None:
        """TUNSETOFFLOAD. Raises :class:`TapError` (EINVAL) for flags the kernel refuses."""
        self._check_open()
        self._ioctl(TUNSETOFFLOAD, int(offloads), f"TUNSETOFFLOAD {offloads!r}")
        self.offloads = TunOffload(offloads)

    def try_offload(self, offloads: TunOffload) -> bool:
        """Set ``offloads`` if the kernel accepts them; on refusal keep the previous set
        and return False."""
        previous = self.offloads
        try:
            self.set_offload(offloads)
        except TapError:
            self.set_offload(previous)
            return False
        return True

    # -- I/O ---------------------------------------------------------------------------

    def fileno(self) -> int:
        self._check_open()
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def write(self, hdr: NetHdr | None, frame: bytes | bytearray | memoryview) -> None:
        """Write one frame with its virtio_net_hdr (None: all zeros) in one ``writev``.
        Raises :class:`TapError` with the errno: EINVAL when the kernel refused the header
        (or the frame), EIO when the interface is down."""
        self._check_open()
        if self._hdr_len:
            head = self._zero_hdr if hdr is None else hdr.emit(self._hdr_len)
            parts: list[bytes | bytearray | memoryview] = [head, frame]
        else:
            parts = [frame]
        try:
            written = os.writev(self._fd, parts)
        except OSError as exc:
            raise _os_error(f"write to {self.name}", exc) from None
        expected = self._hdr_len + len(frame)
        if written != expected:
            raise TapError(f"short write to {self.name}: {written} of {expected} bytes")

    def read(self) -> tuple[NetHdr, bytes] | None:
        """One frame and its header, or None when nothing is queued (never blocks)."""
        self._check_open()
        try:
            n = os.readv(self._fd, [self._rbuf])
        except BlockingIOError:
            return None
        except OSError as exc:
            raise _os_error(f"read from {self.name}", exc) from None
        size = self._hdr_len
        if n < size:
            raise TapError(f"short read from {self.name}: {n} bytes, header alone is {size}")
        hdr = NetHdr.parse(self._rbuf, size) if size else NetHdr()
        return hdr, bytes(self._rbuf[size:n])

    def readinto(self, buf: bytearray | memoryview) -> int | None:
        """Raw read of ``header + frame`` into ``buf``: the byte count, or None when
        nothing is queued. For hot loops that parse only what they need."""
        self._check_open()
        try:
            return os.readv(self._fd, [buf])
        except BlockingIOError:
            return None
        except OSError as exc:
            raise _os_error(f"read from {self.name}", exc) from None

    def wait_readable(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for a frame; True when one is queued."""
        self._check_open()
        readable, _, _ = select.select([self._fd], [], [], max(0.0, timeout))
        return bool(readable)

    def drain(self, limit: int = 100_000) -> int:
        """Read and discard queued frames (at most ``limit``); return how many."""
        count = 0
        while count < limit and self.read() is not None:
            count += 1
        return count

    # -- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the fd; the (non-persistent) interface disappears with it."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def _check_open(self) -> None:
        if self._fd < 0:
            raise ValueError("tap device is closed")

    def __enter__(self) -> TapDevice:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)
            self._fd = -1

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd}"
        return f"<TapDevice {getattr(self, 'name', '?')} {state} vnet_hdr={self.vnet_hdr_size}>"


@dataclass
class TapCounters:
    tx_frames: int = 0
    tx_errors: int = 0
    rx_frames: int = 0
    rx_delivered: int = 0
    """Frames the receiver accepted (returned True)."""
    rx_undeliverable: int = 0
    """Frames read while no receiver was set, or that the receiver refused."""
    rx_paused: int = 0
    """Polls that stopped reading because the device had no room (frames left queued)."""


class TapBackend:
    """The ``Backend`` protocol over a :class:`TapDevice`, driven as a ``TimedSource``.

    - :meth:`send` writes the frame with a zero virtio_net_hdr (or the one given), so the
      kernel takes it as a plain frame with a complete checksum.
    - :meth:`poll` reads what is queued on the tap (at most ``max_frames_per_poll``) and
      hands each frame to the receiver; it returns how many frames it read.
    - :meth:`next_deadline` is None when ``poll_interval_ns`` is None, else the time of
      the last poll plus the interval (0 before the first poll, so due at once).

    How it fits an event loop. The tap is a real peer: frames arrive in real time, and
    nothing in the fd says *when* one will. So:

    - In a *real-time* loop (``now`` read from a monotonic clock) give a poll interval,
      e.g. 100 µs: the loop polls the tap every interval while it runs. Instead of
      sleeping until the next deadline such a loop may ``select`` on :meth:`fileno`
      (or call :meth:`wait`) with the deadline as timeout, so frames are picked up at
      once and an idle tap costs no CPU.
    - In a *virtual-time* loop leave the interval None and call :meth:`poll` from an idle
      hook or after a :meth:`wait`: a source with a periodic deadline is never idle, so
      ``run_until_idle`` would run to its step bound (``run_for`` is fine).

    Errors: a failed write raises :class:`TapError` when ``raise_on_error`` (the default,
    best for tests); otherwise it is counted in ``counters.tx_errors`` and kept in
    :attr:`last_error`, as a NIC counts a frame it could not send.
    """

    def __init__(
        self,
        tap: TapDevice,
        *,
        poll_interval_ns: int | None = None,
        max_frames_per_poll: int = 256,
        raise_on_error: bool = True,
    ) -> None:
        if poll_interval_ns is not None and poll_interval_ns <= 0:
            raise ValueError(f"poll_interval_ns must be > 0 or None, got {poll_interval_ns}")
        if max_frames_per_poll < 1:
            raise ValueError(f"max_frames_per_poll must be >= 1, got {max_frames_per_poll}")
        self.tap = tap
        self.poll_interval_ns = poll_interval_ns
        self.max_frames_per_poll = max_frames_per_poll
        self.raise_on_error = raise_on_error
        self.counters = TapCounters()
        self.last_error: TapError | None = None
        self._receiver: Receiver | None = None
        self._offload_receiver: OffloadReceiver | None = None
        self._ready: Callable[[], bool] | None = None
        self._last_poll: int | None = None

    def send(self, frame: bytes, hdr: NetHdr | None = None) -> None:
        """Write ``frame`` to the tap with ``hdr`` (None: a zero header)."""
        try:
            self.tap.write(hdr, frame)
        except TapError as exc:
            self.counters.tx_errors += 1
            self.last_error = exc
            if self.raise_on_error:
                raise
            return
        self.counters.tx_frames += 1

    def set_receiver(self, receiver: Receiver | None) -> None:
        self._receiver = receiver

    def set_offload_receiver(self, receiver: OffloadReceiver | None) -> None:
        """Frames the kernel hands over with a partial checksum or as GSO packets (the
        tap's TUNSETOFFLOAD flags allow it) go here with their header."""
        self._offload_receiver = receiver

    def set_ready_check(self, ready: Callable[[], bool] | None) -> None:
        """While ``ready()`` says no, :meth:`poll` leaves frames queued in the tap (the
        kernel queues or drops them by its own rules, as with QEMU's tap backend)."""
        self._ready = ready

    def next_deadline(self) -> int | None:
        if self.poll_interval_ns is None:
            return None
        if self._last_poll is None:
            return 0
        return self._last_poll + self.poll_interval_ns

    def poll(self, now: int) -> int:
        """Hand every queued frame (at most ``max_frames_per_poll``) to the receiver."""
        self._last_poll = now
        count = 0
        counters = self.counters
        ready = self._ready
        while count < self.max_frames_per_poll:
            if ready is not None and not ready():
                counters.rx_paused += 1
                break
            item = self.tap.read()
            if item is None:
                break
            count += 1
            counters.rx_frames += 1
            hdr, frame = item
            offload = self._offload_receiver
            if offload is not None and (hdr.gso_type or hdr.needs_csum):
                accepted = offload(frame, hdr)
            else:
                receiver = self._receiver
                accepted = receiver is not None and receiver(frame)
            if accepted:
                counters.rx_delivered += 1
            else:
                counters.rx_undeliverable += 1
        return count

    def fileno(self) -> int:
        return self.tap.fileno()

    def wait(self, timeout: float) -> bool:
        """Block at most ``timeout`` seconds until a frame is queued on the tap."""
        return self.tap.wait_readable(timeout)
