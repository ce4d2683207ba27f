"""The residual pipeline composed: problem -> derivatives and text -> verified cached module.

The cache key (:func:`symgrad.build.key.cache_key`, the one every kind uses) hashes the validated
problem (residual expressions, parameter order, data columns), the kink policy, the codegen
options, the dtype and the generator's own code, so a warm process neither differentiates nor
generates again; the entry is verified by :mod:`symgrad.build.cache`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..ad.derive import KinkPolicy
from ..backend.numba import CodegenOptions
from ..backend.numba.residual_module import residual_header, residual_source
from ..ir.residual_problem import residual_problem
from ..runtime.array_residual import compile_array_residuals, is_array_residual
from ..runtime.residual import ResidualKernel
from ..version import __version__
from .cache import cached_module
from .key import cache_key, canon
from .options import check_options

__all__ = ["compile_residuals", "residual_module"]

#: The modules that write a residual module (the cache key hashes their import closure).
_WRITERS = ("backend.numba.residual_module", "ir.residual_problem")


def compile_residuals(resid, params: Sequence | None = None, data: Sequence | str | None = None,
                      *, policy: KinkPolicy | None = None, parallel: bool | None = None,
                      dtype: str | None = None) -> ResidualKernel:
    """Compile residuals into a :class:`ResidualKernel` (residuals, Jacobian, J v, J^T u and
    the fused normal equations); the same as ``sg.compile(resid, kind="residual")``.

    ``resid``: one expression per sample in parameters and 1-D data columns, a list/tuple/
    Matrix of them (m residuals per sample), or parameter-only expressions (M residuals).
    An array expression that keeps the sample axis (``W @ X + b - Y``) compiles to an
    :class:`~symgrad.runtime.array_residual.ArrayResiduals` (m residuals per sample).
    Text is parsed by the safe parser (never evaluated): names listed in ``data`` are data
    columns, every other name a parameter. ``params`` fixes the order of x
    (default: every ``sg.params`` symbol, in declaration order); ``data`` names plain symbols
    that are data columns (``sg.data`` symbols are data anyway). ``policy``, ``parallel`` and
    ``dtype`` are :func:`symgrad.compile`'s options: the module is per-sample parallel
    (``parallel=False`` is refused) and float64 (``dtype="float32"`` is refused).

    >>> import symgrad as sg
    >>> x1, x2 = sg.params("x1 x2")
    >>> rk = sg.compile_residuals([10*(x2 - x1**2), 1 - x1])
    >>> rk.residuals([-1.2, 1.0]).tolist(), rk.jacobian([-1.2, 1.0]).tolist()
    ([-4.399999999999999, 2.2], [[24.0, 10.0], [-1.0, 0.0]])
    """
    if is_array_residual(resid):
        check_options("residual", policy=policy, parallel=parallel, dtype=dtype)
        return compile_array_residuals(resid, params, data, policy=policy)
    policy, real = check_options("residual", policy=policy, parallel=parallel, dtype=dtype)
    prob = residual_problem(resid, params, data)
    opts = CodegenOptions(regenerate="symgrad.compile_residuals(resid)", version=__version__)
    path, src, mod = cached_module(
        cache_key("residual", canon(prob), policy, opts, real, _WRITERS),
        lambda digest: residual_header(prob, policy, opts, digest),
        lambda: residual_source(prob, policy, opts))
    return ResidualKernel(prob, src, path, mod, policy)


def residual_module(resid, params: Sequence | None, data: Sequence | str | None,
                    policy: KinkPolicy, opts: CodegenOptions) -> str:
    """The text of the residual module (what :func:`symgrad.generate` writes)."""
    return residual_source(residual_problem(resid, params, data), policy, opts)
