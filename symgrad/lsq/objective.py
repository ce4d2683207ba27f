"""A residual kernel with its data, weights and loss, as the solvers see it: ``linearize(x)``.

* ``mode="normal"`` (methods ``lm``, ``gn``): one fused pass ``normal(x, jscale, rscale)``
  gives ``(JᵀJ, Jᵀf, fᵀf)``; J is never materialised. With the linear loss and no weights the
  pass needs no residual vector at all, so memory does not grow with N.
* ``mode="qr"`` (method ``precise``): J rows are streamed in chunks into a P x P triangular
  factor (:func:`symgrad.lsq.qr.streamed_qr`): no squared condition number.

Weights multiply the squared residuals: the solver minimises ``0.5 * sum rho(w_i r_i**2)``,
i.e. works on ``f_i = sqrt(w_i) r_i``; robust losses rescale J and f rows per
:mod:`symgrad.lsq.robust`.

Scale: the solver works on ``f/s`` and ``J/s`` (``f_scale/s`` for a robust loss) with ``s`` a
power of two (exact), 1 unless the start's sums of squares leave the floating-point range
(data around 1e-170 or 1e160): :meth:`Objective.calibrate` then centres the magnitudes of the
residuals, the Jacobian's columns and ``f_scale`` on 1. Costs, gradients and models are in
those units (``cost * s**2`` is the user's cost).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np

from ..runtime.blas import dot
from . import robust
from .lm import Linearization
from .qr import NormalModel, QRModel, streamed_qr

__all__ = ["Objective"]

#: A start whose cost, or a diagonal entry of JᵀJ, lies outside [2**-LIMIT, 2**LIMIT] is
#: rescaled (about 1e-250 .. 1e250: room for sums over many samples and for the solve).
LIMIT = 830
#: A robust loss whose typical residual at x0 exceeds f_scale by this much is refused.
SATURATED = 1e150


class Objective:
    """``linearize(x) -> Linearization`` of a bound residual kernel."""

    def __init__(self, kernel, *, loss: str = "linear", f_scale: float = 1.0,
                 weights: np.ndarray | None = None, mode: str = "normal",
                 chunk: int = 4096, M: int | None = None) -> None:
        self.k = kernel
        self.loss, self.f_scale, self.mode, self.chunk = loss, float(f_scale), mode, chunk
        self.M = int(kernel.n_residuals()) if M is None else M
        self.m = int(kernel.m)
        self.sw = None if weights is None else np.sqrt(weights)
        self.s = 1.0  # the residual scale (a power of two)
        self._rows: np.ndarray | None = self.sw  # sw / s (None: both are 1)
        dt = np.dtype(getattr(getattr(kernel, "kernel", kernel), "data_dtype", np.float64))
        #: A float32 kernel's largest |x|: beyond it a trial point is a failed step (the kernel
        #: refuses such an x rather than read it as inf).
        self.top = None if dt == np.float64 else float(np.finfo(dt).max)

    def with_mode(self, mode: str) -> Objective:
        """The same problem (and scale) linearised by the other model."""
        other = Objective.__new__(Objective)
        other.__dict__.update(self.__dict__)
        other.mode = mode
        return other

    def fun(self, x: np.ndarray) -> np.ndarray:
        """The residuals the cost sees: ``sqrt(w) * r`` (in the user's units)."""
        r = self.k.residuals(np.asarray(x, dtype=np.float64))
        return r if self.sw is None else r * self.sw

    def jac(self, x: np.ndarray) -> np.ndarray:
        """J of :meth:`fun` (materialised: only when asked)."""
        J = self.k.jacobian(np.asarray(x, dtype=np.float64))
        return J if self.sw is None else J * self.sw[:, None]

    def _scales(self, x: np.ndarray) -> tuple[float | None, Any, Any, float | None]:
        """(cost or None, jscale, rscale, wnorm or None) for the rows at x, in the solver's
        units (``wnorm``: :attr:`~.lm.Linearization.wnorm`)."""
        if self.loss == "linear":
            return None, self._rows, self._rows, None
        f = self.fun(x) / self.s
        c, a, b = robust.scales(self.loss, f, self.f_scale / self.s)
        w = float(np.sqrt(dot(a * f, b * f)))  # a b = rho'
        if self.sw is not None:
            a, b = a * self.sw, b * self.sw
        if self.s != 1.0:
            a, b = a / self.s, b / self.s
        return c, a, b, w

    def linearize(self, x: np.ndarray) -> Linearization:
        x = np.asarray(x, dtype=np.float64)
        if self.top is not None and np.any(np.abs(x) > self.top):
            return Linearization(np.inf, np.full(x.size, np.nan), None)
        with np.errstate(all="ignore"):
            cost, a, b, wnorm = self._scales(x)
            if cost is not None and not np.isfinite(cost):
                return Linearization(np.inf, np.full(x.size, np.nan), None)
            if self.mode == "qr" and hasattr(self.k, "qr"):  # Dask: per chunk, merged here
                R, qtf, ftf = self.k.qr(x, jscale=a, rscale=b)
                model = QRModel(R, qtf)
                g = model.g
            elif self.mode == "qr":
                n = self.M // self.m
                R, qtf, ftf = streamed_qr(lambda lo, hi: self.k.rows(x, lo, hi), n, x.size,
                                          m=self.m, chunk=self.chunk, jscale=a, rscale=b)
                model = QRModel(R, qtf)
                g = model.g
            else:
                A, g, ftf = self.k.normal(x, jscale=a, rscale=b)
                model = NormalModel(np.asarray(A, dtype=np.float64),
                                    np.asarray(g, dtype=np.float64))
        fnorm = None
        if cost is None:
            cost = 0.5 * float(ftf)
        else:
            fnorm = float(np.sqrt(ftf))
        with np.errstate(over="ignore"):  # a column norm that overflows: not finite
            finite = np.all(np.isfinite(model.colnorm))
        if not (np.isfinite(cost) and np.all(np.isfinite(g)) and finite):
            return Linearization(np.inf, np.full(x.size, np.nan), None)
        return Linearization(cost, np.asarray(g, dtype=np.float64), model, fnorm, wnorm)

    # ------------------------------------------------------------------ scale

    def calibrate(self, x0: np.ndarray) -> Linearization:
        """The linearisation at ``x0``, after choosing the scale ``s`` if the sums of squares
        there would leave the floating-point range."""
        if self.loss != "linear":
            with np.errstate(all="ignore"):
                typical = float(np.median(np.abs(self.fun(x0))))
            if typical > SATURATED * self.f_scale:
                raise ValueError(
                    f"f_scale={self.f_scale:g} is less than 1e-150 times the typical residual "
                    f"at x0 (median |f| = {typical:.3g}): the {self.loss} loss would treat every "
                    "residual as an outlier and its Gauss-Newton model is degenerate. Choose "
                    "f_scale near the size of an inlier's residual")
        lin = self.linearize(x0)
        if lin.model is not None and _in_range(lin):
            return lin
        s = self._centre(np.asarray(x0, dtype=np.float64))
        if s == 1.0:
            return lin
        self.s = s
        base = np.ones(self.M) if self.sw is None else self.sw
        self._rows = base / s
        try:
            return self.linearize(x0)
        except NotImplementedError as exc:  # Dask columns: rows are not rescaled there yet
            raise NotImplementedError(
                f"the residuals or Jacobian at x0 are so {'large' if s > 1 else 'small'} that "
                f"their squares leave the floating-point range: the solver would rescale them "
                f"by {1 / s:g}, which a kernel on Dask columns does not take yet; multiply the "
                f"residual by about {1 / s:g} yourself (the fit and its statistics scale "
                "back)") from exc

    def _centre(self, x: np.ndarray) -> float:
        """A power of two near the geometric middle of max|f|, the largest and smallest
        non-zero column max|J_j| and (robust losses) ``f_scale``; 1 if their squares are in
        range already (or none is finite)."""
        with np.errstate(all="ignore"):
            mags = [float(np.max(np.abs(self.fun(x)), initial=0.0))]
            with contextlib.suppress(NotImplementedError):  # Dask: J's rows stay there
                mags += list(self._column_max(x))
        if self.loss != "linear":
            mags.append(self.f_scale)
        logs = [math.frexp(v)[1] for v in mags if 0 < v < math.inf]
        if not logs or (2 * max(logs) < LIMIT and 2 * min(logs) > -LIMIT):
            return 1.0  # nothing to centre (a zero column, an exact fit at x0)
        return math.ldexp(1.0, (min(logs) + max(logs)) // 2)

    def _column_max(self, x: np.ndarray) -> np.ndarray:
        n, out = self.M // self.m, np.zeros(x.size)
        for lo in range(0, n, self.chunk):
            J, _ = self.k.rows(x, lo, min(n, lo + self.chunk))
            if self.sw is not None:
                J = J * self.sw[lo * self.m:lo * self.m + J.shape[0], None]
            out = np.fmax(out, np.max(np.abs(J), axis=0, initial=0.0))
        return out


def _in_range(lin: Linearization) -> bool:
    lo, hi = 2.0 ** -LIMIT, 2.0 ** LIMIT
    c = lin.model.colnorm ** 2
    if lin.fnorm is not None:  # robust: the rows' |b f| too
        c = np.append(c, lin.fnorm ** 2)
    return lo <= lin.cost <= hi and bool(np.all((c >= lo) & (c <= hi)))
