"""The UDP workloads of the matrix (the TCP ones are testbench/tcp_bulk.py's run_bulk):
datagrams A → B in bursts, the loop run between bursts so the receive ring never
overflows on a clean wire; every byte checked in order."""

from __future__ import annotations

import time
from dataclasses import dataclass

from testbench.host import Pair
from testbench.tcp_bulk import pattern

PORT_A, PORT_B = 9001, 9000
ADDR_B = bytes([10, 0, 0, 2])
BURST = 32
"""Datagrams sent back to back before the loop runs."""
MAX_STEPS = 5_000_000
"""Bound on loop steps per run of the loop."""
MAX_DRAIN = 4096
"""Bound on datagrams the receiver takes per wake-up."""
SETTLE_STEP_NS = 2_000
SETTLE_LIMIT_NS = 2_000_000
"""How long the sender waits for a burst to arrive before it sends the next."""
RETRIES = 8
"""Loop runs a datagram waits for transmit room before it counts as not sent."""


@dataclass
class UdpResult:
    size: int
    received: int
    exact: bool
    datagrams: int
    unsent: int
    virtual_ns: int
    wall_s: float


def _settle(p: Pair, got: bytearray, expected: int) -> None:
    """Run the loop in small steps of virtual time until ``expected`` bytes arrived, or
    :data:`SETTLE_LIMIT_NS` passed (a lost datagram): never past the moment they did, so
    virtual time measures the transfer, not the timers that come after it."""
    for _ in range(SETTLE_LIMIT_NS // SETTLE_STEP_NS):
        if len(got) >= expected:
            return
        p.loop.run_for(SETTLE_STEP_NS, max_steps=MAX_STEPS)


def run_udp(p: Pair, size: int, payload: int) -> UdpResult:
    """Send ``size`` bytes A → B in datagrams of ``payload`` bytes."""
    a, b = p.a.stack, p.b.stack
    assert a is not None and b is not None
    server, client = b.udp_bind(PORT_B), a.udp_bind(PORT_A)
    data = pattern(size)
    got = bytearray()
    state = {"done_ns": -1}
    start_ns = p.loop.now

    def server_app() -> bool:
        did = False
        for _ in range(MAX_DRAIN):
            dgram = server.recvfrom()
            if dgram is None:
                break
            got.extend(dgram.data)
            did = True
        if did and len(got) >= size and state["done_ns"] < 0:
            state["done_ns"] = p.loop.now
        return did

    p.b.apps.append(server_app)
    started = time.perf_counter()
    unsent = datagrams = 0
    for n, offset in enumerate(range(0, size, payload)):
        datagrams += 1
        chunk = data[offset:offset + payload]
        for _ in range(RETRIES):
            if client.sendto(chunk, ADDR_B, PORT_B):
                break
            _settle(p, got, offset)
        else:
            unsent += 1
        if n == 0 or n % BURST == BURST - 1:  # the first one waits for ARP
            _settle(p, got, min(offset + payload, size))
    _settle(p, got, size)
    wall = time.perf_counter() - started
    p.loop.run_until_idle(max_steps=MAX_STEPS)
    p.b.apps.remove(server_app)
    server.close()
    client.close()
    done = state["done_ns"] if state["done_ns"] >= 0 else p.loop.now
    return UdpResult(size, len(got), bytes(got) == data, datagrams, unsent, done - start_ns,
                     wall)
