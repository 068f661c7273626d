"""``vnetbench vhost-user``: our virtio-net device as the vhost-user backend of your own
QEMU (``-netdev vhost-user``), with an emulated host running our stack at the far end.

It listens on ``--socket``, prints the QEMU flags to add, and serves until Ctrl-C or
``--duration`` seconds: every QEMU connection is a session (a new one after QEMU
reconnects), its guest's driver negotiates with our device (the offered features are
``--offer``, the device's behaviour ``--profile``), and the far host (``--host-ip``,
default 10.0.2.2/24) answers pings and takes TCP connections on ``--port``, counting and
hashing what arrives. At the end it prints the sessions, the negotiated features, the
device's counters and the conformance monitor's records.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time
from dataclasses import asdict
from typing import Any

from emulator.backends.vhost_user import DEFAULT_OFFER, DELEGATED
from emulator.profiles import PROFILES
from stack.sockets import TcpListener, TcpSocket
from testbench.cli_args import EXIT_ERROR, EXIT_OK, FAULTS_HELP, faults
from testbench.qemu_guest import GUEST_MAC, vhost_user_flags
from testbench.vhost_user_bench import HOST_IP, VhostUserBench
from virtio.errors import VirtioError
from virtio.features import FeatureSet

MAX_DURATION_S = 7 * 24 * 3600.0
"""Without ``--duration`` the backend serves until Ctrl-C, at most a week."""


def _features(text: str) -> FeatureSet:
    try:
        return FeatureSet.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= MAX_DURATION_S:
        raise argparse.ArgumentTypeError(f"must be in (0, {MAX_DURATION_S:.0f}] seconds")
    return value


def register(sub: Any) -> None:
    cmd = sub.add_parser(
        "vhost-user",
        help="serve our virtio-net device to your own QEMU over vhost-user",
        description=(
            "Listen on a Unix socket as a vhost-user net backend: QEMU's virtio-net-pci "
            "gets our device's datapath (virtqueues, checksum and segmentation offloads, "
            "receive coalescing, profile, monitor), and the network behind it is an "
            "emulated host running our TCP/IP stack. Prints the QEMU flags to use; serves "
            "until Ctrl-C or --duration; then reports."
        ),
    )
    cmd.add_argument("--socket", required=True, metavar="PATH",
                     help="Unix socket to listen on (QEMU connects to it)")
    cmd.add_argument("--profile", choices=sorted(PROFILES), default="strict",
                     help="device profile: what the device does where the spec is silent")
    cmd.add_argument("--offer", type=_features, default=None, metavar="FEATURES",
                     help="features offered, e.g. VERSION_1,CSUM,HOST_TSO4 (default: the "
                     "profile's own set when it has one, else "
                     f"{','.join(DEFAULT_OFFER.names())}; among {','.join(DELEGATED.names())})")
    cmd.add_argument("--duration", type=_seconds, default=None, metavar="SECONDS",
                     help="stop after this many seconds (default: at Ctrl-C)")
    cmd.add_argument("--memory", type=int, default=256, metavar="MIB",
                     help="guest RAM in MiB, for the printed flags (256)")
    cmd.add_argument("--host-ip", default=HOST_IP,
                     help=f"address of the emulated host, /24 (default {HOST_IP})")
    cmd.add_argument("--port", type=int, default=5001,
                     help="TCP port on which the emulated host takes data (5001)")
    cmd.add_argument("--faults", type=faults, default=None, metavar="SPEC",
                     help="a faulty link between the guest and the emulated host: "
                     + FAULTS_HELP)
    cmd.add_argument("--json", action="store_true", help="print the final report as JSON")
    cmd.set_defaults(handler=run)


class Sink:
    """The far host's TCP service: accept, read to EOF, close; one record per
    connection."""

    def __init__(self, listener: TcpListener) -> None:
        self.listener = listener
        self.open: list[tuple[TcpSocket, Any, list[int]]] = []
        self.done: list[dict[str, Any]] = []

    def __call__(self) -> bool:
        did = False
        for _ in range(16):
            sock = self.listener.accept()
            if sock is None:
                break
            self.open.append((sock, hashlib.sha256(), [0]))
            did = True
        for entry in list(self.open):
            sock, digest, size = entry
            data = sock.recv()
            if data:
                digest.update(data)
                size[0] += len(data)
                did = True
            if sock.eof:
                sock.close()
                self.open.remove(entry)
                self.done.append({"bytes": size[0], "sha256": digest.hexdigest()})
                print(f"tcp: {size[0]} bytes received, sha256 {digest.hexdigest()}", flush=True)
                did = True
        return did


def report(bench: VhostUserBench, sink: Sink, seconds: float) -> dict[str, Any]:
    c = bench.vhost.net.counters
    return {
        "seconds": round(seconds, 1),
        "sessions": bench.server.sessions,
        "protocol_errors": [f"{e.rule}: {e}" for e in bench.server.errors],
        "device_starts": bench.vhost.starts,
        "offered": bench.config.features.names(),
        "negotiated": bench.vhost.negotiated.names(),
        "device": {k: v for k, v in asdict(c).items() if v},
        "monitor": [str(r) for r in bench.monitor.records],
        "echo_replies_sent": bench.stack.iface.counters.echo_replies,
        "link": {"to_host": bench.wire.a.counters.as_dict(),
                 "to_guest": bench.wire.b.counters.as_dict()},
        "tcp": sink.done,
    }


def run(args: argparse.Namespace) -> int:
    try:
        bench = VhostUserBench(offered=args.offer, profile=args.profile,
                               socket_path=args.socket, host_ip=args.host_ip,
                               faults=args.faults)
    except (VirtioError, ValueError, OSError) as exc:
        print(f"vnetbench vhost-user: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        sink = Sink(bench.stack.tcp_listen(args.port))
        bench.host.apps.append(sink)
        flags = vhost_user_flags(args.socket, args.memory, GUEST_MAC)
        print(f"vhost-user backend listening on {args.socket}")
        print(f"offered: {','.join(bench.config.features.names())}; profile {args.profile}")
        print(f"the far host is {args.host_ip} (our stack): it answers ping and takes TCP on "
              f"port {args.port}")
        print("start QEMU with (plus your kernel/disk options):")
        print(f"  qemu-system-x86_64 -accel tcg -m {args.memory}M " + shlex.join(flags))
        sys.stdout.flush()
        start = time.monotonic()
        limit = args.duration if args.duration is not None else MAX_DURATION_S
        sessions, starts, live = 0, 0, False
        try:
            while time.monotonic() - start < limit:
                bench.runner.step()
                if bench.server.sessions != sessions:
                    sessions = bench.server.sessions
                    print(f"session {sessions}: QEMU connected", flush=True)
                    live = True
                if live and bench.server.session is None:
                    live = False
                    errors = bench.server.errors
                    why = f" ({errors[-1].rule}: {errors[-1]})" if errors else ""
                    print(f"session {sessions} ended{why}", flush=True)
                if bench.vhost.starts != starts:
                    starts = bench.vhost.starts
                    print(f"device started: negotiated "
                          f"{','.join(bench.vhost.negotiated.names())}", flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        result = report(bench, sink, time.monotonic() - start)
    finally:
        bench.close()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return EXIT_OK
