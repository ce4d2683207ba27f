"""A validated residual problem -> its cached residual module -> a residual kernel.

The one place the residual module is generated and cached, for residuals written per sample
(:func:`symgrad.build.residual.compile_residuals`) and for array residuals unrolled for one
sample (the fused lowering of
:func:`~symgrad.runtime.array_residual.compile_array_residuals`). The cache key
(:func:`symgrad.build.key.cache_key`) hashes the problem (residual expressions, parameter order,
data columns and their widths), the kink policy, the codegen options, the dtype and the
generator's own code, so a warm process neither differentiates nor generates again.
"""

from __future__ import annotations

from ..ad.derive import KinkPolicy
from ..backend.numba import CodegenOptions
from ..backend.numba.residual_module import residual_header, residual_source
from ..ir.residual_problem import ResidualProblem
from ..runtime.residual import ResidualKernel
from ..version import __version__
from .key import cache_key, canon
from .shared import cached_with_shared

__all__ = ["residual_kernel"]

#: The modules that write a residual module (the cache key hashes their import closure).
WRITERS = ("backend.numba.residual_module", "ir.residual_problem")


def residual_kernel(prob: ResidualProblem, policy: KinkPolicy, real: str, regenerate: str,
                    cls: type = ResidualKernel, **extra) -> ResidualKernel:
    """``cls(prob, source, path, module, policy, **extra)`` on the cached module of ``prob``
    computing in ``real`` ("float64" or "float32"); ``regenerate`` is the call the module's
    header names. ``extra`` may hold ``parallel`` (None/True/False): a choice made per call
    between the module's serial drivers and its chunks on threads, so not part of the key."""
    opts = CodegenOptions(regenerate=regenerate, version=__version__)
    path, src, mod = cached_with_shared(
        cache_key("residual", canon(prob), policy, opts, real, WRITERS),
        lambda digest: residual_header(prob, policy, opts, digest, real),
        lambda: residual_source(prob, policy, opts, real))
    return cls(prob, src, path, mod, policy, **extra)
