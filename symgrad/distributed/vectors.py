"""A scalar loss with index sums over parameter vectors, bound to Dask columns.

The loss is split at its top-level sum into the terms that read data (sums and means over
samples, any outer function of them: a scalar loss Dask runs as chunk sums plus the outer chain
rule, :class:`~symgrad.distributed.DaskKernel`) and the terms that do not (the index sums
``sg.sum(u[i]**2, (i, 0, u.length))`` and other penalties: computed once, on the client). A term
with both (an index sum inside a mean, a product of the two) is refused.

>>> import dask.array as da, numpy as np, symgrad as sg
>>> w = sg.params("w"); u = sg.params("u", indexed=True); i = sg.index("i"); t = sg.data("t")
>>> f = sg.compile(sg.mean((w - t)**2) + sg.sum(u[i]**2, (i, 0, u.length)))
>>> fb = bind_vectors(f, {"t": da.arange(4.0, chunks=3)})
>>> fb.value([1.0, 2.0, 3.0]), f.value([1.0, 2.0, 3.0], t=np.arange(4.0))
(14.5, 14.5)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import sympy as sp

from ..build.scalar_cache import cached_scalar
from ..ir.problem import problem
from ..lang.symbols import Data, IndexedSum
from .bound import DaskBound
from .kernel import ScalarPart
from .kernel import bind as bind_scalar

__all__ = ["DaskVectorKernel", "bind_vectors"]


def bind_vectors(kernel, data: Mapping, *, persist: bool = False) -> DaskBound:
    """The vector-indexed scalar ``kernel`` on the Dask columns ``data`` (see the module)."""
    def compile_loss(expr):  # the kernel's parameters, in its order (a fused loss's entries)
        prob = problem(expr, [p for p in kernel.problem.params if p in expr.free_symbols])
        path, src, mod = cached_scalar(prob, kernel.policy)
        return kernel.part(prob, src, path, mod)

    with_data, rest = [], []
    for term in sp.Add.make_args(kernel.expr):
        reads = any(isinstance(s, Data) for s in term.free_symbols)
        if reads and term.has(IndexedSum):
            raise NotImplementedError(
                f"the term {term} reads data and sums over an index: on Dask columns an index "
                "sum (sg.sum(..., (i, lo, hi))) must be a separate term of the loss (added to "
                "the data terms, not inside a mean or multiplied by one)")
        (with_data if reads else rest).append(term)
    fa = compile_loss(sp.Add(*with_data))
    fr = compile_loss(sp.Add(*rest))
    scalars = {n: k for k, n in enumerate(kernel.problem.param_names)}
    inner = bind_scalar(fa, {k: v for k, v in data.items() if k not in fr.data_names})
    # element-wise columns (y[i]) have the vectors' length: read on the client, in memory
    elements = {k: np.asarray(v.compute() if hasattr(v, "compute") else v)
                for k, v in data.items() if k in fr.data_names}
    out = DaskBound(kernel, inner.chunks, VectorPart(
        kernel, inner.part, fr, np.array([scalars[n] for n in fa.params], dtype=np.int64),
        elements))
    return out.persist() if persist else out


DaskVectorKernel = DaskBound


class VectorPart:
    """The index sums' part of a :class:`~.bound.DaskBound`: the data terms' scalar part on the
    cluster (entries ``a_idx`` of x) plus the rest kernel on the client."""

    def __init__(self, kernel, data_part: ScalarPart, rest, a_idx: np.ndarray,
                 elements: Mapping | None = None) -> None:
        self.kernel, self.data_part, self.rest, self._aidx = kernel, data_part, rest, a_idx
        self.spec, self.scan = data_part.spec, data_part.scan
        #: The rest kernel's element-wise data columns (in memory).
        self._el = dict(elements or {})

    def _ridx(self, x: np.ndarray) -> np.ndarray:
        """The rest kernel's entries of ``x``: its scalars, then its vectors (by name)."""
        k = self.kernel
        n = k.vector_length(x.shape[0])
        ns = len(k.problem.param_names)
        at = {nm: j for j, nm in enumerate(k.problem.param_names)}
        vec = {nm: j for j, nm in enumerate(k.vectors)}
        parts = [np.array([at[nm] for nm in self.rest.problem.param_names], dtype=np.int64)]
        parts += [np.arange(ns + vec[v] * n, ns + (vec[v] + 1) * n) for v in self.rest.vectors]
        return np.concatenate(parts)

    def e(self, b: DaskBound, x: np.ndarray) -> float:
        return self.data_part.e(b, x[self._aidx]) + self.rest.value(x[self._ridx(x)], **self._el)

    def g(self, b: DaskBound, x: np.ndarray, out: np.ndarray) -> float:
        ri, ga = self._ridx(x), np.empty(self._aidx.size)
        va = self.data_part.g(b, x[self._aidx], ga)
        vr, gr = self.rest.value_and_grad(x[ri], **self._el)
        out[:] = 0.0
        out[self._aidx] += ga
        out[ri] += gr
        return va + vr

    def h(self, b: DaskBound, x: np.ndarray, v: np.ndarray, out: np.ndarray) -> None:
        ri, ha = self._ridx(x), np.empty(self._aidx.size)
        self.data_part.h(b, x[self._aidx], v[self._aidx], ha)
        out[:] = 0.0
        out[self._aidx] += ha
        out[ri] += self.rest.hvp(x[ri], v[ri], **self._el)

    def H(self, b: DaskBound, x: np.ndarray, out: np.ndarray) -> None:
        ri, Ha = self._ridx(x), np.empty((self._aidx.size, self._aidx.size))
        self.data_part.H(b, x[self._aidx], Ha)
        out[...] = 0.0
        out[np.ix_(self._aidx, self._aidx)] += Ha
        out[np.ix_(ri, ri)] += self.rest.hessian(x[ri], **self._el)
