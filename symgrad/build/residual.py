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
from ..backend.numba.residual_module import residual_source
from ..ir.residual_problem import residual_problem
from ..runtime.array_residual import compile_array_residuals, is_array_residual
from ..runtime.residual import ResidualKernel
from .options import check_options
from .residual_kernel import residual_kernel

__all__ = ["compile_residuals", "residual_module"]


def compile_residuals(resid, params: Sequence | None = None, data: Sequence | str | None = None,
                      *, policy: KinkPolicy | None = None, parallel: bool | None = None,
                      dtype: str | None = None, fuse: bool | None = None) -> ResidualKernel:
    """Compile residuals into a :class:`ResidualKernel` (residuals, Jacobian, J v, J^T u and
    the fused normal equations); the same as ``sg.compile(resid, kind="residual")``.

    ``resid``: one expression per sample in parameters and 1-D data columns, a list/tuple/
    Matrix of them (m residuals per sample), or parameter-only expressions (M residuals).
    An array expression that keeps the sample axis (``W @ X + b - Y``) compiles by
    :func:`~symgrad.runtime.array_residual.compile_array_residuals` (m residuals per sample;
    ``fuse``: True for the fused sample loop, False for the array lowering, None: fused
    when the per-sample arrays are small).
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
    if fuse is not None and not isinstance(fuse, bool):
        raise TypeError(f"fuse must be True, False or None (automatic), got {fuse!r}")
    if is_array_residual(resid):
        check_options("residual", policy=policy, parallel=parallel, dtype=dtype)
        return compile_array_residuals(resid, params, data, policy=policy, fuse=fuse)
    if fuse is False:
        raise ValueError("fuse=False chooses the array lowering of an array residual (W @ X + b "
                         "- Y); residuals written per sample always run the fused sample loop")
    policy, real = check_options("residual", policy=policy, parallel=parallel, dtype=dtype)
    return residual_kernel(residual_problem(resid, params, data), policy, real,
                           "symgrad.compile_residuals(resid)")

def residual_module(resid, params: Sequence | None, data: Sequence | str | None,
                    policy: KinkPolicy, opts: CodegenOptions) -> str:
    """The text of the residual module (what :func:`symgrad.generate` writes)."""
    return residual_source(residual_problem(resid, params, data), policy, opts)
