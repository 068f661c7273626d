"""The vnetbench pytest plugin, registered through the ``pytest11`` entry point: installing
vnetbench is enough to use its fixtures in any test file.

Fixtures (all opt-in; a test that uses none is not touched):

- ``vnet_config``: the :class:`~testbench.vnet_config.VnetConfig` the others are built
  from: defaults, then ``--vnet-profile`` / ``--vnet-features``, then the test's
  ``@pytest.mark.vnet(...)``, then an indirect parameter (a dict or a VnetConfig);
- ``vnet_device``: an emulated virtio-net device (memory, MMIO register file, monitor)
  at one end of a wire whose other end is ``vnet_device.peer``, driver not started;
- ``vnet_driver``: our driver bound to ``vnet_device``, probed (negotiated, DRIVER_OK);
- ``vnet_host``: the same host with the TCP/IP stack on the driver (10.0.0.1, fd00::1);
- ``vnet_pair``: hosts A (10.0.0.1, fd00::1) and B (10.0.0.2, fd00::2), both with
  stacks, over a wire with the config's faults (a :class:`testbench.host.Pair`);
- ``vnet_monitor``: the :class:`~testbench.conformance.Conformance` report of every host
  of the test, with ``assert_clean()`` and ``assert_violation(rule)``;
- ``vnet_capture``: a pcapng of host A (driver→device with each virtio_net_hdr, and the
  wire), kept and named in the failure report when the test fails, deleted when it passes;
- ``vnet_loop``: the test's event loop (virtual time).

Command line: ``--vnet-profile strict,linux`` and ``--vnet-features tso --vnet-features
csum`` rerun every test that uses the fixtures once per profile / accepted feature set;
``--vnet-pcap-dir DIR`` puts captures there instead of the test's tmp_path;
``--vnet-matrix`` and ``--vnet-matrix-out`` belong to the matrix suite
(testbench/matrix/pytest_matrix.py).
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from driver.net import VirtioNetDriver
from emulator.backends.pcap import Capture
from emulator.backends.wire import Wire, WirePort
from emulator.core import DeviceCore
from emulator.mmio import MmioTransport
from emulator.monitor import Monitor
from emulator.net.device import NetDevice
from stack.interface import InterfaceConfig
from stack.stack import StackConfig
from testbench.conformance import Conformance
from testbench.host import Host, Pair, make_pair
from testbench.loop import EventLoop
from testbench.tcp_bulk import MAC_A, MAC_B, add_stacks
from testbench.vnet_config import VnetConfig
from virtio.errors import VirtioError
from virtio.memory import GuestMemory

__all__ = ["VnetConfig", "VnetDevice"]

pytest_plugins = ["testbench.matrix.pytest_matrix"]
"""The matrix suite's options and record writer (testbench/matrix/suite.py)."""

MARKER = "vnet"


@dataclass
class _TestState:
    conformance: Conformance = field(default_factory=Conformance)
    capture_path: Path | None = None
    failed: bool = False


_STATE = pytest.StashKey[_TestState]()


def _state(node: pytest.Item | Any) -> _TestState:
    stash: pytest.Stash = node.stash
    return stash.setdefault(_STATE, _TestState())


# -- options, markers, parametrization ------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vnetbench", "vnetbench emulated virtio-net hosts")
    group.addoption(
        "--vnet-profile", action="append", default=[], metavar="NAMES",
        help="run every test using the vnet fixtures once per device profile "
             "(comma list, e.g. strict,linux; repeatable)",
    )
    group.addoption(
        "--vnet-features", action="append", default=[], metavar="SPEC",
        help="run every test using the vnet fixtures once per accepted feature set: a "
             "preset (tso, csum, none) or a SPEC such as default,+GUEST_CSUM (repeatable)",
    )
    group.addoption(
        "--vnet-pcap-dir", default=None, metavar="DIR",
        help="where vnet_capture writes (default: the test's tmp_path); a capture is "
             "kept only when its test fails",
    )


def _profiles(config: pytest.Config) -> list[str]:
    names = [n.strip() for value in config.getoption("vnet_profile") for n in value.split(",")]
    return list(dict.fromkeys(n for n in names if n))


def _features(config: pytest.Config) -> list[str]:
    return list(dict.fromkeys(v.strip() for v in config.getoption("vnet_features") if v.strip()))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**settings): settings of the vnet fixtures' hosts (VnetConfig fields: "
        "profile, offer, accept, quirks, queue_size, mtu, faults, seed, memory, "
        "rx_buffer_size)",
    )
    for profile in _profiles(config):
        try:
            VnetConfig.build(profile=profile)
        except ValueError as exc:
            raise pytest.UsageError(f"--vnet-profile: {exc}") from None
    for spec in _features(config):
        try:
            VnetConfig.build(accept=spec)
        except ValueError as exc:
            raise pytest.UsageError(f"--vnet-features: {exc}") from None


def _marked(node: pytest.Item | pytest.Function | Any) -> dict[str, Any]:
    """The settings of the ``vnet`` markers on ``node``, the closest winning."""
    settings: dict[str, Any] = {}
    for mark in reversed(list(node.iter_markers(MARKER))):
        if mark.args:
            raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keyword settings only, "
                                    f"not {mark.args!r}")
        settings.update(mark.kwargs)
    return settings


def _parametrized(metafunc: pytest.Metafunc, name: str) -> bool:
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
        listed = names.split(",") if isinstance(names, str) else list(names)
        if name in (n.strip() for n in listed):
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "vnet_config" not in metafunc.fixturenames:
        return
    marked = _marked(metafunc.definition)
    profiles = _profiles(metafunc.config)
    if profiles and "profile" not in marked and not _parametrized(metafunc, "vnet_profile"):
        metafunc.parametrize("vnet_profile", profiles, indirect=True, ids=profiles)
    features = _features(metafunc.config)
    if features and "accept" not in marked and not _parametrized(metafunc, "vnet_features"):
        metafunc.parametrize("vnet_features", features, indirect=True, ids=features)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    state = item.stash.get(_STATE, None)
    if state is None or not report.failed:
        return report
    state.failed = True
    if state.capture_path is not None and report.when != "teardown":
        report.sections.append(("vnet capture", f"pcapng kept: {state.capture_path}"))
    if len(state.conformance):
        report.sections.append(("vnet conformance", state.conformance.report()))
    return report


# -- fixtures ----------------------------------------------------------------------------

@pytest.fixture
def vnet_profile(request: pytest.FixtureRequest) -> str | None:
    """The profile ``--vnet-profile`` parametrizes with (None without the option)."""
    value: str | None = getattr(request, "param", None)
    return value


@pytest.fixture
def vnet_features(request: pytest.FixtureRequest) -> str | None:
    """The accepted set ``--vnet-features`` parametrizes with (None without the option)."""
    value: str | None = getattr(request, "param", None)
    return value


@pytest.fixture
def vnet_config(request: pytest.FixtureRequest, vnet_profile: str | None,
                vnet_features: str | None) -> VnetConfig:
    """The hosts' settings: defaults < command line < ``@pytest.mark.vnet`` < an
    indirect parameter (a dict of settings, or a whole VnetConfig)."""
    param = getattr(request, "param", None)
    if isinstance(param, VnetConfig):
        return param
    settings: dict[str, Any] = {}
    if vnet_profile is not None:
        settings["profile"] = vnet_profile
    if vnet_features is not None:
        settings["accept"] = vnet_features
    settings.update(_marked(request.node))
    if isinstance(param, Mapping):
        settings.update(param)
    elif param is not None:
        pytest.fail(f"vnet_config: parametrize it with dicts or VnetConfig, not {param!r}",
                    pytrace=False)
    try:
        return VnetConfig.build(**settings)
    except (TypeError, ValueError) as exc:
        pytest.fail(f"vnet_config: {exc}", pytrace=False)


@pytest.fixture
def vnet_loop() -> EventLoop:
    """The test's event loop, on virtual time."""
    return EventLoop()


@pytest.fixture
def vnet_monitor(request: pytest.FixtureRequest) -> Conformance:
    """The conformance report of every vnet host of the test (``assert_clean()``,
    ``assert_violation(rule, count=, who=, host=)``, ``report()``)."""
    return _state(request.node).conformance


@pytest.fixture
def vnet_capture(request: pytest.FixtureRequest, vnet_loop: EventLoop) -> Iterator[Capture]:
    """A pcapng of host A (or of ``vnet_device``'s host): frames its driver handed the
    device, each with its virtio_net_hdr as a comment, and its side of the wire. Kept
    when the test fails (the path is in the failure report), deleted when it passes."""
    state = _state(request.node)
    option = request.config.getoption("vnet_pcap_dir")
    if option:
        directory = Path(option)
        directory.mkdir(parents=True, exist_ok=True)
    else:
        directory = request.getfixturevalue("tmp_path")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid).strip("_")[-150:]
    path = (directory / f"{name}.pcapng").resolve()
    capture = Capture(path, clock=vnet_loop.clock)
    state.capture_path = path
    try:
        yield capture
    finally:
        capture.close()
        if not state.failed:
            path.unlink(missing_ok=True)


def _capture_of(request: pytest.FixtureRequest) -> Capture | None:
    if "vnet_capture" in request.fixturenames:
        capture: Capture = request.getfixturevalue("vnet_capture")
        return capture
    return None


@dataclass
class VnetDevice:
    """An emulated device waiting for a driver: program it through :attr:`bus` (the
    virtio-mmio register file) and :attr:`memory`, or take ``vnet_driver``."""

    host: Host
    wire: Wire
    peer: WirePort
    """The far end of the device's wire: ``peer.send(frame)`` delivers a frame to the
    device, ``peer.set_receiver(f)`` sees what it transmits."""

    @property
    def device(self) -> NetDevice:
        return self.host.device

    @property
    def core(self) -> DeviceCore:
        return self.host.core

    @property
    def bus(self) -> MmioTransport:
        return self.host.mmio

    @property
    def memory(self) -> GuestMemory:
        return self.host.memory

    @property
    def monitor(self) -> Monitor:
        return self.host.monitor

    @property
    def loop(self) -> EventLoop:
        return self.host.loop


@pytest.fixture
def vnet_device(request: pytest.FixtureRequest, vnet_config: VnetConfig,
                vnet_loop: EventLoop) -> VnetDevice:
    cfg = vnet_config
    wire = Wire(vnet_loop.clock, faults=cfg.faults, seed=cfg.seed)
    vnet_loop.add_source(wire)
    host = Host(vnet_loop, cfg.host_config("a", MAC_A))
    _state(request.node).conformance.watch("a", host.monitor)
    capture = _capture_of(request)
    if capture is not None:
        host.capture_into(capture, wire.a)
    else:
        host.attach(wire.a)
    return VnetDevice(host, wire, wire.b)


@pytest.fixture
def vnet_driver(vnet_device: VnetDevice) -> VirtioNetDriver:
    """Our driver bound to ``vnet_device`` and probed: reset, negotiation, queues,
    DRIVER_OK. A probe that fails fails the test with the reason."""
    try:
        vnet_device.host.start()
    except VirtioError as exc:
        pytest.fail(f"vnet_driver: probe failed: {exc}", pytrace=False)
    return vnet_device.host.driver


@pytest.fixture
def vnet_host(vnet_device: VnetDevice, vnet_driver: VirtioNetDriver) -> Host:
    """``vnet_device`` with the driver and the TCP/IP stack on top (10.0.0.1/24,
    fd00::1/64); ``host.stack``, ``host.loop``, ``vnet_device.peer`` is the wire's far end."""
    host = vnet_device.host
    host.add_stack(StackConfig(InterfaceConfig(
        vnet_driver.mac, ipv4="10.0.0.1/24", ipv6=("fd00::1/64",))))
    return host


@pytest.fixture
def vnet_pair(request: pytest.FixtureRequest, vnet_config: VnetConfig,
              vnet_loop: EventLoop) -> Pair:
    """Hosts A and B, both probed and with stacks, over a wire with the config's faults;
    ``testbench.tcp_bulk.run_bulk(pair, size)`` sends ``size`` bytes A → B over TCP."""
    cfg = vnet_config
    try:
        pair = make_pair(
            vnet_loop, a=cfg.host_config("a", MAC_A), b=cfg.host_config("b", MAC_B),
            faults=cfg.faults, seed=cfg.seed, capture=_capture_of(request), start=False,
        )
        conformance = _state(request.node).conformance
        conformance.watch("a", pair.a.monitor)
        conformance.watch("b", pair.b.monitor)
        pair.a.start()
        pair.b.start()
    except VirtioError as exc:
        pytest.fail(f"vnet_pair: probe failed: {exc}", pytrace=False)
    add_stacks(pair)
    return pair
