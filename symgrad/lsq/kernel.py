"""The compiled residual module behind a Python interface: :class:`ResidualKernel`.

Data columns are validated and converted once per call, or once for many calls with
:meth:`ResidualKernel.bind` (the solver's hot loop); ``x``, ``v``, ``u``, scales and outputs are
checked here, so a mistake is a ValueError naming the argument, never a Numba traceback.

>>> import numpy as np, symgrad as sg
>>> a, b = sg.params("a b"); t, y = sg.data("t y")
>>> rk = sg.compile_residuals(a*t + b - y)
>>> data = dict(t=np.array([0.0, 1.0, 2.0]), y=np.array([1.0, 3.0, 4.0]))
>>> rk.residuals([2.0, 1.0], **data).tolist()
[0.0, 0.0, 1.0]
>>> JtJ, Jtr, rtr = rk.normal([2.0, 1.0], **data)
>>> JtJ.tolist(), Jtr.tolist(), rtr
([[5.0, 3.0], [3.0, 3.0]], [2.0, 1.0], 1.0)
"""

from __future__ import annotations

import operator
import types
from pathlib import Path

import numpy as np

from ..argcheck import BoundOut, as_out, as_vector, data_inputs, no_positional
from ..datacheck import check_names, column, raise_non_finite, result_finite
from ..distributed.detect import has_dask
from .problem import ResidualProblem

__all__ = ["BoundResiduals", "ResidualKernel"]


class ResidualKernel:
    """Residuals ``r(x)`` of a least-squares problem and their exact Jacobian ``J``.

    ``x`` is packed in :attr:`params` order. With data columns (1-D, ``N`` samples each, passed
    by name) there are ``m`` residuals per sample, ``M = N*m`` in all, sample-major (sample
    ``i`` owns rows ``i*m .. i*m+m-1``); parameter-only residuals have ``M = m``. Every method
    also exists on :meth:`bind`'s result without the data keywords.
    """

    #: What the kernel computes: "scalar" | "array" (losses), "residual", "model".
    kind: str = "residual"

    def __init__(self, problem: ResidualProblem, source: str, path: Path,
                 module: types.ModuleType) -> None:
        self.problem = problem
        self.expr = problem.expr
        self.source = source
        self.path = Path(path)
        self.module = module
        self.params: tuple[str, ...] = problem.param_names
        self.n_params: int = len(self.params)
        #: Residuals per sample (parameter-only residuals: all of them).
        self.m: int = problem.m
        self.data_names: tuple[str, ...] = problem.data_names

    def __repr__(self) -> str:
        data = f", data=({', '.join(self.data_names)})" if self.data_names else ""
        return (f"<symgrad.ResidualKernel params=({', '.join(self.params)}), m={self.m}{data} "
                f"at {self.path}>")

    def bind(self, **data) -> BoundResiduals:
        """Validate and convert the data columns once; the result has the same methods
        without data keywords."""
        if has_dask(data):  # columns on a Dask cluster: the fused pass runs there
            from ..distributed.residuals import bind_residuals

            return bind_residuals(self, data)
        check_names(data, self.data_names, "data column")
        cols, n = [], 1
        for k, name in enumerate(self.data_names):
            a = np.ascontiguousarray(column(name, data[name], None), dtype=np.float64)
            if k == 0:
                n = a.shape[0]
            elif a.shape[0] != n:
                raise ValueError(f"data column '{name}' has {a.shape[0]} samples but "
                                 f"'{self.data_names[0]}' has {n}: columns must have the same "
                                 "length")
            cols.append(a)
        return BoundResiduals(self, tuple(cols), n)

    def n_residuals(self, *extra, **data) -> int:
        """``M``: ``N*m`` with data, ``m`` without."""
        no_positional(extra, self.data_names, 'n_residuals')
        return self.bind(**data).n_residuals()

    def residuals(self, x, /, out=None, *extra, **data) -> np.ndarray:
        """The residual vector ``(M,)``."""
        no_positional(extra, self.data_names, 'residuals')
        return self.bind(**data).residuals(x, out)

    def jacobian(self, x, /, out=None, *extra, **data) -> np.ndarray:
        """The Jacobian ``(M, P)``, C order (materialised; prefer :meth:`normal` for large M)."""
        no_positional(extra, self.data_names, 'jacobian')
        return self.bind(**data).jacobian(x, out)

    def jvp(self, x, v, /, *extra, **data) -> np.ndarray:
        """``J v`` ``(M,)`` without forming J."""
        no_positional(extra, self.data_names, 'jvp')
        return self.bind(**data).jvp(x, v)

    def vjp(self, x, u, /, *extra, **data) -> np.ndarray:
        """``J^T u`` ``(P,)`` without forming J."""
        no_positional(extra, self.data_names, 'vjp')
        return self.bind(**data).vjp(x, u)

    def normal(self, x, /, jscale=None, rscale=None, *extra,
               **data) -> tuple[np.ndarray, np.ndarray, float]:
        """``(J^T J, J^T r, r^T r)`` in one fused pass that never stores J.

        With ``jscale`` = a and ``rscale`` = b (``(M,)`` arrays, None meaning 1) it sums
        ``(a_i J_i)^T (a_i J_i)``, ``(a_i J_i)^T (b_i r_i)`` and ``(b_i r_i)^2``. Sums run in
        blocks of 256 samples whose totals are added with compensation (Neumaier), chunk by
        chunk under ``prange``; the chunking depends on N only, so results do not depend on
        the number of threads.
        """
        no_positional(extra, self.data_names, 'normal')
        return self.bind(**data).normal(x, jscale, rscale)

    def rows(self, x, lo: int, hi: int, /, *extra, **data) -> tuple[np.ndarray, np.ndarray]:
        """Jacobian rows ``((hi-lo)*m, P)`` and residuals ``((hi-lo)*m,)`` of samples
        ``lo..hi-1`` (for a streamed QR)."""
        no_positional(extra, self.data_names, 'rows')
        return self.bind(**data).rows(x, lo, hi)


class BoundResiduals:
    """A :class:`ResidualKernel` with its data validated once (``kernel.bind(...)``)."""

    #: What the kernel computes: "scalar" | "array" (losses), "residual", "model".
    kind: str = "residual"

    def __init__(self, kernel: ResidualKernel, cols: tuple[np.ndarray, ...], n: int) -> None:
        self.kernel, self.cols = kernel, cols
        self.params, self.n_params, self.m = kernel.params, kernel.n_params, kernel.m
        self.data_names: tuple[str, ...] = ()
        #: Number of samples (1 for parameter-only residuals).
        self.n_samples: int = n
        self._M = n * kernel.m
        self._mod = kernel.module
        self._bound_out = BoundOut(
            lambda out, shape, what, inputs: as_out(out, shape, what, inputs=inputs,
                                                     contiguous=True),
            data_inputs(dict(zip(kernel.data_names, cols, strict=True))))

    def __repr__(self) -> str:
        return f"<symgrad.BoundResiduals M={self._M} of {self.kernel!r}>"

    def n_residuals(self) -> int:
        return self._M

    def _vec(self, a, n: int, what: str, names: bool = False) -> np.ndarray:
        return as_vector(a, what, self.params if names else "", n)

    def _x(self, x) -> np.ndarray:
        return self._vec(x, self.n_params, "x", names=True)

    def _out(self, out, shape: tuple[int, ...], x: np.ndarray) -> np.ndarray:
        return self._bound_out(out, shape, "out", ("x", x))

    def _checked(self, *results: np.ndarray):
        """``results`` when finite; else the error naming the first non-finite datum (the
        bound columns are the caller's arrays: they may have changed since ``bind``)."""
        if self.kernel.data_names and not result_finite(0.0, *results):
            raise_non_finite(dict(zip(self.kernel.data_names, self.cols, strict=True)))
        return results[0] if len(results) == 1 else results

    def residuals(self, x, out=None) -> np.ndarray:
        x = self._x(x)
        r = self._mod.residuals(x, self._out(out, (self._M,), x), *self.cols)
        return self._checked(r)

    def jacobian(self, x, out=None) -> np.ndarray:
        x = self._x(x)
        J = self._out(out, (self._M, self.n_params), x)
        return self._checked(self._mod.rows(x, 0, self.n_samples, J, np.empty(self._M),
                                            *self.cols))

    def jvp(self, x, v) -> np.ndarray:
        v = self._vec(v, self.n_params, "v", names=True)
        return self._checked(self._mod.jvp(self._x(x), v, np.empty(self._M), *self.cols))

    def vjp(self, x, u) -> np.ndarray:
        u = self._vec(u, self._M, "u (one weight per residual)")
        return self._checked(self._mod.vjp(self._x(x), u, np.empty(self.n_params), *self.cols))

    def normal(self, x, jscale=None, rscale=None) -> tuple[np.ndarray, np.ndarray, float]:
        x = self._x(x)
        js = None if jscale is None else self._vec(jscale, self._M, "jscale (one per residual)")
        rs = None if rscale is None else self._vec(rscale, self._M, "rscale (one per residual)")
        P = self.n_params
        A, b = np.empty((P, P)), np.empty(P)
        rtr = float(self._mod.normal(x, A, b, js, rs, *self.cols))
        self._checked(A, b, np.array(rtr))
        return A, b, rtr

    def rows(self, x, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        try:
            lo, hi = operator.index(lo), operator.index(hi)
        except TypeError:
            raise TypeError("rows(x, lo, hi): lo and hi must be integers") from None
        if not 0 <= lo <= hi <= self.n_samples:
            raise ValueError(f"rows(x, lo, hi): need 0 <= lo <= hi <= {self.n_samples} (the "
                             f"number of samples), got lo={lo}, hi={hi}")
        k = (hi - lo) * self.m
        J, r = np.empty((k, self.n_params)), np.empty(k)
        self._mod.rows(self._x(x), lo, hi, J, r, *self.cols)
        return self._checked(J, r)
