"""TCP bulk traffic for scenarios: several flows of large TCP packets handed to the
driver for segmentation (TSO, §5.1.6.2), and a receiver that rebuilds each flow's byte
stream from whatever arrives — wire-sized segments or packets the receiving device
coalesced (§5.1.6.4) — and compares it with what was sent.

It is not a TCP: there is no handshake, window or retransmission (that is the stack's
job); the wire of a scenario using it must be loss-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from stack.device import RxFrame, TxMeta
from stack.wire.ethernet import HEADER_LEN
from testbench.packets import payload_bytes, tcp_packet

BASE_SPORT = 41000
DPORT = 5201
FIRST_SEQ = 1_000_000
_IPV4 = b"\x08\x00"


class TsoDevice(Protocol):
    """What the sender needs of a driver (VirtioNetDriver fits)."""

    def transmit(self, frame: bytes, meta: TxMeta | None = None) -> bool: ...

    def flush(self) -> None: ...


@dataclass
class TcpFlowSender:
    """``packets`` TSO packets of ``size`` payload bytes on ``flows`` flows (source ports
    BASE_SPORT + k), round-robin, each flow's sequence numbers continuing."""

    driver: TsoDevice
    flows: int = 4
    packets: int = 16
    size: int = 32_000
    mss: int = 1448
    sent: int = 0
    _next_flow: int = 0

    @property
    def total(self) -> int:
        return self.flows * self.packets

    @property
    def done(self) -> bool:
        return self.sent >= self.total

    def payload(self, flow: int, index: int) -> bytes:
        return payload_bytes(self.size, flow * 31 + index)

    def pump(self) -> bool:
        queued = 0
        while not self.done:
            flow, index = self.sent % self.flows, self.sent // self.flows
            pkt = tcp_packet(self.payload(flow, index), mss=self.mss, sport=BASE_SPORT + flow,
                             dport=DPORT, seq=FIRST_SEQ + index * self.size)
            meta = TxMeta(self.mss, pkt.hdr.csum_start, pkt.hdr.csum_offset)
            if not self.driver.transmit(pkt.frame, meta):
                break
            self.sent += 1
            queued += 1
        if queued:
            self.driver.flush()
        return queued > 0

    def expected(self, flow: int) -> bytes:
        return b"".join(self.payload(flow, i) for i in range(self.packets))


@dataclass
class TcpFlowReceiver:
    """Rebuilds each flow (by source port) from received IPv4 TCP frames."""

    data: dict[int, dict[int, bytes]] = field(default_factory=dict)
    packets: int = 0
    coalesced: int = 0
    """Received packets that carried more than one wire segment (segment_size set)."""
    queues: dict[int, int] = field(default_factory=dict)
    """Receive queue -> packets of these flows that arrived on it."""
    flow_queues: dict[int, set[int]] = field(default_factory=dict)
    """Flow (source port) -> the receive queues its packets arrived on."""
    other: list[RxFrame] = field(default_factory=list)

    def check(self, frames: list[RxFrame]) -> list[RxFrame]:
        """Take the TCP frames of the bulk flows; return the rest."""
        rest: list[RxFrame] = []
        for rx in frames:
            d = rx.data
            if len(d) < HEADER_LEN + 40 or d[12:14] != _IPV4 or d[23] != 6:
                rest.append(rx)
                continue
            ihl = (d[HEADER_LEN] & 0x0F) * 4
            tcp = HEADER_LEN + ihl
            sport = int.from_bytes(d[tcp:tcp + 2], "big")
            if int.from_bytes(d[tcp + 2:tcp + 4], "big") != DPORT or sport < BASE_SPORT:
                rest.append(rx)
                continue
            seq = int.from_bytes(d[tcp + 4:tcp + 8], "big")
            total = int.from_bytes(d[HEADER_LEN + 2:HEADER_LEN + 4], "big")
            payload = d[tcp + (d[tcp + 12] >> 4) * 4:HEADER_LEN + total]
            self.data.setdefault(sport - BASE_SPORT, {})[seq] = payload
            self.packets += 1
            if rx.segment_size is not None:
                self.coalesced += 1
            self.queues[rx.queue] = self.queues.get(rx.queue, 0) + 1
            self.flow_queues.setdefault(sport - BASE_SPORT, set()).add(rx.queue)
        return rest

    def stream(self, flow: int) -> bytes:
        """The flow's bytes in sequence order from FIRST_SEQ, up to the first gap."""
        pieces = self.data.get(flow, {})
        out = bytearray()
        seq = FIRST_SEQ
        while seq in pieces:
            chunk = pieces[seq]
            if not chunk:
                break
            out += chunk
            seq += len(chunk)
        return bytes(out)

    def mismatches(self, sender: TcpFlowSender) -> int:
        """Flows whose rebuilt stream differs from what was sent."""
        return sum(self.stream(f) != sender.expected(f) for f in range(sender.flows))
