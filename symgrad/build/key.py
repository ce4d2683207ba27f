"""One cache key for every kind of generated module (scalar, array, model, residual).

A key hashes everything that shapes a module's text, in one order for every kind: the kind, the
problem's canonical text, the kink policy, the codegen options, the dtype the module computes in
and the digest of the code that writes it (:func:`symgrad.build.cache.code_digest`, the import
closure of the generator). Options that choose between functions of one module at call time
(``parallel=``) are not in it: one module serves both.

>>> from symgrad.ad.derive import KinkPolicy
>>> from symgrad.backend.numba import CodegenOptions
>>> k = cache_key("residual", "text", KinkPolicy(), CodegenOptions(), "float64",
...               ("backend.numba.residual_module",))
>>> k[0], len(k)
('r', 25)
"""

from __future__ import annotations

import dataclasses
import hashlib

import sympy as sp

from ..ir.symtypes import Data
from .cache import code_digest

__all__ = ["PREFIX", "cache_key", "canon"]

#: The first letter of a cache entry's key, by kind (the file is ``sg_<key>.py``). A "sum"
#: kernel writes no module of its own (its parts are entries of kinds "scalar" and "array");
#: its letter keeps the table whole.
PREFIX = {"scalar": "s", "array": "a", "model": "m", "residual": "r", "sum": "u"}


def canon(obj) -> str:
    """A canonical text of a problem's parts: ``srepr`` for SymPy objects plus the column layout
    of data symbols (not in ``srepr``), recursing into dataclasses and tuples field by field."""
    if isinstance(obj, sp.Basic):
        layout = sorted((d.name, d.column, repr(d.component), repr(d.width))
                        for d in obj.atoms(Data))
        return f"{sp.srepr(obj)}{layout!r}"
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return f"{type(obj).__name__}(" + ", ".join(
            f"{f.name}={canon(getattr(obj, f.name))}" for f in dataclasses.fields(obj)) + ")"
    if isinstance(obj, tuple | list):
        return "(" + ", ".join(canon(o) for o in obj) + ")"
    return repr(obj)


def cache_key(kind: str, problem: str, policy, opts, dtype: str,
              writers: tuple[str, ...]) -> str:
    """The key of a module of ``kind`` ("scalar" | "array" | "model" | "residual"):
    ``problem`` is its canonical text (:func:`canon`, or the array graph's own canonical text),
    ``writers`` the generator modules whose import closure is hashed."""
    parts = [kind, problem, canon(policy), canon(opts), dtype, code_digest(*writers)]
    return PREFIX[kind] + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]
