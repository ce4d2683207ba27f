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

from ..datacheck import check_names, column
from ..distributed.detect import has_dask
from .problem import ResidualProblem

__all__ = ["BoundResiduals", "ResidualKernel"]

_F64 = np.dtype(np.float64)


class ResidualKernel:
    """Residuals ``r(x)`` of a least-squares problem and their exact Jacobian ``J``.

    ``x`` is packed in :attr:`params` order. With data columns (1-D, ``N`` samples each, passed
    by name) there are ``m`` residuals per sample, ``M = N*m`` in all, sample-major (sample
    ``i`` owns rows ``i*m .. i*m+m-1``); parameter-only residuals have ``M = m``. Every method
    also exists on :meth:`bind`'s result without the data keywords.
    """

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

    def n_residuals(self, **data) -> int:
        """``M``: ``N*m`` with data, ``m`` without."""
        return self.bind(**data).n_residuals()

    def residuals(self, x, /, out=None, **data) -> np.ndarray:
        """The residual vector ``(M,)``."""
        return self.bind(**data).residuals(x, out)

    def jacobian(self, x, /, out=None, **data) -> np.ndarray:
        """The Jacobian ``(M, P)``, C order (materialised; prefer :meth:`normal` for large M)."""
        return self.bind(**data).jacobian(x, out)

    def jvp(self, x, v, /, **data) -> np.ndarray:
        """``J v`` ``(M,)`` without forming J."""
        return self.bind(**data).jvp(x, v)

    def vjp(self, x, u, /, **data) -> np.ndarray:
        """``J^T u`` ``(P,)`` without forming J."""
        return self.bind(**data).vjp(x, u)

    def normal(self, x, /, jscale=None, rscale=None,
               **data) -> tuple[np.ndarray, np.ndarray, float]:
        """``(J^T J, J^T r, r^T r)`` in one fused pass that never stores J.

        With ``jscale`` = a and ``rscale`` = b (``(M,)`` arrays, None meaning 1) it sums
        ``(a_i J_i)^T (a_i J_i)``, ``(a_i J_i)^T (b_i r_i)`` and ``(b_i r_i)^2``. Sums run in
        blocks of 256 samples whose totals are added with compensation (Neumaier), chunk by
        chunk under ``prange``; the chunking depends on N only, so results do not depend on
        the number of threads.
        """
        return self.bind(**data).normal(x, jscale, rscale)

    def rows(self, x, lo: int, hi: int, /, **data) -> tuple[np.ndarray, np.ndarray]:
        """Jacobian rows ``((hi-lo)*m, P)`` and residuals ``((hi-lo)*m,)`` of samples
        ``lo..hi-1`` (for a streamed QR)."""
        return self.bind(**data).rows(x, lo, hi)


class BoundResiduals:
    """A :class:`ResidualKernel` with its data validated once (``kernel.bind(...)``)."""

    def __init__(self, kernel: ResidualKernel, cols: tuple[np.ndarray, ...], n: int) -> None:
        self.kernel, self.cols = kernel, cols
        self.params, self.n_params, self.m = kernel.params, kernel.n_params, kernel.m
        self.data_names: tuple[str, ...] = ()
        #: Number of samples (1 for parameter-only residuals).
        self.n_samples: int = n
        self._M = n * kernel.m
        self._mod = kernel.module

    def __repr__(self) -> str:
        return f"<symgrad.BoundResiduals M={self._M} of {self.kernel!r}>"

    def n_residuals(self) -> int:
        return self._M

    def _vec(self, a, n: int, what: str, names: bool = False) -> np.ndarray:
        if not (type(a) is np.ndarray and a.dtype is _F64 and a.ndim == 1
                and a.flags.c_contiguous):
            try:
                arr = np.asarray(a)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{what} must be a 1-D array of floats") from exc
            if arr.dtype.kind not in "fiub":
                raise TypeError(f"{what} must be a 1-D array of floats, got dtype {arr.dtype}")
            if arr.ndim != 1:
                raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
            a = np.ascontiguousarray(arr, dtype=np.float64)
        if a.shape[0] != n:
            which = f" ({', '.join(self.params)})" if names else ""
            raise ValueError(f"{what} must have {n} entries{which}, got {a.shape[0]}")
        return a

    def _x(self, x) -> np.ndarray:
        return self._vec(x, self.n_params, "x", names=True)

    @staticmethod
    def _out(out, shape: tuple[int, ...], what: str = "out") -> np.ndarray:
        if out is None:
            return np.empty(shape)
        if (type(out) is not np.ndarray or out.dtype is not _F64 or out.shape != shape
                or not out.flags.c_contiguous):
            raise ValueError(f"{what} must be a C-contiguous float64 array of shape {shape}")
        if not out.flags.writeable:
            raise ValueError(f"{what} is read-only: pass a writeable float64 array")
        return out

    def residuals(self, x, out=None) -> np.ndarray:
        return self._mod.residuals(self._x(x), self._out(out, (self._M,)), *self.cols)

    def jacobian(self, x, out=None) -> np.ndarray:
        J = self._out(out, (self._M, self.n_params))
        return self._mod.rows(self._x(x), 0, self.n_samples, J, np.empty(self._M), *self.cols)

    def jvp(self, x, v) -> np.ndarray:
        v = self._vec(v, self.n_params, "v", names=True)
        return self._mod.jvp(self._x(x), v, np.empty(self._M), *self.cols)

    def vjp(self, x, u) -> np.ndarray:
        u = self._vec(u, self._M, "u (one weight per residual)")
        return self._mod.vjp(self._x(x), u, np.empty(self.n_params), *self.cols)

    def normal(self, x, jscale=None, rscale=None) -> tuple[np.ndarray, np.ndarray, float]:
        x = self._x(x)
        js = None if jscale is None else self._vec(jscale, self._M, "jscale (one per residual)")
        rs = None if rscale is None else self._vec(rscale, self._M, "rscale (one per residual)")
        P = self.n_params
        A, b = np.empty((P, P)), np.empty(P)
        rtr = self._mod.normal(x, A, b, js, rs, *self.cols)
        return A, b, float(rtr)

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
        return J, r
