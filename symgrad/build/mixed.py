"""Compile a :class:`~symgrad.lang.mixed.MixedSum` (index sums plus array terms).

When the array terms fuse (:func:`symgrad.passes.fuse.fusable`: small arrays), the whole loss
is one scalar loss, the array terms unrolled for one sample next to the index sums: one
module, a :class:`~symgrad.runtime.fused.FusedKernel` (Dask, the compiled training loop and
``sg.generate`` as for any scalar loss). Otherwise each part compiles on its own path into a
:class:`~symgrad.runtime.sum_kernel.SumKernel` with one packed ``x``. Both pack ``x`` alike:
the array parameters, then the scalars only the index sums read, then the vectors.

``dtype="float32"`` takes the fused module (its sample loop in float32; the index sums, x and
the results float64, as any float32 scalar loss); the two parts of a :class:`SumKernel` compute
in float64 only, so a sum whose array terms do not fuse refuses float32 saying what to do.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from ..ad.derive import KinkPolicy, derive
from ..backend.numba import CodegenOptions, module_source
from ..backend.numba.scalar import check_dtype
from ..ir.array_problem import array_problem
from ..ir.problem import Problem, ProblemError, problem
from ..lang.mixed import MixedSum
from ..runtime.fused import FusedKernel
from ..runtime.scalar import ScalarKernel
from ..runtime.sum_kernel import SumKernel
from . import array as array_build
from .scalar_cache import cached_scalar

__all__ = ["compile_sum", "sum_source"]

#: Why a sum whose array terms run as array code (a SumKernel) refuses float32.
_NO_F32 = ("float32 needs the one fused module; a sum of index sums and array code computes "
           "in float64 only: leave dtype unset, or compile loss.array with dtype='float32' on "
           "its own")

_PARAMS = ("params= orders the parameters of one path; a sum of index sums and array terms "
           "packs x as array parameters, then the scalars only the index sums read, then the "
           "vectors: leave params unset")


def compile_sum(loss: MixedSum, params: Sequence | None = None, *,
                policy: KinkPolicy | None = None, parallel: bool | None = None,
                fuse: bool | None = None, dtype: str = "float64") -> SumKernel | FusedKernel:
    """The kernel of ``loss`` (see :func:`symgrad.compile`): one fused module when the array
    terms fuse (``fuse`` as for array losses), else a :class:`SumKernel` of the two parts.
    ``dtype="float32"`` needs the fused module (the per-sample arithmetic in float32, the
    index sums, x and results float64, as for a float32 scalar loss)."""
    if params is not None:
        raise ProblemError(_PARAMS)
    policy = policy or KinkPolicy()
    fused = _fused(loss, fuse, dtype)
    if fused is not None:
        prob, shapes = fused
        path, src, mod = cached_scalar(prob, policy, dtype)
        return FusedKernel(loss.array, shapes, prob, src, path, mod, parallel=parallel,
                           policy=policy)
    prob = problem(loss.scalar, None)
    path, src, mod = cached_scalar(prob, policy, "float64")
    scalar = ScalarKernel(prob, src, path, mod, parallel=None if parallel is None
                          else bool(parallel), policy=policy)
    array = array_build.compile_array(loss.array, None, policy=policy, dtype="float64",
                                      parallel=parallel, fuse=False)
    try:
        return SumKernel(scalar, array)
    except ValueError as exc:
        raise ProblemError(str(exc)) from None


def sum_source(loss: MixedSum, params: Sequence | None, policy: KinkPolicy,
               opts: CodegenOptions, fuse: bool | None = None, dtype: str = "float64") -> str:
    """The module :func:`compile_sum` runs, when it is one (the array terms fuse)."""
    if params is not None:
        raise ProblemError(_PARAMS)
    fused = _fused(loss, fuse, dtype)
    if fused is None:
        raise ProblemError("a sum of index sums and array terms that do not fuse compiles to two "
                           "modules (one per path) and has no single standalone module: "
                           "generate each part (loss.scalar and loss.array) on its own, or use "
                           "sg.compile")
    return module_source(derive(fused[0], policy), opts, dtype)


def _fused(loss: MixedSum, fuse: bool | None, dtype: str = "float64"
           ) -> tuple[Problem, dict] | None:
    """The whole loss as one scalar problem (the array terms unrolled for one sample) and the
    kernel's shapes, or None when the array terms do not fuse (for float32: a ValueError
    saying why and what to do, the two parts compute in float64 only)."""
    fuse = array_build.FUSE_DEFAULT if fuse is None else fuse
    if fuse is False and dtype != "float64":
        raise ValueError(f"dtype={dtype!r} with fuse=False: {_NO_F32}")
    if fuse is False:
        return None
    arrays = array_problem(loss.array)
    fused = array_build.fusion(arrays, dtype)
    if isinstance(fused, str):
        if dtype != "float64":
            raise ValueError(f"dtype={dtype!r}: the array terms do not fuse ({fused}): {_NO_F32}")
        if fuse:
            raise ValueError(array_build.not_fused(fused))
        return None
    unrolled = fused[0]
    shapes = {p.name: tuple(int(s) for s in p.shape) for p in arrays.params}
    sums = problem(loss.scalar, None)
    for p in sums.params:
        if shapes.get(p.name, ()) != ():
            raise ProblemError(f"'{p.name}' is a scalar in the index sums but has shape "
                               f"{shapes[p.name]} in the array terms: use one declaration")
    own = [p for p in sums.params if p.name not in shapes]
    with warnings.catch_warnings():  # entries of an array the loss never reads
        warnings.filterwarnings("ignore", "parameter.* do not appear", UserWarning)
        prob = problem(loss.scalar + unrolled.expr, [*unrolled.params, *own])
    check_dtype(prob, dtype)
    shapes |= dict.fromkeys((p.name for p in own), ())
    shapes |= dict.fromkeys((v.name for v in prob.vectors), (None,))
    return prob, shapes
