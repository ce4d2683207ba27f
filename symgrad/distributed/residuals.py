"""A residual kernel bound to Dask columns: least squares with the data on the cluster.

:meth:`DaskResiduals.normal` runs the compiled module's fused pass (``J^T J``, ``J^T r``,
``r^T r``) on every chunk on the worker that holds it and sums the ``P^2 + P + 1`` numbers of
each chunk in a fixed tree, so ``sg.least_squares(resid, x0, data={"t": dask_t, ...})`` moves
only those numbers per iteration (method ``"lm"`` or ``"gn"``, the linear loss, no weights).
``jvp`` runs chunk by chunk and is gathered; ``vjp`` is summed over the chunks.
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

from ..runtime.blocksums import qr_merge
from ..runtime.datacheck import check_names, may_hide
from .bound import DaskBound, raise_placed
from .columns import aligned
from .worker import ModuleSpec, Unplaced, chunk_rows

__all__ = ["DaskResiduals", "bind_residuals"]


class ResidualPart:
    """A residual kernel's part of a :class:`~.bound.DaskBound`: the loss ``½‖r‖²`` (gradient
    ``J^T r``, Gauss-Newton ``hvp``/``hessian`` ``J^T J``, as in memory) from the chunks' fused
    passes."""

    def __init__(self, kernel) -> None:
        self.kernel, self.spec = kernel, ModuleSpec.of(kernel)
        #: scan the chunks for NaN/inf on every pass when the residuals can hide them (else
        #: after a non-finite result), as the in-memory kernels do
        self.scan = any(may_hide(e) for e in kernel.problem.exprs)

    def normal(self, b: DaskBound, x: np.ndarray) -> np.ndarray:
        return b.reduce(chunk_rows, "normal", x, None, names=b.chunks.names, scan=self.scan)

    def e(self, b: DaskBound, x: np.ndarray) -> float:
        return 0.5 * float(self.normal(b, x)[-1])

    def g(self, b: DaskBound, x: np.ndarray, out: np.ndarray) -> float:
        row = self.normal(b, x)
        P = x.shape[0]
        out[:] = row[P * P:P * P + P]
        return 0.5 * float(row[-1])

    def h(self, b: DaskBound, x: np.ndarray, v: np.ndarray, out: np.ndarray) -> None:
        out[:] = b.reduce(chunk_rows, "gn", x, v, names=b.chunks.names, scan=self.scan)

    def H(self, b: DaskBound, x: np.ndarray, out: np.ndarray) -> None:
        P = x.shape[0]
        out[...] = self.normal(b, x)[:P * P].reshape(P, P)


class DaskResiduals(DaskBound):
    """A :class:`~symgrad.ResidualKernel` bound to Dask columns (``rk.bind(t=dask_t, ...)``):
    the loss methods of ``½‖r‖²`` and ``residuals``, ``jacobian``, ``jvp``, ``vjp``,
    ``normal``, ``n_residuals``."""

    def __init__(self, kernel, chunks) -> None:
        super().__init__(kernel, chunks, ResidualPart(kernel))
        self.m: int = kernel.m  # residuals per sample

    def n_residuals(self) -> int:
        return self.n_samples * self.m

    def normal(self, x, /, jscale=None, rscale=None) -> tuple[np.ndarray, np.ndarray, float]:
        """``(J^T J, J^T r, r^T r)``: each chunk's fused pass on its worker, then a sum."""
        if jscale is not None or rscale is not None:
            raise NotImplementedError("robust losses and weights are not available with Dask "
                                      "columns yet: use loss='linear' without weights")
        x = self._x(x)
        P = self.n_params
        row = self.part.normal(self, x)
        return row[:P * P].reshape(P, P), row[P * P:P * P + P].copy(), float(row[-1])

    def residuals(self, x, /, out=None) -> np.ndarray:
        """The residual vector ``(M,)``, gathered on the client (``out``: as in memory, a
        C-contiguous float64 array of shape ``(M,)``)."""
        x = self._x(x)
        if out is not None:  # (sizing unknown chunks only then)
            out = self.kernel._out(out, (self.n_residuals(),), "out", [("x", x)])
        return self._gather("residuals", x, None, out)

    def jacobian(self, x, /, out=None) -> np.ndarray:
        """The Jacobian ``(M, P)``, gathered on the client (only when asked; ``out``: as in
        memory, a C-contiguous float64 array of shape ``(M, P)``)."""
        x = self._x(x)
        if out is not None:
            out = self.kernel._out(out, (self.n_residuals(), x.shape[0]), "out", [("x", x)])
        return self._gather("jacobian", x, None, out)

    def jvp(self, x, v, /) -> np.ndarray:
        """``J v`` ``(M,)``: each chunk's rows on its worker, gathered by chunk."""
        x = self._x(x)
        return self._gather("jvp", x, self._x(v, "v", x.shape[0]), None)

    def vjp(self, x, u, /) -> np.ndarray:
        """``J^T u`` ``(P,)``: each chunk's part of ``u`` on its worker, the results summed."""
        x = self._x(x)
        M = self.n_residuals()  # sizes the chunks: each slices u at its first sample
        u = np.ascontiguousarray(u, dtype=np.float64)
        if u.shape != (M,):
            raise ValueError(f"u (one weight per residual) must have shape ({M},), got "
                             f"{u.shape}")
        return self.reduce(chunk_rows, "vjp", x, u, names=self.chunks.names,
                           scan=self.part.scan)

    def qr(self, x, /, jscale=None, rscale=None) -> tuple[np.ndarray, np.ndarray, float]:
        """``(R, Qᵀr, rᵀr)`` for ``method="precise"``: each chunk's QR factor of ``[J | r]`` on
        its worker (J never leaves it), the factors merged on the client (a tall-skinny QR)."""
        if jscale is not None or rscale is not None:
            raise NotImplementedError("robust losses and weights are not available with Dask "
                                      "columns yet: use loss='linear' without weights")
        x = self._x(x)
        P = self.n_params
        return qr_merge(self._gather("qr", x, None, None, concat=False), P)

    def rows(self, x, lo: int, hi: int, /):
        raise NotImplementedError("rows(x, lo, hi) would bring J's rows to this process: with "
                                  "Dask columns, qr(x) factors them on the workers")

    def _gather(self, what: str, x: np.ndarray, w, out, concat: bool = True):
        """Each chunk's ``chunk_rows(what)`` on its worker, concatenated in chunk order (or
        their list, ``concat=False``)."""
        import dask
        from dask import delayed

        c = self.chunks = self.chunks.recovered()
        spec = delayed(self.spec, pure=True)
        try:
            parts = dask.compute(*[
                delayed(chunk_rows, pure=True)(spec, what, x, w, (c.number(i), c.offsets[i]),
                                               *blocks, names=c.names, scan=self.part.scan)
                for i, blocks in enumerate(c.blocks)])
        except Unplaced as exc:
            raise_placed(c, exc)
            raise
        if not concat:
            return list(parts)
        got = np.concatenate(parts)
        if out is None:
            return got
        out[...] = got.reshape(out.shape)
        return out


def bind_residuals(kernel, data: Mapping) -> DaskResiduals:
    """What ``rk.bind(**data)`` returns when a column is a Dask collection."""
    check_names(data, kernel.data_names, "data column")
    return DaskResiduals(kernel, aligned(data, kernel.data_names, kernel.widths))
