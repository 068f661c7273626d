"""What a :class:`~stack.tcp.connection.TcpConnection` consumes and produces.

The connection never sees IP: it takes :class:`Segment` values (a parsed TCP header plus
its payload) and returns :class:`Outgoing` values; the interface adds addresses, the IP
header and the checksum, and hands :attr:`Outgoing.segment_size` to the device as the
TSO segment size (smoltcp PR 1148: ``PacketMeta`` segment size).
"""

from __future__ import annotations

from dataclasses import dataclass

from stack.wire.tcp import TcpFlags, TcpHeader, TcpOption


@dataclass(frozen=True, slots=True)
class Segment:
    """One TCP segment: the header fields the state machine uses and the payload."""

    sport: int
    dport: int
    seq: int
    ack: int
    flags: TcpFlags
    window: int
    """The raw 16-bit window field as on the wire (not yet scaled)."""
    options: tuple[TcpOption, ...] = ()
    payload: bytes = b""
    urgent: int = 0
    ecn: int = 0
    """The ECN codepoint of the IP header it arrived in (RFC 3168 §5)."""

    @property
    def seg_len(self) -> int:
        """SEG.LEN (RFC 9293 §3.3.1): payload octets plus one for SYN and one for FIN."""
        return (len(self.payload) + (1 if self.flags & TcpFlags.SYN else 0)
                + (1 if self.flags & TcpFlags.FIN else 0))

    @classmethod
    def from_header(cls, header: TcpHeader, payload: bytes | bytearray | memoryview, *,
                    ecn: int = 0) -> Segment:
        return cls(
            sport=header.src_port,
            dport=header.dst_port,
            seq=header.seq,
            ack=header.ack,
            flags=header.flags,
            window=header.window,
            options=header.options,
            payload=bytes(payload),
            urgent=header.urgent,
            ecn=ecn,
        )

    def header(self) -> TcpHeader:
        """The header to emit; the checksum is left 0 for the interface (or the device)."""
        return TcpHeader(
            src_port=self.sport,
            dst_port=self.dport,
            seq=self.seq,
            ack=self.ack,
            flags=self.flags,
            window=self.window,
            urgent=self.urgent,
            options=self.options,
        )


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A segment to transmit. When :attr:`segment_size` is set the payload is larger than
    it and the device must cut the segment into wire segments of ``segment_size`` payload
    bytes each (TCP segmentation offload), copying the header and its options into each
    one and leaving PSH and FIN on the last."""

    segment: Segment
    segment_size: int | None = None
    ecn: int = 0
    """The ECN codepoint for its IP header: ECT(0) on new data of an ECN connection,
    Not-ECT on pure ACKs, retransmissions and window probes (RFC 3168 §6.1.4-§6.1.5)."""
