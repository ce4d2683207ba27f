"""A pure NumPy residual kernel (``sympy.lambdify`` of the residuals and their exact Jacobian).

:class:`ReferenceResiduals` has the interface of the compiled ``ResidualKernel``
(``compile_residuals``): the solver only duck-types it, so this is both the independent oracle
in tests and a fallback when the compiled kernel is unavailable. It materialises J in chunks
for the fused pass, so its memory is O(chunk * P), not O(N * P).

>>> import numpy as np, symgrad as sg
>>> a, b = sg.params("a b"); t, y = sg.data("t y")
>>> rk = ReferenceResiduals(a*sg.exp(-b*t) - y, [a, b])
>>> rk.params, rk.data_names, rk.m
(('a', 'b'), ('t', 'y'), 1)
>>> t_ = np.arange(3.0); JtJ, Jtr, rtr = rk.normal([2.0, 0.0], t=t_, y=2 + 0*t_)
>>> float(rtr), JtJ.tolist()
(0.0, [[3.0, -6.0], [-6.0, 20.0]])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import sympy as sp

from ..ir.residual_problem import residual_exprs
from ..ir.symtypes import declaration_order
from ..lang.limits import natural_key
from ..lang.symbols import Data, Param

__all__ = ["BoundResiduals", "ReferenceResiduals", "resolve_symbols"]

CHUNK = 65536  # samples per block of the fused pass


def _order_key(s) -> tuple:
    return (declaration_order(s), s.name)


def _names(spec) -> list:
    if isinstance(spec, str):
        return spec.replace(",", " ").split()
    return list(spec)


def resolve_symbols(exprs: Sequence[sp.Expr], params=None, data=None
                    ) -> tuple[list[sp.Symbol], list[sp.Symbol]]:
    """The parameter and data symbols of residual expressions, in packing order.

    Default parameters: the ``sg.params`` symbols (declaration order); default data: every other
    symbol, sorted by name in natural order (``x2`` before ``x10``, as parameter names are). A
    symbol that is neither (when ``params`` is not given) is an error.
    """
    free: set = set().union(*(e.free_symbols for e in exprs))
    byname = {s.name: s for s in free}
    if params is None:
        ps = sorted((s for s in free if isinstance(s, Param)), key=_order_key)
    else:
        ps = [byname.get(str(p), sp.Symbol(str(p), real=True)) for p in _names(params)]
        missing = [p.name for p in ps if p not in free]
        if missing:
            raise ValueError(f"parameter(s) {', '.join(missing)} do not appear in the residual")
    if not ps:
        raise ValueError("the residual has no parameters: declare them with sg.params or "
                         "pass params=[...]")
    rest = [s for s in free if s not in ps]
    if data is None:
        if params is None:
            stray = sorted(s.name for s in rest if not isinstance(s, Data))
            if stray:
                raise ValueError(f"symbol(s) {', '.join(stray)} are neither parameters nor data:"
                                 " declare them with sg.params / sg.data, or pass params=[...]")
        ds = sorted(rest, key=lambda s: natural_key(s.name))
    else:
        names = _names(data)
        unknown = sorted(s.name for s in rest if s.name not in names)
        if unknown:
            raise ValueError(f"symbol(s) {', '.join(unknown)} are neither in params nor in data")
        ds = [byname[n] for n in names if n in byname]
    return ps, ds


class ReferenceResiduals:
    """Residuals, exact Jacobian, J·v, Jᵀ·u and the fused normal equations with NumPy.

    ``resid``: one expression (one residual per sample), a list of them (m per sample), or a
    list of parameter-only expressions (M = m residuals, no data); text is parsed as by
    ``compile_residuals`` (names in ``data`` are data, the others parameters). Residuals are
    flattened sample-major: entry ``i*m + k`` is residual ``k`` of sample ``i``.
    """

    #: What the kernel computes: "scalar" | "array" (losses), "residual", "model".
    kind: str = "residual"

    def __init__(self, resid, params=None, data=None) -> None:
        # text is parsed by the safe parser (never evaluated), as compile_residuals does
        exprs = residual_exprs(resid, params, data)
        ps, ds = resolve_symbols(exprs, params, data)
        self.exprs = tuple(exprs)
        self.params = tuple(p.name for p in ps)
        self.n_params = len(ps)
        self.m = len(exprs)
        self.data_names = tuple(d.name for d in ds)
        jac = [[sp.diff(e, p) for p in ps] for e in exprs]
        args = [*ps, *ds]
        self._f = [sp.lambdify(args, e, modules="numpy") for e in exprs]
        self._J = [[sp.lambdify(args, d, modules="numpy") for d in row] for row in jac]

    def __repr__(self) -> str:
        return (f"ReferenceResiduals(params={self.params}, data={self.data_names}, "
                f"m={self.m})")

    # ------------------------------------------------------------------ helpers

    def _columns(self, data: dict[str, Any]) -> tuple[list[np.ndarray], int]:
        extra = sorted(set(data) - set(self.data_names))
        if extra:
            raise TypeError(f"unknown data column(s) {', '.join(extra)}; this residual uses "
                            f"{', '.join(self.data_names) or 'no data'}")
        missing = [n for n in self.data_names if n not in data]
        if missing:
            raise TypeError(f"missing data column(s) {', '.join(missing)}")
        cols = [np.asarray(data[n], dtype=np.float64) for n in self.data_names]
        if not cols:
            return [], 1
        n = cols[0].shape[0] if cols[0].ndim else 1
        for name, c in zip(self.data_names, cols, strict=True):
            if c.ndim != 1 or c.shape[0] != n:
                raise ValueError(f"data column {name!r} must be 1-D with {n} samples, "
                                 f"got shape {c.shape}")
        return cols, n

    def _x(self, x) -> list[float]:
        x = np.asarray(x, dtype=np.float64).ravel()
        if x.size != self.n_params:
            raise ValueError(f"x has {x.size} values, expected {self.n_params} "
                             f"({', '.join(self.params)})")
        return list(x)

    def _block(self, x, cols, n, lo, hi, jac: bool):
        """Residuals (and Jacobian rows) of samples lo..hi-1, sample-major."""
        xs = self._x(x)
        sub = [c[lo:hi] for c in cols]
        k = hi - lo
        r = np.empty((k, self.m))
        for j, f in enumerate(self._f):
            r[:, j] = np.broadcast_to(f(*xs, *sub), (k,))
        if not jac:
            return None, r.reshape(-1)
        J = np.empty((k, self.m, self.n_params))
        for j, row in enumerate(self._J):
            for q, d in enumerate(row):
                J[:, j, q] = np.broadcast_to(d(*xs, *sub), (k,))
        return J.reshape(k * self.m, self.n_params), r.reshape(-1)

    # ------------------------------------------------------------------ the interface

    def n_residuals(self, **data) -> int:
        """M = (number of samples) * m."""
        return self._columns(data)[1] * self.m

    def residuals(self, x, /, out=None, **data) -> np.ndarray:
        cols, n = self._columns(data)
        r = self._block(x, cols, n, 0, n, jac=False)[1]
        if out is not None:
            out[:] = r
            return out
        return r

    def jacobian(self, x, /, out=None, **data) -> np.ndarray:
        cols, n = self._columns(data)
        J = self._block(x, cols, n, 0, n, jac=True)[0]
        if out is not None:
            out[:] = J
            return out
        return J

    def jvp(self, x, v, /, **data) -> np.ndarray:
        return self.jacobian(x, **data) @ np.asarray(v, dtype=np.float64)

    def vjp(self, x, u, /, **data) -> np.ndarray:
        return np.asarray(u, dtype=np.float64) @ self.jacobian(x, **data)

    def rows(self, x, lo: int, hi: int, /, **data) -> tuple[np.ndarray, np.ndarray]:
        """J and r rows of samples ``lo..hi-1``."""
        cols, n = self._columns(data)
        if not 0 <= lo <= hi <= n:
            raise IndexError(f"rows({lo}, {hi}) outside 0..{n}")
        return self._block(x, cols, n, lo, hi, jac=True)

    def normal(self, x, /, jscale=None, rscale=None, **data):
        """(JᵀJ, Jᵀr, rᵀr) of the scaled rows a_i J_i, b_i r_i, accumulated block by block."""
        cols, n = self._columns(data)
        P, m = self.n_params, self.m
        JtJ, Jtr, rtr = np.zeros((P, P)), np.zeros(P), 0.0
        for lo in range(0, n, CHUNK):
            hi = min(n, lo + CHUNK)
            J, r = self._block(x, cols, n, lo, hi, jac=True)
            if jscale is not None:
                J = J * np.asarray(jscale)[lo * m:hi * m, None]
            if rscale is not None:
                r = r * np.asarray(rscale)[lo * m:hi * m]
            JtJ += J.T @ J
            Jtr += J.T @ r
            rtr += float(r @ r)
        return JtJ, Jtr, rtr

    def bind(self, **data) -> BoundResiduals:
        """The same methods with the data fixed (validated once)."""
        self._columns(data)
        return BoundResiduals(self, data)


class BoundResiduals:
    """A residual kernel with its data bound: ``residuals(x)``, ``normal(x)``, ..."""

    #: What the kernel computes: "scalar" | "array" (losses), "residual", "model".
    kind: str = "residual"

    def __init__(self, kernel, data: dict[str, Any]) -> None:
        self.kernel, self.data = kernel, dict(data)
        self.params, self.n_params, self.m = kernel.params, kernel.n_params, kernel.m
        self.data_names = kernel.data_names

    def n_residuals(self) -> int:
        return self.kernel.n_residuals(**self.data)

    def residuals(self, x, out=None):
        return self.kernel.residuals(x, out, **self.data)

    def jacobian(self, x, out=None):
        return self.kernel.jacobian(x, out, **self.data)

    def jvp(self, x, v):
        return self.kernel.jvp(x, v, **self.data)

    def vjp(self, x, u):
        return self.kernel.vjp(x, u, **self.data)

    def rows(self, x, lo, hi):
        return self.kernel.rows(x, lo, hi, **self.data)

    def normal(self, x, jscale=None, rscale=None):
        return self.kernel.normal(x, jscale, rscale, **self.data)
