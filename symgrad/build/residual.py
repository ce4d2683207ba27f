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
from ..errors import ProblemError
from ..ir.model_problem import model_problem
from ..ir.residual_problem import residual_problem
from ..runtime.array_residual import compile_array_residuals, is_array_residual, unrolled_problem
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
    ``dtype`` are :func:`symgrad.compile`'s options: ``parallel=None`` runs a call over
    ``symgrad.runtime.scalar.PARALLEL_THRESHOLD`` samples or more on threads (the serial
    drivers' chunks, :mod:`symgrad.runtime.threads`: the same bits) and a smaller one
    serially, True/False force it; ``dtype="float32"`` computes each sample's residuals and
    Jacobian row in float32 (data columns converted to float32, ``rk.data_dtype``) and every
    sum over samples in float64, so ``x``, ``JᵀJ``, ``Jᵀr`` and every result stay float64
    (``rk.dtype``) and :func:`symgrad.least_squares` runs unchanged.

    >>> import symgrad as sg
    >>> x1, x2 = sg.params("x1 x2")
    >>> rk = sg.compile_residuals([10*(x2 - x1**2), 1 - x1])
    >>> rk.residuals([-1.2, 1.0]).tolist(), rk.jacobian([-1.2, 1.0]).tolist()
    ([-4.399999999999999, 2.2], [[24.0, 10.0], [-1.0, 0.0]])
    """
    policy, real = check_options("residual", policy=policy, parallel=parallel, dtype=dtype,
                                 fuse=fuse)
    if is_array_residual(resid):
        return compile_array_residuals(resid, params, data, policy=policy, fuse=fuse,
                                       dtype=real, parallel=parallel)
    if fuse is False:
        raise ValueError("fuse=False chooses the array lowering of an array residual (W @ X + b "
                         "- Y); residuals written per sample always run the fused sample loop")
    return residual_kernel(residual_problem(resid, params, data), policy, real,
                           "symgrad.compile_residuals(resid"
                           + (f", dtype={real!r})" if real != "float64" else ")"),
                           parallel=parallel)


def residual_module(resid, params: Sequence | None, data: Sequence | str | None,
                    policy: KinkPolicy, opts: CodegenOptions, real: str = "float64") -> str:
    """The text of the residual module (what :func:`symgrad.generate` writes). An array
    residual is written as its fused sample loop (the module of ``compile_residuals(resid,
    fuse=True)``: columns ``(N,)`` or ``(N, k)``, an ``(N, 2, 2)`` array passed as ``(N, 4)``)."""
    if not is_array_residual(resid):
        return residual_source(residual_problem(resid, params, data), policy, opts, real)
    if data is not None:
        raise TypeError("data= names the data columns of text residuals; an array residual "
                        "declares its data with sg.data('X', shape=...)")
    if isinstance(resid, list | tuple) or not getattr(resid, "per_sample", False):
        compile_array_residuals(resid)  # its errors: a list, no sample axis
    try:
        prob = unrolled_problem(model_problem(resid, params))
    except ProblemError as exc:
        raise ProblemError(f"array residual: {exc}") from None
    if isinstance(prob, str):
        raise ProblemError(f"a generated residual module holds the fused sample loop, and this "
                           f"array residual does not fuse: {prob}; use sg.compile_residuals("
                           "resid, fuse=False) in the program instead")
    return residual_source(prob, policy, opts, real)
