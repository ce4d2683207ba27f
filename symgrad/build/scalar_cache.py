"""The cache key of a scalar loss's module, and the module compiled without the kernel class.

:func:`symgrad.compile` wraps :func:`cached_scalar`'s module in a :class:`~symgrad.Kernel`; code
that must not import the kernel module (the Dask path, which the kernel module reaches) builds
``type(kernel)(...)`` from it.
"""

from __future__ import annotations

import types
from pathlib import Path

from ..ad.derive import KinkPolicy, derive
from ..backend.numba import CodegenOptions, header, module_source
from ..backend.numba.scalar import check_dtype
from ..version import __version__
from .key import cache_key, canon
from .shared import cached_with_shared

__all__ = ["cached_scalar"]

# the modules that write a scalar module (the cache key hashes their import closure)
_WRITERS = ("backend.numba", "ad.derive", "ir.problem")


def cached_scalar(prob, policy: KinkPolicy, real: str = "float64"
                  ) -> tuple[Path, str, types.ModuleType]:
    """``(path, text, module)`` of a validated scalar problem's module (cached on disk under
    :func:`symgrad.build.key.cache_key`, computed without deriving: a warm process skips SymPy;
    the entry's header is then checked against this problem before it is used). ``real`` is
    the per-sample arithmetic ("float32": float64 totals, x and results stay float64)."""
    check_dtype(prob, real)  # before deriving: refused in the user's terms
    tail = f", dtype={real!r}" if real != "float64" else ""
    opts = CodegenOptions(regenerate=f"symgrad.compile(loss{tail})", version=__version__)
    return cached_with_shared(
        cache_key("scalar", canon(prob), policy, opts, real, _WRITERS),
        lambda digest: header(prob, policy, opts, digest),
        lambda: module_source(derive(prob, policy), opts, real))
