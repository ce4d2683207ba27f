"""One compiled matrix product per process for every array and model module.

Each array or model module that multiplies matrices carries the product helper
(:data:`~symgrad.backend.numba.gemm.GEMM_HELPER`: ``_gemm``, inlined where it is called, and
``_gemm_any``, which holds the BLAS calls) in its own text, so that the module stands alone, as
:func:`symgrad.generate` writes it. Compiled per module, ``_gemm_any`` cost about 0.4 s of
every cold array build, the same machine code each time. When symgrad imports such a module
from its compile cache, :func:`cached_with_products` points the module's ``_gemm_any`` at the
one of a cached module that holds only the helper (``sg_gemm_<digest>.py``, verified like every
entry): one compile per dtype, then Numba's cache in later processes. The text is the same, so
the products are the same bits; the module's own functions are compiled with the shared one
(``_gemm`` resolves ``_gemm_any`` in the module's globals when it is inlined). Dask workers
import a module under a name of their own and keep its own helper.

>>> import numpy as np
>>> out = np.empty((2, 2))
>>> shared_module()._gemm(np.eye(2), np.arange(4.0).reshape(2, 2), out)
>>> out.tolist()
[[0.0, 1.0], [2.0, 3.0]]
"""

from __future__ import annotations

import hashlib
import types
from collections.abc import Callable
from pathlib import Path

from ..backend.numba.gemm import GEMM_HELPER
from .cache import GENERATED_MARK, cached_module

__all__ = ["cached_with_products", "shared_module"]

_BODY = "\n".join([
    '"""The BLAS product helper that symgrad\'s array and model modules share in a process."""',
    "",
    "import numba",
    "import numpy as np",
    "",
    GEMM_HELPER.strip("\n"),
    ""])
_DIGEST = hashlib.sha256(_BODY.encode()).hexdigest()
_KEY = "gemm_" + _DIGEST[:24]


def _header(digest: str) -> str:
    return (f"{GENERATED_MARK}# symgrad matrix product {_KEY}: _gemm_any, shared by the "
            f"array and model modules of a process\n# content hash: {digest}\n")


def shared_module() -> types.ModuleType:
    """The cache's module of the shared product helper: verified on every call (one small
    file), imported once per cache directory and process."""
    return cached_module(_KEY, _header, lambda: _header(_DIGEST[:16]) + _BODY)[2]


def cached_with_products(key: str, header_for: Callable[[str], str],
                         build: Callable[[], str]) -> tuple[Path, str, types.ModuleType]:
    """:func:`~symgrad.build.cache.cached_module` for an array or model module: the shared
    product module is imported first (Numba's cache of the module's functions names it: a
    process that imported the module alone would find that cache unreadable and recompile),
    then the module's ``_gemm_any``, if it has one, is pointed at the shared one, before any of
    its functions is compiled."""
    shared = shared_module()
    path, src, mod = cached_module(key, header_for, build)
    if "_gemm_any" in mod.__dict__:
        mod._gemm_any = shared._gemm_any
    return path, src, mod
