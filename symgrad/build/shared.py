"""One compiled copy per process of the helpers every cached module carries.

Each generated module carries the helpers it calls in its own text, so that it stands alone, as
:func:`symgrad.generate` writes it: the BLAS product (:data:`~symgrad.backend.numba.gemm.
GEMM_HELPER`: ``_gemm``, inlined where it is called, and ``_gemm_any``, which holds the BLAS
calls) in array and model modules, and the out-overlap check (``_overlap``,
:data:`~symgrad.backend.numba.helpers.OVERLAP_HELPER`) in every module. Compiled per module, they
cost about 0.4 s (``_gemm_any``) and 0.3-0.6 s (``_overlap``, one compile per pair of array
types) of every cold build, the same machine code each time. When symgrad imports a module from
its compile cache, :func:`cached_with_shared` points the module's copies at the ones of a cached
module that holds only the helpers (``sg_shared_<digest>.py``, verified like every entry): one
compile per signature, then Numba's cache in later processes. The text is the same, so the
results are the same bits; the module's own functions are compiled with the shared ones
(``_gemm`` resolves ``_gemm_any`` in the module's globals when it is inlined). Dask workers
import a module under a name of their own and keep its own helpers.

>>> import numpy as np
>>> out = np.empty((2, 2))
>>> shared_module()._gemm(np.eye(2), np.arange(4.0).reshape(2, 2), out)
>>> out.tolist(), bool(shared_module()._overlap(out, out[1]))
([[0.0, 1.0], [2.0, 3.0]], True)
"""

from __future__ import annotations

import hashlib
import types
from collections.abc import Callable
from pathlib import Path

from ..backend.numba.gemm import GEMM_HELPER
from ..backend.numba.helpers import OVERLAP_HELPER
from .cache import GENERATED_MARK, cached_module

__all__ = ["SHARED", "cached_with_shared", "shared_module"]

#: The helpers a cached module's own copies are replaced by.
SHARED = ("_gemm_any", "_overlap")

_BODY = "\n".join([
    '"""The helpers that the modules symgrad imports from its cache share in a process."""',
    "",
    "import numba",
    "import numpy as np",
    "",
    GEMM_HELPER.strip("\n"),
    "",
    "",
    OVERLAP_HELPER.strip("\n"),
    ""])
_DIGEST = hashlib.sha256(_BODY.encode()).hexdigest()
_KEY = "shared_" + _DIGEST[:24]


def _header(digest: str) -> str:
    return (f"{GENERATED_MARK}# symgrad shared helpers {_KEY}: {', '.join(SHARED)}, shared by "
            f"the cached modules of a process\n# content hash: {digest}\n")


def shared_module() -> types.ModuleType:
    """The cache's module of the shared helpers: verified on every call (one small file),
    imported once per cache directory and process."""
    return cached_module(_KEY, _header, lambda: _header(_DIGEST[:16]) + _BODY)[2]


def cached_with_shared(key: str, header_for: Callable[[str], str],
                       build: Callable[[], str]) -> tuple[Path, str, types.ModuleType]:
    """:func:`~symgrad.build.cache.cached_module` for a generated module: the shared module is
    imported first (Numba's cache of the module's functions names it: a process that imported
    the module alone would find that cache unreadable and recompile), then each helper of
    :data:`SHARED` the module has is pointed at the shared one, before any of its functions is
    compiled."""
    shared = shared_module()
    path, src, mod = cached_module(key, header_for, build)
    for name in SHARED:
        if name in mod.__dict__:
            setattr(mod, name, getattr(shared, name))
    return path, src, mod
