"""The split packages stay small rooms: every module of symgrad.check and symgrad.codegen is
under about 400 lines (issue 12: check.py had 1,256 lines, codegen.py 899)."""

from __future__ import annotations

from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "symgrad"
MODULES = sorted([*PKG.glob("check/*.py"), *PKG.glob("codegen/*.py"), PKG / "datacheck.py",
                  PKG / "demo.py"])


def test_the_packages_exist():
    assert not (PKG / "check.py").exists() and not (PKG / "codegen.py").exists()
    assert len(MODULES) >= 16


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_module_is_a_small_room(path):
    lines = len(path.read_text().splitlines())
    assert lines <= 400, f"{path.name} has {lines} lines: split it by what it does"
