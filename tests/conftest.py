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


#: The files whose quick tests compile the most (about 9 s CPU or more, measured per file in one
#: cold `python -m pytest -q` run), heaviest first. They are handed to the two xdist workers
#: (``--dist loadfile``) first, so that the run ends on small files and both workers finish
#: together; pyproject turns off xdist's own order (files with the most tests first, which left
#: a heavy few-test file for the end). A file not listed keeps its collection order after these;
#: the list needs only rough upkeep.
HEAVY_FIRST = (
    "test_lsq_kernel.py", "test_one_kernel.py", "test_examples.py", "test_cold_build.py",
    "test_mixed_sums.py", "test_doctests.py", "test_arrays.py", "test_lsq_arrays.py",
    "test_float32_residuals.py", "test_cli.py", "test_data.py", "test_train_kinds.py",
    "test_scalar_float32.py", "test_runtime_safety.py", "test_names.py", "test_float32_fused.py",
    "test_cache.py", "test_core.py", "test_train_loop.py", "test_vectors.py", "test_losses.py",
    "test_models.py", "test_minimize.py", "test_gemm.py", "test_fused_residuals.py",
    "test_exact_oracle.py", "test_probe_fixes.py", "test_arrays_api.py", "test_fused.py",
    "test_array_oracle.py", "test_residual_threads.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(HEAVY_FIRST)))  # stable in a file
