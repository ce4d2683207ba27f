"""The result of a least-squares fit: SciPy's names plus the statistics of the estimate.

``cov = s² (JᵀJ)⁻¹`` with the residual variance ``s² = 2 cost / (M - P)`` (what NIST certifies
and ``curve_fit`` returns), ``stderr = sqrt(diag(cov))``, ``corr`` the correlation matrix and
``sigma = s`` the residual standard deviation. A parameter the data cannot determine (a
direction of J's null space, up to the rank tolerance) gets ``stderr = inf`` and an
:class:`UnidentifiableWarning` naming it; the others' covariance is computed with it held fixed.

``fun`` and ``jac`` are evaluated only when read (the solver never materialises J).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

__all__ = ["LeastSquaresResult", "UnidentifiableWarning", "covariance"]


class UnidentifiableWarning(UserWarning):
    """The Jacobian is rank deficient at the solution: some parameters are not determined."""


def covariance(model, names: tuple[str, ...]) -> tuple[np.ndarray, list[int]]:
    """``((JᵀJ)⁻¹, unidentifiable indices)`` from a linear model at the solution."""
    P = len(names)
    _, V, _ = model.spectrum()
    k = model.rank_cut()
    bad: list[int] = []
    if k < P:
        weight = np.sum(V[:, k:] ** 2, axis=1)
        bad = [j for j in range(P) if weight[j] > 1e-3]
    ok = np.array([j for j in range(P) if j not in bad], dtype=int)
    inv = np.full((P, P), np.inf)
    if ok.size:
        sub = model if not bad else model.restrict(ok)
        s2, V2, c2 = sub.spectrum()
        keep = s2 > 0
        W = V2[:, keep] / s2[keep]
        inv[np.ix_(ok, ok)] = (W @ W.T) / np.outer(c2, c2)
    return inv, bad


@dataclass(repr=False)
class LeastSquaresResult:
    """A fit: ``x, cost, fun, jac, grad, optimality, nfev, njev, status, message, success``
    (as SciPy's ``least_squares``) and ``cov, stderr, sigma, corr, params`` (as
    ``curve_fit``/lmfit)."""

    x: np.ndarray
    cost: float
    grad: np.ndarray
    nfev: int
    njev: int
    nit: int
    status: int
    message: str
    params: tuple[str, ...]
    n_residuals: int
    active_mask: np.ndarray
    method: str
    loss: str
    _model: Any = field(repr=False)
    _objective: Any = field(repr=False)
    #: the solver's residual scale s (it saw f/s; a power of two) and its cost (cost / s**2)
    _scale: float = field(default=1.0, repr=False)
    _cost: float | None = field(default=None, repr=False)
    unidentifiable: tuple[str, ...] = ()
    #: residuals with a non-zero weight (None: no weights, all ``n_residuals``)
    n_weighted: int | None = None

    @property
    def success(self) -> bool:
        return self.status > 0

    @property
    def optimality(self) -> float:
        """First-order optimality: ``max |grad_j|`` over the parameters not held on a bound
        (SciPy's value for a problem without bounds; with bounds SciPy scales the gradient by
        the distance to them instead)."""
        g = np.where(np.asarray(self.active_mask) == 0, np.abs(self.grad), 0.0)
        return float(np.max(g, initial=0.0))

    @property
    def dof(self) -> int:
        """Degrees of freedom ``M - P``, ``M`` counting only residuals with a non-zero weight
        (a zero weight removes a residual from the fit, as in R's ``lm``/``nls``)."""
        m = self.n_residuals if self.n_weighted is None else self.n_weighted
        return m - self.x.size

    @cached_property
    def fun(self) -> np.ndarray:
        """The residuals at ``x`` (weighted: ``sqrt(w) * r``), evaluated on first access."""
        return self._objective.fun(self.x)

    @cached_property
    def jac(self) -> np.ndarray:
        """The M x P Jacobian of :attr:`fun` at ``x``, materialised on first access (with a
        robust loss, not rescaled by it as SciPy's ``jac`` is; :attr:`cov` uses the rescaled
        rows)."""
        return self._objective.jac(self.x)

    @cached_property
    def _inv(self) -> tuple[np.ndarray, list[int]]:
        return covariance(self._model, self.params)

    @property
    def cov_unscaled(self) -> np.ndarray:
        """``(JᵀJ)⁻¹`` (``curve_fit``'s ``absolute_sigma=True`` covariance)."""
        with np.errstate(over="ignore", under="ignore"):
            return self._inv[0] / self._scale**2

    @property
    def _var(self) -> float:
        """``s²/scale²``: the residual variance in the solver's units."""
        cost = self.cost if self._cost is None else self._cost
        return 2 * cost / self.dof if self.dof > 0 else float("nan")

    @property
    def sigma(self) -> float:
        """Residual standard deviation ``s = sqrt(2 cost / (M - P))`` (nan if M == P)."""
        with np.errstate(over="ignore"):
            return float(np.sqrt(self._var) * self._scale)

    s = sigma

    @property
    def cov(self) -> np.ndarray:
        """Covariance of the estimate, ``s² (JᵀJ)⁻¹`` (inf stays inf at s = 0)."""
        inv = self._inv[0]
        with np.errstate(invalid="ignore"):
            return np.where(np.isinf(inv), inv, self._var * inv)

    @property
    def stderr(self) -> np.ndarray:
        """Standard errors ``sqrt(diag(cov))``; inf for unidentifiable parameters (computed
        as ``sqrt(var) * sqrt(diag((JᵀJ)⁻¹))`` in the solver's units: the variance of an
        estimate around 1e-170 is not a double)."""
        d = np.sqrt(np.diag(self._inv[0]))
        with np.errstate(invalid="ignore"):
            return np.where(np.isinf(d), d, np.sqrt(self._var) * d)

    @property
    def corr(self) -> np.ndarray:
        """The correlation matrix ``cov_ij / (stderr_i stderr_j)``."""
        inv = self._inv[0]
        se = np.sqrt(np.diag(inv))
        with np.errstate(invalid="ignore", divide="ignore"):
            c = inv / np.outer(se, se)
        finite = np.isfinite(se)
        c[~finite, :] = np.nan
        c[:, ~finite] = np.nan
        return c

    def __getitem__(self, name: str) -> Any:  # dict-like access as SciPy's OptimizeResult
        return getattr(self, name)

    def keys(self) -> list[str]:
        return ["x", "cost", "fun", "jac", "grad", "nfev", "njev", "status", "message",
                "success", "active_mask", "cov", "stderr", "sigma", "corr", "params"]

    def warn_unidentifiable(self) -> None:
        bad = [self.params[j] for j in self._inv[1]]
        self.unidentifiable = tuple(bad)
        if bad:
            warnings.warn(f"parameter(s) {', '.join(bad)} are not identifiable from these data "
                          "(the Jacobian is rank deficient at the solution): their standard "
                          "errors are inf", UnidentifiableWarning, stacklevel=3)

    def summary(self) -> str:
        """A table of the estimates with standard errors and relative errors."""
        lines = [f"{self.method} ({self.loss} loss): {self.message}",
                 f"  cost {self.cost:.10g}, residual std {self.sigma:.6g}, "
                 f"{self.n_residuals} residuals, {self.x.size} parameters, "
                 f"{self.nfev} evaluations",
                 f"  {'parameter':<12} {'estimate':>18} {'std error':>14} {'rel':>9}"]
        for name, v, se in zip(self.params, self.x, self.stderr, strict=True):
            rel = f"{abs(se / v):9.2%}" if v != 0 and np.isfinite(se) else f"{'':>9}"
            lines.append(f"  {name:<12} {v:18.10g} {se:14.6g} {rel}")
        if self.unidentifiable:
            lines.append(f"  not identifiable: {', '.join(self.unidentifiable)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"LeastSquaresResult\n{self.summary()}"
