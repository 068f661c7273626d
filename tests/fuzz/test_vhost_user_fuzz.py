"""Property tests of the vhost-user message parser and session (QEMU
``docs/interop/vhost-user.rst``): whatever bytes a frontend sends, the backend answers
with a decoded message or a typed :class:`FrontendProtocolError` — never ``struct.error``,
``IndexError``, ``ValueError`` or ``OverflowError`` — and a session fed arbitrary
well-framed requests either replies, stays silent, or raises the typed error.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.backends.vhost_user import (
    FrontendProtocolError,
    Session,
    VhostUserNet,
    VhostUserServer,
    vhost_net_config,
)
from emulator.backends.vhost_user import messages as m
from emulator.backends.wire import Wire
from testbench.loop import EventLoop

REQUESTS = st.integers(0, 45)
FLAGS = st.sampled_from([0, 1, 5, 9, 0x11, 0xFFFF_FFFF]) | st.integers(0, 0xFFFF_FFFF)
PAYLOADS = st.binary(max_size=300)


def _device() -> VhostUserNet:
    loop = EventLoop()
    return VhostUserNet(vhost_net_config(), Wire(loop.clock).a)


@given(st.binary(max_size=64))
def test_header_parser_total(data: bytes) -> None:
    try:
        header = m.parse_header(data)
    except FrontendProtocolError as err:
        assert err.rule.startswith("vhost-user")
        return
    assert len(data) == m.HEADER.size
    assert header.flags & m.FLAG_VERSION_MASK == m.VERSION and header.size <= m.MAX_PAYLOAD


@given(REQUESTS, FLAGS, PAYLOADS)
def test_decoders_total(request: int, flags: int, payload: bytes) -> None:
    msg = m.Message(request, flags, payload)
    for decode in (m.check_message, m.decode_u64, m.decode_vring_state, m.decode_vring_addr,
                   m.decode_vring_fd, m.decode_mem_table):
        with contextlib.suppress(FrontendProtocolError):
            decode(msg)


@settings(max_examples=200)
@given(st.lists(st.tuples(REQUESTS, st.sampled_from([1, 9]), PAYLOADS), max_size=12))
def test_session_total(sequence: list[tuple[int, int, bytes]]) -> None:
    """Arbitrary request sequences (no file descriptors: a SET_MEM_TABLE or kick without
    its fds is malformed) end in replies or the typed error."""
    session = Session(_device())
    try:
        for request, flags, payload in sequence:
            try:
                answer = session.handle(m.Message(request, flags, payload))
            except FrontendProtocolError as err:
                assert err.rule.startswith("vhost-user")
                break
            if answer is not None:
                req, rflags, size = m.HEADER.unpack_from(answer)
                assert (req, rflags, size) == (request, m.VERSION | m.FLAG_REPLY,
                                               len(answer) - m.HEADER.size)
    finally:
        session.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=1, max_size=200))
def test_server_survives_any_byte_stream(tmp_path: Path, data: bytes) -> None:
    """Raw bytes on the socket: the server answers, ends the session with a logged
    error, or waits for more — and always accepts the next frontend."""
    path = str(tmp_path / "fuzz.sock")
    with VhostUserServer(path, _device(), read_timeout_s=0.05) as server:
        for _ in range(2):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(path)
                client.sendall(data)
                client.shutdown(socket.SHUT_WR)
                for _ in range(8):
                    server.poll(0)
            server.poll(0)
            assert all(e.rule.startswith("vhost-user") for e in server.errors)
        assert server.sessions == 2
