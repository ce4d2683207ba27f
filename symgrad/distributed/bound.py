"""The one kernel bound to Dask columns: the shared machinery, and a small part per kind.

:class:`DaskBound` holds the aligned chunks, ``persist()``, ``on_chunks``, :meth:`~DaskBound.
reduce` (the map-reduce over the chunks: any worker function ``chunk(spec, *args, where,
*blocks) -> row``, summed; faults and non-finite data named by global row), the checks of ``x``,
``v``, ``out``, and the in-memory bound kernels' attributes. Its ``part`` is what differs by
kind: ``spec`` (the module the chunks run), ``scan``, ``e(b, x)``, ``g(b, x, out)``,
``h(b, x, v, out)``, ``H(b, x, out)`` (:mod:`.kernel`, :mod:`.arrays`, :mod:`.vectors`,
:mod:`.residuals`). :class:`~.residuals.DaskResiduals` adds the residual methods.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np

from .columns import Chunks
from .worker import ModuleSpec, Unplaced, add, scan_chunk

__all__ = ["FAN_IN", "DaskBound", "hessian_from_hvp", "map_reduce", "raise_placed"]

#: Rows summed per task of the reduction tree.
FAN_IN = 8


class DaskBound:
    """A kernel bound to Dask columns: an in-memory bound kernel's methods (calling it gives
    ``(value, grad)``: an objective for :func:`symgrad.minimize`), ``persist()``, ``on_chunks``
    (for :func:`symgrad.distributed.sgd`)."""

    def __init__(self, kernel, chunks: Chunks, part) -> None:
        self.kernel, self.chunks, self.part = kernel, chunks, part
        #: The module the chunks run (shipped to the workers).
        self.spec: ModuleSpec = part.spec
        self.kind: str = kernel.kind
        self.params: tuple[str, ...] = kernel.params
        self.n_params: int | None = kernel.n_params
        #: A bound kernel takes no data.
        self.data_names: tuple[str, ...] = ()

    @property
    def labels(self) -> tuple[str, ...]:
        return self.kernel.labels

    @property
    def shapes(self) -> dict:
        return self.kernel.shapes

    @property
    def n_samples(self) -> int:
        """The number of samples (when unknown, computed and checked chunk by chunk once)."""
        if hasattr(self.part, "n_samples"):
            return self.part.n_samples
        if self.chunks.n_samples is None:
            self.chunks = self.chunks.sized()
        return self.chunks.n_samples

    @property
    def n_chunks(self) -> int:
        return self.chunks.n_chunks

    def __repr__(self) -> str:
        return (f"<symgrad.{type(self).__name__} {self.kind} params=({', '.join(self.params)}), "
                f"data=({', '.join(self.chunks.names)}) in {self.n_chunks} chunks>")

    def persist(self):
        """Keep the columns in the cluster's memory (computed once), served by one actor per
        worker holding them (:mod:`.resident`; else every call recomputes them, a task per
        chunk); returns self. Needs a distributed client (without one it does nothing)."""
        self.chunks = self.chunks.persisted()
        return self

    def on_chunks(self, which: Sequence[int]):
        """The same loss on the chunks numbered ``which`` only (a mini-batch of chunks; a mean
        is over their samples)."""
        out = copy.copy(self)
        out.chunks = self.chunks.subset(which)
        if hasattr(self.part, "on_chunks"):
            out.part = self.part.on_chunks(which)
        return out

    def chunk_sizes(self) -> tuple[int, ...]:
        """The number of samples in each chunk (when unknown, the columns' lengths are computed
        and checked once, as for :attr:`n_samples`)."""
        sizes = getattr(self.part, "_sizes", None)
        if sizes is not None:
            return tuple(sizes)
        if self.chunks.whole is None:
            n = self.n_samples  # sizes the whole set once (offsets then known)
            return tuple(int(k) for k in np.diff([*self.chunks.offsets, n]))
        import dask
        from dask import delayed

        return tuple(int(k) for k in dask.compute(*[delayed(len)(b[0])
                                                    for b in self.chunks.blocks]))

    def no_samples(self) -> ValueError:
        """The error of a call on no samples (the in-memory kernel's; for chunks chosen with
        :meth:`on_chunks`, which ones)."""
        if self.chunks.numbers is None:
            return ValueError("the data columns are empty: a reduction needs at least one "
                              "sample")
        which = ", ".join(str(i) for i in self.chunks.numbers)
        return ValueError(f"the chunks selected with on_chunks ({which}) hold no samples: a "
                          "reduction needs at least one; select chunks that hold samples "
                          "(DaskBound.chunk_sizes() gives each chunk's count)")

    def reduce(self, chunk: Callable, *args, **kwargs) -> np.ndarray:
        """:func:`map_reduce` of ``chunk`` on the chunks, first regrouping them when a worker
        holding them was lost (so later calls are direct again)."""
        self.chunks = self.chunks.recovered()
        return map_reduce(self.spec, self.chunks, chunk, *args, **kwargs)

    def _x(self, x, what: str = "x", size: int | None = None) -> np.ndarray:
        return self.kernel._x(x, what, size)

    def value(self, x, /) -> float:
        return float(self.part.e(self, self._x(x)))

    def value_and_grad(self, x, /, out=None) -> tuple[float, np.ndarray]:
        x = self._x(x)
        out = self.kernel._out(out, x.shape, "out", [("x", x)])
        return float(self.part.g(self, x, out)), out

    __call__ = value_and_grad

    def grad(self, x, /, out=None) -> np.ndarray:
        return self.value_and_grad(x, out)[1]

    def hvp(self, x, v, /, out=None) -> np.ndarray:
        x = self._x(x)
        v = self._x(v, "v", x.shape[0])
        out = self.kernel._out(out, x.shape, "out", [("x", x), ("v", v)])
        self.part.h(self, x, v, out)
        return out

    def hessian(self, x, /, out=None) -> np.ndarray:
        x = self._x(x)
        out = self.kernel._out(out, (x.shape[0],) * 2, "out", [("x", x)])
        self.part.H(self, x, out)
        return out


def hessian_from_hvp(n: int, hvp: Callable[[int, np.ndarray, np.ndarray], None],
                     out: np.ndarray) -> np.ndarray:
    """The Hessian column by column, ``hvp(j, e_j, col)`` writing ``H e_j`` into ``col``, then
    symmetrised: the rule of the generated ``hessian`` (:func:`~symgrad.backend.numba.skeleton.
    hessian_fn`), for Hessians finished on the client."""
    e, col = np.zeros(n), np.empty(n)
    for j in range(n):
        e[j] = 1.0
        hvp(j, e, col)
        out[:, j] = col
        e[j] = 0.0
    out[...] = 0.5 * (out + out.T)
    return out


def map_reduce(spec: ModuleSpec, c: Chunks, chunk: Callable, *args, **kwargs) -> np.ndarray:
    """``sum over chunks of chunk(spec, *args, where, *blocks, **kwargs)``, on the cluster:
    ``chunk`` is a module-level function, ``where`` ``(chunk number, first sample or None)``.
    Persisted columns are reduced by their holders (:mod:`.resident`); others, and persisted
    ones whose holder was lost, by a task per chunk, the rows summed in a tree of
    :data:`FAN_IN`."""
    import dask
    from dask import delayed

    if c.resident is not None:  # persisted on a cluster: ask each worker's holder directly
        only = None if c.numbers is None else tuple(c.numbers)  # repeats kept: counted
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
    dask.compute(delayed(scan_chunk)((k, first), *c.blocks[k], names=c.names, dtype=exc.dtype))
