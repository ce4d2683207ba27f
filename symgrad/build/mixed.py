"""Compile a :class:`~symgrad.lang.mixed.MixedSum` (index sums plus array terms) to a
:class:`~symgrad.runtime.sum_kernel.SumKernel`: each part on its own path, one packed ``x``."""

from __future__ import annotations

from collections.abc import Sequence

from ..ad.derive import KinkPolicy
from ..ir.problem import ProblemError, problem
from ..lang.mixed import MixedSum
from ..runtime.scalar import ScalarKernel
from ..runtime.sum_kernel import SumKernel
from .array import compile_array
from .scalar_cache import cached_scalar

__all__ = ["compile_sum"]


def compile_sum(loss: MixedSum, params: Sequence | None = None, *,
                policy: KinkPolicy | None = None, parallel: bool | None = None) -> SumKernel:
    """The :class:`SumKernel` of ``loss`` (see :func:`symgrad.compile`)."""
    if params is not None:
        raise ProblemError("params= orders the parameters of one path; a sum of index sums and "
                           "array terms packs x as array parameters, then the scalars only the "
                           "index sums read, then the vectors: leave params unset")
    prob = problem(loss.scalar, None)
    path, src, mod = cached_scalar(prob, policy, "float64")
    scalar = ScalarKernel(prob, src, path, mod, parallel=None if parallel is None
                          else bool(parallel), policy=policy)
    array = compile_array(loss.array, None, policy=policy, dtype="float64", parallel=parallel,
                          fuse=False)
    try:
        return SumKernel(scalar, array)
    except ValueError as exc:
        raise ProblemError(str(exc)) from None
