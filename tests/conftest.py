"""Shared fixtures: seeded randomness and an environment for subprocesses that import symgrad.

The tests use the default per-user cache of compiled modules, so a second run is warm; no test
depends on what the cache holds (a module is rewritten only when its bytes differ, and Numba
recompiles when its cache does not match).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

import symgrad
from symgrad.build import cache

ROOT = Path(symgrad.__file__).resolve().parent.parent
SEED = 20240611


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(SEED)


def _subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


@pytest.fixture
def subprocess_env():
    """``subprocess_env(**extra)``: the environment with symgrad importable from the repo."""
    return _subprocess_env


@pytest.fixture
def python() -> str:
    """The interpreter running the tests (for subprocesses)."""
    return sys.executable


@pytest.fixture(scope="module")
def array_code():
    """Small array losses compile to the array code in this module, not to one fused pass over
    the samples (``pytestmark = pytest.mark.usefixtures("array_code")``: the module tests the
    array lowering itself)."""
    from symgrad.build import array

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(array, "FUSE_DEFAULT", False)
        yield


@pytest.fixture
def cdir(tmp_path, monkeypatch):
    """A fresh cache directory for this test (the process-wide choice is reset)."""
    d = tmp_path / "cache"
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(d))
    monkeypatch.setattr(cache, "_USABLE", {})
    return d
