"""Linux network namespaces for real-peer tests: create, configure, always delete.

Everything here shells out to ``ip`` (iproute2) with a timeout; a command that fails
raises :class:`NetnsError` with one line saying which command failed and what it printed.
Python 3.11 has no ``os.setns``, so work "inside" a namespace goes through
``ip -netns NAME ...`` and ``ip netns exec NAME ...``; a device is made in the root
namespace (where this process lives) and then moved in with :meth:`Netns.move_link`.

Names are unique per process (``PREFIX-PID-N``), so parallel test runs do not collide,
and :class:`Netns` is a context manager whose exit deletes the namespace whatever happened
(deleting a namespace destroys the virtual devices in it: bridges, veths, taps whose file
descriptor has been closed).

:func:`tap_available` says whether the real-peer tests can run here, and if not why (the
reason a test skips with).
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from virtio.errors import VirtioError

__all__ = ["Netns", "NetnsError", "run_ip", "tap_available", "unique_name"]

IP_TIMEOUT_S = 10.0
"""Upper bound for one ``ip`` command; namespace creation takes a few milliseconds."""

_counter = itertools.count()


class NetnsError(VirtioError):
    """An ``ip`` command (or the setup it belongs to) failed; the message is one line."""


def unique_name(prefix: str, *, limit: int = 15) -> str:
    """``prefix`` + pid + a per-process counter, at most ``limit`` characters (15 is
    IFNAMSIZ - 1, the longest interface name)."""
    name = f"{prefix}{os.getpid()}x{next(_counter)}"
    if len(name) > limit:
        raise ValueError(f"name {name!r} is longer than {limit} characters; use a shorter prefix")
    return name


def _one_line(text: str) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def run_ip(args: Sequence[str], *, netns: str | None = None, timeout: float = IP_TIMEOUT_S) -> str:
    """Run ``ip [-netns NS] ARGS...``; return its stdout. A non-zero exit, a timeout or a
    missing ``ip`` raises :class:`NetnsError` with the command and its stderr on one line."""
    ip = shutil.which("ip") or "/usr/sbin/ip"
    rest = [*(["-netns", netns] if netns is not None else []), *args]
    return _run([ip, *rest], " ".join(["ip", *rest]), timeout)


def _run(argv: list[str], shown: str, timeout: float) -> str:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise NetnsError(f"`{shown}`: {argv[0]} not found ({exc.strerror})") from None
    except subprocess.TimeoutExpired:
        raise NetnsError(f"`{shown}` did not finish within {timeout} s") from None
    if done.returncode != 0:
        why = _one_line(done.stderr) or _one_line(done.stdout) or "no output"
        raise NetnsError(f"`{shown}` failed (exit {done.returncode}): {why}")
    return done.stdout


class Netns:
    """A network namespace this process created; deleted by :meth:`delete` or on exit of
    the ``with`` block. ``Netns()`` creates it at once."""

    def __init__(self, prefix: str = "vnb-", *, timeout: float = IP_TIMEOUT_S) -> None:
        self.timeout = timeout
        self.name = unique_name(prefix, limit=64)
        run_ip(["netns", "add", self.name], timeout=timeout)
        self._alive = True

    @property
    def alive(self) -> bool:
        return self._alive

    def ip(self, *args: str) -> str:
        """Run ``ip -netns NAME ARGS...`` and return its stdout."""
        self._check_alive()
        return run_ip(args, netns=self.name, timeout=self.timeout)

    def exec(self, *argv: str) -> str:
        """Run a program inside the namespace (``ip netns exec NAME ARGV...``)."""
        self._check_alive()
        return run_ip(["netns", "exec", self.name, *argv], timeout=self.timeout)

    def move_link(self, ifname: str) -> None:
        """Move interface ``ifname`` from the root namespace into this one. An open file
        descriptor on the device (a tap's) stays valid: that is how a process without
        ``setns`` owns a tap inside a namespace."""
        self._check_alive()
        run_ip(["link", "set", "dev", ifname, "netns", self.name], timeout=self.timeout)

    def sysctl(self, key: str, value: str | int) -> None:
        """Set sysctl ``key`` (dotted, e.g. ``net.ipv6.conf.all.disable_ipv6``) inside the
        namespace. Written through /proc/sys by a shell in the namespace, so procps is not
        needed; the value travels as an argument, never spliced into the script."""
        if not key or "/" in key or ".." in key:
            raise ValueError(f"bad sysctl key {key!r}")
        path = "/proc/sys/" + key.replace(".", "/")
        self.exec("sh", "-c", 'printf "%s\\n" "$1" > "$2"', "sh", str(value), path)

    def read_sysctl(self, key: str) -> str:
        if not key or "/" in key or ".." in key:
            raise ValueError(f"bad sysctl key {key!r}")
        return self.exec("cat", "/proc/sys/" + key.replace(".", "/")).strip()

    def delete(self) -> None:
        """Delete the namespace (idempotent)."""
        if self._alive:
            self._alive = False
            run_ip(["netns", "delete", self.name], timeout=self.timeout)

    def _check_alive(self) -> None:
        if not self._alive:
            raise NetnsError(f"network namespace {self.name} was already deleted")

    def __enter__(self) -> Netns:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.delete()

    def __repr__(self) -> str:
        return f"<Netns {self.name}{'' if self._alive else ' deleted'}>"


@functools.cache
def tap_available() -> str | None:
    """None when taps and namespaces work here, else the reason a test must skip:
    ``"not root"``, ``"/dev/net/tun missing"``, ``"ip (iproute2) not installed"`` or
    ``"ip netns not permitted: <what ip said>"``. Probes once per process by creating
    and deleting a namespace."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "not root"
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun missing"
    if shutil.which("ip") is None and not Path("/usr/sbin/ip").exists():
        return "ip (iproute2) not installed"
    try:
        Netns("vnb-probe-").delete()
    except NetnsError as exc:
        return f"ip netns not permitted: {exc}"
    return None
