"""The array pipeline composed: problem -> derivatives and text -> verified cached module -> kernel.

The cache key is a hash of the problem's exact structure (every node: kind, SymPy expression,
axes, labels, windows; every declared axis; parameter order), the kink policy, the dtype and the
generator's own code, so a warm process neither differentiates nor generates again. Sizes are not
in the key nor in the text: one cached module serves every size. Entries are verified by
:mod:`symgrad.cache` (header and content hash) before they are imported.
"""

from __future__ import annotations

import hashlib
import types
from collections.abc import Sequence

import numpy as np
import sympy as sp

from .. import blas
from ..cache import cached_module, code_digest
from ..codegen import CodegenOptions
from ..derive import KinkPolicy
from ..version import __version__
from .autodiff import topo
from .codegen import array_header, array_module_source
from .graph import N
from .kernel import ArrayKernel
from .problem import ArrayProblem, array_problem

__all__ = ["array_source", "compile_array"]

#: The code that turns an array problem into module text (its digest is part of the cache key).
# the modules that write an array module (the cache key hashes their import closure)
_WRITERS = ("arrays.codegen", "arrays.problem")


def array_source(loss, params: Sequence | None, policy: KinkPolicy | None,
                 regenerate: str, dtype: str = "float64") -> tuple:
    """``(problem, module text)`` for an array loss."""
    prob = array_problem(loss, params)
    opts = CodegenOptions(regenerate=regenerate, version=__version__)
    return prob, array_module_source(prob, policy, opts, str(np.dtype(dtype)))


def compile_array(loss, params: Sequence | None = None, *, policy: KinkPolicy | None = None,
                  dtype: str = "float64", parallel: bool | None = None) -> ArrayKernel:
    """Compile an array loss into an :class:`ArrayKernel` (see :func:`symgrad.compile`).

    ``parallel=True`` runs the module's threaded cores (``_value_par``, ...: loops under
    ``prange``, the serial core below :data:`~symgrad.arrays.emit_par.PAR_WORK` elements; the
    same result for any number of threads) with Numba's threads set by :mod:`symgrad.blas`;
    ``None`` and ``False`` the serial ones (a kernel that picks by size is to come)."""
    prob = array_problem(loss, params)
    policy, real = policy or KinkPolicy(), str(np.dtype(dtype))
    opts = CodegenOptions(regenerate="symgrad.compile(loss)", version=__version__)
    key = hashlib.sha256("\0".join([canonical(prob), repr(policy), repr(opts), real,
                                    code_digest(*_WRITERS)]).encode()).hexdigest()[:24]
    path, src, mod = cached_module(
        "a" + key,
        lambda digest: array_header(prob, policy, opts, digest),
        lambda: array_module_source(prob, policy, opts, real))
    k = ArrayKernel(prob, src, path, mod, policy, real)
    if parallel:
        k.jit = types.SimpleNamespace(value=mod._value_par, value_and_grad=mod._value_and_grad_par,
                                      hvp=mod._hvp_par, hessian=mod._hessian)
        blas.use_threads()
    return k


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



