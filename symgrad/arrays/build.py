"""The array pipeline composed: problem -> derivatives and text -> cached module -> kernel.

The cache file is named by the hash of the generated text itself, so everything that shapes the
module is in the key; sizes are not in the text, so one cached module serves every size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import __version__
from ..codegen import CodegenOptions
from ..derive import KinkPolicy
from ..kernel import cache_dir, load_module, write_atomic
from .codegen import array_module_source
from .kernel import ArrayKernel
from .problem import array_problem

__all__ = ["array_source", "compile_array"]


def array_source(loss, params: Sequence | None, policy: KinkPolicy | None,
                 regenerate: str, dtype: str = "float64") -> tuple:
    """``(problem, module text)`` for an array loss."""
    prob = array_problem(loss, params)
    opts = CodegenOptions(regenerate=regenerate, version=__version__)
    return prob, array_module_source(prob, policy, opts, str(np.dtype(dtype)))


def compile_array(loss, params: Sequence | None = None, *, policy: KinkPolicy | None = None,
                  dtype: str = "float64") -> ArrayKernel:
    """Compile an array loss into an :class:`ArrayKernel` (see :func:`symgrad.compile`)."""
    prob, src = array_source(loss, params, policy, "symgrad.compile(loss)", dtype)
    path = cache_dir() / f"sga_{hashlib.sha256(src.encode()).hexdigest()[:24]}.py"
    write_atomic(path, src)
    return ArrayKernel(prob, src, path, load_module(path), policy, str(np.dtype(dtype)))


def generate_array(loss, path: Path, params: Sequence | None, policy: KinkPolicy | None,
                   regenerate: str, dtype: str = "float64") -> Path:
    """Write the standalone module of an array loss (see :func:`symgrad.generate`)."""
    _, src = array_source(loss, params, policy, regenerate, dtype)
    write_atomic(path, src)
    return path
