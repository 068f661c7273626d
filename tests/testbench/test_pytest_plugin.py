"""The pytest plugin as a user meets it: a test file with no configuration at all, run by
an inner pytest (``pytester``) that finds the plugin through its ``pytest11`` entry
point, the way an installed vnetbench is found."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

pytest_plugins = ["pytester"]

PCAPNG_MAGIC = bytes.fromhex("0a0d0d0a")
"""The Section Header Block type that starts every pcapng file."""

USER_TESTS = '''
import pytest
from testbench.tcp_bulk import run_bulk


def test_pair_moves_a_megabyte_exactly(vnet_pair, vnet_monitor):
    result = run_bulk(vnet_pair, 1 << 20)
    assert result.exact and result.closed
    vnet_monitor.assert_clean()


def test_driver_negotiates_version_1(vnet_driver):
    assert "VERSION_1" in vnet_driver.negotiated.names()


def test_host_has_a_stack(vnet_host):
    assert vnet_host.stack is not None


def test_device_waits_for_a_driver(vnet_device):
    assert vnet_device.core.status == 0


@pytest.mark.vnet(accept="CSUM,HOST_TSO4", mtu=9000, queue_size=64)
def test_marker_settings(vnet_driver, vnet_config):
    assert vnet_driver.negotiated.names() == ["CSUM", "HOST_TSO4", "VERSION_1"]
    assert (vnet_driver.mtu, vnet_driver.tx_queue.size) == (1500, 64)


@pytest.mark.parametrize("vnet_config", [{"profile": "qemu"}, {"accept": "none"}],
                         indirect=True)
def test_indirect(vnet_driver, vnet_config):
    assert vnet_config.profile in ("qemu", "strict")


def test_host_talks_to_the_peer_port(vnet_host, vnet_device):
    seen = []
    vnet_device.peer.set_receiver(lambda frame: seen.append(frame) is None)
    assert vnet_host.stack.ping("10.0.0.2", 1, 1, b"x")
    vnet_host.loop.run_until_idle(max_steps=100_000)
    assert seen[0][:6] == bytes.fromhex("ff" * 6)
    assert {frame[12:14] for frame in seen} == {bytes.fromhex("0806")}  # ARP; nobody answers


@pytest.mark.vnet(quirks="gso-without-needs-csum", accept="tso")
def test_quirk(vnet_pair, vnet_monitor):
    run_bulk(vnet_pair, 65536)
    vnet_monitor.assert_violation("gso-without-needs-csum", who="driver", host="a")
'''


def test_the_plugin_is_an_installed_pytest11_entry_point() -> None:
    found = [e for e in entry_points(group="pytest11") if e.name == "vnetbench"]
    assert [e.value for e in found] == ["testbench.pytest_plugin"]


def test_fixtures_work_with_no_configuration(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=9)


FAILING = '''
from testbench.tcp_bulk import run_bulk


def test_passes(vnet_pair, vnet_capture):
    assert run_bulk(vnet_pair, 65536).exact


def test_fails(vnet_pair, vnet_capture):
    run_bulk(vnet_pair, 65536)
    assert vnet_capture.packets == -1


def test_breaks_a_rule(vnet_driver, vnet_device, vnet_monitor):
    vnet_device.core.notify(7)
    vnet_monitor.assert_violation("notify-unknown-queue", count=1, who="driver")
    vnet_monitor.assert_clean()
'''


def test_a_failing_test_keeps_its_capture_and_names_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=FAILING)
    captures = pytester.path / "captures"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--vnet-pcap-dir={captures}")
    result.assert_outcomes(passed=1, failed=2)
    kept = captures / "test_user.py_test_fails.pcapng"
    result.stdout.fnmatch_lines([
        "*- vnet capture -*",
        f"pcapng kept: {kept}",
        "*- vnet conformance -*",
        "1 violation(s):",
        "  1 x a: driver broke notify-unknown-queue",
    ])
    assert sorted(p.name for p in captures.iterdir()) == [kept.name]
    data = kept.read_bytes()
    assert data[:4] == PCAPNG_MAGIC and len(data) > 65536
    assert "expected no violations, got 1 violation(s):" in result.stdout.str()


def test_profiles_from_the_command_line_parametrize(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user='''
import pytest

def test_profile(vnet_driver, vnet_config, vnet_device):
    assert vnet_device.device.config.profile == vnet_config.profile

@pytest.mark.vnet(profile="qemu")
def test_pinned(vnet_config):
    assert vnet_config.profile == "qemu"

def test_untouched():
    pass
''')
    result = pytester.runpytest("-p", "no:cacheprovider", "-v", "--vnet-profile=strict,linux",
                                "--vnet-profile", "firecracker")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines([
        "*test_profile?strict? PASSED*", "*test_profile?linux? PASSED*",
        "*test_profile?firecracker? PASSED*", "*test_pinned PASSED*", "*test_untouched PASSED*",
    ])


def test_features_from_the_command_line_parametrize(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user='''
def test_features(vnet_driver, vnet_features):
    tso = "HOST_TSO4" in vnet_driver.negotiated.names()
    assert tso == (vnet_features == "tso")
''')
    result = pytester.runpytest("-p", "no:cacheprovider", "--vnet-features", "tso",
                                "--vnet-features", "default,-HOST_TSO4,-HOST_TSO6,-HOST_ECN")
    result.assert_outcomes(passed=2)


def test_bad_options_are_one_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user="def test_x(): pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--vnet-profile", "strickt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --vnet-profile: unknown device profile 'strickt'*"])
    result = pytester.runpytest("-p", "no:cacheprovider", "--vnet-features", "HOST_TS04")
    result.stderr.fnmatch_lines([
        "ERROR: --vnet-features: unknown feature 'HOST_TS04' (did you mean HOST_TSO4?)"])


def test_a_bad_marker_setting_fails_the_test_in_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user='''
import pytest

@pytest.mark.vnet(acept="tso")
def test_typo(vnet_driver):
    pass
''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*vnet_config: unknown vnet setting(s) acept; known: *"])


def test_the_marker_is_registered_for_strict_markers(pytestconfig: pytest.Config) -> None:
    """This suite runs with --strict-markers and filterwarnings=error with the plugin
    loaded: the plugin registers its marker and its options."""
    names = [line.split(":")[0].split("(")[0] for line in pytestconfig.getini("markers")]
    assert names.count("vnet") == 1
    assert pytestconfig.getoption("vnet_profile") == []
