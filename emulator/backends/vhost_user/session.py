"""One vhost-user session: the control protocol, message by message, sans-IO.

:class:`Session` is fed decoded :class:`~emulator.backends.vhost_user.messages.Message` s
by the server and returns the reply bytes to send (or None); it owns the ring state, the
mapped memory table and every file descriptor the frontend handed over, and drives a
:class:`VhostDevice` (the net device adapter) through ``start``/``stop``/``kick``. What the
frontend gets wrong raises :class:`FrontendProtocolError`; the server then closes the
session (:meth:`Session.close` releases everything). References are to QEMU's
``docs/interop/vhost-user.rst``.

Handled: GET/SET_FEATURES, GET/SET_PROTOCOL_FEATURES, SET_OWNER, RESET_OWNER,
SET_MEM_TABLE, SET_VRING_NUM/ADDR/BASE/KICK/CALL/ERR/ENABLE, GET_VRING_BASE (replies and
stops the ring), GET_QUEUE_NUM, and REPLY_ACK for every request without a reply of its
own. Other known requests (never sent for the protocol features offered here) are
answered "failed" when a reply is asked for and otherwise ignored, and counted.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterable
from typing import Protocol

from emulator.backends.vhost_user.errors import (
    FRONT_END_REQUESTS,
    MULTIPLE_QUEUES,
    REPLY_ACK,
    RING_STATES,
    FrontendProtocolError,
    MessageError,
)
from emulator.backends.vhost_user.memory import MemoryTable
from emulator.backends.vhost_user.messages import (
    F_PROTOCOL_FEATURES,
    Message,
    ProtocolFeature,
    Request,
    check_message,
    decode_mem_table,
    decode_u64,
    decode_vring_addr,
    decode_vring_fd,
    decode_vring_state,
    reply,
    u64,
    vring_state,
)
from emulator.backends.vhost_user.vring import Vring
from virtio.constants import MAX_QUEUE_SIZE
from virtio.memory import GuestMemory

OFFERED_PROTOCOL_FEATURES = (1 << ProtocolFeature.MQ) | (1 << ProtocolFeature.REPLY_ACK)
"""MQ (so the frontend asks GET_QUEUE_NUM) and REPLY_ACK."""

_OWN_REPLY = frozenset({
    Request.GET_FEATURES, Request.GET_PROTOCOL_FEATURES, Request.GET_VRING_BASE,
    Request.GET_QUEUE_NUM, Request.GET_CONFIG, Request.GET_INFLIGHT_FD,
    Request.GET_MAX_MEM_SLOTS, Request.GET_STATUS, Request.POSTCOPY_ADVISE,
    Request.POSTCOPY_END, Request.CREATE_CRYPTO_SESSION,
})
"""Requests whose reply is their result ("Front-end message types": a reply is sent);
REPLY_ACK does not apply to them."""


class VhostDevice(Protocol):
    """What a session drives: a device whose queues the frontend's rings feed."""

    num_queues: int
    """Rings the device has (data queues only: QEMU keeps the control queue)."""
    queue_size_max: int

    @property
    def running(self) -> bool: ...

    def offered_features(self) -> int:
        """The virtio feature bits the device offers (no vhost-user bits)."""
        ...

    def start(self, memory: GuestMemory, features: int, rings: list[Vring],
              table: MemoryTable) -> None:
        """Every ring is started: run the device on them. Raises
        :class:`FrontendProtocolError` when a ring cannot be used."""
        ...

    def stop(self) -> list[int]:
        """Stop the device; the last available index of each ring."""
        ...

    def set_memory(self, memory: GuestMemory) -> None:
        """A new memory table while running."""
        ...

    def kick(self, index: int) -> None:
        """Ring ``index`` was kicked (or polled) while enabled."""
        ...

    def ring_enabled(self, index: int, enabled: bool) -> None: ...

    def kick_disabled(self, index: int) -> None:
        """Ring ``index`` was kicked while started but disabled."""
        ...

    def poll(self) -> int:
        """Work due without an event (frames held for the guest); how much was done."""
        ...


class Session:
    """The state of one frontend connection."""

    def __init__(self, device: VhostDevice,
                 protocol_features: int = OFFERED_PROTOCOL_FEATURES) -> None:
        self.device = device
        self.offered_protocol = protocol_features
        self.owner = False
        self.features: int | None = None
        """Virtio features the frontend acked (SET_FEATURES, vhost-user bits removed)."""
        self.acked_protocol_features = 0
        self.protocol_features_negotiated = False
        self.table: MemoryTable | None = None
        self.rings = [Vring(i) for i in range(device.num_queues)]
        self.requests: Counter[str] = Counter()
        """Requests handled, by name."""
        self.unsupported: Counter[str] = Counter()
        self.closed = False

    # offered
    @property
    def offered_features(self) -> int:
        """GET_FEATURES: the device's virtio features plus VHOST_USER_F_PROTOCOL_FEATURES."""
        return self.device.offered_features() | (1 << F_PROTOCOL_FEATURES)

    def _reply_ack(self) -> bool:
        return bool(self.acked_protocol_features & (1 << ProtocolFeature.REPLY_ACK))

    # the entry point
    def handle(self, msg: Message) -> bytes | None:
        """Handle one request; the reply bytes, if any. Takes ownership of ``msg.fds``.
        Raises :class:`FrontendProtocolError` for a message that breaks the protocol."""
        adopted: set[int] = set()
        try:
            request = check_message(msg)
            self.requests[request.name] += 1
            ok, own = self._dispatch(request, msg, adopted)
        except FrontendProtocolError:
            _close_fds(fd for fd in msg.fds if fd not in adopted)
            raise
        _close_fds(fd for fd in msg.fds if fd not in adopted)
        if own is not None:
            return own
        if msg.need_reply and self._reply_ack():
            # REPLY_ACK: u64 0 for success, nonzero for failure
            return reply(request, u64(0 if ok else 1))
        return None

    def _ring(self, index: int, request: Request) -> Vring:
        if not 0 <= index < len(self.rings):
            raise MessageError(f"{request.name} for ring {index}; the device has "
                               f"{len(self.rings)} rings", rule="vhost-user-ring-index",
                               section=MULTIPLE_QUEUES)
        return self.rings[index]

    def _dispatch(self, request: Request, msg: Message,
                  adopted: set[int]) -> tuple[bool, bytes | None]:
        R = Request  # noqa: N806 (short alias for the dispatch table)
        if request is R.GET_FEATURES:
            return True, reply(request, u64(self.offered_features))
        if request is R.SET_FEATURES:
            value = decode_u64(msg)
            extra = value & ~self.offered_features
            if extra:
                raise FrontendProtocolError(
                    f"SET_FEATURES {value:#x} acks bits {extra:#x} the backend did not offer",
                    rule="vhost-user-features-not-offered", section=FRONT_END_REQUESTS)
            self.protocol_features_negotiated = bool(value & (1 << F_PROTOCOL_FEATURES))
            self.features = value & ~(1 << F_PROTOCOL_FEATURES)
            if not self.protocol_features_negotiated:
                # Without VHOST_USER_F_PROTOCOL_FEATURES rings start enabled (Ring states).
                for ring in self.rings:
                    ring.enabled = True
            return True, None
        if request is R.GET_PROTOCOL_FEATURES:
            return True, reply(request, u64(self.offered_protocol))
        if request is R.SET_PROTOCOL_FEATURES:
            value = decode_u64(msg)
            if value & ~self.offered_protocol:
                raise FrontendProtocolError(
                    f"SET_PROTOCOL_FEATURES {value:#x} acks bits "
                    f"{value & ~self.offered_protocol:#x} the backend did not offer",
                    rule="vhost-user-protocol-features-not-offered", section=REPLY_ACK)
            self.acked_protocol_features = value
            return True, None
        if request is R.GET_QUEUE_NUM:
            return True, reply(request, u64(len(self.rings)))
        if request is R.SET_OWNER:
            self.owner = True
            return True, None
        if request is R.RESET_OWNER:
            self._reset()
            return True, None
        if request is R.SET_MEM_TABLE:
            regions = decode_mem_table(msg)
            adopted.update(msg.fds)  # MemoryTable closes them once mapped (or not)
            table = MemoryTable(regions, list(msg.fds))
            old, self.table = self.table, table
            if self.device.running:
                self.device.set_memory(table.memory)
            if old is not None:
                old.close()
            return True, None
        if request in (R.SET_VRING_NUM, R.SET_VRING_BASE, R.SET_VRING_ENABLE,
                       R.GET_VRING_BASE):
            state = decode_vring_state(msg)
            ring = self._ring(state.index, request)
            if request is R.SET_VRING_NUM:
                n = state.num
                if n == 0 or n & (n - 1) or n > min(MAX_QUEUE_SIZE, self.device.queue_size_max):
                    # virtio-v1.2 §2.7: a power of two up to 32768 (and the device's max)
                    return False, None
                ring.num = n
                return True, None
            if request is R.SET_VRING_BASE:
                ring.base = state.num & 0xFFFF
                return True, None
            if request is R.SET_VRING_ENABLE:
                if state.num not in (0, 1):
                    return False, None
                ring.enabled = bool(state.num)
                if self.device.running:
                    self.device.ring_enabled(ring.index, ring.enabled)
                return True, None
            # GET_VRING_BASE: stop the ring and say where it stopped (Ring states).
            if self.device.running:
                for r, base in zip(self.rings, self.device.stop(), strict=True):
                    r.base = base
            ring.started = False
            ring.set_fd("kick", None)
            ring.polling = False
            return True, reply(request, vring_state(ring.index, ring.base))
        if request is R.SET_VRING_ADDR:
            addr = decode_vring_addr(msg)
            ring = self._ring(addr.index, request)
            ring.addr = addr
            return True, None
        if request in (R.SET_VRING_KICK, R.SET_VRING_CALL, R.SET_VRING_ERR):
            vfd = decode_vring_fd(msg)
            ring = self._ring(vfd.index, request)
            if vfd.fd is not None:
                adopted.add(vfd.fd)
            kind = {R.SET_VRING_KICK: "kick", R.SET_VRING_CALL: "call",
                    R.SET_VRING_ERR: "err"}[request]
            ring.set_fd(kind, vfd.fd)
            if request is R.SET_VRING_KICK:
                ring.polling = vfd.fd is None
                ring.started = True
                self._maybe_start()
            return True, None
        # A known request this backend does not serve.
        self.unsupported[request.name] += 1
        if request in _OWN_REPLY:
            raise FrontendProtocolError(
                f"{request.name} needs a reply this backend cannot give (its protocol "
                "feature was not offered)", rule="vhost-user-unsupported",
                section=FRONT_END_REQUESTS)
        return False, None

    def _maybe_start(self) -> None:
        """Start the device once every ring is started and the memory and features are
        known (Ring states: a ring starts with its kick)."""
        if self.device.running or self.table is None or self.features is None:
            return
        if not all(r.started for r in self.rings):
            return
        for r in self.rings:
            if r.addr is None or r.num == 0:
                raise FrontendProtocolError(
                    f"ring {r.index} kicked before its size and addresses were set",
                    rule="vhost-user-ring-incomplete", section=RING_STATES)
        self.device.start(self.table.memory, self.features, self.rings, self.table)

    def kick(self, index: int) -> None:
        """Ring ``index``'s kick eventfd fired (or it is polled)."""
        ring = self.rings[index]
        ring.kicks += 1
        if self.device.running and ring.enabled:
            self.device.kick(index)
        elif self.device.running:
            self.device.kick_disabled(index)

    def _reset(self) -> None:
        if self.device.running:
            self.device.stop()
        for ring in self.rings:
            ring.close()
        self.rings = [Vring(i) for i in range(self.device.num_queues)]
        if self.table is not None:
            self.table.close()
            self.table = None
        self.features = None
        self.acked_protocol_features = 0
        self.protocol_features_negotiated = False
        self.owner = False

    def close(self) -> None:
        """The connection ended: stop the device and release every resource."""
        if self.closed:
            return
        self._reset()
        self.closed = True


def _close_fds(fds: Iterable[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
