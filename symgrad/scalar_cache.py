"""The cache key of a scalar loss's module, and the module compiled without the kernel class.

:func:`symgrad.compile` wraps :func:`cached_scalar`'s module in a :class:`~symgrad.Kernel`; code
that must not import the kernel module (the Dask path, which the kernel module reaches) builds
``type(kernel)(...)`` from it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import types
from pathlib import Path

import sympy as sp

from .cache import cached_module, code_digest
from .codegen import CodegenOptions, header, module_source
from .derive import KinkPolicy, derive
from .symbols import Data
from .version import __version__

__all__ = ["cached_scalar"]

# the modules that write a scalar module (the cache key hashes their import closure)
_WRITERS = ("codegen", "derive", "problem")


def cached_scalar(prob, policy: KinkPolicy) -> tuple[Path, str, types.ModuleType]:
    """``(path, text, module)`` of a validated scalar problem's module (cached on disk)."""
    opts = CodegenOptions(regenerate="symgrad.compile(loss)", version=__version__)
    return cached_module(
        _cache_key(prob, policy, opts),
        lambda digest: header(prob, policy, opts, digest),
        lambda: module_source(derive(prob, policy), opts))


def _cache_key(prob, policy: KinkPolicy, opts: CodegenOptions) -> str:
    """A hash of every input of derive and codegen: the whole validated problem (expression,
    ordered scalar parameters and vectors, data columns and their layout, reductions), the kink
    policy, the codegen options and the code of the generator itself.

    The key is computed without deriving (a warm process skips SymPy); the entry's header is
    then checked against this problem before it is used (:func:`symgrad.cache.cached_module`).
    """
    parts = [_canon(prob), _canon(policy), _canon(opts), code_digest(*_WRITERS)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def _canon(obj) -> str:
    """A canonical text of a problem's parts: ``srepr`` for SymPy objects plus the column layout
    of data symbols (not in ``srepr``), recursing into dataclasses and tuples field by field."""
    if isinstance(obj, sp.Basic):
        layout = sorted((d.name, d.column, repr(d.component), repr(d.width))
                        for d in obj.atoms(Data))
        return f"{sp.srepr(obj)}{layout!r}"
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return f"{type(obj).__name__}(" + ", ".join(
            f"{f.name}={_canon(getattr(obj, f.name))}" for f in dataclasses.fields(obj)) + ")"
    if isinstance(obj, tuple | list):
        return "(" + ", ".join(_canon(o) for o in obj) + ")"
    return repr(obj)
