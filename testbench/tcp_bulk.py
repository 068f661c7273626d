"""A TCP bulk transfer between the two hosts of an emulated pair, each running the stack
on our driver and device: the scenario of the demo, the goodput benchmark and the
stack's end-to-end tests.

Offload modes (what both drivers ask their devices for):
- ``tso``: HOST_TSO4/6 + CSUM on transmit (the stack emits up to 64 KiB packets that the
  device segments), GUEST_TSO4/6 + GUEST_CSUM + MRG_RXBUF on receive (the device
  coalesces);
- ``csum``: checksum offload both ways, MSS-sized segments;
- ``none``: no offload; the stack checksums every segment itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driver.net import DEFAULT_WANTED, DriverConfig
from emulator.backends.wire import FaultConfig
from emulator.net.device import NetDeviceConfig
from stack.interface import InterfaceConfig
from stack.sockets import TcpSocket
from stack.stack import StackConfig
from stack.tcp.config import TcpConfig
from stack.tcp.connection import TcpState
from testbench.host import HostConfig, Pair, make_pair
from testbench.loop import EventLoop
from virtio.constants import FeatureBit as F
from virtio.features import FeatureSet

MIB = 1 << 20
MAC_A, MAC_B = bytes.fromhex("525400000001"), bytes.fromhex("525400000002")
TX_OFFLOADS = FeatureSet.of(F.CSUM, F.HOST_TSO4, F.HOST_TSO6, F.HOST_ECN, F.HOST_USO)
MODES: dict[str, FeatureSet] = {
    "tso": DEFAULT_WANTED | FeatureSet.of(F.GUEST_CSUM, F.GUEST_TSO4, F.GUEST_TSO6,
                                          F.GUEST_ECN, F.MRG_RXBUF),
    "csum": (DEFAULT_WANTED - FeatureSet.of(F.HOST_TSO4, F.HOST_TSO6, F.HOST_ECN, F.HOST_USO))
    | FeatureSet.of(F.GUEST_CSUM, F.MRG_RXBUF),
    "none": (DEFAULT_WANTED - TX_OFFLOADS) | FeatureSet.of(F.MRG_RXBUF),
}
PORT = 5201
RX_BUFFER_SIZE = 4096
"""Mergeable receive buffers of a page, as Linux virtio_net posts them under bulk traffic:
``get_mergeable_buf_len`` sizes them by an average of the received packet lengths,
clamped to a page, so a stream of 64 KB coalesced packets drives them to 4 KiB."""


def stack_pair(mode: str = "tso", *, faults: FaultConfig | None = None, seed: int = 1,
               queue_pairs: int = 1, memory: int = 48 * MIB, profile: str = "strict",
               rate_bps: int = 10_000_000_000,
               rx_buffer_size: int | None = None,
               wanted: FeatureSet | None = None, tcp: TcpConfig | None = None,
               quirks: frozenset[str] = frozenset()) -> Pair:
    """Host A (10.0.0.1, fd00::1) ↔ wire ↔ host B (10.0.0.2, fd00::2), stacks on top.
    ``rx_buffer_size`` None: page-sized buffers (:data:`RX_BUFFER_SIZE`) when MRG_RXBUF
    is wanted, the driver's default otherwise (a whole 64 KiB buffer per packet without
    MRG_RXBUF, §5.1.6.3.1); a number: that size either way.
    ``wanted``: what both drivers ask for, instead of ``mode``'s set. ``tcp``: both
    stacks' TCP settings (default :class:`TcpConfig`). ``quirks``: both drivers'
    misbehaviours (driver/quirks.py)."""
    if mode not in MODES:
        raise ValueError(f"unknown offload mode {mode!r}; known: {', '.join(MODES)}")
    base = MODES[mode] if wanted is None else wanted
    wanted = base | (FeatureSet.of(F.RSS) if queue_pairs > 1 else FeatureSet())
    if rx_buffer_size is None and F.MRG_RXBUF in wanted:
        rx_buffer_size = RX_BUFFER_SIZE
    drv = DriverConfig(wanted=wanted, queue_size=256, queue_pairs=queue_pairs,
                       rx_buffer_size=rx_buffer_size, quirks=quirks)
    dev = NetDeviceConfig(profile=profile, max_queue_pairs=queue_pairs)
    p = make_pair(EventLoop(), a=HostConfig("a", MAC_A, memory, dev, drv),
                  b=HostConfig("b", MAC_B, memory, dev, drv), faults=faults, seed=seed,
                  rate_bps=rate_bps)
    add_stacks(p, tcp)
    return p


def add_stacks(p: Pair, tcp: TcpConfig | None = None) -> None:
    """Put a stack on both hosts: A is 10.0.0.1 / fd00::1, B 10.0.0.2 / fd00::2."""
    for host, n in ((p.a, 1), (p.b, 2)):
        host.add_stack(StackConfig(InterfaceConfig(
            host.driver.mac, ipv4=f"10.0.0.{n}/24", ipv6=(f"fd00::{n}/64",)),
            tcp=tcp or TcpConfig()))


def pattern(n: int) -> bytes:
    """``n`` bytes that do not repeat with any period a TCP bug would hide behind."""
    i = np.arange(65_521, dtype=np.int64)  # a prime length
    block = ((i * 131 + (i >> 8) * 7) & 0xFF).astype(np.uint8).tobytes()
    reps = -(-n // len(block))
    return (block * reps)[:n]


@dataclass
class BulkResult:
    size: int
    received: int
    exact: bool
    closed: bool
    virtual_ns: int
    """Virtual time from connect until the receiver had every byte."""
    wall_s: float
    """Wall time for the same."""
    client: TcpSocket
    server: TcpSocket | None
    layers: dict[str, Any] = field(default_factory=dict)

    @property
    def goodput_bps(self) -> float:
        """Payload bits per wall-clock second (the benchmark's measure)."""
        return self.received * 8 / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def virtual_goodput_bps(self) -> float:
        return self.received * 8 * 1e9 / self.virtual_ns if self.virtual_ns else 0.0


def run_bulk(p: Pair, size: int, *, v6: bool = False, max_steps: int = 20_000_000,
             chunk: int = 1 << 20) -> BulkResult:
    """Send ``size`` bytes A → B on one connection, close both sides, and check every
    byte; bounded by ``max_steps`` loop steps."""
    a, b = p.a, p.b
    assert a.stack is not None and b.stack is not None
    data = pattern(size)
    view = memoryview(data)
    listener = b.stack.tcp_listen(PORT)
    client = a.stack.tcp_connect("fd00::2" if v6 else "10.0.0.2", PORT)
    received = bytearray()
    state: dict[str, Any] = {"sent": 0, "closed": False, "server": None}

    def client_app() -> bool:
        did = False
        sent = state["sent"]
        if client.established and sent < size:
            n = client.send(view[sent:sent + min(chunk, client.send_space)])
            state["sent"] = sent + n
            did = n > 0
        if state["sent"] == size and not state["closed"] and client.established:
            client.close()
            state["closed"] = True
            did = True
        return did

    def server_app() -> bool:
        server = state["server"]
        if server is None:
            server = state["server"] = listener.accept()
            if server is None:
                return False
        got = server.recv()
        received.extend(got)
        if len(received) >= size and "done_ns" not in state:
            state["done_ns"] = p.loop.now
            state["done_wall"] = time.perf_counter()
        if server.eof and server.state is TcpState.CLOSE_WAIT:
            server.close()
            return True
        return bool(got)

    a.apps.append(client_app)
    b.apps.append(server_app)
    start_ns = p.loop.now
    started = time.perf_counter()
    a.kick()
    p.loop.run_until_idle(max_steps=max_steps)
    ended = time.perf_counter()
    wall = state.get("done_wall", ended) - started
    a.apps.remove(client_app)
    b.apps.remove(server_app)
    listener.close()
    server = state["server"]
    return BulkResult(
        size=size, received=len(received), exact=bytes(received) == data,
        closed=client.state in (TcpState.TIME_WAIT, TcpState.CLOSED),
        virtual_ns=state.get("done_ns", p.loop.now) - start_ns, wall_s=wall, client=client,
        server=server,
        layers=layer_counters(p),
    )


def layer_counters(p: Pair) -> dict[str, Any]:
    """Per layer and host: stack (TCP, interface), driver, device."""
    out: dict[str, Any] = {}
    for host in (p.a, p.b):
        stack = host.stack
        assert stack is not None
        out[host.name] = {
            "stack": vars(stack.counters).copy(),
            "interface": vars(stack.iface.counters).copy(),
            "driver": host.driver.counters.as_dict(),
            "device": host.device.counters.as_dict(),
        }
    return out
