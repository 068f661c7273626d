"""The import rules of DESIGN.md ("Layout: imports only point down this list"):

    testbench → driver → emulator → stack → virtio

with two exceptions that make the house: driver/ and emulator/ never import each other
(they meet only through guest memory, registers, notifications and interrupts), and
stack/ imports neither (it sees devices only through ``stack.device``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["testbench", "driver", "emulator", "stack", "virtio"]
FORBIDDEN: dict[str, set[str]] = {
    "virtio": {"stack", "emulator", "driver", "testbench"},
    "stack": {"emulator", "driver", "testbench"},
    "emulator": {"driver", "testbench"},
    "driver": {"emulator", "testbench"},
    "testbench": set(),
}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add((node.module.split(".")[0], node.lineno))
    return out


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", ORDER)
def test_package_respects_the_layer_rules(package: str) -> None:
    files = sources(package)
    assert files, f"package {package} has no sources"
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in files
        for name, line in sorted(imported_packages(path))
        if name in FORBIDDEN[package]
    ]
    assert bad == []


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    f = tmp_path / "x.py"
    f.write_text("import os\nfrom emulator.core import DeviceCore\nimport driver.net as n\n")
    assert imported_packages(f) == {("os", 1), ("emulator", 2), ("driver", 3)}


def test_no_grab_bag_modules() -> None:
    names = {p.name for pkg in ORDER for p in sources(pkg)}
    assert not names & {"utils.py", "helpers.py", "misc.py", "common.py"}
