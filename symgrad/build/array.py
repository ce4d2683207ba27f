"""The array pipeline composed: problem -> derivatives and text -> verified cached module -> kernel.

The cache key and the cached module are :mod:`symgrad.build.array_cache`'s (the same for every
size: sizes are call-time arguments).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..ad.derive import KinkPolicy
from ..backend.numba import CodegenOptions
from ..backend.numba.array_module import array_module_source
from ..ir.array_problem import array_problem
from ..runtime.array import ArrayKernel
from ..version import __version__
from .array_cache import cached_array, canonical

__all__ = ["array_source", "canonical", "compile_array"]


def array_source(loss, params: Sequence | None, policy: KinkPolicy | None,
                 regenerate: str, dtype: str = "float64") -> tuple:
    """``(problem, module text)`` for an array loss."""
    prob = array_problem(loss, params)
    opts = CodegenOptions(regenerate=regenerate, version=__version__)
    return prob, array_module_source(prob, policy, opts, str(np.dtype(dtype)))


def compile_array(loss, params: Sequence | None = None, *, policy: KinkPolicy | None = None,
                  dtype: str = "float64", parallel: bool | None = None) -> ArrayKernel:
    """Compile an array loss into an :class:`ArrayKernel` (see :func:`symgrad.compile`).

    ``parallel=True`` runs the module's threaded cores (``_value_par``, ...: loops under
    ``prange``, the serial core below :data:`~symgrad.backend.numba.emit_par.PAR_WORK` elements; the
    same result for any number of threads) with Numba's threads set by :mod:`symgrad.runtime.blas`;
    ``None`` and ``False`` the serial ones (a kernel that picks by size is to come)."""
    prob = array_problem(loss, params)
    policy, real = policy or KinkPolicy(), str(np.dtype(dtype))
    path, src, mod = cached_array(prob, policy, real)
    return ArrayKernel(prob, src, path, mod, policy, real, parallel=parallel)
