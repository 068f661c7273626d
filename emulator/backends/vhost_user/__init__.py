"""A vhost-user backend: our virtio-net device serving the data rings of QEMU's
``-netdev vhost-user`` (QEMU ``docs/interop/vhost-user.rst``), so the real Linux
``virtio_net`` driver in a guest drives the same device code as the in-memory emulator.

- :mod:`.messages`: the message codec (header, payloads, requests, protocol features);
- :mod:`.session`: the control protocol of one connection (sans-IO);
- :mod:`.memory`: SET_MEM_TABLE's regions mapped into a :class:`~virtio.memory.GuestMemory`;
- :mod:`.vring`: ring state and the kick/call/err eventfds;
- :mod:`.net`: the net device adapter and its holding network port;
- :mod:`.server`: the Unix socket, one session at a time, reconnects.
"""

from emulator.backends.vhost_user.errors import FrontendProtocolError, MessageError, SessionClosed
from emulator.backends.vhost_user.net import (
    DEFAULT_OFFER,
    DELEGATED,
    HoldingPort,
    VhostUserNet,
    vhost_net_config,
)
from emulator.backends.vhost_user.server import VhostUserServer
from emulator.backends.vhost_user.session import OFFERED_PROTOCOL_FEATURES, Session, VhostDevice

__all__ = [
    "DEFAULT_OFFER",
    "DELEGATED",
    "OFFERED_PROTOCOL_FEATURES",
    "FrontendProtocolError",
    "HoldingPort",
    "MessageError",
    "Session",
    "SessionClosed",
    "VhostDevice",
    "VhostUserNet",
    "VhostUserServer",
    "vhost_net_config",
]
