"""Connection states (RFC 9293 §3.3.2) and the error a connection ends with."""

from __future__ import annotations

from enum import Enum


class TcpState(Enum):
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"
    CLOSED = "CLOSED"


SYNCHRONIZED = frozenset({
    TcpState.ESTABLISHED, TcpState.FIN_WAIT_1, TcpState.FIN_WAIT_2, TcpState.CLOSE_WAIT,
    TcpState.CLOSING, TcpState.LAST_ACK, TcpState.TIME_WAIT,
})
"""RFC 9293 §3.5.2: the states after the handshake."""
RECEIVING = frozenset({TcpState.ESTABLISHED, TcpState.FIN_WAIT_1, TcpState.FIN_WAIT_2})
"""States that accept segment text (RFC 9293 §3.10.7.4, seventh step)."""
SENDING = frozenset({
    TcpState.ESTABLISHED, TcpState.CLOSE_WAIT, TcpState.FIN_WAIT_1, TcpState.CLOSING,
    TcpState.LAST_ACK,
})
"""States in which data or our FIN may still be (re)transmitted."""
FIN_STATES = frozenset({TcpState.FIN_WAIT_1, TcpState.CLOSING, TcpState.LAST_ACK})
"""States with our FIN queued or sent and not yet acknowledged."""


class TcpError(Exception):
    """Why a connection failed. ``reason`` is a short stable name:

    - ``"reset"``: the peer reset the connection (RFC 9293 §3.10.7.4, second step);
    - ``"refused"``: a RST answered our SYN (§3.10.7.3);
    - ``"timeout"``: retransmissions, zero-window probes or keep-alives went unanswered
      (RFC 9293 §3.8.3 R2, §3.8.4);
    - ``"closed"``: the operation needs a connection that no longer exists;
    - ``"unreachable"``: an ICMP protocol or port unreachable answered our SYN
      (RFC 1122 §4.2.3.9, RFC 5461: a hard error aborts a connection being opened).
    """

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or f"connection {reason}")
        self.reason = reason
