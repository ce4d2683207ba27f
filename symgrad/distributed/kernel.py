"""A kernel bound to Dask columns: map over chunks on the workers, reduce, finish on the client.

Each call builds one small graph: a task per chunk runs the compiled module's accumulator
(``_acc_e``/``_acc_g``/``_acc_h``) on the worker that holds the chunk, a fixed tree of
:func:`~symgrad.distributed.worker.add` tasks sums the rows (accumulators plus sample count),
and the client applies the module's outer chain rule (``_finish_e``/``_finish_g``/
``_finish_h``) to the one small row it receives. So a nonlinear outer function of the sample
means (RMSE, the log of a mean, penalties) is exact, and only ``O(K n)`` numbers per call leave
the cluster. ``dask.compute`` runs it: on the ``distributed`` client if one exists, else on
Dask's local threads. Persisted columns (:meth:`~.bound.DaskBound.persist`) skip the graph:
each worker's holder (:mod:`~symgrad.distributed.resident`) reduces its chunks on request.

>>> import dask.array as da, numpy as np, symgrad as sg
>>> a = sg.params("a"); t = sg.data("t")
>>> f = sg.compile(sg.sqrt(sg.mean((a - t)**2)))
>>> fb = f.bind(t=da.arange(8.0, chunks=3))
>>> round(fb.value([3.5]), 6), fb.n_chunks
(2.291288, 3)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..runtime.datacheck import check_names
from .bound import FAN_IN, DaskBound, hessian_from_hvp, map_reduce
from .columns import aligned
from .worker import ModuleSpec, chunk_acc

__all__ = ["FAN_IN", "DaskKernel", "bind", "map_reduce"]

#: The Dask bound kernel of every kind (the name of the scalar one, kept).
DaskKernel = DaskBound


class ScalarPart:
    """A scalar loss's part of a :class:`~.bound.DaskBound`: each chunk's accumulators
    (``_acc_e``/``_acc_g``/``_acc_h``), summed, finished on the client (``_finish_*``)."""

    def __init__(self, kernel) -> None:
        self.kernel, self.spec = kernel, ModuleSpec.of(kernel)
        self._K = len(kernel.problem.reductions)
        #: scan the chunks for NaN/inf on every call (the loss can hide them), as in memory
        self.scan = bool(kernel._scan_always)

    def _acc(self, b: DaskBound, mode: str, x: np.ndarray, v: np.ndarray | None = None):
        n = x.shape[0]
        size = self._K * {"e": 1, "g": 1 + n, "h": 1 + 2 * n, "H": 1 + 2 * n}[mode]
        row = b.reduce(chunk_acc, mode, size, x, v, names=b.chunks.names, scan=self.scan)
        N = int(row[..., size].flat[0])
        if N == 0:  # every row filtered out (or only empty chunks chosen): not a NaN mean
            raise b.no_samples()
        return row[..., :size], N

    def e(self, b: DaskBound, x: np.ndarray) -> float:
        return self.kernel.module._finish_e(x, *self._acc(b, "e", x))

    def g(self, b: DaskBound, x: np.ndarray, out: np.ndarray) -> float:
        acc, N = self._acc(b, "g", x)
        return self.kernel.module._finish_g(x, acc, N, out)

    def h(self, b: DaskBound, x: np.ndarray, v: np.ndarray, out: np.ndarray) -> None:
        acc, N = self._acc(b, "h", x, v)
        self.kernel.module._finish_h(x, v, acc, N, out)

    def H(self, b: DaskBound, x: np.ndarray, out: np.ndarray) -> None:
        """From one pass over the chunks (an HVP per unit vector in each task)."""
        acc, N = self._acc(b, "H", x)
        hessian_from_hvp(x.shape[0], lambda j, e, col: self.kernel.module._finish_h(
            x, e, np.ascontiguousarray(acc[j]), N, col), out)


def _supported(kernel) -> None:
    """Refuse, in the user's terms, kernels without the chunk/finish split."""
    mod = getattr(kernel, "module", None)
    if not all(hasattr(mod, f) for f in ("_acc_g", "_finish_g", "_finish_h")):
        what = ("no reductions over samples" if not hasattr(kernel, "problem") or
                not hasattr(kernel.problem, "reductions") else
                "sums over an index (sg.index): bind it with symgrad.distributed.bind(f, "
                "{'t': t, ...}), which runs the index sums on the client"
                if getattr(kernel.problem, "vector_sums", ()) else
                "no reduction over samples")
        raise NotImplementedError(
            f"Dask columns work with losses whose data enter through sg.mean/sg.sum over "
            f"samples; this loss has {what}. Pass NumPy arrays (or compute the Dask ones).")


def bind(kernel, data: Mapping, batch=None, *, persist: bool = False) -> DaskBound:
    """A :class:`DaskKernel` of ``kernel`` on the columns ``data`` (what ``f.bind`` returns
    when a column is a Dask collection); ``persist=True`` keeps the columns on the cluster."""
    _supported(kernel)
    if batch is not None:
        raise TypeError("batch= is not available with Dask columns: index the Dask arrays "
                        "(t[idx]) or use DaskKernel.on_chunks / symgrad.distributed.sgd")
    check_names(data, kernel.data_names, "data column")
    widths = {c.name: c.width for c in kernel.problem.columns}
    fb = DaskBound(kernel, aligned(data, kernel.data_names, widths), ScalarPart(kernel))
    return fb.persist() if persist else fb
