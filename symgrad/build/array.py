"""The array pipeline composed: problem -> derivatives and text -> verified cached module -> kernel.

A small array loss (:func:`symgrad.passes.fuse.fusable`) is lowered to one pass over the samples
(:class:`~symgrad.runtime.fused.FusedKernel`, the scalar path's cached module of the unrolled
loss); any other keeps the array lowering, whose cache key and module are
:mod:`symgrad.build.array_cache`'s (the same for every size: sizes are call-time arguments).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from ..ad.derive import KinkPolicy, derive
from ..backend.numba import CodegenOptions, module_source
from ..backend.numba.array_module import array_module_source
from ..backend.numba.scalar import check_dtype
from ..ir.array_problem import ArrayProblem, array_problem
from ..ir.problem import Problem, ProblemError, problem
from ..passes.fuse import Unrolled, fusable, unroll
from ..runtime.array import ArrayKernel
from ..runtime.fused import FusedKernel
from ..version import __version__
from .array_cache import cached_array, canonical
from .scalar_cache import cached_scalar

__all__ = ["FUSE_DEFAULT", "array_source", "canonical", "compile_array", "compile_fused",
           "fused_problem", "fusion", "not_fused"]

#: What ``fuse=None`` means: None picks by :func:`~symgrad.passes.fuse.fusable` (tests of the
#: array code set it to False for their module).
FUSE_DEFAULT: bool | None = None


def array_source(loss, params: Sequence | None, policy: KinkPolicy | None,
                 regenerate: str, dtype: str = "float64", fuse: bool | None = None) -> tuple:
    """``(problem, module text)`` for an array loss: the text :func:`compile_array` would build
    with the same ``fuse`` (the fused one is a scalar loss's module)."""
    prob = array_problem(loss, params)
    real = str(np.dtype(dtype))
    opts = CodegenOptions(regenerate=regenerate, version=__version__)
    fuse = FUSE_DEFAULT if fuse is None else fuse
    fused = None if fuse is False else fused_problem(prob, real, bool(fuse))
    if fused is not None:
        return fused[1], module_source(derive(fused[1], policy or KinkPolicy()), opts, real)
    return prob, array_module_source(prob, policy, opts, real)


def compile_array(loss, params: Sequence | None = None, *, policy: KinkPolicy | None = None,
                  dtype: str = "float64", parallel: bool | None = None,
                  fuse: bool | None = None) -> ArrayKernel | FusedKernel:
    """Compile an array loss into an :class:`ArrayKernel`, or a :class:`FusedKernel` when it
    fuses (see :func:`symgrad.compile`).

    ``fuse=None`` fuses a loss that :func:`~symgrad.passes.fuse.fusable` accepts (float32:
    one that sums over the samples; its kernel then has the scalar float32 face, see
    :mod:`symgrad.runtime.fused`); ``True`` insists (a ValueError says why not), ``False``
    keeps the array lowering.
    ``parallel=True`` runs the module's threaded cores (``_value_par``, ...: loops under
    ``prange``, the serial core below :data:`~symgrad.backend.numba.emit_par.PAR_WORK` elements; the
    same result for any number of threads) with Numba's threads set by :mod:`symgrad.runtime.blas`;
    ``None`` and ``False`` the serial ones (a kernel that picks by size is to come)."""
    prob = array_problem(loss, params)
    policy, real = policy or KinkPolicy(), str(np.dtype(dtype))
    fuse = FUSE_DEFAULT if fuse is None else fuse
    if fuse is not False:
        f = compile_fused(prob, policy=policy, parallel=parallel, dtype=real, need=bool(fuse))
        if f is not None:
            return f
    path, src, mod = cached_array(prob, policy, real)
    return ArrayKernel(prob, src, path, mod, policy, real, parallel=parallel)


def compile_fused(prob: ArrayProblem, *, policy: KinkPolicy, parallel: bool | None = None,
                  dtype: str = "float64", need: bool = False) -> FusedKernel | None:
    """The one-pass kernel of an array problem, or None when it does not fuse (a ValueError
    saying why when ``need``)."""
    fused = fused_problem(prob, dtype, need)
    if fused is None:
        return None
    scalar = fused[1]
    path, src, mod = cached_scalar(scalar, policy, dtype)
    shapes = {p.name: tuple(int(s) for s in p.shape) for p in prob.params}
    return FusedKernel(prob.loss, shapes, scalar, src, path, mod, parallel=parallel,
                       policy=policy)


def fused_problem(prob: ArrayProblem, dtype: str = "float64", need: bool = False
                  ) -> tuple[Unrolled, Problem] | None:
    """The array problem unrolled for one sample and validated as a scalar loss, or None when
    it does not fuse (a ValueError saying why when ``need``)."""
    got = fusion(prob, dtype)
    if isinstance(got, str):
        if need:
            raise ValueError(not_fused(got))
        return None
    return got


def fusion(prob: ArrayProblem, dtype: str = "float64") -> tuple[Unrolled, Problem] | str:
    """:func:`fused_problem`'s result, or why the problem does not fuse."""
    why = fusable(prob)
    if why is not None:
        return why
    try:
        unrolled = unroll(prob)
        with warnings.catch_warnings():  # entries of an array the loss never reads
            warnings.filterwarnings("ignore", "parameter.* do not appear", UserWarning)
            scalar = problem(unrolled.expr, list(unrolled.params))
        check_dtype(scalar, dtype)  # float32: the loss must sum over the samples
    except (ValueError, ProblemError) as exc:  # too large unrolled, a mean inside a sample
        return str(exc).removeprefix("not fused: ")
    return unrolled, scalar


def not_fused(why: str) -> str:
    """The message of ``fuse=True`` for a loss that does not fuse, for ``why``."""
    return f"fuse=True: this array loss does not fuse: {why}; leave fuse unset to pick the lowering"
