"""The send buffer: bytes the application wrote that are not yet acknowledged.

Byte 0 of the buffer is the oldest unacknowledged data octet; the connection maps it to
a sequence number. Reads copy out slices for (re)transmission; acknowledged bytes are
dropped from the front (lazily compacted, so an ACK costs no memmove of the whole buffer).
"""

from __future__ import annotations

_COMPACT_AT = 1 << 16


class SendBuffer:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._buf = bytearray()
        self._head = 0

    def __len__(self) -> int:
        return len(self._buf) - self._head

    @property
    def free(self) -> int:
        return self.capacity - len(self)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append what fits; returns the number of bytes taken."""
        n = min(len(data), self.free)
        if n > 0:
            self._buf += memoryview(data)[:n]
        return max(n, 0)

    def peek(self, offset: int, length: int) -> bytes:
        """``length`` bytes (fewer at the end) starting ``offset`` bytes into the buffer."""
        if offset < 0 or length <= 0:
            return b""
        start = self._head + offset
        return bytes(self._buf[start : start + length])

    def consume(self, n: int) -> None:
        """Drop ``n`` acknowledged bytes from the front."""
        n = max(0, min(n, len(self)))
        self._head += n
        if self._head >= _COMPACT_AT and self._head * 2 >= len(self._buf):
            del self._buf[: self._head]
            self._head = 0
        elif self._head == len(self._buf):
            self._buf.clear()
            self._head = 0
