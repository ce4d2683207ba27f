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
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..ad.derive import Builder, KinkPolicy, Program
from ..distributed.detect import has_dask
from ..distributed.residuals import bind_residuals
from ..ir.residual_problem import ResidualProblem
from . import blas, scalar
from .argcheck import as_out, as_vector, in_range, no_positional
from .base import At, Kernel
from .bound import BoundResiduals
from .datacheck import (
    batch_index,
    check_names,
    column,
    may_hide,
    overflow_error,
    raise_non_finite,
)
from .formulas import program_text
from .threads import residual_calls

__all__ = ["BoundResiduals", "ResidualKernel"]


class ResidualKernel(Kernel):
    """Residuals ``r(x)`` of a least-squares problem and their exact Jacobian ``J``.

    ``x`` is packed in :attr:`params` order. With data columns (``N`` samples each, passed by
    name: ``(N,)``, or ``(N, k)`` for a column whose components the residuals read) there are
    ``m`` residuals per sample, ``M = N*m`` in all, sample-major (sample ``i`` owns rows
    ``i*m .. i*m+m-1``); parameter-only residuals have ``M = m``. Every method also exists on
    :meth:`bind`'s result without the data keywords.

    It is also a loss kernel of ``½‖r‖²``: ``value``, ``grad`` (``Jᵀr``), ``hvp`` and
    ``hessian`` are the Gauss–Newton ones (``JᵀJ v``, ``JᵀJ``: the exact Hessian less
    ``Σ r_i ∇²r_i``, equal at a zero-residual fit), so :func:`~symgrad.minimize` and
    :func:`~symgrad.check_grad` take it.
    """

    kind: str = "residual"
    #: True: the threaded calls (the serial drivers' chunks on threads,
    #: :func:`~symgrad.runtime.threads.residual_calls`); False: the same chunks in order on
    #: the calling thread; None
    #: (the default): per call, the threaded ones from
    #: :data:`~symgrad.runtime.scalar.PARALLEL_THRESHOLD` samples. Both give the same bits.
    parallel: bool | None = None
    _serial = _par = None  # the serial and the threaded calls (None: no module)

    def __init__(self, problem: ResidualProblem, source: str, path: Path,
                 module: types.ModuleType, policy: KinkPolicy | None = None,
                 parallel: bool | None = None) -> None:
        self.problem = problem
        self.policy = policy or KinkPolicy()
        self.expr = problem.expr
        self.source = source
        self.path = Path(path)
        self.module = module
        self.params: tuple[str, ...] = problem.param_names
        self.n_params: int = len(self.params)
        self.shapes: dict[str, tuple] = dict.fromkeys(self.params, ())
        #: Residuals per sample (parameter-only residuals: all of them).
        self.m: int = problem.m
        self.data_names: tuple[str, ...] = problem.data_names
        #: The per-sample data columns (every column: rows are samples).
        self.sampled: tuple[str, ...] = self.data_names
        # residuals that can turn a NaN datum into a finite value (min(r, 10)) are scanned
        # on every call, not only after a non-finite result
        self._scan_always = any(may_hide(e) for e in problem.exprs)
        #: Each column's entries per sample: None for ``(N,)``, ``k`` for ``(N, k)``.
        self.widths: dict[str, int | None] = {c.name: c.width for c in problem.columns}
        #: The per-sample arithmetic and the data columns it reads: float64, or float32 for
        #: ``compile_residuals(resid, dtype="float32")`` (the module's ``DTYPE``); x, the sums
        #: over samples and every result stay float64 (:attr:`dtype`).
        self.data_dtype = np.dtype(getattr(module, "DTYPE", "float64"))
        self.parallel = None if parallel is None else bool(parallel)
        names = ("residuals", "rows", "jvp", "vjp", "normal")
        # the module's chunk functions, serially or on threads (its drivers and their prange
        # twins are never compiled: Numba takes seconds for them); parameter-only residuals
        # have no sample loop, only drivers
        if hasattr(module, "_normal_run"):
            self._serial = residual_calls(module, self.n_params, threads=False)
            self._par = residual_calls(module, self.n_params)
        else:
            self._serial = types.SimpleNamespace(**{n: getattr(module, n) for n in names})

    def __repr__(self) -> str:
        data = f", data=({', '.join(self.data_names)})" if self.data_names else ""
        return (f"<symgrad.ResidualKernel params=({', '.join(self.params)}), m={self.m}{data} "
                f"at {self.path}>")

    def formulas(self) -> str:
        """The residuals of one sample and their exact Jacobian, as a straight-line program."""
        b = Builder(self.policy)
        xs = list(self.problem.params)
        rs = [b.node(e) for e in self.problem.exprs]
        J = [c for r in rs for c in b.gradient(r, xs)]
        return program_text(Program(tuple(b.assigns), {"r": tuple(rs), "J": tuple(J)}),
                            ("r", "J"))

    def bind(self, **data):
        """Validate and convert the data columns once; the result has the same methods
        without data keywords."""
        if has_dask(data):  # columns on a Dask cluster: the fused pass runs there
            return bind_residuals(self, data)
        return super().bind(**data)

    # -- the residual calls -------------------------------------------------------------------
    def n_residuals(self, *extra, batch=None, **data) -> int:
        """``M``: ``N*m`` with data, ``m`` without."""
        no_positional(extra, self.data_names, "n_residuals")
        return self._samples(self.data_args(data, batch, scan=False)) * self.m

    def residuals(self, x, /, out=None, *extra, batch=None, **data) -> np.ndarray:
        """The residual vector ``(M,)``."""
        no_positional(extra, self.data_names, "residuals", out)
        return self._residuals(x, out, self._at(data, batch))

    def jacobian(self, x, /, out=None, *extra, batch=None, **data) -> np.ndarray:
        """The Jacobian ``(M, P)``, C order (materialised; prefer :meth:`normal` for large M)."""
        no_positional(extra, self.data_names, "jacobian", out)
        return self._jacobian(x, out, self._at(data, batch))

    def jvp(self, x, v, /, *extra, batch=None, **data) -> np.ndarray:
        """``J v`` ``(M,)`` without forming J."""
        no_positional(extra, self.data_names, "jvp")
        return self._jvp(x, v, self._at(data, batch))

    def vjp(self, x, u, /, *extra, batch=None, **data) -> np.ndarray:
        """``J^T u`` ``(P,)`` without forming J."""
        no_positional(extra, self.data_names, "vjp")
        return self._vjp(x, u, self._at(data, batch))

    def normal(self, x, /, jscale=None, rscale=None, *extra, batch=None,
               **data) -> tuple[np.ndarray, np.ndarray, float]:
        """``(J^T J, J^T r, r^T r)`` in one fused pass that never stores J.

        With ``jscale`` = a and ``rscale`` = b (``(M,)`` arrays, None meaning 1) it sums
        ``(a_i J_i)^T (a_i J_i)``, ``(a_i J_i)^T (b_i r_i)`` and ``(b_i r_i)^2``. Sums run in
        blocks of 256 samples whose totals are added with compensation (Neumaier), chunk by
        chunk (on Numba's threads for a large N: :attr:`parallel`); the chunking depends on N
        only, so results do not depend on the number of threads or on ``parallel``.
        """
        no_positional(extra, self.data_names, "normal", jscale, rscale)
        return self._normal(x, jscale, rscale, self._at(data, batch))

    def rows(self, x, lo: int, hi: int, /, *extra, batch=None,
             **data) -> tuple[np.ndarray, np.ndarray]:
        """Jacobian rows ``((hi-lo)*m, P)`` and residuals ``((hi-lo)*m,)`` of samples
        ``lo..hi-1`` (for a streamed QR)."""
        no_positional(extra, self.data_names, "rows")
        return self._rows(x, lo, hi, self._at(data, batch))

    # -- data -----------------------------------------------------------------------------------
    def _x(self, x, what: str = "x", size: int | None = None) -> np.ndarray:
        x = as_vector(x, what, self.params, self.n_params if size is None else size)
        if self.data_dtype != np.float64:  # the sample loop rounds x (and v) to float32
            in_range(x, what, self.data_dtype)
        return x

    def _out(self, out, shape: tuple, what: str = "out", inputs=()) -> np.ndarray:
        return as_out(out, shape, what, inputs=inputs, contiguous=True)

    def _columns(self, args: tuple) -> dict[str, np.ndarray]:
        return dict(zip(self.data_names, args, strict=True))

    def _samples(self, args: tuple) -> int:
        """The number of samples of validated data (1 for parameter-only residuals)."""
        return args[0].shape[0] if args else 1

    def data_args(self, data: Mapping | None = None, batch=None, *, scan: bool = True) -> tuple:
        """The data columns as C-contiguous arrays of :attr:`data_dtype` in :attr:`data_names`
        order (the rows of ``batch``, a slice or an index array, gathered), for the module's
        functions. A float32 kernel converts other columns here, once per call (or once for
        ``bind``); with ``scan``, a finite value beyond float32 among the rows read is named
        (else a non-finite result names it)."""
        data = dict(data or {})
        if has_dask(data):
            raise TypeError("Dask columns go to bind(...) or sg.least_squares, which run the "
                            "fused pass on the cluster")
        check_names(data, self.data_names, self._data_kind)
        if not self.data_names:
            if batch is not None:
                raise TypeError("batch= needs residuals with data columns")
            return ()
        cols, n = [], 0
        for k, name in enumerate(self.data_names):
            a = column(name, data[name], self.widths[name], "row", scan)
            if k == 0:
                n = a.shape[0]
            elif a.shape[0] != n:
                raise ValueError(f"data column '{name}' has {a.shape[0]} samples but "
                                 f"'{self.data_names[0]}' has {n}: columns must have the same "
                                 "length")
            cols.append(a)
        rows = batch if batch is None or isinstance(batch, slice) else batch_index(batch, n)
        if scan:
            self._raise_overflow(dict(zip(self.data_names, cols, strict=True)), rows)
        with np.errstate(over="ignore"):  # beyond float32: named if a result needs it
            return tuple(np.ascontiguousarray(c if rows is None else c[rows],
                                              dtype=self.data_dtype) for c in cols)

    def _name_non_finite(self, data: Mapping, batch=None) -> None:
        raise_non_finite({c: data[c] for c in self.data_names}, batch, kind=self._data_kind)
        self._raise_overflow({c: data[c] for c in self.data_names}, batch)

    def _raise_overflow(self, data: Mapping, batch=None) -> None:
        """A float32 kernel: the error naming the first finite datum (among the rows ``batch``
        reads) that float32 makes inf, if any."""
        if self.data_dtype == np.float64:
            return
        for c, a in data.items():
            err = overflow_error(c, a, self.data_dtype, batch, kind=self._data_kind)
            if err is not None:
                raise err

    def _check(self, at: At, *results: np.ndarray):
        """``results`` when finite; else the error naming the first non-finite datum."""
        self._checked(at, 0.0, *results)
        return results[0] if len(results) == 1 else results

    def _vec(self, a, n: int, what: str) -> np.ndarray:
        return as_vector(a, what, "", n)

    # -- residual family on validated data ----------------------------------------------------
    def _residuals(self, x, out, at: At) -> np.ndarray:
        x = self._x(x)
        M = self._samples(at.args) * self.m
        r = at.out(out, (M,), "out", ("x", x))
        self._fill_residuals(x, r, at.args)
        return self._check(at, r)

    def _jacobian(self, x, out, at: At) -> np.ndarray:
        x = self._x(x)
        n = self._samples(at.args)
        J = at.out(out, (n * self.m, self.n_params), "out", ("x", x))
        self._fill_rows(x, 0, n, J, None, at.args)
        return self._check(at, J)

    def _jvp(self, x, v, at: At) -> np.ndarray:
        v = self._x(v, "v")
        out = np.empty(self._samples(at.args) * self.m)
        self._fill_jvp(self._x(x), v, out, at.args)
        return self._check(at, out)

    def _vjp(self, x, u, at: At) -> np.ndarray:
        M = self._samples(at.args) * self.m
        u = self._vec(u, M, "u (one weight per residual)")
        out = np.empty(self.n_params)
        self._fill_vjp(self._x(x), u, out, at.args)
        return self._check(at, out)

    def _normal(self, x, jscale, rscale, at: At) -> tuple[np.ndarray, np.ndarray, float]:
        x = self._x(x)
        M = self._samples(at.args) * self.m
        js = None if jscale is None else self._vec(jscale, M, "jscale (one per residual)")
        rs = None if rscale is None else self._vec(rscale, M, "rscale (one per residual)")
        A, b, rtr = self._sums(x, js, rs, at.args)
        self._check(at, A, b, np.array(rtr))
        return A, b, rtr

    def _rows(self, x, lo: int, hi: int, at: At) -> tuple[np.ndarray, np.ndarray]:
        try:
            lo, hi = operator.index(lo), operator.index(hi)
        except TypeError:
            raise TypeError("rows(x, lo, hi): lo and hi must be integers") from None
        n = self._samples(at.args)
        if not 0 <= lo <= hi <= n:
            raise ValueError(f"rows(x, lo, hi): need 0 <= lo <= hi <= {n} (the number of "
                             f"samples), got lo={lo}, hi={hi}")
        k = (hi - lo) * self.m
        J, r = np.empty((k, self.n_params)), np.empty(k)
        self._fill_rows(self._x(x), lo, hi, J, r, at.args)
        return self._check(at, J, r)

    # -- the compiled residual family (no checks): what a subclass computes differently ------
    def _impl(self, n: int) -> types.SimpleNamespace:
        """The serial or the threaded calls for a call over ``n`` samples (see
        :attr:`parallel`). The threaded ones run on the threads of the one thread policy
        (:mod:`symgrad.runtime.blas`), as every kernel's do: the cores other processes leave
        free."""
        if self._par is None or self.parallel is False or (
                self.parallel is None and n < scalar.PARALLEL_THRESHOLD):
            return self._serial
        blas.use_threads()
        return self._par

    def _fill_residuals(self, x: np.ndarray, r: np.ndarray, args: tuple) -> None:
        self._impl(self._samples(args)).residuals(x, r, *args)

    def _fill_rows(self, x: np.ndarray, lo: int, hi: int, J: np.ndarray, r, args: tuple) -> None:
        """J rows (and residuals into ``r`` unless None) of samples ``lo..hi-1``."""
        self._impl(hi - lo).rows(x, lo, hi, J, np.empty(J.shape[0]) if r is None else r, *args)

    def _fill_jvp(self, x: np.ndarray, v: np.ndarray, out: np.ndarray, args: tuple) -> None:
        self._impl(self._samples(args)).jvp(x, v, out, *args)

    def _fill_vjp(self, x: np.ndarray, u: np.ndarray, out: np.ndarray, args: tuple) -> None:
        self._impl(self._samples(args)).vjp(x, u, out, *args)

    def _sums(self, x: np.ndarray, js, rs, args: tuple) -> tuple[np.ndarray, np.ndarray, float]:
        """``(JᵀJ, Jᵀr, rᵀr)`` with rows scaled by ``js``/``rs`` (None: 1), J never stored."""
        P = self.n_params
        A, b = np.empty((P, P)), np.empty(P)
        return A, b, float(self._impl(self._samples(args)).normal(x, A, b, js, rs, *args))

    # -- the loss ½‖r‖² ---------------------------------------------------------------------------
    def _value(self, x, at: At) -> float:
        return 0.5 * _sq(self._residuals(x, None, at))

    def _value_and_grad(self, x, out, at: At) -> tuple[float, np.ndarray]:
        x = self._x(x)
        out = at.out(out, x.shape, "out", ("x", x))
        r = self._residuals(x, None, at)
        self._fill_vjp(x, r, out, at.args)
        return self._checked(at, 0.5 * _sq(r), out), out

    def _hvp(self, x, v, out, at: At) -> np.ndarray:
        x = self._x(x)
        v = self._x(v, "v")
        out = at.out(out, x.shape, "out", ("x", x), ("v", v))
        self._fill_vjp(x, self._jvp(x, v, at), out, at.args)
        return self._check(at, out)

    def _hessian(self, x, out, at: At) -> np.ndarray:
        x = self._x(x)
        out = at.out(out, (self.n_params, self.n_params), "out (the Hessian H)", ("x", x))
        out[...] = self._normal(x, None, None, at)[0]
        return out


def _sq(r: np.ndarray) -> float:
    """``r @ r`` without BLAS: its threaded dot adds in an order set by the thread count, and
    the value must not depend on it (einsum's loop does not)."""
    return float(np.einsum("i,i->", r, r))
