"""A residual kernel bound to Dask columns: least squares with the data on the cluster.

:meth:`DaskResiduals.normal` runs the compiled module's fused pass (``J^T J``, ``J^T r``,
``r^T r``) on every chunk on the worker that holds it and sums the ``P^2 + P + 1`` numbers of
each chunk in a fixed tree, so ``sg.least_squares(resid, x0, data={"t": dask_t, ...})`` moves
only those numbers per iteration (method ``"lm"`` or ``"gn"``, the linear loss, no weights).
``residuals`` and ``jacobian`` gather their ``(M,)``/``(M, P)`` results on the client: the
solver reads them only when asked (``fit.fun``, ``fit.jac``) or to name a bad start.

>>> import dask.array as da, numpy as np, symgrad as sg
>>> a, b = sg.params("a b"); t, y = sg.data("t y")
>>> tt = da.linspace(0.0, 1.0, 9, chunks=4)
>>> fit = sg.least_squares(a * t + b - y, [0.0, 0.0], data={"t": tt, "y": 2 * tt + 1})
>>> np.round(fit.x, 12).tolist(), fit.success
([2.0, 1.0], True)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..datacheck import may_hide
from .columns import Chunks, aligned
from .kernel import raise_placed, reduce_chunks
from .worker import ModuleSpec, Unplaced, chunk_normal, chunk_rows

__all__ = ["DaskResiduals", "bind_residuals"]


class DaskResiduals:
    """A :class:`~symgrad.ResidualKernel` bound to Dask columns (``rk.bind(t=dask_t, ...)``)."""

    #: What the kernel computes: "scalar" | "array" (losses), "residual", "model".
    kind: str = "residual"

    def __init__(self, kernel, chunks: Chunks) -> None:
        self.kernel, self.chunks = kernel, chunks
        self.params, self.n_params, self.m = kernel.params, kernel.n_params, kernel.m
        self.data_names: tuple[str, ...] = ()
        self.spec = ModuleSpec.of(kernel)
        #: scan the chunks for NaN/inf on every pass when the residuals can hide them (else
        #: after a non-finite result), as the in-memory kernels do
        self._scan = any(may_hide(e) for e in kernel.problem.exprs)

    @property
    def n_samples(self) -> int:
        """The number of samples (computed, and checked chunk by chunk, the first time it is
        asked when the chunk sizes are unknown)."""
        if self.chunks.n_samples is None:
            self.chunks = self.chunks.sized()
        return self.chunks.n_samples

    def __repr__(self) -> str:
        return (f"<symgrad.DaskResiduals M={self.n_residuals()} in {self.chunks.n_chunks} "
                f"chunks of {self.kernel!r}>")

    def n_residuals(self) -> int:
        return self.n_samples * self.m

    def persist(self) -> DaskResiduals:
        """Keep the columns in the cluster's memory (computed once); returns self."""
        self.chunks = self.chunks.persisted()
        return self

    def normal(self, x, jscale=None, rscale=None) -> tuple[np.ndarray, np.ndarray, float]:
        """``(J^T J, J^T r, r^T r)``: each chunk's fused pass on its worker, then a sum."""
        if jscale is not None or rscale is not None:
            raise NotImplementedError("robust losses and weights are not available with Dask "
                                      "columns yet: use loss='linear' without weights")
        x = _x(self, x)
        P = self.n_params
        row = reduce_chunks(self, chunk_normal, x, names=self.chunks.names, scan=self._scan)
        return row[:P * P].reshape(P, P), row[P * P:P * P + P].copy(), float(row[-1])

    def residuals(self, x, out=None) -> np.ndarray:
        """The residual vector ``(M,)``, gathered on the client."""
        return _gather(self, "residuals", _x(self, x), out)

    def jacobian(self, x, out=None) -> np.ndarray:
        """The Jacobian ``(M, P)``, gathered on the client (only when asked)."""
        return _gather(self, "jacobian", _x(self, x), out)

    def rows(self, x, lo: int, hi: int):
        raise NotImplementedError("method='precise' streams the rows of J to this process: not "
                                  "with Dask columns; use method='lm' or 'gn'")


def _x(b: DaskResiduals, x) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim != 1 or x.shape[0] != b.n_params:
        raise ValueError(f"x must have {b.n_params} entries ({', '.join(b.params)}), "
                         f"got shape {x.shape}")
    return x


def _gather(b: DaskResiduals, what: str, x: np.ndarray, out) -> np.ndarray:
    import dask
    from dask import delayed

    c = b.chunks.recovered()
    spec = delayed(b.spec, pure=True)
    try:
        parts = dask.compute(*[
            delayed(chunk_rows, pure=True)(spec, what, x, (c.number(i), c.offsets[i]), *blocks,
                                           names=c.names, scan=b._scan)
            for i, blocks in enumerate(c.blocks)])
    except Unplaced as exc:
        raise_placed(c, exc)
        raise
    got = np.concatenate(parts)
    if out is None:
        return got
    out[...] = got
    return out


def bind_residuals(kernel, data: Mapping) -> DaskResiduals:
    """What ``rk.bind(**data)`` returns when a column is a Dask collection."""
    from ..datacheck import check_names

    check_names(data, kernel.data_names, "data column")
    return DaskResiduals(kernel, aligned(data, kernel.data_names,
                                         dict.fromkeys(kernel.data_names)))
