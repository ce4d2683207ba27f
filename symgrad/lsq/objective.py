"""A residual kernel with its data, weights and loss, as the solvers see it: ``linearize(x)``.

* ``mode="normal"`` (methods ``lm``, ``gn``): one fused pass ``normal(x, jscale, rscale)``
  gives ``(JᵀJ, Jᵀf, fᵀf)``; J is never materialised. With the linear loss and no weights the
  pass needs no residual vector at all, so memory does not grow with N.
* ``mode="qr"`` (method ``precise``): J rows are streamed in chunks into a P x P triangular
  factor (:func:`symgrad.lsq.qr.streamed_qr`): no squared condition number.

Weights multiply the squared residuals: the solver minimises ``0.5 * sum w_i rho(r_i**2)``,
i.e. works on ``f_i = sqrt(w_i) r_i``; robust losses rescale J and f rows per
:mod:`symgrad.lsq.robust`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import robust
from .lm import Linearization
from .qr import NormalModel, QRModel, streamed_qr

__all__ = ["Objective"]


class Objective:
    """``linearize(x) -> Linearization`` of a bound residual kernel."""

    def __init__(self, kernel, *, loss: str = "linear", f_scale: float = 1.0,
                 weights: np.ndarray | None = None, mode: str = "normal",
                 chunk: int = 4096) -> None:
        self.k = kernel
        self.loss, self.f_scale, self.mode, self.chunk = loss, float(f_scale), mode, chunk
        self.M = int(kernel.n_residuals())
        self.m = int(kernel.m)
        self.sw = None if weights is None else np.sqrt(weights)
        self.last_f: np.ndarray | None = None

    def fun(self, x: np.ndarray) -> np.ndarray:
        """The residuals the cost sees: ``sqrt(w) * r``."""
        r = self.k.residuals(np.asarray(x, dtype=np.float64))
        return r if self.sw is None else r * self.sw

    def jac(self, x: np.ndarray) -> np.ndarray:
        """J of :meth:`fun` (materialised: only when asked)."""
        J = self.k.jacobian(np.asarray(x, dtype=np.float64))
        return J if self.sw is None else J * self.sw[:, None]

    def _scales(self, x: np.ndarray) -> tuple[float | None, Any, Any]:
        """(cost or None, jscale, rscale) for the rows at x."""
        if self.loss == "linear":
            return None, self.sw, self.sw
        f = self.fun(x)
        c, a, b = robust.scales(self.loss, f, self.f_scale)
        if self.sw is not None:
            a, b = a * self.sw, b * self.sw
        return c, a, b

    def linearize(self, x: np.ndarray) -> Linearization:
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(all="ignore"):
            cost, a, b = self._scales(x)
            if cost is not None and not np.isfinite(cost):
                return Linearization(np.inf, np.full(x.size, np.nan), None)
            if self.mode == "qr":
                n = self.M // self.m
                R, qtf, ftf = streamed_qr(lambda lo, hi: self.k.rows(x, lo, hi), n, x.size,
                                          m=self.m, chunk=self.chunk, jscale=a, rscale=b)
                model = QRModel(R, qtf)
                g = model.g
            else:
                A, g, ftf = self.k.normal(x, jscale=a, rscale=b)
                model = NormalModel(np.asarray(A, dtype=np.float64),
                                    np.asarray(g, dtype=np.float64))
        if cost is None:
            cost = 0.5 * float(ftf)
        if not (np.isfinite(cost) and np.all(np.isfinite(g))):
            return Linearization(np.inf, np.full(x.size, np.nan), None)
        return Linearization(cost, np.asarray(g, dtype=np.float64), model)
