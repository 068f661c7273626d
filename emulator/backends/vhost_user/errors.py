"""Errors of the vhost-user backend (DESIGN.md, "Errors say who is at fault").

The frontend (QEMU) is the party that can break the vhost-user protocol on this socket, as
the driver is for a virtqueue: a :class:`FrontendProtocolError` names the rule and the
place of QEMU's ``docs/interop/vhost-user.rst`` that states it. The server catches it at
the session boundary, logs it and closes the session cleanly; it never escapes as
``struct.error``, ``OSError`` or ``IndexError``. Rules the *guest driver* breaks inside
the rings are the device's business as ever (monitor records, DEVICE_NEEDS_RESET).
"""

from __future__ import annotations

from virtio.errors import ProtocolError

SPEC = "QEMU docs/interop/vhost-user.rst"
"""The vhost-user specification (QEMU 7.2)."""


def ref(part: str) -> str:
    """A reference into the vhost-user specification."""
    return f"{SPEC}, {part}"


MESSAGE_FORMAT = ref("Message Specification / Header")
COMMUNICATION = ref("Communication")
FRONT_END_REQUESTS = ref("Front-end message types")
RING_STATES = ref("Ring states")
MEMORY_REGIONS = ref("Memory regions description")
REPLY_ACK = ref("REPLY_ACK")
MULTIPLE_QUEUES = ref("Multiple queue support")


class FrontendProtocolError(ProtocolError):
    """The frontend broke the vhost-user protocol: the session ends."""

    rule = "vhost-user"


class MessageError(FrontendProtocolError):
    """A message that cannot be decoded: bad version, size, payload or file descriptors."""

    rule = "vhost-user-message"


class SessionClosed(FrontendProtocolError):
    """The connection ended (EOF or a socket error) — in the middle of a message when
    raised from a read."""

    rule = "vhost-user-closed"
