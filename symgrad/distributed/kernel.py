"""A kernel bound to Dask columns: map over chunks on the workers, reduce, finish on the client.

Each call builds one small graph: a task per chunk runs the compiled module's accumulator
(``_acc_e``/``_acc_g``/``_acc_h``) on the worker that holds the chunk, a fixed tree of
:func:`~symgrad.distributed.worker.add` tasks sums the rows (accumulators plus sample count),
and the client applies the module's outer chain rule (``_finish_e``/``_finish_g``/
``_finish_h``) to the one small row it receives. So a nonlinear outer function of the sample
means (RMSE, the log of a mean, penalties) is exact, and only ``O(K n)`` numbers per call leave
the cluster. ``dask.compute`` runs it: on the ``distributed`` client if one exists, else on
Dask's local threads. Persisted columns (:meth:`DaskKernel.persist`) skip the graph: each
worker's holder (:mod:`~symgrad.distributed.resident`) reduces its chunks on request.

Extension point: :meth:`DaskKernel.reduce` maps any worker function ``chunk(spec, *args,
where, *blocks) -> row`` over the chunks and returns the summed row; a least-squares kernel's
fused normal equations (``J^T J``, ``J^T r``, ``r^T r`` per chunk) plug in there.

>>> import dask.array as da, numpy as np, symgrad as sg
>>> a = sg.params("a"); t = sg.data("t")
>>> f = sg.compile(sg.sqrt(sg.mean((a - t)**2)))
>>> fb = f.bind(t=da.arange(8.0, chunks=3))
>>> round(fb.value([3.5]), 6), fb.n_chunks
(2.291288, 3)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from .columns import Chunks, aligned
from .worker import ModuleSpec, Unplaced, add, chunk_acc, scan_chunk

__all__ = ["FAN_IN", "DaskKernel", "bind", "map_reduce", "reduce_chunks"]

#: Rows summed per task of the reduction tree.
FAN_IN = 8


class DaskKernel:
    """A scalar :class:`~symgrad.Kernel` bound to Dask columns; the BoundKernel methods.

    ``value``, ``value_and_grad``, ``grad``, ``hvp``, ``hessian`` take ``x`` (and ``v``) like
    the in-memory kernel; calling the object returns ``(value, grad)``, so it is a plain
    objective for :func:`symgrad.minimize` (any first-order optimizer, ``optim.lbfgs()``;
    ``optim.newton()`` with ``hvp=fb.hvp``).
    """

    def __init__(self, kernel, chunks: Chunks) -> None:
        self.kernel, self.chunks = kernel, chunks
        self.params, self.kind = kernel.params, kernel.kind
        self.n_params = kernel.n_params
        self.spec = ModuleSpec.of(kernel)
        self._K = len(kernel.problem.reductions)
        #: scan the chunks for NaN/inf on every call (the loss can hide them), as in memory
        self._scan = bool(kernel._scan_always)

    def __repr__(self) -> str:
        return (f"<symgrad.DaskKernel params=({', '.join(self.params)}), "
                f"data=({', '.join(self.chunks.names)}) in {self.n_chunks} chunks>")

    @property
    def n_chunks(self) -> int:
        return self.chunks.n_chunks

    def persist(self) -> DaskKernel:
        """Keep the (aligned) columns in the cluster's memory; returns self.

        Computed once (lazily generated data included); later calls, and :meth:`on_chunks`
        subsets, are served where the chunks are by one actor per worker holding them
        (:mod:`~symgrad.distributed.resident`): a direct request per worker, no task. Without
        it every call recomputes the columns from their graph, one task per chunk. Needs a
        distributed client (without one it does nothing).
        """
        self.chunks = self.chunks.persisted()
        return self

    def on_chunks(self, which: Sequence[int]) -> DaskKernel:
        """The same loss on the chunks numbered ``which`` only (a mini-batch of chunks)."""
        out = DaskKernel.__new__(DaskKernel)
        out.__dict__.update(self.__dict__)
        out.chunks = self.chunks.subset(which)
        return out

    # -- the map-reduce --------------------------------------------------------------------
    def reduce(self, chunk: Callable, *args, **kwargs) -> np.ndarray:
        """``sum over chunks of chunk(spec, *args, where, *blocks, **kwargs)``, on the cluster
        (:func:`map_reduce`)."""
        return reduce_chunks(self, chunk, *args, **kwargs)

    def _acc(self, mode: str, x: np.ndarray, v: np.ndarray | None = None):
        n = x.shape[0]
        size = {"e": self._K, "g": self._K * (1 + n), "h": self._K * (1 + 2 * n),
                "H": self._K * (1 + 2 * n)}[mode]
        row = self.reduce(chunk_acc, mode, size, x, v, names=self.chunks.names,
                          scan=self._scan)
        return row[..., :size], int(row[..., size].flat[0])

    # -- the kernel methods ------------------------------------------------------------------
    def _x(self, x, what: str = "x", size: int | None = None) -> np.ndarray:
        return self.kernel._x(x, what, size)

    def value(self, x) -> float:
        x = self._x(x)
        acc, N = self._acc("e", x)
        return float(self.kernel.module._finish_e(x, acc, N))

    def value_and_grad(self, x, out=None) -> tuple[float, np.ndarray]:
        x = self._x(x)
        out = self.kernel._out(out, x.shape, "out", [("x", x)])
        acc, N = self._acc("g", x)
        return float(self.kernel.module._finish_g(x, acc, N, out)), out

    __call__ = value_and_grad

    def grad(self, x, out=None) -> np.ndarray:
        return self.value_and_grad(x, out)[1]

    def hvp(self, x, v, out=None) -> np.ndarray:
        x = self._x(x)
        v = self._x(v, "v", x.shape[0])
        out = self.kernel._out(out, x.shape, "out", [("x", x), ("v", v)])
        acc, N = self._acc("h", x, v)
        self.kernel.module._finish_h(x, v, acc, N, out)
        return out

    def hessian(self, x, out=None) -> np.ndarray:
        """The Hessian, from one pass over the chunks (an HVP per unit vector in each task)."""
        x = self._x(x)
        n = x.shape[0]
        out = self.kernel._out(out, (n, n), "out", [("x", x)])
        acc, N = self._acc("H", x)
        e = np.zeros(n)
        col = np.empty(n)
        for j in range(n):
            e[j] = 1.0
            self.kernel.module._finish_h(x, e, np.ascontiguousarray(acc[j]), N, col)
            out[:, j] = col
            e[j] = 0.0
        out[...] = 0.5 * (out + out.T)
        return out


def reduce_chunks(owner, chunk: Callable, *args, **kwargs) -> np.ndarray:
    """:func:`map_reduce` on ``owner.chunks`` (``owner.spec``'s module), first regrouping them
    when a worker holding them was lost (so later calls are direct again)."""
    owner.chunks = owner.chunks.recovered()
    return map_reduce(owner.spec, owner.chunks, chunk, *args, **kwargs)


def map_reduce(spec: ModuleSpec, c: Chunks, chunk: Callable, *args, **kwargs) -> np.ndarray:
    """``sum over chunks of chunk(spec, *args, where, *blocks, **kwargs)``, on the cluster.

    ``chunk`` must be importable on the workers (a module-level function); ``where`` is
    ``(chunk number, first sample or None)``. Persisted columns (:meth:`Chunks.persisted`) are
    reduced by their holders, one actor per worker (:mod:`.resident`); other columns, and
    persisted ones whose holder was lost, by one task per chunk, the rows summed in a fixed
    tree of :data:`FAN_IN`.
    """
    import dask
    from dask import delayed

    if c.resident is not None:  # persisted on a cluster: ask each worker's holder directly
        only = None if c.numbers is None else frozenset(c.numbers)
        row = c.resident.reduce(spec, chunk, args, kwargs, only)
        if row is not None:
            return row  # else a holder was lost: tasks, which recompute the lost chunks
    key = delayed(spec, pure=True)  # one graph key: sent once per worker
    rows = [delayed(chunk, pure=True)(key, *args, (c.number(i), c.offsets[i]), *blocks,
                                      **kwargs) for i, blocks in enumerate(c.blocks)]
    while len(rows) > 1:
        rows = [delayed(add, pure=True)(*rows[i:i + FAN_IN]) for i in range(0, len(rows), FAN_IN)]
    try:
        return dask.compute(rows[0])[0]
    except Unplaced as exc:  # unknown chunk sizes: find the chunk's first sample, name the row
        raise_placed(c.whole or c, exc)
        raise


def raise_placed(c: Chunks, exc: Unplaced) -> None:
    """Raise the error naming the global row of the non-finite value that ``exc`` reports in
    chunk ``exc.chunk`` of ``c`` (the whole set): its first sample is the sum of the earlier
    chunks' lengths, computed now."""
    import dask
    from dask import delayed

    k = exc.chunk
    first = c.offsets[k]
    if first is None:
        first = int(sum(dask.compute(*[delayed(len)(b[0]) for b in c.blocks[:k]])))
    dask.compute(delayed(scan_chunk)((k, first), *c.blocks[k], names=c.names))


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


def bind(kernel, data: Mapping, batch=None, *, persist: bool = False) -> DaskKernel:
    """A :class:`DaskKernel` of ``kernel`` on the columns ``data`` (what ``f.bind`` returns
    when a column is a Dask collection); ``persist=True`` keeps the columns on the cluster."""
    from ..datacheck import check_names

    _supported(kernel)
    if batch is not None:
        raise TypeError("batch= is not available with Dask columns: index the Dask arrays "
                        "(t[idx]) or use DaskKernel.on_chunks / symgrad.distributed.sgd")
    check_names(data, kernel.data_names, "data column")
    widths = {c.name: c.width for c in kernel.problem.columns}
    fb = DaskKernel(kernel, aligned(data, kernel.data_names, widths))
    return fb.persist() if persist else fb
