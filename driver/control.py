"""The driver's side of the control virtqueue (virtio-v1.2 §5.1.6.5): one command at a
time — class, command and data in a device-readable buffer, a one-byte device-writable
ack after it — then wait for the device to use the chain, as Linux's
``virtnet_send_command`` does (it spins; here the wait is bounded and a device that never
answers is a recorded error, not a hang)."""

from __future__ import annotations

from collections.abc import Callable

from driver.virtqueue import DriverQueue
from virtio import spec
from virtio.ctrl import Ack, encode_command
from virtio.errors import DriverProtocolError
from virtio.memory import GuestMemory

BUFFER_SIZE = 4096
"""Room for one command and its ack (the largest, a full MAC table, is capped by it)."""
POLL_LIMIT = 64
"""Times the driver lets the device run (``wait``) before it gives up on a command."""
_NO_ACK = 0xFF


class ControlChannel:
    """controlq: sends commands and returns the device's :class:`Ack`."""

    def __init__(
        self,
        queue: DriverQueue,
        buffer: int,
        memory: GuestMemory,
        notify: Callable[[int], None],
    ) -> None:
        self.queue = queue
        self.buffer = buffer
        self.memory = memory
        self._notify = notify
        self.wait: Callable[[], None] | None = None
        """Lets the device make progress while the driver waits for a command (a
        device in another thread or on the event loop); None: the device answers
        within the notification."""
        self.broken = False
        self.sent = 0
        self.errors = 0
        """Commands answered VIRTIO_NET_ERR."""
        self.result = b""
        """The command-specific-result of the last command answered OK."""

    def command(self, cls: int, cmd: int, data: bytes = b"", result_size: int = 0) -> Ack:
        """Send one command and wait for its ack. With ``result_size``, room for a
        command-specific-result after the ack (v1.3 §5.1.6.5; NOTF_COAL VQ_GET), left
        in :attr:`result` when the device answered OK. Raises
        :class:`DriverProtocolError` when the device never uses the chain, writes no
        ack or an ack that is neither OK nor ERR, or answers OK with a result shorter
        than asked; the channel is then broken (a command may still be in flight)."""
        if self.broken:
            raise DriverProtocolError("the control queue is broken", rule="ctrl-broken",
                                      section=spec.NET_CTRL)
        message = encode_command(cls, cmd, data)
        if len(message) + 1 + result_size > BUFFER_SIZE:
            raise ValueError(f"a {len(message)}-byte command does not fit the "
                             f"{BUFFER_SIZE}-byte control buffer")
        ack_addr = self.buffer + len(message)
        self.memory.write(self.buffer, message)
        self.memory.write(ack_addr, bytes((_NO_ACK,)))
        q = self.queue
        self.result = b""
        q.add([(self.buffer, len(message))], [(ack_addr, 1 + result_size)], "ctrl")
        if q.kick_needed():
            self._notify(q.index)
        self.sent += 1
        entry = q.get_used()
        for _ in range(POLL_LIMIT):
            if entry is not None or self.wait is None:
                break
            self.wait()
            entry = q.get_used()
        if entry is None:
            self.broken = True
            raise DriverProtocolError(
                f"the device did not use control command ({cls}, {cmd})",
                rule="ctrl-no-completion", section=spec.NET_CTRL,
            )
        _, length = entry
        ack = self.memory.read(ack_addr, 1)[0]
        if length < 1 or ack not in (Ack.OK, Ack.ERR):
            self.broken = True
            raise DriverProtocolError(
                f"control command ({cls}, {cmd}): used length {length}, ack {ack:#x} "
                "(the device must write VIRTIO_NET_OK or VIRTIO_NET_ERR)",
                rule="ctrl-bad-ack", section=spec.NET_CTRL,
            )
        if ack == Ack.ERR:
            self.errors += 1
        elif result_size:
            if length < 1 + result_size:
                self.broken = True
                raise DriverProtocolError(
                    f"control command ({cls}, {cmd}) answered OK with {length - 1} of the "
                    f"{result_size} result bytes", rule="ctrl-result-short",
                    section=spec.NET_NOTF_COAL,
                )
            self.result = self.memory.read(ack_addr + 1, result_size)
        return Ack(ack)
