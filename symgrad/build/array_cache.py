"""An array problem -> its verified cached module ``(path, text, module)``, without the kernel
class: :func:`symgrad.build.array.compile_array` wraps it in an ArrayKernel, and code that
must not import the kernel module (the Dask path, which the kernel module reaches) constructs
``type(kernel)(...)`` from it.

The cache key is a hash of the problem's exact structure (every node: kind, SymPy expression,
axes, labels, windows; every declared axis; parameter order), the kink policy, the dtype and the
generator's own code, so a warm process neither differentiates nor generates again. Sizes are not
in the key nor in the text: one cached module serves every size. Entries are verified by
:mod:`symgrad.build.cache` (header and content hash) before they are imported.
"""

from __future__ import annotations

import types
from pathlib import Path

import sympy as sp

from ..ad.array import topo
from ..ad.derive import KinkPolicy
from ..backend.numba import CodegenOptions
from ..backend.numba.array_module import array_header, array_module_source
from ..ir.array_problem import ArrayProblem
from ..ir.graph import N
from ..version import __version__
from .key import cache_key
from .shared import cached_with_shared

__all__ = ["cached_array", "canonical"]

# the modules that write an array module (the cache key hashes their import closure)
_WRITERS = ("backend.numba.array_module", "ir.array_problem")


def cached_array(prob: ArrayProblem, policy: KinkPolicy,
                 real: str) -> tuple[Path, str, types.ModuleType]:
    """``(path, text, module)`` of the array problem's compiled module (cached on disk)."""
    opts = CodegenOptions(regenerate="symgrad.compile(loss)", version=__version__)
    return cached_with_shared(
        cache_key("array", canonical(prob), policy, opts, real, _WRITERS),
        lambda digest: array_header(prob, policy, opts, digest),
        lambda: array_module_source(prob, policy, opts, real))


def canonical(prob: ArrayProblem) -> str:
    """An exact text of the problem's structure (no sizes): one line per node."""
    num: dict[int, int] = {}
    lines = []
    for n in topo([prob.loss]):
        num[id(n)] = len(num)
        payload = n.key[2]
        if hasattr(n, "expr"):
            payload = (sp.srepr(n.expr), n.axes)
        shape = tuple("N" if s == N else (s.owner, s.axis, s.trim) for s in n.shape)
        lines.append(f"{n.kind} {payload!r} {shape!r} {[num[id(a)] for a in n.args]}")
    lines.append(repr(prob.param_names))
    return "\n".join(lines)
